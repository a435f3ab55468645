"""The model files the apply stage registers with: one trained model, or several together (:mod:`comir.apply`).

:class:`TrainedModel` is one ``comir.pt`` (its networks, modalities, training input
statistics and calibrations); :class:`ModelEnsemble` is one or several of them
registering a pair together; :func:`write_calibrated_model` adds calibrations to a file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from comir.calibration import Calibration, calibration_key
from comir.config.variants import ENSEMBLE_METHODS, ensemble_params
from comir.io import InputError, atomic_path
from comir.network.checkpoint import load_checkpoint
from comir.network.model import TiramisuConfig

log = logging.getLogger(__name__)

# Smallest image side (px, at the working resolution) a pair is registered at, besides the network's pooling
# grid (2^depth): the registration methods need some pixels.  MI's pyramid shrinks by 4 at its coarsest level
# and needs >= 4 px there (16 px); SIFT finds keypoints in octaves of halving size and FFT/ECC need a few
# periods of structure.  Below it a method "registers" noise (a 3x3 pair came out "ok", metric 0.95).
MIN_REGISTER_PX = 16
# The modality settings the models of an ensemble share: reading an image (channels), finding its folder
# (name) and bringing it to the working resolution (pixel_size) happen once for all of them.
SHARED_MODALITY_KEYS = ("name", "channels", "pixel_size")
# Parameters the apply stage gives a method unless the user sets them (docs/how-to/register.md, "Defaults"):
# the cascade also weighs SIFT + RANSAC on the original images (OpenCV's settings) as one more candidate,
# scored on the CoMIRs.  Where the modalities share structure (RGB/NIR photos) it is the most precise
# candidate and is kept; where they do not (bright-field/SHG) it fails or scores low and the CoMIRs'
# candidates carry the pair (docs/results/confidence.md).  Each is an option that is off (None) by the
# method's own default, so ``original_keypoints: null`` turns it off and leaves the method's parameters (and
# the calibration they select) as they are without it.
APPLY_DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"cascade": {"original_keypoints": {"preset": "opencv"}}}


@dataclass
class TrainedModel:
    """The two networks of a model file and the modalities they were trained on."""

    path: Path
    networks: dict[str, torch.nn.Module]
    modalities: dict[str, dict[str, Any]]
    # Per slot the training images' network-input statistics (:func:`comir.imaging.preprocess.input_statistics`);
    # None for model files written before they were recorded (the range check is skipped).
    statistics: dict[str, dict[str, float]] | None = None
    # Calibrated confidence per registration method and parameters (:func:`calibration_key`), written by
    # rule calibrate_model (docs/method.md, section 15); empty: the results are not judged.
    calibrations: dict[str, Calibration] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
        """The model in ``path``; :class:`InputError` naming the file when it is not a CoMIR model.

        A file without training input statistics or calibrations loads with a warning (no range check,
        results not judged).

        Parameters
        ----------
        path : str or pathlib.Path
            The ``comir.pt`` model file.
        device : torch.device or str, optional
            Where the networks are loaded. Default ``"cpu"``.

        Returns
        -------
        TrainedModel
            The networks, modalities, statistics (or None) and calibrations of the file.

        Raises
        ------
        comir.io.InputError
            If the file is missing, cannot be loaded as a CoMIR checkpoint, or has no modality description
            for its networks.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
        try:
            networks, payload = load_checkpoint(path, device)
        except Exception as error:  # a corrupt or foreign file: say which and why
            raise InputError(f"{path} is not a CoMIR model file written by the train rule: {error}") from error
        modalities = payload.get("modalities")
        if not isinstance(modalities, Mapping) or set(modalities) != set(networks):
            raise InputError(f"{path} has no modality description for its networks {sorted(networks)}")
        statistics = payload.get("input_statistics")
        if not (isinstance(statistics, Mapping) and set(statistics) == set(networks)):
            log.warning(
                "%s records no training input statistics (written before they were): the intensity range "
                "check of new images is skipped",
                path,
            )
            statistics = None
        else:
            statistics = {slot: {k: float(v) for k, v in values.items()} for slot, values in statistics.items()}
        calibrations = {key: Calibration.from_dict(value) for key, value in payload.get("calibrations", {}).items()}
        if not calibrations:
            log.warning("%s has no calibrated confidence (rule calibrate_model): results are not judged", path)
        modalities = {slot: dict(spec) for slot, spec in modalities.items()}
        return cls(path, networks, modalities, statistics, calibrations)

    def calibration(self, method: str, params: Mapping[str, Any] | None) -> Calibration | None:
        """The calibration of ``method`` with ``params`` (as given to :func:`make_method`), if the file has one.

        Parameters
        ----------
        method : str
            The registration method.
        params : Mapping[str, Any] or None
            Its parameters; the calibration is looked up by :func:`comir.calibration.calibration_key`.

        Returns
        -------
        comir.calibration.Calibration or None
            The calibration; None when the file has none for them.
        """
        return self.calibrations.get(calibration_key(method, params))

    def slot(self, modality: str) -> str:
        """The network slot (``A``/``B``) of a modality given by slot or by name.

        Parameters
        ----------
        modality : str
            A slot (``"A"``, ``"B"``) or a modality's ``name``.

        Returns
        -------
        str
            The slot.

        Raises
        ------
        comir.io.InputError
            If ``modality`` is neither a slot nor a modality name of the model.
        """
        for slot, spec in self.modalities.items():
            if modality in (slot, spec.get("name")):
                return slot
        known = ", ".join(f"{slot} ({spec.get('name')})" for slot, spec in self.modalities.items())
        raise InputError(f"modality {modality!r} is not one of the model's: {known} ({self.path})")

    def other(self, slot: str) -> str:
        """The other network's slot.

        Parameters
        ----------
        slot : str
            A slot of the model.

        Returns
        -------
        str
            The first slot of the model other than ``slot``.
        """
        return next(s for s in self.modalities if s != slot)

    def min_side(self, slot: str) -> int:
        """The smallest image side (px, working resolution) for ``slot``'s network and :data:`MIN_REGISTER_PX`.

        Parameters
        ----------
        slot : str
            The network's slot.

        Returns
        -------
        int
            The larger of :data:`MIN_REGISTER_PX` and the network's pooling grid (``TiramisuConfig.multiple``;
            1 for a network without one).
        """
        config = getattr(self.networks[slot], "config", None)
        multiple = config.multiple if isinstance(config, TiramisuConfig) else 1
        return max(MIN_REGISTER_PX, multiple)

    def shared_settings(self) -> dict[str, dict[str, Any]]:
        """Per slot what the models of an ensemble share: :data:`SHARED_MODALITY_KEYS` and ``comir_channels``."""
        return {
            slot: {key: spec.get(key) for key in SHARED_MODALITY_KEYS}
            | {"comir_channels": self.networks[slot].config.out_channels}
            for slot, spec in sorted(self.modalities.items())
        }


@dataclass(frozen=True)
class ModelEnsemble:
    """One model, or several that register a pair together (:mod:`comir.apply`, "Several models").

    The models share their modalities: the slots, per slot :data:`SHARED_MODALITY_KEYS` and the CoMIR
    channels (the cascade splits the stacked CoMIRs into equal groups); each model pre-processes its own
    network input as its file says (scaling, stain normalisation, ``log1p``).  Modalities and slots are
    the first model's.  A different modality is an :class:`InputError` naming both files.

    With several models only :data:`comir.config.variants.ENSEMBLE_METHODS` register (:meth:`registration_params`)
    and there is no calibrated confidence (:meth:`calibration` is None: each model's calibration is of
    its own CoMIRs; a warning says so once); one model is that model: its calibrations, any method.
    """

    members: tuple[TrainedModel, ...]

    def __post_init__(self) -> None:
        if not self.members:
            raise InputError("no model file given")
        first = self.members[0]
        for member in self.members[1:]:
            if member.shared_settings() != first.shared_settings():
                raise InputError(
                    f"{first.path} and {member.path} cannot register a pair together: their modalities differ "
                    f"({first.shared_settings()} against {member.shared_settings()}); the models of an ensemble "
                    "must share each modality's name, channels and pixel size and their CoMIR channels"
                )
        if len(self.members) > 1:
            log.warning(
                "an ensemble of %d models (%s) has no calibrated confidence: results are not judged",
                len(self.members),
                self.describe(),
            )

    @classmethod
    def load(cls, paths: str | Path | Sequence[str | Path], device: torch.device | str = "cpu") -> ModelEnsemble:
        """The models in ``paths`` (one path, or several in order), each by :meth:`TrainedModel.load`.

        Parameters
        ----------
        paths : str or pathlib.Path or Sequence[str or pathlib.Path]
            One model file, or several in order.
        device : torch.device or str, optional
            Where the networks are loaded. Default ``"cpu"``.

        Returns
        -------
        ModelEnsemble
            The models, in order.

        Raises
        ------
        comir.io.InputError
            If no path is given, a file is not a CoMIR model, or the models' modalities differ.
        """
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        return cls(tuple(TrainedModel.load(path, device) for path in paths))

    @classmethod
    def of(cls, model: TrainedModel | ModelEnsemble) -> ModelEnsemble:
        """``model`` as an ensemble: itself, or a one-model ensemble.

        Parameters
        ----------
        model : TrainedModel or ModelEnsemble
            One model or an ensemble.

        Returns
        -------
        ModelEnsemble
            ``model`` itself if it is an ensemble, else an ensemble of it alone.
        """
        return model if isinstance(model, ModelEnsemble) else cls((model,))

    @property
    def modalities(self) -> dict[str, dict[str, Any]]:
        """The first model's modalities by slot (the others share what reading and resampling use)."""
        return self.members[0].modalities

    def slot(self, modality: str) -> str:
        """The network slot of a modality given by slot or by name (:meth:`TrainedModel.slot`).

        Parameters
        ----------
        modality : str
            A slot (``"A"``, ``"B"``) or a modality's ``name``.

        Returns
        -------
        str
            The slot, by the first model.

        Raises
        ------
        comir.io.InputError
            If ``modality`` is not one of the models'.
        """
        return self.members[0].slot(modality)

    def other(self, slot: str) -> str:
        """The other network's slot.

        Parameters
        ----------
        slot : str
            A slot of the models.

        Returns
        -------
        str
            The other slot, by the first model.
        """
        return self.members[0].other(slot)

    def describe(self) -> str:
        """The model files, comma-separated, in order."""
        return ", ".join(str(member.path) for member in self.members)

    def calibration(self, method: str, params: Mapping[str, Any] | None) -> Calibration | None:
        """One model's calibration of ``method`` with ``params`` (:meth:`TrainedModel.calibration`); several: None.

        Parameters
        ----------
        method : str
            The registration method.
        params : Mapping[str, Any] or None
            Its parameters, as given to the method.

        Returns
        -------
        comir.calibration.Calibration or None
            The single model's calibration, if it has one; None for several models.
        """
        return self.members[0].calibration(method, params) if len(self.members) == 1 else None

    def registration_params(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """``params`` of ``method`` for these models' CoMIRs (a copy): what the registration and its calibration use.

        :data:`APPLY_DEFAULT_PARAMS` of the method, overridden key by key by ``params`` (a default
        set to None is left out: the method's own default); with ``networks`` for several models.

        Parameters
        ----------
        method : str
            The registration method.
        params : Mapping[str, Any] or None
            The user's parameters of the method; None: none.

        Returns
        -------
        dict[str, Any]
            The parameters to register with (:func:`comir.config.variants.ensemble_params`).

        Raises
        ------
        comir.io.InputError
            If several models are given with a method outside :data:`comir.config.variants.ENSEMBLE_METHODS`.
        """
        count = len(self.members)
        defaults = APPLY_DEFAULT_PARAMS.get(method, {})
        given = {**defaults, **(params or {})}
        given = {key: value for key, value in given.items() if not (key in defaults and value is None)}
        registered = ensemble_params(method, given, count)
        if registered is None:
            raise InputError(
                f"{count} models ({self.describe()}) register a pair together only with "
                f"{' or '.join(ENSEMBLE_METHODS)} (the methods that take several networks' CoMIRs), not {method!r}; "
                f"give one model for {method}"
            )
        return registered


def write_calibrated_model(model: str | Path, calibrations: Mapping[str, Calibration], out: str | Path) -> None:
    """Write the model file ``model`` again as ``out`` with ``calibrations`` (by :func:`calibration_key`) inside.

    The file's ``calibrations`` entry is replaced, not merged; ``out`` is written atomically.

    Parameters
    ----------
    model : str or pathlib.Path
        The model file to read.
    calibrations : Mapping[str, comir.calibration.Calibration]
        The calibrations by :func:`comir.calibration.calibration_key`.
    out : str or pathlib.Path
        The file to write (may be ``model`` itself).
    """
    payload = torch.load(model, map_location="cpu", weights_only=True)
    payload["calibrations"] = {key: calibration.to_dict() for key, calibration in calibrations.items()}
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)

"""A trained CoMIR model applied to a user's unaligned pair (docs/method.md, section 13).

The model file is the ``comir.pt`` the ``train`` rule writes (state_dicts, the
networks' configurations, the modalities with their pre-processing, the
training settings and provenance; loaded with ``weights_only=True``), so a
model trained once, e.g. on a GPU cluster, is reused anywhere.  For one pair:

1. both images are read and checked against the model before any work, the
   files named in every error (:func:`check_pair`): channels of their
   modality, a side of at least :meth:`TrainedModel.min_side` px at the working resolution,
   physical extents within :data:`MAX_EXTENT_RATIO` of each other, network
   input within :data:`RANGE_FACTOR` of the training range (model files that
   record it: ``input_statistics``), and the settings against the
   configuration schema (:func:`check_settings`);
2. with pixel sizes (units per pixel, e.g. microns) given for the two images,
   both are resampled to the working resolution: the model's own pixel size of
   each modality where the model records one (``pixel_size`` of the dataset's
   modality), else the reference image's; without pixel sizes the images are
   used as they are;
3. each image gets a valid-pixel mask (:mod:`comir.masks`): from a mask file,
   or derived from constant borders (``masks="auto"``, the default), or none;
4. each image is pre-processed like the training data of its modality, its
   invalid pixels set to the valid mean (the network sees no edge there), and
   its CoMIR computed (ONNX Runtime on the CPU, tiled, as the pipeline does);
   the mask at the working resolution, shrunk by ``mask_margin_px``, is the
   CoMIR's;
5. a registration method (default the ``cascade``) registers the floating
   CoMIR to the reference CoMIR with the chosen transform model (rigid,
   similarity, affine) and the masks, and the transform is reported in the
   original pixel grids of the two images; CoMIRs larger than
   ``register_max_px`` are registered at a coarse level and refined by blocks
   at full resolution (:mod:`comir.register.coarse_to_fine`), so the memory
   of a registration stays that of the images;
6. the outputs are written atomically into a new folder: ``transform.csv``
   (one row: the floating -> reference matrix, status, metric, seconds,
   the valid fractions of the two CoMIRs, the process's peak memory so far,
   message), ``transform.tfm`` (the same transform for ITK / SimpleITK /
   elastix users: the resampling transform, reference -> floating points, in
   pixel units), ``warped.tif`` (the floating image resampled into the
   reference frame, its own dtype and channels), ``overlay.png`` (before and
   after: colour overlay of the originals and checkerboard of the CoMIRs) and
   ``comir_reference.tif`` / ``comir_floating.tif``, and where a mask was
   used ``mask_reference.png`` / ``mask_floating.png`` (the CoMIRs' masks,
   white = valid).

A pair the method cannot register is a ``failed`` row (no warped image,
transform or overlay is written); an existing output is never overwritten.

Several models (:class:`ModelEnsemble`, e.g. networks trained with and without
stain augmentation) register a pair together: every check of step 1 holds for
every model, each model computes its CoMIR of each image from its own network
input (step 4), the CoMIRs are stacked along the channels in the models'
order, and the cascade registers them as ``networks`` groups
(:mod:`comir.register.cascade`, "Several networks").  ``comir_reference.tif``
/ ``comir_floating.tif`` hold the stacked CoMIRs.  An ensemble has no
calibrated confidence: its results are not judged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from comir import geometry
from comir.calibration import LOW_CONFIDENCE, Calibration, calibration_key
from comir.config import ENSEMBLE_METHODS, load_schema, schema_problems, section_defaults, section_problems
from comir.geometry import MATRIX_KEYS
from comir.infer import compute_comir, inference_network
from comir.io import (
    InputError,
    atomic_path,
    channels_of,
    read_image,
    to_uint8,
    write_csv,
    write_png,
    write_text,
    write_tiff,
)
from comir.masks import MASK_MARGIN_PX, image_mask, working_mask
from comir.model import TiramisuConfig
from comir.preprocess import prepare_modality_image
from comir.register import make_method, to_single_channel, with_transform
from comir.register.base import RegistrationResult, fill_invalid
from comir.register.coarse_to_fine import REGISTER_MAX_PX, coarse_to_fine
from comir.register.confidence import evidence
from comir.resampling import Resampling, to_original_grids
from comir.train import input_statistics, load_checkpoint, resolve_device

log = logging.getLogger(__name__)

OUTPUTS = (
    "transform.csv",
    "transform.tfm",
    "warped.tif",
    "overlay.png",
    "comir_reference.tif",
    "comir_floating.tif",
    "mask_reference.png",
    "mask_floating.png",
)
# Side of the checkerboard squares of the overlay, as a fraction of the reference's shorter side.
CHECKER_FRACTION = 1 / 8
# Smallest image side (px, at the working resolution) a pair is registered at, besides the network's pooling
# grid (2^depth): the registration methods need some pixels.  MI's pyramid shrinks by 4 at its coarsest level
# and needs >= 4 px there (16 px); SIFT finds keypoints in octaves of halving size and FFT/ECC need a few
# periods of structure.  Below it a method "registers" noise (a 3x3 pair came out "ok", metric 0.95).
MIN_REGISTER_PX = 16
# New network input whose 99.9th percentile (in linear intensity: log1p undone) is more than this factor above
# or below the training images' is refused: the network never saw such values (a float image in 0..60000 for a
# model trained on 0..1 gave CoMIR values of +-65000 instead of about +-1; a factor 1/20 is an image stored on
# another scale, e.g. 8-bit data in 16-bit files: 1/257).  Ordinary variation of gain and staining stays
# well inside it (12-bit data in 16-bit files without max_value: 1/16).
RANGE_FACTOR = 20.0
# Largest ratio of the two images' longer sides (physical, with pixel sizes; else in pixels): one pair shows
# overlapping views of one tissue region, so a larger ratio is a wrong file, a missing pixel size or a
# region to crop (a 2000 px reference with a 64 px floating image came out "ok" at a translation of 1240 px).
MAX_EXTENT_RATIO = 4.0
# The modality settings the models of an ensemble share: reading an image (channels), finding its folder
# (name) and bringing it to the working resolution (pixel_size) happen once for all of them.
SHARED_MODALITY_KEYS = ("name", "channels", "pixel_size")


@dataclass
class TrainedModel:
    """The two networks of a model file and the modalities they were trained on."""

    path: Path
    networks: dict[str, torch.nn.Module]
    modalities: dict[str, dict[str, Any]]
    # Per slot the training images' network-input statistics (:func:`comir.train.input_statistics`);
    # None for model files written before they were recorded (the range check is skipped).
    statistics: dict[str, dict[str, float]] | None = None
    # Calibrated confidence per registration method and parameters (:func:`calibration_key`), written by
    # rule calibrate_model (docs/method.md, section 15); empty: the results are not judged.
    calibrations: dict[str, Calibration] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
        """The model in ``path``; :class:`InputError` naming the file when it is not a CoMIR model."""
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
        """The calibration of ``method`` with ``params`` (as given to :func:`make_method`), if the file has one."""
        return self.calibrations.get(calibration_key(method, params))

    def slot(self, modality: str) -> str:
        """The network slot (``A``/``B``) of a modality given by slot or by name."""
        for slot, spec in self.modalities.items():
            if modality in (slot, spec.get("name")):
                return slot
        known = ", ".join(f"{slot} ({spec.get('name')})" for slot, spec in self.modalities.items())
        raise InputError(f"modality {modality!r} is not one of the model's: {known} ({self.path})")

    def other(self, slot: str) -> str:
        """The other network's slot."""
        return next(s for s in self.modalities if s != slot)

    def min_side(self, slot: str) -> int:
        """The smallest image side (px, working resolution) for ``slot``'s network and :data:`MIN_REGISTER_PX`."""
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
    """One model, or several that register a pair together (module doc, "Several models").

    The models share their modalities: the slots, per slot :data:`SHARED_MODALITY_KEYS` and the CoMIR
    channels (the cascade splits the stacked CoMIRs into equal groups); each model pre-processes its own
    network input as its file says (scaling, stain normalisation, ``log1p``).  Modalities and slots are
    the first model's.  A different modality is an :class:`InputError` naming both files.

    With several models only :data:`comir.config.ENSEMBLE_METHODS` register (:meth:`registration_params`)
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
        """The models in ``paths`` (one path, or several in order), each by :meth:`TrainedModel.load`."""
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        return cls(tuple(TrainedModel.load(path, device) for path in paths))

    @classmethod
    def of(cls, model: TrainedModel | ModelEnsemble) -> ModelEnsemble:
        """``model`` as an ensemble: itself, or a one-model ensemble."""
        return model if isinstance(model, ModelEnsemble) else cls((model,))

    @property
    def modalities(self) -> dict[str, dict[str, Any]]:
        """The first model's modalities by slot (the others share what reading and resampling use)."""
        return self.members[0].modalities

    def slot(self, modality: str) -> str:
        """The network slot of a modality given by slot or by name (:meth:`TrainedModel.slot`)."""
        return self.members[0].slot(modality)

    def other(self, slot: str) -> str:
        """The other network's slot."""
        return self.members[0].other(slot)

    def describe(self) -> str:
        """The model files, comma-separated, in order."""
        return ", ".join(str(member.path) for member in self.members)

    def calibration(self, method: str, params: Mapping[str, Any] | None) -> Calibration | None:
        """One model's calibration of ``method`` with ``params`` (:meth:`TrainedModel.calibration`); several: None."""
        return self.members[0].calibration(method, params) if len(self.members) == 1 else None

    def registration_params(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` of ``method`` for these models' CoMIRs: as given for one model, with ``networks`` for several.

        Several models and a method outside :data:`comir.config.ENSEMBLE_METHODS` are an :class:`InputError`.
        """
        count = len(self.members)
        if count == 1:
            return params
        if method not in ENSEMBLE_METHODS:
            raise InputError(
                f"{count} models ({self.describe()}) register a pair together only with "
                f"{' or '.join(ENSEMBLE_METHODS)} (the methods that take several networks' CoMIRs), not {method!r}; "
                f"give one model for {method}"
            )
        return {**params, "networks": count}


def read_checked(path: str | Path, modality: Mapping[str, Any], role: str) -> np.ndarray:
    """The image in ``path`` after checking its channels against ``modality``, naming the file otherwise."""
    image = read_image(path)
    found, expected = channels_of(image), int(modality["channels"])
    if found != expected:
        raise InputError(
            f"{role} image {path} has {found} channel(s), but the model's modality "
            f"{modality.get('name')!r} has {expected}: is it the right file, or the right modality?"
        )
    return image


def warp_to_reference(floating: np.ndarray, matrix: np.ndarray, reference_shape: tuple[int, int]) -> np.ndarray:
    """``floating`` (H, W[, C], any real dtype) resampled into the reference frame (bilinear, 0 outside).

    ``matrix`` sends floating pixels to reference pixels; the result has the
    reference's height and width and the floating image's dtype and channels.
    """
    import cv2

    floating = np.asarray(floating)
    size = (int(reference_shape[1]), int(reference_shape[0]))
    native = floating.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
    data = floating if native else floating.astype(np.float64)
    planes = [data] if data.ndim == 2 else [np.ascontiguousarray(data[..., c]) for c in range(data.shape[2])]
    warped = [
        cv2.warpAffine(p, np.asarray(matrix, dtype=np.float64), size, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        for p in planes
    ]  # fmt: skip
    out = warped[0] if data.ndim == 2 else np.stack(warped, axis=-1)
    if not native:
        if np.issubdtype(floating.dtype, np.integer):
            info = np.iinfo(floating.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(floating.dtype)
    return out


def itk_transform_text(matrix: np.ndarray) -> str:
    """An ITK transform file (``.tfm``) of the resampling transform of ``matrix`` (floating -> reference).

    ITK resamples a moving image at ``T(p)`` for every fixed point ``p``, so
    ``T`` is the inverse of ``matrix``: reference pixel -> floating pixel, in
    pixel units (spacing 1, origin 0, ``x`` = column).  Written as an
    ``AffineTransform_double_2_2`` with centre 0.
    """
    inverse = geometry.invert(np.asarray(matrix, dtype=float))
    parameters = [*inverse[:, :2].ravel(), *inverse[:, 2]]
    return (
        "#Insight Transform File V1.0\n"
        "#Transform 0\n"
        "Transform: AffineTransform_double_2_2\n"
        f"Parameters: {' '.join(repr(float(v)) for v in parameters)}\n"
        "FixedParameters: 0 0\n"
    )


def _grey(image: np.ndarray) -> np.ndarray:
    """A display version (uint8) of an image of any channels."""
    single, _ = to_single_channel(np.asarray(image, dtype=np.float32))
    return to_uint8(single)


def overlay(
    reference: np.ndarray,
    floating: np.ndarray,
    comirs: tuple[np.ndarray, np.ndarray],
    matrix: np.ndarray,
    comir_matrix: np.ndarray | None = None,
) -> np.ndarray:
    """A 2 x 2 RGB panel: colour overlay of the originals and checkerboard of the CoMIRs, before and after.

    "Before" places the floating image on the reference grid as it is (the
    identity); "after" warps it by ``matrix`` (the CoMIRs by ``comir_matrix``,
    their grids' transform, by default ``matrix``).  Overlay: reference in
    magenta, floating in green (grey where they agree).  Checkerboard: squares
    of the reference CoMIR and the floating CoMIR alternate; it is resized to
    the reference's size when the CoMIRs are at another resolution.
    """
    import cv2

    height, width = reference.shape[:2]
    ref_grey = _grey(reference)
    ref_comir = _grey(np.moveaxis(comirs[0], 0, -1))
    flo_grey = _grey(floating)
    flo_comir = _grey(np.moveaxis(comirs[1], 0, -1))
    comir_shape = ref_comir.shape[:2]
    side = max(8, int(min(comir_shape) * CHECKER_FRACTION))
    yy, xx = np.mgrid[: comir_shape[0], : comir_shape[1]]
    checker = ((yy // side + xx // side) % 2).astype(bool)
    rows = []
    transforms = (matrix, matrix if comir_matrix is None else comir_matrix)
    for image_transform, comir_transform in ((geometry.IDENTITY, geometry.IDENTITY), transforms):
        moved = warp_to_reference(flo_grey, image_transform, (height, width))
        moved_comir = warp_to_reference(flo_comir, np.asarray(comir_transform), comir_shape)
        colour = np.stack([ref_grey, moved, ref_grey], axis=-1)
        board = np.where(checker, ref_comir, moved_comir)
        if board.shape != (height, width):
            board = cv2.resize(board, (width, height), interpolation=cv2.INTER_NEAREST)
        rows.append(np.concatenate([colour, np.repeat(board[..., None], 3, axis=-1)], axis=1))
    return np.concatenate(rows, axis=0)


def working_resamplings(
    model: TrainedModel, shapes: Mapping[str, tuple[int, ...]], pixel_sizes: Mapping[str, float] | None, ref_slot: str
) -> dict[str, Resampling]:
    """Per slot, how its image is brought to the working resolution (see the module doc, step 2).

    ``pixel_sizes``: the two images' pixel sizes by slot or modality name (both
    or none); ``None``: no resampling.
    """
    if not pixel_sizes:
        return {slot: Resampling(tuple(shape[:2]), tuple(shape[:2])) for slot, shape in shapes.items()}
    given = {model.slot(key): float(value) for key, value in pixel_sizes.items()}
    if set(given) != set(shapes) or any(not (math.isfinite(v) and v > 0) for v in given.values()):
        raise InputError(
            f"pixel sizes must be positive numbers for both modalities "
            f"({', '.join(model.modalities[s]['name'] for s in sorted(shapes))}), got {dict(pixel_sizes)}"
        )
    trained = {slot: model.modalities[slot].get("pixel_size") for slot in shapes}
    if all(trained.values()):
        working = {slot: float(trained[slot]) for slot in shapes}
    else:  # a model without recorded pixel sizes: everything at the reference image's resolution
        working = {slot: given[ref_slot] for slot in shapes}
    return {slot: Resampling.between(shapes[slot], given[slot], working[slot]) for slot in shapes}


def check_settings(
    inference: Mapping[str, Any] | None = None,
    register_max_px: int | None = REGISTER_MAX_PX,
    mask_margin_px: float = MASK_MARGIN_PX,
    names: Mapping[str, str] | None = None,
) -> None:
    """:class:`InputError` listing every setting outside the configuration schema, before any work.

    The limits are the schema's, one source with config/README.md: ``inference`` as a dataset's
    ``inference`` section (e.g. ``tile`` >= 16, ``pad`` >= 0, no unknown key), ``register_max_px`` and
    ``mask_margin_px`` as an apply job's keys (>= 64 or None; >= 0).  ``names``: what to call a
    setting in the message (``inference.tile``, ``register_max_px``, ...), e.g. the command's flags.
    """
    schema = load_schema()
    names = names or {}
    found = []
    for line in section_problems(inference or {}, "inference", schema):
        where, message = line.split(": ", 1)
        found.append(("inference" if where == "(top level)" else f"inference.{where}", message))
    job = schema["definitions"]["apply"]["properties"]
    for key, value in (("register_max_px", register_max_px), ("mask_margin_px", mask_margin_px)):
        found += [(key, line.split(": ", 1)[1]) for line in schema_problems(value, job[key])]
    if found:
        raise InputError("; ".join(f"{names.get(key, key)}: {message}" for key, message in found))


def check_size(model: TrainedModel, slot: str, resampling: Resampling, path: str | Path, role: str) -> None:
    """:class:`InputError` when an image is too small, at the working resolution, for :meth:`TrainedModel.min_side`."""
    minimum = model.min_side(slot)
    if min(resampling.working_shape) >= minimum:
        return
    (height, width), (work_h, work_w) = resampling.shape, resampling.working_shape
    at = "" if resampling.identity else f", {work_h}x{work_w} px at the working resolution"
    raise InputError(
        f"{role} image {path} is {height}x{width} px (HxW{at}): smaller than the {minimum} px per side that "
        f"registering with this model needs (its network's pooling grid and the registration methods' "
        f"{MIN_REGISTER_PX} px); use a larger image"
    )


def check_extents(
    shapes: Mapping[str, tuple[int, ...]],
    paths: Mapping[str, str | Path],
    roles: Mapping[str, str],
    pixel_sizes: Mapping[str, float] | None,
) -> None:
    """:class:`InputError` when the two images' longer sides differ by more than :data:`MAX_EXTENT_RATIO`.

    With ``pixel_sizes`` (by slot) the physical extents (longer side x pixel size) are compared, else the
    sides in pixels.
    """
    sides = {
        slot: max(shape[:2]) * (float(pixel_sizes[slot]) if pixel_sizes else 1.0) for slot, shape in shapes.items()
    }
    ratio = max(sides.values()) / min(sides.values())
    if ratio <= MAX_EXTENT_RATIO:
        return
    described = " and ".join(
        f"{roles[slot]} image {paths[slot]} is {shape[0]}x{shape[1]} px"
        + (f" at {float(pixel_sizes[slot]):g} per px" if pixel_sizes else "")
        for slot, shape in shapes.items()
    )
    if pixel_sizes:
        raise InputError(
            f"{described}: their physical extents (longer side x pixel size) differ by a factor {ratio:.1f}, more "
            f"than the {MAX_EXTENT_RATIO:g} of two views of one region; check the pixel sizes, or crop the larger "
            "image to the region of the smaller"
        )
    raise InputError(
        f"{described}: their longer sides differ by a factor {ratio:.1f}, more than the {MAX_EXTENT_RATIO:g} of "
        "two views of one region; give their pixel sizes (--pixel-sizes REFERENCE FLOATING; apply: pixel_size) "
        "if they differ, or crop the larger image to the region of the smaller"
    )


def _linear(value: float, modality: Mapping[str, Any]) -> float:
    """A network-input level in linear intensity: log1p undone for a log1p modality (y = log2(1 + x))."""
    return 2.0 ** min(value, 1000.0) - 1.0 if modality.get("log1p") else value


def range_problem(found: Mapping[str, float], trained: Mapping[str, float], modality: Mapping[str, Any]) -> str | None:
    """Why network input of statistics ``found`` is far outside the training input ``trained``, or None.

    Far: the 99.9th percentiles differ by more than :data:`RANGE_FACTOR`, compared in linear intensity
    (log1p undone), so that the factor means the same for every modality; a training level of 0 or less
    gives no scale (None).
    """
    high, reference = _linear(found["p99.9"], modality), _linear(trained["p99.9"], modality)
    if reference <= 0:
        return None
    if high > RANGE_FACTOR * reference:
        side = "above"
    elif high < reference / RANGE_FACTOR:
        side = "below"
    else:
        return None
    return (
        f"its network input spans {found['p0.1']:.4g}..{found['p99.9']:.4g} (0.1..99.9th percentiles), but the "
        f"model's {modality.get('name')!r} training images spanned {trained['p0.1']:.4g}..{trained['p99.9']:.4g}: "
        f"more than {RANGE_FACTOR:g}x {side} what the network has seen"
    )


def prepare_checked(
    model: TrainedModel,
    slot: str,
    image: np.ndarray,
    path: str | Path,
    role: str,
    valid: np.ndarray | None = None,
    rescale: bool = False,
) -> np.ndarray:
    """The network input (C, H, W) of ``image``, its intensity range checked against the training images'.

    Statistics (:func:`comir.train.input_statistics`) over the ``valid`` pixels; an input far outside the
    training range (:func:`range_problem`) is an :class:`InputError` naming the file and the remedy.
    ``rescale``: instead, map the image's 0.1..99.9th percentile range linearly onto the training images'
    (clipped to their minimum and maximum), for every image.  A model file without statistics skips the
    check (:meth:`TrainedModel.load` says so); a constant image has no range to check or map.
    """
    modality = model.modalities[slot]
    prepared = prepare_modality_image(image, modality, str(path))
    trained = None if model.statistics is None else model.statistics[slot]
    if trained is None:
        if rescale:
            raise InputError(
                f"rescaling {path} needs the training images' range, which {model.path} does not record (written "
                "before it was): retrain the model, or scale the image yourself and leave out --rescale"
            )
        return prepared
    found = input_statistics([prepared], [valid])
    low, high = found["p0.1"], found["p99.9"]
    if high <= low:
        log.warning("%s image %s is constant (%.4g): no intensity range to check or rescale", role, path, high)
        return prepared
    if rescale:
        scale = (trained["p99.9"] - trained["p0.1"]) / (high - low)
        log.info("%s image %s rescaled: %.4g..%.4g -> %.4g..%.4g", role, path, low, high, trained["p0.1"],
                 trained["p99.9"])  # fmt: skip
        mapped = (prepared - np.float32(low)) * np.float32(scale) + np.float32(trained["p0.1"])
        return np.clip(mapped, trained["min"], trained["max"]).astype(np.float32)
    problem = range_problem(found, trained, modality)
    if problem:
        max_value = modality.get("max_value")
        scale = (
            f"full intensity {max_value:g}, the model's max_value" if max_value
            else "integer images divided by their type's maximum, float images as they are (0..1)"
        )  # fmt: skip
        raise InputError(
            f"{role} image {path}: {problem}. Store it on the training scale ({scale}), or pass --rescale "
            "(apply: rescale: true) to map its 0.1..99.9th percentile range onto the training range"
        )
    return prepared


@dataclass
class CheckedPair:
    """A pair checked against the model(s) (:func:`check_pair`).

    By slot: the images as stored, their full-resolution masks (None: all
    valid) and their resamplings; ``inputs``: per model, in order, by slot,
    the network inputs (before resampling).
    """

    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray | None]
    resamplings: dict[str, Resampling]
    inputs: list[dict[str, np.ndarray]]


def check_pair(
    model: TrainedModel | ModelEnsemble,
    reference_path: str | Path,
    floating_path: str | Path,
    reference_modality: str,
    pixel_sizes: Mapping[str, float] | None = None,
    masks: str = "auto",
    mask_files: tuple[str | Path | None, str | Path | None] = (None, None),
    rescale: bool = False,
) -> CheckedPair:
    """Read one pair and check it against the model before any network or registration work.

    In order, each an :class:`InputError` naming the file(s) and what to do: the modality and the
    channels (:func:`read_checked`), the pixel sizes (:func:`working_resamplings`), each side at the
    working resolution (:func:`check_size`), the two extents (:func:`check_extents`), the mask files,
    and each network input's intensity range (:func:`prepare_checked`; ``rescale`` maps it instead).
    The size and the intensity range are checked for every model of an ensemble, each against its own
    network and training images.  Arguments as :func:`register_pair`'s.
    """
    members = ModelEnsemble.of(model).members
    first = members[0]
    ref_slot = first.slot(reference_modality)
    flo_slot = first.other(ref_slot)
    paths = {ref_slot: reference_path, flo_slot: floating_path}
    roles = {ref_slot: "reference", flo_slot: "floating"}
    images = {slot: read_checked(paths[slot], first.modalities[slot], roles[slot]) for slot in paths}
    shapes = {slot: image.shape for slot, image in images.items()}
    resamplings = working_resamplings(first, shapes, pixel_sizes, ref_slot)
    for member in members:
        for slot in paths:
            check_size(member, slot, resamplings[slot], paths[slot], roles[slot])
    sizes = {first.slot(key): float(value) for key, value in pixel_sizes.items()} if pixel_sizes else None
    check_extents(shapes, paths, roles, sizes)
    files = {ref_slot: mask_files[0], flo_slot: mask_files[1]}
    full_masks = {slot: image_mask(images[slot], masks, files[slot], paths[slot]) for slot in paths}
    inputs = [
        {
            slot: prepare_checked(member, slot, images[slot], paths[slot], roles[slot], full_masks[slot], rescale)
            for slot in paths
        }
        for member in members
    ]
    return CheckedPair(images, full_masks, resamplings, inputs)


@dataclass
class PairRegistration:
    """What :func:`register_pair` computed: the result (original grids) and the images behind it.

    ``comirs`` are at the working resolution (an ensemble's: every model's
    channels stacked, in the models' order); ``comir_matrix`` is the result's
    transform between them (the CoMIRs' grids), ``resamplings`` how each image
    was brought there (reference, floating); ``masks`` the CoMIRs' valid
    pixels (None: all valid).
    """

    result: RegistrationResult
    reference: np.ndarray
    floating: np.ndarray
    comirs: tuple[np.ndarray, np.ndarray]  # (C, H, W) float32, reference then floating
    comir_matrix: np.ndarray
    resamplings: tuple[Resampling, Resampling]
    masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
    # The calibrated probability that the result is right (nan: no calibration for the method, or an ensemble).
    confidence: float = math.nan

    def valid_fractions(self) -> tuple[float, float]:
        """The fraction of valid CoMIR pixels, reference then floating (1 without a mask)."""
        return tuple(1.0 if m is None else float(np.count_nonzero(m)) / m.size for m in self.masks)


def register_pair(
    model: TrainedModel | ModelEnsemble,
    reference_path: str | Path,
    floating_path: str | Path,
    reference_modality: str,
    method: str = "cascade",
    params: Mapping[str, Any] | None = None,
    inference: Mapping[str, Any] | None = None,
    seed: int = 0,
    threads: int = 1,
    transform: str = "rigid",
    pixel_sizes: Mapping[str, float] | None = None,
    masks: str = "auto",
    mask_files: tuple[str | Path | None, str | Path | None] = (None, None),
    mask_margin_px: float = MASK_MARGIN_PX,
    register_max_px: int | None = REGISTER_MAX_PX,
    rescale: bool = False,
    min_confidence: float | None = None,
) -> PairRegistration:
    """Register the floating image to the reference image through their CoMIRs.

    ``model``: one model, or an ensemble whose models' CoMIRs are stacked and
    registered together by the cascade (:class:`ModelEnsemble`; the
    ``networks`` parameter is set to the number of models; originals for the
    method's keypoints are the first model's network inputs).
    ``reference_modality``: the reference's modality, by slot (``A``/``B``) or
    name; the floating image is of the other.  ``inference``: settings of the
    configuration's ``inference`` section (``tile``, ``margin``, ``pad``,
    ``engine``, ``device``, ``c4_average``, ...); the others take the schema's
    defaults.  ``transform``: rigid, similarity or affine (the method's
    ``transform`` parameter; a rigid-only method with another model is an
    error).  ``pixel_sizes``: the images' pixel sizes by slot or modality name
    (module doc, step 2).  ``masks``: "auto" or "none", for the images without
    a mask file in ``mask_files`` (reference, floating; module doc, step 3);
    ``mask_margin_px``: the masks' shrink for the CoMIRs; ``register_max_px``:
    the largest CoMIR side registered in one piece (module doc, step 5; None:
    any); ``rescale``: map each image's intensity range onto the training
    images' (:func:`prepare_checked`).  Every input and setting is checked
    before any work (:func:`check_settings`, :func:`check_pair`).

    When the model file holds a calibration of the method with these
    parameters (docs/method.md, section 15), the result gets its
    ``confidence``; below the calibration's threshold (or ``min_confidence``,
    which needs a calibration) it is ``failed`` with the reason ``low
    confidence``.  An ensemble has no calibration.
    """
    models = ModelEnsemble.of(model)
    check_settings(inference, register_max_px, mask_margin_px)
    params = models.registration_params(method, with_transform(params, transform))
    calibration = judging_calibration(models, method, params, min_confidence)
    registration = coarse_to_fine(
        make_method(method, params, seed, threads), register_max_px, transform, seed
    )  # stops on bad parameters
    checked = check_pair(models, reference_path, floating_path, reference_modality, pixel_sizes, masks, mask_files,
                         rescale)  # fmt: skip
    ref_slot = models.slot(reference_modality)
    flo_slot = models.other(ref_slot)
    resamplings, full_masks = checked.resamplings, checked.masks
    options = {**section_defaults("inference"), **(inference or {})}
    device = resolve_device(options.pop("device"))
    engine = options.pop("engine")
    with_originals = bool(getattr(registration, "wants_originals", False))
    comirs, comir_masks, originals = [], [], []
    for slot in (ref_slot, flo_slot):
        per_model = []
        for member, inputs in zip(models.members, checked.inputs, strict=True):
            network = inference_network(member.networks[slot], engine, device)
            prepared = resamplings[slot].apply(inputs.pop(slot))  # the checked input, freed once used
            valid = working_mask(full_masks[slot], prepared.shape[1:], 0.0)
            prepared = fill_invalid(np.moveaxis(prepared, 0, -1), valid)
            if with_originals and not per_model:  # the first model's input on the CoMIR's grid, for keypoints
                originals.append(prepared)
            per_model.append(compute_comir(network, np.moveaxis(prepared, -1, 0), device=device, **options))
        comirs.append(per_model[0] if len(per_model) == 1 else np.concatenate(per_model))  # channels: model order
        comir_masks.append(working_mask(full_masks[slot], comirs[-1].shape[1:], mask_margin_px))
    as_image = [c[0] if c.shape[0] == 1 else np.moveaxis(c, 0, -1) for c in comirs]
    extra = {"originals": tuple(originals)} if with_originals else {}
    result = registration.register(*as_image, reference_mask=comir_masks[0], floating_mask=comir_masks[1], **extra)
    confidence = math.nan
    if calibration is not None:
        confidence, result = judged(calibration, result, as_image, comir_masks, seed)
    comir_matrix = result.matrix
    if result.ok:
        result = dataclasses.replace(
            result, matrix=to_original_grids(result.matrix, resamplings[ref_slot], resamplings[flo_slot])
        )
    log.info("%s -> %s: %s %s", floating_path, reference_path, result.status, result.message)
    pair_resamplings = (resamplings[ref_slot], resamplings[flo_slot])
    return PairRegistration(
        result, checked.images[ref_slot], checked.images[flo_slot], (comirs[0], comirs[1]), comir_matrix,
        pair_resamplings,
        (comir_masks[0], comir_masks[1]),
        confidence,
    )  # fmt: skip


def write_calibrated_model(model: str | Path, calibrations: Mapping[str, Calibration], out: str | Path) -> None:
    """Write the model file ``model`` again as ``out`` with ``calibrations`` (by :func:`calibration_key`) inside."""
    payload = torch.load(model, map_location="cpu", weights_only=True)
    payload["calibrations"] = {key: calibration.to_dict() for key, calibration in calibrations.items()}
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)


def judging_calibration(
    model: TrainedModel | ModelEnsemble, method: str, params: Mapping[str, Any] | None, min_confidence: float | None
) -> Calibration | None:
    """The calibration that judges ``method``'s results (with the threshold ``min_confidence`` if given).

    None for an ensemble (:meth:`ModelEnsemble.calibration`).  :class:`InputError` for a ``min_confidence``
    outside [0, 1] or without a calibration to apply it to.
    """
    models = ModelEnsemble.of(model)
    calibration = models.calibration(method, params)
    if min_confidence is None:
        return calibration
    if not 0 <= min_confidence <= 1:
        raise InputError(f"a minimum confidence is a probability in [0, 1], got {min_confidence}")
    if calibration is None and len(models.members) > 1:
        raise InputError(
            f"an ensemble of models ({models.describe()}) has no calibrated confidence; a minimum confidence "
            "needs one model's calibration (rule calibrate_model)"
        )
    if calibration is None:
        only = models.members[0]
        known = ", ".join(sorted(only.calibrations)) or "none"
        raise InputError(
            f"{only.path} has no calibration for {method} with these parameters (calibrated: {known}); "
            "a minimum confidence needs one (rule calibrate_model)"
        )
    return calibration.with_threshold(min_confidence)


def judged(
    calibration: Calibration,
    result: RegistrationResult,
    comirs: list[np.ndarray],
    masks: list[np.ndarray | None],
    seed: int,
) -> tuple[float, RegistrationResult]:
    """The confidence of a result on the CoMIRs, and the result, ``failed`` (low confidence) below the threshold."""
    if not result.ok:
        return 0.0, result
    confidence = calibration.confidence(evidence(*comirs, result.matrix, *masks, seed=seed))
    if calibration.accepts(confidence):
        return confidence, result
    reason = f"{LOW_CONFIDENCE}: {confidence:.3g} below the threshold {calibration.threshold:.3g}; {result.message}"
    return confidence, RegistrationResult.failed(reason, result.seconds, result.metric)


def peak_memory_mb() -> float:
    """The peak resident memory of this process so far (MiB; ``ru_maxrss``, which Linux gives in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def check_new_outputs(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path; :class:`InputError` if it cannot be the outputs' folder.

    Refused: an existing file (not a folder) at ``out_dir`` or above it, a folder that cannot be written
    to, or one that already holds an output (nothing is overwritten).
    """
    out_dir = Path(out_dir)
    existing_above = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing_above is not None and not existing_above.is_dir():
        where = "" if existing_above == out_dir else f" (in the path of {out_dir})"
        raise InputError(f"{existing_above} is a file, not a folder{where}; choose a new output folder")
    if existing_above is not None and not os.access(existing_above, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to {existing_above}; choose an output folder you can write to")
    existing = [name for name in OUTPUTS if (out_dir / name).exists()]
    if existing:
        raise InputError(f"{out_dir} already holds {', '.join(existing)}; choose a new output folder")
    return out_dir


def write_outputs(
    out_dir: str | Path, pair: PairRegistration, reference_path: str | Path, floating_path: str | Path, method: str
) -> list[Path]:
    """Write the outputs of one pair into ``out_dir`` (created; existing outputs are an error). Returns them."""
    out_dir = check_new_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = pair.result
    reference_valid, floating_valid = pair.valid_fractions()
    row = {
        "reference": str(reference_path),
        "floating": str(floating_path),
        "method": method,
        "status": result.status,
        "metric": result.metric,
        "confidence": pair.confidence,
        "seconds": result.seconds,
        **{k: v for k, v in zip(MATRIX_KEYS, np.asarray(result.matrix).ravel())},
        "angle_deg": math.degrees(float(geometry.rotation_angle(result.matrix))),
        "reference_valid": reference_valid,
        "floating_valid": floating_valid,
        "peak_memory_mb": peak_memory_mb(),
        "message": result.message,
    }
    written = []

    def keep(path: Path) -> Path:
        written.append(path)
        return path

    for name, comir in (("comir_reference.tif", pair.comirs[0]), ("comir_floating.tif", pair.comirs[1])):
        write_tiff(keep(out_dir / name), comir[0] if comir.shape[0] == 1 else np.moveaxis(comir, 0, -1))
    for name, mask in (("mask_reference.png", pair.masks[0]), ("mask_floating.png", pair.masks[1])):
        if mask is not None:
            write_png(keep(out_dir / name), mask.astype(np.uint8) * 255)
    if result.ok:
        height, width = pair.reference.shape[:2]
        write_tiff(keep(out_dir / "warped.tif"), warp_to_reference(pair.floating, result.matrix, (height, width)))
        write_text(keep(out_dir / "transform.tfm"), itk_transform_text(result.matrix))
        panel = overlay(pair.reference, pair.floating, pair.comirs, result.matrix, pair.comir_matrix)
        write_png(keep(out_dir / "overlay.png"), panel)
    write_csv(keep(out_dir / "transform.csv"), pd.DataFrame([row]))  # last: its presence means the pair is done
    return written


__all__ = [
    "MAX_EXTENT_RATIO",
    "MIN_REGISTER_PX",
    "OUTPUTS",
    "RANGE_FACTOR",
    "SHARED_MODALITY_KEYS",
    "CheckedPair",
    "ModelEnsemble",
    "PairRegistration",
    "TrainedModel",
    "check_extents",
    "check_new_outputs",
    "check_pair",
    "check_settings",
    "check_size",
    "itk_transform_text",
    "judging_calibration",
    "overlay",
    "peak_memory_mb",
    "prepare_checked",
    "range_problem",
    "read_checked",
    "register_pair",
    "warp_to_reference",
    "write_calibrated_model",
    "write_outputs",
]

"""One pair registered through the CoMIRs of a trained model or ensemble (:mod:`comir.apply`, steps 2 to 5).

:func:`register_pair` checks the pair and the settings (:mod:`comir.apply.checks`), computes
the CoMIRs at the working resolution, registers them and reports the transform in the
original pixel grids, judged by the model's calibrated confidence where it has one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comir.apply.checks import check_pair, check_settings
from comir.apply.model import ModelEnsemble, TrainedModel
from comir.calibration import LOW_CONFIDENCE, Calibration
from comir.config.schema import section_defaults
from comir.imaging.masks import MASK_MARGIN_PX, working_mask
from comir.imaging.resampling import Resampling, to_original_grids
from comir.inference.engines import inference_network
from comir.inference.tiling import compute_comir
from comir.io import InputError
from comir.network.device import resolve_device
from comir.register import make_method, with_transform
from comir.register.base import RegistrationResult, fill_invalid
from comir.register.coarse_to_fine import REGISTER_MAX_PX, coarse_to_fine
from comir.register.confidence import evidence

log = logging.getLogger(__name__)


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
    (:mod:`comir.apply`, step 2).  ``masks``: "auto" or "none", for the images without
    a mask file in ``mask_files`` (reference, floating; :mod:`comir.apply`, step 3);
    ``mask_margin_px``: the masks' shrink for the CoMIRs; ``register_max_px``:
    the largest CoMIR side registered in one piece (:mod:`comir.apply`, step 5; None:
    any); ``rescale``: map each image's intensity range onto the training
    images' (:func:`comir.apply.checks.prepare_checked`).  Every input and setting is checked
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

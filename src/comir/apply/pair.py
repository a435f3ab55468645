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

from comir import geometry
from comir.apply.checks import check_pair, check_settings
from comir.apply.model import ModelEnsemble, TrainedModel
from comir.calibration import LOW_CONFIDENCE, Calibration
from comir.config.schema import section_defaults
from comir.deformation.affine import field_between_grids
from comir.deformation.warp import warp_image
from comir.imaging.masks import MASK_MARGIN_PX, working_mask
from comir.imaging.resampling import Resampling, to_original_grids
from comir.inference.engines import inference_network
from comir.inference.tiling import compute_comir
from comir.io import InputError
from comir.network.device import resolve_device
from comir.register import MODEL_METHODS, make_method, with_model, with_transform
from comir.register.base import OK, Registration, RegistrationResult, fill_invalid
from comir.register.coarse_to_fine import REGISTER_MAX_PX, coarse_to_fine
from comir.register.confidence import evidence
from comir.register.deformable.base import DeformableResult
from comir.register.deformable.stage import DeformableStage

log = logging.getLogger(__name__)

#: ``deformable_status`` of a pair whose rigid result failed: its deformable stage did not run.
SKIPPED = "skipped"


@dataclass
class PairRegistration:
    """What :func:`register_pair` computed: the result (original grids) and the images behind it.

    ``comirs`` are at the working resolution (an ensemble's: every model's
    channels stacked, in the models' order); ``comir_matrix`` is the result's
    transform between them (the CoMIRs' grids), ``resamplings`` how each image
    was brought there (reference, floating); ``masks`` the CoMIRs' valid
    pixels (None: all valid).

    With a ``deformable`` stage, ``deformed`` is its result on the original grids (``field``: the
    total field from the reference image's pixels into the floating image's; ``warped``: the
    floating image as stored, float32, warped by it) and ``comir_field`` its field between the
    CoMIRs' grids; a failed stage's result is the stage's own (the zero field, on the CoMIRs'
    grid), and both are None where the rigid result failed (the stage does not run).
    ``result`` stays the rigid result, its message followed by the stage's.

    Without a stage, a method that gives a field of its own (ACCR with ``field: true``,
    ``result.field``) fills ``deformed`` and ``comir_field`` the same way (:func:`with_method_field`),
    ``field_method`` naming the method; ``result.field`` is then that field on the original grids.
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
    deformable: DeformableStage | None = None
    deformed: DeformableResult | None = None
    comir_field: np.ndarray | None = None
    # The registration method whose own field is ``deformed`` (no deformable stage), else None.
    field_method: str | None = None

    def valid_fractions(self) -> tuple[float, float]:
        """The fraction of valid CoMIR pixels, reference then floating (1 without a mask)."""
        return tuple(1.0 if m is None else float(np.count_nonzero(m)) / m.size for m in self.masks)

    @property
    def deformable_failed(self) -> bool:
        """Whether a deformable stage ran and failed (the rigid result is kept)."""
        return self.deformed is not None and not self.deformed.ok

    def deformable_columns(self) -> dict[str, Any]:
        """The deformable stage's columns of the pair's records; none without a stage or a method's field.

        ``deformable_method`` (the stage's method, or :attr:`field_method`), ``deformable_status``
        (``ok``, ``failed``, or :data:`SKIPPED` where the rigid result failed),
        ``deformable_seconds`` (0 for a method's own field: its time is the method's), and of a
        successful stage's total field on the original grids ``folded_fraction``, ``jacobian_min``,
        ``jacobian_max`` (the Jacobian determinant's range; NaN otherwise).

        Returns
        -------
        dict of str to Any
            The columns, in this order; empty without a deformable stage or a method's field.
        """
        if self.deformable is None and self.field_method is None:
            return {}
        deformed = self.deformed
        ok = deformed is not None and deformed.ok
        low, high = deformed.jacobian_range if ok else (math.nan, math.nan)
        return {
            "deformable_method": self.field_method if self.deformable is None else self.deformable.method,
            "deformable_status": SKIPPED if deformed is None else deformed.status,
            "deformable_seconds": math.nan if deformed is None else deformed.seconds,
            "folded_fraction": deformed.folded_fraction if ok else math.nan,
            "jacobian_min": low,
            "jacobian_max": high,
        }


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
    *,
    deformable: DeformableStage | None = None,
) -> PairRegistration:
    """Register the floating image to the reference image through their CoMIRs.

    Every input and setting is checked before any work (:func:`check_settings`, :func:`check_pair`).

    When the model file holds a calibration of the method with these
    parameters (docs/method.md, section 15), the result gets its
    ``confidence``; below the calibration's threshold (or ``min_confidence``,
    which needs a calibration) it is ``failed`` with the reason ``low
    confidence``.  An ensemble has no calibration.

    Parameters
    ----------
    model : TrainedModel or ModelEnsemble
        One model, or an ensemble whose models' CoMIRs are stacked and registered together by the cascade
        (:class:`ModelEnsemble`; the ``networks`` parameter is set to the number of models; originals for
        the method's keypoints are the first model's network inputs).
    reference_path : str or pathlib.Path
        The reference image.
    floating_path : str or pathlib.Path
        The floating image.
    reference_modality : str
        The reference's modality, by slot (``A``/``B``) or name; the floating image is of the other.
    method : str, optional
        The registration method (:func:`comir.register.make_method`). Default ``"cascade"``. A method
        with a model of its own (:data:`comir.register.MODEL_METHODS`: ``accr``, whose model file is
        ``model``) registers the networks' inputs instead of the CoMIRs, without ``register_max_px``'s
        levels (it has its own ``max_px``).
    params : Mapping[str, Any] or None, optional
        The method's parameters, over :data:`comir.apply.model.APPLY_DEFAULT_PARAMS`
        (:meth:`ModelEnsemble.registration_params`). Default None.
    inference : Mapping[str, Any] or None, optional
        Settings of the configuration's ``inference`` section (``tile``, ``margin``, ``pad``, ``engine``,
        ``device``, ``c4_average``, ...); the others take the schema's defaults. Default None.
    seed : int, optional
        Seed of the registration method and of the confidence's evidence. Default 0.
    threads : int, optional
        Threads given to the registration method. Default 1.
    transform : str, optional
        ``"rigid"``, ``"similarity"`` or ``"affine"`` (the method's ``transform`` parameter; a rigid-only
        method with another model is an error). Default ``"rigid"``.
    pixel_sizes : Mapping[str, float] or None, optional
        The images' pixel sizes by slot or modality name (:mod:`comir.apply`, step 2); None: no
        resampling. Default None.
    masks : str, optional
        ``"auto"`` or ``"none"``, for the images without a mask file in ``mask_files``
        (:mod:`comir.apply`, step 3). Default ``"auto"``.
    mask_files : tuple, optional
        Mask files of the reference and the floating image (None: none). Default ``(None, None)``.
    mask_margin_px : float, optional
        The masks' shrink for the CoMIRs, px at the working resolution.
        Default :data:`comir.imaging.masks.MASK_MARGIN_PX`.
    register_max_px : int or None, optional
        The largest CoMIR side registered in one piece (:mod:`comir.apply`, step 5; None: any).
        Default :data:`comir.register.coarse_to_fine.REGISTER_MAX_PX`.
    rescale : bool, optional
        Map each image's intensity range onto the training images'
        (:func:`comir.apply.checks.prepare_checked`). Default False.
    min_confidence : float or None, optional
        A threshold in [0, 1] replacing the calibration's; needs a calibration. Default None.
    deformable : DeformableStage or None, optional
        A deformable stage after an ``ok`` result (:func:`deform_pair`), from its matrix at the
        working resolution: on the CoMIRs, or on the networks' inputs for a method meant for the
        original images (``on_originals``: ``elastix_bspline``). It replaces a method's own field
        (ACCR's with ``field: true``), which without a stage is the pair's deformed result
        (:func:`with_method_field`). Default None.

    Returns
    -------
    PairRegistration
        The result, its matrix in the original pixel grids when it is ``ok``, and the images behind it.

    Raises
    ------
    comir.io.InputError
        If a setting, an image, a mask file or ``min_confidence`` fails its check, or several models are
        given with a method that cannot register them together.
    ValueError
        If ``transform`` or the method's parameters are invalid, or a deformable stage's parameter
        value (checked when the stage runs, after the rigid registration).
    """
    models = ModelEnsemble.of(model)
    check_settings(inference, register_max_px, mask_margin_px)
    params = models.registration_params(method, with_transform(params, transform))
    calibration = judging_calibration(models, method, params, min_confidence)
    registration = pair_method(models, method, params, reference_modality, seed, threads, transform, register_max_px)
    network_input = method in MODEL_METHODS  # it registers the networks' inputs, not the CoMIRs
    stage_originals = deformable is not None and deformable.on_originals
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
            # The first model's input on the CoMIR's grid, for a method that registers the originals.
            if (with_originals or network_input or stage_originals) and not per_model:
                originals.append(prepared)
            per_model.append(compute_comir(network, np.moveaxis(prepared, -1, 0), device=device, **options))
        comirs.append(per_model[0] if len(per_model) == 1 else np.concatenate(per_model))  # channels: model order
        comir_masks.append(working_mask(full_masks[slot], comirs[-1].shape[1:], mask_margin_px))
    as_image = [c[0] if c.shape[0] == 1 else np.moveaxis(c, 0, -1) for c in comirs]
    extra = {"originals": tuple(originals)} if with_originals else {}
    registered = originals if network_input else as_image
    result = registration.register(*registered, reference_mask=comir_masks[0], floating_mask=comir_masks[1], **extra)
    confidence = math.nan
    if calibration is not None:
        confidence, result = judged(calibration, result, as_image, comir_masks, seed)
    comir_matrix = result.matrix
    if result.ok:
        result = dataclasses.replace(
            result, matrix=to_original_grids(result.matrix, resamplings[ref_slot], resamplings[flo_slot])
        )
    log.info("%s -> %s: %s %s", floating_path, reference_path, result.status, result.message)
    pair = PairRegistration(
        result, checked.images[ref_slot], checked.images[flo_slot], (comirs[0], comirs[1]), comir_matrix,
        (resamplings[ref_slot], resamplings[flo_slot]),
        (comir_masks[0], comir_masks[1]),
        confidence,
    )  # fmt: skip
    if deformable is not None:  # the stage's field replaces the method's own (working grids: dropped)
        pair = dataclasses.replace(pair, result=dataclasses.replace(pair.result, field=None))
        return deform_pair(pair, deformable, originals if stage_originals else as_image)
    gives_field = getattr(registration, "field", False) is True  # ACCR with field: true, failed results too
    return with_method_field(pair, method) if gives_field or result.field is not None else pair


def with_method_field(pair: PairRegistration, method: str) -> PairRegistration:
    """``pair`` with its method's own field (``pair.result.field``, working grids) as its deformed result.

    The field is carried to the original grids (:func:`field_on_original_grids`), where it becomes
    ``result.field`` and ``deformed.field``, the floating image as stored is warped by it, and the
    working field is ``comir_field``; the outputs then hold it as a deformable stage's
    (:func:`comir.apply.outputs.write_deformable`). ``deformed.seconds`` is 0: the field's time is
    the method's. A failed result has no field: only ``field_method`` is set, and the records say
    ``skipped`` as for a deformable stage after a failed rigid result.

    Parameters
    ----------
    pair : PairRegistration
        A result of :func:`register_pair` by a method that gives a field (``result.field`` on the
        working grids where it is ``ok``).
    method : str
        The registration method's name (``field_method``, the ``deformable_method`` column).

    Returns
    -------
    PairRegistration
        ``pair`` with ``field_method`` set and, where ``ok``, ``result.field``, ``deformed`` and
        ``comir_field``.
    """
    pair = dataclasses.replace(pair, field_method=method)
    working = pair.result.field
    if working is None:
        return pair
    field = field_on_original_grids(working, *pair.resamplings)
    deformed = DeformableResult(field, warp_image(pair.floating, field), OK, message=f"{method}'s field")
    return dataclasses.replace(
        pair, result=dataclasses.replace(pair.result, field=field), deformed=deformed, comir_field=working
    )


def deform_pair(pair: PairRegistration, stage: DeformableStage, images: list[np.ndarray]) -> PairRegistration:
    """``pair`` refined by a deformable stage from its rigid result; a failure keeps the rigid result and says so.

    The stage registers ``images`` (the CoMIRs, or the networks' inputs, at the working resolution)
    from the rigid result's matrix between them (``pair.comir_matrix``), where ``pair.masks`` (the
    CoMIRs' valid pixels, as the rigid method had them) are valid; its total field is moved to
    the original grids (:func:`field_on_original_grids`) and the floating image as stored is warped
    by it. A rigid result that failed is not refined. The stage's message follows the rigid one in
    ``result.message``: ``<method>: ...``, or ``<method> failed: ...; the rigid result is kept``.

    Parameters
    ----------
    pair : PairRegistration
        The rigid registration (:func:`register_pair` without a stage).
    stage : DeformableStage
        The deformable stage.
    images : list of numpy.ndarray
        The reference and floating images it registers, ``(H, W)`` or ``(H, W, C)``, on the grids of
        ``pair.comir_matrix``.

    Returns
    -------
    PairRegistration
        ``pair`` with ``deformable``, ``deformed``, ``comir_field`` and the message set.

    Raises
    ------
    ValueError
        For a parameter value the stage's method rejects.
    """
    pair = dataclasses.replace(pair, deformable=stage)
    result = pair.result
    if not result.ok:
        return pair
    staged = stage.register(images[0], images[1], pair.comir_matrix, *pair.masks)
    if staged.ok:
        field = field_on_original_grids(staged.field, *pair.resamplings)
        deformed = DeformableResult(
            field, warp_image(pair.floating, field), OK, staged.metric, staged.seconds, staged.message
        )
        note = f"{stage.method}: {staged.message}"
    else:
        deformed = staged
        note = f"{stage.method} failed: {staged.message}; the rigid result is kept"
    message = "; ".join(part for part in (result.message, note) if part)
    log.info("deformable %s: %s %s", stage.method, staged.status, staged.message)
    return dataclasses.replace(
        pair, result=dataclasses.replace(result, message=message), deformed=deformed, comir_field=staged.field
    )


def field_on_original_grids(field: np.ndarray, reference: Resampling, floating: Resampling) -> np.ndarray:
    """A total field between the working grids as the same mapping between the original grids.

    The field of ``x -> F^-1(phi(R x))``, with ``phi`` the working grids' point map, ``R`` the
    reference's and ``F`` the floating image's resampling (:attr:`Resampling.matrix`, original ->
    working pixels): the counterpart of :func:`comir.imaging.resampling.to_original_grids` for a
    field. Images used as they are (both resamplings the identity) give ``field`` itself.

    Parameters
    ----------
    field : numpy.ndarray
        ``(h, w, 2)`` backward field on the reference's working grid, into the floating image's
        working grid.
    reference : Resampling
        The reference image's resampling.
    floating : Resampling
        The floating image's resampling.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 2)`` float32 on the reference's original grid, into the floating image's original
        pixels (``field`` bilinear between its grid points).
    """
    if reference.identity and floating.identity:
        return field
    return field_between_grids(field, reference.matrix, geometry.invert(floating.matrix), reference.shape)


def pair_method(
    models: ModelEnsemble,
    method: str,
    params: Mapping[str, Any],
    reference_modality: str,
    seed: int,
    threads: int,
    transform: str,
    register_max_px: int | None,
) -> Registration:
    """What registers a pair's images (:mod:`comir.apply`, step 5); made before any work, it stops on bad parameters.

    A method with a model of its own (:data:`comir.register.MODEL_METHODS`: ACCR, whose model file
    is the first model's) gets that file and the reference's slot (:func:`comir.register.with_model`)
    and registers the networks' inputs at its own working level; any other method registers the
    CoMIRs, at ``register_max_px``'s levels (:func:`comir.register.coarse_to_fine.coarse_to_fine`).

    Parameters
    ----------
    models : ModelEnsemble
        The model(s).
    method : str
        The registration method.
    params : Mapping[str, Any]
        Its parameters (:meth:`ModelEnsemble.registration_params`).
    reference_modality : str
        The reference's modality, by slot or name.
    seed, threads : int
        The method's seed and threads.
    transform : str
        The transform model of the block fit at full resolution.
    register_max_px : int or None
        The largest CoMIR side registered in one piece (None: any).

    Returns
    -------
    Registration
        The method, wrapped for large CoMIRs where it registers them.

    Raises
    ------
    ValueError
        For an unknown method or bad parameters (:func:`comir.register.make_method`).
    """
    if method in MODEL_METHODS:
        given = with_model(params, models.members[0].path, models.slot(reference_modality))
        return make_method(method, given, seed, threads)
    return coarse_to_fine(make_method(method, params, seed, threads), register_max_px, transform, seed)


def judging_calibration(
    model: TrainedModel | ModelEnsemble, method: str, params: Mapping[str, Any] | None, min_confidence: float | None
) -> Calibration | None:
    """The calibration that judges ``method``'s results (with the threshold ``min_confidence`` if given).

    None for an ensemble (:meth:`ModelEnsemble.calibration`).

    Parameters
    ----------
    model : TrainedModel or ModelEnsemble
        The model(s).
    method : str
        The registration method.
    params : Mapping[str, Any] or None
        The method's parameters as registered (:meth:`ModelEnsemble.registration_params`).
    min_confidence : float or None
        A threshold in [0, 1] replacing the calibration's; None: the calibration's own.

    Returns
    -------
    comir.calibration.Calibration or None
        The calibration, with ``min_confidence`` as its threshold if given; None when there is none.

    Raises
    ------
    comir.io.InputError
        If ``min_confidence`` is outside [0, 1] or there is no calibration to apply it to.
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
    """The confidence of a result on the CoMIRs, and the result, ``failed`` (low confidence) below the threshold.

    Parameters
    ----------
    calibration : comir.calibration.Calibration
        The calibration that judges.
    result : comir.register.base.RegistrationResult
        The registration's result, between the CoMIRs' grids.
    comirs : list[numpy.ndarray]
        The reference and floating CoMIRs as registered (``(H, W)`` or ``(H, W, C)``).
    masks : list[numpy.ndarray or None]
        Their valid-pixel masks (None: all valid).
    seed : int
        Seed of the evidence (:func:`comir.register.confidence.evidence`).

    Returns
    -------
    confidence : float
        The calibrated probability that the result is right; 0 for a result that is not ``ok``.
    result : comir.register.base.RegistrationResult
        ``result`` as it is, or ``failed`` with the reason ``low confidence`` below the threshold.
    """
    if not result.ok:
        return 0.0, result
    confidence = calibration.confidence(evidence(*comirs, result.matrix, *masks, seed=seed))
    if calibration.accepts(confidence):
        return confidence, result
    reason = f"{LOW_CONFIDENCE}: {confidence:.3g} below the threshold {calibration.threshold:.3g}; {result.message}"
    return confidence, RegistrationResult.failed(reason, result.seconds, result.metric)

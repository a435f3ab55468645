"""SimpleITK's diffeomorphic demons on a pyramid, for CoMIRs (:mod:`comir.register.deformable`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from comir.deformation.affine import compose_affine
from comir.register.base import RegistrationFailure, require_variation, sitk_image
from comir.register.deformable.base import (
    DeformableResult,
    Masks,
    moved_mask,
    on_reference_grid,
    positive_float,
    positive_int,
    pyramid,
    run_method,
)


def _standardised(image: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Zero mean, unit standard deviation over the ``valid`` pixels (all for None), 0 (the mean) elsewhere.

    The demons compare intensities, and CoMIRs of two modalities differ in scale.
    """
    image = np.asarray(image, dtype=np.float64)
    values = image if valid is None else image[valid]
    standardised = (image - values.mean()) / values.std()
    return (standardised if valid is None else np.where(valid, standardised, 0.0)).astype(np.float32)


def _shrunk(image: Any, shrink: int, sigma: float) -> Any:
    """A pyramid level: Gaussian smoothing (sigma in pixels of ``image``), then every ``shrink``-th pixel."""
    import SimpleITK as sitk

    if sigma > 0:
        smoother = sitk.SmoothingRecursiveGaussianImageFilter()
        smoother.SetSigma(float(sigma))
        smoother.SetNumberOfThreads(1)
        image = smoother.Execute(image)
    if shrink > 1:
        shrinker = sitk.ShrinkImageFilter()
        shrinker.SetShrinkFactors([int(shrink)] * 2)
        shrinker.SetNumberOfThreads(1)
        image = shrinker.Execute(image)  # spacing `shrink`: physical units stay full-resolution pixels
    return image


def _field_on(field: Any | None, grid: Any) -> Any:
    """A displacement-field image resampled (linearly) on the geometry of ``grid``; zero without ``field``."""
    import SimpleITK as sitk

    if field is None:
        zero = sitk.Image(grid.GetSize(), sitk.sitkVectorFloat64, 2)
        zero.CopyInformation(grid)
        return zero
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(grid)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetOutputPixelType(sitk.sitkVectorFloat64)
    resampler.SetUseNearestNeighborExtrapolator(True)  # a coarse level's grid ends before the fine one's
    resampler.SetNumberOfThreads(1)
    return resampler.Execute(field)


def check_demons_params(
    *,
    iterations: int,
    smoothing_sigma: float,
    update_sigma: float,
    max_step_px: float,
    shrink_factors: Sequence[int],
    smoothing_sigmas: Sequence[float] | None,
) -> tuple[int, float, float, float, list[int], list[float]]:
    """:func:`demons_register`'s parameters checked, as it uses them (no image needed: at parse time too).

    Parameters
    ----------
    iterations, smoothing_sigma, update_sigma, max_step_px, shrink_factors, smoothing_sigmas : Any
        :func:`demons_register`'s parameters of these names.

    Returns
    -------
    tuple
        ``(iterations, smoothing sigma, update sigma, max step, shrink factors, smoothing sigmas)``.

    Raises
    ------
    ValueError
        For a parameter outside its range (:func:`demons_register`).
    """
    shrinks, sigmas = pyramid(shrink_factors, smoothing_sigmas)
    return (
        positive_int("iterations", iterations),
        positive_float("smoothing_sigma", smoothing_sigma),
        positive_float("update_sigma", update_sigma, allow_zero=True),
        positive_float("max_step_px", max_step_px),
        shrinks,
        sigmas,
    )


def demons_register(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    floating_mask: np.ndarray | None = None,
    *,
    iterations: int = 100,
    smoothing_sigma: float = 1.5,
    update_sigma: float = 0.0,
    max_step_px: float = 2.0,
    shrink_factors: Sequence[int] = (2, 1),
    smoothing_sigmas: Sequence[float] | None = None,
) -> DeformableResult:
    """Monomodal diffeomorphic demons registration with SimpleITK (for CoMIRs).

    The floating image is first moved onto the reference grid by the initial matrix (cubic
    interpolation, edge pixels repeated beyond the image, since demons have no mask), both images
    are standardised (zero mean, unit deviation) and SimpleITK's
    ``DiffeomorphicDemonsRegistrationFilter`` (symmetric forces) estimates the residual field on
    a pyramid (``shrink_factors``, Gaussian ``smoothing_sigmas`` in full-resolution pixels, default
    half the shrink factor), each level starting from the coarser level's field.  The total field
    is :func:`comir.deformation.affine.compose_affine` of the matrix and the residual.  Updates are
    composed through an exponential, so the field is diffeomorphic (does not fold) as long as the
    smoothing keeps it regular.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The pair (module doc).
    initial_matrix : numpy.ndarray, optional
        2x3 floating -> reference start; ``None`` (default): centre onto centre.
    reference_mask, floating_mask : numpy.ndarray, optional
        Valid-pixel masks (``(H, W)``, non-zero = valid). The demons filter has no masks: where
        either image is invalid (the floating mask moved by the initial matrix), both standardised
        images are set to 0, so their difference, the demons' force, is zero there and the field
        comes from its smoothing. Default None: every pixel.
    iterations : int, optional
        Demons iterations per level (>= 1). Default 100.
    smoothing_sigma : float, optional
        Standard deviation of the Gaussian smoothing of the displacement field after each
        iteration, in pixels of the level (> 0): the elastic regularisation. Default 1.5.
    update_sigma : float, optional
        Standard deviation of the smoothing of each update (the fluid regularisation), pixels of
        the level; 0 (default) smooths no update.
    max_step_px : float, optional
        The largest update length per iteration, physical pixels (> 0). Default 2.
    shrink_factors : sequence of int, optional
        The pyramid, coarse to fine. Default ``(2, 1)``.
    smoothing_sigmas : sequence of float, optional
        Gaussian sigma of each level's images, pixels of the full image; None (default): half the
        shrink factor, 0 at full resolution.

    Returns
    -------
    DeformableResult
        ``metric``: the demons' mean squared difference of the standardised images at the end;
        ``status="failed"`` (zero field) for a pair SimpleITK cannot register.

    Raises
    ------
    ValueError
        For malformed images, a malformed ``initial_matrix`` or a parameter outside its range.
    """
    iterations, sigma, update, step, shrinks, sigmas = check_demons_params(
        iterations=iterations, smoothing_sigma=smoothing_sigma, update_sigma=update_sigma, max_step_px=max_step_px,
        shrink_factors=shrink_factors, smoothing_sigmas=smoothing_sigmas,
    )  # fmt: skip

    def body(ref: np.ndarray, flo: np.ndarray, matrix: np.ndarray, masks: Masks) -> tuple[np.ndarray, float, str]:
        import SimpleITK as sitk

        moved, _ = on_reference_grid(flo, matrix, ref.shape, mode="nearest")
        valid = None
        if masks[0] is not None or masks[1] is not None:
            valid = np.ones(ref.shape, bool) if masks[0] is None else masks[0].copy()
            if masks[1] is not None:
                valid &= moved_mask(masks[1], matrix, ref.shape)
            if not valid.any():
                raise RegistrationFailure("no pixel is valid in both images after the start")
        # The start may have moved only a constant part onto the reference.
        require_variation(*((ref, moved) if valid is None else (ref[valid], moved[valid])), (valid, valid))
        fixed, moving = sitk_image(_standardised(ref, valid)), sitk_image(_standardised(moved, valid))
        field, demons = None, None
        for shrink, level_sigma in zip(shrinks, sigmas, strict=True):
            fixed_level, moving_level = _shrunk(fixed, shrink, level_sigma), _shrunk(moving, shrink, level_sigma)
            demons = sitk.DiffeomorphicDemonsRegistrationFilter()
            demons.SetNumberOfThreads(1)
            demons.SetNumberOfIterations(iterations)
            demons.SetStandardDeviations(sigma)
            demons.SetSmoothDisplacementField(True)
            demons.SetSmoothUpdateField(update > 0)
            if update > 0:
                demons.SetUpdateFieldStandardDeviations(update)
            demons.SetMaximumUpdateStepLength(step)
            demons.SetUseGradientType(demons.Symmetric)
            field = demons.Execute(fixed_level, moving_level, _field_on(field, fixed_level))
        residual = sitk.GetArrayFromImage(_field_on(field, fixed))  # the finest level, on the reference grid
        note = (
            f"SimpleITK diffeomorphic demons, levels {'/'.join(map(str, shrinks))}; "
            f"{demons.GetElapsedIterations()} iterations at full resolution, RMS change {demons.GetRMSChange():.3g}"
        )
        return compose_affine(matrix, residual), float(demons.GetMetric()), note

    return run_method(reference, floating, initial_matrix, True, body, (reference_mask, floating_mask))


__all__ = ["check_demons_params", "demons_register"]

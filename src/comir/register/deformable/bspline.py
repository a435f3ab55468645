"""A cubic B-spline transform with a monomodal metric, for CoMIRs (:mod:`comir.register.deformable`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from comir.deformation.sitk import sitk_to_field
from comir.register.base import sitk_image
from comir.register.deformable.base import (
    DeformableResult,
    Masks,
    checked_seed,
    positive_float,
    positive_int,
    pyramid,
    run_method,
    sitk_affine,
)

#: The monomodal metrics of :func:`bspline_register`.
BSPLINE_METRICS = ("correlation", "mean_squares")


def check_bspline_params(
    *,
    grid_spacing_px: float,
    metric: str,
    iterations: int,
    shrink_factors: Sequence[int],
    smoothing_sigmas: Sequence[float] | None,
    sampling_fraction: float,
    seed: int,
) -> tuple[float, int, list[int], list[float], float, int]:
    """:func:`bspline_register`'s parameters checked, as it uses them (no image needed: at parse time too).

    Parameters
    ----------
    grid_spacing_px, metric, iterations, shrink_factors, smoothing_sigmas, sampling_fraction, seed : Any
        :func:`bspline_register`'s parameters of these names.

    Returns
    -------
    tuple
        ``(spacing, iterations, shrink factors, smoothing sigmas, sampling fraction, seed)``.

    Raises
    ------
    ValueError
        For a parameter outside its range (:func:`bspline_register`).
    """
    spacing = positive_float("grid_spacing_px", grid_spacing_px)
    if metric not in BSPLINE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(BSPLINE_METRICS)}, got {metric!r}")
    shrinks, sigmas = pyramid(shrink_factors, smoothing_sigmas)
    fraction = positive_float("sampling_fraction", sampling_fraction)
    if fraction > 1:
        raise ValueError(f"sampling_fraction must be in (0, 1], got {sampling_fraction!r}")
    return spacing, positive_int("iterations", iterations), shrinks, sigmas, fraction, checked_seed(seed)


def bspline_register(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    floating_mask: np.ndarray | None = None,
    *,
    grid_spacing_px: float = 32.0,
    metric: str = "correlation",
    iterations: int = 100,
    shrink_factors: Sequence[int] = (2, 1),
    smoothing_sigmas: Sequence[float] | None = None,
    sampling_fraction: float = 1.0,
    seed: int = 0,
) -> DeformableResult:
    """Monomodal cubic B-spline registration with SimpleITK (for CoMIRs).

    The B-spline transform lives on the reference grid (``BSplineTransformInitializer``, a mesh
    of ``round(size / grid_spacing_px)`` cells per axis, at least 1) and is composed with the
    initial matrix as SimpleITK's moving initial transform, so the floating image is interpolated
    once: the total mapping is ``x -> inverse(initial)(x + b(x))``.  L-BFGS-B optimises the
    control points (``iterations`` per level, gradient tolerance 1e-5) over a pyramid of
    ``shrink_factors`` with Gaussian ``smoothing_sigmas`` (px; default half the shrink factor,
    none at full resolution).  Linear interpolation.  SimpleITK's registration framework has no
    bending-energy term: smoothness comes from the grid spacing alone.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The pair (module doc).
    initial_matrix : numpy.ndarray, optional
        2x3 floating -> reference start; ``None`` (default): centre onto centre.
    reference_mask, floating_mask : numpy.ndarray, optional
        Valid-pixel masks (``(H, W)``, non-zero = valid): the metric's fixed and moving masks, so
        only pixels valid in both images count. Default None: every pixel.
    grid_spacing_px : float, optional
        Approximate control-point spacing, pixels (> 0). Default 32.
    metric : str, optional
        ``"correlation"`` (normalised cross-correlation, robust to a linear intensity change) or
        ``"mean_squares"``. Default ``"correlation"``.
    iterations : int, optional
        L-BFGS-B iterations per pyramid level (>= 1). Default 100.
    shrink_factors : sequence of int, optional
        The pyramid, coarse to fine. Default ``(2, 1)``.
    smoothing_sigmas : sequence of float, optional
        Gaussian sigma per level, pixels of the full image; None (default): half the shrink factor,
        0 at full resolution.
    sampling_fraction : float, optional
        Fraction of reference pixels sampled per metric evaluation, in ``(0, 1]``; 1 (default) uses
        every pixel (deterministic, ``seed`` unused).
    seed : int, optional
        Seed of the random sampling when ``sampling_fraction`` < 1. Default 0.

    Returns
    -------
    DeformableResult
        ``metric``: SimpleITK's final metric value (lower is better); ``status="failed"`` (zero
        field) for a pair SimpleITK cannot register.

    Raises
    ------
    ValueError
        For malformed images, a malformed ``initial_matrix`` or a parameter outside its range.
    """
    spacing, iterations, shrinks, sigmas, fraction, seed = check_bspline_params(
        grid_spacing_px=grid_spacing_px, metric=metric, iterations=iterations, shrink_factors=shrink_factors,
        smoothing_sigmas=smoothing_sigmas, sampling_fraction=sampling_fraction, seed=seed,
    )  # fmt: skip

    def body(ref: np.ndarray, flo: np.ndarray, matrix: np.ndarray, masks: Masks) -> tuple[np.ndarray, float, str]:
        import SimpleITK as sitk

        fixed, moving = sitk_image(ref), sitk_image(flo)
        mesh = [max(1, round(size / spacing)) for size in (ref.shape[1], ref.shape[0])]
        bspline = sitk.BSplineTransformInitializer(fixed, mesh, 3)
        method = sitk.ImageRegistrationMethod()
        method.SetNumberOfThreads(1)  # reproducible sums (module doc)
        if metric == "correlation":
            method.SetMetricAsCorrelation()
        else:
            method.SetMetricAsMeanSquares()
        if fraction < 1:
            method.SetMetricSamplingStrategy(method.RANDOM)
            method.SetMetricSamplingPercentage(fraction, seed % 2**32)
        else:
            method.SetMetricSamplingStrategy(method.NONE)
        if masks[0] is not None:
            method.SetMetricFixedMask(sitk_image(masks[0], np.uint8))
        if masks[1] is not None:
            method.SetMetricMovingMask(sitk_image(masks[1], np.uint8))
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5,
            numberOfIterations=iterations,
            maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=4 * iterations,
            costFunctionConvergenceFactor=1e7,
        )
        method.SetShrinkFactorsPerLevel(shrinks)
        method.SetSmoothingSigmasPerLevel(sigmas)
        affine = sitk_affine(matrix)
        method.SetMovingInitialTransform(affine)
        method.SetInitialTransform(bspline, inPlace=True)
        method.Execute(fixed, moving)
        # CompositeTransform applies its last transform first: x -> affine(bspline(x)).
        field = sitk_to_field(sitk.CompositeTransform([affine, bspline]), ref.shape)
        note = (
            f"SimpleITK B-spline, mesh {mesh[0]}x{mesh[1]}, {metric}; {method.GetOptimizerStopConditionDescription()}"
        )
        return field, float(method.GetMetricValue()), note

    return run_method(reference, floating, initial_matrix, True, body, (reference_mask, floating_mask))


__all__ = ["BSPLINE_METRICS", "bspline_register", "check_bspline_params"]

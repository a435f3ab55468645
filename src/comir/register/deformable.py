"""Deformable registration: a dense displacement field from a starting floating -> reference matrix.

Three methods, one result (:class:`DeformableResult`):

* :func:`bspline_register`: a cubic B-spline transform (SimpleITK ``BSplineTransformInitializer``
  and ``ImageRegistrationMethod``, L-BFGS-B, a resolution pyramid) with a monomodal metric
  (normalised correlation or mean squares): for CoMIRs, which turn a multimodal pair into a
  monomodal one.
* :func:`demons_register`: SimpleITK's diffeomorphic demons (symmetric forces) on a pyramid:
  monomodal, for CoMIRs; diffeomorphic, so the field does not fold.
* :func:`elastix_bspline_register`: elastix (itk-elastix) affine then B-spline, both with Mattes
  mutual information (elastix's default maps, as in :mod:`comir.register.elastix`): the baseline
  for the original, multimodal images.

Conventions (:mod:`comir.deformation`, docs/explanation/deformable.md): the result's ``field`` is a
float32 ``(H, W, 2)`` backward field ``(dx, dy)`` on the **reference** grid; reference pixel ``x``
shows what the floating image shows at ``x + field(x)``, and ``warped`` is
``warp_image(floating, field)``.  The field is the **total** mapping, the initial matrix included
(:func:`comir.deformation.compose_affine`).  ``initial_matrix`` is the project's 2x3 floating ->
reference matrix (:mod:`comir.geometry`), e.g. a rigid registration's result; ``None`` is the
start of the project's rigid methods: the floating centre sent onto the reference centre (the
identity for images of one size).

Images: float ``(H, W)`` or ``(H, W, C)`` with the same ``C`` (sizes may differ), checked by
:func:`comir.register.base.check_pair`.  Multi-channel CoMIRs are reduced to one channel by the
reference's first principal component, the floating image projected on the same basis (the
monomodal methods); the originals each by their own (elastix, as :mod:`comir.register.elastix`).
``warped`` keeps all channels of the floating image.

Failures follow :mod:`comir.register.base`: malformed arguments (shapes, a non-finite or
singular matrix, invalid parameters) raise ``ValueError``; a pair that cannot be registered (a
constant image, a start overlapping less than :data:`MIN_OVERLAP` of the smaller image, an
image too small for the pyramid, an ITK or elastix error, a non-finite field) gives
``status="failed"``, the zero field (the identity, as the rigid methods' identity matrix) and a
message saying why; any other exception is a bug and propagates.

Reproducibility: every ITK filter and registration runs on one thread (ITK's metrics sum over
threads in a varying order, so more threads change the last digits); the SimpleITK methods use
every pixel for their metric (no random sampling) unless ``sampling_fraction`` < 1, and then
``seed``; elastix samples with its ``RandomSeed`` = ``seed``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from comir.deformation import (
    affine_to_field,
    check_field,
    compose_affine,
    folding_fraction,
    inside_mask,
    jacobian_determinant,
    sitk_to_field,
    warp_image,
)
from comir.geometry import IDENTITY, image_center, invert, rigid_matrix
from comir.register.base import (
    FAILED,
    OK,
    RegistrationFailure,
    check_pair,
    failure_message,
    fill_invalid,
    is_registration_failure,
    require_variation,
    to_single_channel,
)
from comir.register.mi import explain_itk_error

#: The smallest overlap of a start, as a fraction of the smaller image's pixels (:func:`_require_overlap`).
MIN_OVERLAP = 0.25
#: The monomodal metrics of :func:`bspline_register`.
BSPLINE_METRICS = ("correlation", "mean_squares")

# A method's work on the single-channel pair: (reference, floating, floating -> reference matrix)
# -> (total field, metric, note).
_Body = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, float, str]]


@dataclass(frozen=True)
class DeformableResult:
    """Outcome of one deformable registration.

    Attributes
    ----------
    field : numpy.ndarray
        float32 ``(H, W, 2)`` on the reference grid: the floating position ``x + field(x)`` of
        reference pixel ``x`` (total mapping, initial matrix included); zero when failed.
    warped : numpy.ndarray
        float32 floating image resampled on the reference grid by ``field`` (bilinear, 0 outside
        the floating image), ``(H, W)`` or ``(H, W, C)`` as the floating image.
    status : str
        ``"ok"`` or ``"failed"``.
    metric : float
        The method's final metric value (lower is better: SimpleITK's negated correlation or mean
        squares, the demons' mean squared difference of the standardised images, elastix's final
        metric value); ``nan`` when there is none.
    seconds : float
        Wall time of the registration call.
    message : str
        What the method did (stop conditions, folding), or why it failed.
    """

    field: np.ndarray
    warped: np.ndarray
    status: str
    metric: float = math.nan
    seconds: float = 0.0
    message: str = ""

    def __post_init__(self) -> None:
        field = np.array(check_field(self.field), dtype=np.float32)  # private, read-only copies
        warped = np.array(self.warped, dtype=np.float32)
        if warped.ndim not in (2, 3) or warped.shape[:2] != field.shape[:2]:
            raise ValueError(f"warped has shape {warped.shape}, the field's grid is {field.shape[:2]}")
        if self.status not in (OK, FAILED):
            raise ValueError(f"status must be {OK!r} or {FAILED!r}, got {self.status!r}")
        field.setflags(write=False)
        warped.setflags(write=False)
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "warped", warped)
        object.__setattr__(self, "metric", float(self.metric))
        object.__setattr__(self, "seconds", float(self.seconds))

    @property
    def ok(self) -> bool:
        """The success flag: ``status == "ok"``."""
        return self.status == OK

    @property
    def jacobian_range(self) -> tuple[float, float]:
        """The smallest and largest Jacobian determinant of ``x -> x + field(x)`` (over the reference grid)."""
        determinant = jacobian_determinant(self.field)
        return float(determinant.min()), float(determinant.max())

    @property
    def folded_fraction(self) -> float:
        """The fraction of reference pixels where the mapping folds (determinant <= 0)."""
        return folding_fraction(self.field)

    @classmethod
    def failed(
        cls,
        shape: tuple[int, ...],
        floating: np.ndarray,
        message: str,
        seconds: float = 0.0,
        metric: float = math.nan,
    ) -> DeformableResult:
        """A failed result on the reference grid ``shape``: the zero field (identity), ``message`` saying why."""
        field = np.zeros(tuple(shape[:2]) + (2,), np.float32)
        return cls(field, warp_image(floating, field), FAILED, metric, seconds, message)


# --- shared steps -------------------------------------------------------------------------------


def _start_matrix(
    initial_matrix: np.ndarray | None, reference_shape: tuple[int, ...], floating_shape: tuple[int, ...]
) -> np.ndarray:
    """The floating -> reference start: ``initial_matrix`` checked, or centre onto centre; ValueError if malformed."""
    if initial_matrix is None:
        return rigid_matrix(0.0, *(image_center(reference_shape) - image_center(floating_shape)))
    matrix = np.asarray(initial_matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"initial_matrix must be a finite 2x3 array, got shape {matrix.shape}")
    if abs(float(np.linalg.det(matrix[:, :2]))) <= 1e-12:
        raise ValueError("initial_matrix must be invertible")
    return matrix


def _is_identity_start(matrix: np.ndarray, reference_shape: tuple[int, ...], floating_shape: tuple[int, ...]) -> bool:
    """Whether the start leaves the floating image where it is (same size, identity matrix)."""
    return tuple(reference_shape[:2]) == tuple(floating_shape[:2]) and bool(np.array_equal(matrix, IDENTITY))


def _require_overlap(matrix: np.ndarray, reference_shape: tuple[int, ...], floating_shape: tuple[int, ...]) -> None:
    """RegistrationFailure unless the start overlaps the images by :data:`MIN_OVERLAP` of the smaller one.

    A deformable registration refines a start; without overlap ITK's metrics only warn and
    return the start unchanged, as if it had converged.
    """
    inside = int(inside_mask(affine_to_field(matrix, reference_shape), floating_shape).sum())
    smaller = min(int(np.prod(reference_shape[:2])), int(np.prod(floating_shape[:2])))
    if inside < MIN_OVERLAP * smaller:
        raise RegistrationFailure(
            f"the initial matrix maps only {inside} reference pixels inside the floating image, less than "
            f"{MIN_OVERLAP:.0%} of the smaller image ({smaller} px): a deformable registration needs a start "
            "that overlaps; register rigidly first or check the matrix's direction (floating -> reference)"
        )


def _run(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None,
    shared_basis: bool,
    body: _Body,
) -> DeformableResult:
    """Check the pair, reduce it to one channel, run ``body`` and build the result (module doc, failures).

    ``shared_basis``: project the floating image on the reference's principal component (CoMIRs)
    rather than its own (originals of two modalities).
    """
    reference, floating = check_pair(reference, floating)
    matrix = _start_matrix(initial_matrix, reference.shape, floating.shape)
    start = time.perf_counter()
    try:
        ref, basis = to_single_channel(reference)
        flo, _ = to_single_channel(floating, basis if shared_basis else None)
        require_variation(ref, flo)  # no structure to align; ITK's metrics would return nonsense
        _require_overlap(matrix, ref.shape, flo.shape)
        field, metric, note = body(ref, flo, matrix)
        if not np.all(np.isfinite(field)):
            raise RegistrationFailure("the registration returned a non-finite displacement field (it diverged)")
    except Exception as error:
        if not is_registration_failure(error):
            raise  # a bug or a configuration mistake must stop the job (comir.register.base)
        # SimpleITK's RuntimeError carries ITK's text: explained where it is a known one (as for `mi`).
        itk_error = isinstance(error, RuntimeError) and not isinstance(error, RegistrationFailure)
        message = explain_itk_error(str(error)) if itk_error else failure_message(error)
        return DeformableResult.failed(reference.shape, floating, message, time.perf_counter() - start)
    folded = folding_fraction(field)
    if folded > 0:
        note += f"; the field folds at {folded:.2%} of the pixels"
    warped = warp_image(floating, field)
    return DeformableResult(field, warped, OK, metric, time.perf_counter() - start, note)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) of at least ``minimum``; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _seed(value: Any) -> int:
    """``value`` as an int (any integer but a bool; modulo 2**32 where a library needs that); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {value!r}")
    return int(value)


def _positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
    return value


def _pyramid(shrink_factors: Sequence[int], smoothing_sigmas: Sequence[float] | None) -> tuple[list[int], list[float]]:
    """Checked shrink factors (coarse to fine) and smoothing sigmas (px; default half the shrink, 0 at 1)."""
    shrinks = [_positive_int("shrink factor", s) for s in np.atleast_1d(shrink_factors).tolist()]
    if not shrinks:
        raise ValueError("shrink_factors must name at least one level")
    if smoothing_sigmas is None:
        sigmas = [0.0 if s == 1 else s / 2.0 for s in shrinks]
    else:
        sigmas = [_positive_float("smoothing sigma", s, allow_zero=True) for s in np.atleast_1d(smoothing_sigmas)]
        if len(sigmas) != len(shrinks):
            raise ValueError(f"smoothing_sigmas has {len(sigmas)} entries, shrink_factors {len(shrinks)}")
    return shrinks, sigmas


def _sitk_image(array: np.ndarray) -> Any:
    """A float32 SimpleITK image of a 2-D array, spacing 1 and origin 0 (physical point = pixel point)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))  # a copy
    image.SetSpacing((1.0, 1.0))
    image.SetOrigin((0.0, 0.0))
    return image


def _sitk_affine(matrix: np.ndarray) -> Any:
    """SimpleITK's reference -> floating AffineTransform of a floating -> reference matrix."""
    import SimpleITK as sitk

    inverse = invert(matrix)
    affine = sitk.AffineTransform(2)
    affine.SetMatrix(tuple(float(v) for v in inverse[:, :2].ravel()))
    affine.SetTranslation(tuple(float(v) for v in inverse[:, 2]))
    return affine


def _on_reference_grid(
    floating: np.ndarray, matrix: np.ndarray, reference_shape: tuple[int, ...], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """The floating image moved onto the reference grid by ``matrix`` (cubic), and where it was inside the image."""
    if _is_identity_start(matrix, reference_shape, floating.shape):
        return floating, np.ones(floating.shape[:2], bool)
    field = affine_to_field(matrix, reference_shape)
    return warp_image(floating, field, order=3, mode=mode), inside_mask(field, floating.shape)


# --- SimpleITK B-spline -------------------------------------------------------------------------


def bspline_register(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None = None,
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
        2x3 floating -> reference start; ``None``: centre onto centre.
    grid_spacing_px : float
        Approximate control-point spacing, pixels (> 0).
    metric : str
        ``"correlation"`` (normalised cross-correlation, robust to a linear intensity change) or
        ``"mean_squares"``.
    iterations : int
        L-BFGS-B iterations per pyramid level (>= 1).
    shrink_factors : sequence of int
        The pyramid, coarse to fine.
    smoothing_sigmas : sequence of float, optional
        Gaussian sigma per level, pixels of the full image.
    sampling_fraction : float
        Fraction of reference pixels sampled per metric evaluation, in ``(0, 1]``; 1 uses every
        pixel (deterministic, ``seed`` unused).
    seed : int
        Seed of the random sampling when ``sampling_fraction`` < 1.

    Returns
    -------
    DeformableResult
        ``status="failed"`` (zero field) for a pair SimpleITK cannot register.
    """
    spacing = _positive_float("grid_spacing_px", grid_spacing_px)
    if metric not in BSPLINE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(BSPLINE_METRICS)}, got {metric!r}")
    iterations = _positive_int("iterations", iterations)
    shrinks, sigmas = _pyramid(shrink_factors, smoothing_sigmas)
    fraction = _positive_float("sampling_fraction", sampling_fraction)
    if fraction > 1:
        raise ValueError(f"sampling_fraction must be in (0, 1], got {sampling_fraction!r}")
    seed = _seed(seed)

    def body(ref: np.ndarray, flo: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float, str]:
        import SimpleITK as sitk

        fixed, moving = _sitk_image(ref), _sitk_image(flo)
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
        affine = _sitk_affine(matrix)
        method.SetMovingInitialTransform(affine)
        method.SetInitialTransform(bspline, inPlace=True)
        method.Execute(fixed, moving)
        # CompositeTransform applies its last transform first: x -> affine(bspline(x)).
        field = sitk_to_field(sitk.CompositeTransform([affine, bspline]), ref.shape)
        note = (
            f"SimpleITK B-spline, mesh {mesh[0]}x{mesh[1]}, {metric}; {method.GetOptimizerStopConditionDescription()}"
        )
        return field, float(method.GetMetricValue()), note

    return _run(reference, floating, initial_matrix, True, body)


# --- SimpleITK demons ---------------------------------------------------------------------------


def _standardised(image: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation: the demons compare intensities, CoMIRs of two modalities differ in scale."""
    image = np.asarray(image, dtype=np.float64)
    return ((image - image.mean()) / image.std()).astype(np.float32)


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


def demons_register(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None = None,
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
    is :func:`comir.deformation.compose_affine` of the matrix and the residual.  Updates are
    composed through an exponential, so the field is diffeomorphic (does not fold) as long as the
    smoothing keeps it regular.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The pair (module doc).
    initial_matrix : numpy.ndarray, optional
        2x3 floating -> reference start; ``None``: centre onto centre.
    iterations : int
        Demons iterations per level (>= 1).
    smoothing_sigma : float
        Standard deviation of the Gaussian smoothing of the displacement field after each
        iteration, in pixels of the level (> 0): the elastic regularisation.
    update_sigma : float
        Standard deviation of the smoothing of each update (the fluid regularisation), pixels of
        the level; 0 (default) smooths no update.
    max_step_px : float
        The largest update length per iteration, physical pixels (> 0).
    shrink_factors : sequence of int
        The pyramid, coarse to fine.
    smoothing_sigmas : sequence of float, optional
        Gaussian sigma of each level's images, pixels of the full image.

    Returns
    -------
    DeformableResult
        ``metric``: the demons' mean squared difference of the standardised images at the end.
    """
    iterations = _positive_int("iterations", iterations)
    sigma = _positive_float("smoothing_sigma", smoothing_sigma)
    update = _positive_float("update_sigma", update_sigma, allow_zero=True)
    step = _positive_float("max_step_px", max_step_px)
    shrinks, sigmas = _pyramid(shrink_factors, smoothing_sigmas)

    def body(ref: np.ndarray, flo: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float, str]:
        import SimpleITK as sitk

        moved, _ = _on_reference_grid(flo, matrix, ref.shape, mode="nearest")
        require_variation(ref, moved)  # the start may have moved only a constant part onto the reference
        fixed, moving = _sitk_image(_standardised(ref)), _sitk_image(_standardised(moved))
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

    return _run(reference, floating, initial_matrix, True, body)


# --- elastix ------------------------------------------------------------------------------------


def elastix_parameter_maps(
    grid_spacing_px: float = 32.0,
    resolutions: int = 3,
    iterations: int = 256,
    bins: int = 32,
    spatial_samples: int = 2048,
    bending_weight: float = 1.0,
    affine: bool = True,
    seed: int = 0,
) -> list[dict[str, tuple[str, ...]]]:
    """The elastix parameter maps of :func:`elastix_bspline_register`: affine (optional), then B-spline.

    Each is elastix's default map (``GetDefaultParameterMap("affine")``, ``("bspline",
    resolutions, grid_spacing_px)``) with Mattes MI written out and these settings:
    NumberOfResolutions, MaximumNumberOfIterations (per resolution), NumberOfHistogramBins,
    NumberOfSpatialSamples, RandomSeed, FinalGridSpacingInPhysicalUnits (B-spline; elastix's
    grid schedule 2, 1.41, 1 times it), WriteResultImage "false".  The B-spline map of elastix
    adds a TransformBendingEnergyPenalty to the MI; its weight is ``bending_weight`` (elastix's
    default 1), and 0 removes the penalty (plain MultiResolutionRegistration).

    Returns
    -------
    list of dict
        Parameter maps in the order elastix runs them, values as tuples of strings.
    """
    from comir.register.elastix import load_itk  # itk with elastix loaded once per process (5-12 s)

    spacing = _positive_float("grid_spacing_px", grid_spacing_px)
    resolutions = _positive_int("resolutions", resolutions)
    settings = {
        "Metric": ("AdvancedMattesMutualInformation",),
        "NumberOfResolutions": (str(resolutions),),
        "MaximumNumberOfIterations": (str(_positive_int("iterations", iterations)),),
        "NumberOfHistogramBins": (str(_positive_int("bins", bins, 4)),),
        "NumberOfSpatialSamples": (str(_positive_int("spatial_samples", spatial_samples)),),
        "RandomSeed": (str(_seed(seed) % 2**32),),
        "WriteResultImage": ("false",),
    }
    weight = _positive_float("bending_weight", bending_weight, allow_zero=True)
    parameter_object = load_itk().ParameterObject.New()
    maps = []
    if affine:
        defaults = parameter_object.GetDefaultParameterMap("affine", resolutions)
        parameters = {key: tuple(defaults[key]) for key in defaults.keys()}
        parameters.update(settings)
        maps.append(dict(sorted(parameters.items())))
    defaults = parameter_object.GetDefaultParameterMap("bspline", resolutions, spacing)
    parameters = {key: tuple(defaults[key]) for key in defaults.keys()}
    parameters.update(settings)
    if weight > 0:
        parameters["Metric"] = ("AdvancedMattesMutualInformation", "TransformBendingEnergyPenalty")
        parameters["Registration"] = ("MultiMetricMultiResolutionRegistration",)
        parameters["Metric0Weight"] = ("1.0",)
        parameters["Metric1Weight"] = (repr(weight),)
    else:
        parameters["Registration"] = ("MultiResolutionRegistration",)
        parameters.pop("Metric0Weight", None)
        parameters.pop("Metric1Weight", None)
    maps.append(dict(sorted(parameters.items())))
    return maps


def elastix_bspline_register(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None = None,
    *,
    grid_spacing_px: float = 32.0,
    resolutions: int = 3,
    iterations: int = 256,
    bins: int = 32,
    spatial_samples: int = 2048,
    bending_weight: float = 1.0,
    affine: bool = True,
    seed: int = 0,
) -> DeformableResult:
    """Affine then B-spline registration with elastix (itk-elastix), Mattes MI: the baseline on the originals.

    The floating image is moved onto the reference grid by the initial matrix (cubic; its
    pixels outside the floating image set to the valid mean and excluded by elastix's moving
    mask), then elastix registers it to the reference with :func:`elastix_parameter_maps`, on
    one thread, logging into a temporary directory that is removed.  Transformix's deformation
    field of the result is the residual field; the total is
    :func:`comir.deformation.compose_affine` of the matrix and the residual.  Each image is
    reduced to one channel by its own principal component (two modalities).

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The pair (module doc).
    initial_matrix : numpy.ndarray, optional
        2x3 floating -> reference start; ``None``: centre onto centre.
    grid_spacing_px : float
        FinalGridSpacingInPhysicalUnits of the B-spline, pixels.
    resolutions : int
        NumberOfResolutions of each stage.
    iterations : int
        MaximumNumberOfIterations per resolution of each stage.
    bins : int
        NumberOfHistogramBins of Mattes MI (>= 4).
    spatial_samples : int
        NumberOfSpatialSamples, random reference pixels drawn anew every iteration.
    bending_weight : float
        Weight of elastix's bending-energy penalty in the B-spline stage (0: none).
    affine : bool
        Run elastix's affine stage before the B-spline.
    seed : int
        elastix's RandomSeed.

    Returns
    -------
    DeformableResult
        ``metric``: elastix's final metric value of the last stage (its log); ``status="failed"``
        with elastix's reason explained (:func:`comir.register.elastix.explain_elastix_error`).
    """
    from comir.register.elastix import elastix_run, final_metric, itk_image, load_itk

    check_pair(reference, floating)  # malformed arguments first, before the slow import
    maps = elastix_parameter_maps(
        grid_spacing_px, resolutions, iterations, bins, spatial_samples, bending_weight, affine, seed
    )
    itk = load_itk()  # outside the call's seconds, as in comir.register.elastix

    def body(ref: np.ndarray, flo: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float, str]:
        moved, inside = _on_reference_grid(flo, matrix, ref.shape, mode="constant")  # overlap: _require_overlap
        moved = fill_invalid(moved, inside)  # no edge from the outside into the pyramid's smoothing
        require_variation(ref, moved[inside])

        mask = None if inside.all() else inside
        with elastix_run((ref, moved), maps, (None, mask)) as (method, log, folder):
            transformix = itk.TransformixFilter[itk.Image[itk.F, 2]].New()
            transformix.SetMovingImage(itk_image(moved.astype(np.float32)))
            transformix.SetTransformParameterObject(method.GetTransformParameterObject())
            transformix.SetComputeDeformationField(True)
            transformix.SetLogToConsole(False)
            transformix.SetNumberOfWorkUnits(1)
            # transformix also writes the field as deformationField.nii into its output directory
            # (the working directory by default): into the temporary one here.
            transformix.SetOutputDirectory(folder)
            transformix.UpdateLargestPossibleRegion()
            residual = np.array(itk.array_from_image(transformix.GetOutputDeformationField()), dtype=np.float64)
        stops = re.findall(r"Stopping condition: (.*)", log)
        stages = "affine + B-spline" if affine else "B-spline"
        note = f"elastix {stages}; {stops[-1].strip() if stops else 'no stop condition'}"
        return compose_affine(matrix, residual), final_metric(log), note

    return _run(reference, floating, initial_matrix, False, body)


__all__ = [
    "BSPLINE_METRICS",
    "MIN_OVERLAP",
    "DeformableResult",
    "bspline_register",
    "demons_register",
    "elastix_bspline_register",
    "elastix_parameter_maps",
]

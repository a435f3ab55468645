"""Registration by Mattes mutual information with SimpleITK (paper baseline; rigid by default).

The fixed image is the reference, the moving image is the floating image; both
are SimpleITK float32 images with spacing 1 and origin 0, so a physical point
is a pixel point ``(x, y) = (column, row)`` exactly as in :mod:`comir.geometry`.

SimpleITK optimises a transform ``T`` that maps **fixed (reference)** points to
**moving (floating)** points (it resamples the moving image at ``T(p)``).  The
project stores floating -> reference, so the result is ``inverse(T)``; see
:func:`sitk_transform_matrix` and :func:`floating_to_reference`.

RGB inputs are reduced to one channel by PCA (docs/method.md, section 7), each
image with its own basis; multi-channel CoMIRs also use the reference's basis
for the floating image (``shared_basis``).

Masks are SimpleITK's metric masks: only reference pixels inside the
reference mask are sampled, and a sample counts only where it maps inside the
floating mask; invalid pixels are first set to the valid mean, so the
pyramid's smoothing brings no edge from them into the valid ones.

Sampling: the paper's MI uses 80 histogram bins and every pixel of the overlap.
The defaults here (``bins`` 32, ``sampling_fraction`` 0.25: a seeded random
quarter of the reference pixels per evaluation) are speed options; with
``sampling_fraction`` 1.0 SimpleITK's ``NONE`` strategy is used, i.e. every
reference pixel, no random subset, so the result no longer depends on the
seed (``bins: 80, sampling_fraction: 1.0`` is the paper's setting).

Failures: SimpleITK reports an unregistrable pair with a ``RuntimeError``
whose text is ITK's (e.g. "All samples map outside moving image buffer" when
the transformed floating image left the reference, "Zero-valued spacing" when
an image is constant).  :func:`explain_itk_error` turns the known ones into a
sentence saying what happened and what to try, with ITK's text shortened at
the end; a start that fails this way is skipped, and when every start fails
the result is ``failed`` with those explanations.

Evolutionary optimiser defaults: the paper's MATLAB settings (1500 iterations,
initial radius 1e-5, growth 1.0001, epsilon 1.5e-8) are tied to MATLAB's own
parameter scaling and are far too timid for ITK, whose (1+1) search covariance
is ``radius / scale`` per parameter.  We set the scales so that one unit of
radius moves the farthest reference pixel by about one pixel (translation
scale 1, rotation scale = that pixel's distance from the rotation centre) and
run the pyramid one level at a time so that the search radius follows the
level's pixel size: ``evolutionary_radius`` (1 px) times the level's shrink
factor (4, 2, 1 px).  Growth 1.05 on success, shrink ``1.05 ** -0.25`` on
failure (ITK's default rule), ``iterations`` (200) evaluations per level,
``evolutionary_epsilon`` 1e-3 (stop once the search radius is ~1e-3 px; in
practice the iteration cap ends each level).  How these settings compared with
larger radii and growth: docs/results/method-settings.md.

Threads: the starts run concurrently on up to ``threads`` Python threads (ITK releases the GIL
while it registers), each start a single-threaded ITK registration on its own copy of the
images, so the result is the one a sequential run gives whatever ``threads`` is, but only where
SimpleITK's global default thread count is 1 (:func:`comir.register.base.set_native_threads`, as
every workflow script sets it): ITK's Mattes metric otherwise sums over its threads in a varying
order, and two identical runs differ (measured in docs/method.md, section 12).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from comir.geometry import check_transform, compose, image_center, invert, nearest_transform, rigid_matrix
from comir.register.base import (
    OK,
    RegistrationFailure,
    RegistrationResult,
    as_tuple,
    fill_invalid,
    is_registration_failure,
    sitk_image,
    timed,
    to_single_channel,
)

OPTIMIZERS = ("gradient", "evolutionary")
# SimpleITK images of one registration: fixed (reference), moving (floating), metric masks (fixed, moving).
_SitkImages = tuple[Any, Any, tuple[Any, Any]]

_NO_OVERLAP = (
    "the reference and the transformed floating image do not overlap (enough): (almost) no sampled "
    "reference pixel maps inside the floating image, so MI cannot be computed. The optimiser moved the "
    "floating image off the reference (steps too large for the image) or the images show different regions; "
    "try a smaller learning_rate (evolutionary: evolutionary_radius), start angles nearer the truth, or "
    "check that the patches overlap"
)
# Known ITK exceptions of a Mattes-MI registration (lower-case text in ITK's message, explanation).
ITK_EXPLANATIONS: tuple[tuple[str, str], ...] = (
    ("samples map outside moving image buffer", _NO_OVERLAP),
    ("joint pdf summed to zero", _NO_OVERLAP),
    ("marginal pdf summed to zero", _NO_OVERLAP),
    (
        "zero-valued spacing is not supported",
        "an image has no intensity variation (it is constant: blank, saturated, or a collapsed CoMIR), so the "
        "Mattes histogram has bins of zero width and there is nothing to register; check the patch",
    ),
    (
        "is less than 4",
        "an image is too small for the resolution pyramid: after shrinking it has fewer than 4 pixels along an "
        "axis; use smaller shrink_factors or larger patches",
    ),
)
_ITK_PREFIX = re.compile(r"ITK ERROR: (\w+)\(0x[0-9a-fA-F]+\): (.*)")


def _short_itk_text(message: str, known: bool) -> str:
    """ITK's text without the source path and object address; only the first sentence when ``known``."""
    text = " ".join(str(message).split())
    found = _ITK_PREFIX.search(text)
    if found:
        name, detail = found.groups()
        if known:
            detail = re.split(r"(?<=\.)\s", detail, maxsplit=1)[0]
        text = f"{name}: {detail}"
    limit = 160 if known else 400
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_itk_error(message: str) -> str:
    """A sentence a user can act on for a known ITK exception text, ITK's own text shortened at the end.

    Unknown messages are kept (shortened) as they are (docs/method.md, section 7).

    Parameters
    ----------
    message : str
        The text of SimpleITK's ``RuntimeError``.

    Returns
    -------
    str
        The explanation of a known error (:data:`ITK_EXPLANATIONS`) followed by ITK's text, or
        ``"ITK: "`` and ITK's text.
    """
    lowered = str(message).lower()
    for key, explanation in ITK_EXPLANATIONS:
        if key in lowered:
            return f"{explanation} (ITK: {_short_itk_text(message, known=True)})"
    return f"ITK: {_short_itk_text(message, known=False)}"


def _start_errors(errors: list[tuple[float, str]]) -> str:
    """``start a, b deg: why`` per distinct reason, in the order the starts ran."""
    grouped: dict[str, list[str]] = {}
    for start, why in errors:
        grouped.setdefault(why, []).append(f"{start:g}")
    return "; ".join(
        f"start{'s' if len(starts) > 1 else ''} {', '.join(starts)} deg: {why}" for why, starts in grouped.items()
    )


def sitk_transform_matrix(transform: Any) -> np.ndarray:
    """2x3 matrix of a SimpleITK 2-D matrix-offset transform, as SimpleITK applies it.

    SimpleITK writes ``T(p) = A (p - c) + c + t`` with matrix ``A``, centre
    ``c`` and translation ``t``; for our registrations this maps reference
    points to floating points.  A composite transform is composed as ITK applies it
    (the last-added transform first).

    Parameters
    ----------
    transform : SimpleITK.Transform
        A 2-D translation, matrix-offset or composite transform.

    Returns
    -------
    numpy.ndarray
        The 2x3 matrix.

    Raises
    ------
    ValueError
        If the transform is not 2-D or has no matrix.
    """
    import SimpleITK as sitk

    if transform.GetDimension() != 2:
        raise ValueError("expected a 2-D transform")
    if transform.GetTransformEnum() == sitk.sitkComposite:
        # ITK applies the last-added transform first: T = T0 o T1 o ... o Tn-1.
        composite = sitk.CompositeTransform(transform)
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        for index in range(composite.GetNumberOfTransforms()):
            matrix = compose(matrix, sitk_transform_matrix(composite.GetNthTransform(index)))
        return matrix
    transform = transform.Downcast()
    if transform.GetTransformEnum() == sitk.sitkTranslation:
        return np.hstack([np.eye(2), np.array(transform.GetOffset(), dtype=float)[:, None]])
    if not hasattr(transform, "GetMatrix"):
        raise ValueError(f"unsupported transform type {transform.GetName()}")
    a = np.array(transform.GetMatrix(), dtype=float).reshape(2, 2)
    c = np.array(transform.GetCenter(), dtype=float)
    t = np.array(transform.GetTranslation(), dtype=float)
    return np.hstack([a, (c + t - a @ c)[:, None]])


def _optimised_parameters(transform: Any) -> tuple[float, ...]:
    """Parameters of the one optimised transform of a registration result (Euler2D: angle, tx, ty; ...)."""
    import SimpleITK as sitk

    if transform.GetTransformEnum() == sitk.sitkComposite:
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() != 1:
            raise ValueError("expected a single optimised transform")
        transform = composite.GetNthTransform(0)
    return tuple(transform.Downcast().GetParameters())


def floating_to_reference(reference_to_floating: np.ndarray) -> np.ndarray:
    """The project's result from SimpleITK's fixed->moving matrix: its inverse.

    Parameters
    ----------
    reference_to_floating : numpy.ndarray
        The 2x3 reference -> floating matrix (:func:`sitk_transform_matrix`).

    Returns
    -------
    numpy.ndarray
        The 2x3 floating -> reference matrix.
    """
    return invert(reference_to_floating)


@dataclass
class MutualInformationRegistration:
    """Mattes-MI registration (SimpleITK), multi-resolution, multi-start; rigid, similarity or affine.

    Parameters: ``bins`` (Mattes histogram bins), ``sampling_fraction`` (random
    sampling of fixed-image pixels, seeded; 1.0: every pixel, no sampling; the
    paper: 80 bins, every pixel), ``optimizer`` ("gradient":
    regular-step gradient descent with ``learning_rate`` and ``min_step``;
    "evolutionary": (1+1) evolutionary with ``evolutionary_radius``,
    ``evolutionary_growth``, ``evolutionary_epsilon``), ``iterations`` (per
    resolution level), ``shrink_factors``/``smoothing_sigmas`` (pyramid, sigma
    in pixels), ``start_angles_deg`` (one registration per start; the
    angle is the rotation of the starting floating->reference estimate; the
    result with the lowest final metric wins), ``finest_level_starts`` (None:
    every start runs every level; k: every start runs the coarser levels, and
    only the k starts with the lowest metric there continue to the finest
    level, which costs most; docs/method.md, section 12), ``shared_basis`` (project a
    multi-channel floating image with the reference's PCA basis instead of
    its own), ``transform`` ("rigid": ITK's Euler2D, the paper's;
    "similarity": Similarity2D; "affine": AffineTransform; all about the
    reference centre), ``threads`` (starts registered concurrently, each on one ITK
    thread; the result does not depend on it, see the module doc), ``seed``.
    """

    name: ClassVar[str] = "mi"

    bins: int = 32
    sampling_fraction: float = 0.25
    optimizer: str = "gradient"
    iterations: int = 200
    learning_rate: float = 1.0
    min_step: float = 1e-4
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    start_angles_deg: tuple[float, ...] = (0.0,)
    finest_level_starts: int | None = None
    evolutionary_radius: float = 1.0
    evolutionary_growth: float = 1.05
    evolutionary_epsilon: float = 1e-3
    shared_basis: bool = False
    transform: str = "rigid"
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        self.shrink_factors = as_tuple(self.shrink_factors, int)
        self.smoothing_sigmas = as_tuple(self.smoothing_sigmas, float)
        self.start_angles_deg = as_tuple(self.start_angles_deg, float)
        check_transform(self.transform)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if int(self.bins) < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins}")
        if not 0 < float(self.sampling_fraction) <= 1:
            raise ValueError(f"sampling_fraction must be in (0, 1], got {self.sampling_fraction}")
        if int(self.iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.shrink_factors or len(self.shrink_factors) != len(self.smoothing_sigmas):
            raise ValueError(
                f"shrink_factors {self.shrink_factors} and smoothing_sigmas "
                f"{self.smoothing_sigmas} must be non-empty and of equal length"
            )
        if min(self.shrink_factors) < 1 or min(self.smoothing_sigmas) < 0:
            raise ValueError("shrink_factors must be >= 1 and smoothing_sigmas >= 0")
        if not self.start_angles_deg:
            raise ValueError("start_angles_deg must not be empty")
        if self.finest_level_starts is not None and int(self.finest_level_starts) < 1:
            raise ValueError(f"finest_level_starts must be >= 1 or null, got {self.finest_level_starts}")
        if float(self.learning_rate) <= 0 or float(self.min_step) <= 0:
            raise ValueError("learning_rate and min_step must be > 0")
        if float(self.evolutionary_radius) <= 0 or float(self.evolutionary_growth) <= 1:
            raise ValueError("evolutionary_radius must be > 0 and evolutionary_growth > 1")
        if float(self.evolutionary_epsilon) <= 0:
            raise ValueError("evolutionary_epsilon must be > 0")
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @property
    def _sitk_seed(self) -> int:
        # SimpleITK treats seed 0 as "use the wall clock"; keep every seed fixed.
        return int(self.seed) % (2**32 - 1) + 1

    def _single_channel(self, reference: np.ndarray, floating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ref, basis = to_single_channel(reference)
        flo, _ = to_single_channel(floating, basis if self.shared_basis else None)
        return ref, flo

    def _method(self, fixed: Any, initial: Any, radius: float, masks: tuple[Any, Any]) -> Any:
        """A configured ImageRegistrationMethod (pyramid not yet set) with the metric masks (fixed, moving)."""
        import SimpleITK as sitk

        method = sitk.ImageRegistrationMethod()
        method.SetNumberOfThreads(1)  # parallel across starts instead: reproducible (module doc)
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(self.bins))
        if masks[0] is not None:
            method.SetMetricFixedMask(masks[0])
        if masks[1] is not None:
            method.SetMetricMovingMask(masks[1])
        if float(self.sampling_fraction) >= 1.0:
            # Every pixel: RANDOM at 100 % would still draw random (repeated) points.
            method.SetMetricSamplingStrategy(method.NONE)
        else:
            method.SetMetricSamplingStrategy(method.RANDOM)
            method.SetMetricSamplingPercentage(float(self.sampling_fraction), self._sitk_seed)
        method.SetInterpolator(sitk.sitkLinear)
        if self.optimizer == "gradient":
            method.SetOptimizerAsRegularStepGradientDescent(
                learningRate=float(self.learning_rate),
                minStep=float(self.min_step),
                numberOfIterations=int(self.iterations),
                gradientMagnitudeTolerance=1e-8,
            )
            method.SetOptimizerScalesFromPhysicalShift()
        else:
            method.SetOptimizerAsOnePlusOneEvolutionary(
                numberOfIterations=int(self.iterations),
                epsilon=float(self.evolutionary_epsilon),
                initialRadius=float(radius),
                growthFactor=float(self.evolutionary_growth),
                shrinkFactor=float(self.evolutionary_growth) ** -0.25,
                seed=self._sitk_seed,
            )
            # ITK searches with covariance radius / scale per parameter: with
            # these scales one unit of radius moves the farthest reference
            # pixel by about one pixel, for the angle (and the scale or the
            # matrix entries) as for the translation.
            size = np.array(fixed.GetSize(), dtype=float)
            center = np.array(initial.GetCenter(), dtype=float)
            reach = max(float(np.linalg.norm(np.max(np.abs(np.stack([center, size - 1 - center])), axis=0))), 1.0)
            linear = {"rigid": 1, "similarity": 2, "affine": 4}[self.transform]
            method.SetOptimizerScales([reach] * linear + [1.0, 1.0])
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        return method

    def _register_once(
        self, fixed: Any, moving: Any, initial: Any, masks: tuple[Any, Any], levels: slice
    ) -> tuple[Any, float, str]:
        """A multi-resolution registration over the pyramid ``levels`` from ``initial`` (reference->floating).

        Returns the optimised transform as the kind and centre of ``initial``, so that a later call
        can continue from it, with its final metric and the optimiser's stop condition.
        """
        kind = type(initial)  # Euler2DTransform, Similarity2DTransform or AffineTransform
        shrinks, sigmas = self.shrink_factors[levels], self.smoothing_sigmas[levels]
        if self.optimizer == "gradient":
            method = self._method(fixed, initial, 0.0, masks)
            method.SetShrinkFactorsPerLevel(list(shrinks))
            method.SetSmoothingSigmasPerLevel(list(sigmas))
            method.SetInitialTransform(initial, inPlace=False)
            result = method.Execute(fixed, moving)
            transform = kind(initial)  # same centre
            transform.SetParameters(_optimised_parameters(result))
            return transform, float(method.GetMetricValue()), method.GetOptimizerStopConditionDescription()
        # Evolutionary: one run per level, so that the search radius can follow
        # the level's pixel size (ITK would restart every level at one radius).
        transform = kind(initial)
        metric, stop = math.nan, ""
        for shrink, sigma in zip(shrinks, sigmas, strict=True):
            method = self._method(fixed, transform, float(self.evolutionary_radius) * shrink, masks)
            method.SetShrinkFactorsPerLevel([shrink])
            method.SetSmoothingSigmasPerLevel([sigma])
            method.SetInitialTransform(transform, inPlace=False)
            result = method.Execute(fixed, moving)
            transform = kind(initial)  # same centre
            transform.SetParameters(_optimised_parameters(result))
            metric, stop = float(method.GetMetricValue()), method.GetOptimizerStopConditionDescription()
        return transform, metric, stop

    def _sitk_pair(
        self, reference: np.ndarray, floating: np.ndarray, masks: tuple[np.ndarray | None, np.ndarray | None]
    ) -> tuple[Callable[[], _SitkImages], np.ndarray]:
        """A maker of SimpleITK images (spacing 1, origin 0) of the single-channel pair and masks; the reference centre.

        Each call of the maker gives new images, so that concurrent starts never share an ITK
        pipeline input.
        """
        ref, flo = self._single_channel(fill_invalid(reference, masks[0]), fill_invalid(floating, masks[1]))
        arrays = [np.ascontiguousarray(array, dtype=np.float32) for array in (ref, flo)]
        mask_arrays = [None if m is None else np.ascontiguousarray(m, dtype=np.uint8) for m in masks]

        def make() -> _SitkImages:
            masks_itk = tuple(None if m is None else sitk_image(m, np.uint8) for m in mask_arrays)
            return sitk_image(arrays[0]), sitk_image(arrays[1]), masks_itk

        return make, image_center(ref.shape)

    def _initial(self, ref_center: np.ndarray, start_f2r: np.ndarray) -> Any:
        """The reference -> floating SimpleITK transform of the ``transform`` model about the reference centre.

        It equals ``inverse(start_f2r)`` made of the model
        (:func:`comir.geometry.nearest_transform`, exact at the reference centre).
        """
        import SimpleITK as sitk

        start_r2f = nearest_transform(self.transform, invert(start_f2r), ref_center)
        linear = start_r2f[:, :2]
        if self.transform == "rigid":
            initial = sitk.Euler2DTransform()
            initial.SetAngle(float(math.atan2(linear[1, 0], linear[0, 0])))
        elif self.transform == "similarity":
            initial = sitk.Similarity2DTransform()
            initial.SetScale(float(np.hypot(linear[0, 0], linear[1, 0])))
            initial.SetAngle(float(math.atan2(linear[1, 0], linear[0, 0])))
        else:
            initial = sitk.AffineTransform(2)
            initial.SetMatrix(tuple(float(v) for v in linear.ravel()))
        initial.SetCenter(tuple(float(v) for v in ref_center))
        # T(p) = A(p - c) + c + t; pick t so that T matches start_r2f at c.
        target = linear @ ref_center + start_r2f[:, 2]
        initial.SetTranslation(tuple(float(v) for v in target - ref_center))
        return initial

    @timed
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Floating -> reference by Mattes MI from every start; the lowest final metric wins.

        With ``finest_level_starts`` k (fewer than the starts, and a pyramid of more than one
        level), every start runs the coarser levels and only the k best there run the finest level.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C`` (reduced to one channel by PCA; see
            ``shared_basis``).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks, SimpleITK's metric masks; None: every pixel is valid.
            Default None.

        Returns
        -------
        RegistrationResult
            The floating -> reference transform of the model ``transform``; ``metric`` SimpleITK's final
            Mattes metric (lower is better). Failed, with every start's explanation, when no start
            converges.
        """
        images, ref_center = self._sitk_pair(reference, floating, (reference_mask, floating_mask))
        flo_center = image_center(np.shape(floating)[:2])
        screened = (
            self.finest_level_starts is not None
            and int(self.finest_level_starts) < len(self.start_angles_deg)
            and len(self.shrink_factors) > 1
        )
        first_levels = slice(None, -1) if screened else slice(None)
        # Starting floating->reference estimates: rotate by `start` about the reference centre
        # after sending the floating centre onto it.
        starts = [
            (
                start,
                self._initial(
                    ref_center,
                    compose(
                        rigid_matrix(math.radians(start), 0.0, 0.0, tuple(ref_center)),
                        rigid_matrix(0.0, *(ref_center - flo_center)),
                    ),
                ),
            )
            for start in self.start_angles_deg
        ]
        runs, errors = self._each_start(images, starts, first_levels)
        note_screen = ""
        if screened and runs:
            # Only the best starts of the coarser levels pay for the finest one (stable order on ties).
            kept = sorted(runs, key=lambda run: run[0])[: int(self.finest_level_starts)]
            note_screen = f"; {len(kept)} of {len(runs)} start(s) to the finest level"
            runs, finest_errors = self._each_start(
                images, [(start, transform) for _, start, transform, _ in kept], slice(-1, None)
            )
            errors += finest_errors
        if not runs:
            raise RegistrationFailure(_start_errors(errors) or "no start converged")
        metric, start, transform, stop = min(runs, key=lambda run: run[0])
        note = f"start {start:g} deg; {stop}{note_screen}"
        if errors:
            note += f" ({len(errors)} start(s) failed)"
        return RegistrationResult(_floating_to_reference_of(transform), OK, metric, 0.0, note)

    def _each_start(
        self,
        images: Callable[[], _SitkImages],
        starts: list[tuple[float, Any]],
        levels: slice,
    ) -> tuple[list[tuple[float, float, Any, str]], list[tuple[float, str]]]:
        """Register from every ``(start angle, initial transform)`` over ``levels``, ``threads`` at a time.

        Returns ``(metric, start, transform, stop)`` of every converged start and ``(start, explanation)``
        of every failed one, both in the order of ``starts`` whatever the threads.
        """

        def attempt(initial: Any) -> tuple[Any, float, str] | RegistrationFailure:
            try:
                return self._run(images, initial, levels)
            except RegistrationFailure as failure:
                return failure

        initials = [initial for _, initial in starts]
        workers = min(int(self.threads), len(initials))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                outcomes = list(pool.map(attempt, initials))
        else:
            outcomes = [attempt(initial) for initial in initials]
        runs, errors = [], []
        for (start, _), outcome in zip(starts, outcomes, strict=True):
            if isinstance(outcome, RegistrationFailure):
                errors.append((start, str(outcome)))
            else:
                transform, metric, stop = outcome
                runs.append((metric, start, transform, stop))
        return runs, errors

    @timed
    def refine(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        matrix: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Floating -> reference by Mattes MI from the estimate ``matrix`` (floating -> reference), not the starts.

        The local refinement stage of :class:`comir.register.cascade.CascadeRegistration`.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C``.
        matrix : numpy.ndarray
            The 2x3 floating -> reference estimate to start from (made of the model ``transform``).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks; None: every pixel is valid. Default None.

        Returns
        -------
        RegistrationResult
            The refined transform and its final Mattes metric; failed when ITK cannot register the pair
            from there or the metric is not finite.
        """
        images, ref_center = self._sitk_pair(reference, floating, (reference_mask, floating_mask))
        initial = self._initial(ref_center, np.asarray(matrix, dtype=float))
        refined, metric, stop = self._run(images, initial, slice(None))
        return RegistrationResult(
            _floating_to_reference_of(refined), OK, metric, 0.0, f"from the given estimate; {stop}"
        )

    def _run(self, images: Callable[[], _SitkImages], initial: Any, levels: slice) -> tuple[Any, float, str]:
        """One registration of new ``images()`` over ``levels`` from ``initial``.

        Returns the reference -> floating transform, the metric and the optimiser's stop condition.

        Raises :class:`RegistrationFailure` with an explanation when ITK cannot register the pair
        from there or the metric is not finite.
        """
        try:
            fixed, moving, masks = images()
            transform, metric, stop = self._register_once(fixed, moving, initial, masks, levels)
        except RuntimeError as error:  # SimpleITK's exception for every ITK error
            if not is_registration_failure(error):
                raise  # NotImplementedError, RecursionError: a bug, not ITK
            raise RegistrationFailure(explain_itk_error(str(error))) from error
        if not math.isfinite(metric):
            raise RegistrationFailure(f"non-finite metric {metric}")
        return transform, metric, stop


def _floating_to_reference_of(transform: Any) -> np.ndarray:
    """The project's floating -> reference matrix of a SimpleITK reference -> floating transform."""
    return floating_to_reference(sitk_transform_matrix(transform))


__all__ = [
    "ITK_EXPLANATIONS",
    "MutualInformationRegistration",
    "explain_itk_error",
    "floating_to_reference",
    "sitk_transform_matrix",
]

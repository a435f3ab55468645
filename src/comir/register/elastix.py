"""Registration with elastix (itk-elastix), Mattes MI: the baseline a user would pick.

elastix (Klein et al., IEEE TMI 2010; Python wrapping itk-elastix, Ntatsis et al. 2023) is
run with its own default parameter map for rigid registration
(``ParameterObject.GetDefaultParameterMap("rigid")``, ``"affine"`` for the affine model), the
metric set explicitly to AdvancedMattesMutualInformation and the entries below set from
the method's parameters.  The map passed to elastix (rigid, defaults; :meth:`ElastixRegistration.parameter_map`)::

    (AutomaticParameterEstimation "true")          (AutomaticScalesEstimation "true")
    (AutomaticTransformInitialization "false")     (CheckNumberOfSamples "true")
    (DefaultPixelValue 0)                          (FinalBSplineInterpolationOrder 3)
    (FixedImagePyramid "FixedSmoothingImagePyramid")
    (MovingImagePyramid "MovingSmoothingImagePyramid")
    (ImageSampler "RandomCoordinate")              (Interpolator "LinearInterpolator")
    (MaximumNumberOfIterations 256)                (MaximumNumberOfSamplingAttempts 8)
    (Metric "AdvancedMattesMutualInformation")     (NumberOfHistogramBins 32)
    (NewSamplesEveryIteration "true")              (NumberOfResolutions 4)
    (NumberOfSamplesForExactGradient 4096)         (NumberOfSpatialSamples 2048)
    (Optimizer "AdaptiveStochasticGradientDescent")
    (RandomSeed <seed>)                            (Registration "MultiResolutionRegistration")
    (ResampleInterpolator "FinalBSplineInterpolator")
    (Resampler "DefaultResampler")                 (ResultImageFormat "nii")
    (Transform "EulerTransform")                   (WriteIterationInfo "false")
    (WriteResultImage "false")

``transform`` picks ``EulerTransform`` (rigid), ``SimilarityTransform`` or ``AffineTransform``;
``resolutions``, ``iterations``, ``bins`` and ``spatial_samples`` set NumberOfResolutions,
MaximumNumberOfIterations (per resolution), NumberOfHistogramBins and NumberOfSpatialSamples.
Changed from elastix's map: the metric and its bins are written out (the same values),
RandomSeed comes from ``seed``, WriteResultImage is "false" (the resampled image is not used)
and AutomaticTransformInitialization is written out as elastix's default "false" (see the
start below).  Everything else is elastix's own default, as its log states: a pyramid of
Gaussian smoothing without down-sampling (schedule 8, 4, 2, 1: sigma 4, 2, 1, 0.5 px), masks
eroded per level (ErodeMask), fixed / moving Parzen kernels of B-spline order 0 / 3 with
limit range ratios 0.01, the adaptive stochastic gradient descent with its step sizes
estimated automatically (SP_A 20, 1000 Jacobian measurements) and scales estimated
automatically, the rotation centre (CenterOfRotationPoint) at the reference's centre.

Geometry: images get spacing 1; the reference (elastix's fixed image) its origin at 0, the
floating (moving) image the origin ``reference centre - floating centre``, so that elastix's
identity, where it starts, sends the floating centre onto the reference centre, the start of
:mod:`comir.register.mi` (for images of one size: the identity).  elastix optimises a transform
``T`` from fixed (reference) points to moving (floating) points, ``T(p) = A (p - c) + c + t``
with the centre ``c`` = CenterOfRotationPoint and, in TransformParameters, (angle, tx, ty)
for EulerTransform (``A`` a rotation), (scale, angle, tx, ty) for SimilarityTransform and (a11,
a12, a21, a22, tx, ty) for AffineTransform.  The floating pixel of ``p`` is ``T(p)`` less the
floating origin, and the project's floating -> reference matrix is the inverse of that map:
computed in closed form from the angle (and scale) for rigid and similarity, so that a rigid
result is exactly rigid (a rotation built from one angle), and by matrix inversion for affine.

Masks (docs/method.md, section 13) are elastix's fixed and moving masks (uint8 images with the
origins of their images): samples are drawn from valid reference pixels only and count only
where they map onto valid floating pixels; invalid pixels are first set to the valid mean
(:func:`comir.register.base.fill_invalid`), so the pyramid's smoothing brings no edge from
them; an all-valid mask is passed as no mask.  RGB images are reduced to one channel each by
PCA, as :mod:`comir.register.mi` does.

Metric: the final metric value of elastix's log ("Final metric value", Mattes MI as elastix
signs it: negative, lower is better; the sampled value of the last iteration, printed with 6
significant digits).  itk-elastix has no call for it, so elastix logs into a temporary
directory that is removed afterwards; nothing is printed to the console and no file is left.

Failures: a constant image (after the mask fill) is a failure before elastix runs (itk-elastix
0.25.4's Mattes metric crashes the process on a constant moving image and returns the
identity for a constant fixed image).  elastix reports an unregistrable pair with a
``RuntimeError`` saying only "Internal elastix error: See elastix log"; the reason is read
from that log (e.g. "Too many samples map outside moving image buffer" when the images do not
overlap, "No valid voxels" when the masks leave too few pixels, "less than 4" pixels along an
axis for the pyramid) and explained
(:func:`explain_elastix_error`); non-finite transform parameters are a failure too.

Threads and reproducibility: elastix runs on one thread, so that the result of a seed does not
depend on the job's ``threads`` (the thread count changes elastix's summation order, and with
it the last digits; measured in docs/method.md, section 7).  Importing itk happens at the first
registration of a process, outside its ``seconds``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from comir.geometry import check_transform, image_center, invert
from comir.register.base import (
    OK,
    RegistrationFailure,
    RegistrationResult,
    check_pair,
    fill_invalid,
    is_registration_failure,
    require_variation,
    timed,
    to_single_channel,
)

#: elastix's transform of each model (docs/method.md, section 13).
ELASTIX_TRANSFORMS = {"rigid": "EulerTransform", "similarity": "SimilarityTransform", "affine": "AffineTransform"}
# elastix's own default map the parameter map starts from, per model.
_DEFAULT_MAPS = {"rigid": "rigid", "similarity": "rigid", "affine": "affine"}

_NO_OVERLAP = (
    "the reference and the transformed floating image do not overlap (enough): too few of elastix's "
    "sampled reference pixels map inside the floating image (or its mask), so MI cannot be computed. The "
    "optimiser moved the floating image off the reference or the images show different regions; check "
    "that the patches (and masks) overlap"
)
# Known errors of elastix's log (lower-case text, explanation).
ELASTIX_EXPLANATIONS: tuple[tuple[str, str], ...] = (
    ("samples map outside moving image buffer", _NO_OVERLAP),
    ("joint pdf summed to zero", _NO_OVERLAP),
    (
        "no valid voxels",
        "too few valid pixels to sample: the reference mask (or its overlap with the floating image and "
        "its mask) leaves elastix no pixel for its step-size estimation; check the masks and the overlap",
    ),
    (
        "is less than 4",
        "an image is too small for elastix's Gaussian pyramid: fewer than 4 pixels along an axis; use "
        "larger patches",
    ),
    (
        "is outside of buffered region",
        "elastix's transform left the image (its parameters became non-finite: the optimiser diverged), "
        "e.g. an image too small or too flat for the smoothing of the resolution pyramid; use fewer "
        "resolutions or larger patches",
    ),
)
_LOG_ERROR = re.compile(r"Description: (?:ITK ERROR: (\w+)\(0x[0-9a-fA-F]+\): )?(.*?)(?:\n\s*\n|\Z)", re.S)
_FINAL_METRIC = re.compile(r"Final metric value\s*=\s*(\S+)")


@functools.cache
def load_itk() -> Any:
    """``itk`` with its elastix module loaded: slow to import, so loaded once per process, only when elastix registers.

    Without the DeprecationWarnings of SWIG's wrappers that loading the modules raises by the hundred.

    Returns
    -------
    module
        The ``itk`` module.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"builtin type \w+ has no __module__ attribute", DeprecationWarning)
        import itk

        # itk loads its modules on first use: the ones a registration uses, here.
        itk.ParameterObject.New()
        itk.ElastixRegistrationMethod[itk.Image[itk.F, 2], itk.Image[itk.F, 2]]
        for pixel in (np.float32, np.uint8):
            itk.image_from_array(np.zeros((2, 2), pixel))
    return itk


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    """A ValueError unless ``value`` is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def explain_elastix_error(log: str, error: str) -> str:
    """A sentence a user can act on for a failed elastix run, elastix's own text shortened at the end.

    Parameters
    ----------
    log : str
        elastix's log of the run (its error is the last "Description:" there).
    error : str
        The exception's text, used when the log has none.

    Returns
    -------
    str
        The explanation of a known error (:data:`ELASTIX_EXPLANATIONS`) followed by elastix's text
        (at most 200 characters), or elastix's text alone.
    """
    found = _LOG_ERROR.findall(log)
    if found:
        name, detail = found[-1]
        text = " ".join(f"{name}: {detail}".split()) if name else " ".join(detail.split())
    else:
        text = " ".join(str(error).split())
        text = re.sub(r"^\S+\.hxx:\d+: ", "", text)
    short = text if len(text) <= 200 else text[:197] + "..."
    lowered = text.lower()
    for key, explanation in ELASTIX_EXPLANATIONS:
        if key in lowered:
            return f"{explanation} (elastix: {short})"
    return f"elastix: {short}"


def final_metric(log: str) -> float:
    """The "Final metric value" of elastix's log; ``nan`` when the log has none.

    Parameters
    ----------
    log : str
        elastix's log of the run.

    Returns
    -------
    float
        The last final metric value in the log, or NaN (also for a value that is not a number).
    """
    found = _FINAL_METRIC.findall(log)
    try:
        return float(found[-1]) if found else math.nan
    except ValueError:
        return math.nan


def _scale_angle(transform: str, parameters: np.ndarray) -> tuple[float, float]:
    """Scale (1 for rigid) and angle of EulerTransform (angle, tx, ty) or SimilarityTransform (scale, angle, ...)."""
    if transform == "rigid":
        return 1.0, float(parameters[0])
    return float(parameters[0]), float(parameters[1])


def reference_to_floating(
    transform: str, parameters: np.ndarray, center: np.ndarray, floating_origin: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The elastix result as ``(linear A, offset b)``: reference pixel ``p`` -> floating pixel ``A p + b``.

    ``T(p) = A (p - c) + c + t`` (elastix, fixed -> moving physical points) less the floating
    image's origin.

    Parameters
    ----------
    transform : str
        ``"rigid"``, ``"similarity"`` or ``"affine"``.
    parameters : numpy.ndarray
        elastix's TransformParameters: (angle, tx, ty), (scale, angle, tx, ty) or
        (a11, a12, a21, a22, tx, ty).
    center : numpy.ndarray
        CenterOfRotationPoint ``(x, y)``.
    floating_origin : numpy.ndarray
        The floating image's origin ``(x, y)`` given to elastix.

    Returns
    -------
    linear : numpy.ndarray
        ``(2, 2)`` matrix ``A``.
    offset : numpy.ndarray
        ``(2,)`` offset ``b``.

    Raises
    ------
    ValueError
        If ``transform`` is not a known model.
    """
    check_transform(transform)
    if transform == "affine":
        linear = parameters[:4].reshape(2, 2)
    else:
        scale, angle = _scale_angle(transform, parameters)
        linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    translation = parameters[-2:]
    return linear, center + translation - linear @ center - floating_origin


def floating_to_reference(
    transform: str, parameters: np.ndarray, center: np.ndarray, floating_origin: np.ndarray
) -> np.ndarray:
    """The project's floating -> reference 2x3 matrix of elastix's TransformParameters.

    The inverse of :func:`reference_to_floating`: in closed form for rigid (the rotation by the
    negated angle, exactly rigid) and similarity (and the inverse scale), by inversion for affine.

    Parameters
    ----------
    transform : str
        ``"rigid"``, ``"similarity"`` or ``"affine"``.
    parameters : numpy.ndarray
        elastix's TransformParameters (:func:`reference_to_floating`).
    center : numpy.ndarray
        CenterOfRotationPoint ``(x, y)``.
    floating_origin : numpy.ndarray
        The floating image's origin ``(x, y)`` given to elastix.

    Returns
    -------
    numpy.ndarray
        The 2x3 floating -> reference matrix.

    Raises
    ------
    ValueError
        If ``transform`` is not a known model.
    """
    linear, offset = reference_to_floating(transform, parameters, center, floating_origin)
    if transform == "affine":
        return invert(np.hstack([linear, offset[:, None]]))
    scale, angle = _scale_angle(transform, parameters)
    angle = -angle
    inverse = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) / scale
    return np.hstack([inverse, (-inverse @ offset)[:, None]])


@dataclass(frozen=True)
class ElastixRegistration:
    """Mattes-MI registration by elastix (itk-elastix) with elastix's default map; rigid, similarity or affine.

    Parameters: ``transform`` ("rigid": elastix's EulerTransform, "similarity":
    SimilarityTransform, "affine": AffineTransform; all about the reference centre),
    ``resolutions`` (NumberOfResolutions, 4), ``iterations`` (MaximumNumberOfIterations per
    resolution, 256, elastix's default), ``bins`` (NumberOfHistogramBins, 32),
    ``spatial_samples`` (NumberOfSpatialSamples, random reference pixels drawn anew every
    iteration, 2048), ``threads`` (the job's thread count: accepted like the other methods',
    but elastix runs on one thread so that the result does not depend on it; module doc),
    ``seed`` (elastix's RandomSeed). The full parameter map is in the module doc.
    """

    name: ClassVar[str] = "elastix"

    transform: str = "rigid"
    resolutions: int = 4
    iterations: int = 256
    bins: int = 32
    spatial_samples: int = 2048
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_transform(self.transform)
        _positive_int("resolutions", self.resolutions)
        _positive_int("iterations", self.iterations)
        _positive_int("bins", self.bins, 4)  # elastix's Mattes B-spline Parzen windows need >= 4 bins
        _positive_int("spatial_samples", self.spatial_samples)
        _positive_int("threads", self.threads)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def parameter_map(self) -> dict[str, tuple[str, ...]]:
        """The elastix parameter map of a registration: elastix's default map with this method's settings."""
        itk = load_itk()
        defaults = itk.ParameterObject.New().GetDefaultParameterMap(_DEFAULT_MAPS[self.transform])
        parameters = {key: tuple(defaults[key]) for key in defaults.keys()}
        parameters.update(
            {
                "Transform": (ELASTIX_TRANSFORMS[self.transform],),
                "Metric": ("AdvancedMattesMutualInformation",),
                "NumberOfHistogramBins": (str(int(self.bins)),),
                "NumberOfResolutions": (str(int(self.resolutions)),),
                "MaximumNumberOfIterations": (str(int(self.iterations)),),
                "NumberOfSpatialSamples": (str(int(self.spatial_samples)),),
                "RandomSeed": (str(int(self.seed) % 2**32),),  # elastix's seed is a 32-bit unsigned integer
                "AutomaticTransformInitialization": ("false",),  # elastix's default; the start: module doc
                "WriteResultImage": ("false",),
            }
        )
        return dict(sorted(parameters.items()))

    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Floating -> reference by elastix from the centre-on-centre start (module doc).

        Malformed arguments raise ``ValueError`` first; then itk is loaded (once per process; its
        cost: docs/method.md, section 7), outside the pair's ``seconds``, and :meth:`_register`
        (:func:`timed`) registers.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C`` (multi-channel images are reduced to
            one channel each by PCA).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks, elastix's fixed and moving masks (an all-valid mask is
            passed as none). Default None.

        Returns
        -------
        RegistrationResult
            The floating -> reference transform of the model ``transform``; ``metric`` elastix's final
            metric value (negative Mattes MI, lower is better). Failed for a constant image, an elastix
            error (the log's reason explained) or non-finite parameters.

        Raises
        ------
        ValueError
            For malformed images (:func:`comir.register.base.check_pair`).
        """
        check_pair(reference, floating)
        load_itk()
        return self._register(reference, floating, reference_mask=reference_mask, floating_mask=floating_mask)

    @timed
    def _register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """The registration of :meth:`register`, timed, its failures failed results (docs/method.md, section 7)."""
        # An all-valid mask is no mask (elastix would still erode it at the image border).
        reference_mask = None if reference_mask is None or reference_mask.all() else reference_mask
        floating_mask = None if floating_mask is None or floating_mask.all() else floating_mask
        ref, _ = to_single_channel(fill_invalid(reference, reference_mask))
        flo, _ = to_single_channel(fill_invalid(floating, floating_mask))
        require_variation(ref, flo, (reference_mask, floating_mask), "the Mattes histogram has no range and ")
        floating_origin = image_center(ref.shape) - image_center(flo.shape)

        origins = (np.zeros(2), floating_origin)
        masks = (reference_mask, floating_mask)
        with elastix_run((ref, flo), [self.parameter_map()], masks, origins) as (method, log, _):
            result = method.GetTransformParameterObject().GetParameterMap(0)
        kind = result["Transform"][0]
        if kind != ELASTIX_TRANSFORMS[self.transform]:
            raise ValueError(f"elastix returned a {kind}, expected {ELASTIX_TRANSFORMS[self.transform]}")
        parameters = np.array([float(v) for v in result["TransformParameters"]])
        center = np.array([float(v) for v in result["CenterOfRotationPoint"]])
        if not (np.all(np.isfinite(parameters)) and np.all(np.isfinite(center))):
            raise RegistrationFailure(f"elastix returned non-finite transform parameters {parameters.tolist()}")
        matrix = floating_to_reference(self.transform, parameters, center, floating_origin)
        stops = re.findall(r"Stopping condition: (.*)", log)
        note = f"elastix {ELASTIX_TRANSFORMS[self.transform]}; {stops[-1].strip() if stops else 'no stop condition'}"
        return RegistrationResult(matrix, OK, final_metric(log), 0.0, note)


def itk_image(array: np.ndarray, origin: Sequence[float] = (0.0, 0.0)) -> Any:
    """A float or mask array as a 2-D ITK image (a copy) with spacing 1 and ``origin``.

    Parameters
    ----------
    array : numpy.ndarray
        ``(H, W)`` array (its dtype gives the ITK pixel type).
    origin : Sequence[float], optional
        The image's origin ``(x, y)``. Default ``(0, 0)``.

    Returns
    -------
    itk.Image
        The ITK image.
    """
    image = load_itk().image_from_array(np.ascontiguousarray(array))
    image.SetSpacing((1.0, 1.0))
    image.SetOrigin(tuple(float(v) for v in origin))
    return image


@contextlib.contextmanager
def elastix_run(
    images: tuple[np.ndarray, np.ndarray],
    parameter_maps: Sequence[Mapping[str, Sequence[str]]],
    masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    origins: tuple[Sequence[float], Sequence[float]] = ((0.0, 0.0), (0.0, 0.0)),
) -> Iterator[tuple[Any, str, str]]:
    """Register ``images`` (fixed, moving: single-channel) with elastix, ``parameter_maps`` in turn.

    On one thread (reproducible whatever the job's threads; module doc), with its log in a
    temporary folder that exists while the context is open.

    Parameters
    ----------
    images : tuple of numpy.ndarray
        The fixed (reference) and moving (floating) ``(H, W)`` images.
    parameter_maps : Sequence[Mapping[str, Sequence[str]]]
        elastix parameter maps, run one after the other.
    masks : tuple of (numpy.ndarray or None), optional
        The fixed and moving masks (None: every pixel). Default ``(None, None)``.
    origins : tuple of Sequence[float], optional
        The images' origins ``(x, y)``. Default both ``(0, 0)``.

    Yields
    ------
    method : itk.ElastixRegistrationMethod
        The finished registration (its transform parameter object).
    log : str
        elastix's log.
    folder : str
        The temporary folder (for transformix's output).

    Raises
    ------
    RegistrationFailure
        For elastix's failure, with the log's reason (:func:`explain_elastix_error`); any other
        exception propagates.
    """
    itk = load_itk()
    image_type = itk.Image[itk.F, 2]
    method = itk.ElastixRegistrationMethod[image_type, image_type].New()
    method.SetFixedImage(itk_image(images[0].astype(np.float32), origins[0]))
    method.SetMovingImage(itk_image(images[1].astype(np.float32), origins[1]))
    if masks[0] is not None:
        method.SetFixedMask(itk_image(masks[0].astype(np.uint8), origins[0]))
    if masks[1] is not None:
        method.SetMovingMask(itk_image(masks[1].astype(np.uint8), origins[1]))
    parameter_object = itk.ParameterObject.New()
    for parameter_map in parameter_maps:
        parameter_object.AddParameterMap({key: list(value) for key, value in parameter_map.items()})
    method.SetParameterObject(parameter_object)
    method.SetNumberOfThreads(1)
    method.SetLogToConsole(False)
    with tempfile.TemporaryDirectory(prefix="comir-elastix-") as folder:
        method.SetOutputDirectory(folder)  # elastix's log (the metric, the reason of a failure); removed
        method.SetLogToFile(True)
        try:
            method.UpdateLargestPossibleRegion()
        except RuntimeError as error:  # itk-elastix's exception for every elastix error
            if not is_registration_failure(error):
                raise  # NotImplementedError, RecursionError: a bug, not elastix
            raise RegistrationFailure(explain_elastix_error(read_elastix_log(folder), str(error))) from error
        yield method, read_elastix_log(folder), folder


def read_elastix_log(folder: str) -> str:
    """The elastix log in ``folder``; empty when it wrote none.

    Parameters
    ----------
    folder : str
        elastix's output folder.

    Returns
    -------
    str
        The text of ``folder/elastix.log`` (undecodable bytes replaced), or ``""``.
    """
    path = Path(folder) / "elastix.log"
    return path.read_text(errors="replace") if path.is_file() else ""


__all__ = [
    "ELASTIX_EXPLANATIONS",
    "ELASTIX_TRANSFORMS",
    "elastix_run",
    "ElastixRegistration",
    "explain_elastix_error",
    "final_metric",
    "floating_to_reference",
    "itk_image",
    "load_itk",
    "read_elastix_log",
    "reference_to_floating",
]

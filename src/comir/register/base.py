"""The interface shared by every registration method.

Every method takes a *reference* and a *floating* image (float32, ``(H, W)`` or
``(H, W, C)`` with the same ``C``; sizes may differ) and returns a
:class:`RegistrationResult` whose ``matrix`` is the rigid 2x3 transform that
sends a floating-image pixel to the reference-image pixel showing the same
place (the convention of :mod:`comir.geometry`).

Valid-pixel masks (docs/method.md, section 13): ``register(reference,
floating, reference_mask=None, floating_mask=None)`` also takes a boolean
``(H, W)`` mask per image, True where the pixel is image (not a zero-filled
border, the outside of a tissue core, an out-of-field area).  Every method
honours them: no keypoint, sample or score term comes from an invalid pixel,
so such regions cannot dominate the match (each method's docstring says how).
``None`` means every pixel is valid, and then a method computes exactly what it
computed before masks existed.

Failures and bugs are kept apart (docs/method.md, section 7):

* A pair the method cannot register (too few keypoints, a constant image, no
  overlap, ...) is a *registration failure*: the method raises
  :class:`RegistrationFailure` (or returns :meth:`RegistrationResult.failed`) and
  the caller gets ``status="failed"`` with the identity matrix and a message.
  :func:`timed` also turns the exceptions with which the numerical libraries
  report such pairs into failed results (:func:`library_failures`: SimpleITK's
  ``RuntimeError``, ``cv2.error``, ``numpy.linalg.LinAlgError``,
  ``FloatingPointError``; not the ``RuntimeError`` subclasses
  ``NotImplementedError`` and ``RecursionError``, which are bugs).
* Anything else raised inside a method (``TypeError``, ``IndexError``,
  ``KeyError``, ``ValueError``, ...) is a programming or configuration error and
  propagates, so that the job fails loudly instead of filling the results with
  failed rows.  Malformed arguments (wrong ``ndim``, channel mismatch, empty or
  non-finite images) raise :class:`ValueError` before the method runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from comir.deformation.fields import check_field
from comir.geometry import IDENTITY
from comir.io import reject_unknown_keys

OK = "ok"
FAILED = "failed"


class RegistrationFailure(Exception):
    """A pair the method cannot register (docs/method.md, section 7).

    Raised inside a method decorated with :func:`timed`, it becomes a failed
    :class:`RegistrationResult` with ``str(error)`` as its message and
    ``metric`` (e.g. SIFT's inlier count; ``nan`` when there is none).
    """

    def __init__(self, message: str, metric: float = math.nan) -> None:
        super().__init__(message)
        self.metric = float(metric)


@functools.cache
def library_failures() -> tuple[type[BaseException], ...]:
    """The exception types with which the numerical libraries report an unregistrable pair.

    SimpleITK raises ``RuntimeError`` for every ITK exception (no overlap, a
    constant image, an image too small for the pyramid); OpenCV raises
    ``cv2.error``; NumPy ``LinAlgError`` (a singular fit) and
    ``FloatingPointError`` (under ``np.errstate(... ="raise")``).  cv2 is
    imported lazily, like everywhere in this package.
    """
    failures: list[type[BaseException]] = [RuntimeError, np.linalg.LinAlgError, FloatingPointError]
    try:
        import cv2

        failures.append(cv2.error)
    except ImportError:  # an environment without OpenCV cannot raise its errors either
        pass
    return tuple(failures)


# RuntimeError subclasses that signal a bug, not a pair ITK could not register.
_BUG_RUNTIME_ERRORS: tuple[type[BaseException], ...] = (NotImplementedError, RecursionError)


def is_registration_failure(error: BaseException) -> bool:
    """Whether ``error`` means "this pair cannot be registered" rather than a bug.

    Parameters
    ----------
    error : BaseException
        The exception raised inside a method.

    Returns
    -------
    bool
        True for a :class:`RegistrationFailure` or a library failure (:func:`library_failures`)
        other than ``NotImplementedError`` and ``RecursionError``.
    """
    if isinstance(error, RegistrationFailure):
        return True
    return isinstance(error, library_failures()) and not isinstance(error, _BUG_RUNTIME_ERRORS)


def as_tuple(value: Any, kind: type) -> tuple:
    """A parameter given as a scalar or a list (YAML) as a tuple of ``kind``.

    Parameters
    ----------
    value : Any
        A scalar or an iterable of values.
    kind : type
        The type each value is converted with (e.g. ``int``, ``float``).

    Returns
    -------
    tuple
        The converted values (one for a scalar).
    """
    if np.isscalar(value):
        value = (value,)
    return tuple(kind(v) for v in value)


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome of one registration call.

    ``matrix``: 2x3 rigid transform floating pixel -> reference pixel; the
    identity when ``status == "failed"``.  ``metric``: the method's own final
    value (SIFT: number of RANSAC inliers; MI: SimpleITK's final Mattes MI
    metric, lower is better); ``nan`` when there is none.  ``seconds``: wall
    time of the registration call.  ``field``: for a method that also gives a
    dense mapping (ACCR with a displacement field, :mod:`comir.register.accr`),
    the float32 ``(H, W, 2)`` backward field on the reference grid
    (:mod:`comir.deformation`'s convention: the total mapping, of which
    ``matrix`` is the method's transform); ``None`` otherwise, and when failed.
    """

    matrix: np.ndarray
    status: str
    metric: float
    seconds: float
    message: str = ""
    field: np.ndarray | None = None

    def __post_init__(self) -> None:
        matrix = np.array(self.matrix, dtype=float)  # a private copy
        if matrix.shape != (2, 3):
            raise ValueError(f"matrix must be 2x3, got shape {matrix.shape}")
        if self.status not in (OK, FAILED):
            raise ValueError(f"status must be {OK!r} or {FAILED!r}, got {self.status!r}")
        if self.field is not None:
            if self.status == FAILED:
                raise ValueError("a failed result has no field")
            field = np.array(check_field(self.field), dtype=np.float32)  # finite (H, W, 2), a private copy
            field.setflags(write=False)
            object.__setattr__(self, "field", field)
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "metric", float(self.metric))
        object.__setattr__(self, "seconds", float(self.seconds))

    @property
    def ok(self) -> bool:
        """The success flag: ``status == "ok"``."""
        return self.status == OK

    @classmethod
    def failed(cls, message: str, seconds: float = 0.0, metric: float = math.nan) -> RegistrationResult:
        """A failed result: the identity matrix with ``message`` saying why.

        Parameters
        ----------
        message : str
            Why the pair could not be registered.
        seconds : float, optional
            Wall time of the registration call. Default 0.
        metric : float, optional
            The method's own final value, if any. Default NaN.

        Returns
        -------
        RegistrationResult
            ``status == "failed"``, identity ``matrix``.
        """
        return cls(IDENTITY.copy(), FAILED, metric, seconds, message)


@runtime_checkable
class Registration(Protocol):
    """A registration method: ``register(reference, floating[, masks]) -> RegistrationResult``."""

    name: str

    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """The transform floating pixel -> reference pixel, or a failed result (docs/method.md, section 7).

        Parameters
        ----------
        reference : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` reference image, float32.
        floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` floating image with the same ``C``; its size may differ.
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks of the two images (True where the pixel is image);
            None: every pixel is valid. Default None.

        Returns
        -------
        RegistrationResult
            The rigid (or the method's model) 2x3 transform floating -> reference, or a failed result.
        """


def check_image(image: np.ndarray, role: str) -> np.ndarray:
    """Validate one input image and return it as a float32 array.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` real-valued (or boolean) image.
    role : str
        ``"reference"`` or ``"floating"``, for the messages.

    Returns
    -------
    numpy.ndarray
        The image as float32 (not copied when it already is).

    Raises
    ------
    ValueError
        If the image is not 2-D or 3-D, is empty, is not real-valued, or has non-finite values.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"{role} image must have shape (H, W) or (H, W, C), got {image.shape}")
    if image.size == 0 or (image.ndim == 3 and image.shape[2] == 0):
        raise ValueError(f"{role} image is empty: shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_) or np.iscomplexobj(image):
        raise ValueError(f"{role} image must be real-valued, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{role} image contains non-finite values")
    return image


def check_pair(reference: np.ndarray, floating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a reference/floating pair (same channel count) as float32 arrays.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` images (see :func:`check_image`).

    Returns
    -------
    tuple of numpy.ndarray
        ``(reference, floating)`` as float32.

    Raises
    ------
    ValueError
        If an image is malformed (:func:`check_image`) or the channel counts differ.
    """
    reference = check_image(reference, "reference")
    floating = check_image(floating, "floating")
    channels = [1 if im.ndim == 2 else im.shape[2] for im in (reference, floating)]
    if channels[0] != channels[1]:
        raise ValueError(
            f"reference has {channels[0]} channel(s) but floating has {channels[1]}; "
            "both images of a pair must have the same channel count"
        )
    return reference, floating


def check_mask(mask: np.ndarray | None, image: np.ndarray, role: str) -> np.ndarray | None:
    """A valid-pixel mask as booleans of the image's ``(H, W)``; ``None`` stays ``None`` (all valid).

    Parameters
    ----------
    mask : numpy.ndarray or None
        ``(H, W)`` (or ``(H, W, 1)``) mask, non-zero = valid; None: all valid.
    image : numpy.ndarray
        The image it belongs to.
    role : str
        ``"reference"`` or ``"floating"``, for the messages.

    Returns
    -------
    numpy.ndarray or None
        Boolean ``(H, W)`` mask, or None.

    Raises
    ------
    ValueError
        For a mask of another shape (a bug or a mismatched file).
    RegistrationFailure
        For a mask without valid pixels (nothing to register).
    """
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{role} mask has shape {mask.shape}, its image {image.shape[:2]}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise RegistrationFailure(f"the {role} mask has no valid pixel (a constant or blank image?)")
    return mask


def sitk_image(array: np.ndarray, dtype: Any = np.float32) -> Any:
    """A SimpleITK image of a 2-D array as ``dtype`` (a copy), spacing 1 and origin 0 (physical point = pixel point).

    Parameters
    ----------
    array : numpy.ndarray
        ``(H, W)`` array: an image (float32, the default) or a mask (``np.uint8``, 1 = valid).
    dtype : numpy dtype, optional
        The image's pixel type. Default ``np.float32``.

    Returns
    -------
    SimpleITK.Image
        The image.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))  # a copy
    image.SetSpacing((1.0, 1.0))
    image.SetOrigin((0.0, 0.0))
    return image


def warp_with_validity(
    image: np.ndarray, matrix: np.ndarray, size_wh: tuple[int, int], valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """An image warped by ``matrix`` (image -> output pixel, bilinear, edges replicated) and where it is valid.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` float32 image (``C`` <= 4, OpenCV's limit).
    matrix : numpy.ndarray
        The 2x3 matrix sending the image's pixels to the output's.
    size_wh : tuple of int
        The output's ``(width, height)``.
    valid : numpy.ndarray or None, optional
        The image's validity as float32 0/1 ``(H, W)``; None: every pixel. Default None.

    Returns
    -------
    warped : numpy.ndarray
        ``(height, width)`` or ``(height, width, C)``, as the image.
    inside : numpy.ndarray
        Boolean ``(height, width)``: True where all that the bilinear interpolation reads is valid
        image (outside the image nothing is).
    """
    import cv2

    matrix = np.asarray(matrix, dtype=np.float64)
    out = cv2.warpAffine(image, matrix, size_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel's axis
        out = out[..., None]
    if valid is None:
        valid = np.ones(image.shape[:2], np.float32)
    inside = cv2.warpAffine(
        valid, matrix, size_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )
    return out, inside >= 0.999


def fill_invalid(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``image`` with its invalid pixels set to the mean of its valid ones (per channel); as is without a mask.

    For the steps that cannot skip pixels (blurs, resampling, detectors that
    look at a neighbourhood): a flat fill adds no edge at the mask's border, so
    the invalid region contributes no structure, only a little less contrast
    next to it.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` image.
    mask : numpy.ndarray or None
        Boolean ``(H, W)`` valid-pixel mask; None (or a mask all valid or all invalid) returns
        ``image`` itself.

    Returns
    -------
    numpy.ndarray
        A float32 copy with the invalid pixels filled, or ``image`` unchanged.
    """
    if mask is None or mask.all() or not mask.any():  # nothing to fill, or nothing to fill it from
        return image
    image = np.array(image, dtype=np.float32)
    image[~mask] = image[mask].mean(axis=0)
    return image


def require_variation(
    reference: np.ndarray,
    floating: np.ndarray,
    masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    consequence: str = "",
) -> None:
    """:class:`RegistrationFailure` naming the image (reference first) whose values are all equal.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The two images (restricted to their valid pixels by the caller where masked).
    masks : tuple of (numpy.ndarray or None), optional
        Whether each image was restricted to its valid pixels (not None: the message says "where
        valid"). Default ``(None, None)``.
    consequence : str, optional
        What the constant image breaks in the method, said before "there is nothing to register"
        (e.g. ``"the Mattes histogram has no range and "``). Default ``""``.

    Raises
    ------
    RegistrationFailure
        If either image is constant.
    """
    for role, image, mask in (("reference", reference, masks[0]), ("floating", floating, masks[1])):
        if float(image.max()) == float(image.min()):
            where = "" if mask is None else " where valid"
            raise RegistrationFailure(
                f"the {role} image has no intensity variation (it is constant{where}: blank, saturated, or a "
                f"collapsed CoMIR), so {consequence}there is nothing to register; check the patch"
            )


def to_single_channel(image: np.ndarray, basis: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reduce an image to one channel; return ``(image2d_float32, basis)``.

    * ``(H, W)`` (or ``(H, W, 1)``): returned as float32, unchanged; the basis
      is ``[1.0]`` (the identity projection).
    * ``(H, W, C)`` without ``basis``: projection onto the first principal
      component of its pixels (C-vectors), i.e. ``image @ basis`` with the
      unit eigenvector of the pixel covariance with the largest eigenvalue.
      The sign is fixed so that the basis entries sum to >= 0 (brighter in all
      channels -> brighter in the projection).  The channel means are not
      subtracted: a constant offset changes neither MI nor a percentile stretch,
      and it keeps the projection of another image with the same basis
      independent of this image's statistics.
    * with ``basis`` (length C): ``image @ basis``; used to project a floating
      image exactly like its reference.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` image.
    basis : numpy.ndarray or None, optional
        Length-``C`` projection to use; None: the image's first principal component. Default None.

    Returns
    -------
    image2d : numpy.ndarray
        ``(H, W)`` float32 projection.
    basis : numpy.ndarray
        The projection used (``[1.0]`` for a single-channel image, even when a one-entry ``basis``
        scaled it).

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or 3-D, or ``basis`` does not have one entry per channel.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        if basis is not None and np.asarray(basis).size != 1:
            raise ValueError(f"basis has {np.asarray(basis).size} entries but the image has 1 channel")
        scale = 1.0 if basis is None else float(np.asarray(basis, dtype=float).ravel()[0])
        out = image if scale == 1.0 else (image * np.float32(scale))
        return out.astype(np.float32, copy=False), np.ones(1)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    channels = image.shape[2]
    if basis is None:
        pixels = image.reshape(-1, channels).astype(np.float64)
        covariance = np.atleast_2d(np.cov(pixels, rowvar=False))
        values, vectors = np.linalg.eigh(covariance)
        basis = vectors[:, np.argmax(values)]
        if basis.sum() < 0:
            basis = -basis
    else:
        basis = np.asarray(basis, dtype=float).ravel()
        if basis.size != channels:
            raise ValueError(f"basis has {basis.size} entries but the image has {channels} channels")
    projected = image.reshape(-1, channels) @ basis.astype(np.float32)
    return projected.reshape(image.shape[:2]).astype(np.float32), basis


def timed(
    register: Callable[..., RegistrationResult] | None = None,
    *,
    check: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] = check_pair,
) -> Any:
    """Decorator for ``register(self, reference, floating, ..., reference_mask=, floating_mask=)``.

    Validates the pair with ``check`` (default :func:`check_pair`, raising
    :class:`ValueError` for malformed arguments) and the masks with
    :func:`check_mask` (passed on as keywords, ``None`` when not given; extra
    arguments are passed on too), then runs the method and measures its wall
    time into ``seconds``.  A :class:`RegistrationFailure` or
    a library failure (:func:`library_failures`) raised inside becomes a failed
    result with the identity matrix and the error's message; every other
    exception propagates (docs/method.md, section 7).  Use as ``@timed`` or,
    with another validation, ``@timed(check=...)``.

    Parameters
    ----------
    register : Callable or None, optional
        The method to wrap (``@timed``); None when called with keywords (``@timed(check=...)``).
        Default None.
    check : Callable, optional
        Validates and converts ``(reference, floating)``, returning the pair. Default :func:`check_pair`.

    Returns
    -------
    Callable
        The wrapped method, or (without ``register``) the decorator.
    """

    def decorate(function: Callable[..., RegistrationResult]) -> Callable[..., RegistrationResult]:
        @functools.wraps(function)
        def wrapper(
            self,
            reference: np.ndarray,
            floating: np.ndarray,
            *args: Any,
            reference_mask: np.ndarray | None = None,
            floating_mask: np.ndarray | None = None,
            **kwargs: Any,
        ) -> RegistrationResult:
            reference, floating = check(reference, floating)
            start = time.perf_counter()
            try:
                masks = {
                    "reference_mask": check_mask(reference_mask, reference, "reference"),
                    "floating_mask": check_mask(floating_mask, floating, "floating"),
                }
                result = function(self, reference, floating, *args, **masks, **kwargs)
            except Exception as error:
                if not is_registration_failure(error):
                    raise  # a bug or a configuration mistake must stop the job
                return RegistrationResult.failed(
                    failure_message(error), time.perf_counter() - start, getattr(error, "metric", math.nan)
                )
            return dataclasses.replace(result, seconds=time.perf_counter() - start)

        return wrapper

    return decorate if register is None else decorate(register)


def set_native_threads(threads: int) -> None:
    """Thread counts of the native libraries for a process that registers with ``threads`` threads.

    OpenCV gets ``threads``; SimpleITK's global default gets 1, because its Mattes metric sums
    over ITK threads in a varying order, so that two identical MI registrations would differ
    (docs/method.md, section 12): MI uses the threads for its starts instead
    (:mod:`comir.register.mi`).

    Parameters
    ----------
    threads : int
        The process's thread count.
    """
    import cv2
    import SimpleITK as sitk

    cv2.setNumThreads(int(threads))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def failure_message(error: BaseException) -> str:
    """The message of a failed result: a RegistrationFailure's own text, else the library error's type and text.

    Whitespace runs (multi-line ITK messages) are collapsed to single spaces.

    Parameters
    ----------
    error : BaseException
        A registration failure (:func:`is_registration_failure`).

    Returns
    -------
    str
        The message; a library's own type is named with its package (e.g. ``cv2.error``).
    """
    text = " ".join(str(error).split())  # ITK messages span several lines
    if isinstance(error, RegistrationFailure):
        return text or "registration failed"
    kind = type(error)
    # Name the library of a library's own type ("cv2.error" says more than "error").
    label = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    return f"{label}: {text}".strip().rstrip(":")


def param_names(cls: type) -> list[str]:
    """Constructor parameters of a dataclass method, excluding ``seed``.

    Parameters
    ----------
    cls : type
        A dataclass registration method.

    Returns
    -------
    list of str
        Its init fields other than ``seed``, in declaration order.
    """
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name != "seed"]


def build_method(cls: type, params: Mapping[str, Any] | None, seed: int, threads: int = 1) -> Registration:
    """An instance of the method class ``cls`` (its ``name`` in messages) with ``params`` and ``seed``.

    The registry's :func:`comir.register.make_method` looks ``cls`` up by name and calls this.

    Parameters
    ----------
    cls : type
        A dataclass registration method with a ``name``.
    params : Mapping[str, Any] or None
        Its parameters (None: all defaults); must not contain ``seed``.
    seed : int
        The method's random seed.
    threads : int, optional
        The job's thread count; goes to methods that take one (unless ``params`` set it). Default 1.

    Returns
    -------
    Registration
        The method instance.

    Raises
    ------
    RigidOnly
        For a ``transform`` given to a rigid-only method (a :class:`ValueError`).
    ValueError
        For an unknown parameter key (naming it and listing the accepted ones) or an invalid value.
    """
    name, params, allowed = cls.name, dict(params or {}), param_names(cls)
    if "transform" in params and "transform" not in allowed:
        raise RigidOnly(f"registration method {name!r} estimates rigid transforms only (no 'transform' parameter)")
    check_param_names(name, params, allowed)
    if "threads" in allowed:
        params.setdefault("threads", int(threads))
    # A method without randomness (a trained model's) has no seed.
    seeded = {"seed": int(seed)} if any(f.name == "seed" for f in dataclasses.fields(cls)) else {}
    try:
        return cls(**params, **seeded)
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid parameters for registration method {name!r}: {error}") from error


def check_param_names(name: str, params: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Stop at a parameter that registration method ``name`` does not take.

    Parameters
    ----------
    name : str
        The method's name, in the message.
    params : Mapping[str, Any]
        The parameters given.
    allowed : Sequence[str]
        The names the method takes (e.g. :func:`param_names`).

    Raises
    ------
    ValueError
        Naming each unknown key and listing the accepted ones.
    """
    hint = " (pass the seed as make_method's seed argument)" if "seed" in params and "seed" not in allowed else ""
    reject_unknown_keys(
        params, allowed, "parameter(s)", context=f" for registration method {name!r}{hint}", listed="accepted"
    )


class RigidOnly(ValueError):
    """A ``transform`` parameter given to a method that estimates rigid transforms only."""


__all__ = [
    "FAILED",
    "OK",
    "Registration",
    "RegistrationFailure",
    "RegistrationResult",
    "RigidOnly",
    "build_method",
    "check_image",
    "check_param_names",
    "check_mask",
    "check_pair",
    "fill_invalid",
    "failure_message",
    "is_registration_failure",
    "library_failures",
    "param_names",
    "sitk_image",
    "timed",
    "to_single_channel",
    "warp_with_validity",
]

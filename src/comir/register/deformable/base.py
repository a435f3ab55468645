"""The result of a deformable registration and the steps its methods share.

The conventions: the package doc, :mod:`comir.register.deformable`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from comir.deformation.affine import affine_to_field
from comir.deformation.fields import check_field
from comir.deformation.jacobian import folding_fraction, jacobian_determinant
from comir.deformation.warp import inside_mask, warp_image
from comir.geometry import IDENTITY, image_center, invert, rigid_matrix
from comir.register.base import (
    FAILED,
    OK,
    RegistrationFailure,
    check_mask,
    check_pair,
    failure_message,
    is_registration_failure,
    require_variation,
    to_single_channel,
)
from comir.register.mi import explain_itk_error

#: The smallest overlap of a start, as a fraction of the smaller image's pixels (:func:`require_overlap`).
MIN_OVERLAP = 0.25

#: Valid-pixel masks of a pair, reference then floating: boolean ``(H, W)`` each, or None (all valid).
Masks = tuple[np.ndarray | None, np.ndarray | None]
# A method's work on the single-channel pair: (reference, floating, floating -> reference matrix,
# masks) -> (total field, metric, note).
MethodBody = Callable[[np.ndarray, np.ndarray, np.ndarray, Masks], tuple[np.ndarray, float, str]]


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
        """A failed result on the reference grid ``shape``: the zero field (identity), ``message`` saying why.

        Parameters
        ----------
        shape : tuple of int
            The reference image's shape ``(H, W[, C])``.
        floating : numpy.ndarray
            The floating image; ``warped`` is it sampled by the zero field.
        message : str
            Why the pair could not be registered.
        seconds : float, optional
            Wall time of the registration call. Default 0.
        metric : float, optional
            The method's final metric value, if any. Default NaN.

        Returns
        -------
        DeformableResult
            ``status == "failed"`` with the zero field.
        """
        field = np.zeros(tuple(shape[:2]) + (2,), np.float32)
        return cls(field, warp_image(floating, field), FAILED, metric, seconds, message)


def start_matrix(
    initial_matrix: np.ndarray | None, reference_shape: tuple[int, ...], floating_shape: tuple[int, ...]
) -> np.ndarray:
    """The floating -> reference start: ``initial_matrix`` checked, or centre onto centre; ValueError if malformed.

    Parameters
    ----------
    initial_matrix : numpy.ndarray or None
        A 2x3 floating -> reference matrix; None: the translation sending the floating centre onto
        the reference centre.
    reference_shape, floating_shape : tuple of int
        The images' shapes ``(H, W[, C])``.

    Returns
    -------
    numpy.ndarray
        The 2x3 float64 start matrix.

    Raises
    ------
    ValueError
        If ``initial_matrix`` is not a finite 2x3 array or is not invertible.
    """
    if initial_matrix is None:
        return rigid_matrix(0.0, *(image_center(reference_shape) - image_center(floating_shape)))
    matrix = np.asarray(initial_matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"initial_matrix must be a finite 2x3 array, got shape {matrix.shape}")
    if abs(float(np.linalg.det(matrix[:, :2]))) <= 1e-12:
        raise ValueError("initial_matrix must be invertible")
    return matrix


def is_identity_start(matrix: np.ndarray, reference_shape: tuple[int, ...], floating_shape: tuple[int, ...]) -> bool:
    """Whether the start leaves the floating image where it is (same size, identity matrix).

    Parameters
    ----------
    matrix : numpy.ndarray
        The 2x3 start matrix.
    reference_shape, floating_shape : tuple of int
        The images' shapes ``(H, W[, C])``.

    Returns
    -------
    bool
        True when the images have one size and ``matrix`` is exactly the identity.
    """
    return tuple(reference_shape[:2]) == tuple(floating_shape[:2]) and bool(np.array_equal(matrix, IDENTITY))


def require_overlap(matrix: np.ndarray, reference_shape: tuple[int, ...], floating_shape: tuple[int, ...]) -> None:
    """RegistrationFailure unless the start overlaps the images by :data:`MIN_OVERLAP` of the smaller one.

    A deformable registration refines a start; without overlap ITK's metrics only warn and
    return the start unchanged, as if it had converged.

    Parameters
    ----------
    matrix : numpy.ndarray
        The 2x3 floating -> reference start.
    reference_shape, floating_shape : tuple of int
        The images' shapes ``(H, W[, C])``.

    Raises
    ------
    RegistrationFailure
        If fewer than :data:`MIN_OVERLAP` of the smaller image's pixel count of reference pixels map
        inside the floating image.
    """
    inside = int(inside_mask(affine_to_field(matrix, reference_shape), floating_shape).sum())
    smaller = min(int(np.prod(reference_shape[:2])), int(np.prod(floating_shape[:2])))
    if inside < MIN_OVERLAP * smaller:
        raise RegistrationFailure(
            f"the initial matrix maps only {inside} reference pixels inside the floating image, less than "
            f"{MIN_OVERLAP:.0%} of the smaller image ({smaller} px): a deformable registration needs a start "
            "that overlaps; register rigidly first or check the matrix's direction (floating -> reference)"
        )


def run_method(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None,
    shared_basis: bool,
    body: MethodBody,
    masks: Masks = (None, None),
) -> DeformableResult:
    """Check the pair and its masks, reduce it to one channel, run ``body`` and build the result (module doc, failures).

    Parameters
    ----------
    reference, floating : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` images with the same ``C``.
    initial_matrix : numpy.ndarray or None
        The 2x3 floating -> reference start; None: centre onto centre (:func:`start_matrix`).
    shared_basis : bool
        Project the floating image on the reference's principal component (CoMIRs) rather than its
        own (originals of two modalities).
    body : MethodBody
        The method's work on the single-channel pair, the start matrix and the checked masks,
        returning the total field, the metric and a note.
    masks : tuple of (numpy.ndarray or None), optional
        Valid-pixel masks of the reference and the floating image (``(H, W)``, non-zero = valid;
        None: all valid). Default none.

    Returns
    -------
    DeformableResult
        The field, the floating image warped by it (all channels) and the note (with the folded share
        where the field folds); failed, with the zero field, for a constant image, a start without
        enough overlap, a library failure (ITK's text explained) or a non-finite field.

    Raises
    ------
    ValueError
        For malformed images or a malformed ``initial_matrix``; any exception from ``body`` that is
        not a registration failure propagates.
    """
    reference, floating = check_pair(reference, floating)
    matrix = start_matrix(initial_matrix, reference.shape, floating.shape)
    start = time.perf_counter()
    try:
        valid = (check_mask(masks[0], reference, "reference"), check_mask(masks[1], floating, "floating"))
        ref, basis = to_single_channel(reference)
        flo, _ = to_single_channel(floating, basis if shared_basis else None)
        # No structure to align (where valid); ITK's metrics would return nonsense.
        require_variation(*(image if mask is None else image[mask] for image, mask in zip((ref, flo), valid)), valid)
        require_overlap(matrix, ref.shape, flo.shape)
        field, metric, note = body(ref, flo, matrix, valid)
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


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) of at least ``minimum``; ValueError otherwise.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : Any
        The value to check.
    minimum : int, optional
        The least value allowed. Default 1.

    Returns
    -------
    int
        ``value`` as an int.

    Raises
    ------
    ValueError
        If ``value`` is not an integer, is a bool, or is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def checked_seed(value: Any) -> int:
    """``value`` as an int (any integer but a bool; modulo 2**32 where a library needs that); ValueError otherwise.

    Parameters
    ----------
    value : Any
        The seed.

    Returns
    -------
    int
        ``value`` as an int (not reduced; the callers take it modulo 2**32 where needed).

    Raises
    ------
    ValueError
        If ``value`` is not an integer or is a bool.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {value!r}")
    return int(value)


def positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``); ValueError otherwise.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : Any
        The value to check (an int or float, not a bool).
    allow_zero : bool, optional
        Accept 0. Default False.

    Returns
    -------
    float
        ``value`` as a float.

    Raises
    ------
    ValueError
        If ``value`` is not a number, is a bool, is not finite, or is negative (or 0 without
        ``allow_zero``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
    return value


def pyramid(shrink_factors: Sequence[int], smoothing_sigmas: Sequence[float] | None) -> tuple[list[int], list[float]]:
    """Checked shrink factors (coarse to fine) and smoothing sigmas (px; default half the shrink, 0 at 1).

    Parameters
    ----------
    shrink_factors : Sequence[int]
        One integer >= 1 per level, coarse to fine (a scalar is one level).
    smoothing_sigmas : Sequence[float] or None
        Gaussian sigma (px, >= 0) per level; None: half the shrink factor, 0 at factor 1.

    Returns
    -------
    shrinks : list of int
        The shrink factors.
    sigmas : list of float
        The smoothing sigmas.

    Raises
    ------
    ValueError
        For no level, a factor that is not an integer >= 1, a negative or non-finite sigma, or
        counts that differ.
    """
    shrinks = [positive_int("shrink factor", s) for s in np.atleast_1d(shrink_factors).tolist()]
    if not shrinks:
        raise ValueError("shrink_factors must name at least one level")
    if smoothing_sigmas is None:
        sigmas = [0.0 if s == 1 else s / 2.0 for s in shrinks]
    else:
        sigmas = [positive_float("smoothing sigma", s, allow_zero=True) for s in np.atleast_1d(smoothing_sigmas)]
        if len(sigmas) != len(shrinks):
            raise ValueError(f"smoothing_sigmas has {len(sigmas)} entries, shrink_factors {len(shrinks)}")
    return shrinks, sigmas


def moved_mask(mask: np.ndarray | None, matrix: np.ndarray, reference_shape: tuple[int, ...]) -> np.ndarray | None:
    """A floating image's valid-pixel mask moved onto the reference grid by ``matrix`` (:func:`on_reference_grid`).

    Parameters
    ----------
    mask : numpy.ndarray or None
        Boolean ``(h, w)`` mask of the floating image; None: all valid.
    matrix : numpy.ndarray
        The 2x3 floating -> reference matrix.
    reference_shape : tuple of int
        The reference image's shape.

    Returns
    -------
    numpy.ndarray or None
        Boolean ``(H, W)``: where the moved floating image is valid (False outside the floating
        image); None for None.
    """
    if mask is None:
        return None
    moved, inside = on_reference_grid(mask.astype(np.float32), matrix, reference_shape, mode="constant")
    return (moved > 0.5) & inside


def sitk_affine(matrix: np.ndarray) -> Any:
    """SimpleITK's reference -> floating AffineTransform of a floating -> reference matrix.

    Parameters
    ----------
    matrix : numpy.ndarray
        The 2x3 floating -> reference matrix (invertible).

    Returns
    -------
    SimpleITK.AffineTransform
        Its inverse, centre 0.
    """
    import SimpleITK as sitk

    inverse = invert(matrix)
    affine = sitk.AffineTransform(2)
    affine.SetMatrix(tuple(float(v) for v in inverse[:, :2].ravel()))
    affine.SetTranslation(tuple(float(v) for v in inverse[:, 2]))
    return affine


def on_reference_grid(
    floating: np.ndarray, matrix: np.ndarray, reference_shape: tuple[int, ...], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """The floating image moved onto the reference grid by ``matrix`` (cubic), and where it was inside the image.

    An identity start (:func:`is_identity_start`) returns ``floating`` itself, all inside.

    Parameters
    ----------
    floating : numpy.ndarray
        ``(h, w)`` or ``(h, w, C)`` floating image.
    matrix : numpy.ndarray
        The 2x3 floating -> reference matrix.
    reference_shape : tuple of int
        The reference image's shape ``(H, W[, C])``.
    mode : str
        What a sample outside the floating image gets (:func:`comir.deformation.warp.warp_image`:
        ``"constant"`` 0, ``"nearest"`` the edge pixels, ...).

    Returns
    -------
    moved : numpy.ndarray
        The floating image on the reference grid, ``(H, W)`` or ``(H, W, C)``.
    inside : numpy.ndarray
        Boolean ``(H, W)``: where it sampled inside the floating image.
    """
    if is_identity_start(matrix, reference_shape, floating.shape):
        return floating, np.ones(floating.shape[:2], bool)
    field = affine_to_field(matrix, reference_shape)
    return warp_image(floating, field, order=3, mode=mode), inside_mask(field, floating.shape)


__all__ = [
    "MIN_OVERLAP",
    "DeformableResult",
    "Masks",
    "MethodBody",
    "checked_seed",
    "is_identity_start",
    "moved_mask",
    "on_reference_grid",
    "positive_float",
    "positive_int",
    "pyramid",
    "require_overlap",
    "run_method",
    "sitk_affine",
    "start_matrix",
]

"""Matrices and fields: the project's floating -> reference matrices as backward fields and back.

Contract: :func:`affine_to_field` and :func:`compose_affine` evaluate a matrix (and a residual
field after it) exactly on the reference grid, as the total backward field into the floating
image; :func:`affine_of_field` fits the matrix closest to a field (least squares), the inverse of
:func:`affine_to_field`; :func:`field_between_grids` carries a field to other grids related to its
own by matrices (e.g. a model's field at a reduced working resolution back to the original
images); :func:`check_matrix` accepts a finite 2x3 matrix (invertible where asked)
and raises ValueError otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from comir.deformation.fields import check_field, grid, grid_shape, sample_field
from comir.geometry import apply, fit_affine, invert

__all__ = ["affine_of_field", "affine_to_field", "check_matrix", "compose_affine", "field_between_grids"]


def affine_to_field(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The backward field of a floating -> reference matrix on the reference grid ``shape``.

    ``field(x) = inverse(matrix) @ (x, 1) - x``: the floating position of reference pixel ``x``,
    so ``warp_image(floating, field)`` is the floating image moved onto the reference grid.

    Parameters
    ----------
    matrix : numpy.ndarray
        2x3 floating -> reference matrix (:mod:`comir.geometry`).
    shape : tuple of int
        ``(H, W[, ...])`` of the reference grid.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)``.
    """
    return compose_affine(matrix, np.zeros(grid_shape(tuple(shape)) + (2,), np.float32))


def compose_affine(matrix: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The total field of a residual field applied after a matrix: ``x -> inverse(matrix)(x + residual(x))``.

    The registration pipeline's composition: the floating image is first moved onto the
    reference grid by the floating -> reference ``matrix`` (a rigid registration), then warped by
    ``residual`` (a deformable registration of that result).  The affine part is evaluated
    exactly, not interpolated.

    Parameters
    ----------
    matrix : numpy.ndarray
        2x3 floating -> reference matrix.
    residual : numpy.ndarray
        ``(H, W, 2)`` backward field on the reference grid.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)``: the total backward field from the reference grid into the floating
        image.
    """
    residual = check_field(residual, "residual")
    inverse = check_matrix(matrix, invertible=True, inverse=True)
    x, y = grid(residual.shape[:2])
    sx = x + residual[..., 0]
    sy = y + residual[..., 1]
    fx = inverse[0, 0] * sx + inverse[0, 1] * sy + inverse[0, 2]
    fy = inverse[1, 0] * sx + inverse[1, 1] * sy + inverse[1, 2]
    return np.stack([fx - x, fy - y], axis=-1).astype(np.float32)


def field_between_grids(
    field: np.ndarray, to_inner: np.ndarray, from_inner: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """A backward field carried to other grids: ``x -> from_inner(u + field(u))`` with ``u = to_inner(x)``.

    ``field`` maps its own reference grid into its own floating grid; ``to_inner`` sends a pixel of
    the new reference grid ``shape`` onto the field's reference grid, ``from_inner`` a position of
    the field's floating grid onto the new floating grid. For :func:`affine_to_field` of a matrix
    ``M`` the result is :func:`affine_to_field` of ``invert(to_inner) M invert(from_inner)``
    (:func:`comir.imaging.resampling.to_original_grids` for the matrices of two resamplings), up to
    the field's nearest values beyond its grid.

    Parameters
    ----------
    field : numpy.ndarray
        ``(h, w, 2)`` backward field (bilinear between its pixels, nearest value beyond them).
    to_inner : numpy.ndarray
        2x3 matrix from the new reference grid's pixels to ``field``'s grid.
    from_inner : numpy.ndarray
        2x3 matrix from ``field``'s floating positions to the new floating grid's.
    shape : tuple of int
        ``(H, W[, ...])`` of the new reference grid.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)``.
    """
    field = check_field(field)
    x, y = grid(grid_shape(tuple(shape)))
    pixels = np.stack([x.ravel(), y.ravel()], axis=1)
    inner = apply(check_matrix(to_inner), pixels)
    moved = inner + sample_field(field, inner[:, 0], inner[:, 1])
    outer = apply(check_matrix(from_inner), moved)
    return (outer - pixels).reshape(x.shape + (2,)).astype(np.float32)


def affine_of_field(field: np.ndarray) -> np.ndarray:
    """The floating -> reference matrix closest to a field: least squares over its grid's pixels.

    The affine part of a deformable registration's total field, in the convention of the rigid
    methods' matrices: it sends ``x + u(x)`` (floating) as near as it can to ``x`` (reference).
    For :func:`affine_to_field` of a matrix it gives the matrix back.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` backward field.

    Returns
    -------
    numpy.ndarray
        float64 2x3 matrix.
    """
    field = check_field(field)
    x, y = grid(field.shape[:2])
    reference = np.stack([x.ravel(), y.ravel()], axis=1)
    return fit_affine(reference + np.asarray(field, dtype=np.float64).reshape(-1, 2), reference)


def check_matrix(matrix: np.ndarray, invertible: bool = False, inverse: bool = False) -> np.ndarray:
    """A finite 2x3 float matrix (its inverse with ``inverse``); ValueError otherwise.

    Parameters
    ----------
    matrix : numpy.ndarray
        The 2x3 floating -> reference matrix to check (any array-like of numbers).
    invertible : bool, optional
        Also require an invertible linear part (``|det| > 1e-12``). Default False.
    inverse : bool, optional
        Return the inverse matrix instead (implies ``invertible``). Default False.

    Returns
    -------
    numpy.ndarray
        float64 2x3: ``matrix``, or its inverse with ``inverse``.

    Raises
    ------
    ValueError
        If the matrix is not 2x3 or has non-finite values, or, where asked, is not invertible.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"matrix must be a finite 2x3 array, got shape {matrix.shape}")
    if invertible or inverse:
        det = float(np.linalg.det(matrix[:, :2]))
        if not (math.isfinite(det) and abs(det) > 1e-12):
            raise ValueError(f"matrix must be invertible, its linear part has determinant {det:g}")
    return invert(matrix) if inverse else matrix

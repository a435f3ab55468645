"""Checks and grids that the field modules share: a field's shape and values, pixel coordinates, sampling.

Contract: :func:`check_field` accepts a float ``(H, W, 2)`` field with finite values (the
conventions: :mod:`comir.deformation`) and raises ValueError otherwise; :func:`grid_shape` checks
the ``(H, W)`` of an array shape; :func:`grid` gives the ``(x, y)`` coordinates of a grid's pixel
centres; :func:`sample_field` interpolates a field bilinearly at any points, with its nearest grid
value beyond the grid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["check_field", "grid", "grid_shape", "sample_field"]


def check_field(field: np.ndarray, name: str = "field") -> np.ndarray:
    """``field`` as a float array of shape ``(H, W, 2)`` with finite values.

    Parameters
    ----------
    field : numpy.ndarray
        The displacement field to check.
    name : str
        Its name in error messages.

    Returns
    -------
    numpy.ndarray
        The field, float32 or float64 as given (other dtypes become float64); not copied when
        already a float array.

    Raises
    ------
    ValueError
        For another shape, an empty grid or non-finite values.
    """
    field = np.asarray(field)
    if field.ndim != 3 or field.shape[2] != 2 or field.shape[0] == 0 or field.shape[1] == 0:
        raise ValueError(f"{name} must have shape (H, W, 2) with H, W >= 1, got {field.shape}")
    if field.dtype not in (np.float32, np.float64):
        field = field.astype(np.float64)
    if not np.all(np.isfinite(field)):
        raise ValueError(f"{name} contains non-finite values")
    return field


def grid_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of an array shape ``(H, W[, ...])``, checked.

    Parameters
    ----------
    shape : tuple of int
        An array shape ``(H, W[, ...])``.

    Returns
    -------
    tuple of int
        ``(H, W)`` as Python ints.

    Raises
    ------
    ValueError
        If ``shape`` does not start with two positive integers.
    """
    if len(shape) < 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in shape[:2]):
        raise ValueError(f"shape must start with two positive integers (H, W), got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(x, y)`` coordinates (float64, each ``(H, W)``) of the pixel centres of a grid.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the grid (not checked; :func:`grid_shape` checks a shape).

    Returns
    -------
    x, y : numpy.ndarray
        float64 ``(H, W)`` each: the column and the row index of every pixel.
    """
    rows, cols = np.indices(shape, dtype=np.float64)
    return cols, rows


def sample_field(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The field bilinearly interpolated at points ``(x, y)`` (any equal shapes), nearest value beyond its grid.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` field (not checked; :func:`check_field` checks one).
    x : numpy.ndarray
        x coordinates (columns) of the points, pixels.
    y : numpy.ndarray
        y coordinates (rows) of the points, pixels; the shape of ``x``.

    Returns
    -------
    numpy.ndarray
        float64 of shape ``x.shape + (2,)``: ``(dx, dy)`` at each point.
    """
    coordinates = np.stack([np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)])
    components = [
        ndimage.map_coordinates(np.asarray(field[..., k], dtype=np.float64), coordinates, order=1, mode="nearest")
        for k in range(2)
    ]
    return np.stack(components, axis=-1)

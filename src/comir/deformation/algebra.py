"""The algebra of fields: inversion and composition of backward fields on pixel grids.

Contract: :func:`invert_field` gives ``v`` with ``y -> y + v(y)`` undoing ``x -> x + u(x)`` (a
fixed-point iteration that converges for Jacobian norms below 1); :func:`compose_fields` gives the
field of ``outer`` after ``inner``, in the order of :func:`comir.geometry.compose`. Both return
float32 on the grid of their (inner) field; between grid points a field is bilinear, beyond its
grid its nearest value.
"""

from __future__ import annotations

import numpy as np

from comir.deformation.fields import check_field, grid, sample_field

__all__ = ["compose_fields", "invert_field"]


def invert_field(field: np.ndarray, iterations: int = 50, tolerance: float = 1e-4) -> np.ndarray:
    """The inverse of a backward field by fixed-point iteration: ``v(y) = -u(y + v(y))``.

    ``y -> y + v(y)`` undoes ``x -> x + u(x)``: ``compose_fields(field, inverse)`` and
    ``compose_fields(inverse, field)`` are close to 0.  Starting from ``v = -u``, the iteration
    converges (geometrically) when the Jacobian norm of ``u`` is below 1 (the rule of
    :func:`random_displacement`); it stops after ``iterations`` steps or once no pixel's ``v``
    changes by more than ``tolerance`` px.  ``u`` between grid points is bilinear, beyond its grid
    its nearest value, so the inverse is exact up to interpolation in the interior and an
    approximation where ``y + v(y)`` leaves the grid (within ``max |u|`` of the border).

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` backward field.
    iterations : int
        The largest number of fixed-point steps (>= 1).
    tolerance : float
        Stop once the largest change of a step is at most this, pixels.

    Returns
    -------
    numpy.ndarray
        The inverse field on the same grid, float32.
    """
    field = check_field(field)
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    x, y = grid(field.shape[:2])
    inverse = -np.asarray(field, dtype=np.float64)
    for _ in range(int(iterations)):  # fixed-point steps, each vectorised over the grid
        updated = -sample_field(field, x + inverse[..., 0], y + inverse[..., 1])
        change = float(np.abs(updated - inverse).max())
        inverse = updated
        if change <= tolerance:
            break
    return inverse.astype(np.float32)


def compose_fields(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The field of ``x -> outer(inner(x))``: ``c(x) = inner(x) + outer(x + inner(x))``.

    The order of :func:`comir.geometry.compose`.  For images,
    ``warp_image(warp_image(image, outer), inner)`` equals ``warp_image(image, c)`` up to
    interpolation: ``inner`` is applied to the image last.

    Parameters
    ----------
    outer : numpy.ndarray
        ``(H2, W2, 2)`` field on the grid ``inner`` maps into.
    inner : numpy.ndarray
        ``(H, W, 2)`` field on the output grid.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 2)`` float32 on ``inner``'s grid (``outer`` bilinear between its grid points,
        its nearest value beyond them).
    """
    outer, inner = check_field(outer, "outer"), check_field(inner, "inner")
    x, y = grid(inner.shape[:2])
    inner64 = np.asarray(inner, dtype=np.float64)
    return (inner64 + sample_field(outer, x + inner64[..., 0], y + inner64[..., 1])).astype(np.float32)

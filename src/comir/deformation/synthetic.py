"""Known deformations: random smooth, invertible displacement fields for test sets with a true field.

Contract: :func:`random_displacement` draws a cubic B-spline field whose largest displacement is
exactly the one asked for and whose Jacobian norm stays below ``max_gradient`` (< 1), so the
deformation is invertible and folds nowhere; a draw that would break the rule is a ValueError,
never silently scaled down. The same arguments and seed give the same field.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from comir.deformation.fields import grid_shape
from comir.deformation.jacobian import spectral_norm

__all__ = ["random_displacement"]


def random_displacement(
    shape: tuple[int, ...],
    max_displacement_px: float,
    smoothness_px: float,
    rng: np.random.Generator | int | None = None,
    max_gradient: float = 0.5,
) -> np.ndarray:
    """A random smooth, invertible displacement field: a cubic B-spline with random control values.

    Control values (standard normal, independently for ``dx`` and ``dy``) lie on a square grid of
    spacing ``smoothness_px`` that covers the image with two control points to spare on every
    side, so the border behaves like the interior; the field is the cubic B-spline they define
    (C2-smooth, no interpolation overshoot), scaled so that the largest displacement length
    ``max |u(x)|`` over the pixels is exactly ``max_displacement_px``.

    Invertibility rule: the largest singular value of the field's Jacobian ``du/dx`` (central
    differences) must not exceed ``max_gradient`` (< 1) anywhere.  Then ``x -> x + u(x)`` is a
    bijection (a contraction added to the identity), the Jacobian determinant of the map is at
    least ``(1 - max_gradient)^2 > 0`` (no folding), and :func:`invert_field` converges.  The
    gradient grows with ``max_displacement_px / smoothness_px`` (about 1-2 times it for this
    spline); a draw that breaks the rule is an error, not silently scaled down, so the requested
    displacement always holds.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` (further entries, e.g. channels, are ignored) of the output grid.
    max_displacement_px : float
        The largest displacement length, pixels (>= 0; 0 gives the zero field).
    smoothness_px : float
        Spacing of the random control grid, pixels (> 0): the length scale of the deformation.
    rng : numpy.random.Generator or int or None
        Random source, or a seed for :func:`numpy.random.default_rng`.
    max_gradient : float
        The largest allowed Jacobian norm of the displacement, in ``(0, 1)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)`` backward field ``(dx, dy)`` in pixels.

    Raises
    ------
    ValueError
        For invalid arguments, or when this draw at ``max_displacement_px`` would have a Jacobian
        norm above ``max_gradient`` (the message gives the largest displacement the draw allows).
    """
    height, width = grid_shape(tuple(shape))
    if not (math.isfinite(max_displacement_px) and max_displacement_px >= 0):
        raise ValueError(f"max_displacement_px must be finite and >= 0, got {max_displacement_px!r}")
    if not (math.isfinite(smoothness_px) and smoothness_px > 0):
        raise ValueError(f"smoothness_px must be finite and > 0, got {smoothness_px!r}")
    if not 0 < max_gradient < 1:
        raise ValueError(f"max_gradient must be in (0, 1), got {max_gradient!r}")
    rng = np.random.default_rng(rng)
    spacing = float(smoothness_px)
    # Control point k sits at pixel (k - 2) * spacing; a cubic B-spline at t uses the control
    # values floor(t) - 1 .. floor(t) + 2, so two spare points on each side keep every pixel away
    # from the boundary handling of map_coordinates.
    counts = [int(math.floor((size - 1) / spacing)) + 5 for size in (height, width)]
    control = rng.standard_normal((2, counts[0], counts[1]))
    rows, cols = np.indices((height, width), dtype=np.float64)
    coordinates = np.stack([rows / spacing + 2.0, cols / spacing + 2.0])
    # prefilter=False: the control values are B-spline coefficients (an approximating spline,
    # smoother than interpolating them).
    field = np.stack(
        [ndimage.map_coordinates(control[k], coordinates, order=3, mode="nearest", prefilter=False) for k in range(2)],
        axis=-1,
    )
    if max_displacement_px == 0:
        return np.zeros((height, width, 2), np.float32)
    field *= float(max_displacement_px) / float(np.hypot(field[..., 0], field[..., 1]).max())
    gradient = float(spectral_norm(field).max())
    if gradient > max_gradient:
        allowed = max_displacement_px * max_gradient / gradient
        raise ValueError(
            f"a displacement of {max_displacement_px:g} px is too large for a smoothness of {smoothness_px:g} px: "
            f"this draw's Jacobian norm would be {gradient:.3g} > max_gradient {max_gradient:g} (folding risk); "
            f"it allows at most {allowed:.3g} px, or increase smoothness_px"
        )
    return field.astype(np.float32)

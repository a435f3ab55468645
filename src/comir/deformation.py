"""Dense 2-D displacement fields: known smooth deformations, warping, inversion, SimpleITK exchange.

Conventions (docs/explanation/deformable.md):

* A point is ``(x, y)`` = (column, row) in pixels, as in :mod:`comir.geometry`.
* A *field* is a float array of shape ``(H, W, 2)``: ``field[r, c] = (dx, dy)`` in pixels,
  defined on an *output* grid of ``H x W`` pixels.
* A field is a **backward map**: the output pixel ``x`` shows the input image at ``x + u(x)``,
  i.e. ``output(x) = input(x + u(x))`` (:func:`warp_image`).  The point map of a field is
  ``phi(x) = x + u(x)``, from the output grid to the input image.
* In registration the output grid is the reference image's and the input is the floating image:
  ``x + u(x)`` is where the floating image shows what reference pixel ``x`` shows.  This is the
  inverse direction of the project's floating -> reference matrices; :func:`affine_to_field` and
  :func:`compose_affine` convert a matrix, and :func:`composite_with_affine` builds the
  equivalent SimpleITK transform.
* Between grid points a field is interpolated bilinearly; beyond its grid it is extended by its
  nearest grid value (:func:`map_points`, :func:`compose_fields`, :func:`invert_field`).
* Landmarks are points of the output grid; a registration's target registration error (TRE) at
  a landmark is the distance between where its field and the true field send it
  (:func:`tre`, :func:`tre_summary`; the definitions: :mod:`comir.evaluate.deformation_metrics`).

SimpleITK's :class:`SimpleITK.DisplacementFieldTransform` uses the same direction (it maps an
output point ``p`` to ``p + u(p)`` and resamples the input there), so with spacing 1 and origin 0
a field is passed as it is (:func:`field_to_sitk`, :func:`sitk_to_field`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from comir.geometry import fit_affine, invert

#: Interpolation modes of :func:`warp_image` (scipy.ndimage's boundary modes).
WARP_MODES = ("constant", "nearest", "reflect", "mirror", "wrap")


# --- checks and grids -------------------------------------------------------------------------


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


def _grid_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of an array shape ``(H, W[, ...])``, checked."""
    if len(shape) < 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in shape[:2]):
        raise ValueError(f"shape must start with two positive integers (H, W), got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(x, y)`` coordinates (float64, each ``(H, W)``) of the pixel centres of a grid."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return cols, rows


def _sample_field(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The field bilinearly interpolated at points ``(x, y)`` (any equal shapes), nearest value beyond its grid.

    Returns float64 of shape ``x.shape + (2,)``.
    """
    coordinates = np.stack([np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)])
    components = [
        ndimage.map_coordinates(np.asarray(field[..., k], dtype=np.float64), coordinates, order=1, mode="nearest")
        for k in range(2)
    ]
    return np.stack(components, axis=-1)


def _spectral_norm(field: np.ndarray) -> np.ndarray:
    """The largest singular value of the field's Jacobian ``du/dx`` per pixel (np.gradient), float64 ``(H, W)``.

    In closed form for 2x2 matrices: ``sqrt((F + sqrt(F^2 - 4 det^2)) / 2)`` with ``F`` the
    squared Frobenius norm.
    """
    a, b, c, d = _jacobian_entries(field)
    frobenius = a * a + b * b + c * c + d * d
    det = a * d - b * c
    return np.sqrt((frobenius + np.sqrt(np.maximum(frobenius * frobenius - 4.0 * det * det, 0.0))) / 2.0)


def _jacobian_entries(field: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(dux/dx, dux/dy, duy/dx, duy/dy)`` by central differences (one-sided at the border), float64.

    A grid of one row or column has no derivative along it (taken as 0).
    """
    field = np.asarray(field, dtype=np.float64)
    entries = []
    for k in range(2):
        component = field[..., k]
        d_dy = np.gradient(component, axis=0) if component.shape[0] > 1 else np.zeros_like(component)
        d_dx = np.gradient(component, axis=1) if component.shape[1] > 1 else np.zeros_like(component)
        entries += [d_dx, d_dy]
    return entries[0], entries[1], entries[2], entries[3]


# --- known deformations -----------------------------------------------------------------------


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
    height, width = _grid_shape(tuple(shape))
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
    gradient = float(_spectral_norm(field).max())
    if gradient > max_gradient:
        allowed = max_displacement_px * max_gradient / gradient
        raise ValueError(
            f"a displacement of {max_displacement_px:g} px is too large for a smoothness of {smoothness_px:g} px: "
            f"this draw's Jacobian norm would be {gradient:.3g} > max_gradient {max_gradient:g} (folding risk); "
            f"it allows at most {allowed:.3g} px, or increase smoothness_px"
        )
    return field.astype(np.float32)


# --- warping ----------------------------------------------------------------------------------


def warp_image(
    image: np.ndarray, field: np.ndarray, order: int = 1, mode: str = "constant", cval: float = 0.0
) -> np.ndarray:
    """The image resampled by a backward field: ``output(x) = image(x + field(x))``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(h, w)`` or ``(h, w, C)``; its size may differ from the field's grid.
    field : numpy.ndarray
        ``(H, W, 2)`` backward field ``(dx, dy)`` on the output grid (module doc).
    order : int
        Spline order of the interpolation (0 nearest, 1 bilinear, 3 cubic; scipy.ndimage).
    mode : str
        What a sample outside the image gets (:data:`WARP_MODES`, scipy.ndimage's modes).
        ``"constant"``: ``cval`` for every sample outside ``[0, w - 1] x [0, h - 1]`` (the
        centres of the edge pixels), no blending with ``cval`` inside; :func:`inside_mask` gives
        the pixels that sampled the image.  ``"nearest"`` repeats the edge pixels, etc.
    cval : float
        The value outside the image in ``"constant"`` mode.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``: float64 for a float64 image, else float32.
    """
    field = check_field(field)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must have shape (h, w) or (h, w, C), got {image.shape}")
    if mode not in WARP_MODES:
        raise ValueError(f"mode must be one of {', '.join(WARP_MODES)}, got {mode!r}")
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    x, y = _grid(field.shape[:2])
    coordinates = np.stack([y + field[..., 1], x + field[..., 0]])
    planes = image[..., None] if image.ndim == 2 else image
    warped = np.stack(
        [
            ndimage.map_coordinates(
                np.asarray(planes[..., k], dtype=np.float64), coordinates, order=order, mode=mode, cval=cval
            )
            for k in range(planes.shape[2])  # a loop over channels; each is one vectorised call
        ],
        axis=-1,
    ).astype(dtype)
    return warped[..., 0] if image.ndim == 2 else warped


def inside_mask(field: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Where the field samples inside an input image: ``x + u(x)`` within ``[0, w - 1] x [0, h - 1]``.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` backward field.
    input_shape : tuple of int
        ``(h, w[, C])`` of the image the field samples.

    Returns
    -------
    numpy.ndarray
        bool ``(H, W)``: the pixels :func:`warp_image` fills from the image in ``"constant"`` mode.
    """
    field = check_field(field)
    height, width = _grid_shape(tuple(input_shape))
    x, y = _grid(field.shape[:2])
    sx, sy = x + field[..., 0], y + field[..., 1]
    return (sx >= 0) & (sx <= width - 1) & (sy >= 0) & (sy <= height - 1)


# --- algebra of fields ------------------------------------------------------------------------


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
    x, y = _grid(field.shape[:2])
    inverse = -np.asarray(field, dtype=np.float64)
    for _ in range(int(iterations)):  # fixed-point steps, each vectorised over the grid
        updated = -_sample_field(field, x + inverse[..., 0], y + inverse[..., 1])
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
    x, y = _grid(inner.shape[:2])
    inner64 = np.asarray(inner, dtype=np.float64)
    return (inner64 + _sample_field(outer, x + inner64[..., 0], y + inner64[..., 1])).astype(np.float32)


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
    return compose_affine(matrix, np.zeros(_grid_shape(tuple(shape)) + (2,), np.float32))


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
    inverse = _check_matrix(matrix, invertible=True, inverse=True)
    x, y = _grid(residual.shape[:2])
    sx = x + residual[..., 0]
    sy = y + residual[..., 1]
    fx = inverse[0, 0] * sx + inverse[0, 1] * sy + inverse[0, 2]
    fy = inverse[1, 0] * sx + inverse[1, 1] * sy + inverse[1, 2]
    return np.stack([fx - x, fy - y], axis=-1).astype(np.float32)


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
    x, y = _grid(field.shape[:2])
    reference = np.stack([x.ravel(), y.ravel()], axis=1)
    return fit_affine(reference + np.asarray(field, dtype=np.float64).reshape(-1, 2), reference)


def _check_matrix(matrix: np.ndarray, invertible: bool = False, inverse: bool = False) -> np.ndarray:
    """A finite 2x3 float matrix (its inverse with ``inverse``); ValueError otherwise."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"matrix must be a finite 2x3 array, got shape {matrix.shape}")
    if invertible or inverse:
        det = float(np.linalg.det(matrix[:, :2]))
        if not (math.isfinite(det) and abs(det) > 1e-12):
            raise ValueError(f"matrix must be invertible, its linear part has determinant {det:g}")
    return invert(matrix) if inverse else matrix


def jacobian_determinant(field: np.ndarray) -> np.ndarray:
    """The Jacobian determinant of the point map ``x -> x + u(x)`` per pixel (np.gradient).

    ``(1 + dux/dx) (1 + duy/dy) - dux/dy duy/dx`` by central differences (one-sided at the
    border): the local area ratio; ``<= 0`` where the map folds.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` field.

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``.
    """
    a, b, c, d = _jacobian_entries(check_field(field))
    return (1.0 + a) * (1.0 + d) - b * c


def folding_fraction(field: np.ndarray) -> float:
    """The fraction of pixels where the map folds: Jacobian determinant ``<= 0`` (:func:`jacobian_determinant`)."""
    return float(np.mean(jacobian_determinant(field) <= 0.0))


def map_points(points: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Points of the output grid mapped by a field: ``p + u(p)``, ``u`` bilinear at ``p``.

    For a registration result, reference points to the floating positions showing the same
    place.  Beyond the grid ``u`` is its nearest grid value.

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, 2)`` points ``(x, y)``, pixels.
    field : numpy.ndarray
        ``(H, W, 2)`` field.

    Returns
    -------
    numpy.ndarray
        float64 ``(N, 2)``.
    """
    field = check_field(field)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points contain non-finite values")
    return points + _sample_field(field, points[:, 0], points[:, 1])


# --- landmarks and target registration errors -------------------------------------------------


def landmark_grid(shape: tuple[int, ...], spacing_px: float, margin_px: float = 0.0) -> np.ndarray:
    """Landmarks ``(x, y)`` on a regular grid, ``margin_px`` to ``size - 1 - margin_px`` in steps of ``spacing_px``.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W[, ...])`` of the image.
    spacing_px : float
        Distance between neighbouring landmarks, pixels (> 0).
    margin_px : float
        Distance of the outermost landmarks from the centres of the edge pixels, at least (>= 0).

    Returns
    -------
    numpy.ndarray
        float64 ``(N, 2)``, row by row (y outer, x inner).

    Raises
    ------
    ValueError
        For invalid arguments or a margin that leaves no landmark.
    """
    if len(shape) < 2 or min(shape[:2]) < 1:
        raise ValueError(f"shape must start with (H, W) >= 1, got {tuple(shape)}")
    if not (math.isfinite(spacing_px) and spacing_px > 0):
        raise ValueError(f"spacing_px must be finite and > 0, got {spacing_px!r}")
    if not (math.isfinite(margin_px) and margin_px >= 0):
        raise ValueError(f"margin_px must be finite and >= 0, got {margin_px!r}")
    height, width = int(shape[0]), int(shape[1])
    # A small tolerance so that a landmark exactly at the last allowed position is kept.
    xs = np.arange(margin_px, width - 1 - margin_px + 1e-9, spacing_px)
    ys = np.arange(margin_px, height - 1 - margin_px + 1e-9, spacing_px)
    if xs.size == 0 or ys.size == 0:
        raise ValueError(f"a margin of {margin_px:g} px leaves no landmark in an image of {width}x{height} px")
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


#: The statistics of :func:`tre_summary`, in its order.
TRE_SUMMARY_KEYS = (
    "n",
    "mean_px",
    "median_px",
    "p90_px",
    "max_px",
    "mean_pct_width",
    "median_pct_width",
    "p90_pct_width",
    "max_pct_width",
    "mean_rtre",
    "median_rtre",
    "max_rtre",
)


def tre(estimated_field: np.ndarray, true_field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Target registration error per landmark, pixels.

    Parameters
    ----------
    estimated_field, true_field : numpy.ndarray
        ``(H, W, 2)`` backward fields on the same reference grid (:mod:`comir.deformation`).
    points : numpy.ndarray
        ``(N, 2)`` landmarks ``(x, y)`` on the reference grid.

    Returns
    -------
    numpy.ndarray
        float64 ``(N,)``: ``|map_points(p, estimated) - map_points(p, true)|``, both fields
        interpolated bilinearly at the landmark (:func:`comir.deformation.map_points`).
    """
    estimated_field = check_field(estimated_field, "estimated_field")
    true_field = check_field(true_field, "true_field")
    if estimated_field.shape != true_field.shape:
        raise ValueError(f"the fields have different grids: {estimated_field.shape} and {true_field.shape}")
    difference = map_points(points, estimated_field) - map_points(points, true_field)
    return np.hypot(difference[:, 0], difference[:, 1])


def rtre(errors: np.ndarray, width: int, height: int) -> np.ndarray:
    """Relative TRE as ANHIR defines it: the TRE divided by the image diagonal ``sqrt(width^2 + height^2)``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be > 0, got {width} x {height}")
    return np.asarray(errors, dtype=np.float64) / math.hypot(width, height)


def tre_summary(errors: np.ndarray, width: int, height: int) -> dict[str, float]:
    """Statistics of the TREs of one pair: in pixels, in % of the width (the project's success unit), as rTRE.

    Parameters
    ----------
    errors : numpy.ndarray
        TREs, pixels (finite, >= 0), e.g. from :func:`tre`.
    width, height : int
        The reference image's size, pixels.

    Returns
    -------
    dict of str to float
        :data:`TRE_SUMMARY_KEYS`: ``n`` (the number of landmarks), the mean, median, 90th
        percentile (numpy's linear interpolation) and maximum in px and in % of ``width``, and
        the mean, median (ANHIR's per-pair statistic) and maximum rTRE.  With no landmark,
        ``n`` is 0 and every statistic ``nan``.

    Raises
    ------
    ValueError
        For non-finite or negative errors or a non-positive size.
    """
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be > 0, got {width} x {height}")
    if not np.all(np.isfinite(errors)) or np.any(errors < 0):
        raise ValueError("errors must be finite and >= 0")
    summary = dict.fromkeys(TRE_SUMMARY_KEYS, math.nan)
    summary["n"] = float(errors.size)
    if errors.size == 0:
        return summary
    stats = {
        "mean": errors.mean(),
        "median": np.median(errors),
        "p90": np.percentile(errors, 90),
        "max": errors.max(),
    }
    for name, value in stats.items():
        summary[f"{name}_px"] = float(value)
        summary[f"{name}_pct_width"] = float(100.0 * value / width)
    relative = rtre(errors, width, height)
    summary.update(
        mean_rtre=float(relative.mean()), median_rtre=float(np.median(relative)), max_rtre=float(relative.max())
    )
    return summary


# --- SimpleITK ----------------------------------------------------------------------------------


def field_to_sitk(field: np.ndarray) -> Any:
    """The field as a :class:`SimpleITK.DisplacementFieldTransform` (float64, spacing 1, origin 0).

    SimpleITK maps a point ``p`` to ``p + u(p)`` (bilinear between grid points) and resamples the
    input image there: the backward convention of this module, so the values are passed as they are.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` field.

    Returns
    -------
    SimpleITK.DisplacementFieldTransform
    """
    import SimpleITK as sitk

    field = check_field(field)
    image = sitk.GetImageFromArray(np.asarray(field, dtype=np.float64), isVector=True)
    image.SetSpacing((1.0, 1.0))
    image.SetOrigin((0.0, 0.0))
    return sitk.DisplacementFieldTransform(image)  # takes the image over (it is left empty)


def sitk_to_field(transform_or_image: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A SimpleITK transform or displacement-field image as a field on a pixel grid.

    Parameters
    ----------
    transform_or_image : SimpleITK.Transform or SimpleITK.Image
        Any 2-D transform (output point -> input point, as SimpleITK resamples), e.g. a
        DisplacementFieldTransform, a BSplineTransform or a CompositeTransform; or a 2-component
        vector image of displacements.
    shape : tuple of int, optional
        ``(H, W[, ...])`` of the grid (spacing 1, origin 0) to evaluate the transform on.  Without
        it, a DisplacementFieldTransform's or an image's own grid, whose values are returned as
        they are (exactly); required for other transforms.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)``: ``T(x) - x`` at each pixel ``x``.
    """
    import SimpleITK as sitk

    item = transform_or_image
    if isinstance(item, sitk.Image):
        if item.GetDimension() != 2 or item.GetNumberOfComponentsPerPixel() != 2:
            raise ValueError("a displacement-field image must be 2-D with 2 components per pixel")
        if shape is None:
            return check_field(sitk.GetArrayFromImage(item)).astype(np.float32)
        item = sitk.DisplacementFieldTransform(sitk.Cast(item, sitk.sitkVectorFloat64))
    if not isinstance(item, sitk.Transform):
        raise TypeError(f"expected a SimpleITK Transform or Image, got {type(item).__name__}")
    if item.GetDimension() != 2:
        raise ValueError(f"expected a 2-D transform, got {item.GetDimension()}-D")
    if shape is None:
        if item.GetName() != "DisplacementFieldTransform":
            raise ValueError(f"shape is required to evaluate a {item.GetName()} on a grid")
        return sitk_to_field(sitk.DisplacementFieldTransform(item).GetDisplacementField())
    height, width = _grid_shape(tuple(shape))
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    converter.SetSize((width, height))
    converter.SetOutputSpacing((1.0, 1.0))
    converter.SetOutputOrigin((0.0, 0.0))
    converter.SetNumberOfThreads(1)
    return check_field(sitk.GetArrayFromImage(converter.Execute(item))).astype(np.float32)


def write_field(path: str | Path, field: np.ndarray) -> None:
    """Write a field as a SimpleITK DisplacementFieldTransform file (:func:`field_to_sitk`).

    The format follows the extension, as ``SimpleITK.WriteTransform`` decides: ``.h5`` (HDF5,
    binary float64: exact; the recommended one) or ``.tfm`` / ``.txt`` (ITK's text format).
    Image formats (``.nii.gz``, ``.mha``) are not transform files and SimpleITK refuses them.
    """
    import SimpleITK as sitk

    sitk.WriteTransform(field_to_sitk(field), str(path))


def read_field(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A field from a SimpleITK transform file (:func:`write_field`, or any 2-D transform with ``shape``).

    Returns float32 ``(H, W, 2)``; see :func:`sitk_to_field` for ``shape``.
    """
    import SimpleITK as sitk

    return sitk_to_field(sitk.ReadTransform(str(path)), shape)


def composite_with_affine(matrix: np.ndarray, field: np.ndarray) -> Any:
    """The SimpleITK transform of :func:`compose_affine`: ``x -> inverse(matrix)(x + field(x))``.

    A :class:`SimpleITK.CompositeTransform` of an AffineTransform (``inverse(matrix)``, reference
    -> floating) and the displacement field (:func:`field_to_sitk`); SimpleITK applies the last
    transform of the list first, i.e. the field, then the affine.  Resampling the floating image
    with it on the reference grid is moving it by ``matrix`` and then warping the result by
    ``field``, in one interpolation.

    Parameters
    ----------
    matrix : numpy.ndarray
        2x3 floating -> reference matrix.
    field : numpy.ndarray
        ``(H, W, 2)`` residual backward field on the reference grid.

    Returns
    -------
    SimpleITK.CompositeTransform
    """
    import SimpleITK as sitk

    inverse = _check_matrix(matrix, inverse=True)
    affine = sitk.AffineTransform(2)
    affine.SetMatrix(tuple(float(v) for v in inverse[:, :2].ravel()))
    affine.SetTranslation(tuple(float(v) for v in inverse[:, 2]))
    return sitk.CompositeTransform([affine, field_to_sitk(field)])


__all__ = [
    "TRE_SUMMARY_KEYS",
    "WARP_MODES",
    "affine_of_field",
    "affine_to_field",
    "check_field",
    "compose_affine",
    "compose_fields",
    "composite_with_affine",
    "field_to_sitk",
    "folding_fraction",
    "inside_mask",
    "invert_field",
    "jacobian_determinant",
    "landmark_grid",
    "map_points",
    "random_displacement",
    "read_field",
    "rtre",
    "sitk_to_field",
    "tre",
    "tre_summary",
    "warp_image",
    "write_field",
]

"""Accuracy of deformable registrations: landmark errors (TRE, rTRE) and mask overlap (Dice, Hausdorff).

Definitions (docs/explanation/deformable.md):

* **TRE** (target registration error) of a landmark ``p`` on the reference grid: the distance,
  in pixels, between where the estimated and the true field send it into the floating image,
  ``|(p + u_est(p)) - (p + u_true(p))|`` (:func:`tre`).
* **rTRE** (relative TRE, the ANHIR challenge's measure; Borovec et al., IEEE TMI 2020): the TRE
  divided by the image diagonal ``sqrt(width^2 + height^2)`` (:func:`rtre`).
* **Dice** of two masks: ``2 |A and B| / (|A| + |B|)`` (:func:`dice`).
* **Hausdorff distances** between the boundaries of two masks (a boundary pixel: a mask pixel
  with a 4-neighbour outside the mask or outside the image): every boundary pixel of each mask
  gets its Euclidean distance to the nearest boundary pixel of the other (exact, by
  ``scipy.ndimage.distance_transform_edt``); :func:`hausdorff` is the largest of these distances,
  :func:`hausdorff95` their 95th percentile, pooled over both directions (as MedPy's ``hd95``),
  which ignores the farthest 5 % of the boundary (a few stray pixels).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from comir.deformation import check_field, map_points

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


def _check_masks(mask_a: np.ndarray, mask_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 2-D masks of one shape as booleans; ValueError otherwise."""
    mask_a, mask_b = np.asarray(mask_a), np.asarray(mask_b)
    if mask_a.ndim != 2 or mask_a.shape != mask_b.shape:
        raise ValueError(f"masks must be 2-D of one shape, got {mask_a.shape} and {mask_b.shape}")
    return mask_a.astype(bool), mask_b.astype(bool)


def dice(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Dice coefficient ``2 |A and B| / (|A| + |B|)`` of two masks of one shape, in ``[0, 1]``.

    ``nan`` when both masks are empty: the overlap of nothing with nothing is undefined (some
    tools call it 1), and a mean over structures should skip it rather than count it perfect.
    """
    mask_a, mask_b = _check_masks(mask_a, mask_b)
    total = int(mask_a.sum()) + int(mask_b.sum())
    if total == 0:
        return math.nan
    return 2.0 * float(np.logical_and(mask_a, mask_b).sum()) / total


def _boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels: in the mask with a 4-neighbour outside it (or outside the image)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """Distances, pixels, of every boundary pixel of each mask to the nearest boundary pixel of the other.

    Returns float64, the distances from ``A``'s boundary followed by those from ``B``'s; empty
    when either mask is empty (no boundary to measure from or to).
    """
    mask_a, mask_b = _check_masks(mask_a, mask_b)
    if not (mask_a.any() and mask_b.any()):
        return np.zeros(0)
    boundary_a, boundary_b = _boundary(mask_a), _boundary(mask_b)
    # distance_transform_edt measures to the nearest zero: the other mask's boundary pixels.
    to_b = ndimage.distance_transform_edt(~boundary_b)
    to_a = ndimage.distance_transform_edt(~boundary_a)
    return np.concatenate([to_b[boundary_a], to_a[boundary_b]]).astype(np.float64)


def hausdorff(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between the masks' boundaries, pixels (:func:`surface_distances`' maximum).

    ``nan`` when either mask is empty: an empty mask has no boundary, so no distance is defined.
    """
    distances = surface_distances(mask_a, mask_b)
    return float(distances.max()) if distances.size else math.nan


def hausdorff95(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """95th percentile of the pooled boundary distances of both directions, pixels (numpy's linear interpolation).

    ``nan`` when either mask is empty (see :func:`hausdorff`).
    """
    distances = surface_distances(mask_a, mask_b)
    return float(np.percentile(distances, 95)) if distances.size else math.nan


__all__ = [
    "TRE_SUMMARY_KEYS",
    "dice",
    "hausdorff",
    "hausdorff95",
    "landmark_grid",
    "rtre",
    "surface_distances",
    "tre",
    "tre_summary",
]

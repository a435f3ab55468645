"""Overlap of two masks: Dice and Hausdorff distances (definitions: :mod:`comir.evaluate.deformation_metrics`).

Here, below the stages, because a deformation test set's scorer
(:class:`comir.testset.deformation.FieldScorer`, run by the register rule) compares warped structure
masks with them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


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

    Parameters
    ----------
    mask_a, mask_b : numpy.ndarray
        2-D masks of one shape (nonzero is inside).

    Returns
    -------
    float
        The Dice coefficient, or ``nan``.

    Raises
    ------
    ValueError
        If the masks are not 2-D of one shape.
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

    Parameters
    ----------
    mask_a, mask_b : numpy.ndarray
        2-D masks of one shape (nonzero is inside).

    Returns
    -------
    numpy.ndarray
        Float64, the distances from ``A``'s boundary followed by those from ``B``'s; empty
        when either mask is empty (no boundary to measure from or to).

    Raises
    ------
    ValueError
        If the masks are not 2-D of one shape.
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

    Parameters
    ----------
    mask_a, mask_b : numpy.ndarray
        2-D masks of one shape (nonzero is inside).

    Returns
    -------
    float
        The distance in pixels, or ``nan``.

    Raises
    ------
    ValueError
        If the masks are not 2-D of one shape.
    """
    distances = surface_distances(mask_a, mask_b)
    return float(distances.max()) if distances.size else math.nan


def hausdorff95(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """95th percentile of the pooled boundary distances of both directions, pixels (numpy's linear interpolation).

    ``nan`` when either mask is empty (see :func:`hausdorff`).

    Parameters
    ----------
    mask_a, mask_b : numpy.ndarray
        2-D masks of one shape (nonzero is inside).

    Returns
    -------
    float
        The distance in pixels, or ``nan``.

    Raises
    ------
    ValueError
        If the masks are not 2-D of one shape.
    """
    distances = surface_distances(mask_a, mask_b)
    return float(np.percentile(distances, 95)) if distances.size else math.nan


__all__ = ["dice", "hausdorff", "hausdorff95", "surface_distances"]

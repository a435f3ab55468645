"""Landmarks and target registration errors (TRE): points mapped by fields, their distances, statistics.

Contract: :func:`map_points` sends points of the output grid to ``p + u(p)`` (``u`` bilinear);
:func:`landmark_grid` places landmarks on a regular grid inside a margin; :func:`tre` is the
distance per landmark between where an estimated and the true field send it, :func:`rtre` that
distance relative to the image diagonal (ANHIR), :func:`tre_summary` a pair's statistics
(:data:`TRE_SUMMARY_KEYS`). The definitions: :mod:`comir.evaluate.deformation_metrics`.
"""

from __future__ import annotations

import math

import numpy as np

from comir.deformation.fields import check_field, sample_field

__all__ = ["TRE_SUMMARY_KEYS", "landmark_grid", "map_points", "rtre", "tre", "tre_summary"]


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
    return points + sample_field(field, points[:, 0], points[:, 1])


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
        interpolated bilinearly at the landmark (:func:`map_points`).
    """
    estimated_field = check_field(estimated_field, "estimated_field")
    true_field = check_field(true_field, "true_field")
    if estimated_field.shape != true_field.shape:
        raise ValueError(f"the fields have different grids: {estimated_field.shape} and {true_field.shape}")
    difference = map_points(points, estimated_field) - map_points(points, true_field)
    return np.hypot(difference[:, 0], difference[:, 1])


def rtre(errors: np.ndarray, width: int, height: int) -> np.ndarray:
    """Relative TRE as ANHIR defines it: the TRE divided by the image diagonal ``sqrt(width^2 + height^2)``.

    Parameters
    ----------
    errors : numpy.ndarray
        TREs, pixels (any shape).
    width, height : int
        The reference image's size, pixels.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``errors``.

    Raises
    ------
    ValueError
        If ``width`` or ``height`` is not positive.
    """
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

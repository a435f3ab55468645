"""Measurements of the CoMIRs themselves (docs/representation.md; paper section 4.1).

* Equivariance: :func:`rotation_equivariance` (paper Fig. 2, drawn by
  :func:`plot_polar_equivariance`) and :func:`translation_equivariance`.
* Reproducibility across training runs (paper Table 1): :func:`pairwise_correlations`
  of N models' CoMIRs of one patch, summarised by :func:`bootstrap_mean_pairwise`.
* Agreement of the two modalities' CoMIRs of the same place (critic comparison):
  :func:`modality_agreement`.

Every correlation is :func:`weighted_pearson`: one Pearson correlation pooled over
channels and pixels, each channel centred on its own weighted mean. The contrastive
loss cannot tell a CoMIR from one with permuted or sign-flipped channels, so CoMIRs of
different training runs are compared after :func:`match_channels`, which picks the
signed permutation that maximises that pooled correlation.

CoMIRs are ``(C, H, W)`` arrays; pixel weights are ``(H, W)`` arrays shared by all
channels (``None``: uniform). Computations run in float64.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage, special
from scipy.optimize import linear_sum_assignment

from comir.io import atomic_path, read_image

__all__ = [
    "BootstrapInterval",
    "ComirFunction",
    "agreement_table",
    "apply_match",
    "bootstrap_mean_pairwise",
    "inscribed_disk",
    "match_channels",
    "modality_agreement",
    "pairwise_correlations",
    "plot_polar_equivariance",
    "rotation_equivariance",
    "translation_equivariance",
    "weighted_pearson",
]

#: A modality's network as a function: (C_in, H, W) float32 image -> (C_out, H, W) CoMIR.
ComirFunction = Callable[[np.ndarray], np.ndarray]

# Half-sample symmetric extension ("d c b a | a b c d"), used both for the spline prefilter and
# for sampling, as the two must agree; it only matters within the interpolation kernel of a border.
_BOUNDARY_MODE = "reflect"


class BootstrapInterval(NamedTuple):
    """A mean and its percentile bootstrap confidence interval (docs/representation.md, section 5)."""

    mean: float
    low: float
    high: float


# ---------------------------------------------------------------------------------------------------------------------
# Correlation


def _pixel_weights(shape: tuple[int, ...], weights: np.ndarray | None) -> np.ndarray:
    """Validated float64 ``(H, W)`` weights; uniform for ``None``."""
    if weights is None:
        return np.ones(shape)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != tuple(shape):
        raise ValueError(f"weights must have the image shape {tuple(shape)}, got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return weights


def _centred(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``x`` minus the weighted mean of each channel (over the last two axes)."""
    mean = (x * weights).sum(axis=(-2, -1), keepdims=True) / weights.sum()
    return x - mean


def _as_comirs(x: np.ndarray, name: str, min_ndim: int = 3) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes (..., C, H, W), got shape {x.shape}")
    return x


def weighted_pearson(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """Weighted Pearson correlation of two CoMIRs, pooled over channels and pixels.

    ``r = sum_c sum_p w_p a'_cp b'_cp / sqrt(sum_c sum_p w_p a'_cp^2 * sum_c sum_p w_p b'_cp^2)``
    where ``a'_c`` is channel ``c`` of ``a`` minus its weighted mean (the same for ``b``).
    Centring per channel keeps differences between channel means from counting as
    agreement; pooling weights each channel by its variance, so a (nearly) constant
    channel neither dominates nor makes the result undefined. ``r`` is invariant to
    ``a -> s * a + o_c`` for one scale ``s > 0`` and per-channel offsets ``o_c``
    (``s < 0`` flips its sign); per-channel scales do change it.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(..., C, H, W)`` arrays of one ``(C, H, W)`` whose leading axes broadcast (one
        correlation per leading index).
    weights : numpy.ndarray or None, optional
        ``(H, W)`` finite, non-negative pixel weights, not all zero. Default None: uniform.

    Returns
    -------
    float or numpy.ndarray
        A float for ``(C, H, W)`` inputs, otherwise an array of the leading shape; in [-1, 1].
        NaN when either input is constant on the weighted pixels.

    Raises
    ------
    ValueError
        If an input has fewer than 3 axes, their ``(C, H, W)`` differ, or the weights are invalid.
    """
    a = _as_comirs(a, "a")
    b = _as_comirs(b, "b")
    if a.shape[-3:] != b.shape[-3:]:
        raise ValueError(f"a and b must have the same (C, H, W), got {a.shape[-3:]} and {b.shape[-3:]}")
    w = _pixel_weights(a.shape[-2:], weights)
    da, db = _centred(a, w), _centred(b, w)
    pooled = (-3, -2, -1)
    covariance = (w * da * db).sum(axis=pooled)
    variance_a = (w * da * da).sum(axis=pooled)
    variance_b = (w * db * db).sum(axis=pooled)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Clipped because rounding can put an exact match a hair above 1.
        r = np.clip(covariance / np.sqrt(variance_a * variance_b), -1.0, 1.0)
    return float(r) if r.ndim == 0 else r


def inscribed_disk(shape: tuple[int, int], soft_edge: float = 1.0) -> np.ndarray:
    """Weights ``(H, W)`` of the disk inscribed in an image: 1 inside, 0 outside.

    Centre ``((H - 1) / 2, (W - 1) / 2)`` (the centre of rotation of
    :func:`rotation_equivariance`), radius ``R = min(H, W) / 2``.

    Parameters
    ----------
    shape : tuple[int, int]
        ``(H, W)`` of the image.
    soft_edge : float, optional
        Width in px of the soft edge (>= 0). Default 1: the weight falls linearly from 1 at distance
        ``R - soft_edge`` to 0 at ``R``, so every weighted pixel centre lies strictly inside the disk
        (and hence inside the patch after any rotation about the centre) and the pixels on the rim,
        whose back-rotated values interpolate across the patch border, count less. ``soft_edge=0``
        gives the hard disk ``distance < R``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64 weights in [0, 1].

    Raises
    ------
    ValueError
        If ``soft_edge < 0``.
    """
    height, width = shape
    if soft_edge < 0:
        raise ValueError(f"soft_edge must be >= 0, got {soft_edge}")
    rows = np.arange(height) - (height - 1) / 2
    cols = np.arange(width) - (width - 1) / 2
    distance = np.hypot(rows[:, None], cols[None, :])
    radius = min(height, width) / 2
    if soft_edge == 0:
        return (distance < radius).astype(np.float64)
    return np.clip((radius - distance) / soft_edge, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------------
# Equivariance


def _spline_coefficients(image: np.ndarray, order: int) -> np.ndarray:
    """B-spline coefficients of each channel of ``(C, H, W)``: filtered along the image axes, never across channels."""
    coefficients = np.asarray(image, dtype=np.float64)
    for axis in (-2, -1):
        coefficients = ndimage.spline_filter1d(coefficients, order, axis=axis, mode=_BOUNDARY_MODE)
    return coefficients


def _rotation_grid(size: int, centre: float, angle_deg: float) -> np.ndarray:
    """``(2, size, size)`` source coordinates of a ``size`` px square rotated counter-clockwise (as displayed).

    Output pixel at offset ``(v, u)`` (rows, columns) from the output centre samples the
    source at ``centre + R(-angle) (v, u)``: the same convention as
    :func:`scipy.ndimage.rotate`. ``cosdg``/``sindg`` are exact at multiples of 90 deg,
    so those rotations sample whole pixels.
    """
    offsets = np.arange(size) - (size - 1) / 2
    v, u = offsets[:, None], offsets[None, :]
    cos, sin = special.cosdg(angle_deg), special.sindg(angle_deg)
    rows = centre + cos * v + sin * u
    cols = centre + cos * u - sin * v
    return np.stack(np.broadcast_arrays(rows, cols))


def _sample(coefficients: np.ndarray, grid: np.ndarray, order: int) -> np.ndarray:
    """Spline interpolation of every channel of ``coefficients`` at ``grid``; the grid is shared by all channels."""
    return np.stack(
        [
            ndimage.map_coordinates(channel, grid, order=order, mode=_BOUNDARY_MODE, prefilter=False)
            for channel in coefficients
        ]
    )


def _rotate_square(image: np.ndarray, angle_deg: float, size: int, order: int) -> np.ndarray:
    """The central ``size`` px square of square ``image`` rotated by ``angle_deg`` about the image centre.

    Equal to ``scipy.ndimage.rotate(image, angle_deg, axes=(-1, -2), reshape=False,
    order=order, mode="reflect")`` followed by a centre crop, without computing the
    pixels that the crop throws away.
    """
    centre = (image.shape[-1] - 1) / 2
    return _sample(_spline_coefficients(image, order), _rotation_grid(size, centre, angle_deg), order)


def _call(comir_fn: ComirFunction, image: np.ndarray) -> np.ndarray:
    """``comir_fn`` on a float32 copy of ``image``; checks that the CoMIR keeps the image size."""
    comir = np.asarray(comir_fn(np.ascontiguousarray(image, dtype=np.float32)), dtype=np.float64)
    if comir.ndim != 3 or comir.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"comir_fn must map (C_in, H, W) to (C_out, H, W), got {image.shape} -> {comir.shape}")
    return comir


def _central_window(image: np.ndarray, size: int) -> np.ndarray:
    top = (image.shape[-2] - size) // 2
    left = (image.shape[-1] - size) // 2
    return image[:, top : top + size, left : left + size]


def rotation_equivariance(
    comir_fn: ComirFunction,
    image: np.ndarray,
    angles_deg: Iterable[float],
    patch: int = 128,
    crop: int = 182,
    order: int = 3,
    soft_edge: float = 1.0,
) -> pd.DataFrame:
    """Correlation of the back-rotated CoMIR of a rotated patch with the CoMIR of the patch (paper Fig. 2).

    Protocol (docs/representation.md, section 2): take the central ``crop`` px square of
    ``image``; for every angle, rotate it counter-clockwise by the
    angle about its centre (spline interpolation of ``order``, channel-wise) and keep the
    central ``patch`` px (``crop >= patch * sqrt(2)``, so the patch has no empty
    corners); compute its CoMIR, rotate the CoMIR back by ``-angle`` (same
    interpolation) and correlate it (:func:`weighted_pearson`) with the CoMIR of the
    unrotated central patch inside :func:`inscribed_disk` (with ``soft_edge``).

    Parameters
    ----------
    comir_fn : ComirFunction
        The modality's network: ``(C_in, H, W)`` float32 image -> ``(C_out, H, W)`` CoMIR.
    image : numpy.ndarray
        ``(C_in, H, W)`` image, at least ``crop`` px a side.
    angles_deg : Iterable[float]
        The rotation angles in degrees, counter-clockwise.
    patch : int, optional
        Side in px of the patch given to the network. Default 128.
    crop : int, optional
        Side in px of the square that is rotated; ``>= patch * sqrt(2)`` and ``crop - patch`` even.
        Default 182.
    order : int, optional
        Spline order of the rotations. Default 3.
    soft_edge : float, optional
        Soft edge in px of the disk the correlation is weighted by. Default 1.

    Returns
    -------
    pandas.DataFrame
        One row per angle, in the given order: ``angle_deg``, ``correlation``.

    Raises
    ------
    ValueError
        If ``image`` is not 3-D or smaller than ``crop``, ``crop`` is too small or ``crop - patch`` odd,
        or ``comir_fn`` changes the image size.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    if min(image.shape[-2:]) < crop:
        raise ValueError(f"image {image.shape[-2:]} is smaller than the crop of {crop} px")
    if crop < patch * math.sqrt(2):
        raise ValueError(f"crop {crop} px < patch {patch} px * sqrt(2): rotated patches would have empty corners")
    if (crop - patch) % 2:
        # Otherwise the unrotated patch is not centred on the centre of rotation.
        raise ValueError(f"crop - patch must be even, got {crop} - {patch}")
    square = _central_window(image, crop).astype(np.float64)
    coefficients = _spline_coefficients(square, order)
    centre = (crop - 1) / 2
    reference = _call(comir_fn, _central_window(square, patch))
    disk = inscribed_disk((patch, patch), soft_edge)
    angles = [float(angle) for angle in angles_deg]
    correlations = []
    for angle in angles:
        rotated = _sample(coefficients, _rotation_grid(patch, centre, angle), order)
        comir = _call(comir_fn, rotated)
        back = _rotate_square(comir, -angle, patch, order)
        correlations.append(weighted_pearson(back, reference, disk))
    return pd.DataFrame({"angle_deg": angles, "correlation": correlations})


def translation_equivariance(
    comir_fn: ComirFunction,
    image: np.ndarray,
    shifts: Iterable[tuple[int, int]],
    patch: int = 128,
    margin: int = 0,
) -> pd.DataFrame:
    """Correlation of the CoMIRs of two windows of ``image`` offset by ``(dy, dx)`` px, on their overlap.

    The reference window is the central ``patch`` px square of ``image``; for every
    integer shift ``(dy, dx)`` the window moved by ``dy`` rows and ``dx``
    columns is cut from the same image (no interpolation), so pixel ``(y, x)`` of its
    CoMIR should equal pixel ``(y + dy, x + dx)`` of the reference CoMIR. The two are
    correlated (:func:`weighted_pearson`, uniform weights) on the overlap, less
    ``margin`` px from the border of either window (where the network sees its padding,
    not the image). Shifts that are multiples of the network's total stride test little:
    the caller chooses them.

    Parameters
    ----------
    comir_fn : ComirFunction
        The modality's network: ``(C_in, H, W)`` float32 image -> ``(C_out, H, W)`` CoMIR.
    image : numpy.ndarray
        ``(C_in, H, W)`` image.
    shifts : Iterable[tuple[int, int]]
        The shifts ``(dy, dx)`` in px; each moved window must stay inside the image.
    patch : int, optional
        Side in px of the windows. Default 128.
    margin : int, optional
        Px left out along the border of either window (>= 0). Default 0.

    Returns
    -------
    pandas.DataFrame
        One row per shift, in the given order: ``dy``, ``dx``, ``correlation``.

    Raises
    ------
    ValueError
        If ``image`` is not 3-D, ``margin < 0``, a shift leaves the image or leaves no overlap, or
        ``comir_fn`` changes the image size.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    height, width = image.shape[-2:]
    top, left = (height - patch) // 2, (width - patch) // 2
    reference = _call(comir_fn, image[:, top : top + patch, left : left + patch])
    rows = []
    for dy, dx in shifts:
        dy, dx = int(dy), int(dx)
        y0, x0 = top + dy, left + dx
        if y0 < 0 or x0 < 0 or y0 + patch > height or x0 + patch > width:
            raise ValueError(f"shift ({dy}, {dx}) moves the {patch} px window out of the {height}x{width} image")
        # Overlap in reference coordinates, at least `margin` px inside both windows.
        y_lo, y_hi = margin + max(0, dy), patch - margin + min(0, dy)
        x_lo, x_hi = margin + max(0, dx), patch - margin + min(0, dx)
        if y_hi - y_lo < 2 or x_hi - x_lo < 2:
            raise ValueError(f"shift ({dy}, {dx}) with margin {margin} leaves no overlap to correlate")
        shifted = _call(comir_fn, image[:, y0 : y0 + patch, x0 : x0 + patch])
        overlap_reference = reference[:, y_lo:y_hi, x_lo:x_hi]
        overlap_shifted = shifted[:, y_lo - dy : y_hi - dy, x_lo - dx : x_hi - dx]
        rows.append((dy, dx, weighted_pearson(overlap_shifted, overlap_reference)))
    return pd.DataFrame(rows, columns=["dy", "dx", "correlation"]).astype({"dy": int, "dx": int})


# ---------------------------------------------------------------------------------------------------------------------
# Channel matching and reproducibility


def _best_signed_sum(cross_covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Hungarian assignment on ``|cross_covariance|`` (rows: reference channels): columns, signs, matched sum."""
    rows, columns = linear_sum_assignment(np.abs(cross_covariance), maximize=True)
    matched = cross_covariance[rows, columns]
    signs = np.where(matched < 0, -1, 1).astype(np.int8)
    return columns, signs, float(np.abs(matched).sum())


def match_channels(
    reference: np.ndarray, other: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The channel permutation and signs of ``other`` that best match ``reference``.

    The assignment maximises ``sum_c |K[c, perm[c]]|``
    (Hungarian method) where ``K`` is the weighted cross-covariance of the channels
    (centred as in :func:`weighted_pearson`), and the signs are those of the matched
    entries. As the denominator of the pooled correlation does not change under signed
    permutations, the match maximises :func:`weighted_pearson` over all of them
    (docs/representation.md, section 4).

    Parameters
    ----------
    reference : numpy.ndarray
        ``(C, H, W)`` CoMIR to match.
    other : numpy.ndarray
        ``(C, H, W)`` CoMIR whose channels are matched to ``reference``'s.
    weights : numpy.ndarray or None, optional
        ``(H, W)`` pixel weights. Default None: uniform.

    Returns
    -------
    permutation : numpy.ndarray
        ``(C,)`` int: channel ``c`` of ``reference`` matches channel ``permutation[c]`` of ``other``.
    signs : numpy.ndarray
        ``(C,)`` int8, +1 or -1: the factor of that channel. :func:`apply_match` applies both.

    Raises
    ------
    ValueError
        If the inputs are not two ``(C, H, W)`` arrays of one shape, or the weights are invalid.
    """
    reference = _as_comirs(reference, "reference")
    other = _as_comirs(other, "other")
    if reference.ndim != 3 or reference.shape != other.shape:
        raise ValueError(f"need two (C, H, W) arrays of one shape, got {reference.shape} and {other.shape}")
    w = _pixel_weights(reference.shape[-2:], weights)
    cross = np.einsum("chw,dhw->cd", w * _centred(reference, w), _centred(other, w))
    permutation, signs, _ = _best_signed_sum(cross)
    return permutation, signs


def apply_match(other: np.ndarray, permutation: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """``other`` (``(..., C, H, W)``) with its channels reordered by ``permutation`` and multiplied by ``signs``.

    Parameters
    ----------
    other : numpy.ndarray
        ``(..., C, H, W)`` CoMIRs.
    permutation : numpy.ndarray
        ``(C,)`` channel indices (:func:`match_channels`).
    signs : numpy.ndarray
        ``(C,)`` factors, +1 or -1.

    Returns
    -------
    numpy.ndarray
        The matched CoMIRs, the shape of ``other``.
    """
    other = np.asarray(other)
    return other[..., np.asarray(permutation), :, :] * np.asarray(signs)[:, None, None]


def pairwise_correlations(comirs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``(N, N)`` correlations of N models' CoMIRs of one patch, each pair after :func:`match_channels`.

    Entry ``(i, j)`` is :func:`weighted_pearson` of
    CoMIR ``i`` and CoMIR ``j`` with its channels matched to ``i``'s, i.e. the largest
    pooled correlation over the signed permutations of ``j``'s channels. Every channel
    covariance comes from one ``(N C) x (N C)`` Gram matrix; only the C x C assignments
    run per pair.

    Parameters
    ----------
    comirs : numpy.ndarray
        ``(N, C, H, W)``, N >= 2.
    weights : numpy.ndarray or None, optional
        ``(H, W)`` pixel weights. Default None: uniform.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64, symmetric with ones on the diagonal (NaN rows for constant CoMIRs).

    Raises
    ------
    ValueError
        If ``comirs`` is not ``(N, C, H, W)`` with N >= 2, or the weights are invalid.
    """
    x = _as_comirs(comirs, "comirs", min_ndim=4)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"comirs must be (N, C, H, W) with N >= 2, got shape {x.shape}")
    n, channels = x.shape[:2]
    w = _pixel_weights(x.shape[-2:], weights)
    flat = (_centred(x, w) * np.sqrt(w)).reshape(n * channels, -1)
    # cross[i, j, c, d]: weighted covariance of channel c of model i with channel d of model j.
    cross = (flat @ flat.T).reshape(n, channels, n, channels).transpose(0, 2, 1, 3)
    variance = np.einsum("iicc->i", cross)
    matched = np.empty((n, n))
    for i, j in zip(*np.triu_indices(n, 1)):
        matched[i, j] = matched[j, i] = _best_signed_sum(cross[i, j])[2]
    np.fill_diagonal(matched, variance)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(matched / np.sqrt(np.outer(variance, variance)), -1.0, 1.0)


def _check_bootstrap(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _percentile_interval(estimate: float, replicates: np.ndarray, level: float) -> BootstrapInterval:
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapInterval(float(estimate), float(low), float(high))


def bootstrap_mean_pairwise(
    matrix: np.ndarray, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> BootstrapInterval:
    """Mean off-diagonal entry of a pairwise correlation matrix and its bootstrap interval over models.

    Each replicate draws N models with replacement and averages ``matrix[a, b]`` over the
    ordered pairs of draws that are different original models (pairs of two copies of
    one model would count a self-correlation of 1). With ``k`` the number of times each
    model was drawn this is ``k^T M0 k / (N^2 - sum k^2)``, ``M0`` the matrix with a
    zero diagonal, computed for all replicates at once; replicates that drew one model
    only are left out. The interval is the percentile interval (the ``(1 - level) / 2``
    and ``(1 + level) / 2`` quantiles of the replicates): it stays within [-1, 1],
    and, since excluding same-model pairs leaves the replicates centred on the
    estimate, the basic (reflected) interval would correct nothing
    (docs/representation.md, section 5).

    Parameters
    ----------
    matrix : numpy.ndarray
        The ``(N, N)`` output of :func:`pairwise_correlations` (N >= 2), finite off the diagonal.
    n_boot : int, optional
        Number of bootstrap replicates (>= 1). Default 10000.
    seed : int, optional
        Seed of the resampling. Default 0.
    level : float, optional
        Confidence level of the interval, in (0, 1). Default 0.95.

    Returns
    -------
    BootstrapInterval
        ``(mean, low, high)``.

    Raises
    ------
    ValueError
        If ``n_boot`` or ``level`` is out of range, ``matrix`` is not square with N >= 2 or has
        non-finite off-diagonal entries, or every replicate drew a single model.
    """
    _check_bootstrap(n_boot, level)
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"matrix must be square with N >= 2, got shape {m.shape}")
    n = m.shape[0]
    off_diagonal = ~np.eye(n, dtype=bool)
    if not np.all(np.isfinite(m[off_diagonal])):
        raise ValueError("matrix has non-finite off-diagonal entries")
    m0 = np.where(off_diagonal, m, 0.0)
    estimate = m0.sum() / (n * (n - 1))
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    pairs = n * n - (counts**2).sum(axis=1)
    numerator = ((counts @ m0) * counts).sum(axis=1)
    usable = pairs > 0
    if not usable.any():
        raise ValueError("every bootstrap replicate drew a single model; use more models or replicates")
    return _percentile_interval(estimate, numerator[usable] / pairs[usable], level)


def modality_agreement(
    comirs_a: np.ndarray,
    comirs_b: np.ndarray,
    n_boot: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    *,
    weights: np.ndarray | None = None,
    match: bool = False,
) -> tuple[np.ndarray, BootstrapInterval]:
    """Correlation of the two modalities' CoMIRs of the same places, and its mean over places with a bootstrap CI.

    Parameters
    ----------
    comirs_a, comirs_b : numpy.ndarray
        ``(P, C, H, W)``: the CoMIRs of P patches by the networks of modality A and of modality B of
        one model.
    n_boot : int, optional
        Number of bootstrap replicates (>= 1; patches resampled with replacement). Default 10000.
    seed : int, optional
        Seed of the resampling. Default 0.
    level : float, optional
        Confidence level of the interval, in (0, 1). Default 0.95.
    weights : numpy.ndarray or None, optional
        ``(H, W)`` pixel weights. Default None: uniform. Keyword-only.
    match : bool, optional
        ``False`` (default) correlates channel ``c`` with channel ``c``: the
        contrastive loss compares the two modalities channel by channel, so within one
        model their channels correspond, and matching would turn a disagreement (negative
        or scrambled channels) into agreement. ``True`` first applies
        :func:`match_channels` per patch, for CoMIRs from networks that were not trained
        together. Keyword-only.

    Returns
    -------
    per_patch : numpy.ndarray
        ``(P,)`` :func:`weighted_pearson` correlations.
    interval : BootstrapInterval
        The mean over patches with its percentile bootstrap interval.

    Raises
    ------
    ValueError
        If ``n_boot`` or ``level`` is out of range, the inputs are not two ``(P, C, H, W)`` arrays of
        one shape, the weights are invalid, or a patch has a constant CoMIR.
    """
    _check_bootstrap(n_boot, level)
    a = _as_comirs(comirs_a, "comirs_a", min_ndim=4)
    b = _as_comirs(comirs_b, "comirs_b", min_ndim=4)
    if a.ndim != 4 or a.shape != b.shape or a.shape[0] < 1:
        raise ValueError(f"need two (P, C, H, W) arrays of one shape, got {a.shape} and {b.shape}")
    w = _pixel_weights(a.shape[-2:], weights)
    if match:
        da, db = _centred(a, w), _centred(b, w)
        cross = np.einsum("pchw,pdhw->pcd", w * da, db)
        matched = np.array([_best_signed_sum(patch_cross)[2] for patch_cross in cross])
        variance_a = np.einsum("pchw,pchw->p", w * da, da)
        variance_b = np.einsum("pchw,pchw->p", w * db, db)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_patch = np.clip(matched / np.sqrt(variance_a * variance_b), -1.0, 1.0)
    else:
        per_patch = np.atleast_1d(weighted_pearson(a, b, w))
    if not np.all(np.isfinite(per_patch)):
        raise ValueError("a patch has a constant CoMIR: its correlation is undefined")
    patches = per_patch.size
    counts = np.random.default_rng(seed).multinomial(patches, np.full(patches, 1.0 / patches), size=n_boot)
    return per_patch, _percentile_interval(per_patch.mean(), counts @ per_patch / patches, level)


def agreement_table(
    comir_dir: str | os.PathLike[str], cases: Iterable[str], n_boot: int = 10_000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How alike the two modalities' CoMIRs of a test set's reference patches are (paper's critic comparison).

    Parameters
    ----------
    comir_dir : str or os.PathLike
        A variant's CoMIRs of the test set (``<case>_A_ref.tif`` and ``<case>_B_ref.tif``: the same
        place seen by the two modalities).
    cases : Iterable[str]
        The cases.
    n_boot : int, optional
        Number of bootstrap replicates. Default 10000.
    seed : int, optional
        Seed of the resampling. Default 0.

    Returns
    -------
    per_case : pandas.DataFrame
        ``case``, ``correlation`` (:func:`modality_agreement`, channels not matched; NaN where a CoMIR
        is constant).
    summary : pandas.DataFrame
        One row: ``cases``, ``constant`` (cases left out because a CoMIR is constant there: its
        correlation is undefined) and, when any case is left, ``mean_correlation``, ``ci_low`` and
        ``ci_high`` (the 95 % bootstrap interval over cases).
    """
    comir_dir = Path(comir_dir)
    rows, kept_a, kept_b = [], [], []
    for case in cases:
        pair = []
        for slot in ("A", "B"):
            comir = np.asarray(read_image(comir_dir / f"{case}_{slot}_ref.tif"), dtype=np.float64)
            pair.append(comir[None] if comir.ndim == 2 else np.moveaxis(comir, -1, 0))
        constant = any(np.ptp(c) == 0 for c in pair)
        rows.append({"case": case, "correlation": np.nan if constant else weighted_pearson(*pair)})
        if not constant:
            kept_a.append(pair[0])
            kept_b.append(pair[1])
    per_case = pd.DataFrame(rows)
    summary = {"cases": len(per_case), "constant": len(per_case) - len(kept_a)}
    if kept_a:
        _, interval = modality_agreement(np.stack(kept_a), np.stack(kept_b), n_boot, seed)
        summary.update(mean_correlation=interval.mean, ci_low=interval.low, ci_high=interval.high)
    return per_case, pd.DataFrame([summary])


# ---------------------------------------------------------------------------------------------------------------------
# Figure


def _closed(angles_deg: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by angle, and closed with the first point at ``+360`` when the samples go round the circle.

    They go round when the gap from the last angle back to the first (through 360) is no
    wider than the widest gap between consecutive angles; a partial sweep stays open.
    """
    order = np.argsort(angles_deg % 360.0)
    angles, values = angles_deg[order] % 360.0, values[order]
    if angles.size < 3:
        return angles, values
    wrap_gap = angles[0] + 360.0 - angles[-1]
    if wrap_gap <= np.diff(angles).max() + 1e-9:
        return np.append(angles, angles[0] + 360.0), np.append(values, values[0])
    return angles, values


def plot_polar_equivariance(
    tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str], *, title: str | None = None
) -> None:
    """Polar plot of rotation equivariance (paper Fig. 2): angle of rotation against correlation.

    The radius is the correlation, with
    ``min(0, smallest)`` (rounded down to a quarter) at the centre and 1 just inside the
    rim; angles run counter-clockwise from the right, as in the rotations; a curve is
    closed when its angles go round the circle. Drawn on a bare Agg figure (no ``pyplot`` state),
    written through :func:`comir.io.atomic_path` (temporary file in the same folder,
    then ``os.replace``).

    Parameters
    ----------
    tables : Mapping[str, pandas.DataFrame]
        One curve per entry: label -> :func:`rotation_equivariance` output,
        e.g. ``{"C4 on": ..., "C4 off": ...}``.
    path : str or os.PathLike
        The image file to write.
    title : str or None, optional
        Title of the plot. Default None: "correlation with the unrotated CoMIR". Keyword-only.

    Raises
    ------
    ValueError
        If ``tables`` is empty, or a table is empty or lacks ``angle_deg`` or ``correlation``.
    """
    if not tables:
        raise ValueError("plot_polar_equivariance: no tables to plot")
    figure = Figure(figsize=(5.2, 5.2), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(projection="polar")
    smallest = 0.0
    for label, table in tables.items():
        missing = {"angle_deg", "correlation"} - set(table.columns)
        if missing or table.empty:
            raise ValueError(f"plot_polar_equivariance: table {label!r} is empty or lacks {sorted(missing)}")
        angles, correlations = _closed(table["angle_deg"].to_numpy(float), table["correlation"].to_numpy(float))
        ax.plot(np.deg2rad(angles), correlations, linewidth=1.4, label=str(label))
        smallest = min(smallest, float(np.nanmin(correlations)))
    centre = math.floor(smallest * 4) / 4
    # The rim lies a little beyond 1, so that a perfectly equivariant curve is not hidden under it.
    ax.set_rlim(centre, 1.05)
    ax.set_rgrids(np.arange(centre, 1.0 + 1e-9, 0.25), fontsize=7)
    ax.grid(True, alpha=0.4)
    ax.set_title(title or "correlation with the unrotated CoMIR", fontsize=10)
    figure.legend(loc="outside lower center", ncol=min(4, len(tables)), fontsize=8, frameon=False)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=figure.dpi)
    finally:
        figure.clear()

"""Scores of every integer translation at once, in the frequency domain (docs/method.md, section 7).

The scores of :class:`comir.register.fft_search.FFTSearchRegistration`; each
gives a :class:`LagScores` map, a score for every lag (translation) of a moving
image against a fixed one, both with validity masks:

* :func:`masked_ncc` (the search's ``score="ncc"``): masked normalised
  cross-correlation (Padfield, "Masked object registration in the Fourier
  domain", IEEE TIP 2012).  Six masked correlations (overlap count, the two
  masked sums, the two masked sums of squares and the masked cross term) give
  the Pearson correlation of the overlapping pixels for every translation; the
  masks handle the rotated image's invalid corners and the overlap that changes
  with the translation.
* :func:`fft_mutual_information` (``score="mi"``): mutual information of every
  translation in the frequency domain (Ofverstedt, Lindblad, Sladoje, "Fast
  computation of mutual information in the frequency domain with applications
  to global multimodal image alignment", Pattern Recognition Letters 2022).
  Both images are quantised into ``K`` equal-mass levels
  (:func:`equal_mass_levels`); the joint count of the level pair ``(i, j)`` at
  every translation is the cross-correlation of the two level-indicator images
  (one FFT per level and image, all ``K*K`` products and inverse FFTs batched
  over stacked arrays).  The marginal counts are the correlations of each
  indicator with the other image's validity mask; since the indicators of one
  image sum to its mask, these equal the row/column sums of the joint counts
  and are taken from them (no extra FFT).  With ``p_ij = C_ij / N`` (``N`` the
  overlap size at that translation), ``MI = sum p_ij log(p_ij / (p_i p_j))``.

Fixed-image spectra are cached per FFT size (:class:`NCCFixed`, :class:`MIFixed`)
so that the many moving images of a search (one per angle) share them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.fft as sfft
from numpy.typing import DTypeLike

__all__ = [
    "SPECTRUM_BUDGET",
    "LagScores",
    "MIFixed",
    "NCCFixed",
    "equal_mass_levels",
    "fft_mutual_information",
    "histogram_mi",
    "lag_range",
    "masked_ncc",
    "mi_lags",
    "ncc_lags",
]

#: Largest number of complex spectrum elements held at once in the MI products.
SPECTRUM_BUDGET = 24_000_000


class LagScores(NamedTuple):
    """A score for every lag ``t = (x_lags[b], y_lags[a])`` at ``score[a, b]``.

    Lag ``t`` aligns moving pixel ``q`` with fixed pixel ``q + t``, i.e. the
    moving -> fixed transform is the translation by ``t``.  ``count`` is the
    number of pixels valid in both images at that lag; ``score`` is ``-inf``
    where the lag is inadmissible.
    """

    score: np.ndarray
    count: np.ndarray
    y_lags: np.ndarray
    x_lags: np.ndarray


# --------------------------------------------------------------------------- FFT helpers


def lag_range(fixed_len: int, moving_len: int, min_len: int = 1) -> np.ndarray:
    """Lags along one axis at which the two extents overlap in at least ``min_len`` pixels.

    Parameters
    ----------
    fixed_len, moving_len : int
        The two images' extents along the axis.
    min_len : int, optional
        Least overlap in pixels (at least 1). Default 1.

    Returns
    -------
    numpy.ndarray
        The integer lags ``min_len - moving_len .. fixed_len - min_len``, ascending.
    """
    min_len = max(1, int(min_len))
    return np.arange(min_len - moving_len, fixed_len - min_len + 1)


def _fft_len(fixed_len: int, moving_len: int, lags: np.ndarray, real: bool) -> int:
    """A fast FFT length along one axis that holds the correlation at ``lags`` without aliasing."""
    # A circular correlation of length P holds the linear one without aliasing
    # at lag t when t + P > fixed_len - 1 and t - P < -(moving_len - 1).
    need = max(fixed_len - int(lags.min()), moving_len + int(lags.max()), 1)
    return sfft.next_fast_len(need, real=real)


def _fft_shape(
    fixed_shape: tuple[int, ...], moving_shape: tuple[int, ...], y_lags: np.ndarray, x_lags: np.ndarray
) -> tuple[int, int]:
    """FFT shape (rows: complex, columns: real) for the correlation of the two images at the lags."""
    return (
        _fft_len(fixed_shape[0], moving_shape[0], y_lags, real=False),
        _fft_len(fixed_shape[1], moving_shape[1], x_lags, real=True),
    )


def _rfft(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Real 2-D FFT of stacked planes, zero-padded to ``shape``."""
    return sfft.rfft2(planes, s=shape, axes=(-2, -1))


# Below this many lags on the first axis the inverse transform is evaluated as
# a partial DFT (two matrix products) at the requested lags only.
_PARTIAL_DFT_LAGS = 16


def _irfft_at(spectra: np.ndarray, shape: tuple[int, int], y_lags: np.ndarray, x_lags: np.ndarray) -> np.ndarray:
    """Inverse real FFT of stacked half spectra ``(..., Py, Px // 2 + 1)``, read at the lags.

    Lags are circular indices.  For a few lags (refinement windows) only those
    outputs are computed, ``Re(E_y @ X @ W_x)`` with the inverse-DFT rows
    ``E_y`` and the Hermitian-weighted half-spectrum columns ``W_x``; this equals
    ``irfft2`` read at those lags.
    """
    y_lags = np.asarray(y_lags)
    x_lags = np.asarray(x_lags)
    if len(y_lags) <= _PARTIAL_DFT_LAGS and len(x_lags) <= 4 * _PARTIAL_DFT_LAGS:
        py, px = shape
        half = spectra.shape[-1]
        complex_type = spectra.dtype
        ey = np.exp(2j * np.pi * np.outer(y_lags, np.arange(py)) / py) / py
        weights = np.full(half, 2.0)
        weights[0] = 1.0
        if px % 2 == 0:
            weights[-1] = 1.0
        wx = weights[:, None] * np.exp(2j * np.pi * np.outer(np.arange(half), x_lags) / px) / px
        rows = np.matmul(ey.astype(complex_type), spectra)
        return np.matmul(rows, wx.astype(complex_type)).real
    full = sfft.irfft2(spectra, s=shape, axes=(-2, -1))
    return _circular_take(_circular_take(full, y_lags, -2), x_lags, -1)


def _circular_take(array: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
    """``np.take(array, indices mod n, axis)``; two slices for a contiguous range."""
    n = array.shape[axis]
    indices = np.asarray(indices)
    if len(indices) and np.all(np.diff(indices) == 1) and -n <= indices[0] and indices[-1] < n:
        first, last = int(indices[0]), int(indices[-1])
        index = [slice(None)] * array.ndim
        if first >= 0 or last < 0:
            index[axis] = slice(first % n, last % n + 1)
            return array[tuple(index)]
        head, tail = list(index), list(index)
        head[axis], tail[axis] = slice(n + first, n), slice(0, last + 1)
        return np.concatenate([array[tuple(head)], array[tuple(tail)]], axis=axis)
    return np.take(array, np.mod(indices, n), axis=axis)


def _shifted_conj_spectra(
    planes: np.ndarray, shape: tuple[int, int], y_lags: np.ndarray, x_lags: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``conj(rfft2(planes))`` times the phase ramp that moves lag ``(y_lags[0], x_lags[0])`` to index 0.

    Correlating with a moving image circularly shifted by ``d`` reads the
    correlation at ``t + d`` at index ``t``; with ``d`` the first lag the
    requested (contiguous) lags become the leading block of the inverse
    transform, a plain slice.  Returns ``(spectra, local_y_lags, local_x_lags)``.
    """
    spectra = np.conj(_rfft(planes, shape))
    y0, x0 = int(y_lags[0]), int(x_lags[0])
    if y0 or x0:
        ramp_y = np.exp(2j * np.pi * y0 / shape[0] * np.arange(shape[0]))
        ramp_x = np.exp(2j * np.pi * x0 / shape[1] * np.arange(spectra.shape[-1]))
        spectra *= np.outer(ramp_y, ramp_x).astype(spectra.dtype)
    return spectra, np.asarray(y_lags) - y0, np.asarray(x_lags) - x0


def _xlogx(values: np.ndarray) -> np.ndarray:
    """``x log max(x, 1)`` in the array's own float type (0 for counts <= 1)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    out = np.maximum(values, values.dtype.type(1))
    np.log(out, out=out)
    out *= values
    return out


class _Fixed:
    """Planes of the fixed image with their spectra cached per FFT shape."""

    def __init__(self, planes: np.ndarray, dtype: DTypeLike) -> None:
        self.planes = planes.astype(dtype, copy=False)
        self.shape = planes.shape[-2:]
        self.dtype = np.dtype(dtype)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def spectra(self, shape: tuple[int, int]) -> np.ndarray:
        """The planes' half spectra at FFT ``shape`` (cached; the cache is bounded)."""
        if shape not in self._cache:
            if len(self._cache) > 32:
                self._cache.clear()
            self._cache[shape] = _rfft(self.planes, shape)
        return self._cache[shape]


def _as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` as booleans of ``shape`` (None: every pixel valid); ValueError if the shape differs."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} differs from image shape {tuple(shape)}")
    return mask


def _lags_for(
    fixed_shape: tuple[int, ...],
    moving_shape: tuple[int, ...],
    lags: tuple[np.ndarray, np.ndarray] | None,
    min_count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``lags`` as integer arrays, or by default every lag whose overlap can reach ``min_count``."""
    if lags is not None:
        y_lags, x_lags = (np.asarray(v, dtype=int).ravel() for v in lags)
        return y_lags, x_lags
    # The overlap is at most (rows overlapping) x (the narrower width), so a lag
    # needs at least min_count / narrower-width overlapping rows (and columns).
    min_rows = math.ceil(min_count / min(fixed_shape[1], moving_shape[1]) - 1e-9)
    min_cols = math.ceil(min_count / min(fixed_shape[0], moving_shape[0]) - 1e-9)
    return (
        lag_range(fixed_shape[0], moving_shape[0], min_rows),
        lag_range(fixed_shape[1], moving_shape[1], min_cols),
    )


def _empty(batch_shape: tuple[int, ...], y_lags: np.ndarray, x_lags: np.ndarray) -> LagScores:
    """Scores with every lag inadmissible (no lags along an axis)."""
    shape = tuple(batch_shape) + (len(y_lags), len(x_lags))
    return LagScores(np.full(shape, -np.inf), np.zeros(shape), y_lags, x_lags)


# --------------------------------------------------------------------------- masked NCC


class NCCFixed(_Fixed):
    """The fixed image of :func:`ncc_lags`: its mask, centred values and their squares, and its variance."""

    def __init__(self, image: np.ndarray, mask: np.ndarray, dtype: DTypeLike = np.float64) -> None:
        image = np.asarray(image, dtype=np.float64)
        values = image[mask]
        self.variance = float(values.var()) if values.size else 0.0
        centred = np.where(mask, image - (values.mean() if values.size else 0.0), 0.0)
        super().__init__(np.stack([mask.astype(np.float64), centred, centred * centred]), dtype)


def ncc_lags(
    fixed: NCCFixed,
    moving: np.ndarray,
    moving_mask: np.ndarray,
    y_lags: np.ndarray,
    x_lags: np.ndarray,
    min_count: int,
) -> LagScores:
    """Masked NCC at the lags for one moving image ``(H, W)`` or a stack ``(B, H, W)``.

    Parameters
    ----------
    fixed : NCCFixed
        The fixed image (its spectra are cached there).
    moving : numpy.ndarray
        ``(H, W)`` image or ``(B, H, W)`` stack.
    moving_mask : numpy.ndarray
        Boolean validity of ``moving``, the same shape.
    y_lags, x_lags : numpy.ndarray
        Integer lags along the rows and the columns, each contiguous and ascending.
    min_count : int
        Least number of overlapping valid pixels (at least 2 are needed in any case).

    Returns
    -------
    LagScores
        ``score`` of shape ``(..., len(y_lags), len(x_lags))``: the Pearson correlation, ``-inf``
        where too few pixels overlap or either image is flat on the overlap.
    """
    batch_shape = moving.shape[:-2]
    if len(y_lags) == 0 or len(x_lags) == 0:
        return _empty(batch_shape, y_lags, x_lags)
    mask = moving_mask.astype(np.float64)
    count = mask.sum(axis=(-2, -1), keepdims=True)
    safe_count = np.maximum(count, 1.0)
    moving = np.asarray(moving, dtype=np.float64)
    centred = (moving - (moving * mask).sum(axis=(-2, -1), keepdims=True) / safe_count) * mask
    m_var = (centred * centred).sum(axis=(-2, -1), keepdims=True) / safe_count
    planes = np.stack([mask, centred, centred * centred], axis=-3).astype(fixed.dtype)
    shape = _fft_shape(fixed.shape, moving.shape[-2:], y_lags, x_lags)
    f = fixed.spectra(shape)
    m, y_local, x_local = _shifted_conj_spectra(planes, shape, y_lags, x_lags)
    m0, m1, m2 = m[..., 0, :, :], m[..., 1, :, :], m[..., 2, :, :]
    products = np.stack([f[0] * m0, f[1] * m0, f[2] * m0, f[0] * m1, f[0] * m2, f[1] * m1], axis=-3)
    out = _irfft_at(products, shape, y_local, x_local).astype(np.float64)
    n, sf, sff, sm, smm, sfm = np.moveaxis(out, -3, 0)
    n = np.rint(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.maximum(n, 1.0)
        var_f = sff - sf * sf / safe
        var_m = smm - sm * sm / safe
        cov = sfm - sf * sm / safe
        # Overlaps flat in either image (relative to that image's variance) have no NCC.
        valid = (
            (n >= max(min_count, 2))
            & (var_f > 1e-4 * fixed.variance * n)
            & (var_m > 1e-4 * m_var * n)
        )
        ncc = np.clip(cov / np.sqrt(np.where(valid, var_f * var_m, 1.0)), -1.0, 1.0)
    return LagScores(np.where(valid, ncc, -np.inf), n, y_lags, x_lags)


def masked_ncc(
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None,
    min_count: int = 2,
    lags: tuple[np.ndarray, np.ndarray] | None = None,
) -> LagScores:
    """Masked normalised cross-correlation of all translations (Padfield 2012).

    ``score[a, b]`` is the Pearson correlation of ``fixed[r]`` and
    ``moving[r - t]`` over the pixels ``r`` valid in both (``t = (x_lags[b],
    y_lags[a])``); ``-inf`` where fewer than ``min_count`` pixels overlap or
    either image is flat on the overlap.

    Parameters
    ----------
    fixed, moving : numpy.ndarray
        ``(H, W)`` images (sizes may differ).
    fixed_mask, moving_mask : numpy.ndarray or None, optional
        Boolean validity of each image, its shape; None: every pixel valid. Default None.
    min_count : int, optional
        Least number of overlapping valid pixels. Default 2.
    lags : tuple of numpy.ndarray or None, optional
        ``(y_lags, x_lags)`` restricts the lags; None: every lag that can reach ``min_count``.
        Default None.

    Returns
    -------
    LagScores
        The scores and overlap counts of every lag.

    Raises
    ------
    ValueError
        If a mask's shape differs from its image's.
    """
    fixed = np.asarray(fixed, dtype=np.float64)
    moving = np.asarray(moving, dtype=np.float64)
    fixed_mask = _as_mask(fixed_mask, fixed.shape)
    moving_mask = _as_mask(moving_mask, moving.shape)
    y_lags, x_lags = _lags_for(fixed.shape, moving.shape, lags, min_count)
    return ncc_lags(NCCFixed(fixed, fixed_mask), moving, moving_mask, y_lags, x_lags, min_count)


# --------------------------------------------------------------------------- MI


def equal_mass_levels(
    image: np.ndarray, levels: int, mask: np.ndarray | None = None, edges: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``0..levels-1`` of equal-mass levels; return ``(labels, edges)``.

    Without ``edges`` the ``levels - 1`` inner edges are the quantiles
    ``k / levels`` of the (masked) pixel values; with ``edges`` an image is
    quantised exactly like the one they came from.

    Parameters
    ----------
    image : numpy.ndarray
        The image.
    levels : int
        The number of levels ``K``.
    mask : numpy.ndarray or None, optional
        Boolean validity of ``image``: the quantiles are of its valid pixels (of all pixels when it
        has none). Default None.
    edges : numpy.ndarray or None, optional
        The ``levels - 1`` inner edges to use. Default None.

    Returns
    -------
    labels : numpy.ndarray
        int16 levels, the shape of ``image``.
    edges : numpy.ndarray
        The inner edges used.

    Raises
    ------
    ValueError
        If ``mask``'s shape differs from ``image``'s.
    """
    image = np.asarray(image)
    if edges is None:
        values = image[_as_mask(mask, image.shape)] if mask is not None else image.ravel()
        if values.size == 0:
            values = image.ravel()
        edges = np.quantile(values.astype(np.float64), np.arange(1, levels) / levels)
    labels = np.searchsorted(np.asarray(edges), image, side="right").astype(np.int16)
    return labels, np.asarray(edges)


class MIFixed(_Fixed):
    """The fixed image of :func:`mi_lags`: one indicator plane per level (inside its mask)."""

    def __init__(self, labels: np.ndarray, mask: np.ndarray, levels: int, dtype: DTypeLike = np.float64) -> None:
        self.levels = int(levels)
        self.count = int(np.count_nonzero(mask))
        indicators = (labels[None] == np.arange(self.levels)[:, None, None]) & mask[None]
        super().__init__(indicators, dtype)


def mi_lags(
    fixed: MIFixed,
    moving_labels: np.ndarray,
    moving_mask: np.ndarray,
    y_lags: np.ndarray,
    x_lags: np.ndarray,
    min_count: int,
) -> LagScores:
    """MI at the lags for one label image ``(H, W)`` or a stack ``(B, H, W)``.

    The joint counts of a chunk of fixed levels are turned into their
    ``sum x log x`` and marginal sums at once, so that the ``(K, K, lags)``
    array is never held whole.  Counts are used as the FFT returns them (not
    rounded): ``x log max(x, 1)`` is continuous, so the round-off of the
    transforms (~1e-3 counts in float32) changes the MI by ~1e-7.

    Parameters
    ----------
    fixed : MIFixed
        The fixed image's level indicators (its spectra are cached there).
    moving_labels : numpy.ndarray
        ``(H, W)`` or ``(B, H, W)`` labels in ``0..K-1``.
    moving_mask : numpy.ndarray
        Boolean validity of ``moving_labels``, the same shape.
    y_lags, x_lags : numpy.ndarray
        Integer lags along the rows and the columns, each contiguous and ascending.
    min_count : int
        Least number of overlapping valid pixels (at least 1).

    Returns
    -------
    LagScores
        ``score`` of shape ``(..., len(y_lags), len(x_lags))``: the MI in nats (at least 0),
        ``-inf`` where too few pixels overlap.
    """
    batch_shape = moving_labels.shape[:-2]
    if len(y_lags) == 0 or len(x_lags) == 0:
        return _empty(batch_shape, y_lags, x_lags)
    k = fixed.levels
    labels = moving_labels.reshape((-1,) + moving_labels.shape[-2:])
    masks = moving_mask.reshape(labels.shape)
    shape = _fft_shape(fixed.shape, labels.shape[-2:], y_lags, x_lags)
    f = fixed.spectra(shape)
    real = fixed.dtype
    lag_shape = (len(y_lags), len(x_lags))
    joint_sum = np.zeros((len(labels),) + lag_shape)
    fixed_marginal = np.zeros((len(labels), k) + lag_shape, dtype=real)
    moving_marginal = np.zeros((len(labels), k) + lag_shape, dtype=real)
    rows = max(1, SPECTRUM_BUDGET // (k * f[0].size))
    for item in range(len(labels)):  # one moving image (angle) at a time
        indicators = (labels[item][None] == np.arange(k)[:, None, None]) & masks[item][None]
        m, y_local, x_local = _shifted_conj_spectra(indicators.astype(real), shape, y_lags, x_lags)
        for start in range(0, k, rows):  # chunks of fixed levels, to bound memory
            products = f[start : start + rows, None] * m[None]
            counts = _irfft_at(products, shape, y_local, x_local).astype(real, copy=False)
            fixed_marginal[item, start : start + rows] = counts.sum(axis=1)
            moving_marginal[item] += counts.sum(axis=0)
            joint_sum[item] += _xlogx(counts).sum(axis=(0, 1))
    n = np.rint(fixed_marginal.sum(axis=1).astype(np.float64))
    safe = np.maximum(n, 1.0)
    entropy_sum = (
        joint_sum
        - _xlogx(fixed_marginal).sum(axis=1).astype(np.float64)
        - _xlogx(moving_marginal).sum(axis=1).astype(np.float64)
    )
    mi = entropy_sum / safe + np.log(safe)
    score = np.where(n >= max(min_count, 1), np.maximum(mi, 0.0), -np.inf)
    out_shape = tuple(batch_shape) + lag_shape
    return LagScores(score.reshape(out_shape), n.reshape(out_shape), y_lags, x_lags)


def fft_mutual_information(
    fixed_labels: np.ndarray,
    moving_labels: np.ndarray,
    levels: int,
    fixed_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None,
    min_count: int = 1,
    lags: tuple[np.ndarray, np.ndarray] | None = None,
) -> LagScores:
    """Mutual information (nats) of all translations, in the frequency domain.

    ``score[a, b]`` is the MI of the joint histogram of ``(fixed_labels[r], moving_labels[r - t])``
    over the pixels ``r`` valid in both, ``t = (x_lags[b], y_lags[a])``; ``-inf`` where
    fewer than ``min_count`` pixels overlap.

    Parameters
    ----------
    fixed_labels, moving_labels : numpy.ndarray
        ``(H, W)`` integer images with values in ``0..levels-1`` (see :func:`equal_mass_levels`).
    levels : int
        The number of levels.
    fixed_mask, moving_mask : numpy.ndarray or None, optional
        Boolean validity of each image; None: every pixel valid. Default None.
    min_count : int, optional
        Least number of overlapping valid pixels. Default 1.
    lags : tuple of numpy.ndarray or None, optional
        ``(y_lags, x_lags)`` as in :func:`masked_ncc`; None: every lag that can reach
        ``min_count``. Default None.

    Returns
    -------
    LagScores
        The scores and overlap counts of every lag.

    Raises
    ------
    ValueError
        If a mask's shape differs from its image's.
    """
    fixed_labels = np.asarray(fixed_labels)
    moving_labels = np.asarray(moving_labels)
    fixed_mask = _as_mask(fixed_mask, fixed_labels.shape)
    moving_mask = _as_mask(moving_mask, moving_labels.shape)
    y_lags, x_lags = _lags_for(fixed_labels.shape, moving_labels.shape, lags, min_count)
    fixed = MIFixed(fixed_labels, fixed_mask, levels)
    return mi_lags(fixed, moving_labels, moving_mask, y_lags, x_lags, min_count)


def histogram_mi(a: np.ndarray, b: np.ndarray, levels: int) -> float:
    """MI (nats) of two equally long label vectors, from their joint histogram.

    Parameters
    ----------
    a, b : numpy.ndarray
        Labels in ``0..levels-1`` (flattened).
    levels : int
        The number of levels.

    Returns
    -------
    float
        The mutual information; ``-inf`` for empty vectors.
    """
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.size == 0:
        return -math.inf
    joint = np.bincount(a * levels + b, minlength=levels * levels).reshape(levels, levels).astype(float)
    n = joint.sum()
    return float(
        (_xlogx(joint).sum() - _xlogx(joint.sum(1)).sum() - _xlogx(joint.sum(0)).sum()) / n + np.log(n)
    )


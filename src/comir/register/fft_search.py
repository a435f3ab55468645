"""Global rigid registration by exhaustive search: all angles on a grid, all translations by FFT.

Because the CoMIRs of two modalities are (approximately) the same image, a
global search needs no starting point and has no local minima to fall into:
for every rotation angle on a grid (default the full circle) the floating image
is rotated about its centre (``cv2.warpAffine``, with a validity mask of the
pixels that came from inside the image), and **every integer translation** is
scored at once in the frequency domain:

* ``score="ncc"``: masked normalised cross-correlation (Padfield, "Masked
  object registration in the Fourier domain", IEEE TIP 2012).  Six masked
  correlations (overlap count, the two masked sums, the two masked sums of
  squares and the masked cross term) give the Pearson correlation of the
  overlapping pixels for every translation; the masks handle the rotated
  image's invalid corners and the overlap that changes with the translation.
* ``score="mi"``: mutual information of every translation in the frequency
  domain (Ofverstedt, Lindblad, Sladoje, "Fast computation of mutual
  information in the frequency domain with applications to global multimodal
  image alignment", Pattern Recognition Letters 2022).  Both images are
  quantised into ``mi_levels`` equal-mass levels; the joint count of the level
  pair ``(i, j)`` at every translation is the cross-correlation of the two
  level-indicator images (one FFT per level and image, all ``K*K`` products
  and inverse FFTs batched over stacked arrays).  The marginal counts are the
  correlations of each indicator with the other image's validity mask; since
  the indicators of one image sum to its mask, these equal the row/column sums
  of the joint counts and are taken from them (no extra FFT).  With
  ``p_ij = C_ij / N`` (``N`` the overlap size at that translation),
  ``MI = sum p_ij log(p_ij / (p_i p_j))``.

Only translations whose overlap holds at least ``min_overlap`` times the pixel
count of the smaller image are admissible, so tiny overlaps cannot win.

Coarse to fine
--------------
1. Coarse level: both images are blurred and resampled by the same factor
   ``f0 = max(1, longest side of either image / downsample)`` (so
   ``downsample`` is the target size in pixels of the coarse level's longest
   side).  The exhaustive search runs over the angle grid of step
   ``angle_step_deg`` on ``[-angle_range_deg, angle_range_deg]`` (the whole
   circle by default).  The best translation of each angle (with a parabolic
   sub-pixel fit) is a candidate; the ``top_k`` best candidates whose angles are
   more than two grid steps apart are kept.
2. Refinement passes on a pyramid whose factor halves from pass to pass down
   to full resolution (at least two passes; the last ones at full
   resolution).  Each pass tries, per candidate, the angles ``theta + k delta``
   (``k = -2..2`` in the first pass, ``-1..1`` afterwards, ``delta`` =
   ``angle_step_deg / 4`` then halving), warps the floating image onto the
   reference grid with the candidate transform and scores all translations in
   a small window (+-3 to 4 px of that level) by the same frequency-domain
   formulas, the inverse transform evaluated at the window's lags only (a
   partial inverse DFT, two matrix products); the peak gets a parabolic sub-pixel fit in
   translation and the angle a parabolic fit over the angle samples.  All
   ``top_k`` candidates are refined in the first pass (at twice the coarse
   resolution or at full resolution, whichever comes first) and compared
   there; only the winner continues (this keeps the full-resolution work of
   ``score="mi"`` affordable).
3. ``refine=True``: a final local refinement by ECC
   (``cv2.findTransformECC``, ``MOTION_EUCLIDEAN``) from that estimate; its
   result is kept only if it raises the score (evaluated directly on the
   overlap of the reference and the bilinearly warped floating image), so it
   never makes the result worse.

Images are smoothed by a Gaussian of ``smooth_sigma`` px at full resolution
(combined with the anti-aliasing blur of sigma ``factor / 2`` on the coarser
levels).  Without it MI on noisy images prefers sub-pixel positions and
off-grid angles, where bilinear interpolation averages the noise away (the
truth was a local minimum of MI on the test's remapped pair).

Result
------
``matrix`` is the floating pixel -> reference pixel transform of
:mod:`comir.geometry`.  ``metric`` is the final score at full resolution: the
Pearson correlation of the overlap (``ncc``, in [-1, 1]) or the mutual
information in nats (``mi``); **higher is better** for both.  Metrics are not
comparable across methods (SIFT reports an inlier count, the MI method
SimpleITK's Mattes metric, where lower is better).  The status is "failed"
only when an image is constant or no translation meets ``min_overlap``.

Defaults and cost
-----------------
``angle_step_deg=3``: at the 128 px coarse level half a step (1.5 deg) moves
the image corners by at most ~2.4 coarse pixels, which the blurred coarse
images tolerate: true angles mid-way between grid angles (10.5, 91.5, -118.5,
28.5 deg, 834 px, shifts up to 100 px, noise) were recovered to < 0.1 px
with 3 deg, as with 2 deg, which costs ~1.3x more.
``downsample=128`` (coarse level ~128 px), ``top_k=3``, ``min_overlap=0.25``,
``mi_levels=8`` (the MI cost grows with its square), ``smooth_sigma=1``.
The coarse search dominates and does not depend on the input size: 120
angles x 6 (NCC) or 64 (MI, K = 8) inverse FFTs of ~256 x 256.  Measured with
one thread on a 2-core machine that was also running a training job
(so pessimistic): ~1.5-2 s (NCC) and ~9-10 s (MI) per 256 px pair,
~2-2.7 s (NCC) and ~12-14 s (MI) per 834 px pair.  ``threads`` sets the
FFT worker threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import scipy.fft as sfft

from comir import geometry as g
from comir.register.base import OK, RegistrationResult, timed, to_single_channel

SCORES = ("ncc", "mi")

# Largest number of complex spectrum elements held at once in the MI products.
_SPECTRUM_BUDGET = 24_000_000


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
    """Lags along one axis at which the two extents overlap in at least ``min_len`` pixels."""
    min_len = max(1, int(min_len))
    return np.arange(min_len - moving_len, fixed_len - min_len + 1)


def _fft_len(fixed_len: int, moving_len: int, lags: np.ndarray, real: bool) -> int:
    # A circular correlation of length P holds the linear one without aliasing
    # at lag t when t + P > fixed_len - 1 and t - P < -(moving_len - 1).
    need = max(fixed_len - int(lags.min()), moving_len + int(lags.max()), 1)
    return sfft.next_fast_len(need, real=real)


def _fft_shape(fixed_shape, moving_shape, y_lags, x_lags) -> tuple[int, int]:
    return (
        _fft_len(fixed_shape[0], moving_shape[0], y_lags, real=False),
        _fft_len(fixed_shape[1], moving_shape[1], x_lags, real=True),
    )


def _rfft(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return sfft.rfft2(planes, s=shape, axes=(-2, -1))


# Below this many lags on the first axis the inverse transform is evaluated as
# a partial DFT (two matrix products) at the requested lags only.
_PARTIAL_DFT_LAGS = 16


def _irfft_at(spectra: np.ndarray, shape: tuple[int, int], y_lags, x_lags) -> np.ndarray:
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


def _shifted_conj_spectra(planes: np.ndarray, shape: tuple[int, int], y_lags, x_lags):
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

    def __init__(self, planes: np.ndarray, dtype) -> None:
        self.planes = planes.astype(dtype, copy=False)
        self.shape = planes.shape[-2:]
        self.dtype = np.dtype(dtype)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def spectra(self, shape: tuple[int, int]) -> np.ndarray:
        if shape not in self._cache:
            if len(self._cache) > 32:
                self._cache.clear()
            self._cache[shape] = _rfft(self.planes, shape)
        return self._cache[shape]


def _as_mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} differs from image shape {tuple(shape)}")
    return mask


def _lags_for(fixed_shape, moving_shape, lags, min_count) -> tuple[np.ndarray, np.ndarray]:
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


def _empty(batch_shape, y_lags, x_lags) -> LagScores:
    shape = tuple(batch_shape) + (len(y_lags), len(x_lags))
    return LagScores(np.full(shape, -np.inf), np.zeros(shape), y_lags, x_lags)


# --------------------------------------------------------------------------- masked NCC


class _NCCFixed(_Fixed):
    def __init__(self, image: np.ndarray, mask: np.ndarray, dtype=np.float64) -> None:
        image = np.asarray(image, dtype=np.float64)
        values = image[mask]
        self.variance = float(values.var()) if values.size else 0.0
        centred = np.where(mask, image - (values.mean() if values.size else 0.0), 0.0)
        super().__init__(np.stack([mask.astype(np.float64), centred, centred * centred]), dtype)


def _ncc_lags(fixed: _NCCFixed, moving, moving_mask, y_lags, x_lags, min_count) -> LagScores:
    """Masked NCC at the lags for one moving image ``(H, W)`` or a stack ``(B, H, W)``."""
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
    either image is flat on the overlap.  ``lags = (y_lags, x_lags)`` restricts
    the lags; by default every lag that can reach ``min_count``.
    """
    fixed = np.asarray(fixed, dtype=np.float64)
    moving = np.asarray(moving, dtype=np.float64)
    fixed_mask = _as_mask(fixed_mask, fixed.shape)
    moving_mask = _as_mask(moving_mask, moving.shape)
    y_lags, x_lags = _lags_for(fixed.shape, moving.shape, lags, min_count)
    return _ncc_lags(_NCCFixed(fixed, fixed_mask), moving, moving_mask, y_lags, x_lags, min_count)


# --------------------------------------------------------------------------- MI


def quantize(
    image: np.ndarray, levels: int, mask: np.ndarray | None = None, edges: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``0..levels-1`` of equal-mass levels; return ``(labels, edges)``.

    Without ``edges`` the ``levels - 1`` inner edges are the quantiles
    ``k / levels`` of the (masked) pixel values; with ``edges`` an image is
    quantised exactly like the one they came from.
    """
    image = np.asarray(image)
    if edges is None:
        values = image[_as_mask(mask, image.shape)] if mask is not None else image.ravel()
        if values.size == 0:
            values = image.ravel()
        edges = np.quantile(values.astype(np.float64), np.arange(1, levels) / levels)
    labels = np.searchsorted(np.asarray(edges), image, side="right").astype(np.int16)
    return labels, np.asarray(edges)


class _MIFixed(_Fixed):
    def __init__(self, labels: np.ndarray, mask: np.ndarray, levels: int, dtype=np.float64) -> None:
        self.levels = int(levels)
        self.count = int(np.count_nonzero(mask))
        indicators = (labels[None] == np.arange(self.levels)[:, None, None]) & mask[None]
        super().__init__(indicators, dtype)


def _mi_lags(fixed: _MIFixed, moving_labels, moving_mask, y_lags, x_lags, min_count) -> LagScores:
    """MI at the lags for one label image ``(H, W)`` or a stack ``(B, H, W)``.

    The joint counts of a chunk of fixed levels are turned into their
    ``sum x log x`` and marginal sums at once, so that the ``(K, K, lags)``
    array is never held whole.  Counts are used as the FFT returns them (not
    rounded): ``x log max(x, 1)`` is continuous, so the round-off of the
    transforms (~1e-3 counts in float32) changes the MI by ~1e-7.
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
    rows = max(1, _SPECTRUM_BUDGET // (k * f[0].size))
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

    ``fixed_labels``/``moving_labels``: integer images with values in
    ``0..levels-1`` (see :func:`quantize`).  ``score[a, b]`` is the MI of the
    joint histogram of ``(fixed_labels[r], moving_labels[r - t])`` over the
    pixels ``r`` valid in both, ``t = (x_lags[b], y_lags[a])``; ``-inf`` where
    fewer than ``min_count`` pixels overlap.  Lags as in :func:`masked_ncc`.
    """
    fixed_labels = np.asarray(fixed_labels)
    moving_labels = np.asarray(moving_labels)
    fixed_mask = _as_mask(fixed_mask, fixed_labels.shape)
    moving_mask = _as_mask(moving_mask, moving_labels.shape)
    y_lags, x_lags = _lags_for(fixed_labels.shape, moving_labels.shape, lags, min_count)
    fixed = _MIFixed(fixed_labels, fixed_mask, levels)
    return _mi_lags(fixed, moving_labels, moving_mask, y_lags, x_lags, min_count)


def histogram_mi(a: np.ndarray, b: np.ndarray, levels: int) -> float:
    """MI (nats) of two equally long label vectors, from their joint histogram."""
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.size == 0:
        return -math.inf
    joint = np.bincount(a * levels + b, minlength=levels * levels).reshape(levels, levels).astype(float)
    n = joint.sum()
    return float(
        (_xlogx(joint).sum() - _xlogx(joint.sum(1)).sum() - _xlogx(joint.sum(0)).sum()) / n + np.log(n)
    )


# --------------------------------------------------------------------------- geometry helpers


def _to_level(point, factor: float) -> np.ndarray:
    return (np.asarray(point, dtype=float) + 0.5) / factor - 0.5


def _from_level(point, factor: float) -> np.ndarray:
    return (np.asarray(point, dtype=float) + 0.5) * factor - 0.5


def _rotation_about(theta: float, center, target) -> np.ndarray:
    """``p -> R(theta) (p - center) + target``."""
    center = np.asarray(center, dtype=float)
    target = np.asarray(target, dtype=float)
    return g.rigid_matrix(theta, *(target - center), center=tuple(center))


def _warp(image: np.ndarray, matrix: np.ndarray, size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Floating image warped by ``matrix`` (floating -> output pixel) and its validity mask."""
    import cv2

    matrix = np.asarray(matrix, dtype=np.float64)
    out = cv2.warpAffine(image, matrix, size_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(image.shape[:2], np.float32)
    inside = cv2.warpAffine(
        ones, matrix, size_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )
    return out, inside >= 0.999


def _downsample(image: np.ndarray, factor: float, smooth: float = 0.0) -> np.ndarray:
    """Blur and resample so that pixel ``p`` -> ``(p + 0.5) / factor - 0.5``.

    The Gaussian blur has sigma ``sqrt(smooth**2 + (factor / 2)**2)`` when
    ``factor > 1`` (anti-aliasing) and ``smooth`` at full resolution.
    """
    import cv2

    sigma = math.hypot(smooth, factor / 2.0) if factor > 1.0 else smooth
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    if factor <= 1.0:
        return image
    blurred = image
    height, width = image.shape
    size = (max(1, int(width / factor)), max(1, int(height / factor)))
    scale = np.array([[1 / factor, 0.0, 0.5 / factor - 0.5], [0.0, 1 / factor, 0.5 / factor - 0.5]])
    return cv2.warpAffine(blurred, scale, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _parabola(left, mid, right):
    """Offset in [-0.5, 0.5] of the vertex of the parabola through (-1, 0, 1); 0 if not a peak."""
    left, mid, right = (np.asarray(v, dtype=np.float64) for v in (left, mid, right))
    with np.errstate(divide="ignore", invalid="ignore"):
        curvature = left - 2.0 * mid + right
        ok = np.isfinite(left) & np.isfinite(right) & np.isfinite(mid) & (curvature < 0)
        offset = np.where(ok, 0.5 * (left - right) / np.where(ok, curvature, -1.0), 0.0)
    offset = np.clip(offset, -0.5, 0.5)
    return float(offset) if offset.ndim == 0 else offset


def _peak(lag_scores: LagScores) -> tuple[np.ndarray, np.ndarray]:
    """Best score and its sub-pixel lag ``(tx, ty)`` per item of a (stack of) score maps.

    Returns ``(best, lags)`` with shapes ``batch`` and ``batch + (2,)``.
    """
    score = lag_scores.score
    batch_shape = score.shape[:-2]
    ny, nx = score.shape[-2:]
    if ny * nx == 0:
        return np.full(batch_shape, -np.inf), np.zeros(batch_shape + (2,))
    flat = score.reshape(-1, ny * nx)
    index = np.argmax(flat, axis=1)
    iy, ix = np.divmod(index, nx)
    rows = np.arange(len(flat))
    best = flat[rows, index]

    def at(dy, dx, ok):
        value = flat[rows, np.clip(iy + dy, 0, ny - 1) * nx + np.clip(ix + dx, 0, nx - 1)]
        return np.where(ok, value, -np.inf)

    offsets = []
    for axis_ok, left, right in (
        ((ix > 0) & (ix < nx - 1), at(0, -1, ix > 0), at(0, 1, ix < nx - 1)),
        ((iy > 0) & (iy < ny - 1), at(-1, 0, iy > 0), at(1, 0, iy < ny - 1)),
    ):
        offsets.append(np.where(axis_ok, _parabola(left, best, right), 0.0))
    lags = np.stack(
        [lag_scores.x_lags[ix] + offsets[0], lag_scores.y_lags[iy] + offsets[1]], axis=-1
    )
    return best.reshape(batch_shape), lags.reshape(batch_shape + (2,))


def angle_grid(angle_range_deg: float, step_deg: float) -> tuple[np.ndarray, float]:
    """Angles (radians) of the coarse grid and its actual step (degrees).

    Full circle (range >= 180): ``n = round(360 / step)`` equally spaced angles
    from -180 deg (180 is the same rotation).  Otherwise ``[-range, range]``
    with a step no larger than ``step_deg``.
    """
    if angle_range_deg >= 180.0:
        n = max(1, int(round(360.0 / step_deg)))
        step = 360.0 / n
        return np.radians(-180.0 + step * np.arange(n)), step
    if angle_range_deg <= 0:
        return np.zeros(1), float(step_deg)
    n = int(math.ceil(2 * angle_range_deg / step_deg - 1e-9)) + 1
    return np.radians(np.linspace(-angle_range_deg, angle_range_deg, n)), 2 * angle_range_deg / (n - 1)


# --------------------------------------------------------------------------- the method


class _Level:
    """One pyramid level: both images resampled by ``factor`` and the fixed-side spectra."""

    def __init__(self, method: FFTSearchRegistration, ref: np.ndarray, flo: np.ndarray, factor: float, dtype):
        self.factor = factor
        self.ref = _downsample(ref, factor, float(method.smooth_sigma))
        self.flo = _downsample(flo, factor, float(method.smooth_sigma))
        self.score = method.score
        self.min_count = max(2, int(math.ceil(method.min_overlap * min(self.ref.size, self.flo.size))))
        mask = np.ones(self.ref.shape, dtype=bool)
        if self.score == "ncc":
            self.fixed = _NCCFixed(self.ref, mask, dtype)
        else:
            self.levels = int(method.mi_levels)
            self.ref_labels, _ = quantize(self.ref, self.levels)
            _, self.flo_edges = quantize(self.flo, self.levels)
            self.fixed = _MIFixed(self.ref_labels, mask, self.levels, dtype)

    def scores(self, moving: np.ndarray, moving_mask: np.ndarray, y_lags, x_lags) -> LagScores:
        if self.score == "ncc":
            return _ncc_lags(self.fixed, moving, moving_mask, y_lags, x_lags, self.min_count)
        labels, _ = quantize(moving, self.levels, edges=self.flo_edges)
        return _mi_lags(self.fixed, labels, moving_mask, y_lags, x_lags, self.min_count)


@dataclass
class FFTSearchRegistration:
    """Exhaustive rigid search: angle grid x all translations (FFT), coarse to fine.

    ``score``: "ncc" (masked normalised cross-correlation) or "mi" (mutual
    information of ``mi_levels`` equal-mass levels), both computed for all
    translations in the frequency domain; ``angle_range_deg``: search
    rotations in ``[-range, range]`` (180 = the whole circle);
    ``angle_step_deg``: coarse angle step; ``downsample``: target size (px) of
    the longest image side at the coarse level (factor
    ``max(1, longest side / downsample)``, the same for both images);
    ``top_k``: coarse candidates refined; ``min_overlap``: least overlap, as a
    fraction of the smaller image's pixel count; ``mi_levels``: quantisation
    levels K of ``score="mi"``; ``smooth_sigma``: Gaussian blur (px) of both
    images at full resolution; ``refine``: final ECC refinement, kept only if
    it raises the score; ``threads``: FFT worker threads; ``seed``: unused (the
    method is deterministic), kept for the common interface.

    ``metric`` of the result is the final score, **higher is better** (NCC in
    [-1, 1], MI in nats).  See the module docstring for the algorithm.
    """

    name: ClassVar[str] = "fft_search"

    score: str = "ncc"
    angle_range_deg: float = 180.0
    angle_step_deg: float = 3.0
    downsample: int = 128
    top_k: int = 3
    min_overlap: float = 0.25
    mi_levels: int = 8
    smooth_sigma: float = 1.0
    refine: bool = True
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if not 0 <= float(self.angle_range_deg) <= 180:
            raise ValueError(f"angle_range_deg must be in [0, 180], got {self.angle_range_deg}")
        if not 0 < float(self.angle_step_deg) <= 90:
            raise ValueError(f"angle_step_deg must be in (0, 90], got {self.angle_step_deg}")
        if int(self.downsample) < 16:
            raise ValueError(f"downsample must be >= 16 (px), got {self.downsample}")
        if int(self.top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 < float(self.min_overlap) <= 1:
            raise ValueError(f"min_overlap must be in (0, 1], got {self.min_overlap}")
        if not 2 <= int(self.mi_levels) <= 64:
            raise ValueError(f"mi_levels must be in [2, 64], got {self.mi_levels}")
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if float(self.smooth_sigma) < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {self.smooth_sigma}")

    # ------------------------------------------------------------------ search steps

    def _coarse(self, level: _Level, angles: np.ndarray, step_deg: float, cf: np.ndarray) -> list:
        """Per-angle best translations; the top_k with angles > 2 steps apart, in full-res terms.

        Angles are processed in batches of similar rotated-image size (one
        canvas, one batched FFT per batch).
        """
        height, width = level.flo.shape
        ref_h, ref_w = level.ref.shape
        cf_level = _to_level(cf, level.factor)
        cos, sin = np.abs(np.cos(angles)), np.abs(np.sin(angles))
        sizes = np.stack(
            [
                np.ceil(cos * (width - 1) + sin * (height - 1) - 1e-6).astype(int) + 1,
                np.ceil(sin * (width - 1) + cos * (height - 1) - 1e-6).astype(int) + 1,
            ],
            axis=1,
        )
        order = np.lexsort((sizes[:, 0], sizes[:, 1]))
        planes = 6 if self.score == "ncc" else int(self.mi_levels) ** 2
        biggest = (ref_h + sizes[:, 1].max()) * (ref_w + sizes[:, 0].max())
        batch = int(np.clip(_SPECTRUM_BUDGET // (2 * planes * biggest), 1, 32))
        found = []
        for start in range(0, len(order), batch):
            chosen_angles = order[start : start + batch]
            size = tuple(int(v) for v in sizes[chosen_angles].max(axis=0))
            canvas_center = np.array([(size[0] - 1) / 2.0, (size[1] - 1) / 2.0])
            warped = [
                _warp(level.flo, _rotation_about(angles[i], cf_level, canvas_center), size)
                for i in chosen_angles
            ]
            moving = np.stack([w[0] for w in warped])
            mask = np.stack([w[1] for w in warped])
            min_rows = math.ceil(level.min_count / min(ref_w, size[0]) - 1e-9)
            min_cols = math.ceil(level.min_count / min(ref_h, size[1]) - 1e-9)
            y_lags = lag_range(ref_h, size[1], min_rows)
            x_lags = lag_range(ref_w, size[0], min_cols)
            best, lag = _peak(level.scores(moving, mask, y_lags, x_lags))
            for i, value, shift in zip(chosen_angles, best, lag, strict=True):
                if np.isfinite(value):
                    found.append((float(value), float(angles[i]), canvas_center + shift))
        found.sort(key=lambda item: -item[0])
        chosen = []
        limit = math.radians(2 * step_deg) + 1e-9
        for best, theta, center in found:
            if all(abs(_wrap(theta - other[1])) > limit for other in chosen):
                chosen.append((best, theta, _from_level(center, level.factor)))
            if len(chosen) == int(self.top_k):
                break
        return chosen

    def _refine_pass(
        self, level: _Level, candidate, delta: float, offsets: np.ndarray, window: int, cf: np.ndarray
    ):
        """Angles theta + k delta, translations in +-window (level px) around the candidate."""
        _, theta0, center = candidate
        cf_level = _to_level(cf, level.factor)
        c_level = _to_level(center, level.factor)
        ref_h, ref_w = level.ref.shape
        size = (ref_w + 2 * window, ref_h + 2 * window)
        lags = np.arange(-2 * window, 1)
        limit = math.radians(float(self.angle_range_deg))
        samples = []
        for offset in offsets:
            theta = theta0 + offset * delta
            if self.angle_range_deg < 180:
                theta = float(np.clip(theta, -limit, limit))
            # canvas pixel q <-> reference-level point q - window
            matrix = _rotation_about(theta, cf_level, c_level + window)
            moving, mask = _warp(level.flo, matrix, size)
            best, lag = _peak(level.scores(moving, mask, lags, lags))
            samples.append((float(best), theta, c_level + window + lag))
        scores = np.array([s[0] for s in samples])
        k = int(np.argmax(scores))
        if not np.isfinite(scores[k]):
            return None
        theta, c_best = samples[k][1], samples[k][2]
        if 0 < k < len(samples) - 1:
            shift = _parabola(scores[k - 1], scores[k], scores[k + 1])
            if shift != 0.0:
                neighbour = samples[k + (1 if shift > 0 else -1)]
                theta += abs(shift) * (neighbour[1] - theta)
                c_best = c_best + abs(shift) * (neighbour[2] - c_best)
        return float(scores[k]), float(theta), _from_level(c_best, level.factor)

    def _direct_score(self, level: _Level, matrix: np.ndarray) -> float:
        """Score of one (sub-pixel) transform on the overlap at ``level`` (full resolution)."""
        ref, flo = level.ref, level.flo
        moving, mask = _warp(flo, matrix, (ref.shape[1], ref.shape[0]))
        if int(np.count_nonzero(mask)) < level.min_count:
            return -math.inf
        if self.score == "ncc":
            a = ref[mask].astype(np.float64)
            b = moving[mask].astype(np.float64)
            a -= a.mean()
            b -= b.mean()
            denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
            return float(np.dot(a, b) / denominator) if denominator > 0 else -math.inf
        labels, _ = quantize(moving[mask], level.levels, edges=level.flo_edges)
        return histogram_mi(level.ref_labels[mask], labels, level.levels)

    @staticmethod
    def _ecc(level: _Level, matrix: np.ndarray) -> np.ndarray | None:
        """ECC (rigid) from ``matrix``; None when it does not converge."""
        import cv2

        warp = g.invert(matrix).astype(np.float32)  # ECC's warp: reference -> floating
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-6)
        try:
            _, warp = cv2.findTransformECC(level.ref, level.flo, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
        except cv2.error:
            return None
        if not np.all(np.isfinite(warp)):
            return None
        return g.invert(np.asarray(warp, dtype=np.float64))

    @timed
    def register(self, reference: np.ndarray, floating: np.ndarray) -> RegistrationResult:
        with sfft.set_workers(int(self.threads)):  # FFT threads; the default 1 is single-threaded
            return self._register(reference, floating)

    def _register(self, reference: np.ndarray, floating: np.ndarray) -> RegistrationResult:
        ref, basis = to_single_channel(reference)
        flo, _ = to_single_channel(floating, basis)
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        flo = np.ascontiguousarray(flo, dtype=np.float32)
        for role, image in (("reference", ref), ("floating", flo)):
            if not np.ptp(image) > 0:
                return RegistrationResult.failed(f"{role} image is constant")

        coarse_factor = max(1.0, max(ref.shape + flo.shape) / float(self.downsample))
        factors = [coarse_factor]
        while factors[-1] > 1.0:
            factors.append(max(1.0, factors[-1] / 2.0))
        passes = factors[1:]
        while len(passes) < 2:
            passes.append(1.0)
        levels: dict[float, _Level] = {}

        def level(factor: float) -> _Level:
            if factor not in levels:
                # float32 spectra on small levels (exact enough to round counts),
                # float64 where the counts or sums get large.
                small = max(ref.size, flo.size) / factor**2 <= 2**16
                levels[factor] = _Level(self, ref, flo, factor, np.float32 if small else np.float64)
            return levels[factor]

        cf = g.image_center(flo.shape)
        angles, step = angle_grid(float(self.angle_range_deg), float(self.angle_step_deg))
        candidates = self._coarse(level(coarse_factor), angles, step, cf)
        if not candidates:
            return RegistrationResult.failed(
                f"no translation overlaps by min_overlap={self.min_overlap} at the coarse level"
            )
        delta = math.radians(step) / 4.0
        previous = coarse_factor
        for index, factor in enumerate(passes):
            window = max(3, int(math.ceil(1.5 * previous / factor + 1)))
            if float(self.angle_range_deg) == 0.0:
                offsets = np.zeros(1)  # translation only
            else:
                offsets = np.arange(-2, 3) if index == 0 else np.arange(-1, 2)
            refined = [self._refine_pass(level(factor), c, delta, offsets, window, cf) for c in candidates]
            refined = [c for c in refined if c is not None]
            if refined:
                refined.sort(key=lambda item: -item[0])
                candidates = refined[:1]  # the top_k compete in the first pass only
            elif index == 0:
                candidates = candidates[:1]
            delta /= 2.0
            previous = factor

        _, theta, center = candidates[0]
        matrix = _rotation_about(theta, cf, center)
        full = level(1.0)
        best = self._direct_score(full, matrix)
        note = f"angle {math.degrees(theta):.3f} deg"
        if self.refine:
            polished = self._ecc(full, matrix)
            if polished is not None:
                # Keep it rigid (ECC's Euclidean warp is, up to float32 rounding).
                angle = float(g.rotation_angle(polished))
                polished = _rotation_about(angle, cf, g.apply(polished, cf[None])[0])
                inside = self.angle_range_deg >= 180 or abs(angle) <= math.radians(self.angle_range_deg)
                score = self._direct_score(full, polished) if inside else -math.inf
                if score > best:
                    matrix, best = polished, score
                    note += f"; ECC -> {math.degrees(angle):.3f} deg"
        if not np.isfinite(best):
            return RegistrationResult.failed(f"no admissible overlap at full resolution ({note})")
        return RegistrationResult(matrix, OK, best, 0.0, f"{self.score} {best:.4f}; {note}")


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


__all__ = [
    "FFTSearchRegistration",
    "LagScores",
    "angle_grid",
    "fft_mutual_information",
    "histogram_mi",
    "lag_range",
    "masked_ncc",
    "quantize",
]

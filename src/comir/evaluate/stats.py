"""Statistics of the evaluation protocol (docs/method.md, section 8).

Pure, vectorised functions: exact binomial (Clopper-Pearson) intervals for
success counts, the success criterion, the paired Wilcoxon signed-rank test
with the matched-pairs rank-biserial correlation as effect size, and the
empirical CDF used by the figures.

These functions take error arrays as given; which registrations are failures
and the scored error that stands in for a failure's error (the failure bound)
come from :func:`comir.evaluate.tables.failure_mask` and
:func:`comir.evaluate.tables.scored_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

__all__ = [
    "PairedTest",
    "clopper_pearson",
    "ecdf",
    "rank_biserial",
    "success_counts",
    "success_mask",
    "wilcoxon_paired",
]


def clopper_pearson(k, n, alpha: float = 0.05):
    """Exact (Clopper-Pearson) two-sided ``1 - alpha`` interval for a binomial proportion.

    ``low = Beta.ppf(alpha/2; k, n-k+1)`` (0 when ``k == 0``) and
    ``high = Beta.ppf(1-alpha/2; k+1, n-k)`` (1 when ``k == n``).
    For ``n == 0`` the interval is ``[0, 1]``.

    Parameters
    ----------
    k : int or array_like of int
        Numbers of successes, ``0 <= k <= n``.
    n : int or array_like of int
        Numbers of trials; ``k`` and ``n`` broadcast against each other.
    alpha : float, optional
        One minus the confidence level, in (0, 1). Default 0.05 (a 95 % interval).

    Returns
    -------
    low, high : float or numpy.ndarray
        The bounds as proportions: floats for scalar inputs, arrays of the broadcast shape otherwise.

    Raises
    ------
    ValueError
        If ``alpha`` is not in (0, 1), or ``k`` and ``n`` are not finite whole numbers with ``0 <= k <= n``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(n, dtype=float))
    if np.any(~np.isfinite(k_arr)) or np.any(~np.isfinite(n_arr)):
        raise ValueError("k and n must be finite")
    if np.any(k_arr != np.round(k_arr)) or np.any(n_arr != np.round(n_arr)):
        raise ValueError("k and n must be whole numbers")
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError("need 0 <= k <= n")
    has_low = k_arr > 0
    has_high = k_arr < n_arr
    # Substitute harmless shape parameters where the bound is fixed (0 or 1),
    # so that Beta.ppf never sees a zero shape parameter.
    low = np.where(
        has_low,
        _stats.beta.ppf(alpha / 2, np.where(has_low, k_arr, 1.0), n_arr - k_arr + 1),
        0.0,
    )
    high = np.where(
        has_high,
        _stats.beta.ppf(1 - alpha / 2, k_arr + 1, np.where(has_high, n_arr - k_arr, 1.0)),
        1.0,
    )
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def success_mask(errors, width, fractions: Sequence[float] = (0.01, 0.05)) -> np.ndarray:
    """Boolean array of shape ``(len(fractions), n)``: ``error < fraction * width``.

    The comparison is strict: an error of exactly ``fraction * width`` is not a
    success. A NaN error is never a success.

    Parameters
    ----------
    errors : array_like of float
        The ``n`` errors in pixels (flattened).
    width : float or array_like of float
        The image width in pixels: a scalar or one width per case.
    fractions : Sequence[float], optional
        The success bounds as fractions of the width. Default ``(0.01, 0.05)``.

    Returns
    -------
    numpy.ndarray
        ``(len(fractions), n)`` bool.
    """
    errors = np.asarray(errors, dtype=float).reshape(-1)
    width = np.broadcast_to(np.asarray(width, dtype=float), errors.shape)
    frac = np.asarray(fractions, dtype=float).reshape(-1, 1)
    return errors[None, :] < frac * width[None, :]


def success_counts(errors, width, fractions: Sequence[float] = (0.01, 0.05)) -> dict[float, int]:
    """Number of successes (``error < fraction * width``, strict) per fraction.

    Parameters
    ----------
    errors : array_like of float
        The errors in pixels.
    width : float or array_like of float
        The image width in pixels: a scalar or one width per case.
    fractions : Sequence[float], optional
        The success bounds as fractions of the width. Default ``(0.01, 0.05)``.

    Returns
    -------
    dict[float, int]
        Fraction -> number of successes (:func:`success_mask`).
    """
    counts = success_mask(errors, width, fractions).sum(axis=1)
    return {float(f): int(c) for f, c in zip(fractions, counts, strict=True)}


def rank_biserial(differences) -> float:
    """Matched-pairs rank-biserial correlation of paired differences ``d = x - y``.

    Zero differences are dropped; the remaining ``|d|`` are ranked with average
    ranks for ties; ``r = (R+ - R-) / (R+ + R-)`` where ``R+`` (``R-``) is the
    rank sum of the positive (negative) differences.

    Parameters
    ----------
    differences : array_like of float
        The paired differences ``x - y`` (flattened).

    Returns
    -------
    float
        ``r`` in [-1, 1]; 0 when no difference is non-zero.
    """
    d = np.asarray(differences, dtype=float).reshape(-1)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = _stats.rankdata(np.abs(d), method="average")
    total = ranks.sum()
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / total)


@dataclass(frozen=True)
class PairedTest:
    """Result of :func:`wilcoxon_paired`.

    Sign convention: ``rank_biserial_r > 0`` and ``median_difference > 0``
    mean that the first sample ``x`` has LARGER (worse) errors than ``y``;
    ``r = +1`` when every non-zero difference ``x - y`` is positive.
    """

    statistic: float  # scipy's statistic: min(R+, R-) for the two-sided test
    p_value: float  # two-sided
    n: int  # pairs with a non-zero difference (those entering the test)
    rank_biserial_r: float
    median_difference: float  # median of x - y over all pairs, after clipping
    n_pairs: int  # all pairs, including zero differences

    @property
    def r(self) -> float:
        """The rank-biserial correlation (short name for ``rank_biserial_r``)."""
        return self.rank_biserial_r


def wilcoxon_paired(x, y, clip=None, *, method: str = "auto") -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on paired errors ``x`` and ``y``.

    Both samples are first clipped at ``clip``, so that failures of different magnitude count as ties.
    Clipping cannot catch a reported failure with a small identity error:
    :func:`comir.evaluate.tables.wilcoxon_table` therefore passes scored
    errors (every failure at the bound).
    Zero differences are discarded (``zero_method="wilcox"``). If every
    difference is zero the test is undefined and ``p = 1``, ``r = 0`` is
    returned. See :class:`PairedTest` for the sign convention of ``r``.

    Parameters
    ----------
    x, y : array_like of float
        The paired errors, of one length, without NaN.
    clip : float or array_like of float or None, optional
        The clip value: a scalar or one value per pair (the protocol clips at 100 px for 834 px
        wide images); ``None`` (default) means no clipping.
    method : str, optional
        :func:`scipy.stats.wilcoxon`'s ``method`` for the p-value (``"auto"``, ``"exact"``,
        ``"approx"``). Default ``"auto"``. Keyword-only.

    Returns
    -------
    PairedTest
        The statistic, p-value, counts, rank-biserial correlation and median difference.

    Raises
    ------
    ValueError
        If ``x`` and ``y`` differ in length or contain NaN.
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("paired errors must not contain NaN")
    if clip is not None:
        clip = np.broadcast_to(np.asarray(clip, dtype=float), x.shape)
        x = np.minimum(x, clip)
        y = np.minimum(y, clip)
    d = x - y
    n_nonzero = int(np.count_nonzero(d))
    median_difference = float(np.median(d)) if d.size else 0.0
    if n_nonzero == 0:
        return PairedTest(0.0, 1.0, 0, 0.0, median_difference, int(d.size))
    result = _stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided", method=method)
    return PairedTest(
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        n=n_nonzero,
        rank_biserial_r=rank_biserial(d),
        median_difference=median_difference,
        n_pairs=int(d.size),
    )


def ecdf(values) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: ``(sorted_values, fraction of all values <= each)``.

    NaN values are treated as larger than any number: they are left out of
    ``sorted_values`` but still count in the denominator, so the curve ends
    below 1 when some values are missing.

    Parameters
    ----------
    values : array_like of float
        The values (flattened); may contain NaN.

    Returns
    -------
    sorted_values : numpy.ndarray
        The non-NaN values in ascending order.
    fraction : numpy.ndarray
        For each, the fraction of all values (NaN included) at or below it (by rank: ties get
        increasing fractions).
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    n = v.size
    v = np.sort(v)  # NaN sorts last
    fraction = np.arange(1, n + 1, dtype=float) / max(n, 1)
    keep = ~np.isnan(v)
    return v[keep], fraction[keep]

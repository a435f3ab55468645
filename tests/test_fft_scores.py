"""Frequency-domain scores of every translation (masked NCC, mutual information) against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from comir.register.fft_scores import equal_mass_levels, fft_mutual_information, histogram_mi, masked_ncc


def _brute_overlap(fixed, moving, fixed_mask, moving_mask, tx, ty):
    """Pixel pairs (fixed[r], moving[r - t]) valid in both, by explicit loops."""
    pairs = []
    for y in range(moving.shape[0]):
        for x in range(moving.shape[1]):
            fy, fx = y + ty, x + tx
            if 0 <= fy < fixed.shape[0] and 0 <= fx < fixed.shape[1]:
                if fixed_mask[fy, fx] and moving_mask[y, x]:
                    pairs.append((fixed[fy, fx], moving[y, x]))
    return np.array(pairs).reshape(-1, 2)


def test_masked_ncc_matches_brute_force():
    rng = np.random.default_rng(0)
    fixed = rng.random((19, 23))
    moving = rng.random((14, 11)) + 0.3 * rng.random((14, 11))
    fixed_mask = rng.random(fixed.shape) > 0.2
    moving_mask = rng.random(moving.shape) > 0.3
    result = masked_ncc(fixed, moving, fixed_mask, moving_mask, min_count=6)
    # Default lags: every lag whose bounding boxes can overlap in min_count pixels.
    assert result.score.shape == (len(result.y_lags), len(result.x_lags))
    checked = 0
    for ty, tx in [(0, 0), (3, -2), (-5, 4), (8, 12), (-10, -7), (15, 20), (2, 9)]:
        a, b = np.searchsorted(result.y_lags, ty), np.searchsorted(result.x_lags, tx)
        assert result.y_lags[a] == ty and result.x_lags[b] == tx
        pairs = _brute_overlap(fixed, moving, fixed_mask, moving_mask, tx, ty)
        assert result.count[a, b] == len(pairs)
        if len(pairs) < 6:
            assert result.score[a, b] == -np.inf
            continue
        expected = np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]
        assert result.score[a, b] == pytest.approx(expected, abs=1e-10)
        checked += 1
    assert checked >= 5
    # The best lag of a moving image cut out of the fixed one is where it was cut.
    cut = fixed[4:16, 7:20]
    best = masked_ncc(fixed, cut, min_count=100)  # tiny overlaps correlate perfectly by chance
    a, b = np.unravel_index(np.argmax(best.score), best.score.shape)
    assert (best.x_lags[b], best.y_lags[a]) == (7, 4)
    assert best.score[a, b] == pytest.approx(1.0)


def test_masked_ncc_window_equals_full_map_and_flat_overlap_is_invalid():
    rng = np.random.default_rng(1)
    fixed = rng.random((40, 36))
    moving = rng.random((30, 33))
    full = masked_ncc(fixed, moving, min_count=20)
    ys, xs = np.arange(-4, 5), np.arange(-3, 6)  # small window: partial DFT path
    window = masked_ncc(fixed, moving, min_count=20, lags=(ys, xs))
    a0, b0 = np.searchsorted(full.y_lags, -4), np.searchsorted(full.x_lags, -3)
    np.testing.assert_allclose(window.score, full.score[a0 : a0 + 9, b0 : b0 + 9], atol=1e-10)
    # A moving image that is flat on its whole mask has no correlation anywhere.
    flat = masked_ncc(fixed, np.ones((10, 10)))
    assert np.all(flat.score == -np.inf)


def test_frequency_domain_mi_matches_histogram2d():
    rng = np.random.default_rng(2)
    levels = 5
    fixed = rng.integers(0, levels, (21, 18))
    moving = np.where(rng.random((16, 20)) < 0.6, (3 * rng.integers(0, levels, (16, 20))) % levels, 0)
    fixed_mask = rng.random(fixed.shape) > 0.15
    moving_mask = rng.random(moving.shape) > 0.25
    result = fft_mutual_information(fixed, moving, levels, fixed_mask, moving_mask, min_count=10)
    for ty, tx in [(0, 0), (4, -6), (-7, 3), (10, 9), (-12, -15)]:
        a, b = np.searchsorted(result.y_lags, ty), np.searchsorted(result.x_lags, tx)
        assert result.y_lags[a] == ty and result.x_lags[b] == tx
        pairs = _brute_overlap(fixed, moving, fixed_mask, moving_mask, tx, ty)
        joint, _, _ = np.histogram2d(pairs[:, 0], pairs[:, 1], bins=levels, range=[[0, levels], [0, levels]])
        p = joint / joint.sum()
        outer = p.sum(axis=1, keepdims=True) * p.sum(axis=0, keepdims=True)
        nz = p > 0
        expected = float(np.sum(p[nz] * np.log(p[nz] / outer[nz])))
        assert result.count[a, b] == len(pairs)
        assert result.score[a, b] == pytest.approx(expected, abs=1e-9)
        assert histogram_mi(pairs[:, 0], pairs[:, 1], levels) == pytest.approx(expected, abs=1e-12)
    # A lag with too small an overlap is inadmissible.
    assert result.count[0, 0] < 10 and result.score[0, 0] == -np.inf


def test_equal_mass_levels_and_shared_edges():
    image = np.arange(1000, dtype=np.float64).reshape(25, 40)
    labels, edges = equal_mass_levels(image, 8)
    assert labels.min() == 0 and labels.max() == 7 and len(edges) == 7
    np.testing.assert_array_equal(np.bincount(labels.ravel()), np.full(8, 125))
    again, _ = equal_mass_levels(image + 0.0, 8, edges=edges)
    np.testing.assert_array_equal(again, labels)

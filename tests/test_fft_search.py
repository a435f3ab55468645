"""Global FFT search registration (masked NCC / frequency-domain MI over angles x translations).

The score maps are checked against brute-force computations; the search is
checked on real warps: a floating image is a larger textured source warped by a
known rigid transform with ``cv2.warpAffine`` and cropped, so no padding enters
it, and the ground truth floating->reference matrix is derived with
:mod:`comir.geometry`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from comir import geometry as g
from comir.register.base import RegistrationResult
from comir.register.fft_search import (
    FFTSearchRegistration,
    angle_grid,
    fft_mutual_information,
    histogram_mi,
    lag_range,
    masked_ncc,
    quantize,
)

from registration_cases import SOURCE, make_pair, texture
from registration_cases import pair_error as error



def assert_rigid(matrix: np.ndarray) -> None:
    linear = np.asarray(matrix)[:, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2), atol=1e-9)
    assert np.linalg.det(linear) == pytest.approx(1.0)


# ------------------------------------------------------------------ score maps


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


def test_quantize_equal_mass_and_shared_edges():
    image = np.arange(1000, dtype=np.float64).reshape(25, 40)
    labels, edges = quantize(image, 8)
    assert labels.min() == 0 and labels.max() == 7 and len(edges) == 7
    np.testing.assert_array_equal(np.bincount(labels.ravel()), np.full(8, 125))
    again, _ = quantize(image + 0.0, 8, edges=edges)
    np.testing.assert_array_equal(again, labels)


def test_lag_range_and_angle_grid():
    np.testing.assert_array_equal(lag_range(5, 3), np.arange(-2, 5))
    np.testing.assert_array_equal(lag_range(5, 3, 2), np.arange(-1, 4))
    angles, step = angle_grid(180.0, 3.0)
    assert len(angles) == 120 and step == pytest.approx(3.0)
    assert math.degrees(angles[0]) == pytest.approx(-180.0) and math.degrees(angles[-1]) == pytest.approx(177.0)
    angles, step = angle_grid(30.0, 4.0)
    assert math.degrees(angles[0]) == pytest.approx(-30) and math.degrees(angles[-1]) == pytest.approx(30)
    assert step <= 4.0
    np.testing.assert_array_equal(angle_grid(0.0, 3.0)[0], [0.0])


# ------------------------------------------------------------------ registration


@functools.lru_cache(maxsize=None)
def registered(score: str, angle_deg: float, shift=(12.0, -7.0)) -> tuple[RegistrationResult, float, float]:
    """(result, corner error, corner error of the inverse) for one pair, computed once."""
    reference, floating, truth = make_pair(angle_deg, shift)
    if score == "mi":
        # Non-monotonic intensity remap of the floating image plus its own noise.
        rng = np.random.default_rng(5)
        floating = np.abs(floating - 0.45) + 0.03 * rng.standard_normal(floating.shape)
        floating = floating.astype(np.float32)
    result = FFTSearchRegistration(score=score).register(reference, floating)
    return result, error(result.matrix, truth, floating), error(g.invert(result.matrix), truth, floating)


@pytest.mark.parametrize("angle", [10.0, 90.0, 170.0, -120.0])
def test_ncc_recovers_any_rotation_and_its_direction(angle):
    result, err, inverse_err = registered("ncc", angle)
    assert result.ok, result.message
    assert_rigid(result.matrix)
    assert err < 1.0, (err, result.message)
    assert inverse_err > 20.0  # the direction matters: the inverse is far off
    assert 0.95 < result.metric <= 1.0  # NCC of the overlap, higher is better
    assert result.seconds > 0


def test_mi_recovers_a_non_monotonic_intensity_remap():
    result, err, inverse_err = registered("mi", -120.0)
    assert result.ok, result.message
    assert_rigid(result.matrix)
    assert err < 2.0, (err, result.message)
    assert inverse_err > 20.0
    assert result.metric > 0.3  # mutual information in nats, higher is better


def test_pure_translation_sign():
    """Floating pixel (x, y) shows the reference pixel (x + 9, y - 5): matrix = translation (9, -5)."""
    source = np.asarray(texture(SOURCE, 3))
    reference = source[100:196, 120:216].copy()
    floating = source[95:191, 129:225].copy()
    method = FFTSearchRegistration(angle_range_deg=0.0, refine=False)
    result = method.register(reference, floating)
    assert result.ok, result.message
    np.testing.assert_allclose(result.matrix, g.rigid_matrix(0.0, 9.0, -5.0), atol=0.05)


def test_different_sizes_and_multichannel_inputs():
    # A 200 x 150 floating crop, away from the centre, of a source rotated by 37 degrees.
    reference, floating, truth = make_pair(37.0, (5.0, 8.0), floating_box=(170, 150, 200, 150))
    weights = np.array([0.7, -0.2, 0.4], dtype=np.float32)
    ref_rgb = reference[..., None] * weights + np.array([0.1, 0.5, 0.2], dtype=np.float32)
    flo_rgb = floating[..., None] * weights + np.array([0.1, 0.5, 0.2], dtype=np.float32)
    result = FFTSearchRegistration().register(ref_rgb, flo_rgb)
    assert result.ok, result.message
    assert error(result.matrix, truth, floating) < 1.0


def test_constant_image_fails_and_bad_arguments_raise():
    method = FFTSearchRegistration()
    flat = np.full((64, 64), 0.5, np.float32)
    image = np.asarray(texture(SOURCE, 1))[:64, :64].copy()
    for reference, floating in ((flat, image), (image, flat)):
        result = method.register(reference, floating)
        assert result.status == "failed" and "constant" in result.message
        np.testing.assert_array_equal(result.matrix, g.IDENTITY)
    with pytest.raises(ValueError, match="channel"):
        method.register(np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        method.register(np.full((32, 32), np.nan, np.float32), image[:32, :32])
    for bad in ({"score": "ssd"}, {"angle_step_deg": 0}, {"min_overlap": 0}, {"mi_levels": 1}, {"top_k": 0}):
        with pytest.raises(ValueError):
            FFTSearchRegistration(**bad)


def test_no_admissible_overlap_fails():
    # A 30 x 120 floating image never overlaps a 100 x 40 reference in >= its
    # own 3600 pixels (min_overlap=1), at any angle.
    source = np.asarray(texture(SOURCE, 2))
    result = FFTSearchRegistration(min_overlap=1.0).register(source[:40, :100], source[:120, :30])
    assert result.status == "failed" and "min_overlap" in result.message
    np.testing.assert_array_equal(result.matrix, g.IDENTITY)


def test_time_per_256_px_pair(capsys):
    timings = {score: registered(score, -120.0)[0].seconds for score in ("ncc", "mi")}
    with capsys.disabled():
        print(f"\nfft_search seconds per 256 px pair: ncc {timings['ncc']:.2f}, mi {timings['mi']:.2f}")
    assert 0 < timings["ncc"] < 30
    assert 0 < timings["mi"] < 120

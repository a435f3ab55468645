"""Global FFT search registration (masked NCC / frequency-domain MI over angles x translations).

The search is checked on real warps: a floating image is a larger textured
source warped by a known rigid transform with ``cv2.warpAffine`` and cropped, so
no padding enters it, and the ground truth floating->reference matrix is derived
with :mod:`comir.geometry`.  The score maps are checked in ``test_fft_scores.py``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from comir import geometry as g
from comir.register.base import RegistrationResult
from comir.register.fft_scores import lag_range
from comir.register.fft_search import FFTSearchRegistration, angle_grid
from helpers.registration_cases import SOURCE, make_pair, texture
from helpers.registration_cases import pair_error as error


def assert_rigid(matrix: np.ndarray) -> None:
    linear = np.asarray(matrix)[:, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2), atol=1e-9)
    assert np.linalg.det(linear) == pytest.approx(1.0)


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


@pytest.mark.parametrize("angle", [10.5, -118.5])
def test_angle_screen_keeps_the_true_angle_and_the_result(angle):
    """The half-resolution screen passes the truth's grid angles on and changes nothing else."""
    reference, floating, truth = make_pair(angle, (12.0, -7.0))
    screened = FFTSearchRegistration(score="ncc", angle_screen=6)
    angles, _ = angle_grid(180.0, 3.0)
    coarse_factor = max(reference.shape + floating.shape) / 128.0
    cf = g.image_center(floating.shape)
    kept = screened._screened_angles(reference, floating, coarse_factor, angles, cf)
    assert len(kept) <= 3 * screened.angle_screen < len(angles)
    true_angle = math.degrees(g.rotation_angle(truth))  # floating -> reference: -angle
    assert np.min(np.abs(np.degrees(kept) - true_angle)) <= 1.5 + 1e-9  # a grid angle next to the truth
    exhaustive = FFTSearchRegistration(score="ncc")  # the default: no screen
    np.testing.assert_array_equal(exhaustive._screened_angles(reference, floating, coarse_factor, angles, cf), angles)
    with_screen, without = screened.register(reference, floating), exhaustive.register(reference, floating)
    assert with_screen.ok and without.ok
    assert error(with_screen.matrix, truth, floating) < 1.0
    np.testing.assert_allclose(with_screen.matrix, without.matrix, atol=1e-3)


def test_angle_screen_is_skipped_where_it_saves_nothing():
    reference, floating, _ = make_pair(20.0, (4.0, 2.0))
    cf = g.image_center(floating.shape)
    narrow, _ = angle_grid(20.0, 3.0)  # 15 angles <= 3 * 6
    method = FFTSearchRegistration(angle_range_deg=20.0, angle_screen=6)
    np.testing.assert_array_equal(method._screened_angles(reference, floating, 2.0, narrow, cf), narrow)
    small = reference[:80, :80], floating[:80, :80]  # the screen level would be < 48 px
    full, _ = angle_grid(180.0, 3.0)
    np.testing.assert_array_equal(method._screened_angles(*small, 1.0, full, cf), full)
    with pytest.raises(ValueError, match="angle_screen"):
        FFTSearchRegistration(angle_screen=-1)

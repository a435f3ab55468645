"""Large images: a method at a coarse level, then block matching at full resolution (comir.register.coarse_to_fine)."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from comir import geometry as g
from comir.imaging.resampling import Resampling, to_original_grids
from comir.register import make_method
from comir.register.coarse_to_fine import CoarseToFine, coarse_to_fine
from helpers.registration_cases import make_pair, pair_error, texture

SIDE = 1024
# The FFT search over +-30 deg: the pairs' rotations (17 and 20 deg) and the identity inside, a sixth of the
# angles of the whole circle.
FFT = {"angle_range_deg": 30}


@functools.lru_cache(maxsize=None)
def large_pair(scale: float = 1.0, angle_deg: float = 17.0):
    """A SIDE px pair of a texture with fine detail: the floating image rotated, shifted and zoomed."""
    source = cv2.resize(np.asarray(texture(512, 4)), (3 * SIDE // 2, 3 * SIDE // 2), interpolation=cv2.INTER_CUBIC)
    source = source + np.random.default_rng(0).normal(0, 0.05, source.shape).astype(np.float32)
    source = cv2.GaussianBlur(source, (0, 0), 1.0)
    centre = (source.shape[0] - 1) / 2.0
    linear = scale * g.rigid_matrix(math.radians(angle_deg), 0.0, 0.0)[:, :2]
    offset = np.array([centre, centre]) + np.array([23.4, -17.8]) - linear @ [centre, centre]
    move = np.hstack([linear, offset[:, None]])
    warped = cv2.warpAffine(source, move, source.shape[::-1], flags=cv2.INTER_LINEAR)
    o = SIDE // 4
    reference, floating = source[o : o + SIDE, o : o + SIDE].copy(), warped[o : o + SIDE, o : o + SIDE].copy()
    truth = g.compose(g.rigid_matrix(0, -o, -o), g.compose(g.invert(move), g.rigid_matrix(0, o, o)))
    return reference, floating, truth


def test_below_max_px_the_method_runs_as_it_is():
    reference, floating, _ = make_pair(20.0, (12.0, -8.0))
    method = make_method("fft_search", FFT, 0)
    plain, wrapped = method.register(reference, floating), CoarseToFine(method, 256).register(reference, floating)
    np.testing.assert_array_equal(wrapped.matrix, plain.matrix)
    assert wrapped.message == plain.message


def test_a_large_pair_is_registered_at_a_coarse_level_and_refined_by_blocks():
    reference, floating, truth = large_pair()
    method = make_method("fft_search", {**FFT, "refine": False}, 0)
    wrapped = CoarseToFine(method, 256)
    result = wrapped.register(reference, floating)
    assert result.ok and "coarse level 1/4.00" in result.message and "refined by" in result.message, result.message
    assert pair_error(result.matrix, truth, floating) < 0.5
    # The coarse estimate alone, in full-resolution pixels, is several times worse.
    levels = [Resampling.between(image.shape, 1.0, 4.0) for image in (reference, floating)]
    small = [cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA) for image in (reference, floating)]
    coarse = method.register(*small)
    estimate = to_original_grids(coarse.matrix, *levels)
    assert pair_error(estimate, truth, floating) > 2 * pair_error(result.matrix, truth, floating)


def test_the_blocks_fit_the_transform_model():
    reference, floating, truth = large_pair(scale=1.06, angle_deg=-9.0)
    method = make_method("sift", {"transform": "similarity", "max_error_px": 3, "min_octave_px": 32}, 0)
    result = CoarseToFine(method, 512, transform="similarity").register(reference, floating)
    assert result.ok, result.message
    assert pair_error(result.matrix, truth, floating) < 0.5
    assert g.scale_factor(result.matrix) == pytest.approx(1 / 1.06, abs=1e-3)


def test_masks_reach_the_coarse_method_and_the_blocks():
    reference, floating, truth = large_pair()
    reference, floating = reference.copy(), floating.copy()
    yy, xx = np.mgrid[:SIDE, :SIDE]
    invalid = (xx + yy) < 0.8 * SIDE  # the same zero-filled corner in both (tests/test_masks.py)
    reference[invalid] = floating[invalid] = 0
    wrapped = CoarseToFine(make_method("fft_search", FFT, 0), 256)
    masked = wrapped.register(reference, floating, reference_mask=~invalid, floating_mask=~invalid)
    assert masked.ok and pair_error(masked.matrix, truth, floating) < 0.5, masked.message
    plain = wrapped.register(reference, floating)
    assert pair_error(plain.matrix, truth, floating) > 20


def test_too_few_matching_blocks_keep_the_coarse_estimate_and_say_so():
    reference, floating, _ = large_pair()
    flat = np.full_like(floating, 0.5)
    flat[:, : SIDE // 2] = floating[:, : SIDE // 2]  # texture in one half only: few blocks to match
    method = make_method("fft_search", FFT, 0)
    result = CoarseToFine(method, 256, block_px=256, min_blocks=20).register(reference, flat)
    assert result.ok and "coarse estimate kept" in result.message, result.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_px": 10}, "max_px"),
        ({"block_px": 4}, "block_px"),
        ({"min_blocks": 2, "transform": "affine"}, "min_blocks"),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        CoarseToFine(make_method("sift", {}, 0), **options)


def test_a_method_using_the_originals_gets_them_reduced_at_the_coarse_level():
    reference, floating, truth = make_pair(12.0, (6.0, -4.0))
    blurred = [ndimage.gaussian_filter(im, 8).astype(np.float32) for im in (reference, floating)]
    method = make_method("cascade", {"global_search": None, "original_keypoints": {"min_octave_px": 32}}, seed=0)
    wrapped = coarse_to_fine(method, 128, "rigid", 0)
    assert wrapped.wants_originals and not coarse_to_fine(make_method("sift", {}, 0), 64, "rigid", 0).wants_originals
    result = wrapped.register(*blurred, originals=(reference, floating))
    assert result.ok, result.message
    assert "kept sift-original" in result.message and "coarse level 1/2.00" in result.message
    assert pair_error(result.matrix, truth, floating) < 2.0

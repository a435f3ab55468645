"""Valid-pixel masks: derived from constant borders or read from files, honoured by every method."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
import tifffile

from comir import geometry as g
from comir.imaging.masks import constant_border_mask, image_mask, read_mask, working_mask
from comir.io import InputError
from comir.register import make_method
from comir.register.base import fill_invalid
from helpers.registration_cases import make_colour_pair, make_pair, pair_error

# Methods and settings that register the wedge pair (SIFT with the project's 256 px setting). The global
# searches over +-30 deg: the pair's rotation (20 deg) and the identity the unmasked borders pull to inside,
# a sixth of the angles of the whole circle.
METHODS = {
    "fft_search": {"angle_range_deg": 30},
    "sift": {"max_error_px": 8, "min_octave_px": 40},
    "cascade": {"global_search": {"angle_range_deg": 30}},
    "mi": {"start_angles_deg": [-20, 0, 20]},
    # A tenth of the default iterations: 0.19 px through the masks (0.15 with the defaults), 4x faster.
    "alpha_amd": {"start_angles_rad": [-0.35, 0.0, 0.35], "iterations": [300, 100, 60]},
    "elastix": {},
}


def wedge(shape: tuple[int, ...], fraction: float = 0.8) -> np.ndarray:
    """True in the top-left corner triangle ``x + y < fraction * side`` (about a third of the image)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx + yy) < fraction * shape[0]


@functools.lru_cache(maxsize=None)
def wedge_pair(colour: bool = False):
    """A pair (rotated by 20 deg, shifted) whose frames share a zero-filled corner.

    The border of an earlier resampling, at the same place in both images: it aligns them at the
    identity unless masked.
    """
    make = make_colour_pair if colour else make_pair
    reference, floating, truth = make(20.0, (12.0, -8.0))
    invalid = wedge(reference.shape)
    reference, floating = reference.copy(), floating.copy()
    reference[invalid] = 0
    floating[invalid] = 0
    return reference, floating, truth, ~invalid


def test_the_constant_border_is_found_and_nothing_else():
    reference, _, _, valid = wedge_pair()
    np.testing.assert_array_equal(constant_border_mask(reference), valid)
    # An interior region of the same value, not connected to the border, is image.
    holed = reference.copy()
    holed[150:170, 150:170] = 0
    found = constant_border_mask(holed)
    assert found[160, 160] and not found[0, 0]
    # Real dark background is noisy, not constant: no mask; neither is a clean image.
    rng = np.random.default_rng(0)
    dark = np.where(wedge(reference.shape), rng.uniform(0, 0.01, reference.shape), reference).astype(np.float32)
    assert constant_border_mask(dark) is None
    assert constant_border_mask(make_pair(0.0, (0.0, 0.0))[0]) is None
    # An SHG-like image: exactly 0 wherever there is no signal, in blobs between the structure,
    # touching the border. Its own background, inside the hull of the rest: no mask.
    shg = np.asarray(make_pair(0.0, (0.0, 0.0))[0]).copy()
    shg[shg < np.percentile(shg, 30)] = 0
    assert constant_border_mask(shg) is None
    # A textured image rotated with zero-filled corners: the corners, outside the hull, are found.
    turn = g.rigid_matrix(np.radians(20), 0, 0, (127.5, 127.5))
    found = constant_border_mask(cv2.warpAffine(np.asarray(make_pair(0.0, (0.0, 0.0))[0]), turn, (256, 256)))
    assert found is not None and not found[0, 0] and found[128, 128] and 0.1 < 1 - found.mean() < 0.45
    # Rotated, the SHG-like image's own zeros join the corners: ambiguous, so auto declines (mask files then).
    assert constant_border_mask(cv2.warpAffine(shg, turn, (256, 256))) is None


def test_a_white_colour_border_is_found_in_all_channels_and_a_thin_line_is_not():
    rgb = (np.random.default_rng(1).uniform(0, 200, (64, 80, 3))).astype(np.uint8)
    rgb[:, :20] = 255
    found = constant_border_mask(rgb)
    assert not found[:, :20].any() and found[:, 20:].all()
    partial = rgb.copy()
    partial[:, :20, 1] = np.random.default_rng(3).integers(0, 256, (64, 20))  # noise in one channel: not constant
    assert constant_border_mask(partial) is None
    line = (np.random.default_rng(2).uniform(1, 200, (100, 100))).astype(np.uint8)
    line[0, :50] = 0  # 0.5 % of the image: no border worth masking
    assert constant_border_mask(line) is None


def test_mask_files_modes_and_working_masks(tmp_path):
    image = np.zeros((40, 50), np.float32)
    mask = np.zeros((40, 50), np.uint8)
    mask[5:35, 10:45] = 200
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tif", image.shape, "image.tif"), mask > 0)
    with pytest.raises(InputError, match=r"mask .*mask.tif is 50x40 px but its image other.tif is 60x40"):
        read_mask(tmp_path / "mask.tif", (40, 60), "other.tif")
    assert image_mask(image, "none", None, "image.tif") is None
    assert image_mask(image, "auto", tmp_path / "mask.tif", "image.tif").sum() == 30 * 35
    with pytest.raises(ValueError, match="mask mode"):
        image_mask(image, "sometimes", None, "image.tif")
    # Halved: a working pixel is valid where all four of its pixels are; the margin shrinks it further.
    small = working_mask(mask > 0, (20, 25), 0.0)
    assert small.shape == (20, 25) and small.sum() == 14 * 17
    shrunk = working_mask(mask > 0, (40, 50), 2.0)
    assert shrunk.sum() == (30 - 4) * (35 - 4)
    assert working_mask(None, (20, 25), 4.0) is None


def test_invalid_pixels_are_filled_with_the_valid_mean_per_channel():
    image = np.dstack([np.arange(12.0).reshape(3, 4), np.full((3, 4), 5.0)]).astype(np.float32)
    valid = np.ones((3, 4), bool)
    valid[0] = False
    filled = fill_invalid(image, valid)
    np.testing.assert_allclose(filled[0], np.tile([np.arange(4.0, 12.0).mean(), 5.0], (4, 1)))
    np.testing.assert_array_equal(filled[1:], image[1:])
    assert fill_invalid(image, None) is image


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_registers_through_a_shared_zero_border_with_masks(method):
    reference, floating, truth, valid = wedge_pair()
    result = make_method(method, METHODS[method], 0).register(
        reference, floating, reference_mask=valid, floating_mask=valid
    )
    assert result.ok, result.message
    assert pair_error(result.matrix, truth, floating) < 1.0


@pytest.mark.parametrize("method", ["fft_search", "cascade", "alpha_amd"])
def test_without_masks_the_shared_border_aligns_the_pair_at_the_identity(method):
    """The failure the masks prevent: the zero-filled corners match each other, not the content."""
    reference, floating, truth, _ = wedge_pair()
    result = make_method(method, METHODS[method], 0).register(reference, floating)
    assert not result.ok or pair_error(result.matrix, truth, floating) > 20.0
    assert not result.ok or abs(np.degrees(g.rotation_angle(result.matrix))) < 10.0  # near the identity


def test_curvealign_honours_masks_on_the_colour_image_and_in_its_mi():
    reference, floating, truth, valid = wedge_pair(colour=True)
    method = make_method("curvealign", {"start_angles_deg": [-20, 0, 20], "sampling_fraction": 1.0}, 0)
    result = method.register(reference, floating, reference_mask=valid, floating_mask=valid)
    assert result.ok, result.message
    assert pair_error(result.matrix, truth, floating) < 1.0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_all_valid_masks_change_nothing(method):
    reference, floating, _ = make_pair(20.0, (12.0, -8.0))
    ones = np.ones(reference.shape, bool)
    registration = make_method(method, METHODS[method], 0)
    plain = registration.register(reference, floating)
    masked = registration.register(reference, floating, reference_mask=ones, floating_mask=ones)
    assert plain.ok and masked.ok
    # ECC with a template mask of the covered pixels moves the estimate by hundredths of a pixel.
    assert pair_error(masked.matrix, plain.matrix, floating) < 0.1


def test_bad_masks_are_errors_and_empty_masks_failures():
    reference, floating, _, valid = wedge_pair()
    method = make_method("fft_search", {}, 0)
    with pytest.raises(ValueError, match=r"reference mask has shape \(10, 10\), its image \(256, 256\)"):
        method.register(reference, floating, reference_mask=np.ones((10, 10), bool))
    empty = method.register(reference, floating, floating_mask=np.zeros_like(valid))
    assert empty.status == "failed" and "floating mask has no valid pixel" in empty.message

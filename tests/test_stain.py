"""Stain-invariant bright-field input (``stain_normalization: deconvolution``; comir.imaging.stain)."""

from __future__ import annotations

import numpy as np
import pytest

from comir.config.schema import ConfigError
from comir.config.validate import validate_config
from comir.imaging.preprocess import prepare_modality_image
from comir.imaging.stain import REFERENCE_STAINS, RGB_FROM_HED, stain_deconvolution
from comir.training.augment import stain_jitter
from helpers.project import demo
from helpers.registration_cases import he_shg_scene


def _rgb_from_concentrations(stains: np.ndarray, concentrations: np.ndarray) -> np.ndarray:
    """Beer-Lambert: (H, W, 2) stain concentrations seen through stain vectors (3, 2) as RGB in [0, 1]."""
    return np.exp(-(concentrations @ stains.T)).astype(np.float32)


def test_a_pure_haematoxylin_colour_is_all_haematoxylin():
    # One dye only: the two estimated stains coincide, so the reference vectors unmix it.
    amount = np.linspace(0.2, 1.5, 64 * 64).reshape(64, 64)
    concentrations = np.stack([amount, np.zeros_like(amount)], axis=-1)
    stains = REFERENCE_STAINS / np.linalg.norm(REFERENCE_STAINS, axis=0)
    channels = stain_deconvolution(_rgb_from_concentrations(stains, concentrations))
    assert channels.shape == (64, 64, 3) and channels.dtype == np.float32
    assert channels[..., 1].max() < 0.01 and channels[..., 2].max() < 0.01  # no eosin, nothing unexplained
    # Haematoxylin in proportion to the dye, half-scale at the 99th percentile.
    np.testing.assert_allclose(channels[..., 0], np.clip(amount / (2 * np.percentile(amount, 99)), 0, 1), atol=1e-3)


def test_the_channels_do_not_change_with_stain_strength_or_hue():
    rgb = np.asarray(he_shg_scene(256, 0)["rgb"], dtype=np.float32)
    stronger = np.moveaxis(stain_jitter(np.moveaxis(rgb, -1, 0)[None], np.array([[1.6, 0.6, 1.0]]),
                                        np.zeros((1, 3))), 1, -1)[0]  # fmt: skip
    assert np.abs(rgb - stronger).mean() > 0.04  # the colours differ ...
    assert np.abs(stain_deconvolution(rgb) - stain_deconvolution(stronger)).mean() < 0.015  # ... the stains not
    # Other stain vectors (Ruifrok and Johnston's instead of Macenko's reference), the same tissue.
    vectors = REFERENCE_STAINS / np.linalg.norm(REFERENCE_STAINS, axis=0)
    other = RGB_FROM_HED[:2].T
    yy, xx = np.mgrid[:96, :96] / 96.0
    concentrations = np.stack([0.2 + np.sin(9 * xx) ** 2, 0.2 + np.cos(7 * yy) ** 2], axis=-1)
    one = stain_deconvolution(_rgb_from_concentrations(vectors, concentrations))
    two = stain_deconvolution(_rgb_from_concentrations(other, concentrations))
    assert np.abs(one[..., :2] - two[..., :2]).mean() < 0.02
    correlation = np.corrcoef(one[..., 1].ravel(), concentrations[..., 1].ravel())[0, 1]
    assert correlation > 0.98  # eosin channel follows the eosin dye


def test_blank_and_bad_images():
    blank = np.ones((32, 32, 3), np.float32)
    np.testing.assert_array_equal(stain_deconvolution(blank), np.zeros_like(blank))  # nothing absorbs
    with pytest.raises(ValueError, match="RGB image"):
        stain_deconvolution(blank[..., 0])


def test_the_modality_option_feeds_the_network_the_deconvolved_channels():
    rgb = np.asarray(he_shg_scene(128, 1)["rgb"], dtype=np.float32)
    prepared = prepare_modality_image(rgb, {"channels": 3, "stain_normalization": "deconvolution"}, "rgb")
    np.testing.assert_allclose(prepared, np.moveaxis(stain_deconvolution(rgb), -1, 0))


def test_stain_jitter_on_deconvolved_input_is_refused():
    config = demo()
    dataset = config["datasets"]["synthetic"]
    slot = next(s for s, m in dataset["modalities"].items() if m["channels"] == 3)
    dataset["variants"] = {
        "default": {},
        "invariant": {
            "modalities": {slot: {"stain_normalization": "deconvolution"}},
            "training": {"augmentation": {slot: {"stain": {"probability": 0.5}}}},
        },
    }
    with pytest.raises(ConfigError, match="vary them with 'intensity'"):
        validate_config(config)


def test_percentile_scaling_brings_a_dim_acquisition_to_the_scale_of_a_bright_one():
    rng = np.random.default_rng(0)
    fibres = (rng.random((64, 64)) > 0.9) * rng.uniform(0.5, 1.0, (64, 64))  # sparse bright structures
    bright = (fibres * 255).astype(np.uint8)
    dim = (fibres * 40).astype(np.uint8)  # a sixth of the gain
    modality = {"channels": 1, "log1p": True, "percentile_scaling": 99.0}
    one, two = (prepare_modality_image(image, modality, "shg") for image in (bright, dim))
    assert np.abs(one - two).mean() < 0.01 and one.max() == pytest.approx(1.0)
    plain = prepare_modality_image(dim, {"channels": 1, "log1p": True}, "shg")
    assert plain.max() < 0.25  # without it the dim image stays dim
    # The percentile itself maps to 1 (log1p(1) / log 2), brighter pixels are clipped.
    level = np.percentile(bright / 255.0, 99.0)
    np.testing.assert_allclose(one[0], np.log1p(np.minimum(bright / 255.0 / level, 1.0)) / np.log(2), atol=1e-5)
    blank = np.zeros((16, 16), np.uint8)
    np.testing.assert_array_equal(prepare_modality_image(blank, modality, "blank"), np.zeros((1, 16, 16)))


def test_percentile_scaling_out_of_range_is_refused():
    config = demo()
    dataset = config["datasets"]["synthetic"]
    dataset["variants"] = {"default": {}, "gain": {"modalities": {"A": {"percentile_scaling": 30}}}}
    with pytest.raises(ConfigError, match="percentile_scaling"):
        validate_config(config)

"""Intensity augmentation of training patches (comir.training.augment) and its place in the patch sampler."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from comir.config.schema import ConfigError
from comir.config.validate import validate_config
from comir.imaging.stain import HED_FROM_RGB, RGB_FROM_HED
from comir.training.augment import augment_patches, stain_jitter
from comir.training.loop import training_fingerprint
from comir.training.sampler import PatchSampler
from comir.training.settings import TrainingConfig
from helpers.project import ROOT


def rgb_patches(n=4, size=32, seed=0):
    """Stained-looking RGB patches: positive H, E, D densities mixed by the stain vectors (intensities < 0.9)."""
    rng = np.random.default_rng(seed)
    hed = rng.uniform(0.05, 0.5, (n, size, size, 3))
    return np.moveaxis(np.exp(-(hed @ RGB_FROM_HED)), -1, 1).astype(np.float32)


def densities(patches):
    return -np.log(np.moveaxis(patches, 1, -1)) @ HED_FROM_RGB


def test_stain_jitter_without_change_is_the_identity_and_scales_one_stain_alone():
    patches = rgb_patches()
    ones, zeros = np.ones((4, 3)), np.zeros((4, 3))
    np.testing.assert_allclose(stain_jitter(patches, ones, zeros), patches, atol=1e-5)
    more_eosin = ones.copy()
    more_eosin[:, 1] = 1.3
    jittered = densities(stain_jitter(patches, more_eosin, zeros))
    before = densities(patches)
    np.testing.assert_allclose(jittered[..., 0], before[..., 0], atol=1e-3)  # haematoxylin untouched
    np.testing.assert_allclose(jittered[..., 1], 1.3 * before[..., 1], atol=1e-3)


SETTINGS = {
    "stain": {"probability": 1.0, "scale": 0.2, "shift": 0.1},
    "intensity": {"probability": 1.0, "scale": 0.2},
    "blur": {"probability": 1.0, "sigma": 2.0},
    "noise": {"probability": 1.0, "sigma": 0.1},
}


@pytest.mark.parametrize("transform", SETTINGS)
def test_each_transform_changes_what_it_says_and_is_seeded(transform):
    patches = rgb_patches(8)
    settings = {transform: SETTINGS[transform]}
    first = augment_patches(patches, settings, np.random.default_rng(5))
    again = augment_patches(patches, settings, np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)
    assert first.shape == patches.shape and first.dtype == np.float32 and 0 <= first.min() and first.max() <= 1
    assert not np.allclose(first, patches)
    if transform == "intensity":  # one factor per patch and channel
        ratio = first / patches
        factor = np.median(ratio, axis=(2, 3), keepdims=True)
        np.testing.assert_allclose(first, np.minimum(patches * factor, 1.0), atol=1e-5)
        assert factor.min() >= 0.8 - 1e-6 and factor.max() <= 1.2 + 1e-6
    if transform == "blur":  # less fine detail
        assert np.abs(np.diff(first, axis=-1)).mean() < 0.8 * np.abs(np.diff(patches, axis=-1)).mean()
    if transform == "noise":
        assert np.abs(np.diff(first, axis=-1)).mean() > np.abs(np.diff(patches, axis=-1)).mean()
    never = {transform: {**SETTINGS[transform], "probability": 0.0}}
    untouched = augment_patches(patches, never, np.random.default_rng(5))
    np.testing.assert_array_equal(untouched, patches)


def sampler(augmentation=None):
    rng = np.random.default_rng(1)
    pairs = [(rng.random((3, 160, 160), dtype=np.float32), rng.random((1, 160, 160), dtype=np.float32))]
    return PatchSampler(pairs, 32, rotation=True, flips=True, augmentation=augmentation)


def test_augmentation_keeps_the_patches_places_and_off_keeps_the_batches():
    plain = sampler().sample(np.random.default_rng(3), 4)
    np.testing.assert_array_equal(sampler({}).sample(np.random.default_rng(3), 4)[0], plain[0])
    never = {"A": {"intensity": {"probability": 0.0, "scale": 0.1}}}
    np.testing.assert_array_equal(sampler(never).sample(np.random.default_rng(3), 4)[0], plain[0])
    brighter = {"A": {"intensity": {"probability": 1.0, "scale": 0.3}}}
    changed_a, same_b = sampler(brighter).sample(np.random.default_rng(3), 4)
    np.testing.assert_array_equal(same_b, plain[1])  # B has no augmentation and the same places
    factors = np.median(changed_a / np.maximum(plain[0], 1e-6), axis=(2, 3), keepdims=True)  # one per patch
    assert not np.allclose(factors, 1.0)
    np.testing.assert_allclose(changed_a, np.clip(plain[0] * factors, 0.0, 1.0), atol=1e-5)  # cubic: < 0 too
    validation = sampler(brighter).sample(np.random.default_rng(3), 4, augment=False)
    np.testing.assert_array_equal(validation[0], sampler().sample(np.random.default_rng(3), 4, augment=False)[0])


def test_augmentation_is_part_of_the_training_fingerprint():
    pairs = [(np.zeros((3, 8, 8), np.float32), np.zeros((1, 8, 8), np.float32))]
    plain = training_fingerprint({}, pairs, pairs, TrainingConfig())
    stained = TrainingConfig(augmentation={"A": {"stain": {"probability": 0.5, "scale": 0.05, "shift": 0.05}}})
    assert training_fingerprint({}, pairs, pairs, stained) != plain


def test_bad_augmentation_is_rejected_at_parse_time():
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    training = config["datasets"]["synthetic"]["training"]
    for augmentation, message in [
        ({"A": {"stain": {"probability": 0.5}}}, "stain jitter needs an RGB"),  # A is the 1-channel fibres
        ({"B": {"jpeg": {"probability": 0.5}}}, "unknown key"),
        ({"B": {"noise": {"probability": 1.5}}}, "1.5 is greater than the maximum"),
    ]:
        broken = copy.deepcopy(config)
        broken["datasets"]["synthetic"]["training"] = {**training, "augmentation": augmentation}
        with pytest.raises(ConfigError, match=message):
            validate_config(broken)
    config["datasets"]["synthetic"]["training"]["augmentation"] = {"B": {"stain": {"probability": 0.5}}}
    assert validate_config(config)["datasets"]["synthetic"]["training"]["augmentation"]["B"]["stain"]["scale"] == 0.05

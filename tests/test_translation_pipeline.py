"""The GAN translation baselines in the pipeline: training on pairs, translating a test set, configuration."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml

from comir.config.schema import ConfigError
from comir.config.validate import validate_config
from comir.translation.pipeline import (
    TranslationTraining,
    build_translators,
    check_entry,
    checkpoint,
    load_translators,
    train_translators,
    translate_testset,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "pix2pix": dict(filters=8, discriminator_filters=8, residual_blocks=1, epochs_constant=1, epochs_decay=1),
    "cyclegan": dict(filters=8, discriminator_filters=8, residual_blocks=1, epochs_constant=1, epochs_decay=1,
                     pool_size=2),
    "drit": dict(filters=8, attribute_filters=8, discriminator_filters=8, discriminator_layers=2,
                 discriminator_scales=2, content_discriminator_layers=0, epochs=2, decay_start_epoch=1),
}  # fmt: skip
CHANNELS = {"A": 3, "B": 1}
MODALITIES = {"A": {"name": "stain", "channels": 3}, "B": {"name": "fibres", "channels": 1}}


def pairs(n: int = 2, size: int = 64):
    rng = np.random.default_rng(0)
    return [(rng.random((3, size, size), dtype=np.float32), rng.random((1, size, size), dtype=np.float32))
            for _ in range(n)]  # fmt: skip


def test_pix2pix_is_trained_in_both_directions_and_the_others_once():
    translators = build_translators("pix2pix", TINY["pix2pix"], CHANNELS, seed=5)
    assert set(translators) == {"a2b", "b2a"}
    assert translators["a2b"].config.direction == "a2b" and translators["b2a"].config.direction == "b2a"
    first = [p for p in translators["a2b"].networks["discriminator"].parameters()][0]
    second = [p for p in translators["b2a"].networks["discriminator"].parameters()][0]
    assert not torch.equal(first, second)  # seeded apart
    assert set(build_translators("cyclegan", TINY["cyclegan"], CHANNELS, seed=5)) == {"both"}


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("pix2pix", {"direction": "a2b"}, "set by the pipeline"),
        ("cyclegan", {"filterz": 8}, "filterz"),
        ("drit", {"epochs": 0}, "epochs"),
        ("munit", {}, "unknown translation method"),
    ],
)
def test_bad_entries_are_rejected(method, params, message):
    with pytest.raises(ValueError, match=message):
        check_entry(method, params)


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan", "drit"])
def test_training_follows_the_schedule_and_is_seeded(method):
    training = TranslationTraining(steps_per_epoch=2, batch_size=2, patch_size=32)
    histories = []
    for _ in range(2):
        translators = build_translators(method, TINY[method], CHANNELS, seed=1)
        histories.append(train_translators(translators, pairs(), training, seed=1))
    history = histories[0]
    assert sorted(history["epoch"].unique()) == [1, 2]
    assert np.isfinite(history.drop(columns=["epoch", "model"]).to_numpy(float)).all()
    pd.testing.assert_frame_equal(histories[0], histories[1])  # same seed, same patches and weights


def test_a_test_set_is_translated_into_files_the_register_rule_reads(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(2)
    for slot, channels in CHANNELS.items():
        for role in ("ref", "flo"):
            shape = (40, 48, 3) if channels == 3 else (40, 48)
            tifffile.imwrite(images / f"case_0000_{slot}_{role}.tif", rng.integers(0, 255, shape, dtype=np.uint8))
    cases = pd.DataFrame({"case": ["case_0000"]})
    for method in ("pix2pix", "drit"):
        out = tmp_path / method
        translate_testset(build_translators(method, TINY[method], CHANNELS, 0), cases, images, MODALITIES, out)
        fake_a, fake_b = tifffile.imread(out / "case_0000_B_flo.tif"), tifffile.imread(out / "case_0000_A_flo.tif")
        assert fake_a.shape == (40, 48, 3) and fake_b.shape == (40, 48)  # B's patch as A, A's as B
        assert fake_a.dtype == np.float32 and 0 <= fake_a.min() and fake_a.max() <= 1
        reference = tifffile.imread(out / "case_0000_A_ref.tif")
        np.testing.assert_allclose(reference, tifffile.imread(images / "case_0000_A_ref.tif") / 255, atol=1e-6)


def test_a_checkpoint_loads_with_weights_only_and_translates_identically(tmp_path):
    translators = build_translators("cyclegan", TINY["cyclegan"], CHANNELS, seed=3)
    train_translators(translators, pairs(), TranslationTraining(steps_per_epoch=1, batch_size=1, patch_size=32), 3)
    path = tmp_path / "model.pt"
    torch.save(checkpoint("cyclegan", TINY["cyclegan"], MODALITIES, translators, {"provenance": {}}), path)
    loaded, payload = load_translators(path)
    assert payload["method"] == "cyclegan"
    image = pairs(1, 40)[0][0]
    np.testing.assert_array_equal(loaded["both"].translate(image, "a2b"), translators["both"].translate(image, "a2b"))


def tiny_config():
    return yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["translation"]["pix2pix"]["params"].update(lambda_l1=-1), "translation/pix2pix/params"),
        (lambda d: d["translation"]["cyclegan"].update(patch=32), "unknown key"),
        (lambda d: d["translation"].update(mse={"method": "cyclegan"}), "taken by a variant"),
        (lambda d: d["translation"]["drit"].update(method="unit"), "is not one of"),
        (lambda d: d.update(translation={}), "'translated' needs translation models"),
    ],
)
def test_bad_translation_configuration_is_rejected_at_parse_time(change, message):
    config = tiny_config()
    change(config["datasets"]["tiny"])
    with pytest.raises(ConfigError, match=message):
        validate_config(copy.deepcopy(config))

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from comir.evaluate.representation import plot_polar_equivariance
from comir.io import InputError, write_tiff
from comir.network.model import Tiramisu, TiramisuConfig
from comir.representation.settings import (
    CELLS,
    check_settings,
    equivariance_problems,
    models_per_cell,
    reproducibility_problems,
)
from comir.representation.stages import (
    equivariance_extent,
    equivariance_summaries,
    equivariance_tables,
    load_test_images,
    plot_reproducibility,
    random_seed,
    reproducibility_table,
    rotation_curves,
    sample_test_patches,
    short_training,
)

MODALITIES = {"A": {"name": "fibres", "channels": 1}, "B": {"name": "stain", "channels": 3}}
SMALL_NET = {"init_filters": 4, "down_blocks": [1], "bottleneck": 1, "growth_rate": 4, "dropout": 0.0,
             "out_channels": 2}  # fmt: skip
EQUIVARIANCE = {"images": 2, "angle_step_deg": 30, "patch": 32, "crop": 46, "shifts": [[0, 1], [1, 0], [3, 5]],
                "margin": 4}  # fmt: skip
INFERENCE = {
    "engine": "torch",
    "device": "cpu",
    "tile": 512,
    "margin": None,
    "pad": 8,
    "mixed_precision": True,
    "c4_average": False,
}
REPRODUCIBILITY = {"models": 3, "steps": 3, "patches": 2, "patch": 24, "bootstrap": 500}
SIZE = 64


def smooth_texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0)
    return (texture - texture.min()) / np.ptp(texture)


def untrained_networks() -> dict[str, Tiramisu]:
    networks = {}
    for seed, slot in enumerate(MODALITIES):
        torch.manual_seed(seed)
        config = TiramisuConfig(in_channels=MODALITIES[slot]["channels"], **SMALL_NET)
        networks[slot] = Tiramisu(config).eval()
    return networks


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> pd.DataFrame:
    """A pairs table as prepare_data writes it: 3 training and 2 test pairs of 64 px, B a colour function of A."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    rows = []
    for index, split in enumerate(["train"] * 3 + ["test"] * 2):
        a = smooth_texture(rng)
        b = np.stack([1 - a, a**2, np.full_like(a, 0.5)], axis=-1)
        paths = {slot: root / slot / f"p{index}.tif" for slot in MODALITIES}
        write_tiff(paths["A"], (255 * a).astype(np.uint8))
        write_tiff(paths["B"], (255 * b).astype(np.uint8))
        rows.append(
            {"id": f"p{index}", "split": split, "path_A": str(paths["A"]), "path_B": str(paths["B"]),
             "height": SIZE, "width": SIZE}
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def images(pairs) -> dict[str, tuple[np.ndarray, ...]]:
    return load_test_images(pairs, MODALITIES, 2, equivariance_extent(EQUIVARIANCE))


# --- settings ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"crop": 44}, "less than patch * sqrt(2)"),
        ({"crop": 47}, "crop - patch must be even"),
        ({"angle_step_deg": 0}, "angle_step_deg: 0 is not in (0, 360]"),
        ({"shifts": [[0, 30]]}, "leaves no overlap"),
        ({"shifts": [[1]]}, "is not a pair of integers"),
        ({"images": 0}, "images: 0"),
        ({"margin": -1}, "margin: -1"),
    ],
)
def test_equivariance_settings_problems_are_named(change, message):
    settings = {**EQUIVARIANCE, **change}
    assert any(message in problem for problem in equivariance_problems(settings))
    with pytest.raises(ValueError, match="representation.equivariance"):
        check_settings("equivariance", settings)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": 1}, "not an integer >= 2"),
        ({"models": {"fixed_seed_fixed_image": 2}}, "give a count for each of"),
        ({"steps": 0}, "steps: 0"),
        ({"patches": 0}, "patches: 0"),
        ({"bootstrap": 0}, "bootstrap: 0"),
    ],
)
def test_reproducibility_settings_problems_are_named(change, message):
    settings = {**REPRODUCIBILITY, **change}
    assert any(message in problem for problem in reproducibility_problems(settings))
    with pytest.raises(ValueError, match="representation.reproducibility"):
        check_settings("reproducibility", settings)


def test_valid_settings_have_no_problems_and_missing_keys_are_listed():
    assert equivariance_problems(EQUIVARIANCE) == []
    assert reproducibility_problems(REPRODUCIBILITY) == []
    assert reproducibility_problems({**REPRODUCIBILITY, "steps": None}) == []
    settings = {key: value for key, value in EQUIVARIANCE.items() if key != "margin"}
    assert equivariance_problems(settings) == ["missing key(s): margin"]


def test_models_per_cell_from_one_count_or_a_count_per_cell():
    assert models_per_cell(4) == {f"{s}_seed_{i}_image": 4 for s, i in CELLS}
    paper = dict(zip([f"{s}_seed_{i}_image" for s, i in CELLS], [50, 20, 20, 20]))
    assert models_per_cell(paper) == paper


def test_random_seeds_are_reproducible_distinct_and_differ_from_the_configured_seed():
    seeds = [random_seed(7, model) for model in range(20)]
    assert seeds == [random_seed(7, model) for model in range(20)]
    assert len(set(seeds)) == 20 and 7 not in seeds
    assert random_seed(8, 0) != seeds[0]


def test_short_training_is_one_epoch_of_the_given_steps():
    training = {"epochs": 23, "steps_per_epoch": 32, "batch_size": 8}
    short = short_training(training, 20, seed=3, threads=2)
    assert (short.epochs, short.steps_per_epoch, short.batch_size, short.seed) == (1, 20, 8, 3)
    full = short_training(training, None, seed=3, threads=2)
    assert (full.epochs, full.steps_per_epoch) == (23, 32)


# --- test images and patches -----------------------------------------------------------------------------------------


def test_extent_covers_the_rotation_crop_and_the_largest_shift():
    assert equivariance_extent(EQUIVARIANCE) == 46
    assert equivariance_extent({**EQUIVARIANCE, "shifts": [[0, -12]]}) == 32 + 24


def test_test_images_are_central_squares_of_the_first_test_pairs(pairs, images):
    assert list(images) == ["p3", "p4"]
    a, b = images["p3"]
    assert a.shape == (1, 46, 46) and b.shape == (3, 46, 46) and a.dtype == np.float32
    whole = load_test_images(pairs, MODALITIES, 1, SIZE)
    np.testing.assert_array_equal(whole["p3"][0][:, 9:55, 9:55], a)
    with pytest.raises(InputError, match="p3"):
        load_test_images(pairs, MODALITIES, 1, SIZE + 1)


def test_test_patches_are_fixed_by_the_seed_and_cycle_over_the_test_images(pairs):
    positions, patches = sample_test_patches(pairs, MODALITIES, 3, 24, seed=5)
    again, _ = sample_test_patches(pairs, MODALITIES, 3, 24, seed=5)
    other, _ = sample_test_patches(pairs, MODALITIES, 3, 24, seed=6)
    pd.testing.assert_frame_equal(positions, again)
    assert not positions.equals(other)
    assert list(positions["image_id"]) == ["p3", "p4", "p3"]
    assert positions[["y", "x"]].to_numpy().max() <= SIZE - 24
    assert [p[0].shape for p in patches] == [(1, 24, 24)] * 3 and patches[0][1].shape == (3, 24, 24)


# --- equivariance ----------------------------------------------------------------------------------------------------


def test_equivariance_tables_have_a_row_per_modality_image_and_angle_or_shift(images):
    rotation, translation = equivariance_tables(untrained_networks(), MODALITIES, images, EQUIVARIANCE, INFERENCE)
    assert list(rotation.columns) == ["modality", "image_id", "angle_deg", "correlation"]
    assert list(translation.columns) == ["modality", "image_id", "dy", "dx", "correlation"]
    assert len(rotation) == 2 * 2 * 12 and len(translation) == 2 * 2 * 3
    assert sorted(set(rotation["angle_deg"])) == list(range(0, 360, 30))
    assert set(rotation["modality"]) == {"fibres", "stain"} and set(rotation["image_id"]) == {"p3", "p4"}
    assert rotation["correlation"].between(-1, 1).all() and translation["correlation"].between(-1, 1).all()
    # Rotating by 0 samples whole pixels: the patch itself.
    np.testing.assert_allclose(rotation.loc[rotation["angle_deg"] == 0, "correlation"], 1.0, atol=1e-6)
    assert translation["dy"].dtype.kind == "i"

    curves = rotation_curves(rotation)
    assert list(curves) == ["fibres", "stain"] and len(curves["fibres"]) == 12
    fibres = rotation[rotation["modality"] == "fibres"]
    assert curves["fibres"]["correlation"].iloc[1] == pytest.approx(
        fibres.loc[fibres["angle_deg"] == 30, "correlation"].mean()
    )
    rotation_summary, translation_summary = equivariance_summaries(rotation, translation)
    assert list(rotation_summary["modality"]) == ["fibres", "stain"]
    assert set(rotation_summary["images"]) == {2} and set(rotation_summary["angles"]) == {12}
    assert len(translation_summary) == 2 * 3 and set(translation_summary["images"]) == {2}


def test_a_c4_averaged_network_is_exactly_equivariant_at_right_angles(images):
    settings = {**EQUIVARIANCE, "angle_step_deg": 45}
    networks = untrained_networks()
    plain, _ = equivariance_tables(networks, MODALITIES, images, settings, INFERENCE)
    c4, c4_translation = equivariance_tables(networks, MODALITIES, images, settings, {**INFERENCE, "c4_average": True})
    right_angles = c4["angle_deg"] % 90 == 0
    np.testing.assert_allclose(c4.loc[right_angles, "correlation"], 1.0, atol=1e-6)
    assert (c4.loc[~right_angles, "correlation"] < 0.9999).all()
    # The network alone is not C4-equivariant.
    assert plain.loc[right_angles & (plain["angle_deg"] > 0), "correlation"].max() < 0.999
    summary, _ = equivariance_summaries(c4, c4_translation)
    np.testing.assert_allclose(summary["mean_at_90_180_270"], 1.0, atol=1e-6)


def test_onnx_runtime_measures_what_pytorch_measures(images):
    settings = {**EQUIVARIANCE, "angle_step_deg": 120}
    one = {"p3": images["p3"]}
    torch_tables = equivariance_tables(untrained_networks(), MODALITIES, one, settings, INFERENCE)
    onnx = {**INFERENCE, "engine": "onnxruntime"}
    onnx_tables = equivariance_tables(untrained_networks(), MODALITIES, one, settings, onnx)
    for ours, theirs in zip(torch_tables, onnx_tables):
        np.testing.assert_allclose(ours["correlation"], theirs["correlation"], atol=1e-4)


def test_bad_settings_stop_before_any_comir(images):
    with pytest.raises(ValueError, match="crop"):
        equivariance_tables(untrained_networks(), MODALITIES, images, {**EQUIVARIANCE, "crop": 40}, INFERENCE)


def test_rotation_curves_feed_the_polar_plot(images, tmp_path):
    rotation, _ = equivariance_tables(untrained_networks(), MODALITIES, {"p3": images["p3"]}, EQUIVARIANCE, INFERENCE)
    path = tmp_path / "polar.png"
    plot_polar_equivariance(rotation_curves(rotation), path)
    assert path.stat().st_size > 5000


# --- reproducibility -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset() -> dict:
    return {
        "modalities": MODALITIES,
        "model": SMALL_NET,
        "training": {
            "epochs": 5,
            "steps_per_epoch": 10,
            "batch_size": 4,
            "patch_size": 16,
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "validation_batches": 1,
            "rotation": True,
            "device": "cpu",
        },
        "inference": INFERENCE,
    }


@pytest.fixture(scope="module")
def reproducibility(dataset, pairs):
    models = dict(zip([f"{s}_seed_{i}_image" for s, i in CELLS], [2, 4, 3, 4]))
    settings = {**REPRODUCIBILITY, "models": models}
    return reproducibility_table(dataset, pairs, settings, seed=1, threads=1)


def test_reproducibility_tables_have_a_row_per_cell_and_modality_and_pair(reproducibility):
    summary, pairwise = reproducibility
    assert list(summary.columns) == [
        "seed", "image", "modality", "models", "steps", "patches", "mean_correlation", "ci_low", "ci_high",
    ]  # fmt: skip
    assert list(zip(summary["seed"], summary["image"]))[::2] == list(CELLS)
    assert list(summary["models"]) == [2, 2, 4, 4, 3, 3, 4, 4]
    assert set(summary["steps"]) == {3} and set(summary["patches"]) == {2}
    assert len(pairwise) == 2 * (1 + 6 + 3 + 6)
    assert (summary["ci_low"] <= summary["mean_correlation"] + 1e-12).all()
    assert (summary["mean_correlation"] <= summary["ci_high"] + 1e-12).all()
    assert pairwise["correlation"].between(-1, 1).all()


def test_fixed_seed_and_image_is_bitwise_the_same_training_and_random_seeds_are_less_alike(reproducibility):
    summary, pairwise = reproducibility
    cells = summary.set_index(["seed", "image", "modality"])
    for modality in MODALITIES.values():
        same = cells.loc[("fixed", "fixed", modality["name"])]
        assert same[["mean_correlation", "ci_low", "ci_high"]].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-9)
        for image in ("fixed", "varying"):
            assert cells.loc[("random", image, modality["name"]), "mean_correlation"] < 0.99
    fixed = pairwise[pairwise["seed"] == "fixed"]
    assert set(fixed["seed_i"]) | set(fixed["seed_j"]) == {1}
    random_cells = pairwise[(pairwise["seed"] == "random") & (pairwise["image"] == "varying")]
    assert set(random_cells["seed_j"]) == {random_seed(1, model) for model in (1, 2, 3)}
    fixed_image = pairwise[pairwise["image"] == "fixed"]
    assert set(fixed_image["train_id_i"]) | set(fixed_image["train_id_j"]) == {"p0"}
    fixed_seed_varying = pairwise[(pairwise["seed"] == "fixed") & (pairwise["image"] == "varying")]
    varying = fixed_seed_varying[(fixed_seed_varying["modality"] == "fibres") & (fixed_seed_varying["model_i"] == 0)]
    # Model i trains on training pair i mod 3.
    assert dict(zip(varying["model_j"], varying["train_id_j"])) == {1: "p1", 2: "p2", 3: "p0"}


def test_reproducibility_is_itself_reproducible(dataset, pairs):
    settings = {**REPRODUCIBILITY, "models": 2}
    first, _ = reproducibility_table(dataset, pairs, settings, seed=1, threads=1)
    second, _ = reproducibility_table(copy.deepcopy(dataset), pairs, settings, seed=1, threads=1)
    pd.testing.assert_frame_equal(first, second)


def test_small_training_images_are_named(dataset, pairs):
    big_patches = copy.deepcopy(dataset)
    big_patches["training"]["patch_size"] = 48  # a 70 px crop in 64 px images
    with pytest.raises(InputError, match="p0"):
        reproducibility_table(big_patches, pairs, REPRODUCIBILITY, seed=1)


def test_reproducibility_figure(reproducibility, tmp_path):
    path = tmp_path / "reproducibility.png"
    plot_reproducibility(reproducibility[0], path, title="test")
    assert path.stat().st_size > 5000
    with pytest.raises(ValueError, match="empty"):
        plot_reproducibility(reproducibility[0].iloc[:0], path)

"""benchmarks/pair_offsets.py: a pair's own offset by MI; a case's error split into its constant part and the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from comir.deformation.synthetic import random_displacement
from helpers.registration_cases import texture

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pair_offsets", ROOT / "benchmarks" / "pair_offsets.py")
pair_offsets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pair_offsets)


def test_a_known_subpixel_offset_between_two_modalities_is_measured(tmp_path):
    fixed = ndimage.gaussian_filter(np.array(texture(160, seed=2, lines=False), dtype=np.float64), 1.5)
    shift = np.array([0.7, -1.3])  # (x, y): moving(y) = fixed(y - shift), so fixed(x) = moving(x + shift)
    moving = np.exp(-2.0 * ndimage.shift(fixed, shift[::-1], order=3, mode="nearest"))  # another modality
    mean, spread = pair_offsets.pair_offset(fixed, moving)
    np.testing.assert_allclose(mean, shift, atol=0.1)
    assert np.all(spread < 0.1)
    # The pairs layout: BF (stain density: dark where stained) against SHG (log1p), one row per pair.
    (tmp_path / "BF").mkdir()
    (tmp_path / "SHG").mkdir()
    tifffile.imwrite(tmp_path / "BF" / "core.tif", np.rint(255 * np.exp(-fixed)).astype(np.uint8))
    tifffile.imwrite(tmp_path / "SHG" / "core.tif", np.expm1(ndimage.shift(fixed, shift[::-1], order=3)))
    (row,) = pair_offsets.pair_offsets([tmp_path]).to_dict("records")
    assert row["pair"] == "core" and abs(row["t_x"] - 0.7) < 0.15 and abs(row["t_y"] + 1.3) < 0.15


def test_a_constant_residual_is_the_bias_and_the_rest_is_what_is_left():
    truth = random_displacement((64, 64), 3.0, 32, 1).astype(np.float64)
    points = np.array([[8.0, 8.0], [40.0, 12.0], [20.0, 50.0], [55.0, 55.0]])
    split = pair_offsets.residual_split(truth + np.array([0.6, -0.8]), truth, points)
    assert abs(split["tre"] - 1.0) < 1e-6 and abs(split["bias"] - 1.0) < 1e-6 and split["rest"] < 1e-6
    assert abs(split["bias_x"] - 0.6) < 1e-6 and abs(split["bias_y"] + 0.8) < 1e-6
    # A field off by +-1 px in x at alternate landmarks: no constant part, all of it left.
    field = truth.copy()
    field[:32, ..., 0] += 1.0
    field[32:, ..., 0] -= 1.0
    split = pair_offsets.residual_split(field, truth, points)
    assert split["bias"] < 1e-6 and abs(split["rest"] - 1.0) < 1e-6


def test_a_field_that_finds_the_content_of_an_offset_pair_is_right_against_the_corrected_truth():
    # The floating content of reference x truly lies where the truth sends x + offset.
    truth = random_displacement((64, 64), 3.0, 32, 2).astype(np.float64)
    offset = np.array([0.7, -1.2])
    rows, cols = np.indices((64, 64), dtype=np.float64)
    grid = np.stack([cols.ravel(), rows.ravel()], axis=1)
    field = (pair_offsets.map_points(grid + offset, truth) - grid).reshape(64, 64, 2)
    points = np.array([[10.0, 10.0], [30.0, 20.0], [45.0, 40.0], [20.0, 50.0]])
    split = pair_offsets.residual_split(field, truth, points, offset)
    assert split["tre_corrected"] < 1e-6
    assert abs(split["tre"] - np.hypot(*offset)) < 0.2  # a smooth truth: about the offset itself

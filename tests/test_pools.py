"""Tests of comir.evaluate.pools: the per-core table and figure of a pool (rule pool_folds)."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from comir.evaluate.pools import (
    CORES_FIGURE_WIDTH_IN,
    CORES_HEADER_IN,
    CORES_ROW_HEIGHT_IN,
    core_examples,
    core_table,
    patch_statistics,
    plot_cores,
)
from comir.evaluate.tables import RESULT_COLUMNS, make_label, pool_results
from comir.io import write_tiff

FRACTIONS = (0.01, 0.05)  # 10 and 50 px at a width of 1000 px; failures from 120 px


def fold(cores: dict[str, dict[tuple[str, str], list]]) -> pd.DataFrame:
    """One dataset's results: per core (image_id) and run (method, input), its cases' errors.

    An error given as a tuple ``(error, status)`` has that status instead of ok.
    """
    rows, number = [], 0
    for image_id, runs in cores.items():
        n = len(next(iter(runs.values())))
        for i in range(n):
            case = f"case_{number + i:04d}"
            for (method, input_), errors in runs.items():
                error, status = errors[i] if isinstance(errors[i], tuple) else (errors[i], "ok")
                rows.append({"case": case, "image_id": image_id, "method": method, "input": input_,
                             "direction": "A_to_B", "error_px": float(error), "status": status})  # fmt: skip
        number += n
    defaults = {"stratum": "small", "width": 1000.0, "height": 1000.0, "initial_displacement_px": 150.0,
                "reference_modality": "B", "floating_modality": "A", "metric": "none", "seconds": 1.0}  # fmt: skip
    matrix = {c: 0.0 for c in RESULT_COLUMNS if c.startswith(("est_", "true_"))}
    frame = pd.DataFrame([{**defaults, **matrix, **row} for row in rows])[list(RESULT_COLUMNS)]
    frame["label"] = make_label(frame["method"], frame["input"], frame["direction"])
    return frame


SIFT, MI = ("sift", "comir"), ("mi", "original")


@pytest.fixture
def pooled() -> pd.DataFrame:
    return pool_results({
        "d1": fold({
            # X: SIFT 2/4 within 1 %, 3/4 within 5 %; MI 1/4 and 1/4.
            "X": {SIFT: [1, 2, 30, 200], MI: [5, 60, 60, 60]},
            # Y: no run reaches half of its cases: unregistered.
            "Y": {SIFT: [200, 200, 200, 30], MI: [40, 300, 300, 300]},
        }),
        # Z: SIFT exactly 1 of 2 within 5 % (50 %: registered); MI's 3 px is a reported failure.
        "d2": fold({"Z": {SIFT: [3, 100], MI: [(3, "failed"), 8]}}),
    })  # fmt: skip


def test_the_core_table_counts_each_core_and_run_and_flags_unregistered_cores(pooled):
    table = core_table(pooled, FRACTIONS, failure_fraction=0.12)
    assert len(table) == 6  # 3 cores x 2 runs
    assert list(table.columns[:6]) == ["dataset", "image_id", "method", "input", "direction", "cases"]
    # Worst first by the best CoMIR run's rate within 5 %: Y (1/4), Z (1/2), X (3/4).
    assert list(table.drop_duplicates("image_id")["image_id"]) == ["Y", "Z", "X"]
    row = table.set_index(["image_id", "method"])
    expected = {  # (cases, within 1 %, within 5 %)
        ("X", "sift"): (4, 2, 3), ("X", "mi"): (4, 1, 1),
        ("Y", "sift"): (4, 0, 1), ("Y", "mi"): (4, 0, 1),
        ("Z", "sift"): (2, 1, 1), ("Z", "mi"): (2, 1, 1),
    }  # fmt: skip
    for key, (n, k1, k5) in expected.items():
        got = row.loc[key]
        assert (got["cases"], got["success_1pct"], got["success_5pct"]) == (n, k1, k5), key
        assert got["rate_5pct"] == pytest.approx(k5 / n, abs=1e-3)
        for k, pct in ((k1, "1pct"), (k5, "5pct")):
            interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
            assert got[f"success_{pct}_low"] == pytest.approx(interval.low, abs=6e-4), key
            assert got[f"success_{pct}_high"] == pytest.approx(interval.high, abs=6e-4), key
    assert row.loc[("X", "sift"), "median_error_px"] == pytest.approx(16.0)  # 1, 2, 30, 120 (failure at bound)
    assert row.loc[("Z", "mi"), "failures"] == 1
    cores = table.drop_duplicates("image_id").set_index("image_id")
    assert cores["best_rate"].to_dict() == pytest.approx({"X": 0.75, "Y": 0.25, "Z": 0.5})
    assert cores["best_original_rate"].to_dict() == pytest.approx({"X": 0.25, "Y": 0.25, "Z": 0.5})
    assert cores["unregistered"].to_dict() == {"X": False, "Y": True, "Z": False}
    assert cores["dataset"].to_dict() == {"X": "d1", "Y": "d1", "Z": "d2"}


def test_a_core_of_the_same_id_in_two_datasets_is_two_cores(pooled):
    twice = pool_results({"d1": fold({"X": {SIFT: [1, 200]}}), "d2": fold({"X": {SIFT: [200, 200]}})})
    table = core_table(twice, FRACTIONS)
    assert list(zip(table["dataset"], table["unregistered"])) == [("d2", True), ("d1", False)]


def test_patch_statistics_measure_signal_stain_and_agreement():
    b = np.zeros((16, 16), np.uint8)
    b[:4, :4] = 200
    b[8, 8] = 10  # below 10 % of the maximum: not signal
    a = np.full((16, 16, 3), 0.1, np.float32)  # optical density 1
    comir = np.random.default_rng(0).normal(size=(16, 16, 2)).astype(np.float32)
    stats = patch_statistics(a, b, comir, 2 * comir + 1)
    assert stats["b_signal_coverage"] == pytest.approx(16 / 256)
    assert stats["b_p99"] == pytest.approx(200 / 255, abs=1e-6)
    assert stats["a_mean_od"] == pytest.approx(1.0, abs=1e-6)
    assert stats["comir_correlation"] == pytest.approx(1.0)
    blank = patch_statistics(a, np.zeros_like(b), comir, np.zeros_like(comir))
    assert blank["b_signal_coverage"] == 0.0 and np.isnan(blank["comir_correlation"])


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_cores_figure_shows_every_core_worst_first(pooled, tmp_path):
    rng = np.random.default_rng(1)
    image_dirs, comir_dirs = {}, {}
    examples = core_examples(pooled)
    assert examples["case"].tolist() == ["case_0000", "case_0004", "case_0000"]  # X, Y of d1; Z of d2
    for dataset, case in zip(examples["dataset"], examples["case"]):
        image_dirs[dataset], comir_dirs[dataset] = tmp_path / dataset / "images", tmp_path / dataset / "comirs"
        write_tiff(image_dirs[dataset] / f"{case}_A_ref.tif", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        write_tiff(image_dirs[dataset] / f"{case}_B_ref.tif", rng.integers(0, 255, (40, 40), dtype=np.uint8))
        for slot in "AB":
            write_tiff(comir_dirs[dataset] / f"{case}_{slot}_ref.tif", rng.normal(size=(40, 40)).astype(np.float32))
    table = core_table(pooled, FRACTIONS)
    path = tmp_path / "cores.png"
    shown = plot_cores(table, examples, image_dirs, comir_dirs, path, names={"A": "BF", "B": "SHG"})
    assert shown["image_id"].tolist() == ["Y", "Z", "X"] and shown["unregistered"].tolist() == [True, False, False]
    assert shown["case"].tolist() == ["case_0004", "case_0000", "case_0000"]
    assert shown["best_comir_run"].tolist() == ["sift on comir (A_to_B)"] * 3
    assert shown["b_signal_coverage"].between(0, 1).all() and shown["comir_correlation"].abs().le(1).all()
    width, height = png_size(path)
    assert width / height == pytest.approx(CORES_FIGURE_WIDTH_IN / (3 * CORES_ROW_HEIGHT_IN + CORES_HEADER_IN),
                                           rel=0.01)  # fmt: skip
    # Only the worst cores when there are many: the figure has one row less.
    fewer = plot_cores(table, examples, image_dirs, comir_dirs, tmp_path / "two.png", max_rows=2)
    assert fewer["image_id"].tolist() == ["Y", "Z"]
    assert png_size(tmp_path / "two.png")[1] < height

"""Tests of comir.evaluate: statistics, tables and figures (docs/method.md, section 8)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from comir.evaluate import (
    RESULT_COLUMNS,
    clopper_pearson,
    ecdf,
    load_results,
    plot_ecdf,
    plot_error_vs_displacement,
    plot_success_bars,
    rank_biserial,
    success_counts,
    success_table,
    to_markdown,
    variant_table,
    wilcoxon_paired,
    wilcoxon_table,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- helpers


def make_results(rows: list[dict]) -> pd.DataFrame:
    """A results frame with every required column; ``rows`` give the varying ones."""
    defaults = {
        "image_id": "img",
        "stratum": "small",
        "width": 1000.0,
        "height": 1000.0,
        "initial_displacement_px": 150.0,
        "reference_modality": "A",
        "floating_modality": "B",
        "status": "ok",
        "metric": "none",
        "seconds": 1.0,
    }
    matrix = {c: 0.0 for c in RESULT_COLUMNS if c.startswith(("est_", "true_"))}
    matrix.update(est_a11=1.0, est_a22=1.0, true_a11=1.0, true_a22=1.0)
    frame = pd.DataFrame([{**defaults, **matrix, **row} for row in rows])
    frame = frame[list(RESULT_COLUMNS)]
    frame["label"] = frame["method"] + " on " + frame["input"] + " (" + frame["direction"] + ")"
    return frame


def realistic_results(n_cases: int = 30, seed: int = 0) -> pd.DataFrame:
    """2 methods x 2 inputs x 2 directions x n_cases, with some failures."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        displacement = float(rng.uniform(10, 300))
        for method in ("SIFT", "MI"):
            for input_ in ("comir", "original"):
                for direction in ("A_to_B", "B_to_A"):
                    ok = bool(rng.random() < 0.8)
                    error = float(rng.lognormal(1.5, 1.2)) if ok else displacement
                    rows.append(
                        {
                            "case": f"case{case:03d}",
                            "width": 834.0,
                            "height": 834.0,
                            "initial_displacement_px": displacement,
                            "method": method,
                            "input": input_,
                            "direction": direction,
                            "status": "ok" if ok else "failed",
                            "seconds": float(rng.uniform(0.1, 5.0)),
                            "error_px": error,
                        }
                    )
    return make_results(rows)


def naive_rank_biserial(d) -> float:
    d = [float(v) for v in d if v != 0]
    magnitudes = [abs(v) for v in d]
    ranks = []
    for m in magnitudes:
        below = sum(1 for other in magnitudes if other < m)
        equal = sum(1 for other in magnitudes if other == m)
        ranks.append(below + (equal + 1) / 2)
    positive = sum(r for r, v in zip(ranks, d) if v > 0)
    negative = sum(r for r, v in zip(ranks, d) if v < 0)
    return (positive - negative) / sum(ranks)


# --------------------------------------------------------------------------- stats


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_clopper_pearson_matches_statsmodels(alpha):
    for n in (1, 2, 3, 7, 10, 30, 44, 134):
        k = np.arange(n + 1)
        low, high = clopper_pearson(k, np.full_like(k, n), alpha)
        ref_low, ref_high = proportion_confint(k, n, alpha=alpha, method="beta")
        np.testing.assert_allclose(low, np.nan_to_num(ref_low, nan=0.0), atol=1e-12)
        np.testing.assert_allclose(high, np.nan_to_num(ref_high, nan=1.0), atol=1e-12)
        assert low[0] == 0.0 and high[-1] == 1.0
        assert np.all(low <= k / n) and np.all(high >= k / n)


def test_clopper_pearson_scalar_and_errors():
    low, high = clopper_pearson(75, 134)
    assert isinstance(low, float) and isinstance(high, float)
    ref = proportion_confint(75, 134, method="beta")
    assert low == pytest.approx(ref[0]) and high == pytest.approx(ref[1])
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)
    with pytest.raises(ValueError):
        clopper_pearson(-1, 10)
    with pytest.raises(ValueError):
        clopper_pearson(1, 10, alpha=1.5)


def test_success_counts_strict_boundary():
    width = 1000.0
    # exactly 1 % and 5 % of the width are NOT successes
    errors = np.array([9.999, 10.0, 10.001, 49.999, 50.0, 50.001, np.nan])
    counts = success_counts(errors, width, fractions=(0.01, 0.05))
    assert counts == {0.01: 1, 0.05: 4}
    # 834 px: 5 % is 41.7 px
    assert success_counts([41.7, 41.69], 834, fractions=(0.05,)) == {0.05: 1}
    # per-case widths
    assert success_counts([5.0, 5.0], [400.0, 600.0], fractions=(0.01,)) == {0.01: 1}


def test_wilcoxon_paired_matches_scipy_on_clipped_data():
    rng = np.random.default_rng(1)
    x = rng.lognormal(2.5, 1.5, 60)
    y = rng.lognormal(2.0, 1.5, 60)
    x[:5] = [150.0, 300.0, 101.0, 500.0, 2.0]
    y[:5] = [120.0, 900.0, 3.0, 250.0, 700.0]
    clip = 100.0
    result = wilcoxon_paired(x, y, clip)
    xc, yc = np.minimum(x, clip), np.minimum(y, clip)
    reference = scipy.stats.wilcoxon(xc, yc, zero_method="wilcox")
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    unclipped = scipy.stats.wilcoxon(x, y, zero_method="wilcox")
    assert result.statistic != pytest.approx(unclipped.statistic)  # clipping mattered
    d = xc - yc
    assert d[0] == 0 and d[3] == 0  # 150 vs 120 and 500 vs 250 both become 100 vs 100
    assert result.n == np.count_nonzero(d) < 60
    assert result.n_pairs == 60
    assert result.median_difference == pytest.approx(np.median(d))
    assert result.rank_biserial_r == pytest.approx(naive_rank_biserial(d))


def test_rank_biserial_small_example_and_extremes():
    d = np.array([3.0, -1.0, 2.0, 0.0, -2.0, 5.0, 3.0, -0.5])
    # |d| nonzero: 3,1,2,2,5,3,0.5 -> ranks 5.5,2,3.5,3.5,7,5.5,1 (total 28)
    # R+ = 5.5+3.5+7+5.5 = 21.5 ; R- = 2+3.5+1 = 6.5 ; r = 15/28
    assert rank_biserial(d) == pytest.approx(15 / 28)
    assert rank_biserial(d) == pytest.approx(naive_rank_biserial(d))
    x = np.array([5.0, 8.0, 2.5, 40.0, 7.0])
    y = np.array([1.0, 2.0, 2.5, 3.0, 6.5])
    assert wilcoxon_paired(x, y).rank_biserial_r == pytest.approx(1.0)
    assert wilcoxon_paired(y, x).rank_biserial_r == pytest.approx(-1.0)


def test_rank_biserial_sign_convention():
    rng = np.random.default_rng(2)
    better = rng.uniform(0, 10, 40)
    worse = better + rng.uniform(-2, 20, 40)
    # positive r means the FIRST argument has larger errors
    forward = wilcoxon_paired(worse, better, clip=100.0)
    backward = wilcoxon_paired(better, worse, clip=100.0)
    assert forward.rank_biserial_r > 0.5 and forward.median_difference > 0
    assert backward.rank_biserial_r == pytest.approx(-forward.rank_biserial_r)
    assert backward.p_value == pytest.approx(forward.p_value)
    assert forward.r == forward.rank_biserial_r


def test_wilcoxon_paired_all_zero_differences():
    x = np.array([1.0, 2.0, 150.0, 400.0])
    y = np.array([1.0, 2.0, 120.0, 900.0])  # equal after clipping at 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # handled up front, not left to scipy
        result = wilcoxon_paired(x, y, clip=100.0)
    assert result.p_value == 1.0 and result.rank_biserial_r == 0.0 and result.n == 0
    assert result.median_difference == 0.0
    with pytest.raises(ValueError):
        wilcoxon_paired([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        wilcoxon_paired([1.0, np.nan], [1.0, 2.0])


def test_ecdf():
    values, fraction = ecdf([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(values, [1.0, 2.0, 2.0, 3.0])
    np.testing.assert_allclose(fraction, [0.25, 0.5, 0.75, 1.0])
    values, fraction = ecdf([3.0, np.nan, 1.0, 2.0])  # NaN counts as never reached
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(fraction, [0.25, 0.5, 0.75])


# --------------------------------------------------------------------------- tables


def known_results() -> pd.DataFrame:
    rows = []
    # group 1: sift on comir (B_to_A), width 1000: 1 % = 10 px, 5 % = 50, failure > 120
    errors = [1.0, 5.0, 9.99, 10.0, 20.0, 49.9, 50.0, 80.0, 121.0, 200.0]
    for i, error in enumerate(errors):
        rows.append(dict(case=f"c{i}", method="sift", input="comir", direction="B_to_A",
                         error_px=error, seconds=float(i + 1),
                         status="failed" if error == 80.0 else "ok"))  # fmt: skip
    # group 2: MI on original (B_to_A): nothing succeeds, one failed status
    for i in range(10):
        rows.append(dict(case=f"c{i}", method="mi", input="original", direction="B_to_A",
                         error_px=100.0, seconds=10.0,
                         status="failed" if i == 0 else "ok"))  # fmt: skip
    # group 3: same method and input as group 1, other direction: 4 cases, all < 1 %
    for i in range(4):
        rows.append(dict(case=f"c{i}", method="sift", input="comir", direction="A_to_B",
                         error_px=float(i), seconds=2.0))  # fmt: skip
    return make_results(rows)


def test_success_table_known_counts():
    table = success_table(known_results())
    assert list(table.columns) == [
        "method", "input", "direction", "n",
        "success_1pct", "success_1pct_low", "success_1pct_high",
        "success_5pct", "success_5pct_low", "success_5pct_high",
        "failures", "median_error_px", "median_seconds",
    ]  # fmt: skip
    assert len(table) == 3  # one row per method x input x direction
    # sorted by descending 5 % success
    assert table["success_5pct"].tolist() == [6, 4, 0]
    first = table.iloc[0]
    assert (first["method"], first["input"], first["direction"]) == ("sift", "comir", "B_to_A")
    assert first["n"] == 10
    assert first["success_1pct"] == 3  # 1, 5, 9.99 (10.0 is not < 10)
    assert first["success_5pct"] == 6  # ... 10, 20, 49.9 (50.0 is not < 50)
    assert first["failures"] == 3  # status failed (80) + errors 121 and 200 > 120
    assert first["median_error_px"] == pytest.approx(34.95)
    assert first["median_seconds"] == pytest.approx(5.5)
    for column, k in (("success_1pct", 3), ("success_5pct", 6)):
        low, high = clopper_pearson(k, 10)
        assert first[f"{column}_low"] == round(low, 3)
        assert first[f"{column}_high"] == round(high, 3)
    second = table.iloc[1]
    assert (second["direction"], second["n"], second["success_1pct"]) == ("A_to_B", 4, 4)
    assert second["success_1pct_high"] == 1.0 and second["failures"] == 0
    last = table.iloc[2]
    assert last["method"] == "mi" and last["success_1pct"] == 0 and last["success_5pct"] == 0
    assert last["success_5pct_low"] == 0.0
    assert last["failures"] == 1  # 100 px < 120 px: only the failed status counts
    assert last["median_error_px"] == 100.0 and last["median_seconds"] == 10.0


def test_success_table_fraction_names_and_alpha():
    table = success_table(known_results(), fractions=(0.02, 0.025), alpha=0.1)
    for column in ("success_2pct", "success_2pct_low", "success_2p5pct_high"):
        assert column in table.columns
    row = table[(table["method"] == "sift") & (table["direction"] == "B_to_A")].iloc[0]
    assert row["success_2pct"] == 4  # < 20 px: 1, 5, 9.99, 10 (20.0 is not)
    assert row["success_2p5pct"] == 5  # < 25 px: ... and 20
    assert row["success_2pct_low"] == round(clopper_pearson(4, 10, 0.1)[0], 3)


def test_wilcoxon_table_pairs_and_join():
    rng = np.random.default_rng(3)
    rows = []
    specs = [
        ("sift", "comir", "B_to_A", [f"c{i}" for i in range(20)]),
        ("mi", "original", "B_to_A", [f"c{i}" for i in range(5, 20)] + ["only_mi"]),
        ("sift", "comir", "A_to_B", [f"c{i}" for i in range(20)]),
        ("mi", "comir", "A_to_B", [f"c{i}" for i in range(20)]),
        ("amd", "comir", "A_to_B", [f"c{i}" for i in range(12)]),
    ]
    for method, input_, direction, cases in specs:
        for case in cases:
            error = float(rng.lognormal(2.5, 1.5))
            rows.append(dict(case=case, method=method, input=input_, direction=direction,
                             error_px=error))  # fmt: skip
    results = make_results(rows)
    table = wilcoxon_table(results)
    assert list(table.columns) == [
        "label_x", "label_y", "n_cases", "n_nonzero", "statistic", "p_value",
        "rank_biserial_r", "median_difference_px", "p_holm",
    ]  # fmt: skip
    # 1 pair in B_to_A + 3 pairs in A_to_B; never across directions
    assert len(table) == 4
    for _, row in table.iterrows():
        assert row["label_x"].endswith(row["label_y"][-8:])
        assert row["label_x"] != row["label_y"]
    b = table[table["label_x"].str.contains("B_to_A")].iloc[0]
    assert b["n_cases"] == 15  # c5..c19; "only_mi" and c0..c4 are excluded
    # values equal a direct computation on the joined, clipped errors
    part = results[results["direction"] == "B_to_A"]
    wide = part.pivot(index="case", columns="label", values="error_px").dropna()
    expected = wilcoxon_paired(wide[b["label_x"]], wide[b["label_y"]], clip=0.12 * 1000.0)
    assert b["p_value"] == pytest.approx(expected.p_value)
    assert b["statistic"] == pytest.approx(expected.statistic)
    assert b["rank_biserial_r"] == pytest.approx(expected.rank_biserial_r)
    assert b["median_difference_px"] == pytest.approx(expected.median_difference)
    amd = table[table["label_x"].str.startswith("amd")]
    assert set(amd["n_cases"]) == {12}
    assert (table["p_holm"] >= table["p_value"] - 1e-15).all()
    assert (table["p_holm"] <= 1.0).all()
    assert table["p_holm"].max() > table["p_value"].min()
    # Holm step-down by hand: sorted p times (m - i), running maximum, capped at 1
    p = table["p_value"].to_numpy()
    order = np.argsort(p)
    m = len(p)
    adjusted = np.minimum(np.maximum.accumulate(p[order] * (m - np.arange(m))), 1.0)
    holm = np.empty(m)
    holm[order] = adjusted
    np.testing.assert_allclose(table["p_holm"].to_numpy(), holm)


def test_wilcoxon_table_detects_differences():
    rng = np.random.default_rng(4)
    rows = []
    for case in range(40):
        good = float(rng.uniform(0.5, 5.0))
        rows.append(dict(case=f"c{case}", method="good", input="comir", direction="B_to_A",
                         error_px=good))  # fmt: skip
        rows.append(dict(case=f"c{case}", method="bad", input="comir", direction="B_to_A",
                         error_px=good + float(rng.uniform(1.0, 400.0))))  # fmt: skip
    table = wilcoxon_table(make_results(rows))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["label_x"] == "bad on comir (B_to_A)"  # alphabetical order
    assert row["rank_biserial_r"] == pytest.approx(1.0)  # x = bad has larger errors
    assert row["p_value"] < 1e-6 and row["p_holm"] == pytest.approx(row["p_value"])


# --------------------------------------------------------------------------- loading


def test_load_results_roundtrip_and_label(tmp_path):
    frame = realistic_results(n_cases=5).drop(columns="label")
    frame["case"] = [f"00{i % 5}" for i in range(len(frame))]
    a = frame[frame["direction"] == "A_to_B"]
    b = frame[frame["direction"] == "B_to_A"]
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    loaded = load_results([tmp_path / "a.csv", str(tmp_path / "b.csv")])
    assert len(loaded) == len(frame)
    assert loaded["case"].iloc[0] == "000"  # case ids stay strings
    assert (loaded["label"] == loaded["method"] + " on " + loaded["input"]
            + " (" + loaded["direction"] + ")").all()  # fmt: skip
    assert loaded["label"].iloc[0] == "SIFT on comir (A_to_B)"


def test_load_results_missing_column_names_file_and_column(tmp_path):
    frame = realistic_results(n_cases=2).drop(columns=["label", "error_px", "seconds"])
    path = tmp_path / "broken_results.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError) as info:
        load_results([path])
    message = str(info.value)
    assert "broken_results.csv" in message
    assert "error_px" in message and "seconds" in message
    assert "method" not in message.split(":")[-1]


def test_load_results_other_errors(tmp_path):
    frame = realistic_results(n_cases=2).drop(columns="label")
    path = tmp_path / "r.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="duplicate|repeat"):
        load_results([path, path])
    with pytest.raises(ValueError, match="missing.csv"):
        load_results([tmp_path / "missing.csv"])
    with pytest.raises(ValueError):
        load_results([])
    bad = frame.copy()
    bad["error_px"] = bad["error_px"].astype(object)
    bad.loc[0, "error_px"] = "oops"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="bad.csv.*error_px"):
        load_results([tmp_path / "bad.csv"])


# --------------------------------------------------------------------------- markdown


def test_to_markdown_success_table():
    table = success_table(known_results())
    text = to_markdown(table)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(table)
    assert lines[0].startswith("| method | input | direction | n | success_1pct |")
    assert "success_1pct_low" not in lines[0]
    assert set(lines[1].replace("|", "").split()) <= {"---", "---:"}
    low, high = clopper_pearson(3, 10)
    assert f"| 3 [{low:.3f}, {high:.3f}] |" in lines[2]
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_to_markdown_generic_frame():
    frame = pd.DataFrame({"name": ["a|b", "c"], "count": [1, 20], "p": [1.2345e-7, 0.5], "x": [np.nan, 1234.56]})
    lines = to_markdown(frame).strip().splitlines()
    assert lines[0] == "| name | count | p | x |"
    assert lines[1] == "| --- | ---: | ---: | ---: |"
    assert lines[2] == "| a\\|b | 1 | 1.23e-07 | n/a |"
    assert lines[3] == "| c | 20 | 0.5 | 1235 |"
    assert len(lines) == 4


# --------------------------------------------------------------------------- figures


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000
    leftovers = [p for p in path.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers  # atomic writer left no temporary file


@pytest.fixture(scope="module")
def realistic():
    return realistic_results(n_cases=30)


def test_plot_ecdf(tmp_path, realistic):
    path = tmp_path / "figs" / "ecdf.png"
    plot_ecdf(realistic, path)
    assert_png(path)
    plain = tmp_path / "ecdf_plain.png"
    plot_ecdf(realistic, plain, width_fraction_axis=False)
    assert_png(plain)


def test_plot_error_vs_displacement(tmp_path, realistic):
    path = tmp_path / "scatter.png"
    plot_error_vs_displacement(realistic, path)
    assert_png(path)


def test_plot_success_bars(tmp_path, realistic):
    path = tmp_path / "bars.png"
    plot_success_bars(success_table(realistic), path)
    assert_png(path)


def test_figures_reject_empty_input(tmp_path, realistic):
    with pytest.raises(ValueError):
        plot_ecdf(realistic.iloc[:0], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_a_reported_failure_is_never_a_success():
    """A failed registration returns the identity; a case that started close must not count."""
    rows = [
        dict(case="c0", method="sift", input="comir", direction="B_to_A", error_px=3.0, status="failed"),
        dict(case="c1", method="sift", input="comir", direction="B_to_A", error_px=3.0, status="ok"),
    ]
    table = success_table(make_results(rows))
    assert table.loc[0, "success_1pct"] == 1 and table.loc[0, "success_5pct"] == 1
    assert table.loc[0, "failures"] == 1


# --------------------------------------------------------------------------- failures in every statistic and figure

#: Width 1000 px and failure_fraction 0.12: the failure bound is 120 px (60 px at width 500).
BOUND = 0.12 * 1000.0  # the same product the code computes, so "exactly at the bound" is exact

#: (case, status, error_px, width) -> failed?, scored error (hand-computed).
FAILURE_ROWS = [
    ("c0", "failed", 3.0, 1000.0, True, 120.0),  # reported failure; identity error is small
    ("c1", "ok", BOUND, 1000.0, True, 120.0),  # exactly at the bound: a failure (>=)
    ("c2", "ok", 130.0, 1000.0, True, 120.0),  # above the bound
    ("c3", "ok", 5.0, 1000.0, False, 5.0),
    ("c4", "ok", 119.9, 1000.0, False, 119.9),  # just below the bound
    ("c5", "ok", np.nan, 1000.0, True, 120.0),  # missing error
    ("c6", "failed", 2.0, 500.0, True, 60.0),  # the bound follows the case's width
    ("c7", "ok", 59.0, 500.0, False, 59.0),
    ("c8", "ok", 61.0, 500.0, True, 60.0),
    ("c9", "timeout", 4.0, 1000.0, True, 120.0),  # any status other than ok is reported failure
]


def failure_results() -> pd.DataFrame:
    """One method x input x direction over the cases of :data:`FAILURE_ROWS`."""
    rows = [
        dict(case=case, status=status, error_px=error, width=width, height=width, initial_displacement_px=error + 1.0,
             method="sift", input="comir", direction="B_to_A")
        for case, status, error, width, _, _ in FAILURE_ROWS
    ]  # fmt: skip
    return make_results(rows)


def test_failure_mask_and_scored_errors_hand_computed():
    from comir.evaluate import failure_mask, scored_errors

    results = failure_results()
    failed = failure_mask(results, failure_fraction=0.12)
    scored = scored_errors(results, failure_fraction=0.12)
    assert failed.tolist() == [row[4] for row in FAILURE_ROWS]
    np.testing.assert_allclose(scored.to_numpy(), [row[5] for row in FAILURE_ROWS], rtol=1e-6)
    assert failed.index.equals(results.index) and scored.index.equals(results.index)
    # A larger bound (200 px, 100 px at width 500) rescues the ok rows at 120, 130 and 61 px only.
    loose = failure_mask(results, failure_fraction=0.2)
    assert results.loc[loose, "case"].tolist() == ["c0", "c5", "c6", "c9"]
    np.testing.assert_allclose(
        scored_errors(results, 0.2).to_numpy(), [200, 120, 130, 5, 119.9, 200, 100, 59, 61, 200], rtol=1e-6
    )
    with pytest.raises(ValueError, match="failure_fraction"):
        failure_mask(results, failure_fraction=0.0)


def test_success_table_counts_failures_at_the_bound_and_medians_scored_errors():
    table = success_table(failure_results(), fractions=(0.01, 0.05, 0.15), failure_fraction=0.12)
    row = table.iloc[0]
    assert row["n"] == 10
    assert row["failures"] == 7  # c0 c1 c2 c5 c6 c8 c9; c1 sits exactly at the bound
    # scored: 120 120 120 5 119.9 120 60 59 60 120 -> sorted middle pair 119.9 and 120
    assert row["median_error_px"] == pytest.approx(119.95, rel=1e-6)
    assert row["success_1pct"] == 1 and row["success_5pct"] == 1  # only c3 (5 px)
    # 15 % lies beyond the failure bound: c1 (120 < 150), c2 (130) and c8 (61 < 75) fail, so are no successes.
    assert row["success_15pct"] == 3  # c3, c4 and c7


def test_wilcoxon_table_scores_failures_at_the_bound():
    # (case, width, method a: status, error; method b: status, error)
    cases = [
        ("c0", 1000.0, "failed", 3.0, "ok", 10.0),
        ("c1", 1000.0, "ok", BOUND, "ok", 4.0),
        ("c2", 1000.0, "ok", 130.0, "ok", 8.0),
        ("c3", 1000.0, "ok", 5.0, "failed", 3.0),
        ("c4", 1000.0, "ok", 7.0, "ok", 9.0),
        ("c5", 1000.0, "ok", np.nan, "ok", 11.0),
        ("c6", 500.0, "ok", 2.0, "failed", 1.5),
        ("c7", 1000.0, "ok", 60.0, "ok", 50.0),
        ("c8", 1000.0, "ok", 30.0, "ok", 200.0),
        ("c9", 1000.0, "ok", 15.0, "ok", 14.0),
        ("c10", 1000.0, "failed", 3.0, "ok", 500.0),  # two failures: a tie at the bound
    ]
    rows = [
        dict(case=case, width=width, method=method, input="comir", direction="B_to_A", status=status, error_px=error)
        for case, width, *pairs in cases
        for method, status, error in (("a", *pairs[:2]), ("b", *pairs[2:]))
    ]  # fmt: skip
    results = make_results(rows)
    a = np.array([120, 120, 120, 5, 7, 120, 2, 60, 30, 15, 120], dtype=float)  # scored by hand
    b = np.array([10, 4, 8, 120, 9, 11, 60, 50, 120, 14, 120], dtype=float)
    reference = scipy.stats.wilcoxon(a, b, zero_method="wilcox")
    table = wilcoxon_table(results, 0.12)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["label_x"], row["label_y"]) == ("a on comir (B_to_A)", "b on comir (B_to_A)")
    assert row["n_cases"] == 11  # the missing error of c5 takes part, as a failure
    assert row["n_nonzero"] == 10  # c10 ties
    assert row["statistic"] == pytest.approx(reference.statistic, rel=1e-6)
    assert row["p_value"] == pytest.approx(reference.pvalue, rel=1e-6)
    assert row["rank_biserial_r"] == pytest.approx(naive_rank_biserial(a - b), rel=1e-6)
    assert row["median_difference_px"] == pytest.approx(np.median(a - b), rel=1e-6)

    # The variants of one method compared the same way: 'cosine' (x, alphabetically first) takes a's errors.
    variants = results.assign(source=np.where(results["method"] == "a", "cosine", "mse"), method="sift")
    tests = variant_table(variants, 0.12)
    assert len(tests) == 1
    test = tests.iloc[0]
    assert (test["method"], test["variant_x"], test["variant_y"]) == ("sift", "cosine", "mse")
    assert (test["n_cases"], test["n_nonzero"]) == (11, 10)
    assert test["statistic"] == pytest.approx(reference.statistic, rel=1e-6)
    assert test["p_value"] == pytest.approx(reference.pvalue, rel=1e-6)
    assert test["p_holm"] == pytest.approx(reference.pvalue, rel=1e-6)
    assert test["rank_biserial_r"] == pytest.approx(naive_rank_biserial(a - b), rel=1e-6)


def test_plot_variants_with_failures(tmp_path):
    from comir.evaluate import plot_variants

    results = variant_results()
    results.loc[results.index[:4], "status"] = "failed"  # small identity errors, drawn at the bound
    out = tmp_path / "variants_failed.png"
    plot_variants(results, variant_table(results, 0.12), out, failure_fraction=0.12)
    assert_png(out)


def step_value(xs: np.ndarray, ys: np.ndarray, x) -> np.ndarray:
    """Value at ``x`` of the step curve drawn with ``where="post"``."""
    return ys[np.searchsorted(xs, np.asarray(x, dtype=float), side="right") - 1]


def test_ecdf_curve_puts_failures_beyond_the_axis(tmp_path):
    from comir.evaluate import ecdf_curve

    results = failure_results().iloc[:5]  # c0 failed at 3 px, c1 at the bound, c2 above, c3 5 px, c4 119.9 px
    xs, ys = ecdf_curve(results, failure_fraction=0.12, x_end=1200.0)
    assert np.all(np.diff(xs) >= 0)
    x = np.array([0.5, 3.0, 4.9, 5.0, 100.0, 119.89, 119.9, 120.0, 130.0, 1200.0])
    expected = np.array([0, 0, 0, 0.2, 0.2, 0.2, 0.4, 0.4, 0.4, 0.4])
    np.testing.assert_allclose(step_value(xs, ys, x), expected, atol=1e-12)
    assert xs[-1] == 1200.0 and ys[-1] == pytest.approx(0.4)  # ends at the proportion of non-failures
    plot_ecdf(failure_results(), tmp_path / "ecdf_failed.png", failure_fraction=0.12)
    assert_png(tmp_path / "ecdf_failed.png")


def test_error_vs_displacement_points_put_failures_at_the_bound(tmp_path):
    from comir.evaluate import error_vs_displacement_points
    from comir.evaluate.figures import KIND_OK, KIND_REPORTED, KIND_TOO_LARGE

    results = failure_results()
    points = error_vs_displacement_points(results, failure_fraction=0.12)
    np.testing.assert_allclose(points["error_px"].to_numpy(), [row[5] for row in FAILURE_ROWS], rtol=1e-6)
    np.testing.assert_allclose(points["displacement_px"], results["initial_displacement_px"])
    R, L, K = KIND_REPORTED, KIND_TOO_LARGE, KIND_OK
    assert points["kind"].tolist() == [R, L, L, K, K, L, R, K, L, R]
    path = tmp_path / "scatter_failed.png"
    plot_error_vs_displacement(results, path, failure_fraction=0.12)
    assert_png(path)


# --------------------------------------------------------------------------- variants and timing


def variant_results(n_cases: int = 25, seed: int = 3) -> pd.DataFrame:
    """SIFT and MI on the CoMIRs of two variants; 'cosine' errors are 3x 'mse' errors plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for method in ("mi", "sift"):
        base = rng.lognormal(1.0, 0.5, n_cases)
        for source, factor in (("mse", 1.0), ("cosine", 3.0)):
            errors = base * factor + rng.uniform(0, 0.1, n_cases)
            rows += [
                {
                    "case": f"c{i:03d}",
                    "method": method,
                    "input": "comir",
                    "direction": "B_to_A",
                    "error_px": e,
                    "source": source,
                }
                for i, e in enumerate(errors)
            ]
    frame = make_results([{k: v for k, v in r.items() if k != "source"} for r in rows])
    frame["source"] = [r["source"] for r in rows]
    return frame


def test_variant_table_compares_variants_within_each_method_only():
    from comir.evaluate import variant_table

    results = variant_results()
    table = variant_table(results, failure_fraction=0.12)
    assert list(table[["method", "variant_x", "variant_y"]].itertuples(index=False, name=None)) == [
        ("mi", "cosine", "mse"),
        ("sift", "cosine", "mse"),
    ]
    assert (table["n_cases"] == 25).all()
    # Every cosine error is larger: the rank-biserial r is +1 and the exact test is decisive.
    assert np.allclose(table["rank_biserial_r"], 1.0)
    assert (table["p_value"] < 1e-6).all() and (table["p_holm"] >= table["p_value"]).all()
    mi = results[results["method"] == "mi"]
    expected = scipy.stats.wilcoxon(*(mi[mi["source"] == s]["error_px"].to_numpy() for s in ("cosine", "mse"))).pvalue
    assert table["p_value"].iloc[0] == pytest.approx(expected)


def test_variant_table_against_a_reference_tests_only_the_pairs_with_it():
    from comir.evaluate import variant_table

    two = variant_results()
    third = two[two["source"] == "mse"].assign(source="base", error_px=lambda f: f["error_px"] * 0.5)
    results = pd.concat([two, third], ignore_index=True)
    every = variant_table(results, failure_fraction=0.12)
    assert len(every) == 6  # 3 pairs x 2 methods
    table = variant_table(results, failure_fraction=0.12, reference="base")
    assert sorted(table[["method", "variant_x", "variant_y"]].itertuples(index=False, name=None)) == [
        ("mi", "cosine", "base"),
        ("mi", "mse", "base"),
        ("sift", "cosine", "base"),
        ("sift", "mse", "base"),
    ]
    # The same tests as among all pairs (oriented with the reference as y), Holm's adjustment over 4.
    for row in table.itertuples():
        (match,) = every[
            (every["method"] == row.method) & (every["variant_x"] == "base") & (every["variant_y"] == row.variant_x)
        ].itertuples()
        assert row.p_value == pytest.approx(match.p_value)
        assert row.rank_biserial_r == pytest.approx(-match.rank_biserial_r)
        assert row.median_difference_px == pytest.approx(-match.median_difference_px)
    assert (table["rank_biserial_r"] > 0).all()  # every variant has larger errors than the base
    assert table["p_holm"].to_numpy() == pytest.approx(
        np.minimum(1, multipletests(table["p_value"].to_numpy(), method="holm")[1])
    )


def test_load_results_keeps_variants_apart_but_rejects_true_duplicates(tmp_path):
    results = variant_results(n_cases=3)
    path = tmp_path / "r.csv"
    results.drop(columns="label").to_csv(path, index=False)
    assert len(load_results([path])) == len(results)  # same case/method/input/direction, other source
    with pytest.raises(ValueError, match="repeat a \\(case, method, input, direction, source\\)"):
        load_results([path, path])


def test_plot_variants_writes_a_png(tmp_path):
    from comir.evaluate import plot_variants, variant_table

    results = variant_results()
    out = tmp_path / "variants.png"
    plot_variants(results, variant_table(results), out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE and out.stat().st_size > 5000
    with pytest.raises(ValueError, match="needs two variants"):
        plot_variants(results[results["source"] == "mse"], variant_table(results), out)


def write_benchmark(path, seconds, rss, cpu):
    path.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        f"{seconds}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n"
    )
    return path


def test_timing_table_reads_benchmarks_per_stage_and_pair(tmp_path):
    from comir.evaluate.timing import timing_table

    train = write_benchmark(tmp_path / "train.tsv", 120.0, 900.5, 230.0)
    infer = write_benchmark(tmp_path / "infer.tsv", 10.0, 400.0, 18.0)
    regs = [write_benchmark(tmp_path / f"r{i}.tsv", s, 100.0, s) for i, s in enumerate([4.0, 50.0])]
    jobs = [("mse", "sift", "B_to_A"), ("original", "mi", "B_to_A")]
    table = timing_table({"": train}, {"": infer}, regs, jobs, n_pairs=20)
    assert list(table["stage"]) == ["training", "inference", "registration", "registration"]
    assert np.isnan(table["per_pair_s"].iloc[0])  # training does not scale with the test set
    assert table["per_pair_s"].iloc[1:].tolist() == [0.5, 0.2, 2.5]
    assert table.loc[3, ["method", "source"]].tolist() == ["mi", "original"]
    assert table["max_rss_mb"].iloc[0] == 900.5
    broken = tmp_path / "broken.tsv"
    broken.write_text("nothing\n1\n")
    with pytest.raises(ValueError, match="broken.tsv lacks s, max_rss, cpu_time"):
        timing_table({"": broken}, {"": infer}, regs, jobs, n_pairs=20)
    with pytest.raises(ValueError, match="2 registration benchmarks for 1 jobs"):
        timing_table({"": train}, {"": infer}, regs, jobs[:1], n_pairs=20)
    imported = timing_table({}, {"": infer}, regs, jobs, n_pairs=20)  # a model file trained elsewhere
    assert list(imported["stage"]) == ["inference", "registration", "registration"]
    # An ensemble: each member's training and inference, labelled by its variant.
    ensemble = timing_table({"a": train, "b": train}, {"a": infer, "b": infer}, regs, jobs, n_pairs=20)
    assert list(ensemble["stage"][:4]) == ["training", "training", "inference", "inference"]
    assert list(ensemble["source"][:4]) == ["a", "b", "a", "b"]


def test_pooled_results_keep_the_datasets_cases_apart():
    from comir.evaluate.tables import pool_results

    fold = pd.DataFrame({"case": ["case_0000", "case_0001"], "error_px": [1.0, 2.0]})
    pooled = pool_results({"f1": fold, "f2": fold.assign(error_px=[3.0, 4.0])})
    assert list(pooled["case"]) == ["f1/case_0000", "f1/case_0001", "f2/case_0000", "f2/case_0001"]
    assert list(pooled["fold"]) == ["f1", "f1", "f2", "f2"] and list(pooled["error_px"]) == [1.0, 2.0, 3.0, 4.0]

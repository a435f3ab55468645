"""Calibrated confidence: comir.register.confidence, comir.calibration, comir.evaluate.confidence."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import tifffile

from comir import geometry
from comir.calibration import (
    FEATURES,
    NO_EVIDENCE,
    Calibration,
    _fit_logistic,
    calibration_data,
    fit_calibration,
    load_calibration,
    reliability_table,
    threshold_for,
)
from comir.evaluate.confidence import acceptance_markdown, acceptance_table
from comir.geometry import IDENTITY, MATRIX_KEYS
from comir.io import InputError
from comir.register import make_method
from comir.register.cases import Judge, register_cases, result_columns, results_evidence, unrelated_partner
from comir.register.confidence import evidence
from helpers.registration_cases import crop_pair, texture

EVIDENCE = [(0.9, 12.0, 0.9), (0.8, 9.0, 0.8), (0.3, 2.0, 0.5), (0.2, 1.0, 0.4), (0.85, 3.0, 0.3), (0.25, 8.0, 0.9)]
ROWS = [{"quality": q, "prominence": p, "overlap": o} for q, p, o in EVIDENCE]
CORRECT = [True, True, False, False, True, False]


def test_the_true_transform_has_strong_evidence_and_a_wrong_one_none():
    reference, floating, truth = crop_pair(texture(), texture(), 20, (6, -4))
    right = evidence(reference, floating, truth)
    wrong = evidence(reference, floating, IDENTITY)
    assert right["quality"] > 0.95 and right["prominence"] > 5 and 0.5 < right["overlap"] <= 1
    assert wrong["quality"] < 0.6 and wrong["prominence"] < right["prominence"] / 2
    other = evidence(reference, texture(seed=5)[:256, :256], truth)  # another image: nothing to register
    assert other["quality"] < 0.5
    assert evidence(reference, floating, truth, seed=3) == evidence(reference, floating, truth, seed=3)


def test_a_result_without_overlap_or_structure_has_no_evidence():
    reference, floating, _ = crop_pair(texture(), texture(), 0, (0, 0))
    far = IDENTITY.copy()
    far[0, 2] = 250.0  # 6 px of overlap, below min_overlap
    assert evidence(reference, floating, far) == NO_EVIDENCE
    assert evidence(np.zeros_like(reference), floating, IDENTITY) == NO_EVIDENCE


def test_the_logistic_fit_solves_its_penalised_score_equations():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3))
    y = (x @ [1.5, -1.0, 0.5] + 0.3 * rng.standard_normal(60) > 0).astype(float)
    ridge = 0.7
    w, b = _fit_logistic(x, y, ridge)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    # The optimum of sum(log-loss) + ridge/2 |w|^2 (bias unpenalised): its gradient vanishes.
    np.testing.assert_allclose(x.T @ (p - y) + ridge * w, 0, atol=1e-4)
    assert abs(np.sum(p - y)) < 1e-4


def test_threshold_for_bounds_the_false_accepts_and_sits_mid_gap():
    probability = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])
    correct = np.array([True, True, False, True, False, False, False, False])
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    threshold = threshold_for(probability, correct, 0.0)
    # Above the best-scoring wrong result (0.8), below the least right one above it (0.9), midway in log-odds.
    assert logit(threshold) == pytest.approx((logit(0.8) + logit(0.9)) / 2)
    loose = threshold_for(probability, correct, 0.2)  # one of five wrong may pass: 0.6 is the highest rejected
    assert logit(loose) == pytest.approx((logit(0.6) + logit(0.7)) / 2) and 0.6 < loose < 0.7
    assert threshold_for(probability, correct, 1.0) == 0.0
    assert threshold_for(probability, np.ones(8, bool), 0.05) == 0.0
    ties = threshold_for(np.array([0.5, 0.5, 0.5]), np.array([True, False, False]), 0.0)
    assert ties > 0.5  # a tie with a wrong result is not accepted
    only_wrong_above = threshold_for(np.array([0.9, 0.2]), np.array([False, True]), 0.0)
    assert 0.9 < only_wrong_above < 0.9 + 1e-12  # no right result above: just above the bound
    # The same calibration results are accepted as with the bound itself.
    for rate in (0.0, 0.2, 0.5):
        t = threshold_for(probability, correct, rate)
        bound = np.sort(probability[~correct])[::-1][int(math.floor(rate * 5))]
        np.testing.assert_array_equal(probability >= t, probability > bound)


def test_reliability_table_counts_and_rates_per_bin():
    table = reliability_table(np.array([0.05, 0.07, 0.55, 0.95, 1.0]), np.array([False, True, True, True, True]))
    assert len(table) == 10 and sum(row["count"] for row in table) == 5
    assert table[0]["count"] == 2 and table[0]["observed"] == 0.5 and table[0]["predicted"] == pytest.approx(0.06)
    assert table[9]["count"] == 2 and table[9]["observed"] == 1.0  # 1.0 falls into the last bin
    assert math.isnan(table[3]["observed"])


def test_a_calibration_ranks_by_evidence_and_keeps_its_false_accept_rate():
    calibration = fit_calibration(ROWS, CORRECT, ["true"] * 3 + ["unrelated"] * 3, 0.0, 0.05)
    probability = calibration.probability(ROWS)
    assert probability[0] > probability[2] and probability[1] > probability[3]
    accepted = probability >= calibration.threshold
    assert not (accepted & ~np.array(CORRECT)).any()  # false-accept rate 0 on its own data
    assert accepted[0]
    assert calibration.counts == {"correct": 3, "wrong": 1, "unrelated": 3}
    assert sum(row["count"] for row in calibration.reliability) == 6
    assert calibration.confidence(ROWS[0]) == pytest.approx(probability[0])


def test_degenerate_calibration_data_accept_all_or_nothing():
    kinds = ["true"] * 6
    never = fit_calibration(ROWS, [False] * 6, kinds)
    assert not any(never.accepts(p) for p in never.probability(ROWS))
    always = fit_calibration(ROWS, [True] * 6, kinds)
    assert all(always.accepts(p) for p in always.probability(ROWS))
    empty = fit_calibration([], [], [])
    assert not empty.accepts(empty.confidence(ROWS[0])) and empty.counts["correct"] == 0


def test_a_calibration_survives_its_file_and_rejects_another_feature_set(tmp_path):
    calibration = fit_calibration(ROWS, CORRECT, ["true"] * 6)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(calibration.to_dict()))
    loaded = load_calibration(path)
    np.testing.assert_allclose(loaded.probability(ROWS), calibration.probability(ROWS))
    assert loaded.threshold == calibration.threshold
    assert loaded.with_threshold(0.25).threshold == 0.25
    with pytest.raises(ValueError, match="probability in"):
        loaded.with_threshold(2.0)
    with pytest.raises(ValueError, match="features"):
        Calibration.from_dict({**calibration.to_dict(), "features": ["quality"]})


def test_calibration_data_labels_true_pairs_by_error_and_unrelated_pairs_wrong():
    true = pd.DataFrame({
        "case": ["c0", "c1", "c2"], "direction": "B_to_A", "status": ["ok", "ok", "failed"],
        "error_px": [1.0, 30.0, 0.5], "width": 100, **{f: [0.5, 0.4, 0.3] for f in FEATURES},
    })  # fmt: skip
    unrelated = true.assign(error_px=np.nan, status="ok")
    data = calibration_data(true, unrelated, 0.05)
    assert list(data["kind"]) == ["true", "true", "unrelated", "unrelated", "unrelated"]  # failed left out
    assert list(data["correct"]) == [True, False, False, False, False]
    assert calibration_data(true.iloc[:0], unrelated.iloc[:0], 0.05).empty


def _cases(ids, xs, angle=0.0, dx=0.0):
    """Cases of 100 px patches cut at ``xs`` (y 0) of images ``ids``.

    Each floating patch is rotated by ``angle`` about its centre and shifted by ``dx`` (its truth).
    """
    truth = dict(zip((f"true_{k}" for k in MATRIX_KEYS), geometry.rigid_matrix(
        math.radians(angle), dx, 0.0, center=(50.0, 50.0)).ravel()))  # fmt: skip
    return pd.DataFrame({"case": [f"c{i}" for i in range(len(ids))], "image_id": ids, "crop_x": xs, "crop_y": 0,
                         "width": 100, "height": 100, **truth})  # fmt: skip


def test_an_unrelated_partner_shows_another_place():
    cases = _cases(["a", "a", "b", "b"], [0, 10, 0, 10])
    assert unrelated_partner(cases, 0) == "c2"  # the other image, half the table away
    assert unrelated_partner(_cases(["a", "a"], [0, 50]), 0) is None  # overlapping crops of one image
    assert unrelated_partner(_cases(["a", "a"], [0, 100]), 0) == "c1"  # side by side: nothing shared
    # The floating patch shows its place as its truth maps it: shifted by 30 px it reaches back into c0's
    # patch; rotated by 45 deg its corners reach 21 px beyond its own crop.
    assert unrelated_partner(_cases(["a", "a"], [0, 100], dx=-30.0), 0) is None
    assert unrelated_partner(_cases(["a", "a"], [0, 115], angle=45.0), 0) is None
    assert unrelated_partner(_cases(["a", "a"], [0, 125], angle=45.0), 0) == "c1"
    deformed = _cases(["a", "a"], [0, 103]).assign(deformation_max_displacement_px=6.0)
    assert unrelated_partner(deformed, 0) is None  # within the deformation's reach
    assert unrelated_partner(_cases(["a", "a"], [-1, -1]), 0) is None  # places unknown (prebuilt)
    assert unrelated_partner(_cases(["a"], [0]), 0) is None


@pytest.fixture
def comir_cases(tmp_path):
    """Two cases of two 'images' with their CoMIR-like patches (one channel) and their truth."""
    rows = []
    for index, seed in enumerate((0, 7)):
        reference, floating, truth = crop_pair(texture(seed=seed), texture(seed=seed), 10 * (index + 1), (5, -3))
        for slot in "AB":
            tifffile.imwrite(tmp_path / f"c{index}_{slot}_ref.tif", reference)
            tifffile.imwrite(tmp_path / f"c{index}_{slot}_flo.tif", floating)
        rows.append({"case": f"c{index}", "image_id": f"img{seed}", "stratum": "all", "width": 256, "height": 256,
                     "initial_displacement_px": 10.0, "crop_x": 0, "crop_y": 0,
                     **{f"true_{k}": v for k, v in zip(MATRIX_KEYS, truth.ravel())}})  # fmt: skip
    return pd.DataFrame(rows), tmp_path


MODALITIES = {"A": {"name": "a", "channels": 1}, "B": {"name": "b", "channels": 1}}
# The FFT search over +-30 deg: the cases' rotations (10 and 20 deg) inside, a sixth of the search over all angles.
FFT = {"angle_range_deg": 30}


def test_registered_cases_carry_evidence_confidence_and_acceptance(comir_cases):
    cases, folder = comir_cases
    method = make_method("fft_search", FFT, 0)
    run = (cases, folder, method, "fft", "comir", "B_to_A", MODALITIES)
    true = register_cases(*run, Judge(0))
    unrelated = register_cases(*run, Judge(0), True)
    assert (true["error_px"] < 2).all() and set(FEATURES) <= set(true.columns)
    assert list(unrelated["partner"]) == ["c1", "c0"] and unrelated["error_px"].isna().all()
    assert true["quality"].min() > 0.9 > unrelated["quality"].max()
    # The evidence of stored results is the evidence measured while registering.
    again = results_evidence(true.drop(columns=list(FEATURES)), folder, MODALITIES)
    np.testing.assert_allclose(again[list(FEATURES)], true[list(FEATURES)])
    again = results_evidence(unrelated.drop(columns=list(FEATURES)), folder, MODALITIES)  # the partners' patches
    np.testing.assert_allclose(again[list(FEATURES)], unrelated[list(FEATURES)])
    data = calibration_data(true, unrelated, 0.05)
    calibration = fit_calibration(data.to_dict("records"), data["correct"], data["kind"], 0.0)
    judged = register_cases(*run, Judge(0, calibration))
    assert judged["accepted"].all() and (judged["confidence"] >= calibration.threshold).all()
    rejected = register_cases(*run, Judge(0, calibration), True)
    assert not rejected["accepted"].any() and (rejected["confidence"] < judged["confidence"].min()).all()
    plain = register_cases(*run)
    assert not {*FEATURES, "confidence"} & set(plain.columns)  # uncalibrated runs keep their columns


def test_a_method_registering_other_images_is_judged_on_the_comirs_of_evidence_dir(comir_cases, tmp_path):
    """ACCR's case: the registered patches are not the CoMIRs; the evidence is measured on the CoMIRs."""
    cases, comirs = comir_cases
    others = tmp_path / "others"  # what the method registers: the references inverted (another "modality")
    others.mkdir()
    for path in comirs.glob("*.tif"):
        image = tifffile.imread(path)
        tifffile.imwrite(others / path.name, image.max() - image if "_ref" in path.name else image)
    method = make_method("mi", {"start_angles_deg": [0, 10, 20]}, 0)  # mutual information: blind to the inversion
    run = (cases, others, method, "mi", "comir", "B_to_A", MODALITIES, Judge(0))
    judged, unjudged = register_cases(*run, evidence_dir=comirs), register_cases(*run)
    assert (judged["error_px"] < 2).all()
    np.testing.assert_allclose(judged[list(FEATURES)], results_evidence(judged.drop(columns=list(FEATURES)), comirs,
                                                                        MODALITIES)[list(FEATURES)])  # fmt: skip
    assert judged["quality"].min() > 0.9 and unjudged["quality"].max() < -0.9  # on the registered: anti-correlated


def test_the_acceptance_table_counts_by_hand():
    results = pd.DataFrame({
        "method": "m", "direction": "B_to_A", "status": ["ok", "ok", "ok", "failed"],
        "error_px": [1.0, 2.0, 50.0, 0.0], "width": 100, "confidence": [0.9, 0.2, 0.8, 0.0],
        "accepted": [True, False, True, False],
    })  # fmt: skip
    unrelated = pd.DataFrame({"method": "m", "direction": "B_to_A", "accepted": [False, True, False, False]})
    row = acceptance_table(results, unrelated, 0.05).iloc[0]
    assert (row.cases, row.correct, row.wrong, row.accepted, row.accepted_correct) == (4, 2, 2, 2, 1)
    assert row.precision == 0.5 and row.recall == 0.5 and row.false_accept_rate == 0.5
    assert row.unrelated_accept_rate == 0.25 and row.unrelated_accept_rate_low < 0.25 < row.unrelated_accept_rate_high
    assert "1/4" in acceptance_markdown(acceptance_table(results, unrelated, 0.05))
    with pytest.raises(InputError, match="not calibrated"):
        acceptance_table(results.drop(columns=["confidence"]), unrelated, 0.05)


def test_unrelated_pairs_of_a_test_set_without_partners_are_an_empty_table_with_its_columns(comir_cases):
    cases, folder = comir_cases
    one_place = cases.assign(image_id="img0")  # two overlapping crops of one image: nothing unrelated
    run = (one_place, folder, make_method("fft_search", FFT, 0), "fft", "comir", "B_to_A", MODALITIES)
    table = register_cases(*run, Judge(0), True)
    assert table.empty and list(table.columns) == result_columns(Judge(0), True)
    assert {"partner", *FEATURES, "error_px", "message"} <= set(table.columns)
    full = register_cases(*run, Judge(0))
    assert list(full.columns) == result_columns(Judge(0))  # the same columns as a table with rows

"""ACCR in the real workflow: a tiny CoMIR and its ACCR model trained, registration runs with method accr.

The built-in synthetic pairs (a single-channel and an RGB modality), a network of one down block, a
few training steps of each stage: the rows, the statistics and the attention figure exist, not that
they are good. A configuration without an accr section plans no ACCR job.
"""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from comir.calibration import FEATURES, calibration_key
from comir.geometry import MATRIX_KEYS
from comir.network.accr.checkpoint import load_accr
from comir.register.cases import result_columns, results_evidence
from helpers.snakemake import planned_jobs
from helpers.snakemake import run_snakemake as snakemake

EVALUATION = "results/tiny/default/evaluation/main"
ATTENTION = "results/tiny/default/accr/main/attention.png"
TRE = "results/tiny/default/evaluation/deformed/tables/tre.csv"
TARGETS = [f"{EVALUATION}/tables/success.md", ATTENTION, TRE]
RUNS = ("accr", "accr-ecc", "accr-field")
ACCR_RULES = {"train_accr", "register_accr", "accr_attention"}
CONFIG = {
    "seed": 2,
    "threads": {"train": 2, "comir": 1, "register": 1},
    "datasets": {
        "tiny": {
            "source": "synthetic",
            "modalities": {"A": {"name": "fibres", "channels": 1}, "B": {"name": "stain", "channels": 3}},
            "synthetic": {"n_train": 1, "n_val": 1, "n_test": 1, "size": 128},
            "testsets": {"main": {"patch_size": 64, "rotation_deg": 5, "translation_px": 4,
                                  "strata": [{"name": "all", "count": 2}]},
                         # The same with a known deformation: every run scored by the TRE of its field.
                         "deformed": {"patch_size": 64, "rotation_deg": 5, "translation_px": 4,
                                      "strata": [{"name": "all", "count": 2}],
                                      "deformation": {"max_displacement_px": 2, "smoothness_px": 32,
                                                      "landmark_spacing_px": 8}}},
            "model": {"init_filters": 4, "down_blocks": [1], "bottleneck": 1, "dropout": 0.0},
            "training": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": 32, "optimizer": "adam",
                         "validation_batches": 1, "device": "cpu"},
            "inference": {"tile": 64, "device": "cpu"},
            "accr": {"model": {"patch": 8, "key_stride": 4, "embed_dim": 8, "heads": 2},
                     "training": {"steps": 4, "batch_size": 2, "patch_size": 32, "max_angle_deg": 5,
                                  "max_shift_px": 4, "device": "cpu"}},
            "registration": {
                # min_support 0: the tiny model's answers are kept whatever their support (a field needs one).
                "accr": {"method": "accr", "params": {"max_px": 64, "min_support": 0}},
                "accr-ecc": {"method": "accr", "params": {"max_px": 64, "refine": "ecc", "iterations": 5}},
                "accr-field": {"method": "accr", "params": {"max_px": 64, "min_support": 0, "field": True}},
            },
        }
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def accr_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("accr")
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    run = snakemake(*TARGETS, "--cores", "2", "--configfile", "config.yaml", cwd=workdir)
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


@pytest.mark.slow  # trains a CoMIR and an ACCR model (about a minute on 2 cores)
def test_accr_trains_after_comir_and_its_runs_give_rows_like_every_run(accr_run):
    model, payload = load_accr(accr_run / "results/tiny/default/model/accr.pt")
    assert model.config.embed_dim == 8 and set(payload["modalities"]) == {"A", "B"}
    assert payload["provenance"]["config"]["accr"]["training"]["steps"] == 4
    history = pd.read_csv(accr_run / "results/tiny/default/model/accr_loss.csv")
    assert list(history["step"]) == [0, 1, 2, 3] and list(history["reference"]) == ["A", "B", "A", "B"]
    registrations = accr_run / "results/tiny/default/registration/main"
    for run in RUNS:
        for direction in ("A_to_B", "B_to_A"):
            rows = pd.read_csv(registrations / f"{run}_{direction}.csv")
            expected = result_columns()
            assert list(rows.columns) == [*expected[: expected.index("input") + 1], "source",
                                          *expected[expected.index("input") + 1 :]]  # fmt: skip
            assert len(rows) == 2 and set(rows["method"]) == {run} and set(rows["source"]) == {"default"}
            assert set(rows["input"]) == {"comir"} and rows["error_px"].notna().all()
    success = pd.read_csv(accr_run / f"{EVALUATION}/tables/success.csv")
    assert {(m, d) for m, d in zip(success["method"], success["direction"])} == {
        (run, d) for run in RUNS for d in ("A_to_B", "B_to_A")
    }
    assert (accr_run / ATTENTION).stat().st_size > 5000
    # On the deformed test set each run has its TRE; accr-field's field is the model's, its matrix accr's.
    tre = pd.read_csv(accr_run / TRE)
    assert {(m, d) for m, d in zip(tre["method"], tre["direction"])} == {
        (run, d) for run in RUNS for d in ("A_to_B", "B_to_A")
    }
    deformed = accr_run / "results/tiny/default/registration/deformed"
    for direction in ("A_to_B", "B_to_A"):
        plain, field = (pd.read_csv(deformed / f"{run}_{direction}.csv") for run in ("accr", "accr-field"))
        assert (plain["status"] == "ok").all() and (field["status"] == "ok").all()
        assert plain["tre_median_px"].notna().all() and field["tre_median_px"].notna().all()
        columns = [f"est_{k}" for k in MATRIX_KEYS]
        pd.testing.assert_frame_equal(plain[columns], field[columns], check_exact=False, rtol=1e-6)
        assert field["message"].str.contains("with the model's displacement field").all()
        assert not plain["message"].str.contains("displacement field").any()


@pytest.mark.slow
def test_without_an_accr_section_no_accr_job_is_planned(accr_run, tmp_path):
    plain = copy.deepcopy(CONFIG)
    dataset = plain["datasets"]["tiny"]
    del dataset["accr"]
    dataset["registration"] = {"mi": {"method": "mi", "inputs": ["original", "comir"]}}
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(plain))
    planned = {rule for rule, _ in planned_jobs("--configfile", str(path), cwd=accr_run)}
    assert planned and not planned & ACCR_RULES
    # The ACCR configuration's default target: every ACCR job is already done.
    assert not {rule for rule, _ in planned_jobs(*TARGETS, "--configfile", "config.yaml", cwd=accr_run)}


@pytest.mark.slow  # a second tiny dataset: a CoMIR and an ACCR model trained, calibrated and judged
def test_accr_results_are_calibrated_and_judged_on_the_variants_comirs(tmp_path):
    """With a confidence section ACCR's runs are calibrated like every run on CoMIRs (docs/method.md, 15).

    Its results on the calibration test set (validation split) and on unrelated pairs, judged on the
    variant's CoMIRs of the same patches; its confidence on main; the ACCR model file with the
    calibrations inside; an apply job with method accr judging every pair with it.
    """
    config = copy.deepcopy(CONFIG)
    tiny = config["datasets"]["tiny"]
    tiny["synthetic"].update(n_val=2, n_test=2)  # two images per test set: unrelated pairs on each
    main = {**tiny["testsets"]["main"], "strata": [{"name": "all", "count": 4}]}
    tiny["testsets"] = {"main": main, "calibration": {**main, "split": "val"}}
    tiny["confidence"] = {"testset": "calibration"}
    tiny["registration"] = {"accr": tiny["registration"]["accr"]}
    config["apply"] = {
        "accr": {"model": {"dataset": "tiny", "variant": "default"}, "testset": {"dataset": "tiny", "name": "main"},
                 "reference": "fibres", "method": "accr", "params": {"max_px": 64, "min_support": 0},
                 "masks": "none", "min_confidence": 0}
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    results = tmp_path / "results" / "tiny" / "default"
    acceptance = results / "evaluation" / "main" / "tables" / "confidence.csv"
    targets = [str(acceptance.relative_to(tmp_path)), "results/apply/accr/summary.csv"]
    run = snakemake(*targets, "--cores", "2", "--configfile", "config.yaml", cwd=tmp_path, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    calibration = json.loads((results / "confidence" / "accr.json").read_text())
    assert 0 <= calibration["threshold"] <= 1 and calibration["counts"]["unrelated"] > 0
    evidence = pd.read_csv(results / "confidence" / "accr_evidence.csv")
    assert set(evidence["kind"]) == {"true", "unrelated"} and not evidence.loc[evidence["kind"] == "unrelated",
                                                                               "correct"].any()  # fmt: skip
    # The evidence is the CoMIRs': the same as the calibrate rule measures from the rows' matrices.
    comirs = results / "comir" / "main" / "images"
    modalities = {slot: {"name": spec["name"]} for slot, spec in tiny["modalities"].items()}
    for direction in ("A_to_B", "B_to_A"):
        judged = pd.read_csv(results / "registration" / "main" / f"accr_{direction}.csv")
        assert judged["confidence"].between(0, 1).all() and judged["accepted"].isin([True, False]).all()
        measured = results_evidence(judged.drop(columns=[*FEATURES, "confidence", "accepted"]), comirs, modalities, 2)
        np.testing.assert_allclose(measured[list(FEATURES)], judged[list(FEATURES)], rtol=1e-6, atol=1e-9)
        unrelated = pd.read_csv(results / "registration" / "main" / "unrelated" / f"accr_{direction}.csv")
        assert len(unrelated) and (unrelated["partner"] != unrelated["case"]).all() and "quality" in unrelated
    table = pd.read_csv(acceptance)
    assert set(table["method"]) == {"accr"} and len(table) == 2 and set(table["unrelated"]) == {4}
    model = torch.load(results / "model" / "accr-calibrated.pt", map_location="cpu", weights_only=True)
    assert list(model["calibrations"]) == [calibration_key("accr", {"max_px": 64, "min_support": 0})]
    assert "accr" in model  # still an ACCR model file
    # The apply stage with the calibrated ACCR model: every pair judged, the transform the rule's.
    summary = pd.read_csv(tmp_path / "results" / "apply" / "accr" / "summary.csv")
    rule = pd.read_csv(results / "registration" / "main" / "accr_B_to_A.csv")  # fibres (A) the reference
    merged = summary.merge(rule, left_on="id", right_on="case", suffixes=("", "_rule"))
    assert len(merged) == 4 and summary["confidence"].between(0, 1).all()
    np.testing.assert_allclose(merged["confidence"], merged["confidence_rule"], atol=1e-3)

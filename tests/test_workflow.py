"""The real Snakemake workflow, run through its command line as users run it."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from comir.geometry import MATRIX_KEYS
from helpers.snakemake import ROOT, TINY_CONFIG, planned_jobs
from helpers.snakemake import run_snakemake as snakemake


def test_demo_dag_plans_every_stage(tmp_path):
    run = snakemake("-n", "--quiet", "rules", cwd=tmp_path)  # no --configfile: the built-in demo
    assert run.returncode == 0, run.stderr
    for rule in ["prepare_data", "build_testset", "train", "compute_comirs", "register", "evaluate"]:
        assert rule in run.stdout
    # On CoMIRs: sift (2 presets), MI (gradient, evolutionary), alpha-AMD (1 and 3 starts), FFT
    # search (NCC, MI), the cascade; on originals: MI (gradient, evolutionary), CurveAlign, elastix:
    # 13 runs x 2 directions.
    counts = dict(line.split()[:2] for line in run.stdout.splitlines() if line.split()[:1] == ["register"])
    assert counts == {"register": "26"}


@pytest.mark.parametrize(
    "original, mistake, messages",
    [
        ("seed: 1", "seed: 1\nsede: 2", ["unknown key(s): 'sede'"]),
        # A registration method's parameters are checked when the configuration is read, not after training.
        (
            "iterations: 30",
            "iteration: 30",
            ["datasets/tiny/registration/mi/params: unknown parameter(s) 'iteration'", "accepted: bins"],
        ),
    ],
)
def test_an_invalid_config_stops_the_dry_run_before_any_job(tmp_path, original, mistake, messages):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CONFIG.read_text().replace(original, mistake))
    run = snakemake("-n", "--configfile", str(bad), cwd=tmp_path)
    assert run.returncode != 0
    assert all(message in run.stderr + run.stdout for message in messages)
    assert not (tmp_path / "results").exists()


def test_missing_pairs_folder_fails_with_its_name(tmp_path):
    config = tmp_path / "pairs.yaml"
    config.write_text(
        "datasets:\n  mine:\n    source: pairs\n"
        "    modalities: {A: {name: BF, channels: 3}, B: {name: SHG, channels: 1}}\n"
        f"    pairs: {{root: {tmp_path / 'nowhere'}, split: {{fractions: [0.5, 0.25, 0.25]}}}}\n"
    )
    run = snakemake("results/mine/data/pairs.csv", "--cores", "1", "--configfile", str(config), cwd=tmp_path)
    assert run.returncode != 0
    log = (tmp_path / "results/mine/logs/prepare_data.log").read_text()
    assert "nowhere" in log
    assert not (tmp_path / "results/mine/data/pairs.csv").exists()


@pytest.mark.slow
def test_end_to_end_tiny_run(tiny_run, tmp_path):
    results = tiny_run / "results" / "tiny"
    for variant in ["mse", "cosine"]:  # two variants (critics), each trained and evaluated on its own
        evaluation = results / variant / "evaluation" / "main"
        success = pd.read_csv(evaluation / "tables" / "success.csv")
        # sift and cascade on CoMIRs, MI on the originals and on each GAN's fakes; two directions each
        assert len(success) == 12 and set(success["n"]) == {4}
        assert set(success.loc[success["method"] == "mi", "input"]) == {"original", "pix2pix", "cyclegan", "drit"}
        per_case = pd.read_csv(results / variant / "registration" / "main" / "sift_B_to_A.csv")
        assert len(per_case) == 4 and set(per_case["status"]) <= {"ok", "failed"}
        assert set(per_case["source"]) == {variant}
        for figure in ["ecdf.png", "error_vs_displacement.png", "success.png"]:
            assert (evaluation / "figures" / figure).stat().st_size > 5000
        assert (results / variant / "model" / "comir.pt").exists()
        assert "git_revision" in (evaluation / "tables" / "provenance.json").read_text()
        timing = pd.read_csv(evaluation / "tables" / "timing.csv")
        assert list(timing["stage"][:2]) == ["training", "inference"] and (timing["total_s"] > 0).all()
        sources = timing.loc[timing["stage"] == "registration", "source"]
        assert sorted(sources) == sorted(["original"] * 2 + [variant] * 4 + ["pix2pix", "cyclegan", "drit"] * 2)
        agreement = pd.read_csv(evaluation / "tables" / "agreement.csv")
        assert agreement.loc[0, "cases"] == 4 and -1 <= agreement.loc[0, "mean_correlation"] <= 1
        cascade = pd.read_csv(results / variant / "registration" / "main" / "cascade_A_to_B.csv")
        assert len(cascade) == 4 and cascade["message"].str.contains("kept|failed").all()
    # MI on the originals and on the fakes does not depend on the variant: computed once, read by both.
    assert len(list((results / "original" / "registration" / "main").glob("*.csv"))) == 2
    for model in ["pix2pix", "cyclegan", "drit"]:
        assert len(list((results / model / "registration" / "main").glob("mi_*.csv"))) == 2
        history = pd.read_csv(results / "translation" / model / "loss.csv")
        assert history["epoch"].max() == 2 and np.isfinite(history.drop(columns=["epoch", "model"])).all().all()
        fakes = results / "translation" / model / "main" / "images"
        assert len(list(fakes.glob("*_B_flo.tif"))) == 4  # stain patches translated into fibres
    for variant in ["mse", "cosine"]:  # paper Fig. 3 with each variant's CoMIRs
        assert (results / variant / "comir" / "main" / "translations.png").stat().st_size > 20_000
    # Paper section 4.1: equivariance per variant and of all variants, reproducibility per cell.
    for variant in ["mse", "cosine"]:
        rotation = pd.read_csv(results / variant / "representation" / "equivariance_rotation.csv")
        assert sorted(rotation["angle_deg"].unique()) == list(range(0, 360, 10))
        assert rotation["correlation"].between(-1, 1).all()
        assert rotation.loc[rotation["angle_deg"] == 0, "correlation"].min() > 0.999  # itself
    assert (results / "representation" / "equivariance_variants.png").stat().st_size > 20_000
    cells = pd.read_csv(results / "representation" / "reproducibility.csv")
    assert len(cells) == 8  # {fixed, random seed} x {fixed, varying image} x 2 modalities
    same = cells[(cells["seed"] == "fixed") & (cells["image"] == "fixed")]
    np.testing.assert_allclose(same["mean_correlation"], 1.0, atol=1e-6)  # the same network each time
    comparison = pd.read_csv(results / "comparison" / "main" / "variants.csv")
    assert set(comparison["method"]) == {"sift", "cascade"} and set(comparison["variant_x"]) == {"cosine"}
    assert (results / "comparison" / "main" / "variants.png").stat().st_size > 5000
    # Nothing is left to do: the run is complete and resumable.
    again = snakemake("-n", "--configfile", str(TINY_CONFIG), cwd=tiny_run)
    assert "Nothing to be done" in again.stdout + again.stderr
    # An ablation reruns exactly the affected rules: one variant's training and what follows from it.
    model = "results/tiny/cosine/model/comir.pt"
    forced = planned_jobs("--forcerun", model, "--configfile", str(TINY_CONFIG), cwd=tiny_run)
    rules = sorted(rule for rule, _ in forced)
    assert rules == ["agreement", "compare_variants", "compute_comirs", "equivariance", "equivariance_comparison"] + [
        "evaluate"
    ] + ["register"] * 4 + ["timing", "train", "translation_examples"]
    shared = ("compare_variants", "equivariance_comparison")  # of all variants
    assert all("cosine" in wildcards for rule, wildcards in forced if rule not in shared)
    report = tmp_path / "report.html"
    run = snakemake("--report", str(report), "--configfile", str(TINY_CONFIG), cwd=tiny_run)
    assert run.returncode == 0, run.stderr[-2000:]
    assert report.stat().st_size > 100_000


@pytest.mark.slow
def test_the_apply_stage_in_the_tiny_run(tiny_run, tmp_path):
    """The tiny test set exported as unaligned pairs, registered by the apply stage in two batches."""
    apply = tiny_run / "results" / "apply"
    rigid = pd.read_csv(apply / "rigid" / "summary.csv")
    assert sorted(rigid["id"]) == [f"case_{i:04d}" for i in range(4)]
    assert len(pd.read_csv(apply / "rigid" / "batches" / "0.csv")) == 2  # every second pair per batch
    # The same model, pairs and cascade as the register rule on the test set (fibres = A the reference).
    rule = pd.read_csv(tiny_run / "results" / "tiny" / "mse" / "registration" / "main" / "cascade_B_to_A.csv")
    merged = rigid.merge(rule, left_on="id", right_on="case", suffixes=("", "_rule"))
    assert (merged["status"] == merged["status_rule"]).all()
    for key in MATRIX_KEYS:
        np.testing.assert_allclose(merged[f"est_{key}"], merged[f"est_{key}_rule"], atol=1e-3)
    low = (rigid["status"] == "ok") & (rigid["metric"] < 0.5)
    assert list(rigid["flag"].fillna("")) == ["failed" if s != "ok" else "low quality" if lo else ""
                                              for s, lo in zip(rigid["status"], low)]  # fmt: skip
    for row in rigid[rigid["status"] == "ok"].itertuples():
        batch = sorted(rigid["id"]).index(row.id) % 2
        assert (apply / "rigid" / "pairs" / str(batch) / row.id / "overlay.png").stat().st_size > 1000
    cases = pd.read_csv(apply / "rigid" / "evaluation" / "cases.csv")
    np.testing.assert_allclose(cases["error_px"], merged.set_index("id").loc[cases["case"], "error_px"], atol=1e-2)
    success = pd.read_csv(apply / "evaluation" / "success.csv")
    assert sorted(success["method"]) == ["rigid", "similarity"] and set(success["n"]) == {4}
    similarity = pd.read_csv(apply / "similarity" / "summary.csv")
    assert "scale" in similarity.columns
    assert rigid["confidence"].isna().all()  # the tiny dataset has no confidence section: nothing judged
    # Changing how pairs are flagged re-summarises; it registers nothing again.
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["apply"]["rigid"]["min_quality"] = 0.9
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    rules = {rule for rule, _ in planned_jobs("--configfile", str(changed), cwd=tiny_run)}
    assert "summarise_pairs" in rules and not rules & {"register_pairs", "train", "compute_comirs", "register"}


def test_a_sweep_plans_a_trained_and_compared_variant_per_combination(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["datasets"]["tiny"]["sweeps"] = {"tau": {"training.temperature": [0.1, 2]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = planned_jobs("--configfile", str(path), cwd=tmp_path)
    trained = {wildcards for rule, wildcards in jobs if rule == "train"}
    assert trained == {f"dataset=tiny, variant={v}" for v in ("mse", "cosine", "tau-0p1", "tau-2")}
    assert ("compare_variants", "dataset=tiny, testset=main") in jobs


def test_the_slide_benchmark_plans_one_training_per_family_and_variant(tmp_path):
    jobs = planned_jobs("--configfile", str(ROOT / "config" / "bfshg-slides.yaml"), cwd=tmp_path)
    trained = {wildcards for rule, wildcards in jobs if rule == "train"}
    families = ("1B", "2B", "X", "PANC")
    # c4-average uses the default variant's networks: four trainings per family
    variants = ("default", "invariant", "shg-percentile", "augmented")
    assert trained == {f"dataset=slides-{f}, variant={v}" for f in families for v in variants}
    pools = {wildcards for rule, wildcards in jobs if rule == "pool_folds"}
    assert len(pools) == 6
    # the ensemble trains nothing: the cascade on its members' CoMIRs
    ensemble = {(rule, wildcards) for rule, wildcards in jobs if "variant=ensemble" in wildcards}
    assert {rule for rule, _ in ensemble} == {"evaluate", "timing", "stress_curve"}
    runs = {re.search(r"run=([^,]+)", w).group(1) for r, w in jobs if r == "register" and "source=ensemble," in w}
    assert runs == {"cascade", "cascade-original"}  # of the runs on CoMIRs, those whose method takes several networks


def test_a_pool_reads_every_registration_of_its_datasets(tmp_path):
    run = snakemake("-n", "--configfile", str(ROOT / "config" / "bfshg-cv.yaml"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    jobs = run.stdout.split("rule pool_folds:")[1:]
    inputs = {re.search(r"wildcards: pool=(\S+)", job).group(1): job.split("output:")[0] for job in jobs}
    variants = {"bfshg-cv": "default", "bfshg-cv-c4": "c4-average",
                "bfshg-cv-elastic-gradient-96": "elastic-gradient-96"}  # fmt: skip
    assert set(inputs) == set(variants)
    for pool, variant in variants.items():
        for fold in range(1, 5):
            # the 4 folds' 6 runs on CoMIRs and 6 on the originals (mi, elastix, elastix-affine),
            # and (the figure of the cores) the test set's patches and the pool variant's CoMIRs
            assert inputs[pool].count(f"results/bfshg-cv{fold}/") == 14
            assert inputs[pool].count(f"results/bfshg-cv{fold}/{variant}/registration/main/") == 6
            assert f"results/bfshg-cv{fold}/testsets/main/images" in inputs[pool]
            assert f"results/bfshg-cv{fold}/{variant}/comir/main/images" in inputs[pool]


def test_a_stress_series_plans_its_test_sets_and_a_curve_per_variant(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["datasets"]["tiny"]["stress"] = {"fibres-gain": {"modality": "A", "kind": "gain", "severities": [0.5, 1]}}
    path = tmp_path / "stress.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = planned_jobs("--configfile", str(path), cwd=tmp_path)
    built = {wildcards for rule, wildcards in jobs if rule == "build_testset"}
    assert built == {f"dataset=tiny, testset={t}" for t in ("main", "fibres-gain-0p5", "fibres-gain-1")}
    curves = {wildcards for rule, wildcards in jobs if rule == "stress_curve"}
    assert curves == {f"dataset=tiny, variant={v}, series=fibres-gain" for v in ("mse", "cosine")}
    assert ("evaluate", "dataset=tiny, variant=cosine, testset=fibres-gain-1") in jobs


@pytest.mark.slow
def test_a_pool_an_ensemble_and_a_stress_series_run_for_real(tmp_path):
    """Two tiny datasets pooled with an ensemble of two variants' networks, and a stress series, run.

    The pool gives its per-core table and figure, the stress series its curve.
    """
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config.pop("apply")
    dataset = config["datasets"]["tiny"]
    for section in ("translation", "representation"):
        dataset.pop(section)
    dataset["registration"]["mi"]["inputs"] = ["original"]
    dataset["variants"] = {
        "mse": {},
        "cosine": {"training": {"critic": "cosine"}},
        "both": {"ensemble": ["mse", "cosine"]},
    }
    dataset["stress"] = {"fibres-gain": {"modality": "A", "kind": "gain", "severities": [1]}}
    second = yaml.safe_load(yaml.safe_dump(dataset))
    second["synthetic"]["n_test"] = 3
    config["datasets"]["tiny2"] = second
    config["pools"] = {"both": {"datasets": ["tiny", "tiny2"], "variant": "both"}}
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(config))
    targets = [
        "results/pools/both/cores.png",
        "results/tiny/mse/evaluation/stress/fibres-gain.csv",
        "results/tiny/both/evaluation/main/tables/timing.csv",
    ]
    run = snakemake(*targets, "--cores", "2", "--configfile", str(path), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    cores = pd.read_csv(tmp_path / "results" / "pools" / "both" / "cores.csv")
    # every test image of both datasets, each with the ensemble's 2 runs (the cascade on its
    # CoMIRs, MI on the originals; sift does not register an ensemble) x 2 directions
    assert len(cores) == 4 * cores.groupby(["dataset", "image_id"]).ngroups
    assert set(cores["dataset"]) == {"tiny", "tiny2"} and cores["unregistered"].dtype == bool
    assert (tmp_path / "results" / "pools" / "both" / "cores.png").stat().st_size > 10000
    # The ensemble's cascade ran on both members' CoMIRs, each candidate scored on both.
    ensemble = tmp_path / "results" / "tiny" / "both"
    assert sorted(p.name for p in (ensemble / "registration" / "main").glob("*.csv")) == [
        "cascade_A_to_B.csv", "cascade_B_to_A.csv"
    ]  # fmt: skip
    cascade = pd.read_csv(ensemble / "registration" / "main" / "cascade_A_to_B.csv")
    assert len(cascade) == 4 and set(cascade["source"]) == {"both"}
    assert cascade["message"].str.contains("@1").all() and cascade["message"].str.contains("@2").all()
    assert not (ensemble / "model").exists() and not (ensemble / "comir").exists()  # no networks of its own
    timing = pd.read_csv(ensemble / "evaluation" / "main" / "tables" / "timing.csv")
    members = timing[timing["stage"].isin(["training", "inference"])]
    assert list(members["source"]) == ["mse", "cosine", "mse", "cosine"]
    curve = pd.read_csv(tmp_path / "results" / "tiny" / "mse" / "evaluation" / "stress" / "fibres-gain.csv")
    assert set(curve["severity"]) == {0.0, 1.0} and set(curve["n"]) == {4}
    assert (curve["ci_low"] <= curve["rate"]).all() and (curve["rate"] <= curve["ci_high"]).all()


@pytest.mark.slow
def test_calibrated_confidence_runs_for_real(tmp_path):
    """The tiny dataset with a calibration test set on two validation images (docs/method.md, section 15).

    Calibrated runs, their confidence on main with unrelated pairs, and an apply job with the calibrated model.
    """
    config = yaml.safe_load(TINY_CONFIG.read_text())
    tiny = config["datasets"]["tiny"]
    for section in ("translation", "representation"):
        tiny.pop(section)
    tiny["synthetic"]["n_val"] = 2
    tiny["variants"] = {"mse": {}}
    tiny["registration"] = {run: tiny["registration"][run] for run in ("sift", "cascade")}
    tiny["testsets"]["calibration"] = {**tiny["testsets"]["main"], "split": "val"}
    tiny["confidence"] = {"testset": "calibration"}
    config["apply"] = {"rigid": {**config["apply"]["rigid"], "min_confidence": 0}}
    path = tmp_path / "confidence.yaml"
    path.write_text(yaml.safe_dump(config))
    run = snakemake("--cores", "2", "--configfile", str(path), cwd=tmp_path, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results" / "tiny" / "mse"
    for name in ["sift", "cascade"]:
        calibration = json.loads((results / "confidence" / f"{name}.json").read_text())
        assert 0 <= calibration["threshold"] <= 1 and calibration["false_accept_rate"] == 0.05
        evidence = pd.read_csv(results / "confidence" / f"{name}_evidence.csv")
        assert set(evidence["kind"]) <= {"true", "unrelated"} and not evidence.loc[evidence["kind"] == "unrelated",
                                                                                  "correct"].any()  # fmt: skip
    judged = pd.read_csv(results / "registration" / "main" / "cascade_A_to_B.csv")
    assert judged["confidence"].between(0, 1).all() and {"quality", "prominence", "accepted"} <= set(judged)
    uncalibrated = pd.read_csv(results / "registration" / "calibration" / "cascade_A_to_B.csv")
    assert "confidence" not in uncalibrated  # the calibration data are not judged by themselves
    unrelated = pd.read_csv(results / "registration" / "main" / "unrelated" / "cascade_A_to_B.csv")
    assert len(unrelated) == 4 and (unrelated["partner"] != unrelated["case"]).all()
    acceptance = pd.read_csv(results / "evaluation" / "main" / "tables" / "confidence.csv")
    assert len(acceptance) == 4 and set(acceptance["unrelated"]) == {4}
    assert (results / "evaluation" / "main" / "figures" / "reliability.png").stat().st_size > 5000
    # The apply stage registers with the calibrated model file: every pair judged (the threshold overridden).
    summary = pd.read_csv(tmp_path / "results" / "apply" / "rigid" / "summary.csv")
    rule = pd.read_csv(results / "registration" / "main" / "cascade_B_to_A.csv")  # fibres (A) the reference
    merged = summary.merge(rule, left_on="id", right_on="case", suffixes=("", "_rule"))
    assert len(merged) == 4 and (merged["status"] == merged["status_rule"]).all()
    assert summary["confidence"].between(0, 1).all()
    assert (results / "model" / "comir-calibrated.pt").stat().st_size > (results / "model" / "comir.pt").stat().st_size
    # The same model as a file trained elsewhere (variant model_file): evaluated and calibrated
    # without training, it gives the trained variant's calibration.
    tiny["variants"]["imported"] = {"model_file": "results/tiny/mse/model/comir.pt"}
    path.write_text(yaml.safe_dump(config))
    imported = tmp_path / "results" / "tiny" / "imported"
    targets = [imported / "model" / "comir-calibrated.pt", imported / "evaluation" / "main" / "tables" / "timing.csv"]
    relative = [str(target.relative_to(tmp_path)) for target in targets]  # targets as the rules name them
    run = snakemake("--cores", "2", *relative, "--configfile", str(path), cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rule train:" not in run.stdout + run.stderr  # (local)rule train: nothing trained
    for name in ["sift", "cascade"]:
        ours, theirs = (json.loads((r / "confidence" / f"{name}.json").read_text()) for r in (imported, results))
        assert ours["threshold"] == pytest.approx(theirs["threshold"]) and ours["counts"] == theirs["counts"]
    assert "training" not in set(pd.read_csv(targets[1])["stage"])

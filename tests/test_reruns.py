"""Reruns redo only what an edit changes (docs/how-to/ablations.md, "A changed setting reruns ...").

Each test edits the tiny configuration after a complete run and asserts the exact set of jobs
that a dry run plans: rules get only the configuration they use, in canonical form, so an
unrelated edit reruns nothing, and a user's input images are inputs of prepare_data.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from helpers.snakemake import TINY_CONFIG, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow

VARIANTS = ("cosine", "mse")
DIRECTIONS = ("A_to_B", "B_to_A")
TRANSLATORS = ("cyclegan", "drit", "pix2pix")


def tiny() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


def plan(workdir: Path, config: dict, *args: str) -> set[tuple[str, str]]:
    path = workdir / f"edited-{abs(hash(repr(config) + repr(args)))}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        return planned_jobs(*args, "--configfile", str(path), cwd=workdir)
    finally:
        path.unlink()


def register(source: str, run: str, testset: str = "main", dataset: str = "tiny") -> set[tuple[str, str]]:
    return {
        ("register", f"dataset={dataset}, source={source}, testset={testset}, run={run}, direction={d}")
        for d in DIRECTIONS
    }


def on_comirs(testset: str = "main", variants=VARIANTS) -> set[tuple[str, str]]:
    """The register jobs of the tiny config's runs on CoMIRs (sift, cascade)."""
    return set().union(*(register(v, run, testset) for v in variants for run in ("sift", "cascade")))


def per_variant(rule: str, testset: str = "main", variants=VARIANTS) -> set[tuple[str, str]]:
    return {(rule, f"dataset=tiny, variant={v}, testset={testset}") for v in variants}


def comparison(testset: str = "main") -> set[tuple[str, str]]:
    return {("compare_variants", f"dataset=tiny, testset={testset}")}


def on_translations(testset: str = "main") -> set[tuple[str, str]]:
    """The register jobs of the tiny config's MI on every GAN's fakes."""
    return set().union(*(register(model, "mi", testset) for model in TRANSLATORS))


def equivariance(variants=VARIANTS) -> set[tuple[str, str]]:
    """The equivariance jobs of ``variants`` and the plot of all variants."""
    jobs = {("equivariance", f"dataset=tiny, variant={v}") for v in variants}
    return jobs | {("equivariance_comparison", "dataset=tiny")}


def apply_jobs() -> set[tuple[str, str]]:
    """The tiny config's apply jobs (both use the mse model): rigid in two batches, similarity in one."""
    batches = {("register_pairs", "job=rigid, batch=0"), ("register_pairs", "job=rigid, batch=1")}
    batches.add(("register_pairs", "job=similarity, batch=0"))
    per_job = {(rule, f"job={job}") for rule in ("summarise_pairs", "apply_errors") for job in ("rigid", "similarity")}
    return batches | per_job | {("evaluate_apply", "")}


def reversed_keys(value):
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


def test_a_finished_run_plans_nothing(tiny_run):
    assert plan(tiny_run, tiny()) == set()


def test_reordered_keys_and_thread_counts_rerun_nothing(tiny_run):
    config = reversed_keys(tiny())
    config["threads"]["register"] = 2
    config["threads"]["comir"] = 1
    config["threads"]["loader"] = 2  # loader workers make the same batches
    assert plan(tiny_run, config) == set()


def test_a_new_registration_run_plans_only_its_jobs(tiny_run):
    config = tiny()
    config["datasets"]["tiny"]["registration"]["sift2"] = {
        "method": "sift", "inputs": ["comir"], "params": {"max_error_px": 5}
    }
    expected = register("mse", "sift2") | register("cosine", "sift2")
    expected |= per_variant("evaluate") | per_variant("timing") | comparison()
    assert plan(tiny_run, config) == expected


def test_changed_parameters_of_a_run_on_the_originals_rerun_it_and_its_statistics(tiny_run):
    config = tiny()
    config["datasets"]["tiny"]["registration"]["mi"]["params"]["iterations"] = 31
    expected = register("original", "mi") | on_translations() | per_variant("evaluate") | per_variant("timing")
    assert plan(tiny_run, config) == expected


def test_more_epochs_retrain_and_rerun_what_uses_the_models_only(tiny_run):
    config = tiny()
    config["datasets"]["tiny"]["training"]["epochs"] = 3
    expected = {("train", f"dataset=tiny, variant={v}") for v in VARIANTS}
    expected |= per_variant("compute_comirs") | on_comirs()
    expected |= per_variant("evaluate") | per_variant("timing") | comparison()
    # What else uses the networks: their equivariance, the apply jobs, the reproducibility runs.
    expected |= equivariance() | apply_jobs() | {("reproducibility", "dataset=tiny")}
    expected |= per_variant("translation_examples") | per_variant("agreement")  # both read the CoMIRs
    assert plan(tiny_run, config) == expected


def test_c4_averaging_recomputes_the_comirs_without_retraining(tiny_run):
    config = tiny()
    config["datasets"]["tiny"]["inference"]["c4_average"] = True
    expected = per_variant("compute_comirs") | on_comirs() | per_variant("evaluate") | per_variant("timing")
    # The equivariance and reproducibility measurements compute CoMIRs with the dataset's inference too.
    expected |= equivariance() | {("reproducibility", "dataset=tiny")} | per_variant("translation_examples")
    assert plan(tiny_run, config) == expected | comparison() | per_variant("agreement")


def test_a_new_test_set_plans_its_own_jobs_without_retraining(tiny_run):
    config = tiny()
    testsets = config["datasets"]["tiny"]["testsets"]
    testsets["wide"] = {**copy.deepcopy(testsets["main"]), "rotation_deg": 20}
    expected = {("build_testset", "dataset=tiny, testset=wide")} | per_variant("compute_comirs", "wide")
    expected |= on_comirs("wide") | register("original", "mi", "wide")
    expected |= per_variant("evaluate", "wide") | per_variant("timing", "wide") | comparison("wide")
    expected |= {("translate", f"dataset=tiny, translator={m}, testset=wide") for m in TRANSLATORS}
    expected |= on_translations("wide") | per_variant("translation_examples", "wide") | per_variant("agreement", "wide")
    assert plan(tiny_run, config) == expected


def test_a_new_variant_trains_only_itself(tiny_run):
    config = tiny()
    config["datasets"]["tiny"]["variants"]["no-c4"] = {"training": {"equivariance": False}}
    new = ("no-c4",)
    expected = {("train", "dataset=tiny, variant=no-c4")} | per_variant("compute_comirs", variants=new)
    expected |= on_comirs(variants=new) | per_variant("evaluate", variants=new) | per_variant("timing", variants=new)
    expected |= comparison() | equivariance(new) | per_variant("translation_examples", variants=new)
    expected |= per_variant("agreement", variants=new)
    assert plan(tiny_run, config) == expected


def test_a_variant_on_another_variants_networks_trains_nothing(tiny_run):
    config = tiny()
    config["datasets"]["tiny"]["variants"]["c4avg"] = {"model_from": "mse", "inference": {"c4_average": True}}
    new = ("c4avg",)
    expected = per_variant("compute_comirs", variants=new) | on_comirs(variants=new)
    expected |= per_variant("evaluate", variants=new) | per_variant("timing", variants=new) | comparison()
    expected |= equivariance(new) | per_variant("translation_examples", variants=new)
    expected |= per_variant("agreement", variants=new)
    assert plan(tiny_run, config) == expected


def test_a_variants_stain_normalisation_retrains_it_and_leaves_the_originals_alone(tiny_run):
    config = tiny()
    config["datasets"]["tiny"]["variants"]["mse"]["modalities"] = {"B": {"stain_normalization": "macenko"}}
    mse = ("mse",)
    expected = {("train", "dataset=tiny, variant=mse")} | per_variant("compute_comirs", variants=mse)
    expected |= on_comirs(variants=mse) | per_variant("evaluate", variants=mse) | per_variant("timing", variants=mse)
    expected |= comparison() | equivariance(mse) | per_variant("translation_examples", variants=mse)
    expected |= per_variant("agreement", variants=mse) | apply_jobs()  # the apply jobs use mse's model
    assert plan(tiny_run, config) == expected


def test_a_second_dataset_leaves_the_first_alone(tiny_run):
    config = tiny()
    config["datasets"]["other"] = copy.deepcopy(config["datasets"]["tiny"])
    jobs = plan(tiny_run, config)
    assert jobs and all("dataset=other" in wildcards for _, wildcards in jobs)


def test_forced_registrations_keep_the_models(tiny_run):
    jobs = plan(tiny_run, tiny(), "--forcerun", "register", "--until", "evaluate")
    assert jobs == on_comirs() | register("original", "mi") | on_translations() | per_variant("evaluate")


def write_pair(root: Path, pair_id: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "SHG").mkdir(parents=True, exist_ok=True)
    (root / "BF").mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(root / "SHG" / f"{pair_id}.tif", rng.integers(0, 255, (160, 160), dtype=np.uint8))
    tifffile.imwrite(root / "BF" / f"{pair_id}.tif", rng.integers(0, 255, (160, 160, 3), dtype=np.uint8))


def test_images_of_a_pairs_folder_are_inputs(tmp_path):
    root = tmp_path / "pairs"
    for index in range(4):
        write_pair(root, f"core{index}", index)
    config = {
        "datasets": {
            "mine": {
                "source": "pairs",
                "modalities": {"A": {"name": "BF", "channels": 3}, "B": {"name": "SHG", "channels": 1}},
                "pairs": {"root": str(root), "split": {"fractions": [0.5, 0.25, 0.25]}},
            }
        }
    }
    target = "results/mine/data/pairs.csv"
    prepare = {("prepare_data", "dataset=mine")}
    assert plan(tmp_path, config, target, "--cores", "1", "--forceall") == prepare

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_snakemake(target, "--cores", "1", "--configfile", str(path), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert plan(tmp_path, config, target) == set()
    write_pair(root, "core9", 9)  # a new pair
    assert plan(tmp_path, config, target) == prepare
    (root / "SHG" / "core9.tif").unlink()
    (root / "BF" / "core9.tif").unlink()
    assert plan(tmp_path, config, target) == set()
    changed = root / "SHG" / "core1.tif"  # an image replaced after the run
    tifffile.imwrite(changed, np.zeros((160, 160), np.uint8))
    later = (tmp_path / target).stat().st_mtime + 10
    os.utime(changed, (later, later))
    assert plan(tmp_path, config, target) == prepare

"""comir.workflow's jobs, params and targets: what the rules read and get, without running Snakemake.

The workflow's dry runs (tests/test_workflow.py) check the same through Snakemake; these check the
plain functions behind workflow/rules/common.smk on small configurations, in milliseconds.
"""

import copy
import subprocess
import sys

import pytest
import yaml

from comir.config.schema import ConfigError
from comir.config.validate import validate_config
from comir.workflow import jobs, params, targets
from comir.workflow.targets import Target
from helpers.project import TINY_CONFIG

KEYPOINTS = {"max_error_px": 4, "min_octave_px": 16}


def tiny(**variants) -> dict:
    """The tiny workflow configuration (.test/config.yaml), validated, with extra ``variants`` of its dataset."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["datasets"]["tiny"]["variants"].update(variants)
    return validate_config(config)


def with_confidence(config: dict) -> dict:
    """``config`` with a validation test set that calibrates the confidence of the runs on CoMIRs."""
    config = copy.deepcopy(config)
    dataset = config["datasets"]["tiny"]
    dataset["testsets"]["calibration"] = {**dataset["testsets"]["main"], "split": "val"}
    dataset["confidence"] = {"testset": "calibration", "success_fraction": 0.05, "false_accept_rate": 0.05}
    return validate_config(config)


@pytest.fixture(scope="module")
def config():
    return tiny()


@pytest.fixture(scope="module")
def ensemble():
    return tiny(both={"ensemble": ["mse", "cosine"]})


def test_the_package_keeps_its_public_names_and_imports_nothing_the_job_envs_lack():
    from comir.workflow import canonical, git_revision, modality_fields, package_versions, pick, provenance
    from comir.workflow import setup_logging as setup

    assert all(map(callable, (canonical, git_revision, modality_fields, package_versions, pick, provenance, setup)))
    # The scripts import comir.workflow in the jobs' envs, which have neither jsonschema nor pyyaml
    # (tests/test_envs.py): the package's own module may not import comir.config or its submodules.
    code = "import sys, comir.workflow; print(sorted(m for m in sys.modules if m.startswith(('comir.', 'yaml'))))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "['comir.workflow']"


# --- jobs ----------------------------------------------------------------------------------------


def test_a_variant_registers_its_comirs_the_originals_and_every_translation(config):
    registered = jobs.registration_jobs(config, "tiny", "mse")
    directions = ("A_to_B", "B_to_A")
    expected = [("mse", run, d) for run in ("cascade", "sift") for d in directions]
    expected += [(source, "mi", d) for source in ("original", "pix2pix", "cyclegan", "drit") for d in directions]
    assert registered == sorted(expected)  # sorted: key order in the configuration changes no params


def test_an_ensemble_registers_its_comirs_only_with_the_methods_that_take_several_networks(ensemble):
    registered = jobs.registration_jobs(ensemble, "tiny", "both")
    on_comirs = {run for source, run, _ in registered if source == "both"}
    assert on_comirs == {"cascade"}  # sift takes one network's CoMIRs
    others = {job for job in registered if job[0] != "both"}
    assert others == {job for job in jobs.registration_jobs(ensemble, "tiny", "mse") if job[0] != "mse"}


def test_sources_kinds_and_networks(ensemble):
    assert jobs.source_input(ensemble, "tiny", "original") == "original"
    assert jobs.source_input(ensemble, "tiny", "pix2pix") == "translated"
    assert jobs.source_networks(ensemble, "tiny", "both") == ["mse", "cosine"]
    assert jobs.source_networks(ensemble, "tiny", "cosine") == ["cosine"]
    assert jobs.source_networks(ensemble, "tiny", "original") == jobs.source_networks(ensemble, "tiny", "drit") == []
    assert jobs.sorted_variants(ensemble, "tiny") == ["cosine", "mse"]  # not the ensemble: no networks


def test_the_comparison_reads_each_variants_runs_on_its_own_comirs(ensemble):
    compared = jobs.comparison_jobs(ensemble, "tiny")
    assert {source for source, _, _ in compared} == {"mse", "cosine", "both"}
    assert [job for job in compared if job[0] == "both"] == [
        ("both", "cascade", "A_to_B"),
        ("both", "cascade", "B_to_A"),
    ]


def test_a_run_configured_for_other_inputs_is_refused(config):
    with pytest.raises(ValueError, match="'mi' of tiny is not configured for comir inputs"):
        jobs.registration_spec(config, "tiny", "mse", "mi")
    assert jobs.reads_originals(config, "tiny", "mse", "cascade")  # its original_keypoints
    assert not jobs.reads_originals(config, "tiny", "mse", "sift")
    assert not jobs.reads_originals(config, "tiny", "original", "mi")


def test_only_single_network_variants_are_calibrated_and_not_on_their_calibration_set(ensemble):
    config = with_confidence(ensemble)
    assert jobs.calibrated_runs(config, "tiny") == ["cascade", "sift"]  # the runs on CoMIRs, sorted
    assert jobs.judged_with_calibration(config, "tiny", "mse", "cascade", "main")
    assert not jobs.judged_with_calibration(config, "tiny", "mse", "cascade", "calibration")
    assert not jobs.judged_with_calibration(config, "tiny", "both", "cascade", "main")  # an ensemble
    assert not jobs.judged_with_calibration(config, "tiny", "original", "mi", "main")
    assert targets.registration_calibration(config, "tiny", "cosine", "main", "sift") == [
        Target("calibrate", "calibration", {"dataset": "tiny", "variant": "cosine", "run": "sift"})
    ]
    assert targets.registration_calibration(config, "tiny", "both", "main", "cascade") == []
    assert jobs.calibrated_runs(ensemble, "tiny") == []  # no confidence section


def test_a_stress_series_runs_from_its_base_to_increasing_severities():
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["datasets"]["tiny"]["stress"] = {"gain": {"modality": "B", "kind": "gain", "severities": [1, 0.5]}}
    config = validate_config(config)
    assert jobs.stress_severities(config, "tiny", "gain") == [0.0, 0.5, 1.0]
    testsets = jobs.stress_testsets(config, "tiny", "gain")
    assert testsets == ["main", "gain-0p5", "gain-1"]
    assert set(testsets) <= set(config["datasets"]["tiny"]["testsets"])  # the test sets the series added
    assert targets.stress_success_tables(config, "tiny", "mse", "gain") == [
        Target("evaluate", "success", {"dataset": "tiny", "variant": "mse", "testset": testset}) for testset in testsets
    ]


def test_wildcard_constraints_match_exactly_the_configured_names(config):
    assert jobs.names_of(config, "registration") == ["cascade", "mi", "sift"]
    assert jobs.alternatives(["a.b", "c"]) == r"a\.b|c"
    assert jobs.alternatives([]) == ""


# --- params ----------------------------------------------------------------------------------


def test_the_cascade_on_an_ensembles_comirs_is_told_how_many_networks(ensemble):
    on_ensemble = params.registration_params(ensemble, "tiny", "both", "cascade")
    assert on_ensemble == {
        "method": "cascade",
        "params": {"keypoints": KEYPOINTS, "networks": 2, "original_keypoints": KEYPOINTS},
    }
    on_variant = params.registration_params(ensemble, "tiny", "mse", "cascade")
    assert "networks" not in on_variant["params"]  # one network: the params of before ensembles
    assert params.registration_params(ensemble, "tiny", "original", "mi") == {
        "method": "mi",
        "params": {"iterations": 30, "start_angles_deg": [0]},
    }


def test_params_are_canonical_so_reordered_keys_change_nothing(config):
    reordered = copy.deepcopy(config)
    dataset = reordered["datasets"]["tiny"]
    dataset["training"] = dict(reversed(list(dataset["training"].items())))
    for build in (params.network_params, params.inference_params, params.evaluation_provenance):
        args = ("tiny", "mse", "main")[: build.__code__.co_argcount - 1]
        assert repr(build(reordered, *args)) == repr(build(config, *args))


def test_settings_the_schema_gained_later_enter_the_params_only_where_set(config):
    assert params.add_if_set({"a": 1}, "b", None) == {"a": 1}
    assert params.add_if_set({"a": 1}, "b", [1, 1], unset=[1, 1]) == {"a": 1}
    assert params.add_if_set({"a": 1}, "b", 0.5) == {"a": 1, "b": 0.5}
    plain = params.image_modalities(config, "tiny")
    assert plain["B"] == {"name": "stain", "channels": 3, "log1p": False, "max_value": None}
    changed = copy.deepcopy(config)
    changed["datasets"]["tiny"]["modalities"]["B"].update(stain_normalization="deconvolution", pixel_size=0.5)
    assert params.image_modalities(changed, "tiny")["B"]["stain_normalization"] == "deconvolution"
    assert "pixel_size" not in params.image_modalities(changed, "tiny")["B"]  # images need no pixel size
    assert params.network_params(changed, "tiny", "mse")["modalities"]["B"]["pixel_size"] == 0.5
    assert "pixel_size" not in params.network_params(config, "tiny", "mse")["modalities"]["B"]
    assert "scale_range" not in params.testset_params(config, "tiny", "main")["testset"]
    changed["datasets"]["tiny"]["testsets"]["main"]["scale_range"] = [0.9, 1.1]
    assert params.testset_params(changed, "tiny", "main")["testset"]["scale_range"] == [0.9, 1.1]


def test_an_apply_job_gets_how_to_register_and_the_exported_folders(config):
    settings = params.apply_settings(config, "rigid")
    assert "rescale" not in settings and "min_confidence" not in settings
    assert settings["folders"] == {"A": "fibres", "B": "stain"}  # the test set's modality names
    assert "batches" not in settings and "min_quality" not in settings  # other params, other jobs
    changed = copy.deepcopy(config)
    changed["apply"]["rigid"].update(rescale=True, min_confidence=0.3)
    assert params.apply_settings(changed, "rigid") == {**settings, "rescale": True, "min_confidence": 0.3}


def test_the_timing_rows_of_a_variant_and_of_an_ensemble_follow_the_benchmark_files(ensemble):
    assert params.timing_networks(ensemble, "tiny", "mse") == {"trained": [""], "computed": [""]}
    assert params.timing_networks(ensemble, "tiny", "both") == {
        "trained": ["mse", "cosine"],
        "computed": ["mse", "cosine"],
    }
    benchmarks = targets.stage_benchmarks(ensemble, "tiny", "both", "main")
    assert [t.wildcards["variant"] for t in benchmarks["train"]] == ["mse", "cosine"]
    assert [t.wildcards["variant"] for t in benchmarks["inference"]] == ["mse", "cosine"]
    assert all(t.output is None for ts in benchmarks.values() for t in ts)  # benchmark files
    registered = [t.wildcards for t in benchmarks["registration"]]
    assert [(w["source"], w["run"], w["direction"]) for w in registered] == jobs.registration_jobs(
        ensemble, "tiny", "both"
    )


def test_a_model_file_has_no_training_row_and_no_training_job(tmp_path):
    model = tmp_path / "comir.pt"
    model.touch()
    config = tiny(filed={"model_file": str(model)}, both={"ensemble": ["filed", "mse"]})
    assert params.timing_networks(config, "tiny", "both") == {"trained": ["mse"], "computed": ["filed", "mse"]}
    assert params.timing_networks(config, "tiny", "filed") == {"trained": [], "computed": [""]}
    assert targets.model(config, "tiny", "filed") == str(model)  # a path, not a job's output
    trained = {t.wildcards["variant"] for t in targets.final_targets(config) if t.rule == "train"}
    assert trained == {"mse", "cosine"}


def test_a_variant_with_model_from_uses_and_reads_its_sources_networks():
    config = tiny(c4={"model_from": "cosine", "inference": {"c4_average": True}})
    assert targets.model(config, "tiny", "c4") == Target("train", "model", {"dataset": "tiny", "variant": "cosine"})
    assert params.inference_params(config, "tiny", "c4")["c4_average"] is True
    assert params.network_input_modalities(config, "tiny", "c4") == params.image_modalities(config, "tiny")


# --- targets ---------------------------------------------------------------------------------


def test_combinations_follow_snakemakes_expand_order():
    found = targets.combinations("r", ["a", "b"], dataset="d", variant=["v1", "v2"], batch=range(2))
    assert [(t.output, t.wildcards["variant"], t.wildcards["batch"]) for t in found] == [
        (output, variant, batch) for output in "ab" for variant in ("v1", "v2") for batch in (0, 1)
    ]
    assert all(t.wildcards["dataset"] == "d" for t in found)
    assert targets.combinations("r", [0], job=[]) == []
    assert targets.combinations("r", ["x", "y"]) == [Target("r", "x", {}), Target("r", "y", {})]


def test_registration_inputs_by_source_kind(ensemble):
    images = targets.registration_images(ensemble, "tiny", "both", "main")
    assert [t.wildcards["variant"] for t in images] == ["mse", "cosine"]  # a list: each member's CoMIRs
    assert targets.registration_images(ensemble, "tiny", "original", "main") == targets.testset_images("tiny", "main")
    assert targets.registration_images(ensemble, "tiny", "drit", "main").rule == "translate"
    assert targets.registration_originals(ensemble, "tiny", "both", "main", "cascade") == Target(
        "build_testset", "images", {"dataset": "tiny", "testset": "main"}
    )
    assert targets.registration_originals(ensemble, "tiny", "mse", "main", "sift") == []


def test_a_deformation_test_set_gives_the_truth_to_its_registrations_and_a_tre_evaluation(config):
    changed = copy.deepcopy(config)
    dataset = changed["datasets"]["tiny"]
    dataset["testsets"]["deformed"] = {**dataset["testsets"]["main"], "deformation": {"max_displacement_px": 2}}
    stage = {"method": "bspline", "params": {"grid_spacing_px": 24}}
    dataset["registration"]["cascade-bspline"] = {**dataset["registration"]["cascade"], "deformable": stage}
    dataset["evaluation"]["tre_thresholds_px"] = [0.5]
    changed = validate_config(changed)
    assert jobs.deformation_testsets(changed, "tiny") == ["deformed"]
    assert targets.registration_truth(changed, "tiny", "main") == []
    assert targets.registration_truth(changed, "tiny", "deformed") == targets.testset_images("tiny", "deformed")
    found = targets.final_targets(changed)
    for variant in ("mse", "cosine"):
        where = {"dataset": "tiny", "variant": variant, "testset": "deformed"}
        assert all(Target("evaluate_tre", output, where) in found for output in ("markdown", "wilcoxon_md", "ecdf"))
    assert not any(t.rule == "evaluate_tre" and t.wildcards["testset"] == "main" for t in found)
    # The stage enters its run's params only; the TRE thresholds the TRE evaluation's only.
    assert params.registration_params(changed, "tiny", "mse", "cascade-bspline")["deformable"] == {
        "method": "bspline", "params": {"grid_spacing_px": 24}
    }  # the stage as configured (validation filled in save_fields, which is not the registration's)
    assert params.registration_params(changed, "tiny", "mse", "cascade") == params.registration_params(
        config, "tiny", "mse", "cascade"
    )
    for build in (params.statistics_settings, params.comparison_settings):
        assert build(changed, "tiny") == build(config, "tiny")
    assert params.tre_settings(changed, "tiny") == {"failure_fraction": 0.12, "tre_thresholds_px": [0.5]}
    # A deformable run is not calibrated: a model file keys calibrations by method and parameters.
    assert jobs.calibrated_runs(with_confidence(changed), "tiny") == ["cascade", "sift"]


def test_a_deformable_stage_with_save_fields_is_rule_register_fields_with_the_same_params(config):
    changed = copy.deepcopy(config)
    registration = changed["datasets"]["tiny"]["registration"]
    stage = {"method": "demons", "params": {"iterations": 5}}
    registration["cascade-demons"] = {**registration["cascade"], "deformable": stage}
    registration["cascade-fields"] = {**registration["cascade"], "deformable": {**stage, "save_fields": True}}
    validated = validate_config(copy.deepcopy(changed))
    assert validated["datasets"]["tiny"]["registration"]["cascade-demons"]["deformable"]["save_fields"] is False
    assert jobs.registration_runs(validated, "register_fields") == ["cascade-fields"]
    assert jobs.registration_runs(validated, "register") == ["cascade", "cascade-demons", "mi", "sift"]
    # save_fields is the rule's output, not the registration: the run's params are those without it.
    fields, plain = (params.registration_params(validated, "tiny", "mse", f"cascade-{r}") for r in ("fields", "demons"))
    assert fields == plain and fields["deformable"] == stage
    changed["datasets"]["other"] = copy.deepcopy(changed["datasets"]["tiny"])
    changed["datasets"]["other"]["registration"]["cascade-fields"]["deformable"]["save_fields"] = False
    with pytest.raises(ConfigError, match="cascade-fields: the name is a deformable stage with save_fields in one"):
        validate_config(changed)


def test_the_default_target_of_the_tiny_configuration(config):
    found = targets.final_targets(config)
    assert len(found) == len({repr(target) for target in found}) == 40
    by_rule = {}
    for target in found:
        by_rule.setdefault(target.rule, []).append(target)
    assert {rule: len(ts) for rule, ts in by_rule.items()} == {
        "train": 2,  # the loss curves of both variants
        "compute_comirs": 2,
        "agreement": 2,
        "evaluate": 10,  # 5 tables and figures x 2 variants
        "timing": 2,
        "compare_variants": 3,
        "equivariance": 6,
        "equivariance_comparison": 1,
        "reproducibility": 2,
        "translation_examples": 2,
        "train_translation": 3,
        "summarise_pairs": 2,
        "evaluate_apply": 3,  # both apply jobs have known transforms (a test set's)
    }
    assert Target("timing", "markdown", {"dataset": "tiny", "variant": "cosine", "testset": "main"}) in found
    assert found[0] == Target("train", "plot", {"dataset": "tiny", "variant": "cosine"})  # sorted


def test_an_ensemble_is_evaluated_and_timed_but_has_no_networks_comirs_or_calibration(ensemble):
    config = with_confidence(ensemble)
    found = targets.final_targets(config)
    rules = {t.rule for t in found if t.wildcards.get("variant") == "both"}
    assert rules == {"evaluate", "timing"}
    calibrated = {(t.wildcards["variant"], t.wildcards["run"]) for t in found if t.rule == "calibrate"}
    assert calibrated == {(v, r) for v in ("mse", "cosine") for r in ("cascade", "sift")}
    judged = {t.wildcards["testset"] for t in found if t.rule == "evaluate_confidence"}
    assert judged == {"main"}  # every test set but the calibration's


def test_pools_read_their_datasets_registrations_in_order():
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["datasets"]["other"] = copy.deepcopy(config["datasets"]["tiny"])
    config["datasets"]["tiny"]["variants"]["both"] = {"ensemble": ["cosine", "mse"]}
    config["datasets"]["other"]["variants"]["both"] = {"ensemble": ["mse", "cosine"]}
    config["pools"] = {"folds": {"datasets": ["other", "tiny"], "variant": "both"}}
    config = validate_config(config)
    pooled = jobs.pool_jobs(config, "folds")
    assert [dataset for dataset, *_ in pooled] == params.pool_datasets(config, "folds")
    assert pooled == [("other", *job) for job in jobs.registration_jobs(config, "other", "both")] + [
        ("tiny", *job) for job in jobs.registration_jobs(config, "tiny", "both")
    ]
    assert [t.wildcards["dataset"] for t in targets.pool_registrations(config, "folds")] == params.pool_datasets(
        config, "folds"
    )
    patches = targets.pool_patches(config, "folds")
    assert [t.wildcards["variant"] for t in patches["comirs"]] == ["mse", "cosine"]  # each ensemble's first member


def test_an_apply_job_on_a_test_set_reads_its_export_and_a_folder_job_its_files(config, tmp_path):
    pairs, truth = targets.apply_testset_pairs(config, "rigid")
    assert pairs.wildcards == truth.wildcards == {"dataset": "tiny", "testset": "main", "reference": "A"}
    assert targets.apply_pairs(config, "rigid") == [pairs]
    assert targets.apply_truth(config, "rigid") == truth
    assert targets.apply_model(config, "rigid") == Target("train", "model", {"dataset": "tiny", "variant": "mse"})
    assert [t.wildcards["batch"] for t in targets.apply_batches(config, "rigid")] == [0, 1]
    for slot in ("fibres", "stain"):
        (tmp_path / "pairs" / slot).mkdir(parents=True)
        (tmp_path / "pairs" / slot / "p1.tif").touch()
    (tmp_path / "pairs" / "notes.txt").touch()
    changed = copy.deepcopy(config)
    changed["apply"]["rigid"].update(testset=None, pairs=str(tmp_path / "pairs"))
    assert targets.apply_pairs(changed, "rigid") == [
        str(tmp_path / "pairs"),
        str(tmp_path / "pairs" / "fibres" / "p1.tif"),
        str(tmp_path / "pairs" / "stain" / "p1.tif"),
    ]
    assert targets.apply_truth(changed, "rigid") == []
    assert jobs.evaluated_apply_jobs(changed) == ["similarity"]


def ensemble_apply_job(**changes) -> dict:
    """The tiny configuration with its ensemble variant ``both`` and the apply job ``rigid`` changed."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["datasets"]["tiny"]["variants"]["both"] = {"ensemble": ["mse", "cosine"]}
    config["apply"]["rigid"].update(changes)
    return config


def test_an_apply_job_on_an_ensemble_reads_every_members_model_file_in_order():
    config = validate_config(ensemble_apply_job(model={"dataset": "tiny", "variant": "both"}))
    members = [Target("train", "model", {"dataset": "tiny", "variant": v}) for v in ("mse", "cosine")]
    assert targets.apply_model(config, "rigid") == members
    assert targets.apply_model(with_confidence(config), "rigid") == members  # an ensemble has no calibration
    files = validate_config(ensemble_apply_job(model={"file": ["a.pt", "b.pt"]}))
    assert targets.apply_model(files, "rigid") == ["a.pt", "b.pt"]
    assert targets.apply_model(validate_config(ensemble_apply_job(model={"file": "a.pt"})), "rigid") == "a.pt"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "sift"}, "apply/rigid/method: 2 models .an ensemble. register with cascade only, not 'sift'"),
        ({"min_confidence": 0.5}, "apply/rigid/min_confidence: 2 models .an ensemble. have no calibrated confidence"),
    ],
)
def test_an_apply_job_on_an_ensemble_registers_with_the_cascade_and_no_confidence(changes, message):
    for model in ({"dataset": "tiny", "variant": "both"}, {"file": ["a.pt", "b.pt"]}):
        with pytest.raises(ConfigError, match=message):
            validate_config(ensemble_apply_job(model=model, **changes))

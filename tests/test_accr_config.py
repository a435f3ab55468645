"""ACCR's configuration (the accr section, method accr) and the plain functions behind its rules.

The schema and the rules on the tiny workflow configuration, and comir.workflow's jobs, params and
targets of ACCR (workflow/rules/accr.smk), without running Snakemake: milliseconds each. The rules
themselves run in tests/test_workflow_accr.py.
"""

import copy

import pytest
import yaml

from comir.config.schema import ConfigError
from comir.config.validate import validate_config
from comir.register import JOB_PARAMS, check_model_params, make_method, with_model
from comir.workflow import jobs, params, targets
from comir.workflow.targets import Target
from helpers.project import TINY_CONFIG

ACCR = {"model": {"patch": 8, "embed_dim": 16}, "training": {"steps": 5, "patch_size": 32, "device": "cpu"}}


def tiny_accr(accr=ACCR, runs=None, **variants) -> dict:
    """The tiny configuration (.test/config.yaml) with an accr section, runs and variants added; not validated."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    dataset = config["datasets"]["tiny"]
    if accr is not None:
        dataset["accr"] = copy.deepcopy(accr)
    dataset["registration"].update({"accr": {"method": "accr", "params": {"max_px": 64}}} if runs is None else runs)
    dataset["variants"].update(variants)
    return config


@pytest.fixture(scope="module")
def config():
    """mse, cosine, two ACCR ablations on mse's networks (one with other ACCR settings) and an ensemble."""
    return validate_config(
        tiny_accr(
            c4={"model_from": "mse", "inference": {"c4_average": True}},
            nopos={"model_from": "mse", "accr": {"model": {"positional": False}}},
            both={"ensemble": ["mse", "cosine"]},
        )
    )


# --- the schema and the rules -------------------------------------------------------------------


def test_accr_is_off_unless_configured_and_its_defaults_are_filled_in():
    plain = validate_config(yaml.safe_load(TINY_CONFIG.read_text()))
    assert plain["datasets"]["tiny"]["accr"] is None
    assert jobs.accr_variants(plain, "tiny") == [] and jobs.registration_runs(plain, "register_accr") == []
    assert not [t for t in targets.final_targets(plain) if t.rule in {"train_accr", "accr_attention"}]
    accr = validate_config(tiny_accr())["datasets"]["tiny"]["accr"]
    assert accr["model"] == {"patch": 8, "key_stride": 4, "embed_dim": 16, "heads": 4, "transform": "rigid",
                             "field": False, "positional": True, "attention": True, "match_radius": 2}  # fmt: skip
    assert accr["training"]["reference_slots"] == ["A", "B"] and accr["training"]["max_linear"] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["accr"]["model"].update(tokens=8), r"accr/model: unknown key\(s\): 'tokens'"),
        (lambda c: c["accr"]["training"].update(epochs=2), r"accr/training: unknown key\(s\): 'epochs'"),
        (lambda c: c["accr"].update(encoders="mse"), r"accr: unknown key\(s\): 'encoders'"),
        (lambda c: c["variants"]["mse"].update(accr={"model": {"bogus": 1}}), r"accr/model: unknown key\(s\): 'bogus'"),
        (lambda c: c["accr"]["model"].update(transform="similarity"), "accr/model/transform"),
        (lambda c: c["accr"]["model"].update(key_stride=3), "accr: ACCRConfig.key_stride 3 must divide patch 8"),
        (lambda c: c["accr"]["training"].update(patch_size=36), "accr: patch_size 36 must be divisible by the model"),
        (lambda c: c["accr"]["training"].update(max_linear=0.1), "accr: max_linear .* needs an affine head"),
        (lambda c: c["variants"]["cosine"].update(accr={"model": {"heads": 3}}),
         "variants/cosine/accr: ACCRConfig.embed_dim 16 must be divisible by heads"),
        (lambda c: c.update(accr=None), "registration/accr: method accr registers with the variant's ACCR model"),
        (lambda c: c["registration"]["accr"].update(inputs=["original"]), "registration/accr/inputs: accr registers"),
        (lambda c: c["registration"]["accr"].update(deformable={"method": "demons"}),
         "registration/accr/deformable: an ACCR run has no deformable stage"),
        (lambda c: c["registration"]["accr"]["params"].update(model="accr.pt"),
         r"registration/accr/params: unknown parameter\(s\) 'model' for registration method 'accr'; accepted: max_px"),
        (lambda c: c["registration"]["accr"]["params"].update(refine_iterations=3), "'refine_iterations'"),
        (lambda c: c["accr"]["model"].update(match_radius=-1), "accr/model/match_radius"),
    ],
)
def test_bad_accr_settings_are_rejected_at_parse_time_naming_the_key(change, message):
    config = tiny_accr()
    change(config["datasets"]["tiny"])
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_a_run_name_is_accr_in_every_dataset_or_in_none():
    config = tiny_accr()
    other = copy.deepcopy(config["datasets"]["tiny"])
    other["registration"]["accr"] = {"method": "sift"}
    config["datasets"]["other"] = other
    with pytest.raises(ConfigError, match="registration/accr: the name is a method with a model of its own"):
        validate_config(config)


def test_an_apply_job_with_accr_needs_the_variants_accr_model():
    config = tiny_accr()
    config["apply"]["rigid"].update(method="accr", params={"max_px": 64})
    valid = validate_config(copy.deepcopy(config))
    assert targets.apply_model(valid, "rigid") == Target("train_accr", "model", {"dataset": "tiny", "variant": "mse"})
    assert params.apply_settings(valid, "rigid")["method"] == "accr"
    del config["datasets"]["tiny"]["accr"]
    config["datasets"]["tiny"]["registration"].pop("accr")
    with pytest.raises(ConfigError, match="apply/rigid/method: accr registers with the variant's ACCR model"):
        validate_config(config)


def test_the_job_gives_a_model_method_its_model_file_and_reference_slot():
    given = with_model({"max_px": 64}, "results/accr.pt", "B")
    assert given == {"max_px": 64, "model": "results/accr.pt", "reference_slot": "B"}
    assert set(JOB_PARAMS) == set(given) - {"max_px"}
    check_model_params("accr", {"max_px": 64, "refine": "ecc"})  # names only: no model file needed
    with pytest.raises(ValueError, match="unknown parameter.*'reference_slot'"):
        check_model_params("accr", given)
    with pytest.raises(ValueError, match="invalid parameters for registration method 'accr'"):
        make_method("accr", {"max_px": 64}, seed=0)  # a method without its model file


# --- jobs, params and targets -------------------------------------------------------------------


def test_every_variant_with_networks_gets_an_accr_model_shared_where_networks_and_settings_agree(config):
    assert jobs.accr_variants(config, "tiny") == ["mse", "cosine", "c4", "nopos"]  # not the ensemble
    models = {v: jobs.accr_model_variant(config, "tiny", v) for v in jobs.accr_variants(config, "tiny")}
    assert models == {"mse": "mse", "cosine": "cosine", "c4": "mse", "nopos": "nopos"}
    assert jobs.accr_trained_variants(config, "tiny") == ["cosine", "mse", "nopos"]
    shared = Target("train_accr", "model", {"dataset": "tiny", "variant": "mse"})
    assert targets.accr_model(config, "tiny", "c4") == shared
    figures = [t for t in targets.dataset_targets(config, "tiny") if t.rule == "accr_attention"]
    assert figures == [Target("accr_attention", "figure", {"dataset": "tiny", "variant": v, "testset": "main"})
                       for v in ("cosine", "mse", "nopos")]  # fmt: skip


def test_accr_runs_are_the_register_accr_rules_calibrated_on_the_variants_comirs(config):
    assert jobs.registration_runs(config, "register_accr") == ["accr"]
    assert jobs.registration_runs(config, "register") == ["cascade", "mi", "sift"]
    registered = jobs.registration_jobs(config, "tiny", "nopos")
    assert ("nopos", "accr", "A_to_B") in registered and ("original", "accr", "A_to_B") not in registered
    assert not [job for job in jobs.registration_jobs(config, "tiny", "both") if job[1] == "accr"]  # an ensemble
    # A stage-2 ablation (nopos: mse's networks, other ACCR settings) has mse's CoMIRs: its own rows are
    # its ACCR runs'; the other runs on them are mse's (not repeated under its name). An inference
    # ablation (c4) has CoMIRs of its own, registered with every run.
    assert [jobs.comir_twin(config, "tiny", v) for v in ("mse", "c4", "nopos", "both")] == [None, None, "mse", None]
    on_comirs = {
        variant: {run for source, run, _ in jobs.registration_jobs(config, "tiny", variant) if source == variant}
        for variant in ("mse", "c4", "nopos")
    }
    assert on_comirs == {"mse": {"accr", "cascade", "sift"}, "c4": {"accr", "cascade", "sift"}, "nopos": {"accr"}}
    originals = [job for job in jobs.registration_jobs(config, "tiny", "nopos") if job[0] == "original"]
    assert originals == [job for job in jobs.registration_jobs(config, "tiny", "mse") if job[0] == "original"]
    assert ("nopos", "cascade", "A_to_B") not in jobs.comparison_jobs(config, "tiny")
    alias = validate_config(tiny_accr(alias={"model_from": "mse"}))  # nothing differs: registered as its own
    assert jobs.comir_twin(alias, "tiny", "alias") is None
    calibrated = copy.deepcopy(config)
    dataset = calibrated["datasets"]["tiny"]
    dataset["testsets"]["calibration"] = {**dataset["testsets"]["main"], "split": "val"}
    dataset["confidence"] = {"testset": "calibration", "success_fraction": 0.05, "false_accept_rate": 0.05}
    calibrated = validate_config(calibrated)
    # ACCR's results are calibrated like every run on CoMIRs, and judged on the variant's CoMIRs (it
    # registers the originals); a stage-2 ablation calibrates only its ACCR runs, judged on its twin's CoMIRs.
    assert jobs.calibrated_runs(calibrated, "tiny") == ["accr", "cascade", "sift"]
    assert jobs.calibrated_runs(calibrated, "tiny", "mse") == ["accr", "cascade", "sift"]
    assert jobs.calibrated_runs(calibrated, "tiny", "nopos") == ["accr"]
    assert targets.registration_evidence(calibrated, "tiny", "nopos", "main", "accr") == targets.comirs(
        "tiny", "mse", "main"
    )
    assert targets.registration_evidence(calibrated, "tiny", "mse", "main", "cascade") == []  # on what it registers
    assert targets.registration_evidence(config, "tiny", "mse", "main", "accr") == []  # no confidence section
    images = targets.calibrate_input(calibrated, "tiny", "nopos", "accr")["images"]
    assert images == [targets.comirs("tiny", "mse", "calibration")]
    assert params.calibrated_run_specs(calibrated, "tiny", "nopos") == [{"method": "accr", "params": {"max_px": 64}}]


def test_each_accr_rule_gets_only_what_it_uses(config):
    trained = params.accr_params(config, "tiny", "nopos")
    assert set(trained) == {"model", "training"} and trained["model"]["positional"] is False
    assert params.accr_params(config, "tiny", "mse")["model"]["positional"] is True
    assert list(trained["model"]) == sorted(trained["model"])  # canonical: key order reruns nothing
    assert params.accr_gpu(config, "tiny", "mse") == 0
    attention = params.attention_params(config, "tiny", "mse")
    assert attention == {"direction": "B_to_A", "modalities": params.network_input_modalities(config, "tiny", "mse")}
    run = params.registration_params(config, "tiny", "nopos", "accr")
    assert run == {"method": "accr", "params": {"max_px": 64}}
    assert params.input_label(config, "tiny", "nopos") == "comir"
    assert params.registration_gpu(config, "tiny", "nopos", "accr") == 0
    on_gpu = validate_config(tiny_accr(runs={"accr": {"method": "accr", "params": {"max_px": 64, "device": "cuda"}}}))
    assert params.registration_gpu(on_gpu, "tiny", "mse", "accr") == 1


def test_an_accr_setting_changes_the_params_of_that_variants_model_only(config):
    changed = copy.deepcopy(config)
    changed["datasets"]["tiny"]["variants"]["nopos"]["accr"]["training"] = {"steps": 7}
    changed = validate_config(changed)
    for variant in ("mse", "cosine"):
        assert params.accr_params(changed, "tiny", variant) == params.accr_params(config, "tiny", variant)
        assert params.network_params(changed, "tiny", variant) == params.network_params(config, "tiny", variant)
    assert params.accr_params(changed, "tiny", "nopos")["training"]["steps"] == 7

import copy

import pytest

from comir.config.schema import ConfigError
from comir.config.validate import load_config, validate_config
from comir.config.variants import variant_config
from helpers.project import ROOT, demo

# Shipped overlays and the configuration they are merged onto (--configfile base overlay).
OVERLAYS = {
    "bfshg-apply.yaml": "bfshg-dev.yaml",
    "bfshg-deformable-elastix.yaml": "bfshg-deformable.yaml",
    "bfshg-deformable-ensemble.yaml": "bfshg-deformable.yaml",
    "bfshg-dev-accr.yaml": "bfshg-dev.yaml",
    "bfshg-gan.yaml": "bfshg-dev.yaml",
    "demo-gan.yaml": "demo.yaml",
}


def test_the_cross_validation_folds_test_every_core_once_and_train_on_the_others():
    config = load_config(ROOT / "config" / "bfshg-cv.yaml")
    folds = [config["datasets"][name]["pairs"]["split"] for name in config["pools"]["bfshg-cv"]["datasets"]]
    tested = [core for split in folds for core in split["test"]]
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 8
    for split in folds:
        cores = split["train"] + split["val"] + split["test"]
        assert len(cores) == len(set(cores)) == 8  # no core both trained on and tested


def slide_family(core: str) -> str:
    """The slide family of a BF/SHG core id: 1B_A1 -> 1B, 2B_D2 -> 2B, X04Y03 -> X, PANC16 -> PANC."""
    return next(family for family in ("1B", "2B", "PANC", "X") if core.startswith(family))


def test_the_slide_benchmark_tests_each_family_once_on_networks_that_never_saw_it():
    config = load_config(ROOT / "config" / "bfshg-slides.yaml")
    datasets = config["pools"]["bfshg-slides"]["datasets"]
    splits = {name: config["datasets"][name]["pairs"]["split"] for name in datasets}
    tested = [core for split in splits.values() for core in split["test"]]
    assert len(tested) == len(set(tested)) == 14  # every core of both folders, once
    assert sorted({slide_family(core) for core in tested}) == ["1B", "2B", "PANC", "X"]
    for name, split in splits.items():
        families = {slide_family(core) for core in split["test"]}
        seen = {slide_family(core) for core in split["train"] + split["val"]}
        assert families == {name.removeprefix("slides-")} and not families & seen
        assert len(split["train"] + split["val"] + split["test"]) == 14
        # 18 cases per test core, as in the cross-validation, so every core weighs alike in the pool
        strata = config["datasets"][name]["testsets"]["main"]["strata"]
        assert sum(s["count"] for s in strata) == 18 * len(split["test"])


def test_the_accr_comparison_tests_unseen_slides_apart_from_the_training_slide():
    config = load_config(ROOT / "config" / "bfshg-accr.yaml")
    bfshg = config["datasets"]["bfshg-accr"]
    split, testsets = bfshg["pairs"]["split"], bfshg["testsets"]
    seen = {slide_family(core) for core in split["train"] + split["val"]}
    assert seen == {"1B"}
    assert set(testsets["main"]["images"]) | set(testsets["unseen"]["images"]) == set(split["test"])
    assert {slide_family(core) for core in testsets["main"]["images"]} == seen
    assert {slide_family(core) for core in testsets["unseen"]["images"]} == {"2B", "PANC", "X"}
    # The same recipe, cases and deformation aside: the two tables differ by the slides alone.
    assert testsets["deformed"]["images"] == testsets["main"]["images"]
    for name in ("unseen", "deformed"):
        recipe = {k: v for k, v in testsets[name].items() if k not in ("images", "deformation")}
        assert recipe == {k: v for k, v in testsets["main"].items() if k != "images"}
    # Both datasets have the same ablations and runs.
    zurich = config["datasets"]["zurich-accr"]
    assert list(zurich["variants"]) == list(bfshg["variants"]) and list(zurich["registration"]) == list(
        bfshg["registration"]
    )


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        ({"datasets": ["synthetic", "nope"]}, "'nope' is not a dataset"),
        ({"datasets": ["synthetic", "second"], "variant": "mse"}, "has no variant 'mse'"),
        ({"datasets": ["synthetic"]}, "is too short"),
    ],
)
def test_bad_pools_are_rejected(pool, message):
    config = demo()
    config["datasets"]["second"] = copy.deepcopy(config["datasets"]["synthetic"])
    config["pools"] = {"p": pool}
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_every_shipped_config_validates_and_gets_defaults():
    for path in sorted((ROOT / "config").glob("*.yaml")):
        base = [ROOT / "config" / OVERLAYS[path.name]] if path.name in OVERLAYS else []
        config = load_config(*base, path)
        for dataset in config["datasets"].values():
            expected = {"testsets", "variants", "model", "training", "inference", "evaluation", "registration"}
            assert expected <= set(dataset)


def test_a_variant_gets_the_defaults_of_the_sections_it_adds():
    config = demo()
    dataset = config["datasets"]["synthetic"]
    dataset["variants"] = {
        "elastic": {"training": {"elastic": {"probability": 0.5}}},
        "stain": {"training": {"augmentation": {"B": {"stain": {"probability": 0.8}}}}},
    }
    validate_config(config)
    assert variant_config(dataset, "elastic")["training"]["elastic"] == {"probability": 0.5, "alpha": 4.0, "sigma": 8.0}
    assert variant_config(dataset, "stain")["training"]["augmentation"]["B"]["stain"]["scale"] == 0.05


def test_the_ablation_configs_give_each_switch_a_variant():
    config = load_config(ROOT / "config" / "ablations.yaml")
    variants = config["datasets"]["bfshg-ablations"]["variants"]
    merged = {name: variant_config(config["datasets"]["bfshg-ablations"], name) for name in variants}
    assert merged["sobel-input"]["model"]["input_filters"] == ["sobel"]
    assert merged["third-view"]["training"]["third_view"] == {"from": "A", "view": "haematoxylin"}
    assert merged["shared-blocks"]["training"]["shared_blocks"] == 1
    assert merged["stain-normalization"]["modalities"]["A"]["stain_normalization"] == "macenko"
    assert merged["stain-normalization"]["modalities"]["A"]["channels"] == 3  # the rest kept
    base = merged["base"]
    assert "input_filters" not in base["model"]
    switches = {"elastic", "third_view", "structure_penalty", "self_similarity", "shared_blocks"}
    assert not switches & set(base["training"])
    assert all("stain_normalization" not in spec for spec in base["modalities"].values())
    strips = load_config(ROOT / "config" / "zurich-dev.yaml")["datasets"]["zurich-dev"]["zenodo"]["strips"]
    assert strips["train"][1] <= strips["val"][0] and strips["val"][1] <= strips["test"][0]  # no overlap


def test_paper_defaults_are_filled_in():
    modalities = {"A": {"name": "a", "channels": 1}, "B": {"name": "b", "channels": 3}}
    config = validate_config({"datasets": {"x": {"source": "synthetic", "modalities": modalities}}})
    dataset = config["datasets"]["x"]
    assert dataset["training"]["optimizer"] == "sgd" and dataset["training"]["learning_rate"] == 0.01
    assert dataset["training"]["batch_size"] == 32 and dataset["training"]["temperature"] == 0.5
    assert dataset["testsets"]["main"]["patch_size"] == 834
    assert [s["count"] for s in dataset["testsets"]["main"]["strata"]] == [45, 45, 44]
    assert dataset["variants"] == {"default": {}}
    assert dataset["model"]["down_blocks"] == [4, 4, 4, 4, 4, 4]
    assert config["seed"] == 0


def test_defaults_are_not_shared_between_datasets():
    config = demo()
    config["datasets"]["second"] = copy.deepcopy(config["datasets"]["synthetic"])
    assert "evaluation" not in config["datasets"]["synthetic"]  # both take the default
    validate_config(config)
    config["datasets"]["synthetic"]["evaluation"]["success_fractions"].append(0.5)
    assert config["datasets"]["second"]["evaluation"]["success_fractions"] == [0.01, 0.05]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.update(sead=1), "unknown key.*sead"),
        (lambda c: c["datasets"]["synthetic"]["training"].update(lerning_rate=1),
         "datasets/synthetic/training: unknown key.*lerning_rate"),
        (lambda c: c["datasets"]["synthetic"]["training"].update(batch_size="16"),
         "batch_size: '16' is not of type 'integer'"),
        (lambda c: c["datasets"]["synthetic"].update(source="figshare"), "source: 'figshare' is not one of"),
        (lambda c: c["datasets"]["synthetic"].update(source="zenodo"), "source 'zenodo' needs a 'zenodo' section"),
        (lambda c: c["datasets"]["synthetic"]["testsets"]["main"].update(recipe="prebuilt"),
         "recipe 'prebuilt' needs a record that ships"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"cos": {"training": {"critc": "cosine"}}}),
         "variants/cos/training: unknown key.*critc"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"cos": {"training": {"critic": "dot"}}}),
         "variants/cos/training/critic: 'dot' is not one of"),
        (lambda c: c["datasets"]["synthetic"].update(
            variants={"big": {"model": {"down_blocks": [1, 1, 1, 1, 1, 1, 1]}}}
        ),
         "variants/big/training/patch_size: 64 is not divisible by 2\\^7"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"x": {"testsets": {}}}),
         "variants/x: unknown key.*testsets"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"original": {}}),
         "should not be valid|is not allowed|original"),
        (lambda c: c["datasets"]["synthetic"].setdefault("variants", {"default": {}}).update(c4={"model_from": "mse"}),
         "variants/c4/model_from: 'mse' is not a variant of this dataset"),
        (lambda c: c["datasets"]["synthetic"].setdefault("variants", {"default": {}}).update(c4={"model_from": "c4"}),
         "variants/c4/model_from: 'c4' must be a variant that trains its own networks"),
        (lambda c: c["datasets"]["synthetic"].setdefault("variants", {"default": {}}).update(
            c4={"model_from": "default", "training": {"epochs": 2}}
        ),
         "variants/c4/model_from: a variant that uses 'default'.s networks cannot override model, training or modal"),
        (lambda c: c["datasets"]["synthetic"].setdefault("variants", {"default": {}}).update(
            c4={"model_from": "default", "modalities": {"B": {"stain_normalization": "macenko"}}}
        ),
         "variants/c4/model_from: a variant that uses 'default'.s networks cannot override model, training or modal"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"mine": {"model_file": "no/such/comir.pt"}}),
         "variants/mine/model_file: 'no/such/comir.pt' is not a file"),
        (lambda c: c["datasets"]["synthetic"].setdefault("variants", {"default": {}}).update(
            mine={"model_file": __file__, "training": {"epochs": 2}}
        ),
         "variants/mine/model_file: a variant that uses a model file cannot also set training"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"both": {"ensemble": ["default", "nope"]}}),
         "(?s)variants/both/ensemble: 'default' is not another variant.*'nope' is not another variant"),
        (lambda c: c["datasets"]["synthetic"].update(
            variants={"a": {}, "b": {}, "both": {"ensemble": ["a", "b"], "training": {"epochs": 2}}}
        ),
         "variants/both/ensemble: an ensemble has no networks of its own; it cannot also set training"),
        (lambda c: c["datasets"]["synthetic"].update(
            variants={"a": {}, "b": {}, "ab": {"ensemble": ["a", "b"]}, "abab": {"ensemble": ["ab", "a"]}}
        ),
         "variants/abab/ensemble: 'ab' is an ensemble itself"),
        (lambda c: c["datasets"]["synthetic"].update(
            variants={"a": {}, "b": {}, "ab": {"ensemble": ["a", "b"]}, "c4": {"model_from": "ab"}}
        ),
         "variants/c4/model_from: 'ab' must be a variant that trains its own networks"),
        (lambda c: c["datasets"]["synthetic"]["registration"].pop("cascade")
         and c["datasets"]["synthetic"].update(variants={"a": {}, "b": {}, "ab": {"ensemble": ["a", "b"]}}),
         "variants/ab/ensemble: no registration run on CoMIRs uses a method that registers an ensemble \\(cascade\\)"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"x": {"modalities": {"A": {"channels": 3}}}}),
         "variants/x/modalities/A: unknown key.*channels"),
        (lambda c: c["datasets"]["synthetic"].update(evaluation={"reference_variant": "base"}),
         "evaluation/reference_variant: 'base' is not a variant of this dataset"),
        (lambda c: c["datasets"]["synthetic"].update(variants={"x": {"modalities": {"C": {}}}}),
         "variants/x/modalities.*'C'"),
        (lambda c: c["datasets"]["synthetic"]["registration"].update(ca={"method": "curvealign", "inputs": ["comir"]}),
         "curvealign.*originals only"),
        (lambda c: c["datasets"]["synthetic"].update(confidence={"testset": "main"}),
         "confidence/testset: 'main' must be one of the dataset's test sets with split: val"),
        (lambda c: c["datasets"]["synthetic"].update(confidence={"testset": "nope"}),
         "confidence/testset: 'nope' must be one of"),
        (lambda c: c["datasets"]["synthetic"].update(confidence={"testset": "main", "false_accept_rate": 2}),
         "false_accept_rate: 2 is greater than the maximum of 1"),
        (lambda c: c["datasets"]["synthetic"]["testsets"]["main"].update(split="train"),
         "split: 'train' is not one of"),
        (lambda c: c["datasets"]["synthetic"]["modalities"]["B"].update(channels=1)
         or c["datasets"]["synthetic"]["registration"].update(ca={"method": "curvealign", "inputs": ["original"]}),
         "curvealign needs one RGB"),
        (lambda c: c["datasets"]["synthetic"]["modalities"].pop("B"), "'B' is a required property"),
        (lambda c: c["datasets"]["synthetic"]["training"].update(patch_size=100),
         "patch_size: 100 is not divisible by 2\\^3 = 8"),
        (lambda c: c["datasets"]["synthetic"]["registration"]["sift"].update(method="surf"), "'surf' is not one of"),
        (lambda c: c["datasets"]["synthetic"].update(directions=["A_to_A"]), "'A_to_A' is not one of"),
        # Registration parameters are checked by each method at parse time, not when its job runs.
        (lambda c: c["datasets"]["synthetic"]["registration"]["mi"]["params"].update(bin=80),
         "registration/mi/params: unknown parameter.*'bin'.*'mi'; accepted: bins, "),
        (lambda c: c["datasets"]["synthetic"]["registration"]["sift"]["params"].update(ratio=2),
         "registration/sift/params: .*ratio must be in \\(0, 1\\], got 2"),
        (lambda c: c["datasets"]["synthetic"]["registration"]["fft"]["params"].update(seed=3),
         "registration/fft/params: unknown parameter.*'seed'"),
        (lambda c: c["datasets"]["synthetic"]["modalities"]["B"].update(max_value=0),
         "max_value: 0 is less than or equal"),
        # Deformation test sets and deformable runs (docs/explanation/deformable.md).
        (lambda c: c["datasets"]["synthetic"]["testsets"]["main"].update(
            deformation={"max_displacement_px": 3, "smothness_px": 40}
        ),
         "testsets/main/deformation: unknown key.*smothness_px"),
        (lambda c: c["datasets"]["synthetic"]["testsets"]["main"].update(deformation={"smoothness_px": 40}),
         "deformation: 'max_displacement_px' is a required property"),
        (lambda c: c["datasets"]["synthetic"]["testsets"]["main"].update(
            recipe="prebuilt", zenodo={"record": 1}, deformation={"max_displacement_px": 3}
        ),
         "testsets/main/deformation: a prebuilt test set is imported as it is"),
        (lambda c: c["datasets"]["synthetic"]["registration"]["cascade"].update(deformable={"method": "affine"}),
         "registration/cascade/deformable/method: 'affine' is not one of"),
        (lambda c: c["datasets"]["synthetic"]["registration"]["cascade"].update(
            deformable={"method": "bspline", "params": {"grid": 16}}
        ),
         "registration/cascade/params: unknown parameter.*'grid' for deformable method 'bspline'; accepted: grid_"),
        (lambda c: c["datasets"]["synthetic"]["registration"]["cascade"].update(
            deformable={"method": "bspline", "smoothing": 2}
        ),
         "registration/cascade/deformable: unknown key.*smoothing"),
        (lambda c: c["datasets"]["synthetic"]["registration"]["cascade"].update(
            deformable={"method": "elastix_bspline", "params": {"grid_spacing_px": 0}}
        ),
         "registration/cascade/params: deformable method 'elastix_bspline': grid_spacing_px must be finite and > 0"),
        (lambda c: c["datasets"]["synthetic"]["registration"].update(
            d={"method": "demons", "deformable": {"method": "bspline"}}
        ),
         "registration/d/params: 'demons' registers deformably on its own"),
        (lambda c: c["datasets"]["synthetic"].update(evaluation={"tre_thresholds_px": []}),
         "tre_thresholds_px: \\[\\] should be non-empty|tre_thresholds_px: \\[\\] is too short"),
    ],
)
def test_mistakes_are_reported_with_their_location(mutate, message):
    config = demo()
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_pairs_source_needs_a_split():
    modalities = {"A": {"name": "a", "channels": 1}, "B": {"name": "b", "channels": 1}}
    config = {"datasets": {"mine": {"source": "pairs", "modalities": modalities, "pairs": {"root": "x"}}}}
    with pytest.raises(ConfigError, match="fractions.*or explicit"):
        validate_config(config)
    config["datasets"]["mine"]["pairs"]["split"] = {"fractions": [0.5, 0.2, 0.2]}
    with pytest.raises(ConfigError, match="must sum to 1"):
        validate_config(config)


def test_a_test_set_names_images_of_its_own_split():
    modalities = {"A": {"name": "a", "channels": 1}, "B": {"name": "b", "channels": 1}}
    split = {"train": ["t0", "t1"], "val": ["v0"], "test": ["s0", "s1", "u0"]}
    testsets = {"seen": {"images": ["s0", "s1"]}, "unseen": {"images": ["u0"]}, "calibration": {"split": "val"}}
    pairs = {"root": "x", "split": split}
    dataset = {"source": "pairs", "modalities": modalities, "pairs": pairs, "testsets": testsets}
    validated = validate_config({"datasets": {"mine": dataset}})
    # Absent means every image of the split, and adds nothing to the other test sets' parameters.
    assert "images" not in validated["datasets"]["mine"]["testsets"]["calibration"]
    testsets["calibration"]["images"] = ["v0", "s0"]
    with pytest.raises(ConfigError, match=r"testsets/calibration/images: \['s0'\] not in the val split \(\['v0'\]\)"):
        validate_config({"datasets": {"mine": dataset}})
    testsets["calibration"]["images"] = []
    with pytest.raises(ConfigError, match="calibration/images: \\[\\] should be non-empty|is too short"):
        validate_config({"datasets": {"mine": dataset}})


def test_config_readme_documents_every_key_of_the_schema():
    from comir.config.reference import REFERENCE_MARKER, schema_reference

    text = (ROOT / "config" / "README.md").read_text()
    assert text.split(REFERENCE_MARKER, 1)[1].strip() == schema_reference().strip(), "run `make config-docs`"


def test_a_variant_overrides_only_what_it_names():
    config = demo()
    config["datasets"]["synthetic"]["variants"] = {
        "mse": {},
        "cosine": {"training": {"critic": "cosine", "temperature": 0.1}},
    }
    dataset = validate_config(config)["datasets"]["synthetic"]
    cosine, mse = variant_config(dataset, "cosine"), variant_config(dataset, "mse")
    assert cosine["training"]["critic"] == "cosine" and cosine["training"]["temperature"] == 0.1
    assert mse["training"]["critic"] == "mse" and mse["training"]["temperature"] == 0.5
    # Everything else is the dataset's own (non-default) setting, not the schema default.
    assert cosine["training"]["learning_rate"] == dataset["training"]["learning_rate"] == 0.001
    assert cosine["model"] == dataset["model"] and "variants" not in cosine
    with pytest.raises(KeyError, match="unknown variant 'sgd'"):
        variant_config(dataset, "sgd")


def test_a_problem_of_the_dataset_is_reported_once_not_again_per_variant():
    config = demo()
    config["datasets"]["synthetic"]["training"]["patch_size"] = 100
    config["datasets"]["synthetic"]["variants"] = {"mse": {}, "cosine": {"training": {"critic": "cosine"}}}
    with pytest.raises(ConfigError) as raised:
        validate_config(config)
    assert str(raised.value).count("is not divisible by") == 1
    assert "variants/" not in str(raised.value)


def test_an_overlay_is_merged_onto_its_base_like_snakemake_does():
    config = load_config(ROOT / "config" / "bfshg-dev.yaml", ROOT / "config" / "bfshg-apply.yaml")
    assert set(config["datasets"]["bfshg-dev"]["testsets"]) == {"main", "scaled"}  # added, not replaced
    assert config["datasets"]["bfshg-dev"]["testsets"]["scaled"]["scale_range"] == [0.9, 1.1]
    assert set(config["apply"]) == {"scaled-rigid", "scaled-similarity"}
    with pytest.raises(ConfigError, match="datasets/bfshg-dev: 'source' is a required property"):
        load_config(ROOT / "config" / "bfshg-apply.yaml")  # on its own, its dataset is a fragment


def test_a_sweep_generates_one_variant_per_combination():
    config = demo()
    dataset = config["datasets"]["synthetic"]
    dataset["sweeps"] = {"tau-critic": {"training.temperature": [0.1, 1], "training.critic": ["mse", "cosine"]}}
    validated = validate_config(copy.deepcopy(config))
    variants = validated["datasets"]["synthetic"]["variants"]
    assert set(variants) == {"default", "tau-critic-0p1-mse", "tau-critic-0p1-cosine", "tau-critic-1-mse",
                             "tau-critic-1-cosine"}  # fmt: skip
    assert variants["tau-critic-0p1-cosine"] == {"training": {"temperature": 0.1, "critic": "cosine"}}
    assert validate_config(validated)["datasets"]["synthetic"]["variants"] == variants  # idempotent


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"training.temperature": [-1.0]}, "variants/s--1p0/training/temperature"),
        ({"training.critic": ["bilinear"]}, "'bilinear' is not one of"),
        ({"evaluation.failure_fraction": [0.1]}, "does not match"),
        ({"training.temperature": ["a b"]}, "not a valid variant name"),
    ],
)
def test_a_bad_sweep_is_rejected_at_parse_time(sweep, message):
    config = demo()
    config["datasets"]["synthetic"]["sweeps"] = {"s": sweep}
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_a_sweep_variant_may_not_replace_a_hand_written_one():
    config = demo()
    config["datasets"]["synthetic"]["variants"] = {"s-mse": {"training": {"temperature": 2.0}}}
    config["datasets"]["synthetic"]["sweeps"] = {"s": {"training.critic": ["mse"]}}
    with pytest.raises(ConfigError, match="generates variant 's-mse', which is taken"):
        validate_config(config)


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        ({"modality": "A", "kind": "stain", "severity": 1},
         "datasets/synthetic/testsets/main/shift: shift kind 'stain' needs an RGB \\(3-channel\\) modality, "
         "modality A has 1 channel\\(s\\)"),
        ({"modality": "B", "kind": "sparsity", "severity": 1},
         "testsets/main/shift: shift kind 'sparsity' needs a single-channel modality, modality B has 3"),
        ({"modality": "B", "kind": "blur", "severity": 1}, "testsets/main/shift/kind: 'blur' is not one of"),
        ({"modality": "B", "kind": "gain", "severity": -1}, "shift/severity: -1 is less than the minimum of 0"),
        ({"modality": "B", "kind": "gain"}, "testsets/main/shift: 'severity' is a required property"),
        ({"modality": "B", "kind": "gain", "severity": 1, "sign": 1}, "shift: unknown key.*sign"),
    ],
)
def test_a_shift_that_cannot_apply_is_rejected_naming_the_key(shift, message):
    config = demo()
    config["datasets"]["synthetic"]["testsets"]["main"]["shift"] = shift
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_a_shift_that_fits_its_modality_validates():
    config = demo()
    testsets = config["datasets"]["synthetic"]["testsets"]
    testsets["fibres-sparse"] = {**testsets["main"], "shift": {"modality": "A", "kind": "sparsity", "severity": 0.5}}
    testsets["stain"] = {**testsets["main"], "shift": {"modality": "B", "kind": "stain", "severity": 1}}
    validate_config(config)


def test_a_stress_series_generates_one_test_set_per_severity():
    config = demo()
    dataset = config["datasets"]["synthetic"]
    dataset["stress"] = {
        "fibres-sparsity": {"modality": "A", "kind": "sparsity", "severities": [0.25, 0.5, 1.0]},
        "he": {"base": "main", "modality": "B", "kind": "stain", "severities": [2]},
    }
    validated = validate_config(copy.deepcopy(config))
    testsets = validated["datasets"]["synthetic"]["testsets"]
    assert set(testsets) == {"main", "fibres-sparsity-0p25", "fibres-sparsity-0p5", "fibres-sparsity-1", "he-2"}
    base = testsets["main"]
    assert "shift" not in base
    assert testsets["fibres-sparsity-0p5"] == {**base, "shift": {"modality": "A", "kind": "sparsity", "severity": 0.5}}
    assert testsets["he-2"]["shift"] == {"modality": "B", "kind": "stain", "severity": 2}
    assert validated["datasets"]["synthetic"]["stress"]["he"]["base"] == "main"
    assert validated["datasets"]["synthetic"]["stress"]["fibres-sparsity"]["base"] == "main"  # the default
    assert validate_config(validated)["datasets"]["synthetic"]["testsets"] == testsets  # idempotent


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"modality": "A", "kind": "stain", "severities": [1]},
         "datasets/synthetic/stress/s: shift kind 'stain' needs an RGB \\(3-channel\\) modality, modality A has 1"),
        ({"base": "nope", "modality": "A", "kind": "gain", "severities": [1]},
         "datasets/synthetic/stress/s/base: 'nope' is not a test set of this dataset"),
        ({"modality": "A", "kind": "gain", "severities": [0]}, "stress/s/severities/0: 0 is less than or equal"),
        ({"modality": "A", "kind": "gain", "severities": []}, "stress/s/severities: \\[\\] should be non-empty"),
        ({"modality": "A", "kind": "gain", "severities": [1], "seed": 2}, "stress/s: unknown key.*seed"),
    ],
)
def test_a_bad_stress_series_is_rejected_naming_the_key(entry, message):
    config = demo()
    config["datasets"]["synthetic"]["stress"] = {"s": entry}
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_a_stress_series_does_not_overwrite_a_test_set():
    config = demo()
    dataset = config["datasets"]["synthetic"]
    dataset["testsets"]["s-1"] = {"patch_size": 128}
    dataset["stress"] = {"s": {"modality": "A", "kind": "gain", "severities": [1]}}
    with pytest.raises(ConfigError, match="stress/s: generates test set 's-1', which is taken"):
        validate_config(config)
    dataset["testsets"].pop("s-1")
    dataset["testsets"]["shifted"] = {"shift": {"modality": "A", "kind": "gain", "severity": 1}}
    dataset["stress"] = {"s": {"base": "shifted", "modality": "A", "kind": "noise", "severities": [1]}}
    with pytest.raises(ConfigError, match="stress/s/base: test set 'shifted' has a shift of its own"):
        validate_config(config)

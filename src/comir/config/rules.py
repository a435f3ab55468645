"""The rules a JSON schema cannot express: per dataset, per variant, per pool and per apply job.

Contract: each function returns the problems it finds as lines ``<path>: <message>`` (empty when
there are none) and changes nothing; they run on a configuration that already matches the schema,
with its defaults filled in. Registration parameters are checked by the methods themselves
(:func:`comir.register.make_run`, :func:`comir.register.make_method`), translation parameters by
:func:`comir.translation.pipeline.check_entry`, both imported only where a configuration uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comir.config.expand import modality_shift_problem
from comir.config.schema import schema_problems, section_problems
from comir.config.variants import ENSEMBLE_METHODS, NETWORK_SETTINGS, ensemble_members, ensemble_params, variant_config
from comir.representation.settings import PROBLEMS as REPRESENTATION_PROBLEMS
from comir.training.augment import check_augmentation

__all__ = [
    "apply_problems",
    "dataset_problems",
    "pool_problems",
    "registration_rule",
    "run_rule_problems",
    "variant_problems",
]


def variant_problems(name: str, dataset: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Each variant merged onto its dataset must itself be a valid dataset configuration.

    Problems the dataset has on its own are reported once, for the dataset, not again per variant.
    Also checked: the evaluation's ``reference_variant`` and each variant's ``model_from``,
    ``model_file`` and ``ensemble``.

    Parameters
    ----------
    name : str
        The dataset's name, in the problems' paths.
    dataset : Mapping[str, Any]
        The dataset's configuration.
    schema : Mapping[str, Any]
        The configuration schema; a merged variant is checked against its dataset node.

    Returns
    -------
    list of str
        The problems, ``<path>: <message>`` each.
    """
    problems = []
    reference = dataset["evaluation"].get("reference_variant")
    if reference is not None and reference not in dataset["variants"]:
        problems.append(f"datasets/{name}/evaluation/reference_variant: {reference!r} is not a variant of this dataset")
    inherited = set(dataset_problems(name, dataset))
    dataset_schema = {"definitions": schema.get("definitions", {}), "$ref": "#/definitions/dataset"}
    for variant, overrides in dataset["variants"].items():
        source = overrides.get("model_from")
        where = f"datasets/{name}/variants/{variant}/model_from"
        if source is not None and source not in dataset["variants"]:
            problems.append(f"{where}: {source!r} is not a variant of this dataset")
        elif source is not None and (
            source == variant or {"model_from", "ensemble"} & set(dataset["variants"][source])
        ):
            problems.append(f"{where}: {source!r} must be a variant that trains its own networks")
        elif source is not None and (set(NETWORK_SETTINGS) & set(overrides)):
            problems.append(
                f"{where}: a variant that uses {source!r}'s networks cannot override model, training or modalities"
            )
        problems += _model_file_problems(f"datasets/{name}/variants/{variant}/model_file", overrides)
        problems += _ensemble_problems(f"datasets/{name}/variants/{variant}/ensemble", variant, dataset)
        merged = variant_config(dataset, variant)
        prefix = f"datasets/{name}/"
        found = schema_problems(merged, dataset_schema, prefix)
        found = found or [p for p in dataset_problems(name, merged) if p not in inherited]
        problems += [f"{prefix}variants/{variant}/{p.removeprefix(prefix)}" for p in found]
    return problems


def _model_file_problems(where: str, overrides: Mapping[str, Any]) -> list[str]:
    """A variant's ``model_file``: alone (no model_from, model, training or modalities), and a file."""
    file = overrides.get("model_file")
    if file is None:
        return []
    clashes = sorted({"model_from", *NETWORK_SETTINGS} & set(overrides))
    if clashes:
        return [f"{where}: a variant that uses a model file cannot also set {', '.join(clashes)}"]
    if not Path(file).is_file():
        return [f"{where}: {file!r} is not a file (paths are relative to the working directory {Path.cwd()})"]
    return []


def _ensemble_problems(where: str, variant: str, dataset: Mapping[str, Any]) -> list[str]:
    """A variant's ``ensemble``: alone, of other variants of the dataset that have networks of their own."""
    overrides = dataset["variants"][variant]
    members = overrides.get("ensemble")
    if members is None:
        return []
    clashes = sorted(set(overrides) - {"ensemble"})
    if clashes:
        return [f"{where}: an ensemble has no networks of its own; it cannot also set {', '.join(clashes)}"]
    problems = []
    for member in members:
        if member not in dataset["variants"] or member == variant:
            problems.append(f"{where}: {member!r} is not another variant of this dataset")
        elif "ensemble" in dataset["variants"][member]:
            problems.append(f"{where}: {member!r} is an ensemble itself; name variants with networks")
    if not any(
        spec["method"] in ENSEMBLE_METHODS and "comir" in spec["inputs"] for spec in dataset["registration"].values()
    ):
        problems.append(
            f"{where}: no registration run on CoMIRs uses a method that registers an ensemble "
            f"({', '.join(ENSEMBLE_METHODS)})"
        )
    return problems


def _testset_images_problems(path: str, testset: Mapping[str, Any], split: Mapping[str, Any]) -> list[str]:
    """Problems of a test set's ``images``: each must be an image of its split where the split lists its ids.

    Parameters
    ----------
    path : str
        The test set's path in the configuration, for the messages.
    testset : Mapping[str, Any]
        The test set's configuration.
    split : Mapping[str, Any]
        The dataset's ``pairs.split`` (empty for other sources: their split is known only once the
        data are prepared, where :func:`comir.testset.make_testset` checks the images).

    Returns
    -------
    list of str
        The problems, ``<path>/images: <message>`` each.
    """
    images = testset.get("images")
    if not images:
        return []
    if testset["recipe"] == "prebuilt":
        return [f"{path}/images: a prebuilt test set is imported as it is; its images cannot be chosen"]
    split_name = testset.get("split", "test")
    listed = split.get(split_name)
    if not listed:
        return []
    missing = [image for image in images if image not in listed]
    return [f"{path}/images: {missing} not in the {split_name} split ({listed})"] if missing else []


def dataset_problems(name: str, dataset: Mapping[str, Any]) -> list[str]:
    """Rules a JSON schema cannot express, for one dataset.

    Parameters
    ----------
    name : str
        The dataset's name, in the problems' paths.
    dataset : Mapping[str, Any]
        The dataset's configuration (or a variant merged onto it).

    Returns
    -------
    list of str
        The problems, ``<path>: <message>`` each.
    """
    problems = []
    source = dataset["source"]
    if source in ("pairs", "zenodo") and source not in dataset:
        problems.append(f"datasets/{name}: source '{source}' needs a '{source}' section")
    split = dataset.get("pairs", {}).get("split", {})
    if source == "pairs" and not (split.get("fractions") or split.get("test")):
        problems.append(f"datasets/{name}/pairs/split: give either 'fractions' or explicit 'train'/'test' id lists")
    if source == "pairs" and split.get("fractions") and split.get("test"):
        problems.append(f"datasets/{name}/pairs/split: give either 'fractions' or id lists, not both")
    fractions = split.get("fractions")
    if fractions and abs(sum(fractions) - 1.0) > 1e-6:
        problems.append(f"datasets/{name}/pairs/split/fractions: {fractions} must sum to 1")
    confidence = dataset.get("confidence")
    if confidence is not None:
        calibration = dataset["testsets"].get(confidence["testset"])
        if calibration is None or calibration.get("split") != "val":
            problems.append(
                f"datasets/{name}/confidence/testset: {confidence['testset']!r} must be one of the dataset's "
                "test sets with split: val (the calibration data must not be the data it is judged on)"
            )
    for testset_name, testset in dataset["testsets"].items():
        if testset.get("split") == "val" and testset["recipe"] == "prebuilt":
            problems.append(f"datasets/{name}/testsets/{testset_name}/split: a prebuilt test set has no split")
        problems.extend(_testset_images_problems(f"datasets/{name}/testsets/{testset_name}", testset, split))
        if testset["recipe"] == "prebuilt" and "deformation" in testset:
            problems.append(
                f"datasets/{name}/testsets/{testset_name}/deformation: a prebuilt test set is imported as it is; "
                "a deformation needs a drawn recipe (comir or multiregeval)"
            )
        if testset["recipe"] == "prebuilt" and source != "zenodo" and "zenodo" not in testset:
            problems.append(
                f"datasets/{name}/testsets/{testset_name}: recipe 'prebuilt' needs a record that ships a "
                "transformed test set: a dataset of source 'zenodo' or the test set's own 'zenodo' section"
            )
        shift = testset.get("shift")
        problem = shift and modality_shift_problem(shift["kind"], shift["modality"], dataset["modalities"])
        if problem:
            problems.append(f"datasets/{name}/testsets/{testset_name}/shift: {problem}")
    model = dataset["model"]
    multiple = 2 ** len(model["down_blocks"])
    if dataset["training"]["patch_size"] % multiple:
        problems.append(
            f"datasets/{name}/training/patch_size: {dataset['training']['patch_size']} is not divisible by "
            f"2^{len(model['down_blocks'])} = {multiple} (one pooling per down block)"
        )
    up = model.get("up_blocks")
    if up is not None and len(up) != len(model["down_blocks"]):
        problems.append(f"datasets/{name}/model/up_blocks: needs {len(model['down_blocks'])} entries like down_blocks")
    if dataset["training"].get("shared_blocks", 0) > len(model["down_blocks"]):
        problems.append(
            f"datasets/{name}/training/shared_blocks: {dataset['training']['shared_blocks']} is more than the "
            f"{len(model['down_blocks'])} down blocks of the networks"
        )
    for slot, spec in dataset["modalities"].items():
        if spec.get("stain_normalization") is not None and spec["channels"] != 3:
            problems.append(
                f"datasets/{name}/modalities/{slot}/stain_normalization: needs an RGB (3-channel) modality, "
                f"this one has {spec['channels']} channel(s)"
            )
    third = dataset["training"].get("third_view")
    if third and third["view"] == "haematoxylin" and dataset["modalities"][third["from"]]["channels"] != 3:
        problems.append(
            f"datasets/{name}/training/third_view: the haematoxylin view needs an RGB (3-channel) modality, "
            f"{third['from']} has {dataset['modalities'][third['from']]['channels']} channel(s)"
        )
    problems += _translation_problems(name, dataset)
    for slot, settings in dataset["training"]["augmentation"].items():
        channels = dataset["modalities"][slot]["channels"]
        where = f"datasets/{name}/training/augmentation/{slot}"
        problems += [f"{where}: {problem}" for problem in check_augmentation(settings, channels)]
        if "stain" in settings and dataset["modalities"][slot].get("stain_normalization") == "deconvolution":
            problems.append(
                f"{where}/stain: the network sees this modality's stain concentrations "
                "(stain_normalization: deconvolution), not colours; vary them with 'intensity'"
            )
    problems += _representation_problems(name, dataset)
    problems += _accr_problems(name, dataset)
    channels = sorted(dataset["modalities"][slot]["channels"] for slot in ("A", "B"))
    for run_name, run in dataset["registration"].items():
        problem = _registration_problem(run, deformable=True)
        if problem:
            problems.append(f"datasets/{name}/registration/{run_name}/params: {problem}")
        if run["method"] == "accr":
            problems += [f"datasets/{name}/registration/{run_name}{p}" for p in _accr_run_problems(run, dataset)]
        if not run["inputs"]:
            problems.append(f"datasets/{name}/registration/{run_name}/inputs: list at least one input")
        if run["method"] == "curvealign" and channels != [1, 3]:
            problems.append(
                f"datasets/{name}/registration/{run_name}: curvealign needs one RGB (3-channel) and one "
                f"single-channel modality, this dataset has {channels[0]} and {channels[1]} channels"
            )
        if run["method"] == "curvealign" and run["inputs"] != ["original"]:
            problems.append(
                f"datasets/{name}/registration/{run_name}/inputs: curvealign segments the H&E colours, "
                "so it runs on the originals only: inputs: [original]"
            )
    return problems


def _accr_problems(name: str, dataset: Mapping[str, Any]) -> list[str]:
    """The accr section's model and training settings, as stage 2 would check them before any work.

    The encoders' depth is the configured network's (``model.down_blocks``).
    """
    accr = dataset["accr"]
    if accr is None:
        return []
    from comir.network.accr.model import ACCRConfig  # imports PyTorch: only for datasets that use ACCR
    from comir.training.accr import HeadTrainingConfig, check_head_settings

    try:
        config = ACCRConfig(**accr["model"])
        multiple = config.multiple(2 ** len(dataset["model"]["down_blocks"]))
        check_head_settings(config, multiple, HeadTrainingConfig.from_config(accr["training"], seed=0, threads=1))
    except ValueError as error:
        return [f"datasets/{name}/accr: {error}"]
    return []


def _accr_run_problems(run: Mapping[str, Any], dataset: Mapping[str, Any]) -> list[str]:
    """A run with method accr: the dataset's ACCR model, the variants' networks as input, no deformable stage.

    Each problem's path is relative to the run.
    """
    problems = []
    if dataset["accr"] is None:
        problems.append(": method accr registers with the variant's ACCR model: give the dataset an accr section")
    if run["inputs"] != ["comir"]:
        problems.append(
            "/inputs: accr registers the original images through a variant's networks, so its results are the "
            "variant's: inputs: [comir]"
        )
    if run.get("deformable") is not None:
        problems.append("/deformable: an ACCR run has no deformable stage yet (its images are the originals)")
    return problems


def registration_rule(run: Mapping[str, Any]) -> str:
    """The workflow rule whose jobs register a configured run (workflow/rules/register.smk, accr.smk).

    ``register_accr`` for a method with a model of its own (:data:`comir.register.MODEL_METHODS`),
    ``register_fields`` for a deformable stage with ``save_fields`` (its jobs also write each case's
    field), ``register`` for any other run.

    Parameters
    ----------
    run : Mapping[str, Any]
        The run's configuration: its ``method`` and optional ``deformable`` stage.

    Returns
    -------
    str
        The rule's name.
    """
    from comir.register import MODEL_METHODS

    if run["method"] in MODEL_METHODS:
        return "register_accr"
    return "register_fields" if (run.get("deformable") or {}).get("save_fields") else "register"


def run_rule_problems(datasets: Mapping[str, Any]) -> list[str]:
    """A run name is registered by one rule (:func:`registration_rule`) in every dataset that names it.

    The registration rules tell their jobs apart by the run's name (one pattern for all datasets).

    Parameters
    ----------
    datasets : Mapping[str, Any]
        The configuration's datasets.

    Returns
    -------
    list of str
        The problems, ``<path>: <message>`` each.
    """
    from comir.register import MODEL_METHODS

    rules: dict[str, set[str]] = {}
    for dataset in datasets.values():
        for run, spec in dataset["registration"].items():
            rules.setdefault(run, set()).add(registration_rule(spec))
    why = {
        "register_accr": f"a method with a model of its own ({', '.join(MODEL_METHODS)})",
        "register_fields": "a deformable stage with save_fields",
        "register": "another run",
    }
    return [
        f"registration/{run}: the name is {' in one dataset and '.join(why[r] for r in sorted(kinds, reverse=True))} "
        "in another (each has its own rule); give the runs different names"
        for run, kinds in sorted(rules.items())
        if len(kinds) > 1
    ]


def _representation_problems(name: str, dataset: Mapping[str, Any]) -> list[str]:
    """The representation section beyond the schema: rotation geometry, shifts' overlap, a count per cell."""
    representation = dataset["representation"]
    return [
        f"datasets/{name}/representation/{kind}: {problem}"
        for kind, check in REPRESENTATION_PROBLEMS.items()
        if representation[kind] is not None
        for problem in check(representation[kind])
    ]


def _translation_problems(name: str, dataset: Mapping[str, Any]) -> list[str]:
    """Translation models: parameters their method accepts, names apart from the variants, and some input."""
    problems = []
    translation = dataset["translation"]
    if translation:
        from comir.translation.pipeline import check_entry  # imports PyTorch: only for datasets that use it
    for model_name, entry in translation.items():
        where = f"datasets/{name}/translation/{model_name}"
        if model_name in dataset["variants"] or model_name == "original":
            problems.append(f"{where}: the name is taken by a variant (or 'original'); both name registration sources")
        try:
            check_entry(entry["method"], entry["params"])
        except ValueError as error:
            problems.append(f"{where}/params: {error}")
    translated = [run for run, spec in dataset["registration"].items() if "translated" in spec["inputs"]]
    if translated and not translation:
        problems.append(
            f"datasets/{name}/registration/{translated[0]}/inputs: 'translated' needs translation models "
            "(the dataset's translation section)"
        )
    return problems


def pool_problems(name: str, pool: Mapping[str, Any], datasets: Mapping[str, Any]) -> list[str]:
    """A pool names datasets that exist, each with the pool's variant and test set and the same evaluation.

    Parameters
    ----------
    name : str
        The pool's name, in the problems' paths.
    pool : Mapping[str, Any]
        The pool's configuration: ``datasets``, ``variant`` and ``testset``.
    datasets : Mapping[str, Any]
        The configuration's datasets.

    Returns
    -------
    list of str
        The problems, ``<path>: <message>`` each.
    """
    problems = []
    for dataset_name in pool["datasets"]:
        dataset = datasets.get(dataset_name)
        where = f"pools/{name}/datasets: {dataset_name!r}"
        if dataset is None:
            problems.append(f"{where} is not a dataset of this configuration")
            continue
        for key, section in (("variant", "variants"), ("testset", "testsets")):
            if pool[key] not in dataset[section]:
                problems.append(f"{where} has no {key} {pool[key]!r}")
    found = [datasets[d] for d in pool["datasets"] if d in datasets]
    if any(d["evaluation"] != found[0]["evaluation"] for d in found[1:]):
        problems.append(f"pools/{name}: the pooled datasets must share their evaluation settings")
    return problems


def apply_problems(
    name: str, job: Mapping[str, Any], datasets: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[str]:
    """Rules a JSON schema cannot express, for one apply job: what it names exists, one source of pairs.

    Several models (an ensemble variant, or a list of files) register with :data:`ENSEMBLE_METHODS` only
    and have no calibrated confidence for ``min_confidence``.

    Parameters
    ----------
    name : str
        The job's name, in the problems' paths.
    job : Mapping[str, Any]
        The apply job's configuration.
    datasets : Mapping[str, Any]
        The configuration's datasets, where the job's model and test set are looked up.
    schema : Mapping[str, Any]
        The configuration schema; the job's ``inference`` is checked as a dataset's section.

    Returns
    -------
    list of str
        The problems, ``<path>: <message>`` each.
    """
    where = f"apply/{name}"
    problems = []
    model = job["model"]
    models = 1
    if ("file" in model) == ("dataset" in model):
        problems.append(f"{where}/model: give either dataset (and variant) or file")
    elif "dataset" in model:
        dataset = datasets.get(model["dataset"])
        if dataset is None:
            problems.append(f"{where}/model/dataset: no dataset {model['dataset']!r} in datasets")
        elif model["variant"] not in dataset["variants"]:
            problems.append(
                f"{where}/model/variant: {model['variant']!r} is not a variant of {model['dataset']!r} "
                f"({', '.join(dataset['variants'])})"
            )
        else:
            models = len(ensemble_members(dataset, model["variant"])) or 1
            if job["method"] == "accr" and variant_config(dataset, model["variant"])["accr"] is None:
                problems.append(
                    f"{where}/method: accr registers with the variant's ACCR model (rule train_accr): give "
                    f"dataset {model['dataset']!r} an accr section"
                )
    elif not isinstance(model["file"], str):
        models = len(model["file"])
    registered = ensemble_params(job["method"], job["params"], models)
    if registered is None:
        problems.append(
            f"{where}/method: {models} models (an ensemble) register with {' or '.join(ENSEMBLE_METHODS)} only, "
            f"not {job['method']!r}"
        )
    if models > 1 and job["min_confidence"] is not None:
        problems.append(f"{where}/min_confidence: {models} models (an ensemble) have no calibrated confidence")
    if (job["pairs"] is None) == (job["testset"] is None):
        problems.append(f"{where}: give either pairs (a folder) or testset (a test set of this configuration)")
    testset = job["testset"]
    if testset is not None:
        dataset = datasets.get(testset["dataset"])
        if dataset is None or testset["name"] not in dataset["testsets"]:
            problems.append(f"{where}/testset: no test set {testset['name']!r} in dataset {testset['dataset']!r}")
        if job["truth"] is not None:
            problems.append(f"{where}/truth: a test set brings its own true transforms; leave truth out")
    problems += [f"{where}/inference: {p}" for p in section_problems(job["inference"], "inference", schema)]
    from comir.register import deformable_stage, with_transform  # the registry imports the methods: apply jobs only

    params = with_transform(job["params"] if registered is None else registered, job["transform"])
    problem = _registration_problem({"method": job["method"], "params": params})
    if problem:
        problems.append(f"{where}: {problem}")
    try:
        deformable_stage(job.get("deformable"), seed=0)  # its parameters, as a registration run's
    except ValueError as error:
        problems.append(f"{where}/deformable: {error}")
    return problems


def _registration_problem(run: Mapping[str, Any], deformable: bool = False) -> str | None:
    """Why a registration run's method would refuse its ``params`` (unknown name or bad value), if it would.

    The method is built once here, at parse time, so a misspelt parameter stops
    ``snakemake -n`` instead of a registration job after hours of training. With ``deformable``
    (a dataset's runs, not the apply stage's) the run may be deformable
    (:func:`comir.register.make_run`: a deformable method's parameter names and values are checked).
    """
    # The methods' own parameter checks, one source of truth; a model method's names only (its model
    # file is written later).
    from comir.register import MODEL_METHODS, check_model_params, make_method, make_run

    try:
        if run["method"] in MODEL_METHODS:
            check_model_params(run["method"], run.get("params"))
        elif deformable:
            make_run(run, seed=0)
        else:
            make_method(run["method"], run.get("params"), seed=0)
    except ValueError as error:
        return str(error)
    return None

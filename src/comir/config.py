"""Configuration: JSON-schema validation with defaults, and clear messages for mistakes.

Where the schema lives
----------------------
The one copy of the schema is package data, ``comir/schemas/config.schema.yaml``, read through
:mod:`importlib.resources` (:data:`SCHEMA`). An installed ``comir`` (a wheel, not only an editable
install of this checkout) can therefore validate a configuration, and the Snakefile, the
``config-docs`` target and the tests all read it through this module, so nothing can drift.

Snakemake's convention of ``workflow/schemas/`` exists for ``snakemake.utils.validate(config,
"schemas/...")``, which this workflow does not use: ``validate_config`` adds what that cannot
(the per-dataset rules below, variants merged onto their dataset, registration parameters
checked by the methods, one message listing every problem). ``snakemake --lint`` and the
workflow catalog do not require the folder either. A copy there would be a second source (or
a symlink, which ``git archive`` and some file systems do not keep), so there is none.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from comir.imaging.shifts import severity_label, shift_problem
from comir.representation.settings import PROBLEMS as REPRESENTATION_PROBLEMS
from comir.training.augment import check_augmentation

REFERENCE_MARKER = "## Every key"
# Package data (see the module docstring): found wherever comir is installed, even inside a zip.
SCHEMA: Traversable = files("comir") / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema."""


def _fill_defaults(validator_class: type) -> type:
    """A validator that also inserts schema defaults (deep copies, so instances never share them)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties(validator: Any, props: Mapping[str, Any], instance: Any, schema: Any) -> Any:
        if isinstance(instance, MutableMapping):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _fill_defaults(jsonschema.Draft7Validator)


def load_schema(path: Path | Traversable = SCHEMA) -> dict[str, Any]:
    """The configuration schema (by default the packaged one) as a dictionary."""
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def validate_config(
    config: MutableMapping[str, Any], schema: Mapping[str, Any] | None = None
) -> MutableMapping[str, Any]:
    """Validate ``config`` in place, filling in defaults; raise :class:`ConfigError` listing every problem."""
    schema = load_schema() if schema is None else schema
    problems = schema_problems(config, schema)
    if not problems:
        for name, dataset in config.get("datasets", {}).items():
            problems += expand_sweeps(name, dataset)
            problems += expand_stress(name, dataset)
            problems += _dataset_problems(name, dataset)
            problems += _variant_problems(name, dataset, schema)
        for name, pool in config.get("pools", {}).items():
            problems += _pool_problems(name, pool, config["datasets"])
        for name, job in config.get("apply", {}).items():
            problems += _apply_problems(name, job, config["datasets"], schema)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
    return config


def sweep_variants(sweep: str, grid: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """The variants of one sweep: name -> overrides, one per combination of the grid's values.

    ``grid`` maps dotted keys (``training.temperature``) to the values to try; a
    variant is named ``<sweep>-<value>-...`` in the grid's key order, a ``.`` in a
    value written ``p`` (variant names are folder names and wildcard values).
    """
    keys = list(grid)
    variants = {}
    for values in itertools.product(*(grid[key] for key in keys)):
        label = "-".join([sweep, *(str(v).lower().replace(".", "p") for v in values)])
        overrides: dict[str, Any] = {}
        for key, value in zip(keys, values):
            section, field = key.split(".", 1)
            overrides.setdefault(section, {})[field] = value
        variants[label] = overrides
    return variants


def expand_sweeps(name: str, dataset: MutableMapping[str, Any]) -> list[str]:
    """Add the variants of a dataset's ``sweeps`` to its ``variants``; the problems (a name already taken).

    Idempotent: a variant that a sweep generated before (same name, same overrides) is kept.
    """
    problems = []
    for sweep, grid in dataset.get("sweeps", {}).items():
        where = f"datasets/{name}/sweeps/{sweep}"
        problems += _add_generated(dataset["variants"], sweep_variants(sweep, grid), where, "variant")
    return problems


def _add_generated(section: MutableMapping[str, Any], generated: Mapping[str, Any], where: str, kind: str) -> list[str]:
    """Add generated entries (variants, test sets) to ``section``; the problems (a name taken or invalid).

    An entry generated before (same name, same settings) is kept, so expanding twice changes nothing.
    """
    problems = []
    for entry, settings in generated.items():
        existing = section.get(entry)
        if existing is not None and existing != settings:
            problems.append(f"{where}: generates {kind} {entry!r}, which is taken")
        elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", entry):
            problems.append(f"{where}: {entry!r} is not a valid {kind} name")
        else:
            section[entry] = settings
    return problems


def stress_testset_name(series: str, severity: float) -> str:
    """The test set of one severity of a stress series: ``<series>-<severity>``, a '.' written 'p'."""
    return f"{series}-{severity_label(severity)}"


def stress_testsets(series: str, entry: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The test sets of one ``stress`` series: name -> the base test set's settings plus the shift."""
    return {
        stress_testset_name(series, severity): {
            **copy.deepcopy(dict(base)),
            "shift": {"modality": entry["modality"], "kind": entry["kind"], "severity": severity},
        }
        for severity in entry["severities"]
    }


def expand_stress(name: str, dataset: MutableMapping[str, Any]) -> list[str]:
    """Add the test sets of a dataset's ``stress`` series to its ``testsets``; the problems.

    Like :func:`expand_sweeps`, and idempotent: a test set a series generated before is kept.
    """
    problems = []
    for series, entry in dataset.get("stress", {}).items():
        where = f"datasets/{name}/stress/{series}"
        base = dataset["testsets"].get(entry["base"])
        if base is None:
            problems.append(f"{where}/base: {entry['base']!r} is not a test set of this dataset")
            continue
        if "shift" in base:
            problems.append(f"{where}/base: test set {entry['base']!r} has a shift of its own; stress one without")
            continue
        problem = _shift_problem(entry["kind"], entry["modality"], dataset["modalities"])
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        problems += _add_generated(dataset["testsets"], stress_testsets(series, entry, base), where, "test set")
    return problems


def _shift_problem(kind: str, slot: str, modalities: Mapping[str, Any]) -> str | None:
    """Why a shift of ``kind`` cannot degrade modality ``slot`` (its channel count), naming the slot."""
    problem = shift_problem(kind, modalities[slot]["channels"])
    return problem and problem.replace("this one", f"modality {slot}")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings recursively, anything else (lists too) replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Variant keys that say where its networks come from instead of overriding the dataset's settings,
# and the settings a variant with either cannot override (they made the networks).
MODEL_SOURCES = ("model_from", "model_file")
NETWORK_SETTINGS = ("model", "training", "modalities")
#: The registration methods that run on an ensemble variant's CoMIRs (several networks' at once).
ENSEMBLE_METHODS = ("cascade",)


def ensemble_params(method: str, params: Mapping[str, Any] | None, networks: int) -> dict[str, Any] | None:
    """``params`` of ``method`` for ``networks`` networks' CoMIRs registered together (a copy).

    One network: the params as given.  Several: with ``networks`` (the cascade's option, section 12
    of docs/method.md) for a method of :data:`ENSEMBLE_METHODS`, None for any other method (it takes
    one network's CoMIRs); the callers say so in their own terms.
    """
    params = dict(params or {})
    if networks == 1:
        return params
    return {**params, "networks": networks} if method in ENSEMBLE_METHODS else None


def variant_config(dataset: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """A dataset's configuration as ``variant`` runs it (its overrides merged onto the dataset).

    The schema's defaults are filled into what the overrides add (e.g. an ``elastic`` section
    given only its ``probability``), as validation filled them into the dataset's own sections.
    """
    if variant not in dataset["variants"]:
        raise KeyError(f"unknown variant {variant!r}; this dataset has {', '.join(dataset['variants'])}")
    base = {key: value for key, value in dataset.items() if key != "variants"}
    not_merged = (*MODEL_SOURCES, "ensemble")
    overrides = {key: value for key, value in dataset["variants"][variant].items() if key not in not_merged}
    merged = deep_merge(base, overrides)
    for _ in _Validator(_dataset_schema()).iter_errors(merged):  # fills defaults; problems were reported
        pass
    merged.pop("variants", None)  # a default the filling adds back: a variant has none
    return merged


@functools.cache
def _dataset_schema() -> dict[str, Any]:
    """The packaged schema's dataset node, as a schema of its own (read-only)."""
    schema = load_schema()
    return {"definitions": schema.get("definitions", {}), "$ref": "#/definitions/dataset"}


def node_defaults(node: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of the properties of one schema object node (those that have one)."""
    return {name: copy.deepcopy(spec["default"]) for name, spec in node["properties"].items() if "default" in spec}


def section_defaults(section: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The schema's defaults of a dataset section (e.g. ``inference``), for code that runs outside a configuration."""
    schema = load_schema() if schema is None else schema
    return node_defaults(schema["definitions"]["dataset"]["properties"][section])


def model_variant(dataset: Mapping[str, Any], variant: str) -> str:
    """The variant whose trained networks ``variant`` uses: its ``model_from``, else itself."""
    return dataset["variants"][variant].get("model_from", variant)


def model_file(dataset: Mapping[str, Any], variant: str) -> str | None:
    """The model file trained elsewhere that ``variant`` (or its ``model_from``) uses; None when it trains."""
    return dataset["variants"][model_variant(dataset, variant)].get("model_file")


def ensemble_members(dataset: Mapping[str, Any], variant: str) -> list[str]:
    """The variants whose networks' CoMIRs ``variant`` registers together; empty when it has networks of its own."""
    return list(dataset["variants"][variant].get("ensemble", []))


def network_variants(dataset: Mapping[str, Any]) -> list[str]:
    """A dataset's variants with networks of their own (trained, from another variant or a file): not ensembles."""
    return [variant for variant in dataset["variants"] if not ensemble_members(dataset, variant)]


def schema_problems(instance: Any, schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every way ``instance`` breaks ``schema``, one line each (``<prefix><path>: <message>``), in path order."""
    validator = _Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        where = prefix + "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message
        if error.validator == "additionalProperties":
            message = f"unknown key(s): {message.split('(')[-1].rstrip(')')} - see config/README.md for the valid keys"
        lines.append(f"{where}: {message}")
    return lines


def _variant_problems(name: str, dataset: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Each variant merged onto its dataset must itself be a valid dataset configuration.

    Problems the dataset has on its own are reported once, for the dataset, not again per variant.
    """
    problems = []
    reference = dataset["evaluation"].get("reference_variant")
    if reference is not None and reference not in dataset["variants"]:
        problems.append(f"datasets/{name}/evaluation/reference_variant: {reference!r} is not a variant of this dataset")
    inherited = set(_dataset_problems(name, dataset))
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
        found = found or [p for p in _dataset_problems(name, merged) if p not in inherited]
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


def _dataset_problems(name: str, dataset: Mapping[str, Any]) -> list[str]:
    """Rules a JSON schema cannot express, for one dataset."""
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
        problem = shift and _shift_problem(shift["kind"], shift["modality"], dataset["modalities"])
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
    channels = sorted(dataset["modalities"][slot]["channels"] for slot in ("A", "B"))
    for run_name, run in dataset["registration"].items():
        problem = _registration_problem(run, deformable=True)
        if problem:
            problems.append(f"datasets/{name}/registration/{run_name}/params: {problem}")
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


def _pool_problems(name: str, pool: Mapping[str, Any], datasets: Mapping[str, Any]) -> list[str]:
    """A pool names datasets that exist, each with the pool's variant and test set and the same evaluation."""
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


def _apply_problems(
    name: str, job: Mapping[str, Any], datasets: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[str]:
    """Rules a JSON schema cannot express, for one apply job: what it names exists, one source of pairs.

    Several models (an ensemble variant, or a list of files) register with :data:`ENSEMBLE_METHODS` only
    and have no calibrated confidence for ``min_confidence``.
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
    from comir.register import with_transform  # the registry imports the methods: only for apply jobs

    params = with_transform(job["params"] if registered is None else registered, job["transform"])
    problem = _registration_problem({"method": job["method"], "params": params})
    if problem:
        problems.append(f"{where}: {problem}")
    return problems


def section_problems(values: Mapping[str, Any], section: str, schema: Mapping[str, Any]) -> list[str]:
    """Problems of ``values`` as a dataset's ``section`` (unknown keys, bad values), without filling defaults."""
    node = copy.deepcopy(schema["definitions"]["dataset"]["properties"][section])
    return schema_problems(copy.deepcopy(dict(values)), node)


def _registration_problem(run: Mapping[str, Any], deformable: bool = False) -> str | None:
    """Why a registration run's method would refuse its ``params`` (unknown name or bad value), if it would.

    The method is built once here, at parse time, so a misspelt parameter stops
    ``snakemake -n`` instead of a registration job after hours of training. With ``deformable``
    (a dataset's runs, not the apply stage's) the run may be deformable
    (:func:`comir.register.make_run`: a deformable method's parameter names are checked).
    """
    from comir.register import make_method, make_run  # the methods' own parameter checks, one source of truth

    try:
        if deformable:
            make_run(run, seed=0)
        else:
            make_method(run["method"], run.get("params"), seed=0)
    except ValueError as error:
        return str(error)
    return None


def load_config(*paths: Path) -> MutableMapping[str, Any]:
    """The configuration of the YAML files ``paths``, validated and with its defaults filled in.

    Several files are merged in order like Snakemake's ``--configfile a.yaml b.yaml``
    (:func:`deep_merge`), e.g. an overlay such as ``config/bfshg-apply.yaml`` onto its base.
    """
    merged: dict[str, Any] = {}
    for path in paths:
        with open(path) as handle:
            merged = deep_merge(merged, yaml.safe_load(handle) or {})
    return validate_config(merged)


def _describe(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return definitions[ref.split("/")[-1]] if ref else schema


def schema_reference(schema: Mapping[str, Any] | None = None) -> str:
    """Markdown table of every configuration key: path, type, default, description."""
    schema = load_schema() if schema is None else schema
    definitions = schema.get("definitions", {})
    rows: list[str] = []

    def kind(node: Mapping[str, Any]) -> str:
        if "enum" in node:
            return " \\| ".join(f"`{v}`" for v in node["enum"])
        value = node.get("type", "object")
        return " or ".join(value) if isinstance(value, list) else value

    def walk(node: Mapping[str, Any], path: str) -> None:
        node = _describe(node, definitions)
        for name, child in node.get("properties", {}).items():
            child = _describe(child, definitions)
            if "default" in child:
                default = f"`{json.dumps(child['default'])}`"
            else:
                default = "required" if name in node.get("required", []) else ""
            rows.append(f"| `{path}{name}` | {kind(child)} | {default} | {child.get('description', '')} |")
            walk(child, f"{path}{name}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            walk(extra, f"{path}<name>.")

    walk(schema, "")
    return "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"

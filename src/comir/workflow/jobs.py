"""Which jobs a configuration asks for: registration sources and runs, calibrations, stress series, pools.

The functions take plain data - the validated configuration (:func:`comir.config.validate.validate_config`:
defaults filled in, sweeps and stress series expanded) and names from a job's wildcards - and
return names and tuples of names; the rules' helpers (workflow/rules/common.smk) turn them into
paths. They raise ``KeyError`` for a name the configuration lacks, as the lookups they replace did.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from comir.config.expand import stress_testset_name
from comir.config.rules import registration_rule
from comir.config.variants import ENSEMBLE_METHODS, ensemble_members, model_variant, network_variants, variant_config
from comir.data.pairs import image_files
from comir.io import IMAGE_SUFFIXES
from comir.register import MODEL_METHODS, registers_deformably, uses_originals

#: The registration "source" of runs on the original images (its results live under
#: results/<dataset>/original/, shared by all variants).
ORIGINAL = "original"

Config = Mapping[str, Any]
#: (source, run, direction) of one registration job of a dataset and test set.
RegistrationJob = tuple[str, str, str]


def dataset_config(config: Config, dataset: str) -> Mapping[str, Any]:
    """The section of ``dataset`` in the configuration (no variant merged in).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    """
    return config["datasets"][dataset]


# --- wildcard constraints -------------------------------------------------------------------


def names_of(config: Config, section: str) -> list[str]:
    """Every name used under ``section`` (e.g. ``variants``) in any dataset, sorted, without repeats.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    section : str
        A section of every dataset that maps names to settings, e.g. ``variants`` or ``testsets``.
    """
    return sorted({name for cfg in config["datasets"].values() for name in cfg[section]})


def alternatives(names: Iterable[str]) -> str:
    """A regular expression that matches exactly one of ``names`` (empty for no names).

    Parameters
    ----------
    names : Iterable[str]
        The names, each matched literally (escaped).

    Returns
    -------
    str
        The names joined by ``|``.
    """
    return "|".join(re.escape(name) for name in names)


def registration_runs(config: Config, rule: str) -> list[str]:
    """Every registration run name (of any dataset) that workflow rule ``rule`` registers.

    The rules register, register_fields and register_accr tell their jobs apart by the run's name
    (:func:`comir.config.rules.registration_rule`; :func:`comir.config.rules.run_rule_problems` keeps
    a name of one rule everywhere).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration.
    rule : str
        ``"register"``, ``"register_fields"`` (deformable stages with ``save_fields``) or
        ``"register_accr"`` (methods with a model of their own, :data:`comir.register.MODEL_METHODS`).

    Returns
    -------
    list of str
        The names, sorted, without repeats.
    """
    return sorted(
        {
            run
            for cfg in config["datasets"].values()
            for run, spec in cfg["registration"].items()
            if registration_rule(spec) == rule
        }
    )


# --- registration sources and jobs -----------------------------------------------------------


def source_input(config: Config, dataset: str, source: str) -> str:
    """The kind of input of a registration source: ``original``, ``comir`` or ``translated``.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`ORIGINAL`, a variant or a translation model.

    Returns
    -------
    str
        ``original`` for :data:`ORIGINAL`, ``translated`` for a translation model, else ``comir``.
    """
    if source == ORIGINAL:
        return ORIGINAL
    return "translated" if source in dataset_config(config, dataset)["translation"] else "comir"


def source_networks(config: Config, dataset: str, source: str) -> list[str]:
    """The variants whose networks' CoMIRs a registration source is.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`ORIGINAL`, a variant or a translation model.

    Returns
    -------
    list of str
        An ensemble's members (in their configured order), ``[source]`` for a variant with
        networks of its own, ``[]`` for the originals and translation models.
    """
    if source_input(config, dataset, source) != "comir":
        return []
    return variant_networks(config, dataset, source)


def variant_networks(config: Config, dataset: str, variant: str) -> list[str]:
    """The variants whose networks compute a variant's CoMIRs: an ensemble's members, else ``[variant]``.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.

    Returns
    -------
    list of str
        The ensemble's members in their configured order, else ``[variant]``.
    """
    return ensemble_members(dataset_config(config, dataset), variant) or [variant]


def sorted_variants(config: Config, dataset: str) -> list[str]:
    """A dataset's variants with networks (not ensembles), by name.

    Sorted: the order of keys in the configuration must not change params.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    """
    return sorted(network_variants(dataset_config(config, dataset)))


def registration_sources(cfg: Mapping[str, Any], variant: str, image_input: str) -> list[str]:
    """The sources of one kind of input: the originals, the variant's CoMIRs or every translation of dataset ``cfg``.

    Parameters
    ----------
    cfg : Mapping[str, Any]
        The dataset's section of the configuration (:func:`dataset_config`).
    variant : str
        The variant whose CoMIRs are registered.
    image_input : str
        ``original``, ``translated`` or ``comir`` (any other value is taken as ``comir``).

    Returns
    -------
    list of str
        ``[ORIGINAL]``, the translation models in configured order, or ``[variant]``.
    """
    if image_input == ORIGINAL:
        return [ORIGINAL]
    if image_input == "translated":
        return list(cfg["translation"])
    return [variant]


def comir_twin(config: Config, dataset: str, variant: str) -> str | None:
    """The variant whose CoMIRs, and so whose registrations on them, ``variant``'s are; None when its own.

    A variant with ``model_from`` whose settings are its source's but for the ``accr`` section
    (a stage-2 ablation of ACCR: the same networks, inference and runs, another ACCR model)
    computes the same CoMIRs and registers them with the same runs; only its ACCR runs are its
    own (:func:`registration_jobs`). A variant that differs in nothing is registered as its own.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.

    Returns
    -------
    str or None
        Its ``model_from``, or None (no ``model_from``, the same ``accr`` or another setting differs).
    """
    cfg = dataset_config(config, dataset)
    source = model_variant(cfg, variant)
    if source == variant:
        return None
    mine, theirs = (dict(variant_config(cfg, name)) for name in (variant, source))
    own_accr = mine.pop("accr") != theirs.pop("accr")
    return source if own_accr and mine == theirs else None


def registration_jobs(config: Config, dataset: str, variant: str) -> list[RegistrationJob]:
    """Every registration that the evaluation of ``variant`` reads.

    Each run registers each of its inputs in each direction: the originals, the variant's CoMIRs
    and every translation model's fakes. An ensemble variant registers its CoMIRs only with the
    methods that use several networks' CoMIRs (:data:`comir.config.variants.ENSEMBLE_METHODS`).
    A variant whose CoMIRs are another's (:func:`comir_twin`) registers them only with the methods
    with a model of their own (ACCR; :data:`comir.register.MODEL_METHODS`): the other runs' results
    are its twin's, and a copy under its name would only repeat them in the variants' comparison.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        The evaluated variant (one with networks, or an ensemble).

    Returns
    -------
    list of (source, run, direction)
        Sorted, so that the order of keys in the configuration does not change the timing
        rule's params; ``source`` is :data:`ORIGINAL`, the variant or a translation model.
    """
    cfg = dataset_config(config, dataset)
    ensemble = bool(ensemble_members(cfg, variant))
    twin = not ensemble and comir_twin(config, dataset, variant) is not None
    return sorted(
        (source, run, direction)
        for run, spec in cfg["registration"].items()
        for image_input in spec["inputs"]
        if not (ensemble and image_input == "comir" and spec["method"] not in ENSEMBLE_METHODS)
        if not (twin and image_input == "comir" and spec["method"] not in MODEL_METHODS)
        for source in registration_sources(cfg, variant, image_input)
        for direction in cfg["directions"]
    )


def comparison_jobs(config: Config, dataset: str) -> list[RegistrationJob]:
    """The registrations on the CoMIRs of every variant (their comparison), variant by variant in configured order.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    list of (source, run, direction)
        The jobs of :func:`registration_jobs` whose source is the variant itself.
    """
    return [
        job
        for variant in dataset_config(config, dataset)["variants"]
        for job in registration_jobs(config, dataset, variant)
        if job[0] == variant
    ]


def registration_spec(config: Config, dataset: str, source: str, run: str) -> Mapping[str, Any]:
    """The configured registration ``run``, as the source's jobs run it.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`ORIGINAL`, a variant or a translation model.
    run : str
        A registration run of the dataset.

    Returns
    -------
    Mapping[str, Any]
        The run's section of the configuration.

    Raises
    ------
    ValueError
        Where the run is not configured for the source's kind of input (:func:`source_input`).
    """
    spec = dataset_config(config, dataset)["registration"][run]
    image_input = source_input(config, dataset, source)
    if image_input not in spec["inputs"]:
        raise ValueError(f"registration run {run!r} of {dataset} is not configured for {image_input} inputs")
    return spec


def reads_originals(config: Config, dataset: str, source: str, run: str) -> bool:
    """Whether a run on CoMIRs or translations also reads the original patches (the cascade's original_keypoints).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`ORIGINAL`, a variant or a translation model.
    run : str
        A registration run of the dataset.

    Raises
    ------
    ValueError
        Where the run is not configured for the source's kind of input (:func:`registration_spec`).
    """
    spec = registration_spec(config, dataset, source, run)
    on_originals = source_input(config, dataset, source) == ORIGINAL
    return not on_originals and uses_originals(spec["method"], spec.get("params"))


def deformation_testsets(config: Config, dataset: str) -> list[str]:
    """A dataset's test sets with a known deformation (a ``deformation`` section), in configured order.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    """
    return [name for name, spec in dataset_config(config, dataset)["testsets"].items() if "deformation" in spec]


# --- ACCR (config `accr`; docs/explanation/accr.md) ---------------------------------------------


def accr_variants(config: Config, dataset: str) -> list[str]:
    """A dataset's variants with networks whose ACCR is on (the accr section, the variant's overrides merged).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration.
    dataset : str
        The dataset's name.

    Returns
    -------
    list of str
        The variants in configured order (no ensemble: it has no networks of its own).
    """
    cfg = dataset_config(config, dataset)
    return [variant for variant in network_variants(cfg) if variant_config(cfg, variant)["accr"] is not None]


def accr_model_variant(config: Config, dataset: str, variant: str) -> str:
    """The variant whose ACCR model (rule train_accr) ``variant`` registers with.

    Its model_from's where their accr settings agree (the same encoders, the same model: e.g. an
    inference-only ablation), else its own.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration.
    dataset : str
        The dataset's name.
    variant : str
        One of its variants with ACCR on.

    Returns
    -------
    str
        The variant's name.
    """
    cfg = dataset_config(config, dataset)
    source = model_variant(cfg, variant)
    return source if variant_config(cfg, source)["accr"] == variant_config(cfg, variant)["accr"] else variant


def accr_trained_variants(config: Config, dataset: str) -> list[str]:
    """The variants whose ACCR models are trained: those of :func:`accr_variants`' models.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration.
    dataset : str
        The dataset's name.

    Returns
    -------
    list of str
        Their :func:`accr_model_variant`, sorted, without repeats.
    """
    return sorted({accr_model_variant(config, dataset, variant) for variant in accr_variants(config, dataset)})


# --- calibrated confidence (config `confidence`; docs/method.md, section 15) -------------------


def calibrates(config: Config, dataset: str, run: str) -> bool:
    """Whether a registration run is calibrated: the dataset has a confidence section and the run registers CoMIRs.

    Not a deformable run: the confidence judges a matrix, and a model file keeps one calibration
    per method and parameters, which a rigid run and the same run with a deformable stage share.
    A method with a model of its own (ACCR) registers the original patches through its networks;
    its results are judged on the variant's CoMIRs of the same patches, like every other run's
    (:func:`comir.workflow.targets.registration_evidence`).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    run : str
        A registration run of the dataset.
    """
    cfg = dataset_config(config, dataset)
    spec = cfg["registration"][run]
    calibrated = "comir" in spec["inputs"] and not registers_deformably(spec)
    return cfg["confidence"] is not None and calibrated


def calibrated_runs(config: Config, dataset: str, variant: str | None = None) -> list[str]:
    """The calibrated registration runs of a dataset or of one variant, sorted (empty without a confidence section).

    A variant whose CoMIRs are another's (:func:`comir_twin`) registers only its ACCR runs, so only
    those are calibrated for it.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str or None, optional
        A variant with networks; None (default): every calibrated run of the dataset.
    """
    runs = dataset_config(config, dataset)["registration"]
    twin = variant is not None and comir_twin(config, dataset, variant) is not None
    return sorted(
        run
        for run, spec in runs.items()
        if calibrates(config, dataset, run) and not (twin and spec["method"] not in MODEL_METHODS)
    )


def judged_with_calibration(config: Config, dataset: str, source: str, run: str, testset: str) -> bool:
    """Whether a registration job reads a calibration (to give each result a confidence).

    True for a calibrated run on the CoMIRs of one network's variant on every test set but the
    calibration test set; an ensemble's CoMIRs, the originals and translations have none.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`ORIGINAL`, a variant or a translation model.
    run : str
        A registration run of the dataset.
    testset : str
        The test set the job registers.
    """
    return (
        len(source_networks(config, dataset, source)) == 1
        and calibrates(config, dataset, run)
        and testset != dataset_config(config, dataset)["confidence"]["testset"]
    )


def calibration_testset(config: Config, dataset: str) -> str:
    """The test set a dataset's calibrations are fitted on.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name; it must have a confidence section.
    """
    return dataset_config(config, dataset)["confidence"]["testset"]


# --- stress series (config `stress`) -----------------------------------------------------------


def stress_series(config: Config, dataset: str, series: str) -> Mapping[str, Any]:
    """A dataset's stress series (its ``stress`` entry).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    series : str
        The stress series' name.
    """
    return dataset_config(config, dataset)["stress"][series]


def stress_severities(config: Config, dataset: str, series: str) -> list[float]:
    """A stress series' severities: the base test set's 0 first, then the configured ones, increasing.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    series : str
        The stress series' name.
    """
    return [0.0, *sorted(float(s) for s in stress_series(config, dataset, series)["severities"])]


def stress_testsets(config: Config, dataset: str, series: str) -> list[str]:
    """The test sets of a stress series in the order of :func:`stress_severities`: the base, then each severity's.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    series : str
        The stress series' name.
    """
    severities = stress_severities(config, dataset, series)[1:]
    base = stress_series(config, dataset, series)["base"]
    return [base] + [stress_testset_name(series, severity) for severity in severities]


# --- pools and apply jobs ----------------------------------------------------------------------


def pool_jobs(config: Config, pool: str) -> list[tuple[str, str, str, str]]:
    """(dataset, source, run, direction) of every registration a pool reads, in the pool's dataset order.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    pool : str
        The pool's name; its ``variant``'s registration jobs (:func:`registration_jobs`) are read in each dataset.
    """
    spec = config["pools"][pool]
    return [
        (dataset, *job) for dataset in spec["datasets"] for job in registration_jobs(config, dataset, spec["variant"])
    ]


def slot_of(modalities: Mapping[str, Mapping[str, Any]], modality: str) -> str:
    """The slot (A/B) of a modality given by slot or name; a ``ValueError`` for neither.

    Parameters
    ----------
    modalities : Mapping[str, Mapping[str, Any]]
        The dataset's modalities, each with its ``name``.
    modality : str
        A slot (``A``, ``B``) or a modality's name.

    Returns
    -------
    str
        The slot.

    Raises
    ------
    ValueError
        If ``modality`` is neither a slot nor a modality's name.
    """
    for slot, spec in modalities.items():
        if modality in (slot, spec["name"]):
            return slot
    raise ValueError(f"{modality!r} is neither A, B nor a modality name ({modalities})")


def evaluated_apply_jobs(config: Config) -> list[str]:
    """The apply jobs with known transforms (a test set's or a truth file), in configured order.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    """
    return [name for name, job in config["apply"].items() if job["testset"] or job["truth"]]


# --- files found on disk (inputs, so that adding, removing or changing one reruns the job) -----


def pairs_files(config: Config, dataset: str) -> list[str]:
    """Every image file of a ``pairs`` dataset (nothing for other sources).

    A missing folder is left out here: prepare_data reports it, with its name.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    list of str
        The paths of the files with the configured ``extensions`` in each root's folder of each
        modality (named by the modality), root by root.
    """
    cfg = dataset_config(config, dataset)
    if cfg["source"] != "pairs":
        return []
    roots = cfg["pairs"]["root"]
    roots = [roots] if isinstance(roots, str) else roots
    extensions = [e.lower() for e in cfg["pairs"]["extensions"]]
    folders = [Path(root).expanduser() / cfg["modalities"][slot]["name"] for root in roots for slot in ("A", "B")]
    return [str(path) for folder in folders if folder.is_dir() for path in image_files(folder, extensions)]


def folder_images(root: str | Path) -> list[str]:
    """Every image in the sub-folders of ``root``, folder by folder in name order.

    A missing root, folder or partner is reported by the job that reads them, with its name.

    Parameters
    ----------
    root : str or pathlib.Path
        The folder (``~`` expanded) whose sub-folders hold images.

    Returns
    -------
    list of str
        The paths of the files with an image suffix (:data:`comir.io.IMAGE_SUFFIXES`); empty for a
        missing root.
    """
    root = Path(root).expanduser()
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [str(f) for folder in folders for f in image_files(folder, IMAGE_SUFFIXES)]


def record_settings(config: Config) -> dict[str, Mapping[str, Any]]:
    """Every Zenodo record in the configuration (a dataset's own or a test set's) and its download settings.

    Keyed by the record as a string; a record named twice has the settings of its first section.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).

    Returns
    -------
    dict of str to Mapping
        Record -> its ``zenodo`` section, in configuration order.
    """
    found: dict[str, Mapping[str, Any]] = {}
    for cfg in config["datasets"].values():
        sections = [cfg.get("zenodo") if cfg["source"] == "zenodo" else None]
        sections += [testset.get("zenodo") for testset in cfg["testsets"].values()]
        for section in filter(None, sections):
            found.setdefault(str(section["record"]), section)
    return found

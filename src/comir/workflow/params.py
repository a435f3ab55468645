"""What each rule's ``params`` get: the slice of the configuration the job uses, in canonical form.

Snakemake reruns a job whose params changed (their ``repr``), so each builder returns only what
its rule's script reads, through :func:`comir.workflow.canonical` (sorted keys): an unrelated
edit, or re-ordered keys, reruns nothing (docs/how-to/ablations.md). The builders take the
validated configuration and names from the job's wildcards and return plain data.

Settings added to the schema after results were computed enter the params only where they are
set (:func:`add_if_set`), so that finished jobs of older configurations stay finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comir.config.variants import ensemble_members, ensemble_params, model_file, model_variant, variant_config
from comir.workflow import canonical, modality_fields, pick
from comir.workflow.jobs import (
    ORIGINAL,
    Config,
    calibrated_runs,
    dataset_config,
    pool_jobs,
    record_settings,
    registration_spec,
    source_input,
    source_networks,
    variant_networks,
)

# Which modality settings a stage reads: prepare_data checks files (names are folders, channels
# and max_value judge the pixels); training, inference and registration turn pixels into network
# or method input (log1p too); names also label the results.
DATA_MODALITY_KEYS = ("name", "channels", "max_value")
IMAGE_MODALITY_KEYS = ("name", "channels", "log1p", "max_value")
OPTIONAL_IMAGE_MODALITY_KEYS = ("stain_normalization", "percentile_scaling")
# What computes a patch's CoMIR with PyTorch (the reproducibility runs' inference settings).
TORCH_INFERENCE_KEYS = ("device", "tile", "margin", "pad", "mixed_precision", "c4_average")
# How an apply job registers (not which pairs: those are its input).
APPLY_KEYS = (
    "reference",
    "folders",
    "method",
    "params",
    "transform",
    "pixel_size",
    "inference",
    "masks",
    "mask_margin_px",
    "register_max_px",
)


def add_if_set(settings: dict[str, Any], key: str, value: Any, unset: Any = None) -> dict[str, Any]:
    """``settings`` with ``key: value`` added unless ``value == unset``.

    Parameters
    ----------
    settings : dict of str to Any
        The params being built; changed in place.
    key : str
        The setting's key.
    value : Any
        Its configured value.
    unset : Any, optional
        The value that leaves the key out (see Notes). Default None.

    Returns
    -------
    dict
        ``settings`` itself, changed in place.

    Notes
    -----
    Rerun compatibility: each call is a shim for a setting the schema gained after results were
    computed. ``unset`` is what configurations without the setting implied; while a configuration
    leaves it there, the key stays out of the params, so Snakemake does not rerun their finished
    jobs. A shim can go (the key then always enters the params) once the results made before its
    setting existed have been recomputed or are no longer kept: removing it changes the params of
    every job of a configuration that leaves the setting unset, and reruns them and what follows.
    """
    if value != unset:
        settings[key] = value
    return settings


def image_modality_settings(modalities: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The modality settings that turn pixels into network or method input, per slot.

    :data:`IMAGE_MODALITY_KEYS`, and the stain normalisation and percentile scaling where set
    (:func:`add_if_set`).

    Parameters
    ----------
    modalities : Mapping[str, Mapping[str, Any]]
        The settings of each modality slot (a dataset's or a variant's ``modalities``).

    Returns
    -------
    dict of str to dict
        Slot -> its settings (not canonical: the builders make it so).
    """
    fields = modality_fields(modalities, IMAGE_MODALITY_KEYS)
    for slot, spec in modalities.items():
        for key in OPTIONAL_IMAGE_MODALITY_KEYS:
            add_if_set(fields[slot], key, spec.get(key))
    return fields


def model_modalities(modalities: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The modality settings recorded in a model file, per slot.

    The images' (:func:`image_modality_settings`), and the pixel size where one is given
    (:func:`add_if_set`).

    Parameters
    ----------
    modalities : Mapping[str, Mapping[str, Any]]
        The settings of each modality slot (a dataset's or a variant's ``modalities``).

    Returns
    -------
    dict of str to dict
        Slot -> its settings (not canonical).
    """
    fields = image_modality_settings(modalities)
    for slot, spec in modalities.items():
        add_if_set(fields[slot], "pixel_size", spec.get("pixel_size"))
    return fields


def modality_names(config: Config, dataset: str) -> dict[str, Any]:
    """The modality names of a dataset per slot (labels and folder names of exported pairs).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    return canonical(modality_fields(dataset_config(config, dataset)["modalities"], ("name",)))


def image_modalities(config: Config, dataset: str) -> dict[str, Any]:
    """The dataset's modality settings that turn stored images into method input, whatever the variant.

    For registrations on the originals, translation models and calibrations.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    return canonical(image_modality_settings(dataset_config(config, dataset)["modalities"]))


def network_input_modalities(config: Config, dataset: str, variant: str) -> dict[str, Any]:
    """The modality settings that turn stored images into input of a variant's networks.

    Those of the variant that trained them: a variant may override stain_normalization, and one
    with model_from uses its source's.

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
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    cfg = dataset_config(config, dataset)
    trained = variant_config(cfg, model_variant(cfg, variant))
    return canonical(image_modality_settings(trained["modalities"]))


def data_params(config: Config, dataset: str) -> dict[str, Any]:
    """What prepare_data uses: the source, its own section and how the modalities are stored.

    Of a Zenodo section only what changes the pairs: the record, the split and its strips.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    dict of str to Any
        Canonical: ``source``, the source's section under its name and ``modalities``
        (:data:`DATA_MODALITY_KEYS`).
    """
    cfg = dataset_config(config, dataset)
    source = cfg["source"]
    section = cfg.get(source, {})
    if source == "zenodo":
        # The strips only exist for split 'strips'.
        section = add_if_set(pick(section, ("record", "split")), "strips", section.get("strips"))
    return canonical(
        {"source": source, source: section, "modalities": modality_fields(cfg["modalities"], DATA_MODALITY_KEYS)}
    )


def download_params(config: Config, record: str) -> Mapping[str, Any]:
    """The download settings of a Zenodo record (the first section of the configuration that names it).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    record : str
        The Zenodo record (compared as a string).

    Returns
    -------
    Mapping[str, Any]
        The record's ``zenodo`` section (:func:`comir.workflow.jobs.record_settings`), as configured.
    """
    return record_settings(config)[str(record)]


def testset_params(config: Config, dataset: str, testset: str) -> dict[str, Any]:
    """What build_testset uses: the test set's own settings, and the modalities where it reads them.

    A test set with a shift reads their names, channels and full scale; a prebuilt one (imported
    from a record) their names and channels; the others none.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    testset : str
        One of the dataset's test sets.

    Returns
    -------
    dict of str to Any
        Canonical: ``testset`` (its settings, ``scale_range`` only where it is not ``[1, 1]``) and,
        where read, ``modalities``.
    """
    spec = dataset_config(config, dataset)["testsets"][testset]
    # Without scale_range where it is [1, 1] (rigid cases): the draws of test sets from before the key.
    build = add_if_set(
        {key: value for key, value in spec.items() if key != "scale_range"}, "scale_range", spec["scale_range"], [1, 1]
    )
    params: dict[str, Any] = {"testset": build}
    modalities = dataset_config(config, dataset)["modalities"]
    if "shift" in spec:
        params["modalities"] = modality_fields(modalities, ("name", "channels", "max_value"))
    elif spec["recipe"] == "prebuilt":
        params["modalities"] = modality_fields(modalities, ("name", "channels"))
    return canonical(params)


def network_params(config: Config, dataset: str, variant: str) -> dict[str, Any]:
    """What training uses: the variant's network and training settings and its modalities (:func:`model_modalities`).

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
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    cfg = variant_config(dataset_config(config, dataset), variant)
    return canonical(
        {"model": cfg["model"], "training": cfg["training"], "modalities": model_modalities(cfg["modalities"])}
    )


def inference_params(config: Config, dataset: str, variant: str) -> dict[str, Any]:
    """A variant's inference settings (computing and measuring its CoMIRs).

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
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    return canonical(variant_config(dataset_config(config, dataset), variant)["inference"])


def gpu(config: Config, dataset: str, section: str, variant: str | None = None) -> int:
    """A job's ``gpu`` resource: 1 where the device of its ``section`` (training or inference) is not the CPU.

    The variant's settings, or without a variant the dataset's own.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    section : str
        ``training`` or ``inference``: the section whose ``device`` counts.
    variant : str or None, optional
        The variant whose settings count. Default None: the dataset's own.

    Returns
    -------
    int
        1 or 0.
    """
    cfg = dataset_config(config, dataset)
    if variant is not None:
        cfg = variant_config(cfg, variant)
    return int(cfg[section]["device"] != "cpu")


def accr_params(config: Config, dataset: str, variant: str) -> dict[str, Any]:
    """What train_accr uses: a variant's ACCR model and training settings (its ``accr`` section).

    Its encoders and how they read images are its input (the variant's model file).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        A variant with ACCR on (:func:`comir.workflow.jobs.accr_variants`).

    Returns
    -------
    dict
        ``model`` and ``training``, canonical.
    """
    return canonical(variant_config(dataset_config(config, dataset), variant)["accr"])


def accr_gpu(config: Config, dataset: str, variant: str) -> int:
    """train_accr's ``gpu`` resource: 1 where the device of the variant's ACCR training is not the CPU.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration.
    dataset : str
        The dataset's name.
    variant : str
        A variant with ACCR on.

    Returns
    -------
    int
        1 or 0.
    """
    return int(accr_params(config, dataset, variant)["training"]["device"] != "cpu")


def attention_params(config: Config, dataset: str, variant: str) -> dict[str, Any]:
    """What accr_attention uses: how the variant's networks read the patches, and the direction shown.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration.
    dataset : str
        The dataset's name.
    variant : str
        A variant that trains an ACCR model (:func:`comir.workflow.jobs.accr_trained_variants`).

    Returns
    -------
    dict
        ``modalities`` (:func:`network_input_modalities`) and ``direction``: the dataset's first.
    """
    direction = dataset_config(config, dataset)["directions"][0]
    return canonical({"modalities": network_input_modalities(config, dataset, variant), "direction": direction})


def registration_params(config: Config, dataset: str, source: str, run: str) -> dict[str, Any]:
    """The run's method and parameters (which inputs it has are other jobs), and its deformable stage where set.

    On an ensemble's CoMIRs the cascade is also told how many networks' they are (``networks``
    among its parameters: the cascade's option, default 1). One network's CoMIRs get no such key:
    only the cascade takes it, and their params stay those of before ensembles existed.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`~comir.workflow.jobs.ORIGINAL`, a variant or a translation model.
    run : str
        A registration run of the dataset.

    Returns
    -------
    dict of str to Any
        Canonical: ``method``, ``params`` and, where set, ``deformable`` (its ``method`` and ``params``).

    Raises
    ------
    ValueError
        Where the run is not configured for the source's input
        (:func:`comir.workflow.jobs.registration_spec`).
    """
    spec = registration_spec(config, dataset, source, run)
    stage = spec.get("deformable")  # save_fields is the rule's output (register_fields), not the registration's
    run_spec = add_if_set(pick(spec, ("method", "params")), "deformable", stage and pick(stage, ("method", "params")))
    networks = source_networks(config, dataset, source)
    if len(networks) > 1:  # an ensemble registers with ENSEMBLE_METHODS only (comir.workflow.jobs)
        run_spec["params"] = ensemble_params(run_spec["method"], run_spec.get("params"), len(networks))
    return canonical(run_spec)


def registration_gpu(config: Config, dataset: str, source: str, run: str) -> int:
    """register_accr's ``gpu`` resource: 1 where the run's ``device`` parameter is not the CPU.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration.
    dataset : str
        The dataset's name.
    source : str
        The variant whose ACCR model registers.
    run : str
        A registration run of a method with a model of its own (``method: accr``).

    Returns
    -------
    int
        1 or 0.
    """
    run_params = registration_params(config, dataset, source, run).get("params") or {}
    return int(run_params.get("device", "cpu") != "cpu")


def image_input(source: str) -> str:
    """How a registration job reads its images: ``original``, or ``comir`` for CoMIRs and translations alike.

    Parameters
    ----------
    source : str
        A registration source: :data:`~comir.workflow.jobs.ORIGINAL`, a variant or a translation model.

    Returns
    -------
    str
        ``original`` or ``comir``.
    """
    return ORIGINAL if source == ORIGINAL else "comir"


def input_label(config: Config, dataset: str, source: str) -> str:
    """The ``input`` of a registration's rows: ``original``, ``comir``, or the translation model's name.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`~comir.workflow.jobs.ORIGINAL`, a variant or a translation model.

    Returns
    -------
    str
        ``original``, ``comir`` or the translation model's name.
    """
    kind = source_input(config, dataset, source)
    return source if kind == "translated" else kind


# Evaluation settings that one rule alone reads: the others' params leave them out, so setting one
# reruns nothing else.
COMPARISON_ONLY = ("reference_variant",)  # compare_variants
TRE_ONLY = ("tre_thresholds_px",)  # evaluate_tre


def statistics_settings(config: Config, dataset: str) -> dict[str, Any]:
    """A dataset's evaluation settings as every statistic but the variant comparison and the TRE table read them.

    Without :data:`COMPARISON_ONLY` and :data:`TRE_ONLY`.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    evaluation = dataset_config(config, dataset)["evaluation"]
    return canonical({key: value for key, value in evaluation.items() if key not in COMPARISON_ONLY + TRE_ONLY})


def comparison_settings(config: Config, dataset: str) -> dict[str, Any]:
    """A dataset's evaluation settings as compare_variants reads them (all but :data:`TRE_ONLY`).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    evaluation = dataset_config(config, dataset)["evaluation"]
    return canonical({key: value for key, value in evaluation.items() if key not in TRE_ONLY})


def tre_settings(config: Config, dataset: str) -> dict[str, Any]:
    """What evaluate_tre reads of a dataset's evaluation settings: the TRE thresholds and the failure fraction.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    return canonical(pick(dataset_config(config, dataset)["evaluation"], ("failure_fraction", *TRE_ONLY)))


def evaluation_provenance(config: Config, dataset: str, variant: str, testset: str) -> dict[str, Any]:
    """The settings behind one variant's evaluation on one test set, recorded in its provenance.json.

    An ensemble's also have each member's network settings (``ensemble``; :func:`add_if_set`).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.
    testset : str
        The evaluated test set.

    Returns
    -------
    dict of str to Any
        Canonical: the dataset, variant, test set (with its settings), the configuration's seed, the
        variant's data source, modality, model, training, inference, direction and registration
        settings, and the evaluation settings (:func:`statistics_settings`).
    """
    dataset_cfg = dataset_config(config, dataset)
    cfg = variant_config(dataset_cfg, variant)
    networks = {
        member: pick(variant_config(dataset_cfg, member), ("modalities", "model", "training", "inference"))
        for member in ensemble_members(dataset_cfg, variant)
    }
    settings = {
        "dataset": dataset,
        "variant": variant,
        "testset": {testset: cfg["testsets"][testset]},
        "seed": config["seed"],
        **pick(cfg, ("source", cfg["source"], "modalities", "model", "training", "inference")),
        **pick(cfg, ("directions", "registration")),
        "evaluation": statistics_settings(config, dataset),
    }
    return canonical(add_if_set(settings, "ensemble", networks, {}))


def timing_networks(config: Config, dataset: str, variant: str) -> dict[str, list[str]]:
    """The row labels of the timing table's training and inference benchmarks, in their order.

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
    dict
        ``computed``: an ensemble's members, or ``[""]`` for a variant's own networks (its rows
        keep the plain stage names); ``trained``: those of them that were trained here (not a
        model file trained elsewhere). The order is that of
        :func:`comir.workflow.targets.stage_benchmarks`.
    """
    cfg = dataset_config(config, dataset)
    networks = variant_networks(config, dataset, variant)
    labels = ensemble_members(cfg, variant) or [""]
    return {
        "trained": [label for label, network in zip(labels, networks, strict=True) if not model_file(cfg, network)],
        "computed": labels,
    }


def translation_params(config: Config, dataset: str, translator: str) -> dict[str, Any]:
    """What train_translation uses: the entry, the training section's patch augmentation and device, the modalities.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    translator : str
        One of the dataset's translation models.

    Returns
    -------
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).
    """
    cfg = dataset_config(config, dataset)
    return canonical(
        {
            "entry": cfg["translation"][translator],
            "training": pick(cfg["training"], ("rotation", "flips", "device", "mixed_precision")),
            "modalities": image_modality_settings(cfg["modalities"]),
        }
    )


def representation_settings(config: Config, dataset: str, kind: str) -> dict[str, Any]:
    """A dataset's ``representation.<kind>`` section (``kind``: equivariance or reproducibility).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    kind : str
        ``equivariance`` or ``reproducibility``.

    Returns
    -------
    dict of str to Any
        Canonical (:func:`comir.workflow.canonical`).

    Raises
    ------
    ValueError
        Naming the key, where the measurement is off (null): a job was asked for all the same.
    """
    settings = dataset_config(config, dataset)["representation"][kind]
    if settings is None:
        raise ValueError(f"representation.{kind} of dataset {dataset!r} is off (null): give it settings to measure")
    return canonical(settings)


def dataset_network_params(config: Config, dataset: str) -> dict[str, Any]:
    """What the reproducibility runs use: the dataset's own (not a variant's) network settings.

    Its network, training and image settings, and what computes a patch's CoMIR with PyTorch.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.

    Returns
    -------
    dict of str to Any
        Canonical: ``model``, ``training``, ``inference`` (:data:`TORCH_INFERENCE_KEYS`) and
        ``modalities`` (:func:`image_modality_settings`).
    """
    cfg = dataset_config(config, dataset)
    return canonical(
        {
            "model": cfg["model"],
            "training": cfg["training"],
            "inference": pick(cfg["inference"], TORCH_INFERENCE_KEYS),
            "modalities": image_modality_settings(cfg["modalities"]),
        }
    )


def confidence_params(config: Config, dataset: str) -> dict[str, Any]:
    """What a calibration uses of the dataset's confidence section (not its test set: that is an input).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name; it must have a confidence section.

    Returns
    -------
    dict of str to Any
        Canonical: ``success_fraction`` and ``false_accept_rate``.
    """
    return canonical(pick(dataset_config(config, dataset)["confidence"], ("success_fraction", "false_accept_rate")))


def calibrated_run_specs(config: Config, dataset: str, variant: str) -> list[dict[str, Any]]:
    """Method and parameters of every calibrated run of a variant, in :func:`comir.workflow.jobs.calibrated_runs` order.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        A variant with networks.

    Returns
    -------
    list of dict
        Canonical ``method`` and ``params`` per run.
    """
    runs = dataset_config(config, dataset)["registration"]
    return [canonical(pick(runs[run], ("method", "params"))) for run in calibrated_runs(config, dataset, variant)]


def pool_datasets(config: Config, pool: str) -> list[str]:
    """The dataset of each registration a pool reads, in its inputs' order (:func:`~comir.workflow.jobs.pool_jobs`).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    pool : str
        The pool's name.
    """
    return [dataset for dataset, *_ in pool_jobs(config, pool)]


def pool_modalities(config: Config, pool: str) -> dict[str, Any]:
    """The modality names and full scales of a pool (its first dataset's) for the figure of the cores.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    pool : str
        The pool's name.

    Returns
    -------
    dict of str to Any
        Canonical: slot -> ``name`` and ``max_value`` (where set).
    """
    first = config["pools"][pool]["datasets"][0]
    return canonical(modality_fields(dataset_config(config, first)["modalities"], ("name", "max_value")))


def apply_settings(config: Config, job: str) -> dict[str, Any]:
    """What a register_pairs job uses: how to register (not which pairs: those are its input).

    rescale, min_confidence and deformable where set (:func:`add_if_set`, so a job without them keeps
    its params); on an exported test set the pair
    folders are its modality names, whatever the model calls them.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    job : str
        The apply job's name.

    Returns
    -------
    dict of str to Any
        Canonical: the job's :data:`APPLY_KEYS` that are set, and ``rescale``, ``min_confidence`` and
        ``deformable`` where set.
    """
    spec = config["apply"][job]
    settings = pick(spec, APPLY_KEYS)
    add_if_set(settings, "rescale", bool(spec.get("rescale")), False)
    add_if_set(settings, "min_confidence", spec.get("min_confidence"))
    add_if_set(settings, "deformable", spec.get("deformable"))
    if spec["testset"] is not None:
        modalities = dataset_config(config, spec["testset"]["dataset"])["modalities"]
        settings["folders"] = {slot: modality["name"] for slot, modality in modalities.items()}
    return canonical(settings)

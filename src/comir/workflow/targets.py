"""Which files the rules read and what the default target requests, as :class:`Target` (rule, output, wildcards).

A rule's output and benchmark declarations are the only place each path is written
(workflow/rules/*.smk); these functions name files by the rule that makes them, which output,
and its wildcard values, and workflow/rules/common.smk fills them into the declared templates.
Where a function returns a single :class:`Target` or a list, the rule's input is a single file
or a list (in a script, ``snakemake.input.<name>`` is then a path or a list of paths); a plain
string is a path given by the configuration (a model file, a folder of pairs).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from comir.config.variants import model_file, model_variant, network_variants
from comir.imaging.masks import MASK_MODES
from comir.register import MODEL_METHODS
from comir.workflow.jobs import (
    ORIGINAL,
    Config,
    accr_model_variant,
    accr_trained_variants,
    calibrated_runs,
    calibrates,
    calibration_testset,
    comir_twin,
    comparison_jobs,
    dataset_config,
    deformation_testsets,
    evaluated_apply_jobs,
    folder_images,
    judged_with_calibration,
    pool_jobs,
    reads_originals,
    registration_jobs,
    slot_of,
    sorted_variants,
    source_input,
    source_networks,
    stress_testsets,
    variant_networks,
)


class Target(NamedTuple):
    """One file of a rule: an output with its wildcards filled in."""

    #: The rule's name.
    rule: str
    #: The output's name, its index for an unnamed output, or None for the rule's benchmark file.
    output: str | int | None
    #: The value of each wildcard of the output (only those it has).
    wildcards: dict[str, Any]


def combinations(rule: str, outputs: Iterable[str | int | None], **values: Any) -> list[Target]:
    """The targets of Snakemake's ``expand`` over ``rule``'s ``outputs``, in its order.

    Parameters
    ----------
    rule, outputs
        The rule and its outputs (see :class:`Target`).
    **values
        Per wildcard its value (a string or another non-iterable) or values (a list, a range).
        Every keyword must be a wildcard of every output: ``expand`` would drop it where
        unused, this keeps it (and an empty list of an unused wildcard would yield nothing).

    Returns
    -------
    list of Target
        Per output in turn, every combination of the values, the first keyword varying slowest.
    """
    names = list(values)
    lists = [[v] if isinstance(v, str) or not isinstance(v, Iterable) else list(v) for v in values.values()]
    return [
        Target(rule, output, dict(zip(names, combination, strict=True)))
        for output in outputs
        for combination in itertools.product(*lists)
    ]


# --- data, models and test sets -------------------------------------------------------------


def unpacked_record(record: int | str) -> Target:
    """The folder that rule unpack_record fills with a Zenodo record's files.

    Parameters
    ----------
    record : int or str
        The Zenodo record.
    """
    return Target("unpack_record", 0, {"record": record})


def record_input(config: Config, dataset: str) -> Target | list[Target]:
    """The unpacked Zenodo record a dataset is prepared from; ``[]`` for other sources.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    """
    cfg = dataset_config(config, dataset)
    if cfg["source"] != "zenodo":
        return []
    return unpacked_record(cfg["zenodo"]["record"])


def prebuilt_input(config: Config, dataset: str, testset: str) -> Target | list[Target]:
    """The unpacked record a prebuilt test set is imported from (its own or the dataset's); ``[]`` for recipes.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    testset : str
        One of the dataset's test sets.
    """
    spec = dataset_config(config, dataset)["testsets"][testset]
    if spec["recipe"] != "prebuilt":
        return []
    if "zenodo" in spec:
        return unpacked_record(spec["zenodo"]["record"])
    return record_input(config, dataset)


def model(config: Config, dataset: str, variant: str) -> str | Target:
    """The networks a variant uses.

    Its model_file (trained elsewhere: a path), else the trained model of its model_from or of itself.

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
    str or Target
        The model file's path as configured, or rule train's ``model`` output.
    """
    cfg = dataset_config(config, dataset)
    path = model_file(cfg, variant)
    if path is not None:
        return path
    return Target("train", "model", {"dataset": dataset, "variant": model_variant(cfg, variant)})


def accr_model(config: Config, dataset: str, variant: str) -> Target:
    """The ACCR model a variant registers with: rule train_accr's (:func:`~comir.workflow.jobs.accr_model_variant`).

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
    Target
        Rule train_accr's ``model`` output.
    """
    return Target("train_accr", "model", {"dataset": dataset, "variant": accr_model_variant(config, dataset, variant)})


def testset_images(dataset: str, testset: str) -> Target:
    """A test set's original patches.

    Parameters
    ----------
    dataset : str
        The dataset's name.
    testset : str
        One of the dataset's test sets.
    """
    return Target("build_testset", "images", {"dataset": dataset, "testset": testset})


def comirs(dataset: str, variant: str, testset: str) -> Target:
    """One variant's CoMIRs of a test set's patches.

    Parameters
    ----------
    dataset : str
        The dataset's name.
    variant : str
        A variant with networks (an ensemble's CoMIRs are its members').
    testset : str
        One of the dataset's test sets.
    """
    return Target("compute_comirs", "comirs", {"dataset": dataset, "variant": variant, "testset": testset})


def judged_comirs(config: Config, dataset: str, variant: str, testset: str) -> Target:
    """The CoMIRs a variant's results are judged on: its own, or its twin's (:func:`~comir.workflow.jobs.comir_twin`).

    A stage-2 ablation of ACCR has its source's networks and inference, so its CoMIRs would be a
    copy of its source's.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        A variant with networks.
    testset : str
        One of the dataset's test sets.
    """
    return comirs(dataset, comir_twin(config, dataset, variant) or variant, testset)


# --- registrations ------------------------------------------------------------------------


def registration_csv(dataset: str, source: str, testset: str, run: str, direction: str) -> Target:
    """The per-case results of one registration job.

    Parameters
    ----------
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`~comir.workflow.jobs.ORIGINAL`, a variant or a translation model.
    testset : str
        One of the dataset's test sets.
    run : str
        A registration run of the dataset.
    direction : str
        One of the dataset's registration directions.
    """
    wildcards = {"dataset": dataset, "source": source, "testset": testset, "run": run, "direction": direction}
    return Target("register", 0, wildcards)


def registration_images(config: Config, dataset: str, source: str, testset: str) -> Target | list[Target]:
    """What a registration source registers.

    The test set's original patches, a translation model's fakes of them, or a list of CoMIRs of
    them (a variant's, or each of an ensemble's members').

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`~comir.workflow.jobs.ORIGINAL`, a variant or a translation model.
    testset : str
        One of the dataset's test sets.
    """
    kind = source_input(config, dataset, source)
    if kind == ORIGINAL:
        return testset_images(dataset, testset)
    if kind == "translated":
        return Target("translate", "images", {"dataset": dataset, "translator": source, "testset": testset})
    return [comirs(dataset, network, testset) for network in source_networks(config, dataset, source)]


def registration_originals(config: Config, dataset: str, source: str, testset: str, run: str) -> Target | list[Target]:
    """The original patches where a run also reads them (:func:`~comir.workflow.jobs.reads_originals`), else ``[]``.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`~comir.workflow.jobs.ORIGINAL`, a variant or a translation model.
    testset : str
        One of the dataset's test sets.
    run : str
        A registration run of the dataset.

    Returns
    -------
    Target or list of Target
        :func:`testset_images`, or ``[]``.
    """
    if not reads_originals(config, dataset, source, run):
        return []
    return testset_images(dataset, testset)


def registration_truth(config: Config, dataset: str, testset: str) -> Target | list[Target]:
    """The test set's patches, beside which a deformation test set keeps each case's true field; else ``[]``.

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
    Target or list of Target
        :func:`testset_images`, or ``[]``.
    """
    if testset not in deformation_testsets(config, dataset):
        return []
    return testset_images(dataset, testset)


def registration_evidence(config: Config, dataset: str, source: str, testset: str, run: str) -> Target | list[Target]:
    """The CoMIRs a calibrated run that registers other images is judged on (:func:`judged_comirs`), else ``[]``.

    A method with a model of its own (ACCR, :data:`comir.register.MODEL_METHODS`) registers the
    original patches through its networks; the evidence of its results (with a calibration, and of
    every unrelated pair) is measured on the variant's CoMIRs of the same patches, as every other
    calibrated run's is on the CoMIRs it registers (docs/method.md, section 15).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: a variant for a run with a model of its own.
    testset : str
        One of the dataset's test sets.
    run : str
        A registration run of the dataset.
    """
    method = dataset_config(config, dataset)["registration"][run]["method"]
    if method not in MODEL_METHODS or not calibrates(config, dataset, run):
        return []
    return judged_comirs(config, dataset, source, testset)


def registration_calibration(config: Config, dataset: str, source: str, testset: str, run: str) -> list[Target]:
    """The calibration a registration job judges its results with: a one-element list, or ``[]``.

    See :func:`comir.workflow.jobs.judged_with_calibration`.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    source : str
        A registration source: :data:`~comir.workflow.jobs.ORIGINAL`, a variant or a translation model.
    testset : str
        One of the dataset's test sets.
    run : str
        A registration run of the dataset.
    """
    if not judged_with_calibration(config, dataset, source, run, testset):
        return []
    return [Target("calibrate", "calibration", {"dataset": dataset, "variant": source, "run": run})]


def registration_csvs(config: Config, dataset: str, variant: str, testset: str) -> list[Target]:
    """The results of every registration the evaluation of a variant on a test set reads.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        The evaluated variant.
    testset : str
        One of the dataset's test sets.

    Returns
    -------
    list of Target
        In :func:`comir.workflow.jobs.registration_jobs` order.
    """
    return [registration_csv(dataset, s, testset, r, d) for s, r, d in registration_jobs(config, dataset, variant)]


def comparison_csvs(config: Config, dataset: str, testset: str) -> list[Target]:
    """The results of the registrations on every variant's CoMIRs (the variants' comparison).

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
    list of Target
        In :func:`comir.workflow.jobs.comparison_jobs` order.
    """
    return [registration_csv(dataset, s, testset, r, d) for s, r, d in comparison_jobs(config, dataset)]


def stage_benchmarks(config: Config, dataset: str, variant: str, testset: str) -> dict[str, list[Target]]:
    """The benchmark files behind the timing table (paper, Table 3) of one variant and test set.

    ``train`` and ``inference`` of each network (an ensemble's members, else the variant's own; a
    model file trained elsewhere has no training here), ``registration`` of every registration job,
    in the order of :func:`comir.workflow.params.timing_networks` and
    :func:`comir.workflow.jobs.registration_jobs`.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.
    testset : str
        One of the dataset's test sets.

    Returns
    -------
    dict of str to list of Target
        The benchmark files (output None) under ``train``, ``inference`` and ``registration``.
    """
    cfg = dataset_config(config, dataset)
    networks = variant_networks(config, dataset, variant)
    return {
        "train": [
            Target("train", None, {"dataset": dataset, "variant": model_variant(cfg, network)})
            for network in networks
            if not model_file(cfg, network)
        ],
        "inference": combinations("compute_comirs", [None], dataset=dataset, variant=networks, testset=testset),
        "registration": [
            Target("register", None, registration_csv(dataset, s, testset, r, d).wildcards)
            for s, r, d in registration_jobs(config, dataset, variant)
        ],
    }


def translation_examples_input(config: Config, dataset: str, variant: str, testset: str) -> dict[str, Any]:
    """Fig. 3: the test set, every translation model's fakes (by model name) and the variant's CoMIRs.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.
    testset : str
        One of the dataset's test sets.

    Returns
    -------
    dict of str to Any
        ``images`` and ``cases`` (Targets of the test set), ``translated`` (a list, by model name)
        and ``comirs`` (a Target).
    """
    where = {"dataset": dataset, "testset": testset}
    return {
        "images": testset_images(dataset, testset),
        "cases": Target("build_testset", "cases", where),
        "translated": [
            Target("translate", "images", {"dataset": dataset, "translator": name, "testset": testset})
            for name in sorted(dataset_config(config, dataset)["translation"])
        ],
        "comirs": comirs(dataset, variant, testset),
    }


# --- calibrated confidence ------------------------------------------------------------------


def run_results(config: Config, dataset: str, variant: str, testset: str, runs: list[str], rule: str) -> list[Target]:
    """Per-case results of ``runs`` (each in every direction) on a variant's CoMIRs.

    Of ``rule`` ``register`` (true pairs) or ``register_unrelated`` (unrelated pairs).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        The variant whose CoMIRs were registered (the source).
    testset : str
        One of the dataset's test sets.
    runs : list of str
        Registration runs of the dataset.
    rule : str
        ``register`` or ``register_unrelated``.

    Returns
    -------
    list of Target
        Run by run, each direction in configured order.
    """
    directions = dataset_config(config, dataset)["directions"]
    return combinations(rule, [0], dataset=dataset, source=variant, testset=testset, run=runs, direction=directions)


def calibration_files(config: Config, dataset: str, variant: str, output: str) -> list[Target]:
    """One output of rule calibrate (``calibration`` or ``evidence``) per calibrated run of a variant.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.
    output : str
        ``calibration`` or ``evidence``.

    Returns
    -------
    list of Target
        In :func:`comir.workflow.jobs.calibrated_runs` order.
    """
    runs = calibrated_runs(config, dataset, variant)
    return combinations("calibrate", [output], dataset=dataset, variant=variant, run=runs)


def calibrate_input(config: Config, dataset: str, variant: str, run: str) -> dict[str, list[Target]]:
    """What calibrating one run on a variant's CoMIRs reads (rule calibrate's inputs, for ``unpack``).

    The calibration test set's CoMIRs and cases, and the run's results on its true and on
    unrelated pairs.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.
    run : str
        A registration run of the dataset.

    Returns
    -------
    dict of str to list of Target
        ``images``, ``cases``, ``registrations`` and ``unrelated``.
    """
    testset = calibration_testset(config, dataset)
    return {
        "images": [judged_comirs(config, dataset, variant, testset)],
        "cases": [Target("build_testset", "cases", {"dataset": dataset, "testset": testset})],
        "registrations": run_results(config, dataset, variant, testset, [run], "register"),
        "unrelated": run_results(config, dataset, variant, testset, [run], "register_unrelated"),
    }


def evaluate_confidence_input(config: Config, dataset: str, variant: str, testset: str) -> dict[str, list[Target]]:
    """What judging the confidence on one test set reads (rule evaluate_confidence's inputs, for ``unpack``).

    Every calibrated run's results on its true and on unrelated pairs, and the calibrations with
    their evidence.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.
    testset : str
        The test set judged.

    Returns
    -------
    dict of str to list of Target
        ``registrations``, ``unrelated``, ``calibrations`` and ``evidence``.
    """
    runs = calibrated_runs(config, dataset, variant)
    return {
        "registrations": run_results(config, dataset, variant, testset, runs, "register"),
        "unrelated": run_results(config, dataset, variant, testset, runs, "register_unrelated"),
        "calibrations": calibration_files(config, dataset, variant, "calibration"),
        "evidence": calibration_files(config, dataset, variant, "evidence"),
    }


# --- stress series, representations, pools ---------------------------------------------------


def stress_success_tables(config: Config, dataset: str, variant: str, series: str) -> list[Target]:
    """The success tables of a variant's evaluation on each test set of a stress series, base first.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variant : str
        One of the dataset's variants.
    series : str
        The stress series' name.

    Returns
    -------
    list of Target
        In the order of :func:`comir.workflow.jobs.stress_testsets`.
    """
    testsets = stress_testsets(config, dataset, series)
    return combinations("evaluate", ["success"], dataset=dataset, variant=variant, testset=testsets)


def rotation_tables(config: Config, dataset: str) -> list[Target]:
    """The rotation-equivariance tables of every variant with networks, by variant name.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    """
    return combinations("equivariance", ["rotation"], dataset=dataset, variant=sorted_variants(config, dataset))


def pool_registrations(config: Config, pool: str) -> list[Target]:
    """Every registration a pool reads (:func:`comir.workflow.jobs.pool_jobs` order).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    pool : str
        The pool's name.
    """
    testset = config["pools"][pool]["testset"]
    return [registration_csv(dataset, s, testset, r, d) for dataset, s, r, d in pool_jobs(config, pool)]


def pool_patches(config: Config, pool: str) -> dict[str, list[Target]]:
    """Per pooled dataset, in the pool's order: its test set's patches and the pool variant's CoMIRs of them.

    For the figure of the cores; an ensemble variant's CoMIRs are its first member's.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    pool : str
        The pool's name.

    Returns
    -------
    dict of str to list of Target
        ``patches`` and ``comirs``, one per pooled dataset.
    """
    spec = config["pools"][pool]
    return {
        "patches": [testset_images(dataset, spec["testset"]) for dataset in spec["datasets"]],
        "comirs": [
            comirs(dataset, source_networks(config, dataset, spec["variant"])[0], spec["testset"])
            for dataset in spec["datasets"]
        ],
    }


# --- the apply stage --------------------------------------------------------------------------


def apply_model(config: Config, job: str) -> str | list[str] | Target | list[Target]:
    """An apply job's model file, or an ensemble's model files in its order (a list).

    Given by path (or a list of paths), or trained by this configuration (with its calibrated
    confidence inside when the dataset has a confidence section); an ensemble variant's members'
    trained models (an ensemble has no calibration, so none of theirs is made for it); for method
    accr the variant's ACCR model (:func:`accr_model`; rule calibrate_accr_model's with a confidence section).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    job : str
        The apply job's name.
    """
    spec = config["apply"][job]["model"]
    if "file" in spec:
        return spec["file"]
    wildcards = {"dataset": spec["dataset"], "variant": spec["variant"]}
    calibrated = dataset_config(config, spec["dataset"])["confidence"] is not None
    if config["apply"][job]["method"] == "accr":
        return Target("calibrate_accr_model", 0, wildcards) if calibrated else accr_model(config, **wildcards)
    networks = variant_networks(config, spec["dataset"], spec["variant"])
    if len(networks) > 1:
        return [model(config, spec["dataset"], network) for network in networks]
    return Target("calibrate_model", 0, wildcards) if calibrated else model(config, **wildcards)


def apply_testset_pairs(config: Config, job: str) -> tuple[Target, Target]:
    """The exported pairs folder and truth of an apply job on a test set (with its reference slot).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    job : str
        The apply job's name; it must register a test set.

    Returns
    -------
    pairs, truth : Target
        Rule testset_pairs' ``pairs`` and ``truth`` outputs.
    """
    spec = config["apply"][job]
    testset = spec["testset"]
    reference = slot_of(dataset_config(config, testset["dataset"])["modalities"], spec["reference"])
    wildcards = {"dataset": testset["dataset"], "testset": testset["name"], "reference": reference}
    return Target("testset_pairs", "pairs", wildcards), Target("testset_pairs", "truth", wildcards)


def apply_pairs(config: Config, job: str) -> list[str | Target]:
    """An apply job's pairs: first their root, then its images, then the mask files.

    A user's folder is followed by every image in it (adding, removing or changing one reruns the
    job), an exported test set's by none; masks given as a folder by every image in it.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    job : str
        The apply job's name.

    Returns
    -------
    list of str or Target
        The pairs' root (a path, or rule testset_pairs' ``pairs`` output), then image and mask paths.
    """
    spec = config["apply"][job]
    masks = folder_images(spec["masks"]) if spec["masks"] not in MASK_MODES else []
    if spec["testset"] is not None:
        return [apply_testset_pairs(config, job)[0], *masks]
    root = str(Path(spec["pairs"]).expanduser())
    return [root, *folder_images(root), *masks]


def apply_truth(config: Config, job: str) -> str | Target | list[Any]:
    """An apply job's known transforms: the test set's, the configured file, or none (``[]``).

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    job : str
        The apply job's name.

    Returns
    -------
    str or Target or list
        Rule testset_pairs' ``truth`` output, the configured truth file's path, or ``[]``.
    """
    spec = config["apply"][job]
    if spec["testset"] is not None:
        return apply_testset_pairs(config, job)[1]
    return spec["truth"] or []


def apply_batches(config: Config, job: str) -> list[Target]:
    """The batch tables of an apply job.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    job : str
        The apply job's name.

    Returns
    -------
    list of Target
        Rule register_pairs' ``table`` per batch, in batch order.
    """
    return combinations("register_pairs", ["table"], job=job, batch=range(config["apply"][job]["batches"]))


def apply_evaluated(config: Config) -> list[Target]:
    """The per-case rows of every apply job with known transforms.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    """
    return combinations("apply_errors", [0], job=evaluated_apply_jobs(config))


# --- the default target ---------------------------------------------------------------------


def representation_targets(config: Config, dataset: str) -> list[Target]:
    """What a dataset's representation section turns on.

    Per variant with networks the equivariance tables and polar plot (with several such variants
    their common plot too), and the reproducibility table and figure.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    """
    cfg = dataset_config(config, dataset)
    representation, variants = cfg["representation"], network_variants(cfg)
    targets = []
    if representation["equivariance"] is not None:
        outputs = ["rotation_md", "translation_md", "figure"]
        targets += combinations("equivariance", outputs, dataset=dataset, variant=variants)
        if len(variants) > 1:
            targets.append(Target("equivariance_comparison", 0, {"dataset": dataset}))
    if representation["reproducibility"] is not None:
        targets += combinations("reproducibility", ["markdown", "figure"], dataset=dataset)
    return targets


def confidence_targets(config: Config, dataset: str, variants: list[str]) -> list[Target]:
    """Per variant the calibration of every calibrated run, then the judgement of every other test set.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    variants : list of str
        The variants whose CoMIRs are calibrated and judged (those with networks).

    Returns
    -------
    list of Target
        Empty without a confidence section.
    """
    cfg = dataset_config(config, dataset)
    if cfg["confidence"] is None:
        return []
    judged = [t for t in cfg["testsets"] if t != cfg["confidence"]["testset"]]
    calibrations = [target for v in variants for target in calibration_files(config, dataset, v, "calibration")]
    return calibrations + combinations(
        "evaluate_confidence", ["markdown", "figure"], dataset=dataset, variant=variants, testset=judged
    )


def dataset_targets(config: Config, dataset: str) -> list[Target]:
    """What the default target requests of one dataset.

    Per trained variant its loss curve; per variant with networks and test set its CoMIR examples
    and agreement; per variant and test set the tables and figures of its evaluation and timing
    (with several variants their comparison), and on a test set with a deformation its TRE tables
    and eCDF; the stress curves, representations and confidence where configured; the translation
    baselines' loss curves and Fig. 3; with ACCR, per trained ACCR model and test set its attention figure.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).
    dataset : str
        The dataset's name.
    """
    cfg = dataset_config(config, dataset)
    variants, testsets, networks = list(cfg["variants"]), list(cfg["testsets"]), network_variants(cfg)
    trained = sorted({model_variant(cfg, v) for v in networks if model_file(cfg, v) is None})
    per_network = combinations("compute_comirs", ["examples"], dataset=dataset, variant=networks, testset=testsets)
    per_network += combinations("agreement", ["markdown"], dataset=dataset, variant=networks, testset=testsets)
    evaluation = ["success_md", "wilcoxon_md", "ecdf", "displacement", "bars"]
    per_testset = combinations("evaluate", evaluation, dataset=dataset, variant=variants, testset=testsets)
    per_testset += combinations("timing", ["markdown"], dataset=dataset, variant=variants, testset=testsets)
    deformed = deformation_testsets(config, dataset)
    per_testset += combinations("evaluate_tre", ["markdown", "wilcoxon_md", "ecdf"], dataset=dataset,
                                variant=variants, testset=deformed)  # fmt: skip
    targets = [*combinations("train", ["plot"], dataset=dataset, variant=trained), *per_network, *per_testset]
    if len(variants) > 1:
        comparison = ["markdown", "success_md", "figure"]
        targets += combinations("compare_variants", comparison, dataset=dataset, testset=testsets)
    if cfg["stress"]:
        series = list(cfg["stress"])
        targets += combinations("stress_curve", ["table", "figure"], dataset=dataset, variant=variants, series=series)
    targets += representation_targets(config, dataset)
    targets += confidence_targets(config, dataset, networks)
    if cfg["translation"]:
        targets += combinations("translation_examples", [0], dataset=dataset, variant=networks, testset=testsets)
        translators = list(cfg["translation"])
        targets += combinations("train_translation", ["plot"], dataset=dataset, translator=translators)
    accr = accr_trained_variants(config, dataset)
    targets += combinations("accr_attention", ["figure"], dataset=dataset, variant=accr, testset=testsets)
    return targets


def final_targets(config: Config) -> list[Target]:
    """What the default target (rule all) requests.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (:func:`comir.config.validate.validate_config`).

    Returns
    -------
    list of Target
        Every dataset's (:func:`dataset_targets`, in configured order), each apply job's
        summary, each pool's tables and eCDF, and the apply jobs' comparison where any has
        known transforms; in the order of rule all's input.
    """
    targets = [target for dataset in config["datasets"] for target in dataset_targets(config, dataset)]
    targets += combinations("summarise_pairs", ["markdown"], job=list(config["apply"]))
    targets += combinations("pool_folds", ["markdown", "per_dataset", "ecdf"], pool=list(config["pools"]))
    if evaluated_apply_jobs(config):
        targets += combinations("evaluate_apply", ["markdown", "wilcoxon", "ecdf"])
    return targets

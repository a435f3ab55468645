# Helpers for the stage files: configuration look-ups, result paths and the final outputs.
#
# Layout of results/<dataset>/:
#   data/                      canonical aligned pairs (pairs.csv, images/, layout.json)
#   testsets/<testset>/        transformed test sets (cases.csv, images/)
#   <variant>/model/           one trained pair of networks per variant
#   <variant>/comir/<testset>/ CoMIRs of a test set
#   <source>/registration/<testset>/<run>_<direction>.csv
#                              source = original (shared by all variants) or a variant (its CoMIRs)
#   <variant>/evaluation/<testset>/{tables,figures}/   the paper's statistics for one variant
#   <variant>/evaluation/stress/<series>.{csv,png}     a stress series: success against severity
#   comparison/<testset>/      variants against each other (e.g. MSE vs cosine critic)
#   translation/<model>/       a GAN translation baseline: model.pt, loss.csv/.png, <testset>/images/
#                              (its fakes, registered as registration source <model>),
#   <variant>/comir/<testset>/translations.png   the paper's Fig. 3 (with translation models)
#   <variant>/representation/  equivariance of a variant's CoMIRs (tables, polar plot)
#   representation/            reproducibility across training runs; all variants' equivariance plot
#   logs/, benchmarks/         one file per job
#   testsets/<testset>/unaligned_<slot>/   a test set as unaligned pairs (reference <slot>) + truth.csv
#
# Layout of results/apply/<job>/ (the apply stage, config `apply`):
#   pairs/<batch>/<id>/        per pair: transform.csv/.tfm, warped.tif, overlay.png, CoMIRs
#   batches/<batch>.csv        one row per pair of a batch; summary.csv/.md: all, flagged
#   evaluation/                against known transforms: per-case rows, success table, eCDF
#
# Rule params: each rule gets only the configuration it uses, in canonical form (sorted keys),
# because Snakemake reruns a job whose params changed (docs/how-to/ablations.md).
# Paths: a rule's output and benchmark declarations are the only place each path is written;
# helpers and rule all fill them in (`rules.<name>.output`, `fill`, `expand`).

from comir.config import (
    ENSEMBLE_METHODS,
    ensemble_members,
    model_file,
    model_variant,
    network_variants,
    section_defaults,
    stress_testset_name,
    variant_config,
)
from comir.data.pairs import image_files
from comir.io import IMAGE_SUFFIXES
from comir.masks import MASK_MODES
from comir.register import uses_originals
from comir.workflow import canonical, modality_fields, pick

DATASETS = config["datasets"]
APPLY = config["apply"]
ORIGINAL = "original"  # the registration "source" of runs on the original images


def names_of(section):
    """Every name used under ``section`` in any dataset (for wildcard constraints)."""
    return sorted({name for cfg in DATASETS.values() for name in cfg[section]})


def alternatives(names):
    return "|".join(re.escape(name) for name in names)


def variant_dataset_config(wildcards):
    """The dataset's configuration with the variant's overrides merged in."""
    return variant_config(DATASETS[wildcards.dataset], wildcards.variant)


def trained_model(wildcards):
    """The networks a variant uses: its own, those of the variant named by its model_from, or
    its model_file (trained elsewhere)."""
    return model_path(wildcards.dataset, wildcards.variant)


def model_path(dataset, variant):
    cfg = DATASETS[dataset]
    if model_file(cfg, variant) is not None:
        return model_file(cfg, variant)
    return fill(
        rules.train.output.model,
        dataset=dataset,
        variant=model_variant(cfg, variant),
    )


def testset_config(wildcards):
    return DATASETS[wildcards.dataset]["testsets"][wildcards.testset]


# Which modality settings a stage reads: prepare_data checks files (names are folders, channels
# and max_value judge the pixels); training, inference and registration turn pixels into network
# or method input (log1p too); names also label the results.
DATA_MODALITY_KEYS = ("name", "channels", "max_value")
IMAGE_MODALITY_KEYS = ("name", "channels", "log1p", "max_value")
OPTIONAL_IMAGE_MODALITY_KEYS = ("stain_normalization", "percentile_scaling")


def image_modality_settings(modalities):
    """The modality settings that turn pixels into network or method input: IMAGE_MODALITY_KEYS, and
    the stain normalisation and percentile scaling where set (absent otherwise, so that
    configurations without them keep their parameters and results)."""
    fields = modality_fields(modalities, IMAGE_MODALITY_KEYS)
    for slot, spec in modalities.items():
        for key in OPTIONAL_IMAGE_MODALITY_KEYS:
            if spec.get(key) is not None:
                fields[slot][key] = spec[key]
    return fields


def model_modalities(modalities):
    """The modality settings recorded in a model file: those of the images, and the pixel size where
    one is given (absent otherwise, so that configurations without pixel sizes keep their models).
    """
    fields = image_modality_settings(modalities)
    for slot, spec in modalities.items():
        if spec.get("pixel_size") is not None:
            fields[slot]["pixel_size"] = spec["pixel_size"]
    return fields


def data_params(wildcards):
    """What prepare_data uses: the source, its own section and how the modalities are stored."""
    cfg = DATASETS[wildcards.dataset]
    source = cfg["source"]
    section = cfg.get(source, {})
    if source == "zenodo":
        # How the files are fetched changes no pair; the strips only exist for split 'strips'.
        strips = ("strips",) if section.get("strips") is not None else ()
        section = pick(section, ("record", "split", *strips))
    return canonical(
        {
            "source": source,
            source: section,
            "modalities": modality_fields(cfg["modalities"], DATA_MODALITY_KEYS),
        }
    )


def pairs_files(wildcards):
    """Every image file of a ``pairs`` dataset: adding, removing or changing one reruns prepare_data."""
    cfg = DATASETS[wildcards.dataset]
    if cfg["source"] != "pairs":
        return []
    roots = cfg["pairs"]["root"]
    roots = [roots] if isinstance(roots, str) else roots
    extensions = [e.lower() for e in cfg["pairs"]["extensions"]]
    folders = [
        Path(root).expanduser() / cfg["modalities"][slot]["name"]
        for root in roots
        for slot in ("A", "B")
    ]
    # A missing folder is reported by prepare_data, with its name.
    return [
        str(path)
        for folder in folders
        if folder.is_dir()
        for path in image_files(folder, extensions)
    ]


def image_modalities(wildcards):
    """The modality settings that turn stored images into method input (registrations on the
    originals, translation models: the dataset's, whatever the variant)."""
    return canonical(image_modality_settings(DATASETS[wildcards.dataset]["modalities"]))


def network_input_modalities(wildcards):
    """The modality settings that turn stored images into input of a variant's networks: those of
    the variant that trained them (a variant may override stain_normalization; one with
    model_from uses its source's)."""
    dataset = DATASETS[wildcards.dataset]
    trained = variant_config(dataset, model_variant(dataset, wildcards.variant))
    return canonical(image_modality_settings(trained["modalities"]))


def testset_params(wildcards):
    """What build_testset uses: the test set's own settings (and, to import a prebuilt set, the
    modalities; with a shift, also their full scale)."""
    spec = testset_config(wildcards)
    if spec["scale_range"] == [1, 1]:
        # The default (rigid cases) draws what test sets drew before the key existed: keep them.
        spec = {key: value for key, value in spec.items() if key != "scale_range"}
    params = {"testset": spec}
    modalities = DATASETS[wildcards.dataset]["modalities"]
    if "shift" in spec:
        # Only test sets with a shift read max_value: the others keep their parameters.
        fields = ("name", "channels", "max_value")
        params["modalities"] = modality_fields(modalities, fields)
    elif spec["recipe"] == "prebuilt":
        params["modalities"] = modality_fields(modalities, ("name", "channels"))
    return canonical(params)


def network_params(wildcards):
    """What training uses: the variant's network and training settings and the modalities."""
    cfg = variant_dataset_config(wildcards)
    return canonical(
        {
            "model": cfg["model"],
            "training": cfg["training"],
            "modalities": model_modalities(cfg["modalities"]),
        }
    )


def inference_params(wildcards):
    return canonical(variant_dataset_config(wildcards)["inference"])


def registration_params(wildcards):
    """The run's method and parameters (not which inputs it has: those are other jobs); on an
    ensemble's CoMIRs the cascade is told how many networks' they are."""
    run = pick(registration_spec(wildcards), ("method", "params"))
    networks = source_networks(wildcards.dataset, wildcards.source)
    if len(networks) > 1:
        run["params"] = {**(run.get("params") or {}), "networks": len(networks)}
    return canonical(run)


def source_networks(dataset, source):
    """The variants whose networks' CoMIRs a registration source is: an ensemble's members, a
    variant itself, nothing for the originals and translations."""
    if source_input(dataset, source) != "comir":
        return []
    return ensemble_members(DATASETS[dataset], source) or [source]


def statistics_settings(dataset):
    """A dataset's evaluation settings as every statistic but the variant comparison reads them
    (reference_variant concerns compare_variants alone, so setting it reruns nothing else).
    """
    return canonical(
        {
            key: value
            for key, value in DATASETS[dataset]["evaluation"].items()
            if key != "reference_variant"
        }
    )


def evaluation_provenance(wildcards):
    """The settings behind one variant's evaluation on one test set, recorded in provenance.json."""
    cfg = variant_dataset_config(wildcards)
    members = ensemble_members(DATASETS[wildcards.dataset], wildcards.variant)
    networks = {
        member: pick(
            variant_config(DATASETS[wildcards.dataset], member),
            ("modalities", "model", "training", "inference"),
        )
        for member in members
    }
    return canonical(
        {
            "dataset": wildcards.dataset,
            "variant": wildcards.variant,
            **({"ensemble": networks} if members else {}),
            "testset": {wildcards.testset: cfg["testsets"][wildcards.testset]},
            "seed": config["seed"],
            **pick(
                cfg,
                (
                    "source",
                    cfg["source"],
                    "modalities",
                    "model",
                    "training",
                    "inference",
                ),
            ),
            **pick(cfg, ("directions", "registration")),
            "evaluation": statistics_settings(wildcards.dataset),
        }
    )


def fill(template, **wildcards):
    """One path of a rule's output or benchmark template, with its wildcards filled in."""
    (path,) = expand(template, **wildcards)
    return path


def unpacked_record(zenodo):
    """The folder that rule unpack_record fills for a configuration's ``zenodo`` section."""
    return fill(rules.unpack_record.output[0], record=zenodo["record"])


def record_input(wildcards):
    """The unpacked Zenodo record a dataset is prepared from (nothing for other sources)."""
    cfg = DATASETS[wildcards.dataset]
    if cfg["source"] != "zenodo":
        return []
    return unpacked_record(cfg["zenodo"])


def record_settings():
    """Every Zenodo record in the configuration (a dataset's own or a test set's) and its settings."""
    found = {}
    for cfg in DATASETS.values():
        sections = [cfg.get("zenodo") if cfg["source"] == "zenodo" else None]
        sections += [testset.get("zenodo") for testset in cfg["testsets"].values()]
        for section in filter(None, sections):
            found.setdefault(str(section["record"]), section)
    return found


def record_config(record):
    """The download settings of a record (the first section that names it)."""
    return record_settings()[str(record)]


def prebuilt_input(wildcards):
    """A prebuilt test set is imported from its unpacked record; recipes need nothing more."""
    testset = testset_config(wildcards)
    if testset["recipe"] != "prebuilt":
        return []
    if "zenodo" in testset:
        return unpacked_record(testset["zenodo"])
    return record_input(wildcards)


def registration_sources(cfg, variant, image_input):
    """The sources of one kind of input: the originals, the variant's CoMIRs or every translation."""
    if image_input == ORIGINAL:
        return [ORIGINAL]
    if image_input == "translated":
        return list(cfg["translation"])
    return [variant]


def registration_jobs(dataset, variant):
    """(source, run, direction) of every registration that the evaluation of ``variant`` reads."""
    cfg = DATASETS[dataset]
    ensemble = bool(ensemble_members(cfg, variant))
    # Sorted: the order of keys in the configuration must not change the timing rule's params.
    return sorted(
        (source, run, direction)
        for run, spec in cfg["registration"].items()
        for image_input in spec["inputs"]
        if not (
            ensemble
            and image_input == "comir"
            and spec["method"] not in ENSEMBLE_METHODS
        )
        for source in registration_sources(cfg, variant, image_input)
        for direction in cfg["directions"]
    )


def source_input(dataset, source):
    """The kind of input of a registration source: original, comir or translated."""
    if source == ORIGINAL:
        return ORIGINAL
    return "translated" if source in DATASETS[dataset]["translation"] else "comir"


def registration_input_label(wildcards):
    """The ``input`` of a registration's rows: original, comir, or the translation model's name."""
    kind = source_input(wildcards.dataset, wildcards.source)
    return wildcards.source if kind == "translated" else kind


def registration_csv(dataset, source, testset, run, direction):
    return fill(
        rules.register.output[0],
        dataset=dataset,
        source=source,
        testset=testset,
        run=run,
        direction=direction,
    )


def registration_benchmark(dataset, source, testset, run, direction):
    return fill(
        rules.register.benchmark,
        dataset=dataset,
        source=source,
        testset=testset,
        run=run,
        direction=direction,
    )


def registration_images(wildcards):
    """The test set's original patches, a variant's CoMIRs of them (an ensemble's: each member's), or
    a translation model's fakes."""
    kind = source_input(wildcards.dataset, wildcards.source)
    if kind == ORIGINAL:
        return fill(
            rules.build_testset.output.images,
            dataset=wildcards.dataset,
            testset=wildcards.testset,
        )
    if kind == "translated":
        return fill(
            rules.translate.output.images,
            dataset=wildcards.dataset,
            translator=wildcards.source,
            testset=wildcards.testset,
        )
    return expand(
        rules.compute_comirs.output.comirs,
        dataset=wildcards.dataset,
        variant=source_networks(wildcards.dataset, wildcards.source),
        testset=wildcards.testset,
    )


def registration_originals(wildcards):
    """The test set's original patches for a run on CoMIRs or translations whose method uses them
    besides (the cascade's original_keypoints); nothing otherwise."""
    spec = registration_spec(wildcards)
    on_originals = source_input(wildcards.dataset, wildcards.source) == ORIGINAL
    if on_originals or not uses_originals(spec["method"], spec.get("params")):
        return []
    return fill(
        rules.build_testset.output.images,
        dataset=wildcards.dataset,
        testset=wildcards.testset,
    )


def registration_spec(wildcards):
    spec = DATASETS[wildcards.dataset]["registration"][wildcards.run]
    image_input = source_input(wildcards.dataset, wildcards.source)
    if image_input not in spec["inputs"]:
        raise ValueError(
            f"registration run {wildcards.run!r} of {wildcards.dataset} is not configured for {image_input} inputs"
        )
    return spec


def registration_csvs(wildcards):
    return [
        registration_csv(wildcards.dataset, source, wildcards.testset, run, direction)
        for source, run, direction in registration_jobs(
            wildcards.dataset, wildcards.variant
        )
    ]


def stage_benchmarks(wildcards):
    """The benchmark files behind the timing table (paper, Table 3) of one variant and test set."""
    d, v, t = wildcards.dataset, wildcards.variant, wildcards.testset
    networks = ensemble_members(DATASETS[d], v) or [v]
    return {
        # A model file trained elsewhere has no training time here.
        "train": [
            fill(
                rules.train.benchmark, dataset=d, variant=model_variant(DATASETS[d], n)
            )
            for n in networks
            if not model_file(DATASETS[d], n)
        ],
        "inference": expand(
            rules.compute_comirs.benchmark, dataset=d, variant=networks, testset=t
        ),
        "registration": [
            registration_benchmark(d, source, t, run, direction)
            for source, run, direction in registration_jobs(d, v)
        ],
    }


def timing_networks(wildcards):
    """The row labels of stage_benchmarks' training and inference files, in their order: an
    ensemble's members, or "" for a variant's own networks."""
    cfg = DATASETS[wildcards.dataset]
    members = ensemble_members(cfg, wildcards.variant)
    networks = members or [wildcards.variant]
    labels = members or [""]
    return {
        "trained": [
            label
            for label, network in zip(labels, networks)
            if not model_file(cfg, network)
        ],
        "computed": labels,
    }


def comparison_csvs(wildcards):
    """Registrations on the CoMIRs of every variant (the variants' comparison)."""
    return [
        registration_csv(wildcards.dataset, source, wildcards.testset, run, direction)
        for variant in DATASETS[wildcards.dataset]["variants"]
        for source, run, direction in registration_jobs(wildcards.dataset, variant)
        if source == variant
    ]


EVALUATION = "results/{dataset}/{variant}/evaluation/{testset}"


def evaluation_report(path, caption, kind, name):
    """A figure or table of one variant's evaluation, filed in the report under Results."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category="Results",
        subcategory="{dataset} / {variant} / {testset}",
        labels={kind: name},
    )


def stress_series(wildcards):
    """A dataset's stress series (its ``stress`` entry) of the wildcards."""
    return DATASETS[wildcards.dataset]["stress"][wildcards.series]


def stress_severities(wildcards):
    """A stress series' severities, the base test set's 0 first, then increasing."""
    return [0.0, *sorted(float(s) for s in stress_series(wildcards)["severities"])]


def stress_testsets_of(wildcards):
    """The test sets of a stress series in the order of stress_severities: the base, then each severity."""
    return [stress_series(wildcards)["base"]] + [
        stress_testset_name(wildcards.series, severity)
        for severity in stress_severities(wildcards)[1:]
    ]


def stress_success_tables(wildcards):
    """The success tables of a variant's evaluation on each test set of a stress series."""
    return [
        fill(
            rules.evaluate.output.success,
            dataset=wildcards.dataset,
            variant=wildcards.variant,
            testset=testset,
        )
        for testset in stress_testsets_of(wildcards)
    ]


def representation_settings(wildcards, kind):
    """A dataset's representation.<kind> section, in canonical form; a measurement that is
    off (null) stops here, naming the key."""
    settings = DATASETS[wildcards.dataset]["representation"][kind]
    if settings is None:
        raise ValueError(
            f"representation.{kind} of dataset {wildcards.dataset!r} is off (null): give it settings to measure"
        )
    return canonical(settings)


def dataset_network_params(wildcards):
    """What the reproducibility runs use: the dataset's own (not a variant's) network,
    training and image settings, and what computes a patch's CoMIR with PyTorch."""
    cfg = DATASETS[wildcards.dataset]
    inference = ("device", "tile", "margin", "pad", "mixed_precision", "c4_average")
    return canonical(
        {
            "model": cfg["model"],
            "training": cfg["training"],
            "inference": pick(cfg["inference"], inference),
            "modalities": image_modality_settings(cfg["modalities"]),
        }
    )


def sorted_variants(wildcards):
    """A dataset's variants with networks, by name: the order of keys in the configuration must not
    change params."""
    return sorted(network_variants(DATASETS[wildcards.dataset]))


def rotation_tables(wildcards):
    """The rotation-equivariance tables of every variant of a dataset, by variant name."""
    return expand(
        rules.equivariance.output.rotation,
        dataset=wildcards.dataset,
        variant=sorted_variants(wildcards),
    )


def representation_report(path, caption, subcategory, kind, name):
    """A table or figure of the representations, filed in the report under Representations."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category="Representations",
        subcategory=subcategory,
        labels={kind: name},
    )


def representation_outputs(dataset, cfg):
    """What a dataset's representation section turns on: per variant the equivariance
    tables and polar plot (with several variants their common plot too), and the
    reproducibility table and figure."""
    representation, variants = cfg["representation"], network_variants(cfg)
    outputs = []
    if representation["equivariance"] is not None:
        equivariance = rules.equivariance.output
        tables = [equivariance.rotation_md, equivariance.translation_md]
        outputs += expand(
            [*tables, equivariance.figure], dataset=dataset, variant=variants
        )
        if len(variants) > 1:
            outputs.append(
                fill(rules.equivariance_comparison.output[0], dataset=dataset)
            )
    if representation["reproducibility"] is not None:
        reproducibility = rules.reproducibility.output
        outputs += expand(
            [reproducibility.markdown, reproducibility.figure], dataset=dataset
        )
    return outputs


def final_outputs():
    """The default target's inputs. Per variant its loss curve, per test set its CoMIR examples,
    tables and figures (an ensemble: the tables and figures), and with several variants their
    comparison."""
    evaluation = rules.evaluate.output
    per_network = [
        rules.compute_comirs.output.examples,
        rules.agreement.output.markdown,
    ]
    per_testset = [
        evaluation.success_md,
        evaluation.wilcoxon_md,
        evaluation.ecdf,
        evaluation.displacement,
        evaluation.bars,
        rules.timing.output.markdown,
    ]
    comparison = [
        rules.compare_variants.output.markdown,
        rules.compare_variants.output.success_md,
        rules.compare_variants.output.figure,
    ]
    outputs = []
    for dataset, cfg in DATASETS.items():
        variants, testsets = list(cfg["variants"]), list(cfg["testsets"])
        networks = network_variants(cfg)
        trained = sorted(
            {model_variant(cfg, v) for v in networks if model_file(cfg, v) is None}
        )
        outputs += expand(rules.train.output.plot, dataset=dataset, variant=trained)
        outputs += expand(
            per_network, dataset=dataset, variant=networks, testset=testsets
        )
        outputs += expand(
            per_testset, dataset=dataset, variant=variants, testset=testsets
        )
        if len(variants) > 1:
            outputs += expand(comparison, dataset=dataset, testset=testsets)
        if cfg["stress"]:
            curve = rules.stress_curve.output
            outputs += expand(
                [curve.table, curve.figure],
                dataset=dataset,
                variant=variants,
                series=list(cfg["stress"]),
            )
        outputs += representation_outputs(dataset, cfg)
        outputs += confidence_targets(dataset, cfg, networks)
        if cfg["translation"]:
            outputs += expand(
                rules.translation_examples.output[0],
                dataset=dataset,
                variant=networks,
                testset=testsets,
            )
            outputs += expand(
                rules.train_translation.output.plot,
                dataset=dataset,
                translator=list(cfg["translation"]),
            )
    outputs += expand(rules.summarise_pairs.output.markdown, job=list(APPLY))
    pooled = rules.pool_folds.output
    outputs += expand(
        [pooled.markdown, pooled.per_dataset, pooled.ecdf], pool=list(config["pools"])
    )
    if apply_evaluated():
        evaluation = rules.evaluate_apply.output
        outputs += [evaluation.markdown, evaluation.wilcoxon, evaluation.ecdf]
    return outputs


def slot_of(modalities, modality):
    """The slot (A/B) of a modality given by slot or name."""
    for slot, spec in modalities.items():
        if modality in (slot, spec["name"]):
            return slot
    raise ValueError(f"{modality!r} is neither A, B nor a modality name ({modalities})")


def apply_model(wildcards):
    """An apply job's model file: given by path, or trained by this configuration (with its
    calibrated confidence when the dataset has a confidence section)."""
    model = APPLY[wildcards.job]["model"]
    if "file" in model:
        return model["file"]
    dataset = DATASETS[model["dataset"]]
    if dataset["confidence"] is not None:
        return fill(
            rules.calibrate_model.output[0],
            dataset=model["dataset"],
            variant=model["variant"],
        )
    return model_path(model["dataset"], model["variant"])


def apply_testset_pairs(job):
    """The exported pairs folder and truth of an apply job on a test set (the reference slot's)."""
    spec = job["testset"]
    reference = slot_of(DATASETS[spec["dataset"]]["modalities"], job["reference"])
    folders = {
        "dataset": spec["dataset"],
        "testset": spec["name"],
        "reference": reference,
    }
    return (
        fill(rules.testset_pairs.output.pairs, **folders),
        fill(rules.testset_pairs.output.truth, **folders),
    )


def apply_pairs(wildcards):
    """An apply job's pairs: the exported test set, or the user's folder and every image in it
    (adding, removing or changing one reruns the job); first the pairs' root, then the mask files.
    """
    job = APPLY[wildcards.job]
    masks = folder_images(job["masks"]) if job["masks"] not in MASK_MODES else []
    if job["testset"] is not None:
        return [apply_testset_pairs(job)[0]] + masks
    root = str(Path(job["pairs"]).expanduser())
    return [root] + folder_images(root) + masks


def folder_images(root):
    """Every image in the sub-folders of ``root`` (a missing root, folder or partner is reported by
    the job, with its name)."""
    root = Path(root).expanduser()
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [str(f) for folder in folders for f in image_files(folder, IMAGE_SUFFIXES)]


def apply_truth(wildcards):
    """An apply job's known transforms: the test set's, the configured file, or none."""
    job = APPLY[wildcards.job]
    if job["testset"] is not None:
        return apply_testset_pairs(job)[1]
    return job["truth"] or []


def apply_settings(wildcards):
    """What a register_pairs job uses: how to register (not which pairs: those are its input)."""
    job = APPLY[wildcards.job]
    settings = pick(
        job,
        (
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
        ),
    )
    # Only when set: jobs without them keep their params (and results).
    if job.get("rescale"):
        settings["rescale"] = True
    if job.get("min_confidence") is not None:
        settings["min_confidence"] = job["min_confidence"]
    if job["testset"] is not None:
        # Exported under the test set's modality names, whatever the model calls them.
        modalities = DATASETS[job["testset"]["dataset"]]["modalities"]
        settings["folders"] = {slot: spec["name"] for slot, spec in modalities.items()}
    return canonical(settings)


def apply_batches(wildcards):
    """The batch tables of an apply job."""
    batches = range(APPLY[wildcards.job]["batches"])
    return expand(rules.register_pairs.output.table, job=wildcards.job, batch=batches)


def apply_overlays(wildcards):
    """The batch folders of an apply job (their overlays go into the report)."""
    batches = range(APPLY[wildcards.job]["batches"])
    return expand(rules.register_pairs.output.pairs, job=wildcards.job, batch=batches)


def apply_evaluated(wildcards=None):
    """The per-case rows of every apply job with known transforms."""
    jobs = [name for name in APPLY if APPLY[name]["testset"] or APPLY[name]["truth"]]
    return expand(rules.apply_errors.output[0], job=jobs)


def translation_params(wildcards):
    """What train_translation uses: the entry, the patch augmentation and device of the training
    section, and the modalities."""
    cfg = DATASETS[wildcards.dataset]
    return canonical(
        {
            "entry": cfg["translation"][wildcards.translator],
            "training": pick(
                cfg["training"], ("rotation", "flips", "device", "mixed_precision")
            ),
            "modalities": image_modality_settings(cfg["modalities"]),
        }
    )


def translation_examples_input(wildcards):
    """Fig. 3: the test set, every translation model's fakes and the variant's CoMIRs."""
    cfg = DATASETS[wildcards.dataset]
    return {
        "images": fill(
            rules.build_testset.output.images,
            dataset=wildcards.dataset,
            testset=wildcards.testset,
        ),
        "cases": fill(
            rules.build_testset.output.cases,
            dataset=wildcards.dataset,
            testset=wildcards.testset,
        ),
        "translated": [
            fill(
                rules.translate.output.images,
                dataset=wildcards.dataset,
                translator=name,
                testset=wildcards.testset,
            )
            for name in sorted(cfg["translation"])
        ],
        "comirs": fill(
            rules.compute_comirs.output.comirs,
            dataset=wildcards.dataset,
            variant=wildcards.variant,
            testset=wildcards.testset,
        ),
    }


def pool_registrations(wildcards):
    """(dataset, registration CSV) of every registration a pool reads, in the pool's dataset order."""
    pool = config["pools"][wildcards.pool]
    return [
        (dataset, registration_csv(dataset, source, pool["testset"], run, direction))
        for dataset in pool["datasets"]
        for source, run, direction in registration_jobs(dataset, pool["variant"])
    ]


def pool_patches(wildcards):
    """Per pooled dataset, in the pool's dataset order: its test set's patches and the pool variant's
    CoMIRs of them (the figure of the cores; an ensemble's first member's)."""
    pool = config["pools"][wildcards.pool]
    return {
        "patches": [
            fill(
                rules.build_testset.output.images,
                dataset=dataset,
                testset=pool["testset"],
            )
            for dataset in pool["datasets"]
        ],
        "comirs": [
            fill(
                rules.compute_comirs.output.comirs,
                dataset=dataset,
                variant=source_networks(dataset, pool["variant"])[0],
                testset=pool["testset"],
            )
            for dataset in pool["datasets"]
        ],
    }


def pool_modalities(wildcards):
    """The modality names and full scales of a pool (its first dataset's) for the figure of the cores."""
    first = config["pools"][wildcards.pool]["datasets"][0]
    return canonical(
        modality_fields(DATASETS[first]["modalities"], ("name", "max_value"))
    )


# Calibrated confidence (config `confidence`; docs/method.md, section 15): register.smk and
# confidence.smk.
CALIBRATION = "results/{dataset}/{variant}/confidence/{run}"


def calibrates(dataset, run):
    """Whether a registration run is calibrated: the dataset has a confidence section and the
    run registers CoMIRs (docs/method.md, section 15)."""
    cfg = DATASETS[dataset]
    return (
        cfg["confidence"] is not None and "comir" in cfg["registration"][run]["inputs"]
    )


def calibration_input(wildcards):
    """The calibration of a registration on a variant's CoMIRs, for every test set but the one it
    is fitted on; nothing otherwise."""
    if (
        len(source_networks(wildcards.dataset, wildcards.source)) != 1
        or not calibrates(wildcards.dataset, wildcards.run)
        or wildcards.testset == DATASETS[wildcards.dataset]["confidence"]["testset"]
    ):
        return []
    return expand(
        f"{CALIBRATION}.json",
        dataset=wildcards.dataset,
        variant=wildcards.source,
        run=wildcards.run,
    )


def run_results(dataset, variant, testset, runs, template):
    """Per-case results of ``runs`` (every direction) on a variant's CoMIRs, from a register rule's
    output ``template`` (true or unrelated pairs)."""
    return expand(
        template,
        dataset=dataset,
        source=variant,
        testset=testset,
        run=runs,
        direction=DATASETS[dataset]["directions"],
    )


def calibration_results(wildcards, template):
    """The calibrated run's results on the calibration test set (true or unrelated pairs)."""
    testset = DATASETS[wildcards.dataset]["confidence"]["testset"]
    return run_results(
        wildcards.dataset, wildcards.variant, testset, [wildcards.run], template
    )


def calibration_testset(wildcards, output):
    """An input of the calibration test set, from ``output`` of build_testset or compute_comirs."""
    testset = DATASETS[wildcards.dataset]["confidence"]["testset"]
    return expand(
        output, dataset=wildcards.dataset, variant=wildcards.variant, testset=testset
    )


def calibrated_runs(dataset):
    return sorted(
        run for run in DATASETS[dataset]["registration"] if calibrates(dataset, run)
    )


def judged_results(wildcards, template):
    """The results of every calibrated run on one test set (true or unrelated pairs)."""
    runs = calibrated_runs(wildcards.dataset)
    return run_results(
        wildcards.dataset, wildcards.variant, wildcards.testset, runs, template
    )


def calibration_files(wildcards, suffix):
    """A file of rule calibrate (``.json`` or ``_evidence.csv``) per calibrated run of a variant."""
    return expand(
        CALIBRATION + suffix,
        dataset=wildcards.dataset,
        variant=wildcards.variant,
        run=calibrated_runs(wildcards.dataset),
    )


def confidence_targets(dataset, cfg, variants):
    """Per variant the calibration of every calibrated run and the judgement of every other test set."""
    if cfg["confidence"] is None:
        return []
    runs = calibrated_runs(dataset)
    judged = [t for t in cfg["testsets"] if t != cfg["confidence"]["testset"]]
    return expand(
        f"{CALIBRATION}.json",
        dataset=dataset,
        variant=variants,
        run=runs,
    ) + expand(
        [
            rules.evaluate_confidence.output.markdown,
            rules.evaluate_confidence.output.figure,
        ],
        dataset=dataset,
        variant=variants,
        testset=judged,
    )

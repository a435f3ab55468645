# Helpers for the stage files: the thin layer between the rules and comir.workflow, which works
# out from the configuration what each job reads and gets (jobs, params, targets: plain data,
# unit-tested in tests/test_workflow_params.py); here its targets become paths.
#
# Layout of results/<dataset>/:
#   data/                      canonical aligned pairs (pairs.csv, images/, layout.json)
#   testsets/<testset>/        transformed test sets (cases.csv, images/)
#   <variant>/model/           one trained pair of networks per variant (with ACCR: accr.pt, its model)
#   <variant>/accr/<testset>/  ACCR's attention figure
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
# because Snakemake reruns a job whose params changed (docs/how-to/ablations.md;
# comir.workflow.params).
# Paths: a rule's output and benchmark declarations are the only place each path is written;
# comir.workflow.targets names files by rule, output and wildcards, `files` fills them in.
# Rule files define no functions (`snakemake --lint` objects to functions in a file that declares
# rules): their input and params functions are made here, by `input_files` and `rule_params`.

from comir.config.schema import section_defaults
from comir.workflow import jobs, params, targets
from comir.workflow.jobs import ORIGINAL, alternatives, names_of

DATASETS = config["datasets"]
APPLY = config["apply"]


def fill(template, **wildcards):
    """One path of a rule's output or benchmark template, with its wildcards filled in."""
    (path,) = expand(template, **wildcards)
    return path


def files(found):
    """The paths of what comir.workflow.targets names: a Target's (its rule's output, or benchmark
    for output None), a string as it is (a path from the configuration), lists and dicts (for
    unpack) item by item, keeping their shape."""
    if isinstance(found, targets.Target):
        made_by = getattr(rules, found.rule)
        output = found.output
        template = made_by.benchmark if output is None else made_by.output[output]
        return fill(template, **found.wildcards)
    if isinstance(found, str):
        return found
    if isinstance(found, dict):
        return {key: files(value) for key, value in found.items()}
    return [files(item) for item in found]


def rule_params(function, *names):
    """A params function of the wildcards: ``function(config, *values)`` of the wildcards ``names``,
    in that order (named after ``function``, as Snakemake's messages show).
    """

    def of_wildcards(wildcards):
        return function(config, *(wildcards[name] for name in names))

    of_wildcards.__name__ = function.__name__
    return of_wildcards


def input_files(function, *names):
    """An input function of the wildcards: the paths of ``function(config, *values)``'s targets
    (or paths), as `rule_params` calls it."""
    targets_of = rule_params(function, *names)

    def paths(wildcards):
        return files(targets_of(wildcards))

    paths.__name__ = function.__name__
    return paths


# The networks a variant uses: its own, those of its model_from, or its model_file.
trained_model = input_files(targets.model, "dataset", "variant")

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


def representation_report(path, caption, subcategory, kind, name):
    """A table or figure of the representations, filed in the report under Representations."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category="Representations",
        subcategory=subcategory,
        labels={kind: name},
    )

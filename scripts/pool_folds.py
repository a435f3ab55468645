"""Snakemake script: several datasets' registrations pooled (e.g. the folds of a cross-validation)."""

from comir.evaluate.figures import plot_ecdf
from comir.evaluate.pools import core_examples, core_table, plot_cores
from comir.evaluate.tables import load_results, pool_results, success_table, to_markdown, wilcoxon_table
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
evaluation = snakemake.params.evaluation
failure_fraction, fractions = evaluation["failure_fraction"], evaluation["success_fractions"]
paths_by_dataset = {}
for dataset, path in zip(snakemake.params.datasets, snakemake.input.registrations):
    paths_by_dataset.setdefault(dataset, []).append(path)
pooled = pool_results({dataset: load_results(paths) for dataset, paths in paths_by_dataset.items()})
success = success_table(pooled, fractions=fractions, failure_fraction=failure_fraction)
write_csv(snakemake.output.success, success)
write_text(snakemake.output.markdown, to_markdown(success))
per_dataset = success_table(pooled.assign(input=pooled["input"] + ", " + pooled["fold"]), fractions, failure_fraction)
write_text(snakemake.output.per_dataset, to_markdown(per_dataset))
# Per image (e.g. per tissue core): where the failures are.
per_image = success_table(pooled.assign(input=pooled["input"] + ", " + pooled["image_id"].astype(str)), fractions,
                          failure_fraction)  # fmt: skip
write_text(snakemake.output.per_image, to_markdown(per_image))
write_text(snakemake.output.wilcoxon, to_markdown(wilcoxon_table(pooled, failure_fraction=failure_fraction)))
plot_ecdf(pooled, snakemake.output.ecdf, fractions=fractions, failure_fraction=failure_fraction)
# Per core and run, worst cores first; the figure shows each core's patches, CoMIRs and statistics.
cores = core_table(pooled, fractions=fractions, failure_fraction=failure_fraction)
write_csv(snakemake.output.cores, cores)
modalities = snakemake.params.modalities
plot_cores(cores, core_examples(pooled), dict(zip(snakemake.params.pooled, snakemake.input.patches)),
           dict(zip(snakemake.params.pooled, snakemake.input.comirs)), snakemake.output.cores_figure,
           names={slot: spec["name"] for slot, spec in modalities.items()},
           max_values={slot: spec.get("max_value") for slot, spec in modalities.items()})  # fmt: skip

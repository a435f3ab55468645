"""Snakemake script: the apply jobs with known transforms, by the experiment's statistics."""

from comir.evaluate.figures import plot_ecdf
from comir.evaluate.tables import load_results, success_table, to_markdown, wilcoxon_table
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
evaluation = snakemake.params.evaluation
failure_fraction = evaluation["failure_fraction"]
fractions = evaluation["success_fractions"]
results = load_results(snakemake.input.cases)
success = success_table(results, fractions=fractions, failure_fraction=failure_fraction)
write_csv(snakemake.output.success, success)
write_text(snakemake.output.markdown, to_markdown(success))
write_text(snakemake.output.wilcoxon, to_markdown(wilcoxon_table(results, failure_fraction=failure_fraction)))
plot_ecdf(results, snakemake.output.ecdf, fractions=fractions, failure_fraction=failure_fraction)

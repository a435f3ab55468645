"""Snakemake script: variants against each other on the same cases (paper, Fig. 9)."""

from comir.evaluate.figures import plot_variants
from comir.evaluate.tables import load_results, to_markdown, variant_table
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
evaluation = snakemake.params.evaluation
results = load_results(snakemake.input.registrations)
failure_fraction = evaluation["failure_fraction"]
tests = variant_table(results, failure_fraction=failure_fraction)
write_csv(snakemake.output.table, tests)
write_text(snakemake.output.markdown, to_markdown(tests))
plot_variants(results, tests, snakemake.output.figure, success_fraction=max(evaluation["success_fractions"]),
              failure_fraction=failure_fraction)

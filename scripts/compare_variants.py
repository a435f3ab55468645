"""Snakemake script: variants against each other on the same cases (paper, Fig. 9)."""

from comir.evaluate.figures import plot_variants
from comir.evaluate.tables import load_results, success_table, to_markdown, variant_table
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
evaluation = snakemake.params.evaluation
results = load_results(snakemake.input.registrations)
failure_fraction = evaluation["failure_fraction"]
tests = variant_table(results, failure_fraction=failure_fraction, reference=evaluation.get("reference_variant"))
write_csv(snakemake.output.table, tests)
write_text(snakemake.output.markdown, to_markdown(tests))
# Each variant's successes side by side (e.g. a temperature x critic sweep, paper Fig. 11).
success = success_table(results.assign(input=results["source"]), evaluation["success_fractions"], failure_fraction)
write_csv(snakemake.output.success, success)
write_text(snakemake.output.success_md, to_markdown(success))
plot_variants(results, tests, snakemake.output.figure, success_fraction=max(evaluation["success_fractions"]),
              failure_fraction=failure_fraction)

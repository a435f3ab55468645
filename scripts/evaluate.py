"""Snakemake script: the paper's statistics, tables and figures for one dataset."""

from comir.evaluate.figures import plot_ecdf, plot_error_vs_displacement, plot_success_bars
from comir.evaluate.tables import load_results, success_table, to_markdown, wilcoxon_table
from comir.io import write_csv, write_json, write_text
from comir.workflow import provenance, setup_logging

setup_logging(snakemake.log[0])
evaluation = snakemake.params.evaluation
out = snakemake.output
results = load_results(snakemake.input.registrations)
# Every statistic and figure scores a failure at failure_fraction * width (docs/method.md, section 8).
failure_fraction = evaluation["failure_fraction"]
fractions = evaluation["success_fractions"]
success = success_table(results, fractions=fractions, failure_fraction=failure_fraction)
write_csv(out.success, success)
write_text(out.success_md, to_markdown(success))
wilcoxon = wilcoxon_table(results, failure_fraction=failure_fraction)
write_csv(out.wilcoxon, wilcoxon)
write_text(out.wilcoxon_md, to_markdown(wilcoxon))
plot_ecdf(results, out.ecdf, fractions=fractions, failure_fraction=failure_fraction)
plot_error_vs_displacement(
    results, out.displacement, success_fraction=max(fractions), failure_fraction=failure_fraction
)
plot_success_bars(success, out.bars)
write_json(out.provenance, provenance(snakemake.params.provenance))

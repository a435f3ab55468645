"""Snakemake script: the TRE table, Wilcoxon tests and eCDF of one variant on a test set with a deformation."""

from comir.evaluate.figures import plot_ecdf
from comir.evaluate.tables import load_results, to_markdown, wilcoxon_table
from comir.evaluate.tre import tre_results, tre_table
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
evaluation = snakemake.params.evaluation
out = snakemake.output
# Every statistic scores a case by its median TRE, a failure at failure_fraction * width.
results = tre_results(load_results(snakemake.input.registrations))
thresholds, failure_fraction = evaluation["tre_thresholds_px"], evaluation["failure_fraction"]
table = tre_table(results, thresholds, failure_fraction)
write_csv(out.table, table)
write_text(out.markdown, to_markdown(table))
wilcoxon = wilcoxon_table(results, failure_fraction=failure_fraction)
write_csv(out.wilcoxon, wilcoxon)
write_text(out.wilcoxon_md, to_markdown(wilcoxon))
plot_ecdf(results, out.ecdf, thresholds_px=thresholds, failure_fraction=failure_fraction,
          xlabel="median TRE of a case (px)")  # fmt: skip

"""Evaluation of registration results (method spec, section 8).

* :mod:`comir.evaluate.stats`: Clopper-Pearson intervals, success criterion,
  paired Wilcoxon signed-rank test with rank-biserial effect size, eCDF.
* :mod:`comir.evaluate.tables`: loading the per-case CSVs, success table,
  pairwise Wilcoxon table, variants against each other, Markdown rendering.
* :mod:`comir.evaluate.figures`: eCDF, error versus displacement, success bars,
  paired errors of two variants.
* :mod:`comir.evaluate.timing`: time per stage from Snakemake benchmark files.
"""

from comir.evaluate.figures import plot_ecdf, plot_error_vs_displacement, plot_success_bars, plot_variants
from comir.evaluate.stats import (
    PairedTest,
    clopper_pearson,
    ecdf,
    rank_biserial,
    success_counts,
    success_mask,
    wilcoxon_paired,
)
from comir.evaluate.tables import (
    GROUP_COLUMNS,
    RESULT_COLUMNS,
    WILCOXON_COLUMNS,
    load_results,
    make_label,
    percent_name,
    success_columns,
    success_table,
    to_markdown,
    variant_table,
    wilcoxon_table,
)

__all__ = [
    "GROUP_COLUMNS",
    "RESULT_COLUMNS",
    "WILCOXON_COLUMNS",
    "PairedTest",
    "clopper_pearson",
    "ecdf",
    "load_results",
    "make_label",
    "percent_name",
    "plot_ecdf",
    "plot_error_vs_displacement",
    "plot_success_bars",
    "plot_variants",
    "rank_biserial",
    "success_columns",
    "success_counts",
    "success_mask",
    "success_table",
    "to_markdown",
    "variant_table",
    "wilcoxon_paired",
    "wilcoxon_table",
]

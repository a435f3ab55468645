"""Evaluation of registration results (docs/method.md, section 8).

A registration is a failure when it reported failure, or its error is not
smaller than ``failure_fraction * width`` (paper: 100 px at 834 px), or its
error is missing; every statistic and figure uses the scored error, in which a
failure's error is that bound (:func:`scored_errors`, :func:`failure_mask`).

* :mod:`comir.evaluate.stats`: Clopper-Pearson intervals, success criterion,
  paired Wilcoxon signed-rank test with rank-biserial effect size, eCDF.
* :mod:`comir.evaluate.tables`: loading the per-case CSVs, failures and scored
  errors, success table, pairwise Wilcoxon table, variants against each other,
  Markdown rendering.
* :mod:`comir.evaluate.figures`: eCDF, error versus displacement, success bars,
  paired errors of two variants (and the curve and points the first two draw).
* :mod:`comir.evaluate.timing`: time per stage from Snakemake benchmark files.
* :mod:`comir.evaluate.pools`: a pool's success per core and run, the cores no run registers,
  and the figure of the cores (patches, CoMIRs, image statistics).
* :mod:`comir.evaluate.stress`: success rate against the severity of a shift (stress test sets).
* :mod:`comir.evaluate.deformation_metrics`: TRE, Dice and Hausdorff distances of deformable
  registrations; :mod:`comir.evaluate.tre`: the success table of a test set with a deformation,
  scored by each case's median TRE.
* :mod:`comir.evaluate.attention`: ACCR's attention heatmaps (which floating locations a reference
  location attends to).
"""

from comir.evaluate.figures import (
    ecdf_curve,
    error_vs_displacement_points,
    plot_ecdf,
    plot_error_vs_displacement,
    plot_success_bars,
    plot_variants,
)
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
    failure_mask,
    load_results,
    make_label,
    percent_name,
    scored_errors,
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
    "ecdf_curve",
    "error_vs_displacement_points",
    "failure_mask",
    "load_results",
    "make_label",
    "percent_name",
    "plot_ecdf",
    "plot_error_vs_displacement",
    "plot_success_bars",
    "plot_variants",
    "rank_biserial",
    "scored_errors",
    "success_columns",
    "success_counts",
    "success_mask",
    "success_table",
    "to_markdown",
    "variant_table",
    "wilcoxon_paired",
    "wilcoxon_table",
]

"""The target registration error (TRE) of registrations on a test set with a known deformation.

Per case, the register rule scores each registration's total field against the test set's
truth (:class:`comir.testset.deformation.FieldScorer`: the TRE statistics at its landmarks, the
field's folding); a rigid result as the field of its matrix, so the gain of a deformable stage
shows against its start.

Per method (rule evaluate_tre): the protocol of the rigid tables (:mod:`comir.evaluate.tables`)
with a case's median TRE as its error (:func:`tre_results`): a failure (reported, a median TRE at
or above ``failure_fraction * width``, or none) is scored at that bound; successes within
thresholds in pixels with Clopper-Pearson intervals (:func:`tre_table`), Wilcoxon tests
(:func:`comir.evaluate.tables.wilcoxon_table`) and the eCDF
(:func:`comir.evaluate.figures.plot_ecdf`) on the same scored errors.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from comir.evaluate.tables import GROUP_COLUMNS, success_table

__all__ = ["tre_results", "tre_table"]


def tre_results(results: pd.DataFrame) -> pd.DataFrame:
    """Per-case results with a case's median TRE as its ``error_px``: what every TRE statistic scores.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results of registrations on a test set with a deformation (column ``tre_median_px``).

    Returns
    -------
    pandas.DataFrame
        A copy of ``results`` whose ``error_px`` is ``tre_median_px``.

    Raises
    ------
    ValueError
        Where the results have no TRE (not registered on a test set with a deformation).
    """
    if "tre_median_px" not in results.columns:
        raise ValueError("the results have no TRE columns: they were not registered on a test set with a deformation")
    return results.assign(error_px=results["tre_median_px"])


def tre_table(
    results: pd.DataFrame, thresholds_px: Sequence[float], failure_fraction: float = 0.12, alpha: float = 0.05
) -> pd.DataFrame:
    """Successes within TRE thresholds per method x input x direction, and the fields' folding.

    :func:`comir.evaluate.tables.success_table` of :func:`tre_results` with ``thresholds_px``
    (a success: status ok and a median TRE below the threshold, strict; Clopper-Pearson
    intervals), its median error named ``median_tre_px`` (the median over cases of the scored
    median TRE), and per group the largest folded fraction (``max_folded_fraction``) and the
    smallest Jacobian determinant (``min_jacobian``) of its fields; where the cases carry
    structure-mask scores (``dice``, ``hd95_px``: a test set with ``mask_slot``), their medians
    over the group's cases (``median_dice``, ``median_hd95_px``; every result, failed ones
    included, is scored by its field).

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with the TRE columns, ``folded_fraction`` and ``jacobian_min`` (and
        optionally ``dice`` and ``hd95_px``).
    thresholds_px : Sequence[float]
        The success thresholds on the median TRE, in pixels.
    failure_fraction : float, optional
        A median TRE at or above this fraction of the width (or none) is a failure, scored at that
        bound. Default 0.12.
    alpha : float, optional
        One minus the confidence level of the intervals. Default 0.05.

    Returns
    -------
    pandas.DataFrame
        One row per method x input x direction (:func:`comir.evaluate.tables.success_table`'s columns).

    Raises
    ------
    ValueError
        Where the results have no TRE.
    """
    scored = tre_results(results)
    table = success_table(scored, failure_fraction=failure_fraction, alpha=alpha, thresholds_px=thresholds_px)
    masked = [c for c in ("dice", "hd95_px") if c in scored and scored[c].notna().any()]  # older results: none
    overlap = {f"median_{column}": (column, "median") for column in masked}
    folding = scored.groupby(list(GROUP_COLUMNS), sort=False, dropna=False).agg(
        max_folded_fraction=("folded_fraction", "max"), min_jacobian=("jacobian_min", "min"), **overlap
    )
    table = table.merge(folding.reset_index(), on=list(GROUP_COLUMNS), how="left")
    return table.rename(columns={"median_error_px": "median_tre_px"})


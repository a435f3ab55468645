"""How well a calibrated confidence separates right from wrong registrations (docs/method.md, section 15).

The register rule adds ``confidence`` and ``accepted`` to the per-case results of
calibrated runs (:mod:`comir.calibration`).  Here, per run and
direction: how many results are correct (error below the success fraction of
the width, status ok), how many are accepted, the *precision* (of the accepted,
the fraction that is correct), the *recall* (of the correct, the fraction that
is accepted), the *false-accept rate* (of the wrong, the fraction accepted)
and the fraction of *unrelated pairs* accepted (each reference against the
floating patch of another place: nothing to register), each with its
Clopper-Pearson interval; and the reliability diagram (predicted
confidence against the observed fraction correct, per bin).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from comir.calibration import reliability_table
from comir.evaluate.stats import clopper_pearson
from comir.io import InputError, atomic_path

RATES = {  # name -> (numerator, denominator) of the table's counts
    "precision": ("accepted_correct", "accepted"),
    "recall": ("accepted_correct", "correct"),
    "false_accept_rate": ("accepted_wrong", "wrong"),
    "unrelated_accept_rate": ("unrelated_accepted", "unrelated"),
}


def correct_mask(results: pd.DataFrame, success_fraction: float) -> np.ndarray:
    """Which results are correct: status ok and error below ``success_fraction`` of the width.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with the columns ``status``, ``error_px`` and ``width``.
    success_fraction : float
        The success bound as a fraction of the image width (strict: an error equal to it is wrong).

    Returns
    -------
    numpy.ndarray
        ``(len(results),)`` bool.
    """
    return (results["status"] == "ok").to_numpy() & (
        results["error_px"].to_numpy(float) < success_fraction * results["width"].to_numpy(float)
    )


def acceptance_table(results: pd.DataFrame, unrelated: pd.DataFrame, success_fraction: float) -> pd.DataFrame:
    """Per method and direction: cases, correct, accepted, the rates of :data:`RATES` with 95 % intervals.

    Parameters
    ----------
    results : pandas.DataFrame
        The calibrated runs' per-case rows (``method``, ``direction``, ``status``, ``error_px``,
        ``width``, ``confidence``, ``accepted``).
    unrelated : pandas.DataFrame
        Their rows on unrelated pairs (every one wrong): ``method``, ``direction``, ``accepted``;
        may be empty.
    success_fraction : float
        The success bound as a fraction of the width (:func:`correct_mask`).

    Returns
    -------
    pandas.DataFrame
        One row per method and direction: the counts (``cases``, ``correct``, ``wrong``, ``accepted``,
        ``accepted_correct``, ``accepted_wrong``, ``unrelated``, ``unrelated_accepted``), each rate of
        :data:`RATES` with its Clopper-Pearson ``_low``/``_high`` bounds (NaN rate without a
        denominator), and ``median_confidence``.

    Raises
    ------
    InputError
        When ``results`` has no ``confidence``/``accepted`` columns (the runs were not calibrated).
    """
    missing = {"confidence", "accepted"} - set(results.columns)
    if missing:
        raise InputError(f"the results have no {sorted(missing)} columns: the runs were not calibrated")
    frame = results.assign(correct=correct_mask(results, success_fraction), accepted=results["accepted"].astype(bool))
    if unrelated.empty:
        unrelated = pd.DataFrame(columns=["method", "direction", "accepted"])
    rows = []
    for (method, direction), group in frame.groupby(["method", "direction"], sort=True):
        others = unrelated[(unrelated["method"] == method) & (unrelated["direction"] == direction)]
        counts = {
            "cases": len(group),
            "correct": int(group["correct"].sum()),
            "wrong": int((~group["correct"]).sum()),
            "accepted": int(group["accepted"].sum()),
            "accepted_correct": int((group["accepted"] & group["correct"]).sum()),
            "accepted_wrong": int((group["accepted"] & ~group["correct"]).sum()),
            "unrelated": len(others),
            "unrelated_accepted": int(others["accepted"].astype(bool).sum()),
        }
        row = {"method": method, "direction": direction, **counts}
        for name, (numerator, denominator) in RATES.items():
            k, n = counts[numerator], counts[denominator]
            low, high = clopper_pearson(k, n)
            row.update({name: k / n if n else np.nan, f"{name}_low": low, f"{name}_high": high})
        row["median_confidence"] = float(group["confidence"].median())
        rows.append(row)
    return pd.DataFrame(rows)


def acceptance_markdown(table: pd.DataFrame) -> str:
    """The acceptance table as Markdown: counts, and each rate as ``k/n (low-high)``.

    Parameters
    ----------
    table : pandas.DataFrame
        An :func:`acceptance_table`.

    Returns
    -------
    str
        The Markdown table, one row per method and direction, ending with a newline; a rate without
        a denominator is ``-``.
    """
    lines = [
        "| method | direction | cases | correct | accepted | precision | recall | false-accept rate "
        "| unrelated accepted |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        cells = []
        for name, (numerator, denominator) in RATES.items():
            k, n = getattr(row, numerator), getattr(row, denominator)
            low, high = getattr(row, f"{name}_low"), getattr(row, f"{name}_high")
            cells.append(f"{k}/{n} ({100 * low:.0f}-{100 * high:.0f} %)" if n else "-")
        lines.append(
            f"| {row.method} | {row.direction} | {row.cases} | {row.correct} | {row.accepted} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot_reliability(
    curves: Mapping[str, tuple[Sequence[float], Sequence[bool]]],
    path: str | os.PathLike[str],
    thresholds: Mapping[str, float] | None = None,
    title: str = "",
) -> None:
    """Reliability diagram: per label, predicted confidence against the observed fraction correct.

    One point per non-empty bin (:func:`comir.calibration.reliability_table`); the diagonal is
    perfect calibration; ``thresholds`` (per label) are drawn as vertical lines.  Below, the
    confidences of correct and wrong results (histograms).

    Parameters
    ----------
    curves : Mapping[str, tuple[Sequence[float], Sequence[bool]]]
        Label -> (confidences, correct flags).
    path : str or os.PathLike
        The image file to write (atomically; the format from the suffix).
    thresholds : Mapping[str, float] or None, optional
        Per label, an acceptance threshold to mark. Default None: none.
    title : str, optional
        Title of the diagram. Default ``""``: "reliability".
    """
    figure = Figure(figsize=(6.4, 7.0), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 2])
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for index, (label, (confidence, correct)) in enumerate(curves.items()):
        colour = f"C{index % 10}"
        table = pd.DataFrame(reliability_table(np.asarray(confidence, float), np.asarray(correct, bool)))
        filled = table[table["count"] > 0]
        top.plot(filled["predicted"], filled["observed"], marker="o", color=colour,
                 label=f"{label} (n={len(confidence)})")  # fmt: skip
        if thresholds and label in thresholds:
            top.axvline(thresholds[label], color=colour, linestyle="--", linewidth=1)
        confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
        bins = np.linspace(0, 1, 21)
        bottom.hist(confidence[correct], bins=bins, histtype="step", color=colour, label=f"{label}: correct")
        bottom.hist(confidence[~correct], bins=bins, histtype="step", color=colour, linestyle="--",
                    label=f"{label}: wrong")  # fmt: skip
    top.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="confidence (predicted probability of a correct result)",
            ylabel="observed fraction correct", title=title or "reliability")  # fmt: skip
    top.legend(fontsize=7, loc="upper left")
    bottom.set(xlim=(0, 1), xlabel="confidence", ylabel="results")
    bottom.legend(fontsize=6, ncol=2)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=figure.dpi)
    finally:
        figure.clear()


__all__ = ["RATES", "acceptance_markdown", "acceptance_table", "correct_mask", "plot_reliability"]

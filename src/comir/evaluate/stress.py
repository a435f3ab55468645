"""Stress curves: success rate against the severity of a shift (docs/method.md, section 14).

A ``stress`` series of a dataset is its base test set (severity 0) and one
shifted copy per severity (:mod:`comir.imaging.shifts`); each is evaluated like any
test set (:func:`comir.evaluate.tables.success_table`).  :func:`stress_table`
collects those success tables into one tidy table, and :func:`plot_stress_curve`
draws it: per method, input and direction the success rate with its exact
(Clopper-Pearson) interval as a band.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from comir.evaluate.figures import _styles, new_figure, save_figure
from comir.evaluate.stats import clopper_pearson
from comir.evaluate.tables import GROUP_COLUMNS, success_columns

__all__ = ["STRESS_COLUMNS", "plot_stress_curve", "stress_table"]

#: The columns of :func:`stress_table`, in order.
STRESS_COLUMNS: tuple[str, ...] = (
    "method", "input", "direction", "severity", "fraction", "n", "successes", "rate", "ci_low", "ci_high",
)  # fmt: skip


def stress_table(
    tables: Sequence[pd.DataFrame],
    severities: Sequence[float],
    fractions: Sequence[float] = (0.01, 0.05),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One tidy row per method x input x direction x severity x success fraction.

    For each ``fraction`` its count column ``success_<f>pct`` gives ``successes`` of ``n``;
    ``rate = successes / n`` and ``ci_low``, ``ci_high`` its two-sided ``1 - alpha``
    Clopper-Pearson interval (:func:`~comir.evaluate.stats.clopper_pearson`),
    computed from the counts (not the tables' rounded bounds).  Rows are sorted by
    fraction, method, input, direction and severity.

    Parameters
    ----------
    tables : Sequence[pandas.DataFrame]
        ``tables[i]`` is the success table (:func:`~comir.evaluate.tables.success_table`)
        of the test set of ``severities[i]``.
    severities : Sequence[float]
        The severity of each table (the base test set at 0).
    fractions : Sequence[float], optional
        The success fractions to collect; each table needs their count columns. Default ``(0.01, 0.05)``.
    alpha : float, optional
        One minus the confidence level of the intervals. Default 0.05.

    Returns
    -------
    pandas.DataFrame
        The columns :data:`STRESS_COLUMNS` (``rate`` NaN where ``n`` is 0).

    Raises
    ------
    ValueError
        If ``tables`` and ``severities`` differ in length, or a table lacks a column.
    """
    if len(tables) != len(severities):
        raise ValueError(f"{len(tables)} success tables for {len(severities)} severities")
    rows = []
    for table, severity in zip(tables, severities):
        for fraction in fractions:
            count = success_columns(fraction)[0]
            missing = [c for c in (*GROUP_COLUMNS, "n", count) if c not in table.columns]
            if missing:
                raise ValueError(f"the success table of severity {severity} lacks column(s) {', '.join(missing)}")
            part = table[[*GROUP_COLUMNS, "n"]].copy()
            part["severity"] = float(severity)
            part["fraction"] = float(fraction)
            part["successes"] = table[count].to_numpy(dtype=np.int64)
            rows.append(part)
    if not rows or all(part.empty for part in rows):
        return pd.DataFrame(columns=list(STRESS_COLUMNS))
    frame = pd.concat(rows, ignore_index=True)
    n = frame["n"].to_numpy(dtype=np.int64)
    successes = frame["successes"].to_numpy(dtype=np.int64)
    frame["n"] = n
    frame["rate"] = np.where(n > 0, successes / np.maximum(n, 1), np.nan)
    low, high = clopper_pearson(successes, n, alpha)
    frame["ci_low"] = np.asarray(low, dtype=float)
    frame["ci_high"] = np.asarray(high, dtype=float)
    frame = frame.sort_values(["fraction", *GROUP_COLUMNS, "severity"], kind="mergesort")
    return frame[list(STRESS_COLUMNS)].reset_index(drop=True)


def plot_stress_curve(
    table: pd.DataFrame, path: str | os.PathLike[str], title: str | None = None, alpha: float = 0.05
) -> None:
    """Success rate against severity, one line per method and input, the Clopper-Pearson interval as a band.

    One panel per success fraction (rows) and direction (columns) of ``table``.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`stress_table`'s output.
    path : str or os.PathLike
        The image file to write.
    title : str or None, optional
        Title of the figure. Default None: none.
    alpha : float, optional
        The ``alpha`` ``table``'s intervals were computed with (:func:`stress_table`), for the
        axis label. Default 0.05 (95 % intervals).

    Raises
    ------
    ValueError
        If ``table`` lacks a column of :data:`STRESS_COLUMNS` or has no rows.
    """
    missing = [c for c in STRESS_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"plot_stress_curve: input lacks column(s): {', '.join(missing)}")
    if table.empty:
        raise ValueError("plot_stress_curve: no rows to plot")
    fractions = sorted(table["fraction"].unique())
    directions = sorted(table["direction"].astype(str).unique())
    styles = _styles(table)
    figure = new_figure(4.2 * len(directions) + 0.5, 3.2 * len(fractions) + 1.2)
    axes = np.atleast_2d(figure.subplots(len(fractions), len(directions), squeeze=False, sharex=True, sharey=True))
    handles: dict[str, object] = {}
    for i, fraction in enumerate(fractions):
        for j, direction in enumerate(directions):
            ax = axes[i, j]
            panel = table[(table["fraction"] == fraction) & (table["direction"].astype(str) == direction)]
            for (method, input_), curve in panel.groupby(["method", "input"], sort=True):
                curve = curve.sort_values("severity")
                style = styles[(str(method), str(input_))]
                x = curve["severity"].to_numpy(dtype=float)
                (line,) = ax.plot(x, curve["rate"].to_numpy(dtype=float), marker="o", markersize=3, **style)
                ax.fill_between(x, curve["ci_low"].to_numpy(dtype=float), curve["ci_high"].to_numpy(dtype=float),
                                color=style["color"], alpha=0.12, linewidth=0)  # fmt: skip
                handles.setdefault(f"{method} on {input_}", line)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"{direction}, error < {fraction * 100:g} % of width", fontsize=9)
            if i == len(fractions) - 1:
                ax.set_xlabel("severity (0: the base test set)")
            if j == 0:
                ax.set_ylabel(f"success rate (band: {(1 - alpha) * 100:g} % CI)")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                  ncol=min(3, max(1, len(handles))), fontsize=8, frameon=False)  # fmt: skip
    save_figure(figure, path)

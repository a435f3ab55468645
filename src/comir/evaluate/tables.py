"""Result tables of the evaluation protocol (docs/method.md, section 8).

Input is the tidy per-case registration table (one row per
case x method x input x direction) read by :func:`load_results`. The functions
here return DataFrames; the pipeline writes them with :func:`comir.io.write_csv`
and :func:`comir.io.write_text` (for :func:`to_markdown`).

Failures: a registration FAILS when it reported failure (status other than
``"ok"``; it then returns the identity, so its error is the case's initial
displacement), when its error is not smaller than ``failure_fraction * width``
(the failure bound; paper: 100 px at 834 px) or when its error is missing.
Every statistic and figure uses the *scored* error of :func:`scored_errors`,
in which a failure's error is the bound, so that a failure never counts as a
small error (:func:`failure_mask` gives the failures themselves).
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from comir.evaluate.stats import clopper_pearson, success_mask, wilcoxon_paired
from comir.io import InputError

__all__ = [
    "GROUP_COLUMNS",
    "RESULT_COLUMNS",
    "WILCOXON_COLUMNS",
    "failure_mask",
    "load_results",
    "make_label",
    "percent_name",
    "pool_results",
    "px_success_columns",
    "scored_errors",
    "success_columns",
    "success_table",
    "to_markdown",
    "variant_table",
    "wilcoxon_table",
]

RESULT_COLUMNS: tuple[str, ...] = (
    "case", "image_id", "stratum", "width", "height", "initial_displacement_px",
    "method", "input", "direction", "reference_modality", "floating_modality",
    "status", "metric", "seconds", "error_px",
    "est_a11", "est_a12", "est_tx", "est_a21", "est_a22", "est_ty",
    "true_a11", "true_a12", "true_tx", "true_a21", "true_a22", "true_ty",
)  # fmt: skip

_TEXT_COLUMNS = (
    "case", "image_id", "stratum", "method", "input", "direction",
    "reference_modality", "floating_modality", "status", "metric",
)  # fmt: skip
_NUMERIC_COLUMNS = tuple(c for c in RESULT_COLUMNS if c not in _TEXT_COLUMNS)

#: One registration problem solved by one method on one kind of input.
GROUP_COLUMNS: tuple[str, ...] = ("method", "input", "direction")

WILCOXON_COLUMNS: tuple[str, ...] = (
    "label_x", "label_y", "n_cases", "n_nonzero", "statistic", "p_value",
    "rank_biserial_r", "median_difference_px", "p_holm",
)  # fmt: skip


def make_label(method, input_, direction):
    """``"{method} on {input} ({direction})"``; works on scalars and Series.

    Parameters
    ----------
    method : str or pandas.Series
        The method(s); a Series makes the result a Series (then ``input_`` and ``direction`` must be
        Series too).
    input_ : str or pandas.Series
        The input(s) (``comir``, ``raw``, ...).
    direction : str or pandas.Series
        The direction(s).

    Returns
    -------
    str or pandas.Series
        The label(s).
    """
    if isinstance(method, pd.Series):
        return method.astype(str) + " on " + input_.astype(str) + " (" + direction.astype(str) + ")"
    return f"{method} on {input_} ({direction})"


# --------------------------------------------------------------------------- loading


def load_results(paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """Concatenate per-case result CSVs, validate them and add a ``label`` column.

    Parameters
    ----------
    paths : Sequence[str or os.PathLike]
        The result files (a single path is accepted too); each needs the columns
        :data:`RESULT_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        All rows, the numeric columns as float, with ``label`` (:func:`make_label`).

    Raises
    ------
    comir.io.InputError
        (A ``ValueError``.) Naming the file for a missing or unreadable file, missing columns or
        non-numeric values in numeric columns, and naming the rows for duplicate (case, method,
        input, direction[, source]) rows; also when no file is given.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("load_results: no result files given")
    frames = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"result file not found: {path}")
        try:
            frame = pd.read_csv(path, dtype={c: str for c in (*_TEXT_COLUMNS, "source")})
        except Exception as error:
            raise InputError(f"cannot read result file {path}: {error}") from error
        missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"result file {path} lacks required column(s): {', '.join(missing)}")
        for column in _NUMERIC_COLUMNS:
            try:
                frame[column] = pd.to_numeric(frame[column]).astype(float)
            except (ValueError, TypeError) as error:
                raise InputError(f"result file {path}: column {column!r} is not numeric ({error})") from error
        frame["_source"] = str(path)
        frames.append(frame)
    results = pd.concat(frames, ignore_index=True)
    # Registrations on the CoMIRs of different variants share method, input and direction.
    key = ["case", *GROUP_COLUMNS, *(["source"] if "source" in results.columns else [])]
    duplicated = results.duplicated(key, keep=False)
    if duplicated.any():
        dup = results.loc[duplicated, [*key, "_source"]]
        shown = dup.head(6).to_string(index=False)
        raise InputError(
            f"{int(duplicated.sum())} rows repeat a ({', '.join(key)}); "
            f"files: {', '.join(sorted(dup['_source'].unique()))}\n{shown}"
        )
    results = results.drop(columns="_source")
    results["label"] = make_label(results["method"], results["input"], results["direction"])
    return results


def pool_results(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-case results of several datasets (e.g. cross-validation folds) in one table.

    A ``fold`` column names the dataset and every case becomes ``<dataset>/<case>``, so that
    cases of different datasets never pair up in a test and are counted apart.

    Parameters
    ----------
    results : Mapping[str, pandas.DataFrame]
        A dataset's name -> its :func:`load_results` table.

    Returns
    -------
    pandas.DataFrame
        The rows of all datasets, with ``fold`` and the prefixed ``case``.
    """
    parts = [frame.assign(fold=name, case=name + "/" + frame["case"].astype(str)) for name, frame in results.items()]
    return pd.concat(parts, ignore_index=True)


def _require(results: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in results.columns]
    if missing:
        raise ValueError(f"{who}: results lack column(s): {', '.join(missing)}")


# --------------------------------------------------------------------------- failures


def _failure_bound(results: pd.DataFrame, failure_fraction: float, who: str) -> np.ndarray:
    """``failure_fraction * width`` of every row, after checking the fraction and columns."""
    fraction = float(failure_fraction)
    if not (math.isfinite(fraction) and fraction > 0):
        raise ValueError(f"{who}: failure_fraction must be a positive number, got {failure_fraction}")
    _require(results, ["width", "status", "error_px"], who)
    return fraction * results["width"].to_numpy(dtype=float)


def failure_mask(results: pd.DataFrame, failure_fraction: float = 0.12) -> pd.Series:
    """Boolean Series (index of ``results``): which registrations are failures.

    A row is a failure when its ``status`` is not ``"ok"``, or its
    ``error_px`` is NOT smaller than ``failure_fraction * width`` of that row
    (an error exactly at the bound fails), or ``error_px`` is missing (NaN).
    This is the complement of "status ok and ``error_px < bound``"; written
    that way a NaN error fails without a separate test (docs/method.md, section 8).

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``width``, ``status`` and ``error_px``.
    failure_fraction : float, optional
        The failure bound as a fraction of the width (> 0). Default 0.12.

    Returns
    -------
    pandas.Series
        Bool, named ``failed``.

    Raises
    ------
    ValueError
        If ``failure_fraction`` is not a positive number or a column is missing.
    """
    bound = _failure_bound(results, failure_fraction, "failure_mask")
    error = results["error_px"].to_numpy(dtype=float)
    ok = results["status"].astype(str).to_numpy() == "ok"
    return pd.Series(~(ok & (error < bound)), index=results.index, name="failed")


def scored_errors(results: pd.DataFrame, failure_fraction: float = 0.12) -> pd.Series:
    """Float Series (index of ``results``): the error every statistic and figure uses.

    The raw ``error_px`` where the registration is not a failure
    (:func:`failure_mask`), the failure bound ``failure_fraction * width`` of
    that row where it is. A failed registration returns the identity, whose
    raw error is the initial displacement and may be small; scoring it at the
    bound makes it rank with every other failure (a tie at the clip value, as
    the paper's authors scored failures at 101 px for a 100 px bound) and
    never below a success. The result has no NaN.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``width``, ``status`` and ``error_px``.
    failure_fraction : float, optional
        The failure bound as a fraction of the width (> 0). Default 0.12.

    Returns
    -------
    pandas.Series
        Float, in pixels, named ``scored_error_px``.

    Raises
    ------
    ValueError
        If ``failure_fraction`` is not a positive number or a column is missing.
    """
    bound = _failure_bound(results, failure_fraction, "scored_errors")
    failed = failure_mask(results, failure_fraction).to_numpy()
    error = results["error_px"].to_numpy(dtype=float)
    return pd.Series(np.where(failed, bound, error), index=results.index, name="scored_error_px")


# --------------------------------------------------------------------------- success


def percent_name(fraction: float) -> str:
    """Column-name fragment for a width fraction: 0.01 -> ``1pct``, 0.025 -> ``2p5pct``.

    Parameters
    ----------
    fraction : float
        A fraction of the width (> 0).

    Returns
    -------
    str
        The percentage (``.`` written ``p``) followed by ``pct``.

    Raises
    ------
    ValueError
        If ``fraction`` is not positive.
    """
    percent = round(float(fraction) * 100.0, 6)
    if percent <= 0:
        raise ValueError(f"success fraction must be positive, got {fraction}")
    text = f"{percent:g}" if percent != int(percent) else str(int(percent))
    return text.replace(".", "p") + "pct"


def success_columns(fraction: float) -> tuple[str, str, str]:
    """``(count, low, high)`` column names of :func:`success_table` for a fraction.

    Parameters
    ----------
    fraction : float
        A success bound as a fraction of the width (> 0).

    Returns
    -------
    tuple[str, str, str]
        ``success_<f>pct``, ``success_<f>pct_low``, ``success_<f>pct_high`` (:func:`percent_name`).
    """
    base = f"success_{percent_name(fraction)}"
    return base, f"{base}_low", f"{base}_high"


def px_success_columns(threshold_px: float) -> tuple[str, str, str]:
    """``(count, low, high)`` column names of :func:`success_table` for a threshold in pixels: ``success_2p5px``.

    Parameters
    ----------
    threshold_px : float
        A success threshold in pixels (> 0).

    Returns
    -------
    tuple[str, str, str]
        ``success_<t>px``, ``success_<t>px_low``, ``success_<t>px_high`` (``.`` written ``p``).

    Raises
    ------
    ValueError
        If ``threshold_px`` is not positive.
    """
    if not threshold_px > 0:
        raise ValueError(f"success threshold must be positive, got {threshold_px}")
    base = "success_" + f"{float(threshold_px):g}".replace(".", "p") + "px"
    return base, f"{base}_low", f"{base}_high"


def success_table(
    results: pd.DataFrame,
    fractions: Sequence[float] = (0.01, 0.05),
    failure_fraction: float = 0.12,
    alpha: float = 0.05,
    *,
    thresholds_px: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Success counts per method x input x direction with Clopper-Pearson intervals.

    Columns: ``method, input, direction, n``, then for each fraction ``f``
    ``success_<f>pct`` (count of cases with ``error_px < f * width``, strict),
    ``success_<f>pct_low`` and ``success_<f>pct_high`` (the ``1 - alpha``
    Clopper-Pearson bounds as proportions, rounded to 3 decimals), then
    ``failures`` (:func:`failure_mask`: status other than ``"ok"``, or
    ``error_px >= failure_fraction * width``, or a missing error),
    ``median_error_px`` (median of :func:`scored_errors`, failures at the
    bound) and ``median_seconds``.

    A success needs status ``"ok"`` as well as a small error: a method that
    reports failure returns the identity, and must not be credited when the
    case happened to start within the threshold. A failure is never a
    success, even for a success fraction at or above ``failure_fraction``.

    Rows are sorted by descending success at the largest fraction (5 % by
    default), then at the smaller ones, then by method, input, direction.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``case``, ``width``, ``status``, ``error_px``, ``seconds``, ``method``,
        ``input`` and ``direction``.
    fractions : Sequence[float], optional
        The success bounds as fractions of the width. Default ``(0.01, 0.05)``.
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12.
    alpha : float, optional
        One minus the confidence level of the intervals. Default 0.05.
    thresholds_px : Sequence[float] or None, optional
        With it, the thresholds are these errors in pixels (``error_px < t``, strict)
        instead of fractions of the width, in columns ``success_<t>px`` (:func:`px_success_columns`);
        ``fractions`` is then ignored. Default None. Keyword-only.

    Returns
    -------
    pandas.DataFrame
        One row per method x input x direction, the columns above (none but the header for empty
        ``results``).

    Raises
    ------
    ValueError
        If a column is missing, two thresholds give one column name, or a threshold, ``alpha`` or
        ``failure_fraction`` is out of range.
    """
    _require(results, ["case", "width", "status", "error_px", "seconds", *GROUP_COLUMNS],
             "success_table")  # fmt: skip
    if thresholds_px is None:
        fractions = [float(f) for f in fractions]
        names = [success_columns(f) for f in fractions]
        scale = results["width"].to_numpy(dtype=float)
    else:  # a threshold is an error in pixels: a fraction of a width of 1
        fractions = [float(t) for t in thresholds_px]
        names = [px_success_columns(t) for t in fractions]
        scale = np.ones(len(results))
    if len({n[0] for n in names}) != len(names):
        raise ValueError(f"success thresholds give duplicate column names: {fractions}")
    columns = ["method", "input", "direction", "n"]
    for name in names:
        columns.extend(name)
    columns += ["failures", "median_error_px", "median_seconds"]
    if results.empty:
        return pd.DataFrame(columns=columns)

    error = results["error_px"].to_numpy(dtype=float)
    failed = failure_mask(results, failure_fraction).to_numpy()
    # Not failed implies status ok; it also keeps a success fraction above the failure
    # fraction from crediting an error at or beyond the failure bound.
    mask = success_mask(error, scale, fractions) & ~failed[None, :]
    frame = pd.DataFrame({c: results[c].to_numpy() for c in GROUP_COLUMNS})
    for (count_col, _, _), row in zip(names, mask, strict=True):
        frame[count_col] = row.astype(np.int64)
    frame["failures"] = failed.astype(np.int64)
    # The median of the scored errors: a failure counts at the bound, never with the small
    # identity error of a failed registration, and a missing error is not skipped.
    frame["error_px"] = scored_errors(results, failure_fraction).to_numpy()
    frame["seconds"] = results["seconds"].to_numpy(dtype=float)

    aggregations = {"n": ("failures", "size")}
    aggregations.update({name[0]: (name[0], "sum") for name in names})
    aggregations.update(
        failures=("failures", "sum"),
        median_error_px=("error_px", "median"),
        median_seconds=("seconds", "median"),
    )
    table = frame.groupby(list(GROUP_COLUMNS), sort=True, dropna=False).agg(**aggregations)
    table = table.reset_index()
    n = table["n"].to_numpy()
    for count_col, low_col, high_col in names:
        low, high = clopper_pearson(table[count_col].to_numpy(), n, alpha)
        table[low_col] = np.round(low, 3)
        table[high_col] = np.round(high, 3)
    table["median_error_px"] = table["median_error_px"].round(3)
    table["median_seconds"] = table["median_seconds"].round(3)
    order = [names[i][0] for i in np.argsort(fractions)[::-1]]
    table = table.sort_values(
        [*order, *GROUP_COLUMNS],
        ascending=[False] * len(order) + [True] * len(GROUP_COLUMNS),
        kind="mergesort",
    )
    return table[columns].reset_index(drop=True)


# --------------------------------------------------------------------------- Wilcoxon


def wilcoxon_table(
    results: pd.DataFrame, failure_fraction: float = 0.12, reference_input: str | None = None
) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests between every two labels of one direction.

    A label is one method x input x direction. Only labels of the same
    direction are compared (different directions are different problems),
    on the cases both have (inner join on ``case``; a row with a missing error
    still takes part, as a failure); pairs without common cases are left out.
    The test runs on :func:`scored_errors`: a failure (reported, error at or
    above ``failure_fraction * width`` of the case, i.e. 100 px at 834 px, or
    missing) counts as the bound, so two failures tie whatever their raw
    errors, and a failed registration never counts with its (possibly small)
    identity error.

    Columns: ``label_x, label_y, n_cases, n_nonzero, statistic, p_value,
    rank_biserial_r, median_difference_px, p_holm``; ``p_holm`` is the Holm
    adjustment of ``p_value`` over all rows. Sign convention: positive
    ``rank_biserial_r`` (and ``median_difference_px``, the median of scored
    ``error_x - error_y``) means ``label_x`` has LARGER errors than ``label_y``.
    Within a direction, labels are ordered alphabetically and ``label_x`` is
    the earlier one.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``case``, ``width``, ``status``, ``error_px``, ``method``, ``input`` and
        ``direction`` (``label`` is made when absent).
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12.
    reference_input : str or None, optional
        With it, each label is tested only against the label(s) of
        its direction whose input is ``reference_input`` (then ``label_y``), so that Holm's adjustment
        covers just those tests (e.g. every ablation against its base). Default None: every pair.

    Returns
    -------
    pandas.DataFrame
        One row per test, the columns :data:`WILCOXON_COLUMNS`.

    Raises
    ------
    ValueError
        If a column is missing, ``failure_fraction`` is not positive, or a (case, label) pair occurs
        more than once.
    """
    _require(results, ["case", "width", "status", "error_px", *GROUP_COLUMNS], "wilcoxon_table")
    frame = results.assign(error_px=scored_errors(results, failure_fraction))
    if "label" not in frame.columns:
        frame = frame.assign(label=make_label(frame["method"], frame["input"], frame["direction"]))
    key = ["case", "label"]
    if frame.duplicated(key).any():
        raise ValueError("wilcoxon_table: a (case, label) pair occurs more than once")
    rows = []
    for _direction, part in frame.groupby("direction", sort=True):
        errors = part.pivot(index="case", columns="label", values="error_px")
        widths = part.groupby("case")["width"].max().reindex(errors.index).to_numpy(float)
        present = errors.notna().to_numpy()
        values = errors.to_numpy(dtype=float)
        labels = list(errors.columns)
        if reference_input is None:
            pairs = list(itertools.combinations(range(len(labels)), 2))
        else:
            input_of = part.groupby("label")["input"].first()
            references = [k for k, label in enumerate(labels) if input_of[label] == reference_input]
            pairs = [(i, j) for j in references for i in range(len(labels)) if i not in references]
        for i, j in pairs:
            both = present[:, i] & present[:, j]
            if not both.any():
                continue
            # Scored errors never exceed the bound, so this clip only guards the contract of
            # wilcoxon_paired (failures tie at the bound).
            test = wilcoxon_paired(values[both, i], values[both, j], clip=failure_fraction * widths[both])
            rows.append(
                {
                    "label_x": labels[i],
                    "label_y": labels[j],
                    "n_cases": int(both.sum()),
                    "n_nonzero": test.n,
                    "statistic": test.statistic,
                    "p_value": test.p_value,
                    "rank_biserial_r": test.rank_biserial_r,
                    "median_difference_px": test.median_difference,
                }
            )
    table = pd.DataFrame(rows, columns=list(WILCOXON_COLUMNS[:-1]))
    if table.empty:
        table["p_holm"] = pd.Series(dtype=float)
        return table
    table["p_holm"] = multipletests(table["p_value"].to_numpy(float), method="holm")[1]
    return table


def variant_table(results: pd.DataFrame, failure_fraction: float = 0.12, reference: str | None = None) -> pd.DataFrame:
    """Variants against each other per method and direction (paper, Fig. 9: MSE vs cosine critic).

    For every method and direction, every two variants (with
    ``reference``, every variant and the reference, which is then ``variant_y``) are
    compared with :func:`wilcoxon_table`'s paired test on their common cases,
    on :func:`scored_errors` (failures count as ``failure_fraction * width``);
    Holm's adjustment runs over all rows.

    Parameters
    ----------
    results : pandas.DataFrame
        Registrations on CoMIRs with a ``source`` column naming the variant, and the columns
        :func:`wilcoxon_table` needs.
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12.
    reference : str or None, optional
        A variant to test every other one against. Default None: every pair.

    Returns
    -------
    pandas.DataFrame
        Columns ``method, direction, variant_x, variant_y`` and the test columns of
        :data:`WILCOXON_COLUMNS` (positive ``rank_biserial_r``: ``variant_x`` has larger errors).

    Raises
    ------
    ValueError
        If a column is missing (as :func:`wilcoxon_table`).
    """
    _require(results, ["case", "width", "status", "error_px", "source", *GROUP_COLUMNS], "variant_table")
    columns = ["method", "direction", "variant_x", "variant_y", *WILCOXON_COLUMNS[2:]]
    parts = []
    for method, part in results.groupby("method", sort=True):
        # The variant takes the place of the input so that labels differ by variant only.
        tests = wilcoxon_table(
            part.assign(input=part["source"]).drop(columns="label", errors="ignore"), failure_fraction, reference
        )
        if tests.empty:
            continue
        split_x = tests["label_x"].str.extract(r" on (?P<variant_x>.+) \((?P<direction>[^)]+)\)$")
        split_y = tests["label_y"].str.extract(r" on (?P<variant_y>.+) \([^)]+\)$")
        parts.append(pd.concat([split_x, split_y, tests], axis=1).assign(method=method))
    if not parts:
        return pd.DataFrame(columns=columns)
    table = pd.concat(parts, ignore_index=True)
    table["p_holm"] = multipletests(table["p_value"].to_numpy(float), method="holm")[1]
    return table[columns]


# --------------------------------------------------------------------------- Markdown

_SUCCESS_RE = re.compile(r"^success_(.+(?:pct|px))$")


def _format_number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if value == round(value) and abs(value) < 1e15:
        return str(int(round(value)))
    magnitude = abs(value)
    if magnitude < 1e-3:
        return f"{value:.2e}"
    if magnitude >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _format_cell(value) -> str:
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)) or value is None:
        return _format_number(value)
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    """Render a DataFrame as a GitHub-flavoured Markdown table (no ``tabulate``).

    One header line, one separator line (numeric columns right-aligned) and
    one line per row; the index is ignored. Success columns of
    :func:`success_table` are merged with their bounds into one cell such as
    ``41 [0.780, 0.950]``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.

    Returns
    -------
    str
        The Markdown, ending with a newline.
    """
    columns = list(df.columns)
    merged: dict[str, tuple[str, str]] = {}
    for column in columns:
        match = _SUCCESS_RE.match(str(column))
        if match and f"{column}_low" in columns and f"{column}_high" in columns:
            merged[column] = (f"{column}_low", f"{column}_high")
    hidden = {c for pair in merged.values() for c in pair}
    shown = [c for c in columns if c not in hidden]

    def cell(row, column) -> str:
        if column in merged:
            low, high = (row[c] for c in merged[column])
            count = _format_cell(row[column])
            if pd.isna(low) or pd.isna(high):
                return count
            return f"{count} [{float(low):.3f}, {float(high):.3f}]"
        return _format_cell(row[column])

    numeric = [c in merged or pd.api.types.is_numeric_dtype(df[c].dtype) for c in shown]
    header = "| " + " | ".join(_format_cell(str(c)) for c in shown) + " |"
    separator = "| " + " | ".join("---:" if num else "---" for num in numeric) + " |"
    lines = [header, separator]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(cell(row, c) for c in shown) + " |")
    return "\n".join(lines) + "\n"

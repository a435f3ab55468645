"""Figures of the evaluation protocol (docs/method.md, section 8).

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas
directly, never through ``pyplot``: no display is needed, no global backend is
switched, and no figure stays registered (nothing to leak between calls).
Every file is written through :func:`comir.io.atomic_path`.

Every figure draws the scored error of :func:`comir.evaluate.tables.scored_errors`:
a failed registration (reported failure, error at or above
``failure_fraction * width``, or missing error) is drawn at the failure bound or,
in the eCDF, beyond the axis, never with the small identity error a reported
failure may have. :func:`ecdf_curve` and :func:`error_vs_displacement_points`
compute what the eCDF and the scatter plot draw.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from comir.evaluate.stats import ecdf
from comir.evaluate.tables import GROUP_COLUMNS, failure_mask, make_label, scored_errors
from comir.io import atomic_path, read_image, to_uint8

__all__ = [
    "KIND_OK",
    "KIND_REPORTED",
    "KIND_TOO_LARGE",
    "ecdf_curve",
    "error_vs_displacement_points",
    "plot_ecdf",
    "plot_error_vs_displacement",
    "plot_success_bars",
    "plot_variants",
]

_LINESTYLES = ("-", "--", ":", "-.")
#: Kinds of points in the error-versus-displacement figure (:func:`error_vs_displacement_points`).
KIND_OK = "ok"
KIND_REPORTED = "reported failure"
KIND_TOO_LARGE = "error too large or missing"
_KIND_STYLES = {
    KIND_OK: {"color": "tab:blue", "marker": "o"},
    # Both kinds of failure share the failure colour; the marker tells the reason.
    KIND_REPORTED: {"color": "tab:red", "marker": "x"},
    KIND_TOO_LARGE: {"color": "tab:red", "marker": "^"},
}
_MIN_POSITIVE_PX = 1e-2  # where errors of (almost) zero are drawn on log axes


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches (120 dpi, constrained layout) drawn without a display.

    Parameters
    ----------
    width, height : float
        Size of the figure in inches.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, on an Agg canvas (not registered with ``pyplot``).
    """
    figure = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> None:
    """Write ``figure`` to ``path`` atomically (a PNG by the suffix) and free it.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure; cleared afterwards, even when writing fails.
    path : str or os.PathLike
        The image file; its suffix selects the format.
    """
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=figure.dpi)
    finally:
        figure.clear()


def _require(frame: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{who}: input lacks column(s): {', '.join(missing)}")
    if frame.empty:
        raise ValueError(f"{who}: no rows to plot")


def _reference_width(results: pd.DataFrame) -> float:
    """The image width the pixel thresholds refer to (the median width)."""
    return float(np.median(results["width"].to_numpy(dtype=float)))


def _styles(results: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """Colour per method, line style per input, stable across panels."""
    methods = sorted(results["method"].astype(str).unique())
    inputs = sorted(results["input"].astype(str).unique())
    colours = [f"C{i % 10}" for i in range(len(methods))]
    return {
        (m, i): {
            "color": colours[a],
            "linestyle": _LINESTYLES[b % len(_LINESTYLES)],
        }
        for a, m in enumerate(methods)
        for b, i in enumerate(inputs)
    }


def ecdf_curve(
    results: pd.DataFrame, failure_fraction: float = 0.12, x_end: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Step curve (``where="post"``) that :func:`plot_ecdf` draws for one group of rows.

    ``ys`` is the fraction of ALL rows whose error is
    ``<= x``, counting only rows that are not failures
    (:func:`comir.evaluate.tables.failure_mask`). A failure is treated as an
    error beyond the axis (NaN in :func:`comir.evaluate.stats.ecdf`): it is
    never ``<= x`` for any ``x``, so a reported failure with a small identity
    error does not lift the curve at small ``x``, and the curve ends at the
    proportion of non-failures. Errors are floored at a small positive value
    for the log axis; the curve starts at ``(floor, 0)`` and is extended flat
    to ``x_end``.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case rows of one group, with ``error_px``, ``width`` and ``status``.
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12.
    x_end : float or None, optional
        Where the curve ends on the x axis, in px. Default None: ten times the largest failure bound.

    Returns
    -------
    xs, ys : numpy.ndarray
        The step curve's x (px) and y (fractions) coordinates.

    Raises
    ------
    ValueError
        If ``failure_fraction`` is not positive or a column is missing.
    """
    failed = failure_mask(results, failure_fraction).to_numpy()
    errors = results["error_px"].to_numpy(dtype=float)
    if x_end is None:
        bounds = failure_fraction * results["width"].to_numpy(dtype=float)
        x_end = 10.0 * float(np.nanmax(bounds)) if bounds.size else 10.0
    values, fraction = ecdf(np.where(failed, np.nan, errors))
    values = np.maximum(values, _MIN_POSITIVE_PX)
    last = fraction[-1] if fraction.size else 0.0
    xs = np.concatenate([[_MIN_POSITIVE_PX], values, [max(float(x_end), _MIN_POSITIVE_PX)]])
    ys = np.concatenate([[0.0], fraction, [last]])
    return xs, ys


def plot_ecdf(
    results: pd.DataFrame,
    path: str | os.PathLike[str],
    width_fraction_axis: bool = True,
    *,
    fractions: Sequence[float] = (0.01, 0.05),
    failure_fraction: float = 0.12,
    thresholds_px: Sequence[float] | None = None,
    xlabel: str = "corner error (px)",
) -> None:
    """Empirical CDF (eCDF) of the corner error: one panel per direction, one line per method x input.

    x is the error in px on a log axis up to ``failure_fraction`` of the width
    (paper: 1-100 px at 834 px); it starts at 1 px or, where errors are
    smaller, at the decade below the smallest one, so no part of the
    distribution is hidden (sub-pixel errors are common on small patches);
    y is the fraction of cases with error <= x (:func:`ecdf_curve`). A failure
    (reported, error >= ``failure_fraction * width`` or missing) lies beyond
    the axis: it never counts as <= x, so each curve ends at the proportion of
    non-failures. Dashed vertical lines mark the success thresholds.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``error_px``, ``width``, ``status``, ``method``, ``input`` and ``direction``.
    path : str or os.PathLike
        The image file to write.
    width_fraction_axis : bool, optional
        Whether a top axis shows the error in % of the (median) width. Default True.
    fractions : Sequence[float], optional
        The success thresholds marked, as fractions of the (median) width. Default ``(0.01, 0.05)``.
        Keyword-only.
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12. Keyword-only.
    thresholds_px : Sequence[float] or None, optional
        The success thresholds in pixels, marked instead of ``fractions``. Default None. Keyword-only.
    xlabel : str, optional
        Names the error (e.g. a case's median TRE). Default ``"corner error (px)"``. Keyword-only.

    Raises
    ------
    ValueError
        If a column is missing or ``results`` has no rows.
    """
    _require(results, ["error_px", "width", "status", *GROUP_COLUMNS], "plot_ecdf")
    width = _reference_width(results)
    x_max = max(failure_fraction * width, 2.0)
    errors = results["error_px"].to_numpy(dtype=float)
    # Failures are off the axis, so only the errors of non-failures set where it starts.
    failed = failure_mask(results, failure_fraction).to_numpy()
    smallest = errors[~failed & np.isfinite(errors) & (errors > 0)]
    x_min = min(1.0, 10.0 ** np.floor(np.log10(max(smallest.min(), 1e-2)))) if smallest.size else 1.0
    directions = sorted(results["direction"].astype(str).unique())
    styles = _styles(results)
    if thresholds_px is None:
        marks = [(f * width, f" {f * 100:g} %") for f in fractions]
    else:
        marks = [(float(t), f" {t:g} px") for t in thresholds_px]
    figure = new_figure(4.6 * len(directions) + 0.4, 4.4)
    axes = np.atleast_1d(figure.subplots(1, len(directions), sharey=True, squeeze=False)[0])
    handles: dict[str, Line2D] = {}
    for ax, direction in zip(axes, directions, strict=True):
        part = results[results["direction"].astype(str) == direction]
        for (method, input_), group in part.groupby(["method", "input"], sort=True):
            xs, ys = ecdf_curve(group, failure_fraction, x_max * 10)
            label = f"{method} on {input_}"
            (line,) = ax.step(xs, ys, where="post", label=label, linewidth=1.6,
                              **styles[(str(method), str(input_))])  # fmt: skip
            handles.setdefault(label, line)
        for at, text in marks:
            ax.axvline(at, color="0.35", linestyle="--", linewidth=0.9)
            ax.text(at, 1.005, text, transform=ax.get_xaxis_transform(),
                    ha="left", va="bottom", fontsize=7, color="0.35")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlim(x_min, x_max)
        ax.set_ylim(0.0, 1.02)
        ax.grid(True, which="both", alpha=0.25)
        ax.set_xlabel(xlabel)
        ax.set_title(direction.replace("_", " "), fontsize=10)
        if width_fraction_axis:
            top = ax.secondary_xaxis(
                "top",
                functions=(lambda px: px / width * 100.0, lambda pct: pct * width / 100.0),
            )
            top.set_xlabel(f"error (% of width {width:g} px)", fontsize=8)
    axes[0].set_ylabel("fraction of cases with error \u2264 x (failures never)")
    figure.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="outside lower center",
        ncol=min(4, max(1, len(handles))),
        fontsize=8,
        frameon=False,
    )
    save_figure(figure, path)


def error_vs_displacement_points(results: pd.DataFrame, failure_fraction: float = 0.12) -> pd.DataFrame:
    """What :func:`plot_error_vs_displacement` draws: one point per row of ``results``.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``initial_displacement_px``, ``error_px``, ``width`` and ``status``.
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12.

    Returns
    -------
    pandas.DataFrame
        Columns (index of ``results``): ``displacement_px`` (initial displacement),
        ``error_px`` (:func:`comir.evaluate.tables.scored_errors`, so every failure
        sits at its bound ``failure_fraction * width``; floored at a small positive
        value for the log axis) and ``kind``: :data:`KIND_REPORTED` (status not
        ``"ok"``), :data:`KIND_TOO_LARGE` (status ok, but error >= the bound or
        missing) or :data:`KIND_OK`.
    """
    failed = failure_mask(results, failure_fraction).to_numpy()
    reported = results["status"].astype(str).to_numpy() != "ok"
    kind = np.where(reported, KIND_REPORTED, np.where(failed, KIND_TOO_LARGE, KIND_OK))
    return pd.DataFrame(
        {
            "displacement_px": results["initial_displacement_px"].to_numpy(dtype=float),
            "error_px": np.maximum(scored_errors(results, failure_fraction).to_numpy(), _MIN_POSITIVE_PX),
            "kind": kind,
        },
        index=results.index,
    )


def plot_error_vs_displacement(
    results: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    success_fraction: float = 0.05,
    failure_fraction: float = 0.12,
) -> None:
    """Error against initial displacement, one panel per method x input x direction.

    Rows of the grid are method x input, columns are directions. Points come
    from :func:`error_vs_displacement_points`: failures, whether the method
    reported them or their error was too large (>= ``failure_fraction`` of the
    width) or missing, are red and drawn AT the failure bound (a reported
    failure's raw error is just its initial displacement); the red dotted line
    is that bound, the dashed line the success threshold (``success_fraction``
    of the width) and the grey diagonal ``error = displacement`` (no
    improvement over the identity).

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``error_px``, ``initial_displacement_px``, ``width``, ``status``,
        ``method``, ``input`` and ``direction``.
    path : str or os.PathLike
        The image file to write.
    success_fraction : float, optional
        The success threshold as a fraction of the (median) width. Default 0.05. Keyword-only.
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12. Keyword-only.

    Raises
    ------
    ValueError
        If a column is missing or ``results`` has no rows.
    """
    _require(results, ["error_px", "initial_displacement_px", "width", "status",
                       *GROUP_COLUMNS], "plot_error_vs_displacement")  # fmt: skip
    width = _reference_width(results)
    points = error_vs_displacement_points(results, failure_fraction)
    directions = sorted(results["direction"].astype(str).unique())
    pairs = sorted({(str(m), str(i)) for m, i in zip(results["method"], results["input"], strict=True)})
    figure = new_figure(3.6 * len(directions) + 0.6, 2.7 * len(pairs) + 0.6)
    axes = figure.subplots(len(pairs), len(directions), sharex=True, sharey=True, squeeze=False)
    displacement = points["displacement_px"].to_numpy()
    error = points["error_px"].to_numpy()
    kind = points["kind"].to_numpy()
    finite = np.isfinite(displacement) & np.isfinite(error)
    x_hi = float(np.nanmax(displacement[finite])) * 1.05 if finite.any() else 1.0
    y_lo = max(min(float(np.nanmin(error[finite])) if finite.any() else 1.0, 1.0) / 2,
               _MIN_POSITIVE_PX / 2)  # fmt: skip
    y_hi = max(float(np.nanmax(error[finite])) if finite.any() else 1.0, x_hi) * 2
    method = results["method"].astype(str).to_numpy()
    input_ = results["input"].astype(str).to_numpy()
    direction_of = results["direction"].astype(str).to_numpy()
    threshold = success_fraction * width
    bound = failure_fraction * width
    diagonal = np.geomspace(max(y_lo, _MIN_POSITIVE_PX), max(x_hi, 2 * y_lo), 200)
    for r, (m, i) in enumerate(pairs):
        for c, direction in enumerate(directions):
            ax = axes[r, c]
            selected = (method == m) & (input_ == i) & (direction_of == direction)
            for k, style in _KIND_STYLES.items():
                pick = selected & (kind == k)
                if pick.any():
                    ax.scatter(displacement[pick], error[pick], s=14, alpha=0.75, **style)
            ax.plot(diagonal, diagonal, color="0.6", linewidth=0.8)
            ax.axhline(threshold, color="0.2", linestyle="--", linewidth=0.9)
            ax.axhline(bound, color="tab:red", linestyle=":", linewidth=0.9)
            ax.set_yscale("log")
            ax.set_xlim(0, x_hi)
            ax.set_ylim(y_lo, y_hi)
            ax.grid(True, which="major", alpha=0.25)
            ax.set_title(f"{m} on {i} ({direction.replace('_', ' ')})", fontsize=9)
            if c == 0:
                ax.set_ylabel("corner error (px)")
            if r == len(pairs) - 1:
                ax.set_xlabel("initial displacement (px)")
    labels = {
        KIND_OK: "not a failure",
        KIND_REPORTED: "failure reported by the method (at the bound)",
        KIND_TOO_LARGE: "failure: error \u2265 bound or missing (at the bound)",
    }
    legend = [
        Line2D([], [], linestyle="none", label=labels[k], **style)
        for k, style in _KIND_STYLES.items()
        if (kind == k).any()
    ]
    legend += [
        Line2D([], [], color="0.2", linestyle="--",
               label=f"success threshold ({success_fraction * 100:g} % of width)"),
        Line2D([], [], color="tab:red", linestyle=":",
               label=f"failure bound ({failure_fraction * 100:g} % of width)"),
        Line2D([], [], color="0.6", label="error = initial displacement"),
    ]  # fmt: skip
    # One legend column per panel column: the labels are long, and the figure does not widen for them.
    figure.legend(handles=legend, loc="outside lower center", ncol=min(3, len(directions)), fontsize=8,
                  frameon=False)  # fmt: skip
    save_figure(figure, path)


_COUNT_RE = re.compile(r"^success_(.+)pct$")


def _fraction_of(fragment: str) -> float:
    return float(fragment.replace("p", ".")) / 100.0


def plot_success_bars(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Horizontal bars of success proportions with Clopper-Pearson error bars.

    One bar group per row (first row on top), one bar per success fraction found in
    the table's columns.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`comir.evaluate.tables.success_table`'s output (with fractions of the width: the
        ``success_<f>pct`` columns and their bounds).
    path : str or os.PathLike
        The image file to write.

    Raises
    ------
    ValueError
        If a column is missing, the table has no rows, or it has no ``success_<f>pct`` columns.
    """
    _require(table, ["n", *GROUP_COLUMNS], "plot_success_bars")
    fractions = sorted(
        (
            (_fraction_of(m.group(1)), m.group(0))
            for m in map(_COUNT_RE.match, map(str, table.columns))
            if m and f"{m.group(0)}_low" in table.columns and f"{m.group(0)}_high" in table.columns
        ),
    )
    if not fractions:
        raise ValueError("plot_success_bars: the table has no success_<f>pct columns")
    labels = make_label(table["method"], table["input"], table["direction"]).tolist()
    n = np.maximum(table["n"].to_numpy(dtype=float), 1.0)
    rows = np.arange(len(table), dtype=float)
    bar = 0.8 / len(fractions)
    figure = new_figure(7.5, 0.45 * len(table) * max(1, len(fractions) / 2) + 1.6)
    ax = figure.subplots()
    for k, (fraction, column) in enumerate(fractions):
        proportion = table[column].to_numpy(dtype=float) / n
        low = table[f"{column}_low"].to_numpy(dtype=float)
        high = table[f"{column}_high"].to_numpy(dtype=float)
        xerr = np.vstack([np.clip(proportion - low, 0, None), np.clip(high - proportion, 0, None)])
        offset = (k - (len(fractions) - 1) / 2) * bar
        ax.barh(rows + offset, proportion, height=bar * 0.92, xerr=xerr,
                color=f"C{k}", alpha=0.85, error_kw={"elinewidth": 1, "capsize": 2},
                label=f"error < {fraction * 100:g} % of width")  # fmt: skip
    ax.set_yticks(rows, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("success proportion (bars: Clopper-Pearson interval)")
    ax.grid(True, axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncol=len(fractions), fontsize=8, frameon=False)
    save_figure(figure, path)


def plot_variants(
    results: pd.DataFrame,
    tests: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    success_fraction: float = 0.05,
    failure_fraction: float = 0.12,
) -> None:
    """Paired errors of two variants per method (rows) and direction (columns), paper Fig. 9.

    Each point is one case: its scored error
    (:func:`comir.evaluate.tables.scored_errors`, a failure at the bound
    ``failure_fraction * width``, red dotted lines) with the first variant (x)
    against the second (y), log axes; points below the diagonal favour the
    second variant; the dashed lines are the success threshold. The panel
    title gives the Wilcoxon p-value (Holm) and the rank-biserial r of
    ``tests``.
    With more than two variants the first two (alphabetically) are drawn;
    the table has every pair.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-case results with ``case``, ``error_px``, ``width``, ``status``, ``source`` (the variant),
        ``method`` and ``direction``.
    tests : pandas.DataFrame
        :func:`comir.evaluate.tables.variant_table` of the same results.
    path : str or os.PathLike
        The image file to write.
    success_fraction : float, optional
        The success threshold as a fraction of the (median) width. Default 0.05. Keyword-only.
    failure_fraction : float, optional
        The failure bound as a fraction of the width. Default 0.12. Keyword-only.

    Raises
    ------
    ValueError
        If a column is missing, ``results`` has no rows, or it has fewer than two variants.
    """
    _require(results, ["case", "error_px", "width", "status", "source", "method", "direction"], "plot_variants")
    variants = sorted(results["source"].astype(str).unique())
    if len(variants) < 2:
        raise ValueError(f"plot_variants: needs two variants, found {variants}")
    first, second = variants[:2]
    methods = sorted(results["method"].astype(str).unique())
    directions = sorted(results["direction"].astype(str).unique())
    # The same scored errors as variant_table's tests, so the figure shows what was tested.
    scored = results.assign(error_px=scored_errors(results, failure_fraction))
    errors = scored.pivot_table(index=["method", "direction", "case"], columns="source", values="error_px",
                                aggfunc="first")  # fmt: skip
    threshold = success_fraction * _reference_width(results)
    bound = failure_fraction * _reference_width(results)
    values = np.maximum(errors[[first, second]].to_numpy(dtype=float), _MIN_POSITIVE_PX)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()) / 2, float(finite.max()) * 2) if finite.size else (0.1, 10.0)
    figure = new_figure(3.2 * len(directions) + 0.6, 3.0 * len(methods) + 0.6)
    axes = figure.subplots(len(methods), len(directions), squeeze=False)
    for r, method in enumerate(methods):
        for c, direction in enumerate(directions):
            ax = axes[r, c]
            key = (method, direction)
            if key in errors.index.droplevel("case"):
                pair = np.maximum(errors.loc[key, [first, second]].to_numpy(dtype=float), _MIN_POSITIVE_PX)
                ax.scatter(pair[:, 0], pair[:, 1], s=12, alpha=0.75, color="tab:blue", edgecolors="none")
            ax.plot([low, high], [low, high], color="0.6", linewidth=0.8)
            ax.axvline(threshold, color="0.2", linestyle="--", linewidth=0.8)
            ax.axhline(threshold, color="0.2", linestyle="--", linewidth=0.8)
            ax.axvline(bound, color="tab:red", linestyle=":", linewidth=0.8)
            ax.axhline(bound, color="tab:red", linestyle=":", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(low, high)
            ax.set_ylim(low, high)
            ax.set_aspect("equal")
            row = tests[(tests["method"] == method) & (tests["direction"] == direction)
                        & (tests["variant_x"] == first) & (tests["variant_y"] == second)]  # fmt: skip
            note = ""
            if not row.empty:
                note = f"\np(Holm) {row['p_holm'].iloc[0]:.2g}, r {row['rank_biserial_r'].iloc[0]:+.2f}"
            ax.set_title(f"{method} ({direction.replace('_', ' ')}){note}", fontsize=9)
            ax.set_xlabel(f"error with {first} (px)")
            ax.set_ylabel(f"error with {second} (px)")
    save_figure(figure, path)


def display_picture(image: np.ndarray) -> np.ndarray:
    """An 8-bit picture of a stored (H, W[, C]) image: grey, or RGB stretched on all channels together.

    The stretch maps the 0.5th to 99.5th percentiles of the values to 0-255 (:func:`comir.io.to_uint8`).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)``, ``(H, W, 1)`` or ``(H, W, C)`` image; of more than three channels the first three
        are shown.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, 3)`` uint8.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        image = image[..., :3]
    low, high = (float(v) for v in np.percentile(image, [0.5, 99.5]))
    return to_uint8(image, low, high)


def plot_translation_examples(
    case: str,
    image_dir: str | os.PathLike[str],
    translated: Mapping[str, str | os.PathLike[str]],
    comir_dir: str | os.PathLike[str],
    names: Mapping[str, str],
    path: str | os.PathLike[str],
) -> None:
    """The paper's Fig. 3 for one test case: each modality's reference, its fakes and the CoMIRs.

    Row of modality X: the real X reference patch; the other modality's floating
    patch; its translation into X by every model, each registered to the X reference;
    the CoMIRs of the X reference and of the other floating patch, registered to each other.

    Parameters
    ----------
    case : str
        The test case; its files are ``<case>_<slot>_ref.tif`` and ``<case>_<slot>_flo.tif``.
    image_dir : str or os.PathLike
        The folder of the test set's images.
    translated : Mapping[str, str or os.PathLike]
        Model name -> folder of the ``translate`` rule (its translated floating patches).
    comir_dir : str or os.PathLike
        The folder of the test set's CoMIRs.
    names : Mapping[str, str]
        The modality names by slot (``A``, ``B``).
    path : str or os.PathLike
        The image file to write.
    """
    from pathlib import Path

    image_dir, comir_dir = Path(image_dir), Path(comir_dir)
    columns = 4 + len(translated)
    figure = new_figure(2.1 * columns, 4.6)
    axes = figure.subplots(2, columns, squeeze=False)
    for row, (slot, other) in zip(axes, (("A", "B"), ("B", "A"))):
        target, source = names[slot], names[other]
        panels = [
            (read_image(image_dir / f"{case}_{slot}_ref.tif"), f"{target} (reference)"),
            (read_image(image_dir / f"{case}_{other}_flo.tif"), f"{source} (floating)"),
        ]
        panels += [
            (read_image(Path(folder) / f"{case}_{other}_flo.tif"), f"{model}: fake {target}\n-> {target} reference")
            for model, folder in translated.items()
        ]
        panels += [
            (read_image(comir_dir / f"{case}_{slot}_ref.tif"), f"CoMIR of {target}\n(reference)"),
            (read_image(comir_dir / f"{case}_{other}_flo.tif"), f"CoMIR of {source}\n-> CoMIR reference"),
        ]
        for ax, (image, title) in zip(row, panels):
            picture = display_picture(image)
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    figure.suptitle(f"{case}: translations and CoMIRs (the arrows: what is registered to what)", fontsize=8)
    save_figure(figure, path)

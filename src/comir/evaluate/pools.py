"""Per-core results of a pool of datasets: which cores fail, and why (rule ``pool_folds``).

A pool (the configuration's ``pools``) holds the registrations of several datasets
(:func:`comir.evaluate.tables.pool_results`: a ``fold`` column names the dataset).
:func:`core_table` counts successes per core (``image_id``, e.g. a tissue core) and
registration run, ranks the cores worst first and flags the cores that no run
registers; :func:`plot_cores` shows each core's reference patches, their CoMIRs and
the image statistics that explain a failure (:func:`patch_statistics`).

A core is **unregistered** when no run (any method, input and direction) reaches a
success rate of 50 % (``2 * successes >= cases``) within the largest success fraction
on that core's cases.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from comir.evaluate.figures import display_picture, new_figure, save_figure
from comir.evaluate.tables import GROUP_COLUMNS, make_label, percent_name, success_columns, success_table
from comir.imaging.stain import MIN_INTENSITY
from comir.io import comir_preview, read_image, to_float01

__all__ = [
    "CORE_KEYS",
    "UNREGISTERED_RATE",
    "core_examples",
    "core_table",
    "patch_statistics",
    "plot_cores",
    "rate_column",
]

#: The columns that name a core: the pooled dataset and the image (core) id.
CORE_KEYS: tuple[str, ...] = ("dataset", "image_id")
#: A core is unregistered when no run reaches this success rate (within the largest fraction).
UNREGISTERED_RATE = 0.5
#: Inputs whose runs give ``best_rate`` and ``best_original_rate``.
COMIR_INPUT, ORIGINAL_INPUT = "comir", "original"
#: A pixel of the B patch is signal when it exceeds this share of the patch's maximum.
SIGNAL_SHARE = 0.1

# Figure geometry (inches): four image columns and a text column; each core adds a row.
CORES_FIGURE_WIDTH_IN = 10.0
CORES_ROW_HEIGHT_IN = 1.65
CORES_HEADER_IN = 0.7
_WIDTH_RATIOS = (1.0, 1.0, 1.0, 1.0, 2.3)
CORES_DPI = 90


def rate_column(fraction: float) -> str:
    """The rate column of :func:`core_table` for a success fraction: 0.05 -> ``rate_5pct``.

    Parameters
    ----------
    fraction : float
        A success fraction of the width (> 0).

    Returns
    -------
    str
        ``rate_<f>pct`` (:func:`comir.evaluate.tables.percent_name`).

    Raises
    ------
    ValueError
        If ``fraction`` is not positive.
    """
    return f"rate_{percent_name(fraction)}"


def core_table(
    pooled: pd.DataFrame,
    fractions: Sequence[float] = (0.01, 0.05),
    failure_fraction: float = 0.12,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Success per core and registration run of a pool, cores worst first.

    Parameters
    ----------
    pooled : pandas.DataFrame
        :func:`comir.evaluate.tables.pool_results` of the pool: the per-case
        registration rows with ``fold`` (the dataset) and ``image_id`` (the core;
        a missing id is the empty string).
    fractions : sequence of float
        The evaluation's ``success_fractions`` (success: status ok, not a
        failure and ``error_px < f * width``, as :func:`~comir.evaluate.tables.success_table`).
    failure_fraction : float
        The evaluation's ``failure_fraction`` (:func:`~comir.evaluate.tables.failure_mask`).
    alpha : float
        ``1 - alpha`` Clopper-Pearson intervals (:func:`comir.evaluate.stats.clopper_pearson`).

    Returns
    -------
    pandas.DataFrame
        One row per dataset x ``image_id`` x run (``method``, ``input``,
        ``direction``). Columns: ``dataset, image_id, method, input, direction,
        cases``; for each fraction ``f`` ``success_<f>pct`` (count), ``rate_<f>pct``
        (count / cases, 3 decimals), ``success_<f>pct_low`` and ``success_<f>pct_high``
        (the interval as proportions, 3 decimals); ``failures``, ``median_error_px``
        (failures scored at the failure bound); per core (repeated on its rows)
        ``best_rate`` (the highest rate within the largest fraction of the runs on
        CoMIRs, ``input == "comir"``; NaN when the pool has none), ``best_original_rate``
        (the same over the runs on the originals) and ``unregistered`` (True when no
        run of any method, input and direction has ``2 * successes >= cases``
        within the largest fraction, i.e. none reaches 50 % on that core).

        Cores are sorted worst first: by ``best_rate`` (a core without CoMIR runs
        first), then by the best rate of any run, then by dataset and ``image_id``;
        a core's runs keep :func:`~comir.evaluate.tables.success_table`'s order
        (most successes first).

    Raises
    ------
    ValueError
        When ``pooled`` lacks a required column or ``fractions`` is empty.
    """
    missing = [c for c in ("fold", "image_id") if c not in pooled.columns]
    if missing:
        raise ValueError(f"core_table: results lack column(s): {', '.join(missing)}")
    fractions = [float(f) for f in fractions]
    if not fractions:
        raise ValueError("core_table: no success fractions given")
    largest = max(fractions)
    columns = [*CORE_KEYS, *GROUP_COLUMNS, "cases"]
    for fraction in fractions:
        count, low, high = success_columns(fraction)
        columns += [count, rate_column(fraction), low, high]
    columns += ["failures", "median_error_px", "best_rate", "best_original_rate", "unregistered"]
    if pooled.empty:
        return pd.DataFrame(columns=columns)

    frame = pooled.assign(image_id=pooled["image_id"].fillna("").astype(str), fold=pooled["fold"].astype(str))
    parts = []
    for (dataset, image_id), core in frame.groupby(["fold", "image_id"], sort=True):
        part = success_table(core, fractions, failure_fraction, alpha)
        parts.append(part.assign(dataset=dataset, image_id=image_id))
    table = pd.concat(parts, ignore_index=True).rename(columns={"n": "cases"})
    for fraction in fractions:
        table[rate_column(fraction)] = (table[success_columns(fraction)[0]] / table["cases"]).round(3)

    successes = table[success_columns(largest)[0]].to_numpy(dtype=float)
    cases = table["cases"].to_numpy(dtype=float)
    rate = successes / cases
    by_core = [table[c] for c in CORE_KEYS]

    def best_of(kind: str) -> pd.Series:
        rates = pd.Series(np.where(table["input"].astype(str) == kind, rate, np.nan), index=table.index)
        return rates.groupby(by_core, sort=False).transform("max").round(3)

    table["best_rate"] = best_of(COMIR_INPUT)
    table["best_original_rate"] = best_of(ORIGINAL_INPUT)
    reached = pd.Series(successes >= UNREGISTERED_RATE * cases, index=table.index)
    table["unregistered"] = ~reached.groupby(by_core, sort=False).transform("any").astype(bool)

    any_best = pd.Series(rate, index=table.index).groupby(by_core, sort=False).transform("max")
    table["_key"] = table["best_rate"].fillna(-1.0)
    table["_any"] = any_best
    table["_within"] = np.arange(len(table))
    table = table.sort_values(["_key", "_any", *CORE_KEYS, "_within"], kind="mergesort")
    return table[columns].reset_index(drop=True)


def _largest_fraction(cores: pd.DataFrame) -> float:
    found = [c for c in cores.columns if str(c).startswith("rate_") and str(c).endswith("pct")]
    if not found:
        raise ValueError("the core table has no rate_<f>pct columns")
    fractions = [float(str(c)[5:-3].replace("p", ".")) / 100.0 for c in found]
    return max(fractions)


def _summary(cores: pd.DataFrame) -> pd.DataFrame:
    """One row per core, in the table's order: its best CoMIR run and best run on the originals."""
    fraction = _largest_fraction(cores)
    count = success_columns(fraction)[0]
    rows = []
    for (dataset, image_id), core in cores.groupby(list(CORE_KEYS), sort=False):
        row = {"dataset": dataset, "image_id": image_id, "cases": int(core["cases"].max())}
        for kind, name in ((COMIR_INPUT, "comir"), (ORIGINAL_INPUT, "original")):
            runs = core[core["input"].astype(str) == kind]
            if runs.empty:
                row[f"best_{name}_run"], row[f"best_{name}_successes"], row[f"best_{name}_cases"] = "", 0, 0
                continue
            best = runs.loc[(runs[count] / runs["cases"]).idxmax()]
            row[f"best_{name}_run"] = make_label(best["method"], best["input"], best["direction"])
            row[f"best_{name}_successes"], row[f"best_{name}_cases"] = int(best[count]), int(best["cases"])
        row.update(best_rate=core["best_rate"].iloc[0], best_original_rate=core["best_original_rate"].iloc[0],
                   unregistered=bool(core["unregistered"].iloc[0]))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def core_examples(pooled: pd.DataFrame) -> pd.DataFrame:
    """The case shown for each core: its first case by name.

    Parameters
    ----------
    pooled : pandas.DataFrame
        :func:`comir.evaluate.tables.pool_results` (cases ``<dataset>/<case>``), with ``fold``,
        ``image_id`` and ``case``.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, image_id, case`` (``case`` without the dataset, as the
        test set's files are named), one row per core.
    """
    frame = pd.DataFrame({
        "dataset": pooled["fold"].astype(str),
        "image_id": pooled["image_id"].fillna("").astype(str),
        "case": [str(c).split("/", 1)[1] if str(c).startswith(f"{d}/") else str(c)
                 for c, d in zip(pooled["case"], pooled["fold"].astype(str))],
    })  # fmt: skip
    return frame.sort_values([*CORE_KEYS, "case"]).drop_duplicates(list(CORE_KEYS)).reset_index(drop=True)


def _grey(image: np.ndarray) -> np.ndarray:
    return image.mean(axis=2) if image.ndim == 3 else image


def patch_statistics(
    a: np.ndarray,
    b: np.ndarray,
    comir_a: np.ndarray,
    comir_b: np.ndarray,
    max_values: Mapping[str, float | None] | None = None,
) -> dict[str, float]:
    """Image statistics of one case's reference patches that explain a failed registration.

    Parameters
    ----------
    a, b : numpy.ndarray
        The stored A and B patches ((H, W) or (H, W, C)), scaled to full
        intensity 1 with the modality's ``max_value`` (``max_values[slot]``; else the integer
        type's maximum, floats as they are: :func:`comir.io.to_float01`).
    comir_a, comir_b : numpy.ndarray
        Their CoMIRs (channel-last as stored).
    max_values : Mapping[str, float or None] or None, optional
        Full scale per slot (``A``, ``B``). Default None: the types' defaults.

    Returns
    -------
    dict[str, float]
        * ``b_signal_coverage``: the fraction of B's pixels (mean over channels) above
          10 % of B's own maximum (0 for a blank patch): sparse signal, little to match;
        * ``b_p99``: B's 99th percentile in full-scale units: a dim acquisition;
        * ``a_mean_od``: A's mean optical density ``-log10(max(I, 1e-3))`` over pixels and
          channels: pale (little stain, near 0) or dark tissue;
        * ``comir_correlation``: the Pearson correlation of the A and B CoMIRs of the patch
          (all channels; NaN for constant CoMIRs or different shapes): near 0 when the
          networks do not map the two modalities to a common representation.
    """
    max_values = max_values or {}
    a = to_float01(np.asarray(a), max_values.get("A")).astype(np.float64)
    b = _grey(to_float01(np.asarray(b), max_values.get("B")).astype(np.float64))
    peak = float(b.max())
    coverage = float(np.mean(b > SIGNAL_SHARE * peak)) if peak > 0 else 0.0
    density = -np.log10(np.clip(a, MIN_INTENSITY, None))
    x, y = np.asarray(comir_a, dtype=np.float64), np.asarray(comir_b, dtype=np.float64)
    correlation = math.nan
    if x.shape == y.shape and x.std() > 0 and y.std() > 0:
        correlation = float(np.corrcoef(x.ravel(), y.ravel())[0, 1])
    return {
        "b_signal_coverage": coverage,
        "b_p99": float(np.percentile(b, 99)),
        "a_mean_od": float(density.mean()),
        "comir_correlation": correlation,
    }


def _downsample(image: np.ndarray, size: int) -> np.ndarray:
    step = max(1, math.ceil(max(image.shape[:2]) / size))
    return image[::step, ::step]


def comir_picture(comir: np.ndarray) -> np.ndarray:
    """A stored (channel-last) CoMIR as :func:`comir.io.comir_preview` draws it.

    Parameters
    ----------
    comir : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` CoMIR.

    Returns
    -------
    numpy.ndarray
        uint8, ``(H, W)`` for one channel, else ``(H, W, 3)`` (the first three channels).
    """
    comir = np.asarray(comir, dtype=np.float32)
    return comir_preview(comir[None] if comir.ndim == 2 else np.moveaxis(comir, -1, 0))


def _percent(successes: int, cases: int) -> str:
    return f"{successes}/{cases} ({100.0 * successes / cases:.0f} %)" if cases else "none"


def plot_cores(
    cores: pd.DataFrame,
    examples: pd.DataFrame,
    image_dirs: Mapping[str, str | os.PathLike[str]],
    comir_dirs: Mapping[str, str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    names: Mapping[str, str] | None = None,
    max_values: Mapping[str, float | None] | None = None,
    max_rows: int = 24,
    display_px: int = 128,
) -> pd.DataFrame:
    """One row per core, worst first: its patches, their CoMIRs and why it may fail.

    Parameters
    ----------
    cores : pandas.DataFrame
        :func:`core_table` (its order is kept: worst first).
    examples : pandas.DataFrame
        :func:`core_examples`: the case shown per core.
    image_dirs, comir_dirs : mapping
        Per dataset, the test set's patch folder (``<case>_<slot>_ref.tif``) and the
        folder of the pool variant's CoMIRs of them (same names).
    path : path-like
        The PNG to write.
    names : mapping, optional
        Modality names per slot (``{"A": "BF", "B": "SHG"}``); default the slots.
    max_values : mapping, optional
        Full scale per slot for :func:`patch_statistics`.
    max_rows : int
        At most this many cores (the worst) are drawn; the title says how many there are.
    display_px : int
        Patches are downsampled (by an integer step) to at most this many pixels a side.

    Returns
    -------
    pandas.DataFrame
        The cores drawn, top to bottom: ``dataset, image_id, case, cases``, the best CoMIR
        run and the best run on the originals (``best_comir_run``, ``best_comir_successes``,
        ``best_comir_cases``, likewise ``best_original_*``), ``best_rate``,
        ``best_original_rate``, ``unregistered`` and :func:`patch_statistics`' columns.

    Raises
    ------
    ValueError
        When ``cores`` is empty, has no ``rate_<f>pct`` columns, or a core drawn has no example case.
    """
    names = {"A": "A", "B": "B", **(names or {})}
    if cores.empty:
        raise ValueError("plot_cores: no cores to plot")
    summary = _summary(cores)
    total = len(summary)
    summary = summary.head(max_rows)
    shown = summary.merge(examples[[*CORE_KEYS, "case"]], on=list(CORE_KEYS), how="left", validate="one_to_one")
    if shown["case"].isna().any():
        lacking = shown.loc[shown["case"].isna(), list(CORE_KEYS)].to_string(index=False)
        raise ValueError(f"plot_cores: no example case for core(s):\n{lacking}")
    fraction = _largest_fraction(cores)

    rows = len(shown)
    figure = new_figure(CORES_FIGURE_WIDTH_IN, CORES_ROW_HEIGHT_IN * rows + CORES_HEADER_IN)
    figure.set_dpi(CORES_DPI)  # a patch column about display_px wide: a small file for many cores
    axes = figure.subplots(rows, len(_WIDTH_RATIOS), squeeze=False, gridspec_kw={"width_ratios": _WIDTH_RATIOS})
    titles = [f"{names['A']} (reference)", f"{names['B']} (reference)",
              f"CoMIR of {names['A']}", f"CoMIR of {names['B']}"]  # fmt: skip
    statistics = []
    for r, core in enumerate(shown.itertuples(index=False)):
        images, comirs = Path(image_dirs[core.dataset]), Path(comir_dirs[core.dataset])
        a, b = (read_image(images / f"{core.case}_{slot}_ref.tif") for slot in ("A", "B"))
        comir_a, comir_b = (read_image(comirs / f"{core.case}_{slot}_ref.tif") for slot in ("A", "B"))
        stats = patch_statistics(a, b, comir_a, comir_b, max_values)
        statistics.append(stats)
        pictures = [display_picture(a), display_picture(b), comir_picture(comir_a), comir_picture(comir_b)]
        for c, picture in enumerate(pictures):
            ax = axes[r, c]
            picture = _downsample(picture, display_px)
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        colour = "tab:red" if core.unregistered else "0.1"
        if core.unregistered:
            for ax in axes[r, :4]:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:red")
                    spine.set_linewidth(2)
        lines = [
            f"{core.image_id or '(no image id)'}  ({core.dataset}, {core.case})",
            "UNREGISTERED: no run reaches 50 %" if core.unregistered else "",
            f"best CoMIR run: {_percent(core.best_comir_successes, core.best_comir_cases)}",
            f"  {core.best_comir_run}" if core.best_comir_run else "",
            f"best on originals: {_percent(core.best_original_successes, core.best_original_cases)}",
            f"  {core.best_original_run}" if core.best_original_run else "",
            f"{names['B']} signal coverage: {100 * stats['b_signal_coverage']:.1f} %",
            f"{names['B']} 99th percentile: {stats['b_p99']:.3f}",
            f"{names['A']} mean optical density: {stats['a_mean_od']:.2f}",
            f"corr(CoMIR {names['A']}, CoMIR {names['B']}): {stats['comir_correlation']:.2f}",
        ]
        text = axes[r, 4]
        text.axis("off")
        text.text(0.0, 1.0, "\n".join(line for line in lines if line), transform=text.transAxes,
                  va="top", ha="left", fontsize=7, color=colour, family="monospace")  # fmt: skip
    drawn = f"the {rows} worst of {total} cores" if rows < total else f"{total} cores"
    figure.suptitle(
        f"{drawn}, worst first (best CoMIR run's success within {100 * fraction:g} % of the width); "
        f"red: unregistered (no run reaches 50 %)",
        fontsize=8,
    )
    save_figure(figure, path)
    return pd.concat([shown, pd.DataFrame(statistics)], axis=1)

"""Time per stage (paper, Table 3) from Snakemake ``benchmark:`` files.

Snakemake writes one TSV per job with its wall time (``s``), CPU time
(``cpu_time``) and peak resident memory (``max_rss``, MiB).  The table has one
row per stage: training, CoMIR inference of the test set, and every
registration run (method x source x direction), with the time for the whole
test set and per pair (case).  Wall times include process start and I/O, so
they are what a user waits for; the per-case ``seconds`` column of the
registration tables is the method alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from comir.io import InputError

TIMING_COLUMNS = ("stage", "method", "source", "direction", "total_s", "per_pair_s", "cpu_s", "max_rss_mb")


def read_benchmark(path: str | os.PathLike[str]) -> pd.Series:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one job, summed over repeats (rows).

    Parameters
    ----------
    path : str or os.PathLike
        A Snakemake ``benchmark:`` TSV with the columns ``s``, ``cpu_time`` and ``max_rss``.

    Returns
    -------
    pandas.Series
        ``total_s`` and ``cpu_s`` (sums over the rows) and ``max_rss_mb`` (the largest row);
        values that are not numbers are skipped.

    Raises
    ------
    InputError
        If the file cannot be read, lacks one of the columns or has no rows.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"cannot read benchmark file {path}: {error}") from error
    missing = [c for c in ("s", "max_rss", "cpu_time") if c not in frame.columns]
    if missing or frame.empty:
        raise InputError(f"benchmark file {path} lacks {', '.join(missing) or 'rows'}")
    numeric = frame[["s", "max_rss", "cpu_time"]].apply(pd.to_numeric, errors="coerce")
    return pd.Series(
        {
            "total_s": float(numeric["s"].sum()),
            "cpu_s": float(numeric["cpu_time"].sum()),
            "max_rss_mb": float(numeric["max_rss"].max()),
        }
    )


def timing_table(
    train: Mapping[str, str | os.PathLike[str]],
    inference: Mapping[str, str | os.PathLike[str]],
    registrations: Sequence[str | os.PathLike[str]],
    jobs: Sequence[Sequence[str]],
    n_pairs: int,
) -> pd.DataFrame:
    """Rows for training, inference and each registration job (``jobs``: (source, run, direction)).

    A network from a model file trained elsewhere has no training row.

    Parameters
    ----------
    train : Mapping[str, str or os.PathLike]
        Per network, the benchmark file of its training, keyed by the row's ``source`` (an
        ensemble's member variant; ``""`` for a variant's own networks).
    inference : Mapping[str, str or os.PathLike]
        Per network, the benchmark file of its CoMIRs of the test set, keyed likewise.
    registrations : Sequence[str or os.PathLike]
        The benchmark file of each registration job.
    jobs : Sequence[Sequence[str]]
        Per registration file, its ``(source, run, direction)``; the run is the row's ``method``.
    n_pairs : int
        Number of cases of the test set, the divisor of ``per_pair_s``.

    Returns
    -------
    pandas.DataFrame
        The columns :data:`TIMING_COLUMNS`, one row per file; training rows have no ``per_pair_s``
        (NaN).

    Raises
    ------
    ValueError
        If ``registrations`` and ``jobs`` differ in length, or ``n_pairs < 1``.
    InputError
        If a benchmark file cannot be read (:func:`read_benchmark`).
    """
    if len(registrations) != len(jobs):
        raise ValueError(f"{len(registrations)} registration benchmarks for {len(jobs)} jobs")
    if n_pairs < 1:
        raise ValueError("the test set has no cases")
    stages = [("training", train, False), ("inference", inference, True)]
    rows = [
        {"stage": stage, "method": "", "source": source, "direction": "", "per_pair": per_pair,
         **read_benchmark(path)}
        for stage, files, per_pair in stages
        for source, path in files.items()
    ]  # fmt: skip
    for path, (source, run, direction) in zip(registrations, jobs):
        rows.append(
            {
                "stage": "registration",
                "method": run,
                "source": source,
                "direction": direction,
                "per_pair": True,
                **read_benchmark(path),
            }
        )
    table = pd.DataFrame(rows)
    # Training does not scale with the test set, so it has no per-pair time.
    table["per_pair_s"] = np.where(table["per_pair"], table["total_s"] / n_pairs, np.nan)
    return table[list(TIMING_COLUMNS)].round({"total_s": 2, "per_pair_s": 3, "cpu_s": 2, "max_rss_mb": 1})

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
    """Wall seconds, CPU seconds and peak RSS (MiB) of one job, summed over repeats (rows)."""
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

    ``train`` and ``inference``: per network, the benchmark file of its training and of its CoMIRs
    of the test set, keyed by the row's ``source`` (an ensemble's member variant; ``""`` for a
    variant's own networks).  A network from a model file trained elsewhere has no training row.
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

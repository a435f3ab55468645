r"""ACCR's support as a failure detector: which ``min_support`` keeps the right results and drops the wrong.

A result of method ``accr`` (:mod:`comir.register.accr`) says in its message how many tokens agree
with its transform (``support S of N tokens``); below ``min_support`` it is a failure. Over the
per-case results of finished ACCR runs this prints, per dataset (the folder under ``results/``)
and for each threshold, how many right results (within ``--fraction`` of the width) and how many
wrong ones the threshold keeps, and the largest support of a wrong result (a threshold above it
keeps none). Results that failed before a support was found (no ``support`` in the message) are
left out. Results: docs/results/accr.md.

    .venv/bin/python benchmarks/accr_support.py \\
        results/bfshg-{dev,shift}/default/registration/deformed/accr-{ecc,starts}_*.csv \\
        [--fraction 0.05] [--thresholds 8 12 16 20]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

#: The support in an ACCR result's message (comir.register.accr).
SUPPORT_PATTERN = r"support ([0-9.]+) of"


def supports(paths: Sequence[Path], fraction: float) -> pd.DataFrame:
    """One row per result with a support: ``dataset``, ``support`` and ``right`` (error within ``fraction``).

    Parameters
    ----------
    paths : sequence of pathlib.Path
        Per-case CSVs of ACCR runs, ``results/<dataset>/<variant>/registration/<testset>/<run>_<direction>.csv``.
    fraction : float
        The success threshold as a fraction of the width.

    Returns
    -------
    pandas.DataFrame
        The results whose message has a support.
    """
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        parts = Path(path).resolve().parts
        dataset = parts[parts.index("results") + 1] if "results" in parts else Path(path).parent.name
        support = frame["message"].astype(str).str.extract(SUPPORT_PATTERN)[0].astype(float)
        right = (frame["status"] == "ok") & (frame["error_px"] <= fraction * frame["width"])
        frames.append(pd.DataFrame({"dataset": dataset, "support": support, "right": right}))
    table = pd.concat(frames, ignore_index=True)
    return table[table["support"].notna()].reset_index(drop=True)


def threshold_table(table: pd.DataFrame, thresholds: Sequence[float]) -> pd.DataFrame:
    """Per dataset and threshold: the right and wrong results kept (support at least the threshold).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`supports`' rows.
    thresholds : sequence of float
        The ``min_support`` values tried.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset``, ``min_support``, ``right_kept``, ``right``, ``wrong_kept``, ``wrong``.
    """
    rows = []
    for dataset, part in table.groupby("dataset", sort=True):
        right = part["right"].to_numpy(bool)
        for threshold in thresholds:
            kept = part["support"].to_numpy(float) >= threshold
            rows.append({
                "dataset": dataset, "min_support": threshold,
                "right_kept": int(np.sum(kept & right)), "right": int(right.sum()),
                "wrong_kept": int(np.sum(kept & ~right)), "wrong": int((~right).sum()),
            })  # fmt: skip
    return pd.DataFrame(rows)


def largest_wrong_support(table: pd.DataFrame) -> dict[str, float]:
    """Per dataset, the largest support of a wrong result: a ``min_support`` above it drops them all.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`supports`' rows.

    Returns
    -------
    dict of str to float
        NaN for a dataset without a wrong result.
    """
    return {
        str(dataset): float(part.loc[~part["right"], "support"].max()) for dataset, part in table.groupby("dataset")
    }


def main() -> None:
    """Print the table and each dataset's largest support of a wrong result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("registrations", nargs="+", type=Path, help="per-case CSVs of ACCR runs")
    parser.add_argument("--fraction", type=float, default=0.05, help="success within this fraction of the width")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[8, 12, 14, 16, 18, 20])
    args = parser.parse_args()
    table = supports(args.registrations, args.fraction)
    print(threshold_table(table, args.thresholds).to_string(index=False))
    for dataset, support in largest_wrong_support(table).items():
        print(f"{dataset}: the largest support of a wrong result is {support:.1f}")


if __name__ == "__main__":
    main()

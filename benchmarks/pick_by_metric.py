"""Two variants' networks as an ensemble: per case, the registration whose own metric is higher.

A measurement on finished runs, before an ensemble is built into the workflow: for each dataset
and direction it reads one run's per-case results under two variants (e.g. the cascade on the
``default`` and on the ``augmented`` CoMIRs of the same test set), keeps per case the result with
the higher ``metric`` (the cascade's: the CoMIRs' correlation at its transform; each on its own
networks' CoMIRs, so the scales are not guaranteed comparable - which is what this measures) and
prints the successes within ``--fraction`` of the width: each variant alone, the pick, and either
(an oracle that knows the truth). No registration is run.

    .venv/bin/python benchmarks/pick_by_metric.py --results results --datasets slides-1B slides-X \
        --variants default augmented [--run cascade] [--testset main] [--fraction 0.05]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

DIRECTIONS = ("A_to_B", "B_to_A")


def right(table: pd.DataFrame, fraction: float) -> pd.Series:
    """Per case: ok and within ``fraction`` of the width."""
    return (table["status"] == "ok") & (table["error_px"] < fraction * table["width"])


def compare(first: pd.DataFrame, second: pd.DataFrame, fraction: float) -> dict[str, int]:
    """Successes of each table, of the per-case pick by the higher metric, and of either."""
    a, b = (t.set_index("case").sort_index() for t in (first, second))
    if list(a.index) != list(b.index):
        raise ValueError("the two variants' results hold different cases")
    right_a, right_b = right(a, fraction), right(b, fraction)
    picked = right_b.where(b["metric"].fillna(-1.0) > a["metric"].fillna(-1.0), right_a)
    return {"cases": len(a), "first": int(right_a.sum()), "second": int(right_b.sum()),
            "pick": int(picked.sum()), "either": int((right_a | right_b).sum())}  # fmt: skip


def main() -> None:
    """Print the comparison for every dataset and direction, then the totals per direction."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--variants", nargs=2, required=True, metavar=("FIRST", "SECOND"))
    parser.add_argument("--run", default="cascade")
    parser.add_argument("--testset", default="main")
    parser.add_argument("--fraction", type=float, default=0.05)
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        for direction in DIRECTIONS:
            folders = [args.results / dataset / variant / "registration" / args.testset for variant in args.variants]
            tables = [pd.read_csv(folder / f"{args.run}_{direction}.csv") for folder in folders]
            rows.append({"dataset": dataset, "direction": direction, **compare(*tables, args.fraction)})
    table = pd.DataFrame(rows)
    total = table.groupby("direction")[["cases", "first", "second", "pick", "either"]].sum().reset_index()
    table = pd.concat([table, total.assign(dataset="all")], ignore_index=True)
    print(f"{args.run}: {args.variants[0]} (first), {args.variants[1]} (second), within {args.fraction:g} of the width")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()

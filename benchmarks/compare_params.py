"""One registration method with two parameter sets on a finished run's stored test cases.

For an ablation of a method's own settings without rerunning the workflow: every case of a test
set (both directions) is registered from the stored patches (a variant's CoMIRs, or the
originals) once with parameters ``--a`` and once with ``--b``; the script prints, for each, the
successes within 1 % and 5 % of the width and the median seconds, then how far the two
parameter sets' errors differ where both succeed (and where both report ``ok``), and the ratio
of their median times.

    .venv/bin/python benchmarks/compare_params.py --results results/bfshg-dev --method fft_search
        --a '{angle_screen: 0}' --b '{}' [--source default] [--testset main] [--cases 12]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from comir.register import make_method, set_native_threads
from comir.register.cases import DIRECTIONS, register_cases


def run(cases: pd.DataFrame, images: Path, image_input: str, modalities: dict, method) -> tuple[list, list]:
    """Errors (px; inf for a failure) and seconds of every case and direction, as the register rule gets them."""
    frame = pd.concat(
        [register_cases(cases, images, method, "compare", image_input, d, modalities) for d in DIRECTIONS]
    )
    errors = np.where(frame["status"] == "ok", frame["error_px"], np.inf)
    return list(errors), list(frame["seconds"])


def main() -> None:
    """Print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True, help="results/<dataset> of a finished run")
    parser.add_argument("--method", required=True)
    parser.add_argument("--a", default="{}", help="parameters A (YAML mapping)")
    parser.add_argument("--b", default="{}", help="parameters B (YAML mapping)")
    parser.add_argument("--source", default="default", help="a variant (its CoMIRs) or 'original'")
    parser.add_argument("--testset", default="main")
    parser.add_argument("--cases", type=int, default=0, help="only the first N cases (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--itk-threads",
        type=int,
        default=1,
        help="SimpleITK's global default thread count (1, as the workflow sets it; with more, MI's results vary "
        "between identical runs: --a '{}' --b '{}' shows by how much)",
    )
    args = parser.parse_args()
    cases = pd.read_csv(args.results / "testsets" / args.testset / "cases.csv")
    if args.cases:
        cases = cases.head(args.cases)
    if args.source == "original":
        import torch

        images = args.results / "testsets" / args.testset / "images"
        # The originals' pre-processing (channels, log1p, max_value) as the first variant's model recorded it.
        model = next((args.results).glob("*/model/comir.pt"))
        modalities = torch.load(model, weights_only=True, map_location="cpu")["modalities"]
        image_input = "original"
    else:
        images = args.results / args.source / "comir" / args.testset / "images"
        modalities = {"A": {"name": "A"}, "B": {"name": "B"}}
        image_input = "comir"
    set_native_threads(args.threads)  # as the register rule sets them
    if args.itk_threads != 1:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.itk_threads)
    rows = {}
    for label, text in (("A", args.a), ("B", args.b)):
        params = yaml.safe_load(text) or {}
        method = make_method(args.method, params, seed=0, threads=args.threads)
        errors, seconds = run(cases, images, image_input, modalities, method)
        rows[label] = (np.array(errors), seconds)
        width = int(cases["width"].iloc[0])
        ok1, ok5 = (int(np.sum(np.array(errors) < f * width)) for f in (0.01, 0.05))
        print(f"{label} {params}: {ok1}/{len(errors)} within 1 %, {ok5}/{len(errors)} within 5 %, "
              f"median {statistics.median(seconds):.2f} s per registration", flush=True)  # fmt: skip
    (ea, sa), (eb, sb) = rows["A"], rows["B"]
    both = np.isfinite(ea) & np.isfinite(eb) & (ea < 0.05 * width) & (eb < 0.05 * width)
    changed = int(np.sum((ea < 0.05 * width) != (eb < 0.05 * width)))
    reported = np.isfinite(ea) & np.isfinite(eb)
    largest, anywhere = (float(np.max(np.abs(ea - eb)[cases])) if cases.any() else float("nan")
                         for cases in (both, reported))  # fmt: skip
    print(f"largest error difference where both succeed within 5 %: {largest:.3f} px "
          f"(where both report ok: {anywhere:.3f} px; {int(np.sum(reported))} cases); successes that differ: "
          f"{changed}; median time B / A: {statistics.median(sb) / statistics.median(sa):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

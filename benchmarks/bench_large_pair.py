r"""A large unaligned pair through ``python -m comir register``: coarse-to-fine and masks against full resolution.

The pair is made from one real aligned BF/SHG core (any folder in the ``pairs``
layout, e.g. ``../shared/data/bfshg-dev``): both images enlarged ``--zoom`` times
(bicubic; a stand-in for a scan of several thousand pixels), the SHG image then
rotated by ``--angle`` degrees about its centre and shifted by ``--shift`` px
with zero-filled corners (the border an earlier resampling leaves), so the true
floating -> reference transform is known.  Each setting runs the command in a
fresh process (its peak memory is its own) with the given model:

* ``coarse-to-fine``: the defaults: masks ``auto``, ``--max-px 2048``;
* ``full resolution``: ``--max-px 0`` (the method on the whole CoMIRs);
* ``no masks``: ``--masks none`` (the zero-filled corners count as image).

Printed per setting: status, corner error (px, over the floating image's
corners), wall seconds of the whole command (CoMIRs included), the
registration's own seconds, the peak memory the command reports, and the
seconds and memory as ratios to ``full resolution`` (the baseline, same run).

    .venv/bin/python benchmarks/bench_large_pair.py --model results/bfshg-dev/default/model/comir.pt \
        --pairs ../shared/data/bfshg-dev --id 1B_J3 [--zoom 6] [--angle 14] [--shift 60 -40]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile

from comir import geometry as g

SETTINGS = {
    "coarse-to-fine": [],
    "full resolution": ["--max-px", "0"],
    "no masks": ["--masks", "none"],
}


def make_pair(pairs: Path, pair_id: str, zoom: float, angle: float, shift: tuple[float, float], out: Path):
    """Write the enlarged reference (BF) and moved floating (SHG) images; return their paths and the truth."""
    bf = tifffile.imread(pairs / "BF" / f"{pair_id}.tif")
    shg = tifffile.imread(pairs / "SHG" / f"{pair_id}.tif")
    size = (round(bf.shape[1] * zoom), round(bf.shape[0] * zoom))
    bf, shg = (cv2.resize(image, size, interpolation=cv2.INTER_CUBIC) for image in (bf, shg))
    centre = ((size[0] - 1) / 2.0, (size[1] - 1) / 2.0)
    move = g.rigid_matrix(math.radians(angle), shift[0], shift[1], centre)  # reference px -> floating px
    moved = cv2.warpAffine(shg, move, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    reference, floating = out / "bf.tif", out / "shg.tif"
    tifffile.imwrite(reference, bf)
    tifffile.imwrite(floating, moved)
    return reference, floating, g.invert(move), size


def main() -> None:
    """Make the pair, run every setting, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--id", default="1B_J3")
    parser.add_argument("--zoom", type=float, default=6.0)
    parser.add_argument("--angle", type=float, default=14.0)
    parser.add_argument("--shift", type=float, nargs=2, default=(60.0, -40.0))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        reference, floating, truth, size = make_pair(args.pairs, args.id, args.zoom, args.angle, args.shift, work)
        print(f"pair: {args.id} x{args.zoom:g} = {size[0]}x{size[1]} px, SHG rotated {args.angle:g} deg, "
              f"shifted {tuple(args.shift)} px, zero-filled corners")  # fmt: skip
        rows = []
        for name, extra in SETTINGS.items():
            out = work / name.replace(" ", "-")
            command = [sys.executable, "-m", "comir", "register", "--model", args.model, "--reference",
                       str(reference), "--reference-modality", "BF", "--floating", str(floating), "--out", str(out),
                       "--threads", str(args.threads), *extra]  # fmt: skip
            start = time.perf_counter()
            run = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if run.returncode == 2:
                raise SystemExit(run.stderr)
            row = pd.read_csv(out / "transform.csv").iloc[0]
            estimate = np.array([row[k] for k in ("a11", "a12", "tx", "a21", "a22", "ty")]).reshape(2, 3)
            error = float(g.corner_error(estimate, truth, size[0], size[1])) if row["status"] == "ok" else math.nan
            rows.append({"setting": name, "status": row["status"], "error_px": error, "wall_s": wall,
                         "register_s": row["seconds"], "peak_mib": row["peak_memory_mb"]})  # fmt: skip
    table = pd.DataFrame(rows).set_index("setting")
    base = table.loc["full resolution"]
    table["wall_ratio"] = table["wall_s"] / base["wall_s"]
    table["register_ratio"] = table["register_s"] / base["register_s"]
    table["memory_ratio"] = table["peak_mib"] / base["peak_mib"]
    print(table.to_markdown(floatfmt=".3g"))


if __name__ == "__main__":
    main()

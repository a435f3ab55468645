"""Why the starts of multi-start MI cannot share their set-up and keep their results.

A resolution pyramid shared by the starts would have to be registered one level per ITK call.
Each ITK call draws its own random sample of the reference pixels, and handing a level's result
to the next call (here through the project's floating -> reference matrix) rounds it in its last
digits, which MI's optimiser on a multimodal pair can amplify. This script registers each start
of each synthetic pair (the bench's H&E-like reference, one channel by PCA, against the SHG-like
floating patch) once in one ITK call over the pyramid (4, 2, 1) and once level by level (each
level's result the next one's start, through ``refine``), with the default quarter sampling and
with every pixel (nothing drawn), and prints how far the two results lie apart (corner error).

    .venv/bin/python benchmarks/mi_level_split.py [--pairs 6] [--size 256]
"""

from __future__ import annotations

import argparse

import numpy as np
import SimpleITK as sitk

from bench_registration import make_pairs  # benchmarks/ is on sys.path when a script here runs
from comir import geometry
from comir.register import make_method, set_native_threads, to_single_channel

STARTS = (-20.0, -10.0, 0.0, 10.0, 20.0)
LEVELS = ((4, 2.0), (2, 1.0), (1, 0.0))  # MI's default pyramid: (shrink, sigma)


def level_by_level(reference: np.ndarray, floating: np.ndarray, start: float, sampling: float) -> np.ndarray:
    """The start registered one pyramid level per ITK call (floating -> reference)."""
    matrix = None
    for shrink, sigma in LEVELS:
        params = {"shrink_factors": [shrink], "smoothing_sigmas": [sigma], "sampling_fraction": sampling}
        method = make_method("mi", {**params, "start_angles_deg": [start]}, seed=0)
        result = method.register(reference, floating) if matrix is None else method.refine(reference, floating, matrix)
        matrix = result.matrix
    return matrix


def main() -> None:
    """Print the largest distance between the two ways per sampling."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    set_native_threads(1)
    pairs = make_pairs(args.pairs, args.size, 20.0, 0.05 * args.size, 0)
    for sampling in (0.25, 1.0):
        distances = []
        for pair in pairs:
            reference, floating = to_single_channel(pair["b_ref"])[0], pair["a_flo"]
            for start in STARTS:
                one_call = make_method("mi", {"start_angles_deg": [start], "sampling_fraction": sampling}, seed=0)
                whole = one_call.register(reference, floating).matrix
                split = level_by_level(reference, floating, start, sampling)
                distances.append(float(geometry.corner_error(whole, split, args.size, args.size)))
        print(
            f"sampling_fraction {sampling}: one ITK call vs one call per level, {len(distances)} registrations: "
            f"largest corner distance {max(distances):.3f} px, median {np.median(distances):.3f} px, "
            f"{sum(d > 1.0 for d in distances)} more than 1 px apart"
        )
    print(f"SimpleITK {sitk.Version.VersionString()}")


if __name__ == "__main__":
    main()

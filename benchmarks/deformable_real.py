"""Deformable registration on real test cases with a known smooth deformation: TRE of each method.

A measurement of :mod:`comir.register.deformable` on a finished run's test set before the
deformation test sets are part of the workflow (docs/explanation/deformable.md). For each case
and direction: the test set's floating patch (already rigidly moved, truth in ``cases.csv``) is
deformed by a random smooth invertible field (:func:`comir.deformation.synthetic.random_displacement`,
``--max-displacement`` and ``--smoothness`` px, seeded per case); its CoMIR is computed by the
run's networks of ``--variant``; then

* ``rigid``: the cascade on the CoMIRs (the start of the deformable stages),
* ``bspline``, ``demons``: :func:`~comir.register.deformable.bspline.bspline_register` and
  :func:`~comir.register.deformable.demons.demons_register` on the CoMIRs from the cascade's matrix,
* ``elastix-bspline``: :func:`~comir.register.deformable.elastix_bspline.elastix_bspline_register` (affine +
  B-spline, Mattes MI) on the original images from the identity, as a user would run it, and
  ``elastix-bspline-start``: the same from the cascade's matrix;

or, with ``--stage NAME METHOD INPUT START PARAMS`` (repeatable), ``rigid`` and the runs given: a
deformable method (``bspline``, ``demons``, ``elastix_bspline``) on the CoMIRs or the original
images, from the cascade's matrix or the identity, with keyword parameters (YAML), e.g.
``--stage grid64 bspline comir cascade '{grid_spacing_px: 64}'``.

TRE: at the landmarks of a grid on the reference patch (``--spacing`` px, from half a spacing off
the border), against the true total field, only where the true position lies inside the floating
patch (:func:`comir.testset.deformation.true_field` and :func:`~comir.testset.deformation.landmarks`,
as a deformation test set of the workflow has them; before those existed the grid's margin was a
whole spacing). Printed: per method the median over cases of the per-case median TRE, the median and 90th
percentile over all landmarks, the cases with a median TRE below 1 and 2 px, the largest folded
fraction of the fields and the median seconds per pair; the per-case rows go to ``--out``.

    .venv/bin/python benchmarks/deformable_real.py --results results --dataset slides-1B \
        --config config/bfshg-slides.yaml --cases 12 --out deformable.csv
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from comir.config.validate import load_config
from comir.config.variants import variant_config
from comir.deformation.affine import affine_to_field
from comir.deformation.jacobian import folding_fraction
from comir.deformation.synthetic import random_displacement
from comir.deformation.warp import warp_image
from comir.evaluate.deformation_metrics import tre
from comir.geometry import MATRIX_KEYS
from comir.imaging.preprocess import prepare_modality_image
from comir.inference.tiling import compute_comir
from comir.io import read_image
from comir.network.checkpoint import load_checkpoint
from comir.register import make_method
from comir.register.base import to_single_channel
from comir.register.cases import DIRECTIONS, prepare_patch
from comir.register.deformable.bspline import bspline_register
from comir.register.deformable.demons import demons_register
from comir.register.deformable.elastix_bspline import elastix_bspline_register
from comir.testset.deformation import landmarks, true_field

REGISTER = {"bspline": bspline_register, "demons": demons_register, "elastix_bspline": elastix_bspline_register}
#: The runs without ``--run``: (name, method, input, start, parameters).
DEFAULT_RUNS = (
    ("bspline", "bspline", "comir", "cascade", {}),
    ("demons", "demons", "comir", "cascade", {}),
    ("elastix-bspline", "elastix_bspline", "original", "identity", {}),
    ("elastix-bspline-start", "elastix_bspline", "original", "cascade", {}),
)


def parse_stage(values: list[str]) -> tuple[str, str, str, str, dict]:
    """One ``--stage NAME METHOD INPUT START PARAMS``, checked."""
    name, method, images, start, params = values
    if method not in REGISTER or images not in ("comir", "original") or start not in ("cascade", "identity"):
        expected = f"METHOD {sorted(REGISTER)}, INPUT comir|original, START cascade|identity"
        raise SystemExit(f"--stage {' '.join(values)}: {expected}")
    params = yaml.safe_load(params) or {}
    if not isinstance(params, dict):
        raise SystemExit(f"--stage {name}: PARAMS must be a YAML mapping, got {values[4]!r}")
    return name, method, images, start, params


def comir_of(model, image: np.ndarray, spec: dict, name: str) -> np.ndarray:
    """A patch's CoMIR, channel-last (one channel: (H, W)), as the workflow stores it."""
    comir = compute_comir(model, prepare_modality_image(image, spec, name), tile=512, device="cpu")
    return comir[0] if comir.shape[0] == 1 else np.moveaxis(comir, 0, -1)


def main() -> None:
    """Register every case both ways with each method and print the TRE summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, required=True, help="the run's configuration (modalities, cascade)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--variant", default="default")
    parser.add_argument("--testset", default="main")
    parser.add_argument("--run", default="cascade", help="the configuration's cascade run (the rigid start)")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--max-displacement", type=float, default=6.0)
    parser.add_argument("--smoothness", type=float, default=64.0)
    parser.add_argument("--spacing", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--stage", nargs=5, action="append", metavar=("NAME", "METHOD", "INPUT", "START", "PARAMS"),
        help="a deformable run instead of the default ones (module doc); repeatable",
    )  # fmt: skip
    args = parser.parse_args()
    runs = [parse_stage(values) for values in args.stage] if args.stage else list(DEFAULT_RUNS)
    methods = ("rigid", *(run[0] for run in runs))

    config = load_config(args.config)
    cfg = variant_config(config["datasets"][args.dataset], args.variant)
    modalities = cfg["modalities"]
    run = cfg["registration"][args.run]
    cascade = make_method(run["method"], run.get("params"), seed=args.seed)
    root = args.results / args.dataset
    models, _ = load_checkpoint(root / args.variant / "model" / "comir.pt", "cpu")
    images = root / "testsets" / args.testset / "images"
    comirs = root / args.variant / "comir" / args.testset / "images"
    cases = pd.read_csv(root / "testsets" / args.testset / "cases.csv").head(args.cases)
    rows = []
    for index, case in enumerate(cases.itertuples(index=False)):
        truth = np.array([getattr(case, f"true_{k}") for k in MATRIX_KEYS]).reshape(2, 3)
        for direction, (ref_slot, flo_slot) in DIRECTIONS.items():
            name = f"{case.case}_{flo_slot}_flo"
            floating = read_image(images / f"{name}.tif")
            reference = read_image(images / f"{case.case}_{ref_slot}_ref.tif")
            rng = np.random.default_rng([args.seed, index, 0 if direction == "A_to_B" else 1])
            deformation = random_displacement(floating.shape[:2], args.max_displacement, args.smoothness, rng)
            deformed = warp_image(floating.astype(np.float32), deformation, mode="nearest").astype(floating.dtype)
            ref_comir = read_image(comirs / f"{case.case}_{ref_slot}_ref.tif").astype(np.float32)
            flo_comir = comir_of(models[flo_slot], deformed, modalities[flo_slot], name)
            ref_original = prepare_patch(reference, "ref", "original", modalities[ref_slot])
            flo_original = prepare_patch(deformed, name, "original", modalities[flo_slot])
            truth_field = true_field(truth, deformation, reference.shape[:2])
            points = landmarks(truth_field, floating.shape[:2], args.spacing)
            start = time.perf_counter()
            rigid = cascade.register(ref_comir, flo_comir)
            rigid_seconds = time.perf_counter() - start
            fields = {"rigid": (affine_to_field(rigid.matrix, reference.shape[:2]), rigid_seconds, rigid.status)}
            inputs = {
                "comir": [to_single_channel(image)[0] for image in (ref_comir, flo_comir)],
                "original": (ref_original, flo_original),
            }
            for name, method, images_used, start, params in runs:
                start_matrix = rigid.matrix if start == "cascade" else None
                result = REGISTER[method](*inputs[images_used], start_matrix, **params)
                extra = rigid_seconds if start_matrix is not None else 0.0  # the start's cost counts
                fields[name] = (result.field, result.seconds + extra, result.status)
            for method, (field, seconds, status) in fields.items():
                errors = tre(field, truth_field, points)
                rows.append({
                    "case": case.case, "image_id": case.image_id, "direction": direction, "method": method,
                    "status": status, "landmarks": len(points), "median_tre_px": float(np.median(errors)),
                    "mean_tre_px": float(errors.mean()), "p90_tre_px": float(np.percentile(errors, 90)),
                    "max_tre_px": float(errors.max()), "folded_fraction": folding_fraction(field),
                    "seconds": seconds, "errors": errors,
                })  # fmt: skip
        latest = rows[-2 * len(methods) :]
        print(f"{case.case}: " + ", ".join(f"{r['method']} {r['median_tre_px']:.2f}" for r in latest), flush=True)
    table = pd.DataFrame(rows)
    table.drop(columns=["errors"]).to_csv(args.out, index=False)
    summary = []
    for method in methods:
        part = table[table["method"] == method]
        pooled = np.concatenate(part["errors"].to_list())
        summary.append({
            "method": method, "pairs": len(part), "median of case medians (px)": part["median_tre_px"].median(),
            "pooled median (px)": np.median(pooled), "pooled p90 (px)": np.percentile(pooled, 90),
            "cases < 1 px": int((part["median_tre_px"] < 1).sum()),
            "cases < 2 px": int((part["median_tre_px"] < 2).sum()),
            "max folded fraction": part["folded_fraction"].max(), "median s per pair": part["seconds"].median(),
        })  # fmt: skip
    pd.set_option("display.width", 200)
    print(pd.DataFrame(summary).round(3).to_string(index=False))
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

"""Command line: ``python -m comir register`` (or ``comir register``) registers one unaligned pair.

    python -m comir register --model results/bfshg-dev/default/model/comir.pt
        --reference he.tif --reference-modality BF --floating shg.tif --out registered/core1

``--model`` given more than once registers with an ensemble: every model's CoMIRs, stacked in the order
given, registered by the cascade (the only method that takes them); an ensemble has no calibrated
confidence, and its models must share their modalities (else exit 2, both files named).

``--method accr --model results/<dataset>/<variant>/model/accr.pt`` registers with an ACCR model
(rule train_accr; docs/explanation/accr.md): the file is also a CoMIR model (its encoders), whose
CoMIRs are written as usual; ACCR's own settings (``max_px``, ``refine``) go in ``--params``; with
``field: true`` there its displacement field is written as a deformable stage's (below) is.

``--deformable bspline|demons|elastix_bspline`` (``--deformable-params`` as YAML) refines the result by a
deformable stage (docs/explanation/deformable.md): its field, transform, warped image and overlay are
written beside the rigid outputs, and its Jacobian determinant's range and folded fraction printed and
recorded in ``transform.csv``; a failed stage keeps the rigid result and says so (exit status 1).

See :mod:`comir.apply`, docs/how-to/register.md and docs/reference/cli.md.  Exit status: 0 registered, 1 the
method (or the deformable stage) reported a failure or, with a calibrated model (rule calibrate_model), the
result's confidence is below the threshold (``transform.csv`` says why, with the confidence), 2 bad input
(nothing written): a setting outside its limits, an output folder that is a file or holds outputs, or
images the model cannot register (:func:`comir.apply.checks.check_pair`: channels, too small, extents far
apart, intensities far outside the training range; ``--rescale`` maps them onto it instead), each checked
before any work.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

import yaml

from comir.geometry import TRANSFORMS
from comir.imaging.masks import MASK_MARGIN_PX, MASK_MODES
from comir.io import InputError
from comir.register import DEFORMABLE_METHODS, METHODS, MODEL_METHODS
from comir.register.coarse_to_fine import REGISTER_MAX_PX

# The settings of comir.apply.checks.check_settings (the configuration schema's limits) by the flags that give them.
FLAGS = {
    "inference.tile": "--tile",
    "inference.pad": "--pad",
    "register_max_px": "--max-px",
    "mask_margin_px": "--mask-margin-px",
}


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _register(args: argparse.Namespace) -> int:
    import torch

    from comir.apply.checks import check_settings
    from comir.apply.model import ModelEnsemble
    from comir.apply.outputs import check_new_outputs, peak_memory_mb, write_outputs
    from comir.apply.pair import register_pair
    from comir.register import DeformableStage, set_native_threads

    check_new_outputs(args.out)  # before any work
    params = _mapping(args.params, "--params")
    deformable_params = _mapping(args.deformable_params, "--deformable-params")
    if deformable_params and args.deformable is None:
        raise InputError("--deformable-params needs --deformable (bspline, demons or elastix_bspline)")
    # Its parameter names are checked here, their values when it runs (after the rigid registration).
    deformable = None if args.deformable is None else DeformableStage(args.deformable, deformable_params, args.seed)
    given = {"tile": args.tile, "pad": args.pad, "engine": args.engine, "device": args.device}
    inference = {key: value for key, value in given.items() if value is not None}  # the rest: schema defaults
    if args.c4_average:
        inference["c4_average"] = True
    max_px = None if args.max_px == 0 else args.max_px
    check_settings(inference, max_px, args.mask_margin_px, FLAGS)
    torch.set_num_threads(args.threads)
    set_native_threads(args.threads)  # reproducible MI, as in the workflow
    model = ModelEnsemble.load(args.model)
    pixel_sizes = None
    if args.pixel_sizes:
        ref_slot = model.slot(args.reference_modality)
        pixel_sizes = dict(zip((ref_slot, model.other(ref_slot)), args.pixel_sizes))
    pair = register_pair(
        model, args.reference, args.floating, args.reference_modality, args.method, params, inference,
        args.seed, args.threads, args.transform, pixel_sizes, args.masks,
        (args.reference_mask, args.floating_mask), args.mask_margin_px, max_px, args.rescale, args.min_confidence,
        deformable=deformable,
    )  # fmt: skip
    written = write_outputs(args.out, pair, args.reference, args.floating, args.method)
    result = pair.result
    print(f"{result.status}: {result.message}")
    if not math.isnan(pair.confidence):
        print(f"confidence {pair.confidence:.3f} (calibrated probability of a result within the success threshold)")
    stage_columns = pair.deformable_columns()  # a deformable stage's, or the method's own field's
    if stage_columns:
        print(_deformable_summary(stage_columns))
    print(f"peak memory {peak_memory_mb():.0f} MiB")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0 if result.ok and not pair.deformable_failed else 1


def _mapping(text: str, flag: str) -> dict:
    """A flag's YAML/JSON mapping (empty for an empty text); InputError for anything else."""
    value = yaml.safe_load(text) if text else {}
    if not isinstance(value, dict):
        raise InputError(f"{flag} must be a mapping (YAML or JSON), got {text!r}")
    return value


def _deformable_summary(columns: dict) -> str:
    """The printed line of a deformable stage (its columns of ``transform.csv``)."""
    method, status = columns["deformable_method"], columns["deformable_status"]
    if status == "ok":
        return (
            f"deformable {method}: ok in {columns['deformable_seconds']:.1f} s, Jacobian determinant "
            f"{columns['jacobian_min']:.3g} to {columns['jacobian_max']:.3g}, folded {columns['folded_fraction']:.2%}"
        )
    if status == "failed":
        return f"deformable {method}: failed, the rigid result is kept (its outputs only; the message says why)"
    return f"deformable {method}: not run, the rigid registration failed"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; returns the exit status.

    Parameters
    ----------
    argv : list of str or None, optional
        The arguments after the program name; None: ``sys.argv[1:]``. Default None.

    Returns
    -------
    int
        The exit status: 0 registered, 1 the method failed or the confidence is below the threshold,
        2 bad input (or a bad argument; 0 for ``--help``).
    """
    parser = argparse.ArgumentParser(prog="comir", description="CoMIR: register images with a trained model.")
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser(
        "register",
        help="register one unaligned pair with a trained model (outputs: transform, warped image, overlay, CoMIRs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    register.add_argument(
        "--model",
        required=True,
        action="append",
        help="a comir.pt written by the train rule; given more than once, the models register together "
        "(an ensemble: the cascade on every model's CoMIRs, no calibrated confidence)",
    )
    register.add_argument("--reference", required=True, help="the reference image (TIFF or PNG)")
    register.add_argument("--floating", required=True, help="the floating image, of the other modality")
    register.add_argument(
        "--reference-modality", default="A", help="the reference's modality: slot A/B or its name (default A)"
    )
    register.add_argument("--out", required=True, help="a new folder for the outputs")
    register.add_argument(
        "--method",
        default="cascade",
        choices=sorted([*METHODS, *MODEL_METHODS]),
        help="registration method (default cascade); accr: the --model file is an ACCR model (rule train_accr) "
        "that registers the images themselves",
    )
    register.add_argument(
        "--params",
        default="",
        help="method parameters as YAML/JSON over the apply stage's defaults (the cascade's: "
        "'{original_keypoints: {preset: opencv}}'), e.g. '{original_keypoints: null}'",
    )
    register.add_argument(
        "--transform",
        default="rigid",
        choices=TRANSFORMS,
        help="transform model (default rigid; sift, mi, cascade, fft_search)",
    )
    register.add_argument(
        "--deformable",
        choices=sorted(DEFORMABLE_METHODS),
        help="refine the result by a deformable stage from its matrix: bspline or demons on the CoMIRs, "
        "elastix_bspline on the original images (outputs deformable_*; docs/explanation/deformable.md)",
    )
    register.add_argument(
        "--deformable-params",
        default="",
        help="the deformable method's parameters as YAML/JSON, e.g. '{grid_spacing_px: 64}'",
    )
    register.add_argument(
        "--pixel-sizes",
        nargs=2,
        type=float,
        metavar=("REFERENCE", "FLOATING"),
        help="the two images' pixel sizes (same unit, e.g. microns per pixel): resampled to a common resolution",
    )
    register.add_argument(
        "--masks",
        default="auto",
        choices=MASK_MODES,
        help="valid-pixel masks of images without a mask file: auto (constant borders are not image; default) or none",
    )
    register.add_argument("--reference-mask", help="the reference's mask file (non-zero = valid)")
    register.add_argument("--floating-mask", help="the floating image's mask file (non-zero = valid)")
    register.add_argument(
        "--mask-margin-px", type=float, default=MASK_MARGIN_PX, help="shrink of the masks for the CoMIRs (px)"
    )
    register.add_argument(
        "--max-px",
        type=int,
        default=REGISTER_MAX_PX,
        help="CoMIRs with a longer side are registered at this size and refined by blocks at full resolution "
        f"(default {REGISTER_MAX_PX}, at least 64; 0: always at full resolution)",
    )
    register.add_argument(
        "--rescale",
        action="store_true",
        help="map each image's 0.1..99.9th percentile intensities linearly onto the training images' range "
        "(for images stored on another scale; without it such images are refused)",
    )
    register.add_argument(
        "--min-confidence",
        type=float,
        help="with a calibrated model: the least confidence of an accepted result (default: the calibration's "
        "threshold, chosen for its false-accept rate)",
    )
    # Inference settings default to the configuration schema's (config/README.md, inference.*).
    register.add_argument("--tile", type=int, help="inference tile (px)")
    register.add_argument("--pad", type=int, help="inference reflect padding (px)")
    register.add_argument("--engine", choices=("onnxruntime", "torch"))
    register.add_argument("--device", choices=("auto", "cpu", "cuda"))
    register.add_argument("--c4-average", action="store_true", help="test-time C4 averaging of the CoMIRs")
    register.add_argument("--seed", type=int, default=0)
    register.add_argument("--threads", type=_positive_int, default=2)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a bad argument (2, argparse printed why): a status, not an exit
        return int(stop.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _register(args)
    except (InputError, ValueError, yaml.YAMLError) as error:  # bad input: say what, write nothing
        print(f"comir {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

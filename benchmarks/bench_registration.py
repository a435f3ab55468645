"""Cost of every registration method on the same synthetic pairs, against single-start MI.

Pairs come from the project's generator (:mod:`comir.data.synthetic`): a source pair
(SHG-like A, H&E-like RGB B) is rendered large enough for the transform, and each
case cuts a reference patch and a rigidly moved floating patch of both modalities
(:func:`comir.testset.extract_patches`, no padding), like the pipeline's test set.

Inputs (``--input``):

* ``mono`` (default): every method registers the SHG-like reference patch with
  the SHG-like floating patch, a stand-in for a pair of CoMIRs (nearly the same
  image); ``curvealign``, which only works on an RGB/grey pair, registers the
  H&E-like reference with the SHG-like floating patch of the same case.
* ``multi``: the originals route of the pipeline: the H&E-like reference (one
  channel by PCA, as :func:`comir.register.cases.load_patch` gives it; RGB for
  ``curvealign``) with the SHG-like floating patch.

Every method runs in a fresh process (so that its memory is its own) with the
heavy libraries imported before anything is measured.  In that process the first
pair is registered under ``tracemalloc`` (warm-up and Python memory, not timed),
then the other pairs are registered and timed by the method's own ``seconds``;
the successes count all pairs.

Columns: median seconds per timed pair; its ratio to ``mi`` (single-start gradient
Mattes MI, the baseline, always run); ``py MiB``: tracemalloc peak of the Python
allocations (NumPy arrays included) during one registration; ``RSS +MiB``: how
much the process's peak resident set size (``ru_maxrss``) grew over all
registrations, which also counts C/C++ memory (OpenCV, SimpleITK, FFT plans) that
tracemalloc does not see, and 0 when a method stays within the imports' peak;
successes: reported ``ok`` with a corner error below 1 % (5 %) of the width.

    .venv/bin/python benchmarks/bench_registration.py [--pairs 4] [--size 256] [--threads 2]
        [--methods sift,mi,...] [--input mono|multi] [--rotation 10] [--translation 0.05]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

from baseline import BASELINE_REVISION, baseline_src
from isolation import isolated  # benchmarks/ is on sys.path when a script here runs

# label -> (method, params); "mi" is the baseline.
METHODS: dict[str, tuple[str, dict]] = {
    "sift": ("sift", {}),
    "sift_opencv": ("sift", {"preset": "opencv"}),
    "mi": ("mi", {}),
    "mi_5start": ("mi", {"start_angles_deg": [-20, -10, 0, 10, 20]}),
    # The same on one thread: the starts one after another, the same results (docs/method.md, section 12).
    "mi_5start_1thread": ("mi", {"start_angles_deg": [-20, -10, 0, 10, 20], "threads": 1}),
    # The same 5 starts, only the best after the coarser levels continuing to the finest (docs/method.md, section 12).
    "mi_5start_screened": ("mi", {"start_angles_deg": [-20, -10, 0, 10, 20], "finest_level_starts": 1}),
    # One iteration per pyramid level: what building a SimpleITK registration costs (docs/method.md, section 12).
    "mi_setup": ("mi", {"iterations": 1}),
    "mi_evolutionary": ("mi", {"optimizer": "evolutionary"}),
    "alpha_amd": ("alpha_amd", {}),
    "alpha_amd_3start": ("alpha_amd", {"start_angles_rad": [-0.3, 0.0, 0.3]}),
    "fft_ncc": ("fft_search", {"score": "ncc"}),
    # The optional angle screen (off by default; docs/method.md, section 12).
    "fft_ncc_screen": ("fft_search", {"score": "ncc", "angle_screen": 6}),
    "fft_mi": ("fft_search", {"score": "mi"}),
    "fft_mi_screen": ("fft_search", {"score": "mi", "angle_screen": 6}),
    "cascade": ("cascade", {}),
    "curvealign": ("curvealign", {}),
    "curvealign_kmeans": ("curvealign", {"segmentation": "kmeans_ab"}),
}
BASELINE = "mi"
# (faster path, its reference) whose time ratio is printed after the table when both ran.
SPEED_PAIRS = (
    ("mi_5start", "mi_5start_1thread"),
    ("mi_5start_screened", "mi_5start"),
    ("fft_ncc_screen", "fft_ncc"),
    ("fft_mi_screen", "fft_mi"),
)


def make_pairs(count: int, size: int, rotation_deg: float, translation_px: float, seed: int) -> list[dict]:
    """``count`` cases: float32 patches ``a_ref, a_flo`` (H, W), ``b_ref, b_flo`` (H, W, 3), ``truth``."""
    import numpy as np

    from comir import geometry
    from comir.data.synthetic import SyntheticSpec, render_pair
    from comir.io import to_float01
    from comir.testset import extract_patches

    reach = (size - 1) / 2.0 * math.sqrt(2.0) + translation_px * math.sqrt(2.0)
    source = 2 * math.ceil(reach + 3)  # the rotated, shifted patch stays inside
    origin = ((source - size) // 2,) * 2
    spec = SyntheticSpec(n_images=count, size=source, seed=seed)
    rng = np.random.default_rng([seed, 2])
    centre = (size - 1) / 2.0
    pairs = []
    for index in range(count):
        rendered = render_pair(spec, index)
        angle = math.radians(rng.uniform(-rotation_deg, rotation_deg))
        shift = rng.uniform(-translation_px, translation_px, 2)
        truth = geometry.rigid_matrix(angle, shift[0], shift[1], (centre, centre))
        a_ref, a_flo = (to_float01(p) for p in extract_patches(rendered.a, origin, truth, size, "linear"))
        b_ref, b_flo = (to_float01(p) for p in extract_patches(rendered.b, origin, truth, size, "linear"))
        pairs.append(dict(a_ref=a_ref, a_flo=a_flo, b_ref=b_ref, b_flo=b_flo, truth=truth))
    return pairs


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(label: str, pairs: list[dict], input_kind: str, threads: int) -> dict:
    """Runs in a fresh process: register every pair with method ``label``."""
    import importlib
    import tracemalloc

    import cv2
    import SimpleITK as sitk

    from comir import geometry
    from comir.register import make_method, to_single_channel

    for module in ("scipy.fft", "scipy.ndimage", "skimage.color", "skimage.filters"):
        importlib.import_module(module)  # the methods' lazy imports, before the memory baseline
    # As the register rule sets them (comir.register.set_native_threads, inline: the baseline
    # revision's package, measured in this same function, predates it).
    cv2.setNumThreads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    name, params = METHODS[label]
    method = make_method(name, params, seed=0, threads=threads)
    colour = bool(getattr(method, "colour_input", False))
    inputs = []
    for pair in pairs:
        if colour:
            inputs.append((pair["b_ref"], pair["a_flo"]))
        elif input_kind == "multi":
            inputs.append((to_single_channel(pair["b_ref"])[0], pair["a_flo"]))
        else:
            inputs.append((pair["a_ref"], pair["a_flo"]))
    rss_before = _peak_rss_mib()
    seconds, errors, ok = [], [], []
    for index, ((reference, floating), pair) in enumerate(zip(inputs, pairs)):
        if index == 0:  # warm-up and Python memory: not timed
            tracemalloc.start()
            result = method.register(reference, floating)
            python_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        else:
            result = method.register(reference, floating)
            seconds.append(result.seconds)
        height, width = floating.shape[:2]
        ok.append(result.ok)
        errors.append(float(geometry.corner_error(result.matrix, pair["truth"], width, height)))
    return dict(
        seconds=seconds,
        errors=errors,
        ok=ok,
        python_mib=python_peak,
        rss_mib=max(0.0, _peak_rss_mib() - rss_before),
        input="rgb/grey" if colour else input_kind,
        width=int(inputs[0][1].shape[1]),
    )


def main() -> None:
    """Print the table of every method."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4, help="number of cases, the first untimed (default 4)")
    parser.add_argument("--size", type=int, default=256, help="patch size in px (default 256; the paper: 834)")
    parser.add_argument("--threads", type=int, default=2, help="threads per method (OpenCV, SimpleITK, FFT, BLAS)")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated labels (default all): {', '.join(METHODS)}; '{BASELINE}' is always run",
    )
    parser.add_argument("--input", choices=("mono", "multi"), default="mono", help="see the module doc")
    parser.add_argument("--rotation", type=float, default=10.0, help="max rotation, degrees (default 10)")
    parser.add_argument(
        "--translation", type=float, default=0.05, help="max translation per axis, fraction of the size (default 0.05)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    labels = [label.strip() for label in args.methods.split(",") if label.strip()]
    unknown = [label for label in labels if label not in METHODS]
    if unknown:
        parser.error(f"unknown method label(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if args.pairs < 2 or args.size < 64 or args.threads < 1:
        parser.error("--pairs >= 2 (the first is the untimed warm-up), --size >= 64 and --threads >= 1 are required")
    labels = [BASELINE] + [label for label in labels if label != BASELINE]
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)  # inherited by the method processes

    start = time.perf_counter()
    translation_px = args.translation * args.size
    pairs = make_pairs(args.pairs, args.size, args.rotation, translation_px, args.seed)
    print(
        f"Registration of {args.pairs} synthetic pairs of {args.size} px (rotation up to {args.rotation:g} deg, "
        f"translation up to {translation_px:.0f} px), input {args.input}, {args.threads} threads; "
        f"ratio = median s / median s of '{BASELINE}' (single-start gradient MI) in this run"
    )
    before = baseline_src()
    print(
        f"'vs {BASELINE_REVISION}' = median s / median s of the same method as the package was at "
        f"{BASELINE_REVISION} (before the speed work), in this run"
        if before is not None
        else f"(no 'vs {BASELINE_REVISION}' column: that revision is not in this checkout's git history)"
    )
    header = (
        f"{'method':18s} {'input':9s} {'s/pair':>7s} {'ratio':>6s} {'vs ' + BASELINE_REVISION:>11s} {'py MiB':>7s} "
        f"{'RSS +MiB':>9s} {'ok<1%':>6s} {'ok<5%':>6s} {'median err px':>14s}"
    )
    print(header)
    baseline = None
    medians: dict[str, float] = {}
    for label in labels:
        row = isolated(measure, label, pairs, args.input, args.threads)
        if "error" in row:
            print(f"{label:18s} error: {row['error']}")
            continue
        median = medians[label] = statistics.median(row["seconds"])
        baseline = baseline or median
        earlier = isolated(measure, label, pairs, args.input, args.threads, src=before) if before else {"error": ""}
        versus = "" if "error" in earlier else f"{median / statistics.median(earlier['seconds']):.2f}"
        limits = [0.01 * row["width"], 0.05 * row["width"]]
        success = [sum(ok and err < limit for ok, err in zip(row["ok"], row["errors"])) for limit in limits]
        print(
            f"{label:18s} {row['input']:9s} {median:7.2f} {median / baseline:6.2f} {versus:>11s} "
            f"{row['python_mib']:7.1f} {row['rss_mib']:9.1f} "
            f"{success[0]:>3d}/{args.pairs:<2d} {success[1]:>3d}/{args.pairs:<2d} "
            f"{statistics.median(row['errors']):14.2f}",
            flush=True,
        )
    for fast, reference in SPEED_PAIRS:
        if fast in medians and reference in medians:
            print(f"{fast} / {reference}: {medians[fast] / medians[reference]:.2f} of the time")
    load = os.getloadavg()[0]
    print(f"total {time.perf_counter() - start:.0f} s; load average at the end {load:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

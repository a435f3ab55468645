"""Cost of ACCR's registration per pair, from one start and from three, against the code before a change.

The model has config/bfshg-dev-accr.yaml's shapes (config/bfshg-dev.yaml's encoders: 16 initial
filters, down blocks [2, 2, 2], bottleneck 2, an RGB and a one-channel modality; 8 px tokens, floating
tokens every 4 px, 32 channels, 4 heads), with random weights seeded from 0: the time of a
registration does not depend on what the model learnt. Pairs are random smooth 256 px images
(RGB reference, one-channel floating); ``min_support`` 0 keeps every answer. Every measurement runs
in a fresh process (:mod:`isolation`) with ``comir`` imported from the current tree or from
``--baseline``'s ``src/`` (:mod:`baseline`): the first pair warms up, the others are timed by the
method's own ``seconds``; ``RSS MiB`` is the process's peak resident set size.

    .venv/bin/python benchmarks/bench_accr.py [--pairs 5] [--threads 2] [--baseline 224f906]

The default baseline is the revision before the reference's CoMIR was computed once for all start
angles (:meth:`comir.network.accr.model.ACCRNet.match`).
"""

from __future__ import annotations

import argparse
import resource
import statistics

from baseline import baseline_src  # benchmarks/ is on sys.path when a script here runs
from isolation import isolated

STARTS = {"1 start": [0.0], "3 starts": [-20.0, 0.0, 20.0]}


def measure(starts: list[float], pairs: int, threads: int) -> dict:
    """Median seconds per pair of ACCR registrations from ``starts``, and the peak RSS (MiB)."""
    import numpy as np
    import torch
    from scipy import ndimage

    from comir.network.accr.model import ACCRConfig, ACCRNet
    from comir.network.model import Tiramisu, TiramisuConfig
    from comir.register.accr import ACCRRegistration

    torch.manual_seed(0)
    shape = {"init_filters": 16, "down_blocks": (2, 2, 2), "bottleneck": 2, "dropout": 0.1, "out_channels": 1}
    encoders = {slot: Tiramisu(TiramisuConfig(in_channels=c, **shape)) for slot, c in (("A", 3), ("B", 1))}
    model = ACCRNet(ACCRConfig(patch=8, key_stride=4, embed_dim=32, heads=4), encoders)
    method = ACCRRegistration(model, max_px=256, start_angles_deg=tuple(starts), min_support=0.0, threads=threads)
    rng = np.random.default_rng(0)
    seconds = []
    for index in range(pairs + 1):
        reference = ndimage.gaussian_filter(rng.random((256, 256, 3)), (2, 2, 0)).astype(np.float32)
        floating = ndimage.gaussian_filter(rng.random((256, 256)), 2).astype(np.float32)
        result = method.register(reference, floating)
        if index:  # the first pair warms up
            seconds.append(result.seconds)
    return {"seconds": statistics.median(seconds), "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    """Measure each start setting with the baseline's code and the current code; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5, help="timed pairs per measurement (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    parser.add_argument("--baseline", default="224f906", help="the revision to compare with")
    args = parser.parse_args()
    baseline = baseline_src(args.baseline)
    codes = [("current", None)] if baseline is None else [(args.baseline, baseline), ("current", None)]
    if baseline is None:
        print(f"no baseline: revision {args.baseline} is not in a git checkout here")
    print(f"| code | starts | s per pair | ratio to {args.baseline} | RSS MiB |")
    print("|---|---|---:|---:|---:|")
    for label, starts in STARTS.items():
        before = None
        for code, src in codes:
            result = isolated(measure, starts, args.pairs, args.threads, src=src)
            if "error" in result:
                print(f"| {code} | {label} | {result['error']} | | |")
                continue
            before = result["seconds"] if before is None and src is not None else before
            ratio = f"{result['seconds'] / before:.2f}" if before else "-"
            print(f"| {code} | {label} | {result['seconds']:.2f} | {ratio} | {result['rss']:.0f} |")


if __name__ == "__main__":
    main()

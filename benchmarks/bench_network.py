"""Training-step and inference cost of the CoMIR networks, with ratios against a baseline.

Every configuration runs in a fresh process (so peak memory is its own) and is
timed as the best of several repetitions after a warm-up. Ratios compare with
the first row of each table, measured in the same run on the same machine.

    .venv/bin/python benchmarks/bench_network.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import time

from isolation import isolated  # benchmarks/ is on sys.path when a script here runs

DEMO = dict(init_filters=16, down_blocks=(2, 2, 2), bottleneck=2, dropout=0.1, out_channels=1)
PAPER = dict(init_filters=32, down_blocks=(4,) * 6, bottleneck=4, compression=0.75, dropout=0.2, out_channels=1)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_step(network: dict, patch: int, batch: int, channels_last: bool, threads: int, repeats: int) -> tuple[float, float]:
    import torch

    from comir.loss import equivariant_forward, info_nce
    from comir.model import Tiramisu, TiramisuConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = [Tiramisu(TiramisuConfig(in_channels=c, **network)).to(memory_format=fmt) for c in (3, 1)]
    inputs = [torch.randn(batch, c, patch, patch).contiguous(memory_format=fmt) for c in (3, 1)]
    optimizer = torch.optim.Adam([p for m in models for p in m.parameters()])
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats + 1):  # the first step warms up oneDNN
        start = time.perf_counter()
        loss = info_nce([equivariant_forward(m, x, generator) for m, x in zip(models, inputs)], "mse", 0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:]), _peak_mib()


def inference(network: dict, size: int, tile: int, threads: int, repeats: int) -> tuple[float, float]:
    import numpy as np
    import torch

    from comir.infer import compute_comir
    from comir.model import Tiramisu, TiramisuConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Tiramisu(TiramisuConfig(in_channels=3, **network))
    image = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        compute_comir(model, image, tile=tile, margin=64)
        times.append(time.perf_counter() - start)
    return min(times[1:]), _peak_mib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"Training step, both networks, C4 + InfoNCE (MSE), {args.threads} threads")
    print(f"{'configuration':58s} {'s/step':>8s} {'ratio':>7s} {'peak MiB':>9s}")
    rows = [
        ("demo net, 64 px, batch 16, contiguous (baseline)", DEMO, 64, 16, False),
        ("demo net, 64 px, batch 16, channels-last (used on CPU)", DEMO, 64, 16, True),
        ("demo net, 128 px, batch 16, contiguous", DEMO, 128, 16, False),
        ("demo net, 128 px, batch 16, channels-last", DEMO, 128, 16, True),
        ("paper net, 128 px, batch 4, channels-last", PAPER, 128, 4, True),
    ]
    base = None
    for label, network, patch, batch, channels_last in rows:
        seconds, peak = isolated(training_step, network, patch, batch, channels_last, args.threads, args.repeats)
        base = base or seconds
        print(f"{label:58s} {seconds:8.2f} {seconds / base:7.2f} {peak:9.0f}")

    print(f"\nInference of one RGB image (tiles with a 64 px margin), {args.threads} threads")
    print(f"{'configuration':58s} {'s/image':>8s} {'ratio':>7s} {'peak MiB':>9s}")
    rows = [
        ("demo net, 256 px, one tile (baseline)", DEMO, 256, 1024),
        ("demo net, 834 px, one tile", DEMO, 834, 1024),
        ("demo net, 834 px, 256 px tiles", DEMO, 834, 256),
        ("paper net, 834 px, one tile", PAPER, 834, 1024),
        ("paper net, 834 px, 256 px tiles", PAPER, 834, 256),
    ]
    base = None
    for label, network, size, tile in rows:
        seconds, peak = isolated(inference, network, size, tile, args.threads, args.repeats)
        base = base or seconds
        print(f"{label:58s} {seconds:8.2f} {seconds / base:7.2f} {peak:9.0f}")


if __name__ == "__main__":
    main()

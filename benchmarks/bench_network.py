"""Training input, training-step and inference cost of the CoMIR networks, with ratios.

Every configuration runs in a fresh process (so peak memory is its own) and is timed as the
best of several repetitions after a warm-up. "baseline" rows run the package as it was before
the speed work (:data:`baseline.BASELINE_REVISION`, extracted from git); ratios compare with
the first row of each table, measured in the same run on the same machine.

    .venv/bin/python benchmarks/bench_network.py [--threads 2] [--repeats 3] [--skip-paper]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from baseline import BASELINE_REVISION, baseline_src  # benchmarks/ is on sys.path when a script here runs
from isolation import isolated

DEMO = dict(init_filters=16, down_blocks=(2, 2, 2), bottleneck=2, dropout=0.1, out_channels=1)
PAPER = dict(init_filters=32, down_blocks=(4,) * 6, bottleneck=4, compression=0.75, dropout=0.2, out_channels=1)

# The paper's training (Table 3): 23 epochs x 32 steps x 32 pairs in 1345 s on one Titan V.
PAPER_PAIRS_PER_SECOND_TITAN_V = 23 * 32 * 32 / 1345
# A current data-centre GPU with bf16 tensor cores against a Titan V (fp32 CUDA cores: ~15 TFLOP/s;
# H100/H200 bf16 dense ~990 TFLOP/s, fp32 ~67): convolutions of small channel counts are far from
# peak, so 10x is a generous estimate of how much faster the same schedule could consume pairs.
MODERN_GPU_SPEEDUP = 10.0
HEADROOM = 10.0  # the loader must deliver this many times what the GPU consumes


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _biomedical_images(count: int = 8, size: int = 1024) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stand-ins for BF (RGB) / SHG (grey) training images of the paper's core size."""
    rng = np.random.default_rng(0)
    return [(rng.random((3, size, size), dtype=np.float32), rng.random((1, size, size), dtype=np.float32))
            for _ in range(count)]  # fmt: skip


def sampling(workers: int, seconds: float) -> dict:
    """Pairs per second of batches of 32 pairs of 128 px with rotations and flips (the paper's setting)."""
    import cv2
    import torch

    try:
        from comir.training import sampler as train
    except ImportError:  # the baseline revision (baseline.py): one module comir.train
        from comir import train

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    sampler = train.PatchSampler(_biomedical_images(), 128, True, True)
    if not hasattr(train, "TrainingBatches"):  # the baseline: one generator, batches made in turn
        rng = np.random.default_rng(0)
        batches = iter(lambda: sampler.sample(rng, 32), None)
    else:
        indices = range(10**6)
        stream = train.TrainingBatches(sampler, 32, 0, 2)
        batches = iter(train.batch_loader(stream, indices, workers, torch.device("cpu")))
    next(batches)  # warm-up (and the workers' start)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(batches)
        count += 32
    rate = count / (time.perf_counter() - start)
    del batches  # stops the loader's workers now, not at interpreter exit
    return {"pairs_per_s": rate, "peak": _peak_mib()}


def training_step(network: dict, patch: int, batch: int, channels_last: bool, threads: int, repeats: int) -> dict:
    """Seconds per step of both networks (C4, InfoNCE, Adam) on random patches."""
    import torch

    from comir.network.model import Tiramisu, TiramisuConfig
    from comir.training.loss import equivariant_forward, info_nce

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
    return {"seconds": min(times[1:]), "peak": _peak_mib()}


def inference(network: dict, size: int, tile: int, threads: int, repeats: int, mode: str) -> dict:
    """Seconds per image (and the CoMIR) of one RGB image through a network, in one of the modes.

    ``eager``: the PyTorch module through compute_comir; ``bf16``: the same under CPU bf16
    autocast; ``compile``: the network through torch.compile (the first call includes the
    compilation); ``onnx``: the package's ONNX Runtime engine (the first call includes the export).
    """
    import contextlib

    import torch

    try:
        from comir.inference.tiling import compute_comir
        from comir.network.model import Tiramisu, TiramisuConfig
    except ImportError:  # the baseline revision (baseline.py): the flat modules comir.infer and comir.model
        from comir.infer import compute_comir
        from comir.model import Tiramisu, TiramisuConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Tiramisu(TiramisuConfig(in_channels=3, **network)).eval()
    image = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    context = contextlib.nullcontext
    if mode == "compile":
        model = torch.compile(model)
        model.config = model._orig_mod.config
    elif mode == "bf16":
        def context():
            return torch.autocast("cpu", dtype=torch.bfloat16)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        if mode == "onnx" and not times:
            from comir.inference.engines import inference_network

            model = inference_network(model, "onnxruntime", "cpu")
        with context():
            output = compute_comir(model, image, tile=tile)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times[1:]), "first": times[0], "peak": _peak_mib(), "output": output}


def _relative_error(output: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(output - reference).max() / np.abs(reference).max())


def main() -> None:
    """Print the three tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-paper", action="store_true", help="leave out the paper network's inference rows")
    args = parser.parse_args()
    baseline = baseline_src()
    if baseline is None:
        print(f"(no baseline rows: revision {BASELINE_REVISION} is not in this checkout's git history)\n")

    print("Training input: batches of 32 pairs of 128 px (RGB + grey), rotations and flips, from 1024 px images")
    print(f"{'sampler':58s} {'pairs/s':>8s} {'per core':>9s} {'ratio':>7s} {'steps/s':>8s}")
    rows = [("current, in the training process (1 core)", 0, 1, None)]
    if baseline is not None:
        rows.insert(0, (f"baseline ({BASELINE_REVISION}), in the training process (1 core)", 0, 1, baseline))
    rows.append((f"current, {args.threads} loader workers ({args.threads} cores)", args.threads, args.threads, None))
    base = None
    for label, workers, cores, src in rows:
        result = isolated(sampling, workers, 5.0, src=src)
        rate = result["pairs_per_s"]
        base = base or rate
        print(f"{label:58s} {rate:8.0f} {rate / cores:9.0f} {rate / base:7.2f} {rate / 32:8.1f}")
    consumed = PAPER_PAIRS_PER_SECOND_TITAN_V * MODERN_GPU_SPEEDUP
    print(
        f"The paper's training consumed {PAPER_PAIRS_PER_SECOND_TITAN_V:.1f} pairs/s on a Titan V (Table 3); a modern "
        f"GPU at {MODERN_GPU_SPEEDUP:g}x that needs {consumed:.0f} pairs/s, "
        f"{HEADROOM:g}x headroom {consumed * HEADROOM:.0f}."
    )

    print(f"\nTraining step, both networks, C4 + InfoNCE (MSE), {args.threads} threads")
    print(f"{'configuration':58s} {'s/step':>8s} {'ratio':>7s} {'peak MiB':>9s}")
    rows = [
        ("demo net, 64 px, batch 16, contiguous (baseline)", DEMO, 64, 16, False),
        ("demo net, 64 px, batch 16, channels-last (used on CPU)", DEMO, 64, 16, True),
        ("demo net, 128 px, batch 16, channels-last", DEMO, 128, 16, True),
        ("paper net, 128 px, batch 4, channels-last", PAPER, 128, 4, True),
    ]
    base = None
    for label, network, patch, batch, channels_last in rows:
        result = isolated(training_step, network, patch, batch, channels_last, args.threads, args.repeats)
        base = base or result["seconds"]
        print(f"{label:58s} {result['seconds']:8.2f} {result['seconds'] / base:7.2f} {result['peak']:9.0f}")

    print(f"\nInference of one RGB image, {args.threads} threads (error: max |difference| / max |CoMIR| "
          "against the current float32 eager CoMIR)")  # fmt: skip
    print(f"{'configuration':58s} {'s/image':>8s} {'ratio':>7s} {'first s':>8s} {'peak MiB':>9s} {'error':>9s}")
    networks = [("demo net, 256 px", DEMO, 256)] + ([] if args.skip_paper else [("paper net, 834 px", PAPER, 834)])
    for name, network, size in networks:
        modes = [("eager (current)", "eager", None), ("bf16 autocast", "bf16", None),
                 ("torch.compile", "compile", None), ("ONNX Runtime (current CPU default)", "onnx", None)]  # fmt: skip
        if baseline is not None:
            modes.insert(0, (f"baseline ({BASELINE_REVISION})", "eager", baseline))
        results = [
            (label, mode, src, isolated(inference, network, size, 1024, args.threads, args.repeats, mode, src=src))
            for label, mode, src in modes
        ]
        measured = [r for *_, r in results if "error" not in r]
        reference = next(r["output"] for _, mode, src, r in results if mode == "eager" and src is None)
        base = measured[0]["seconds"]  # the baseline, where there is one
        for label, _, _, result in results:
            row = f"{name}, {label}"
            if "error" in result:
                print(f"{row:58s} {result['error']}")
                continue
            print(f"{row:58s} {result['seconds']:8.2f} {result['seconds'] / base:7.2f} {result['first']:8.1f} "
                  f"{result['peak']:9.0f} {_relative_error(result['output'], reference):9.1e}")  # fmt: skip

if __name__ == "__main__":
    main()

"""GPU check: training and inference on CUDA, their speed and memory, and CoMIRs against the CPU.

On a machine with a CUDA GPU (`make gpu-check`):

1. the paper's network: training steps of batch 32 on 128 px patches (both networks, C4,
   InfoNCE) with the mixed precision of :mod:`comir.network.precision`; steps per second, peak GPU
   memory, the autocast dtype and the projected time of the paper's schedule (736 steps; the
   paper: 1345 s on a Titan V), and whether the loader keeps up (pairs per second it delivers);
2. the tiny and the demo configuration: ``train`` and ``compute_comirs`` through Snakemake with
   ``device: cuda`` (seconds, steps per second and peak GPU memory from the logs);
3. the CoMIRs of the GPU-trained checkpoint computed on the GPU (mixed precision) and on the CPU
   (float32): max |difference| / max |CoMIR| and the correlation.

Without a GPU it prints why and exits 0, unless ``--device cpu`` asks to run every step on the
CPU (what the test of its plumbing does). A JSON summary goes to ``--out``.

    .venv/bin/python benchmarks/gpu_check.py [--configs tiny demo] [--out gpu-check] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"tiny": ROOT / ".test" / "config.yaml", "demo": ROOT / "config" / "demo.yaml"}
PAPER_STEPS = 23 * 32
PAPER_SECONDS_TITAN_V = 1345.0


def paper_network_steps(device_name: str, steps: int, batch: int, patch: int) -> dict:
    """Training steps of the paper's network as :func:`comir.training.loop.train` runs them."""
    import torch

    from comir.network import precision
    from comir.network.device import memory_format
    from comir.network.model import TiramisuConfig
    from comir.training.loop import build_models, training_step
    from comir.training.sampler import PatchSampler, TrainingBatches, batch_loader, loader_workers
    from comir.training.settings import TrainingConfig

    device = torch.device(device_name)
    configs = {slot: TiramisuConfig(in_channels=c, out_channels=1) for slot, c in (("A", 3), ("B", 1))}
    models = build_models(configs, seed=0)
    for model in models.values():
        model.to(device, memory_format=memory_format(device)).train()
    cfg = TrainingConfig(batch_size=batch, patch_size=patch, device=device_name)
    use_amp = precision.mixed_precision_enabled(device, cfg.mixed_precision)
    optimizer = torch.optim.SGD([p for m in models.values() for p in m.parameters()], lr=1e-2, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaler(device, use_amp))
    rng = np.random.default_rng(0)
    images = [(rng.random((3, 1024, 1024), dtype=np.float32), rng.random((1, 1024, 1024), dtype=np.float32))
              for _ in range(4)]  # fmt: skip
    batches = TrainingBatches(PatchSampler(images, patch, True, True), batch, 0, 2)
    workers = loader_workers(None, device)
    generator = torch.Generator().manual_seed(0)
    times = []
    for arrays in batch_loader(batches, range(steps + 1), workers, device):
        start = time.perf_counter()
        training_step(models, arrays, cfg, optimizer, scaler, generator, device, use_amp)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step = float(np.median(times[1:]))  # the first step includes cuDNN's autotuning
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {
        "device": device_name,
        "autocast_dtype": str(precision.autocast_dtype(device)) if use_amp else "float32 (no autocast)",
        "loader_workers": workers,
        "steps_per_s": 1.0 / step,
        "paper_schedule_s": PAPER_STEPS * step,
        "paper_schedule_titan_v_s": PAPER_SECONDS_TITAN_V,
        "peak_gpu_mib": peak,
    }


def run_config(name: str, device: str, workdir: Path) -> dict:
    """Rules train and compute_comirs of one configuration through Snakemake with every device set to ``device``."""
    config = yaml.safe_load(CONFIGS[name].read_text())
    for dataset in config["datasets"].values():
        dataset.setdefault("training", {})["device"] = device
        dataset.setdefault("inference", {})["device"] = device
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}-{device}.yaml"
    path.write_text(yaml.safe_dump(config))
    dataset, cfg = next(iter(config["datasets"].items()))
    variant = next(iter(cfg.get("variants", {"default": {}})))
    testset = next(iter(cfg.get("testsets", {"main": {}})))
    target = f"results/{dataset}/{variant}/comir/{testset}/images"
    start = time.perf_counter()
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), target, "--cores", "4",
               "--configfile", str(path)]  # fmt: skip
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{name} on {device} failed:\n{run.stderr[-3000:]}")
    log = (workdir / f"results/{dataset}/logs/{variant}/train.log").read_text()
    peak = re.search(r"peak GPU memory ([0-9.]+) MiB", log)
    history = np.genfromtxt(workdir / f"results/{dataset}/{variant}/model/loss.csv", delimiter=",", names=True)
    steps = float(history["step"][-1])
    return {
        "config": name,
        "device": device,
        "wall_s": time.perf_counter() - start,
        "train_steps_per_s": steps / float(np.sum(history["seconds"])),
        "final_val_loss": float(history["val_loss"][-1]),
        "peak_gpu_mib": float(peak.group(1)) if peak else float("nan"),
        "checkpoint": str(workdir / f"results/{dataset}/{variant}/model/comir.pt"),
        "comirs": str(workdir / target),
    }


def compare_comirs(checkpoint: str, comir_dir: str, device: str) -> dict:
    """The checkpoint's CoMIRs recomputed on the CPU in float32 against those computed on ``device``."""
    import torch

    from comir.imaging.preprocess import prepare_modality_image
    from comir.inference.tiling import compute_comir
    from comir.io import read_image
    from comir.network.checkpoint import load_checkpoint

    models, payload = load_checkpoint(Path(checkpoint), "cpu")
    errors, correlations = [], []
    # results/<dataset>/<variant>/comir/<testset>/images -> results/<dataset>/testsets/<testset>/images
    source = Path(comir_dir).parents[3] / "testsets" / Path(comir_dir).parent.name / "images"
    for path in sorted(Path(comir_dir).glob("*_ref.tif"))[:6]:
        slot = path.stem.split("_")[-2]
        image = prepare_modality_image(read_image(source / path.name), payload["modalities"][slot], path.name)
        with torch.inference_mode():
            cpu = compute_comir(models[slot], image, tile=1024, device="cpu")
        got = read_image(path).astype(np.float32)
        got = got[None] if got.ndim == 2 else np.moveaxis(got, -1, 0)
        errors.append(float(np.abs(got - cpu).max() / np.abs(cpu).max()))
        correlations.append(float(np.corrcoef(got.ravel(), cpu.ravel())[0, 1]))
    return {"device": device, "max_relative_difference": max(errors), "min_correlation": min(correlations)}


def main(argv: list[str] | None = None) -> int:
    """Run the checks (or say why not) and write the summary; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--configs", nargs="+", default=["tiny", "demo"], choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=20, help="timed training steps of the paper's network")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check skipped: PyTorch sees no CUDA device (install a CUDA build of torch on a GPU machine; "
              "--device cpu runs the same steps on the CPU)")  # fmt: skip
        return 0
    summary = {"paper_network": paper_network_steps(args.device, args.steps, args.batch, 128), "configs": [],
               "comirs": []}  # fmt: skip
    print(json.dumps(summary["paper_network"], indent=2))
    for name in args.configs:
        result = run_config(name, args.device, args.out / name)
        summary["configs"].append(result)
        summary["comirs"].append(compare_comirs(result["checkpoint"], result["comirs"], args.device))
        print(json.dumps({k: v for k, v in result.items() if k not in ("checkpoint", "comirs")}, indent=2))
        print(json.dumps(summary["comirs"][-1], indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

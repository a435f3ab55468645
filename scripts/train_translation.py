"""Snakemake script: train one GAN translation baseline; checkpoint, loss history and plot."""

import pandas as pd
import torch

from comir.imaging.preprocess import load_split
from comir.io import atomic_path, write_csv
from comir.network.device import resolve_device
from comir.translation.pipeline import (
    TranslationTraining,
    build_translators,
    checkpoint,
    plot_history,
    train_translators,
)
from comir.workflow import provenance, setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.translation
entry, modalities = spec["entry"], spec["modalities"]
training = spec["training"]
device = resolve_device(training["device"])
settings = TranslationTraining(
    steps_per_epoch=entry["steps_per_epoch"],
    batch_size=entry["batch_size"],
    patch_size=entry["patch_size"],
    rotation=training["rotation"],
    flips=training["flips"],
    device=str(device),
    mixed_precision=training["mixed_precision"],
)
channels = {slot: spec["channels"] for slot, spec in modalities.items()}
seed = snakemake.params.seed
translators = build_translators(entry["method"], entry["params"], channels, seed, device,
                                training["mixed_precision"] and device.type == "cuda")  # fmt: skip
pairs = pd.read_csv(snakemake.input.pairs)
history = train_translators(translators, load_split(pairs, "train", modalities), settings, seed)
made_by = {"dataset": snakemake.wildcards.dataset, "model": snakemake.wildcards.translator, "seed": seed, **spec}
payload = checkpoint(entry["method"], entry["params"], modalities, translators, {"provenance": provenance(made_by)})
with atomic_path(snakemake.output.model) as tmp:
    torch.save(payload, tmp)
write_csv(snakemake.output.history, history)
plot_history(history, f"{snakemake.wildcards.translator} ({entry['method']})", snakemake.output.plot)

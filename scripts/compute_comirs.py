"""Snakemake script: CoMIRs of every test-set patch, previews and an example figure."""

from pathlib import Path

import pandas as pd
import torch

from comir.infer import comir_test_set, plot_examples
from comir.train import load_checkpoint, resolve_device
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
dataset = {"modalities": snakemake.params.modalities, "inference": snakemake.params.inference}
device = resolve_device(dataset["inference"]["device"])
torch.set_num_threads(snakemake.threads)
models, _ = load_checkpoint(Path(snakemake.input.model), device)
cases = pd.read_csv(snakemake.input.cases)["case"].tolist()
comir_test_set(
    models,
    cases,
    Path(snakemake.input.images),
    Path(snakemake.output.comirs),
    Path(snakemake.output.previews),
    dataset["modalities"],
    dataset["inference"]["tile"],
    dataset["inference"]["margin"],
    device,
    pad=dataset["inference"]["pad"],
    mixed_precision=dataset["inference"]["mixed_precision"],
)
plot_examples(
    cases[:3],
    Path(snakemake.input.images),
    Path(snakemake.output.comirs),
    dataset["modalities"],
    Path(snakemake.output.examples),
)

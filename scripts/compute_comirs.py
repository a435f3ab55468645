"""Snakemake script: CoMIRs of every test-set patch, previews and an example figure."""

from pathlib import Path

import pandas as pd
import torch

from comir.inference.stage import check_model_settings, comir_test_set, plot_examples
from comir.network.checkpoint import load_checkpoint
from comir.network.device import resolve_device
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
modalities, inference = snakemake.params.modalities, snakemake.params.inference
device = resolve_device(inference["device"])
torch.set_num_threads(snakemake.threads)
models, payload = load_checkpoint(Path(snakemake.input.model), device)
check_model_settings(payload, modalities, snakemake.input.model)  # a model file trained elsewhere may differ
cases = pd.read_csv(snakemake.input.cases)["case"].tolist()
images, comirs = Path(snakemake.input.images), Path(snakemake.output.comirs)
comir_test_set(models, cases, images, comirs, Path(snakemake.output.previews), modalities, inference, device)
plot_examples(cases[:3], images, comirs, modalities, Path(snakemake.output.examples))

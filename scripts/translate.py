"""Snakemake script: a test set translated by one GAN baseline (fake images of each modality)."""

import pandas as pd
import torch

from comir.network.device import resolve_device
from comir.translation.pipeline import load_translators, translate_testset
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
translators, payload = load_translators(snakemake.input.model, resolve_device(snakemake.params.device))
cases = pd.read_csv(snakemake.input.cases, dtype={"case": str})
translate_testset(translators, cases, snakemake.input.images, snakemake.params.modalities, snakemake.output.images)
log.info("%d cases translated by %s (%s)", len(cases), snakemake.wildcards.translator, payload["method"])

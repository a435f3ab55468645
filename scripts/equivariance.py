"""Snakemake script: rotation and translation equivariance of one variant's CoMIRs (paper section 4.1, Fig. 2)."""

from pathlib import Path

import pandas as pd
import torch

from comir.evaluate.representation import plot_polar_equivariance
from comir.evaluate.tables import to_markdown
from comir.io import write_csv, write_text
from comir.network.checkpoint import load_checkpoint
from comir.network.device import resolve_device
from comir.representation.stages import (
    equivariance_extent,
    equivariance_summaries,
    equivariance_tables,
    load_test_images,
    rotation_curves,
)
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
settings, inference = snakemake.params.settings, snakemake.params.inference
out = snakemake.output
torch.set_num_threads(snakemake.threads)
models, payload = load_checkpoint(Path(snakemake.input.model), resolve_device(inference["device"]))
# The modalities recorded with the model: its images are prepared exactly as in training.
modalities = payload["modalities"]
pairs = pd.read_csv(snakemake.input.pairs)
images = load_test_images(pairs, modalities, settings["images"], equivariance_extent(settings))
rotation, translation = equivariance_tables(models, modalities, images, settings, inference)
write_csv(out.rotation, rotation)
write_csv(out.translation, translation)
rotation_summary, translation_summary = equivariance_summaries(rotation, translation)
write_text(out.rotation_md, to_markdown(rotation_summary))
write_text(out.translation_md, to_markdown(translation_summary))
title = f"{snakemake.wildcards.dataset} / {snakemake.wildcards.variant}: correlation with the unrotated CoMIR"
plot_polar_equivariance(rotation_curves(rotation), out.figure, title=title)

"""Snakemake script: train the two CoMIR networks and save state_dicts, loss history and plot."""

import pandas as pd

from comir.preprocess import load_split
from comir.train import TrainingConfig, build_models, model_configs, save_checkpoint, train, write_history
from comir.workflow import provenance, setup_logging

log = setup_logging(snakemake.log[0])
dataset = snakemake.params.dataset
pairs = pd.read_csv(snakemake.input.pairs)
cfg = TrainingConfig.from_config(dataset["training"], snakemake.params.seed, snakemake.threads)
models = build_models(model_configs(dataset), cfg.seed)
history = train(models, load_split(pairs, "train", dataset["modalities"]), load_split(pairs, "val", dataset["modalities"]), cfg)
save_checkpoint(
    snakemake.output.model,
    models,
    {"modalities": dataset["modalities"], "training": dataset["training"], "provenance": provenance(snakemake.params.config)},
)
write_history(history, snakemake.output.history, snakemake.output.plot)

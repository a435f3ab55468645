"""Snakemake script: one batch of an apply job (a trained model, or an ensemble's, registers unaligned pairs)."""

import torch

from comir.apply.folder import register_batch
from comir.io import write_csv
from comir.register import set_native_threads
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
threads = snakemake.threads
torch.set_num_threads(threads)
set_native_threads(threads)  # reproducible MI, as in the register rule
rows = register_batch(
    snakemake.input.model,
    snakemake.input.pairs[0],
    snakemake.output.pairs,
    snakemake.params.settings,
    batches=snakemake.params.batches,
    batch=int(snakemake.wildcards.batch),
    seed=snakemake.params.seed,
    threads=threads,
)
log.info("%d of %d pairs registered", (rows["status"] == "ok").sum() if len(rows) else 0, len(rows))
write_csv(snakemake.output.table, rows)

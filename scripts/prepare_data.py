"""Snakemake script: canonical aligned pairs and their split."""

from pathlib import Path

from comir.data.prepare import prepare_dataset
from comir.io import write_csv
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
table = prepare_dataset(snakemake.params.dataset, snakemake.params.seed, Path(snakemake.params.image_dir))
write_csv(snakemake.output.pairs, table)

"""Snakemake script: canonical aligned pairs and their split, and a description of where they came from."""

from pathlib import Path

from comir.data.prepare import prepare_dataset
from comir.io import write_csv, write_json
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
record = Path(snakemake.input.record) if snakemake.input.record else None
table, layout = prepare_dataset(
    snakemake.params.dataset, snakemake.params.seed, Path(snakemake.params.image_dir), record
)
write_csv(snakemake.output.pairs, table)
write_json(snakemake.output.layout, layout)

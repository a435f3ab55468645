"""Snakemake script: a transformed test set, drawn by a recipe or imported from a Zenodo record."""

from pathlib import Path

from comir.io import write_csv
from comir.testset import make_testset
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
record = Path(snakemake.input.record) if snakemake.input.record else None
cases = make_testset(
    snakemake.params.build["testset"],
    snakemake.params.seed,
    Path(snakemake.input.pairs),
    Path(snakemake.output.images),
    record,
    snakemake.params.build.get("modalities"),
)
write_csv(snakemake.output.cases, cases)

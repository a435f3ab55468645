"""Snakemake script: unpack a verified Zenodo record's archives (plain files are linked as they are)."""

from pathlib import Path

from comir.data.zenodo.unpack import unpack_record
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
unpack_record(Path(snakemake.input.manifest), Path(snakemake.output[0]))

"""Snakemake script: time per stage (paper, Table 3) from the jobs' benchmark files."""

import pandas as pd

from comir.evaluate.tables import to_markdown
from comir.evaluate.timing import timing_table
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
n_pairs = len(pd.read_csv(snakemake.input.cases))
networks = snakemake.params.networks  # row labels: "" for a variant's own networks, else an ensemble's members
train = dict(zip(networks["trained"], snakemake.input.train, strict=True))  # none for a model file
inference = dict(zip(networks["computed"], snakemake.input.inference, strict=True))
table = timing_table(train, inference, list(snakemake.input.registration), snakemake.params.jobs, n_pairs)
write_csv(snakemake.output.table, table)
write_text(snakemake.output.markdown, to_markdown(table))

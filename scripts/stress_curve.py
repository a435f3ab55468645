"""Snakemake script: a stress series' success rate against severity (table and figure)."""

import pandas as pd

from comir.evaluate.stress import plot_stress_curve, stress_table
from comir.io import write_csv
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
tables = [pd.read_csv(path) for path in snakemake.input.successes]
table = stress_table(tables, params.severities, fractions=params.fractions)
write_csv(snakemake.output.table, table)
title = f"{snakemake.wildcards.series}: {params.kind} shift of modality {params.modality}"
plot_stress_curve(table, snakemake.output.figure, title=title)

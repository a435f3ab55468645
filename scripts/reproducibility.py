"""Snakemake script: reproducibility of the CoMIRs across short training runs (paper section 4.1, Table 1)."""

import pandas as pd

from comir.evaluate.tables import to_markdown
from comir.io import write_csv, write_text
from comir.representation.stages import plot_reproducibility, reproducibility_table
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
out = snakemake.output
pairs = pd.read_csv(snakemake.input.pairs)
# Loader processes come from snakemake.config, not params: they change no batch, so no rerun.
workers = snakemake.config["threads"]["loader"]
summary, pairwise = reproducibility_table(
    snakemake.params.network,
    pairs,
    snakemake.params.settings,
    snakemake.params.seed,
    threads=snakemake.threads,
    workers=workers,
)
write_csv(out.table, summary)
write_csv(out.pairwise, pairwise)
write_text(out.markdown, to_markdown(summary))
plot_reproducibility(summary, out.figure, title=f"{snakemake.wildcards.dataset}: reproducibility of the CoMIRs")

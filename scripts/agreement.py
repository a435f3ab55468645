"""Snakemake script: the correlation of the two modalities' CoMIRs of the same places, with its interval."""

import pandas as pd

from comir.evaluate.representation import agreement_table
from comir.evaluate.tables import to_markdown
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
cases = pd.read_csv(snakemake.input.cases, dtype={"case": str})["case"]
per_case, summary = agreement_table(snakemake.input.comirs, cases, seed=snakemake.params.seed)
log.info("%s", summary.to_dict("records"))
write_csv(snakemake.output.cases, per_case)
write_csv(snakemake.output.table, summary)
write_text(snakemake.output.markdown, to_markdown(summary))

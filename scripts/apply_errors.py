"""Snakemake script: an apply job's pairs against their known transforms (per-case rows)."""

import pandas as pd

from comir.apply.results import read_truth, with_errors
from comir.io import write_csv
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
summary = pd.read_csv(snakemake.input.summary, dtype={"id": str})
cases = with_errors(summary, read_truth(snakemake.input.truth), snakemake.wildcards.job)
log.info("median corner error %.2f px over %d pairs", cases["error_px"].median(), len(cases))
write_csv(snakemake.output[0], cases)

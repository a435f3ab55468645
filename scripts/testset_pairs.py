"""Snakemake script: a test set as a folder of unaligned pairs and their true transforms."""

import pandas as pd

from comir.apply.results import export_testset_pairs
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
cases = pd.read_csv(snakemake.input.cases, dtype={"case": str, "stratum": str})
truth = export_testset_pairs(
    cases,
    snakemake.input.images,
    snakemake.params.modalities,
    snakemake.wildcards.reference,
    snakemake.output.pairs,
    snakemake.output.truth,
)
log.info("%d pairs with known transforms in %s", len(truth), snakemake.output.pairs)

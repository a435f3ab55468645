"""Snakemake script: the stratified, rigidly transformed test set."""

from pathlib import Path

import pandas as pd

from comir.io import write_csv
from comir.testset import TestSetRecipe, build_testset
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
pairs = pd.read_csv(snakemake.input.pairs)
recipe = TestSetRecipe.from_config(snakemake.params.testset, snakemake.params.seed)
cases = build_testset(pairs[pairs["split"] == "test"], recipe, Path(snakemake.output.images))
log.info("%d cases: %s", len(cases), cases["stratum"].value_counts().to_dict())
write_csv(snakemake.output.cases, cases)

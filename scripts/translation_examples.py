"""Snakemake script: the paper's Fig. 3 (a test pair, its translations and its CoMIRs)."""

import pandas as pd

from comir.evaluate.figures import plot_translation_examples
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
case = pd.read_csv(snakemake.input.cases, dtype={"case": str})["case"].iloc[0]
names = {slot: spec["name"] for slot, spec in snakemake.params.modalities.items()}
translated = dict(zip(snakemake.params.models, snakemake.input.translated))
plot_translation_examples(case, snakemake.input.images, translated, snakemake.input.comirs, names, snakemake.output[0])

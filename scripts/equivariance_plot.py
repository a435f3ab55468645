"""Snakemake script: rotation equivariance of every variant of a dataset in one polar plot (paper Fig. 2)."""

import pandas as pd

from comir.evaluate.representation import plot_polar_equivariance
from comir.representation.stages import rotation_curves
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
curves = {
    f"{variant} / {modality}": curve
    for variant, path in zip(snakemake.params.variants, snakemake.input.tables)
    for modality, curve in rotation_curves(pd.read_csv(path)).items()
}
title = f"{snakemake.wildcards.dataset}: correlation with the unrotated CoMIR, per variant"
plot_polar_equivariance(curves, snakemake.output[0], title=title)

"""Snakemake script: the attention of a variant's ACCR model on a test set's first pair, as a figure."""

from pathlib import Path

import numpy as np
import pandas as pd

from comir.evaluate.attention import plot_attention
from comir.evaluate.figures import save_figure
from comir.geometry import MATRIX_KEYS
from comir.register.accr import ACCRRegistration
from comir.register.cases import DIRECTIONS, load_patch
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
settings = snakemake.params.attention
reference_slot, floating_slot = DIRECTIONS[settings["direction"]]
modalities = settings["modalities"]
case = pd.read_csv(snakemake.input.cases).iloc[0]
images = Path(snakemake.input.images)
# The patches as rule register_accr gives them to the method: the networks' input, with its channels.
reference = load_patch(images, f"{case['case']}_{reference_slot}_ref", "original", modalities[reference_slot], True)
floating = load_patch(images, f"{case['case']}_{floating_slot}_flo", "original", modalities[floating_slot], True)
method = ACCRRegistration(snakemake.input.model, reference_slot=reference_slot, threads=snakemake.threads)
attention = method.attention(reference, floating)
height, width = reference.shape[:2]
queries = np.array([[width * f, height * f] for f in (0.25, 0.5, 0.75)])  # along the diagonal
truth = np.array([case[f"true_{key}"] for key in MATRIX_KEYS], dtype=float).reshape(2, 3)
figure = plot_attention(
    reference, floating, attention.weights, attention.reference_points, attention.floating_points,
    attention.floating_grid, queries, truth, attention.correspondences,
)  # fmt: skip
save_figure(figure, snakemake.output.figure)
log.info("case %s: %d reference x %d floating tokens", case["case"], *attention.weights.shape)

"""Snakemake script: how well the confidence of the calibrated runs works on one test set."""

import pandas as pd

from comir.calibration import load_calibration
from comir.evaluate.confidence import acceptance_markdown, acceptance_table, correct_mask, plot_reliability
from comir.evaluate.tables import load_results
from comir.io import read_tables, write_csv, write_text
from comir.workflow import setup_logging

setup_logging(snakemake.log[0])
fraction = snakemake.params.success_fraction
results = load_results(snakemake.input.registrations)
unrelated = read_tables(snakemake.input.unrelated)
table = acceptance_table(results, unrelated, fraction)
write_csv(snakemake.output.table, table)
write_text(snakemake.output.markdown, acceptance_markdown(table))
# Per run: the test set's true and unrelated pairs, and the calibration data the threshold was chosen on.
curves, thresholds = {}, {}
for run, path, evidence_path in zip(snakemake.params.runs, snakemake.input.calibrations, snakemake.input.evidence):
    calibration = load_calibration(path)
    ours = results[results["method"] == run]
    others = unrelated[unrelated["method"] == run] if not unrelated.empty else unrelated
    confidence = pd.concat([ours["confidence"], others.get("confidence", pd.Series(dtype=float))])
    correct = list(correct_mask(ours, fraction)) + [False] * len(others)
    curves[f"{run}: {snakemake.wildcards.testset}"] = (confidence.to_numpy(float), correct)
    data = pd.read_csv(evidence_path)
    probability = calibration.probability(data.to_dict("records"))
    curves[f"{run}: calibration data"] = (probability, data["correct"].to_numpy(bool))
    thresholds[f"{run}: {snakemake.wildcards.testset}"] = calibration.threshold
plot_reliability(curves, snakemake.output.figure, thresholds, f"{snakemake.wildcards.testset}: reliability")

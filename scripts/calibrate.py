"""Snakemake script: the calibrated confidence of one registration run on one variant's CoMIRs."""

from pathlib import Path

from comir.calibration import calibration_data, fit_calibration
from comir.io import read_tables, write_csv, write_json
from comir.register.cases import results_evidence
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
settings, wc = snakemake.params.confidence, snakemake.wildcards
true = read_tables(snakemake.input.registrations)
true = results_evidence(true, Path(snakemake.input.images[0]), snakemake.params.modalities, snakemake.params.seed)
data = calibration_data(true, read_tables(snakemake.input.unrelated), settings["success_fraction"])
write_csv(snakemake.output.evidence, data)
calibration = fit_calibration(
    data.to_dict("records"), data["correct"], data["kind"], settings["false_accept_rate"], settings["success_fraction"]
)
log.info("calibration of %s: %s, threshold %.4f", wc.run, calibration.counts, calibration.threshold)
if data.empty:
    log.warning("%s registered no calibration pair: none of its results will be accepted", wc.run)
write_json(snakemake.output.calibration, calibration.to_dict())

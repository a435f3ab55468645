"""Snakemake script: a model file with the calibrations of its registration runs inside."""

from comir.apply.model import write_calibrated_model
from comir.calibration import calibration_key, load_calibration
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
calibrations = {
    calibration_key(run["method"], run["params"]): load_calibration(path)
    for run, path in zip(snakemake.params.runs, snakemake.input.calibrations)
}
write_calibrated_model(snakemake.input.model, calibrations, snakemake.output[0])
log.info("%s with the calibrations of %s", snakemake.output[0], ", ".join(calibrations))

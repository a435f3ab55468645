"""Snakemake script: one registration run on one input in one direction over all test cases.

Rules register_unrelated and register_accr_unrelated: each case's reference against an unrelated floating patch
instead. A run that registers other images than the CoMIRs (ACCR) is judged on the CoMIRs of input evidence.
On a test set with a deformation (input truth) every case's field is scored against the truth.
Rule register_accr: a method with a model of its own (input model) registers the original patches.
Rule register_fields: a deformable run that also writes each case's total field (output fields).
"""

from pathlib import Path

import pandas as pd

from comir.calibration import load_calibration
from comir.io import write_csv
from comir.register import make_run, set_native_threads, with_model
from comir.register.cases import DIRECTIONS, Judge, register_cases
from comir.testset.deformation import FieldScorer
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
run = snakemake.params.run
wc = snakemake.wildcards
if snakemake.input.get("model"):  # the job gives the model file and the reference's slot
    run = {**run, "params": with_model(run.get("params"), snakemake.input.model, DIRECTIONS[wc.direction][0])}
set_native_threads(snakemake.threads)  # reproducible MI whatever the threads
method, deformable = make_run(run, snakemake.params.seed, threads=snakemake.threads)
cases = pd.read_csv(snakemake.input.cases)
image_input = snakemake.params.image_input
unrelated = snakemake.rule in ("register_unrelated", "register_accr_unrelated")
calibration = load_calibration(snakemake.input.calibration[0]) if snakemake.input.get("calibration") else None
# A calibrated run's results carry their confidence; unrelated pairs always their evidence (docs/method.md, 15).
judge = Judge(snakemake.params.seed, calibration) if calibration or unrelated else None
score = FieldScorer(Path(snakemake.input.truth)) if snakemake.input.truth and not unrelated else None
results = register_cases(
    cases, snakemake.input.images, method, wc.run, image_input, wc.direction, snakemake.params.modalities,
    judge, unrelated, Path(snakemake.input.originals) if snakemake.input.get("originals") else None,
    deformable=deformable, score=score,
    field_dir=Path(snakemake.output.fields) if snakemake.output.get("fields") else None,
    evidence_dir=Path(snakemake.input.evidence) if snakemake.input.get("evidence") else None,
)  # fmt: skip
results["input"] = snakemake.params.input_label  # original, comir, or the translation model's name
results.insert(results.columns.get_loc("input") + 1, "source", wc.source)  # original, a variant or a translation
log.info("%d of %d registrations reported success", (results["status"] == "ok").sum(), len(results))
write_csv(snakemake.output[0], results)

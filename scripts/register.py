"""Snakemake script: one registration run on one input in one direction over all test cases."""

from pathlib import Path

import cv2
import pandas as pd

from comir.io import write_csv
from comir.register import make_method
from comir.register.cases import register_cases
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
spec = snakemake.params.spec
wc = snakemake.wildcards
cv2.setNumThreads(snakemake.threads)
method = make_method(spec["method"], spec["params"], snakemake.params.seed, threads=snakemake.threads)
cases = pd.read_csv(snakemake.input.cases)
results = register_cases(
    cases, Path(snakemake.input.images), method, wc.run, wc.input, wc.direction, snakemake.params.dataset["modalities"]
)
log.info("%d of %d registrations reported success", (results["status"] == "ok").sum(), len(results))
write_csv(snakemake.output[0], results)

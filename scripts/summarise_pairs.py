"""Snakemake script: the pairs of an apply job in one table, failures, low confidence and low quality flagged."""

import pandas as pd

from comir.apply.results import summarise
from comir.evaluate.tables import to_markdown
from comir.io import write_csv, write_text
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
rows = pd.concat([pd.read_csv(path, dtype={"id": str}) for path in snakemake.input.tables], ignore_index=True)
summary = summarise(rows, snakemake.params.min_quality)
flagged = summary[summary["flag"] != ""]
log.info("%d pairs, %d flagged", len(summary), len(flagged))
write_csv(snakemake.output.summary, summary)
shown = ["id", "status", "flag", "metric", "confidence", "angle_deg", "scale", "seconds", "message"]
if "confidence" not in summary or summary["confidence"].isna().all():  # no calibration for this method
    shown.remove("confidence")
write_text(snakemake.output.markdown, to_markdown(summary[shown]))

"""Snakemake script: a transformed test set, drawn by a recipe or imported from a Zenodo record."""

from pathlib import Path

import pandas as pd

from comir.io import write_csv
from comir.preprocess import check_image_sizes
from comir.testset import TestSetRecipe, build_testset
from comir.workflow import setup_logging

log = setup_logging(snakemake.log[0])
spec = snakemake.params.build["testset"]
images = Path(snakemake.output.images)
if spec["recipe"] == "prebuilt":
    from comir.data.records import detect_layout, import_prebuilt_testset

    layout = detect_layout(Path(snakemake.input.record))
    cases = import_prebuilt_testset(layout, spec["prebuilt"], images, snakemake.params.build["modalities"])
else:
    pairs = pd.read_csv(snakemake.input.pairs)
    recipe = TestSetRecipe.from_config(spec, snakemake.params.seed)
    check_image_sizes(pairs, ["test"], recipe.min_source_size(), "this test set's patches and transforms")
    cases = build_testset(pairs[pairs["split"] == "test"], recipe, images)
log.info("%d cases: %s", len(cases), cases["stratum"].value_counts().to_dict())
write_csv(snakemake.output.cases, cases)

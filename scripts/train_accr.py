"""Snakemake script: train a variant's ACCR model (stage 2) on its CoMIR networks; save it and its loss history."""

import pandas as pd

from comir.imaging.preprocess import check_image_sizes, load_split, rotation_crop
from comir.io import write_csv
from comir.network.accr.checkpoint import save_accr
from comir.network.accr.model import ACCRConfig, ACCRNet
from comir.network.checkpoint import load_checkpoint
from comir.training.accr import HeadTrainingConfig, train_registration_head, transform_margin
from comir.workflow import provenance, setup_logging

log = setup_logging(snakemake.log[0])
accr = snakemake.params.accr  # model and training of this variant's ACCR
encoders, stage1 = load_checkpoint(snakemake.input.encoders)
model = ACCRNet(ACCRConfig(**accr["model"]), encoders)
cfg = HeadTrainingConfig.from_config(accr["training"], snakemake.params.seed, snakemake.threads)
pairs = pd.read_csv(snakemake.input.pairs)
size = cfg.patch_size + 2 * transform_margin(cfg)  # a patch and the margin its random transforms need
crop = rotation_crop(size) if cfg.rotation else size
check_image_sizes(pairs, ["train"], crop, f"ACCR training ({cfg.patch_size} px patches cut from {crop} px crops)")
# The images as the encoders read them: the image settings their model file records.
history = train_registration_head(model, load_split(pairs, "train", stage1["modalities"]), cfg)
log.info("corner error %.2f px in the last step (%.2f px in the first)", history["corner_px"].iloc[-1],
         history["corner_px"].iloc[0])  # fmt: skip
made_by = {
    "dataset": snakemake.wildcards.dataset,
    "variant": snakemake.wildcards.variant,
    "seed": snakemake.params.seed,
    "accr": accr,
    "encoders": {"file": str(snakemake.input.encoders), "provenance": stage1.get("provenance")},
}
# The encoders' image settings and input statistics stay: the file is also a CoMIR model (the apply stage's).
kept = {key: stage1[key] for key in ("modalities", "training", "input_statistics") if key in stage1}
save_accr(snakemake.output.model, model, {**kept, "provenance": provenance(made_by)})
write_csv(snakemake.output.history, history)

"""Snakemake script: train the two CoMIR networks and save state_dicts, loss history and plot."""

from pathlib import Path

import pandas as pd

from comir.imaging.preprocess import check_image_sizes, load_split, modality_statistics, rotation_crop
from comir.network.checkpoint import save_checkpoint
from comir.training.loop import build_models, train
from comir.training.plots import write_history
from comir.training.settings import TrainingConfig, model_configs
from comir.workflow import provenance, setup_logging

log = setup_logging(snakemake.log[0])
network = snakemake.params.network  # modalities, model, training of this variant
pairs = pd.read_csv(snakemake.input.pairs)
# Execution settings come from snakemake.config, not params: changing them must not retrain.
workers = snakemake.config["threads"]["loader"]
cfg = TrainingConfig.from_config(network["training"], snakemake.params.seed, snakemake.threads, workers)
crop = rotation_crop(cfg.patch_size) if cfg.rotation else cfg.patch_size
check_image_sizes(pairs, ["train"], crop, f"training ({cfg.patch_size} px patches cut from {crop} px crops)")
check_image_sizes(pairs, ["val"], cfg.patch_size, f"validation ({cfg.patch_size} px patches)")
models = build_models(model_configs(network), cfg.seed)
state = Path(snakemake.params.resume_state)
modalities = network["modalities"]
training = load_split(pairs, "train", modalities)
# The network inputs the model saw, for the apply stage's range check of new images (comir.apply).
statistics = modality_statistics(training)
history = train(models, training, load_split(pairs, "val", modalities), cfg, state)
made_by = {
    "dataset": snakemake.wildcards.dataset,
    "variant": snakemake.wildcards.variant,
    "seed": snakemake.params.seed,
    **network,
}
save_checkpoint(
    snakemake.output.model,
    models,
    {
        "modalities": modalities,
        "training": network["training"],
        "provenance": provenance(made_by),
        "input_statistics": statistics,
    },
)
write_history(history, snakemake.output.history, snakemake.output.plot)
state.unlink(missing_ok=True)  # the checkpoint holds the result; a later run starts afresh

"""The CoMIR paper's image-translation baselines pix2pix, CycleGAN and DRIT (docs/translation.md).

:mod:`.networks` holds the architectures, :mod:`.losses` the loss terms,
:mod:`.models` one class per method with its hyper-parameters, training step,
schedule, inference and state, and :mod:`.pipeline` what the workflow's rules
``train_translation`` and ``translate`` (workflow/rules/translation.smk) run:
training on a dataset's pairs and translating its test set (docs/translation.md,
section 7).
"""

from __future__ import annotations

from comir.translation.models import (
    DIRECTIONS,
    DRIT,
    METHODS,
    CycleGAN,
    CycleGANConfig,
    DRITConfig,
    ImagePool,
    Pix2Pix,
    Pix2PixConfig,
    build_model,
    drit_decay_factor,
    linear_decay_factor,
)

__all__ = [
    "DIRECTIONS",
    "DRIT",
    "METHODS",
    "CycleGAN",
    "CycleGANConfig",
    "DRITConfig",
    "ImagePool",
    "Pix2Pix",
    "Pix2PixConfig",
    "build_model",
    "drit_decay_factor",
    "linear_decay_factor",
]

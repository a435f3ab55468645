"""GAN image-translation baselines of the CoMIR paper: pix2pix, CycleGAN and DRIT.

The paper (Table 2, Fig. 3) compares registering CoMIRs with registering images
that a GAN translated from one modality into the other. This package implements
the three translation methods it used, written from the published papers and
code (docs/translation.md), and the pipeline stage that runs them: the
workflow's rules ``train_translation`` and ``translate``
(workflow/rules/translation.smk) train the models of a dataset's
``translation`` section on its training pairs and translate its test set, and
the ``register`` rule registers the translations like CoMIRs
(docs/translation.md, section 7).

One class per method, :class:`Pix2Pix`, :class:`CycleGAN` and :class:`DRIT`,
each with its hyper-parameters (:class:`Pix2PixConfig`, :class:`CycleGANConfig`,
:class:`DRITConfig`); :func:`build_model` builds one by the method's name, a key
of :data:`METHODS`.

Modules
-------
params
    Each method's hyper-parameters: frozen dataclasses, every field checked on construction.
networks
    The architectures: generators, discriminators, DRIT's encoders.
losses
    The loss terms.
base
    What the models share: value range, batches, precision, seeding, schedule, inference, state.
pool
    CycleGAN's seeded image pool.
pix2pix
    The pix2pix model: networks, optimisers, training step.
cyclegan
    The CycleGAN model: networks, optimisers, training step.
drit
    The DRIT model: networks, optimisers, training steps, learning-rate schedule.
pipeline
    What the workflow's rules run: training on a dataset's pairs, translating its test set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from comir.translation.base import _TranslationModel, linear_decay_factor
from comir.translation.cyclegan import CycleGAN
from comir.translation.drit import DRIT, drit_decay_factor
from comir.translation.params import DIRECTIONS, CycleGANConfig, DRITConfig, Pix2PixConfig
from comir.translation.pix2pix import Pix2Pix
from comir.translation.pool import ImagePool

METHODS: dict[str, type[_TranslationModel]] = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN, "drit": DRIT}


def build_model(
    method: str,
    channels_a: int,
    channels_b: int,
    config: Mapping[str, Any] | None = None,
    *,
    device: torch.device | str = "cpu",
    mixed_precision: bool = False,
    seed: int = 0,
) -> _TranslationModel:
    """The model of ``method`` (a key of :data:`METHODS`) with ``config`` given as a mapping (or defaults).

    Parameters
    ----------
    method : str
        ``"pix2pix"``, ``"cyclegan"`` or ``"drit"``.
    channels_a, channels_b : int
        Channel counts of domains A and B (may differ).
    config : Mapping[str, Any] or None, optional
        The method's hyper-parameters for its config class's ``from_dict`` (also accepted: an instance of
        that class); None: the defaults. Default None.
    device : torch.device or str, optional
        Where the networks live and run. Default ``"cpu"``.
    mixed_precision : bool, optional
        Run the networks under autocast on ``device`` (:mod:`comir.translation.base`). Default False.
    seed : int, optional
        Determines the initial weights and the model's own random draws. Default 0.

    Returns
    -------
    Pix2Pix or CycleGAN or DRIT
        The untrained model.

    Raises
    ------
    ValueError
        If ``method`` is unknown, or a channel count or hyper-parameter is invalid.
    TypeError
        If ``config`` is neither a mapping nor the method's config class.
    """
    if method not in METHODS:
        raise ValueError(f"unknown translation method {method!r}; expected one of {tuple(METHODS)}")
    return METHODS[method](channels_a, channels_b, config, device=device, mixed_precision=mixed_precision, seed=seed)


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

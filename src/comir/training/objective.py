"""The training objective of a batch: the contrastive loss with the configured options.

docs/method.md, sections 3 and 5.

The terms themselves are :mod:`comir.training.loss`'s; here they are combined as
a run's :class:`~comir.training.settings.TrainingConfig` asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from comir.training.loss import (
    NEGATIVE_STRATEGIES,
    activation_decay,
    anatomy_info_nce,
    highpass,
    info_nce,
    near_pairs,
    region_labels,
    self_similarity_loss,
    structure_penalty,
)
from comir.training.settings import TrainingConfig


def contrastive_loss(
    outputs: Sequence[torch.Tensor],
    cfg: TrainingConfig,
    inputs: Sequence[torch.Tensor] | None = None,
    info: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """InfoNCE plus activation decay of the networks' outputs (docs/method.md, sections 3 and 5).

    With the ablations configured: the critic sees the high-passed outputs
    (``critic_highpass_sigma``), and the structure penalty and the
    self-similarity term (which needs the networks' ``inputs``) are added with
    their weights.  ``negatives`` chooses the InfoNCE's negatives
    (:func:`info_nce_term`), ``anatomy`` adds the anatomy-aware block term
    (:func:`comir.training.loss.anatomy_info_nce`, on what the critic sees) with its
    weight; both need the patches' ``info`` (:meth:`comir.training.sampler.PatchSampler.sample_with_info`)
    where they use it.  Every term casts the outputs up and computes in float32
    with autocast disabled itself, so the loss is the same inside the
    training's autocast context as outside it.

    Parameters
    ----------
    outputs : Sequence[torch.Tensor]
        The networks' ``(N, C, H, W)`` outputs, one per modality, aligned.
    cfg : TrainingConfig
        The run's settings: loss options and ablations.
    inputs : Sequence[torch.Tensor] or None, optional
        The networks' inputs, in the order of ``outputs``; needed by the self-similarity term only.
        Default None.
    info : Mapping[str, torch.Tensor] or None, optional
        The patches' info as tensors: ``image`` and ``centre`` for ``negatives.strategy: exclude_near``,
        ``regions`` for ``anatomy``. Default None.

    Returns
    -------
    torch.Tensor
        The scalar loss.

    Raises
    ------
    ValueError
        If a configured term lacks what it needs (``inputs``, ``info``), or for the errors of the terms
        (:func:`comir.training.loss.info_nce`).
    """
    critic_view = highpass(outputs, cfg.critic_highpass_sigma) if cfg.critic_highpass_sigma else outputs
    loss = info_nce_term(critic_view, cfg, info)
    if cfg.l1_activation or cfg.l2_activation:
        loss = loss + activation_decay(outputs, cfg.l1_activation, cfg.l2_activation)
    if cfg.structure_penalty:
        loss = loss + cfg.structure_penalty["weight"] * structure_penalty(outputs, cfg.structure_penalty["kind"])
    if cfg.self_similarity:
        if inputs is None:
            raise ValueError("the self-similarity term needs the networks' inputs")
        similarity = self_similarity_loss(inputs, outputs, cfg.self_similarity["radius"])
        loss = loss + cfg.self_similarity["weight"] * similarity
    anatomy = cfg.anatomy_settings
    if anatomy is not None:
        if info is None or "regions" not in info:
            raise ValueError("the anatomy term needs the patches' region masks (PatchSampler regions)")
        regions = info["regions"]
        term = anatomy_info_nce(
            critic_view,
            region_labels(regions),
            int(anatomy["block_size"]),
            critic=cfg.critic,
            tau=cfg.temperature,
            n_labels=2 ** regions.shape[1],
        )
        loss = loss + anatomy["weight"] * term
    return loss


def info_nce_term(
    outputs: Sequence[torch.Tensor], cfg: TrainingConfig, info: Mapping[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The InfoNCE with the negatives of ``training.negatives`` (docs/method.md, section 3).

    ``all`` (default): the paper's loss.
    ``exclude_near``: pairs of patches of the same image whose centres are closer than
    ``min_distance_px`` are no negatives of each other (:func:`comir.training.loss.near_pairs`; needs
    ``info``'s ``image`` and ``centre``). ``hard``: the negatives reweighted with
    concentration ``beta`` (:func:`comir.training.loss.negative_log_sum`).

    Parameters
    ----------
    outputs : Sequence[torch.Tensor]
        The points the critic compares: ``(N, C, H, W)`` per modality.
    cfg : TrainingConfig
        The run's settings: ``critic``, ``temperature`` and ``negatives``.
    info : Mapping[str, torch.Tensor] or None, optional
        The patches' ``image`` ``(N,)`` and ``centre`` ``(N, 2)``, for ``exclude_near``. Default None.

    Returns
    -------
    torch.Tensor
        The scalar InfoNCE.

    Raises
    ------
    ValueError
        If the strategy is unknown, or ``exclude_near`` has no ``info`` with ``centre``.
    """
    settings = cfg.negative_settings
    strategy = settings["strategy"]
    if strategy == "all":
        return info_nce(outputs, critic=cfg.critic, tau=cfg.temperature)
    if strategy == "exclude_near":
        if info is None or "centre" not in info:
            raise ValueError("negatives.strategy exclude_near needs the patches' images and centres")
        excluded = near_pairs(info["image"], info["centre"], float(settings["min_distance_px"]))
        return info_nce(outputs, critic=cfg.critic, tau=cfg.temperature, excluded=excluded)
    if strategy == "hard":
        return info_nce(outputs, critic=cfg.critic, tau=cfg.temperature, hard_beta=float(settings["beta"]))
    raise ValueError(f"training.negatives.strategy must be one of {NEGATIVE_STRATEGIES}, got {strategy!r}")

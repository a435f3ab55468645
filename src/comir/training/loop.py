"""Contrastive training of one network per modality: the loop and its resumable state (docs/method.md, section 5)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from comir.imaging.preprocess import SLOTS
from comir.io import atomic_path
from comir.network import precision
from comir.network.device import memory_format, resolve_device, to_device
from comir.network.model import Tiramisu, TiramisuConfig
from comir.training.ablations import network_inputs, pair_region_masks, share_blocks, third_network, unique_parameters
from comir.training.loss import equivariant_forward
from comir.training.objective import contrastive_loss
from comir.training.sampler import PatchSampler, TrainingBatches, batch_loader, loader_workers, split_batch
from comir.training.settings import TrainingConfig, check_loss_options, learning_rate_at

log = logging.getLogger(__name__)

# Seeds of the batch streams, with the run's seed: training patches and BatchNorm recalibration.
_TRAINING_STREAM, _RECALIBRATION_STREAM = 2, 6
# Validation batches are drawn once, from the stream [seed, 5].
_VALIDATION_STREAM = 5


def build_models(configs: Mapping[str, TiramisuConfig], seed: int) -> dict[str, Tiramisu]:
    """One network per modality; each initialised from its own fixed seed (paper Table 1).

    Parameters
    ----------
    configs : Mapping[str, TiramisuConfig]
        The architecture of each slot ``A`` and ``B``.
    seed : int
        The run's seed: torch's global generator is seeded with ``seed * 1000 + i`` before building
        the network of the ``i``-th slot.

    Returns
    -------
    dict[str, Tiramisu]
        The new networks by slot.
    """
    models = {}
    for offset, slot in enumerate(SLOTS):
        torch.manual_seed(seed * 1000 + offset)
        models[slot] = Tiramisu(configs[slot])
    return models


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """The networks' mixed precision, shared with inference (comir.network.precision; docs/method.md, section 5)."""
    return precision.autocast(device, enabled)


def train(
    models: Mapping[str, Tiramisu],
    train_pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    val_pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    cfg: TrainingConfig,
    resume_state: Path | None = None,
) -> pd.DataFrame:
    """Train in place; returns the per-epoch history (train and validation loss).

    With ``resume_state``, everything the run depends on (weights, optimiser, gradient
    scaler, every random generator, history) is saved there atomically after each
    epoch, and a run that finds a state of the same settings and data continues after
    its last epoch: an interrupted run gives the same networks as an uninterrupted one
    (docs/method.md, section 5). A state of other settings is ignored and replaced.

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks of the slots ``A`` and ``B`` (:func:`build_models`); trained in place, with
        B's first down blocks replaced by A's when ``shared_blocks`` is set.
    train_pairs : Sequence[tuple[numpy.ndarray, numpy.ndarray]]
        Aligned training pairs ``(A, B)`` of the networks' inputs, ``(C, H, W)`` each.
    val_pairs : Sequence[tuple[numpy.ndarray, numpy.ndarray]]
        Aligned validation pairs; empty: the validation batches are drawn from ``train_pairs``.
    cfg : TrainingConfig
        The run's settings.
    resume_state : pathlib.Path or None, optional
        The file of the resumable state; ``None`` (default): nothing is saved or resumed.

    Returns
    -------
    pandas.DataFrame
        One row per epoch: ``epoch``, ``step``, ``train_loss``, ``val_loss``, ``seconds``.

    Raises
    ------
    ValueError
        For loss options the loss cannot use (:func:`~comir.training.settings.check_loss_options`)
        or an unknown ``optimizer``.
    FloatingPointError
        When the training loss becomes non-finite.
    """
    check_loss_options(cfg)  # before anything changes the networks
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, cfg.threads))
    c4_generator = torch.Generator().manual_seed(cfg.seed + 3)
    torch.manual_seed(cfg.seed + 4)  # dropout masks
    share_blocks(models, cfg.shared_blocks)
    networks = third_network(models, cfg)
    sampler = PatchSampler(
        train_pairs,
        cfg.patch_size,
        cfg.rotation,
        cfg.flips,
        cfg.augmentation,
        cfg.elastic,
        regions=pair_region_masks(train_pairs, cfg),
    )
    info = cfg.needs_patch_info  # off by default: the batches are (A, B) as before
    training_batches = TrainingBatches(sampler, cfg.batch_size, cfg.seed, _TRAINING_STREAM, info=info)
    recalibration_batches = TrainingBatches(sampler, cfg.batch_size, cfg.seed, _RECALIBRATION_STREAM)
    workers = loader_workers(cfg.workers, device)
    val_images = val_pairs or train_pairs
    val_sampler = PatchSampler(val_images, cfg.patch_size, False, False, regions=pair_region_masks(val_images, cfg))
    val_rng = np.random.default_rng([cfg.seed, _VALIDATION_STREAM])
    draw = val_sampler.sample_with_info if info else val_sampler.sample
    validation = [draw(val_rng, cfg.batch_size, augment=False) for _ in range(cfg.validation_batches)]

    for model in networks.values():
        model.to(device, memory_format=memory_format(device))
    params = unique_parameters(networks)
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    elif cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'adam'")
    use_amp = precision.mixed_precision_enabled(device, cfg.mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaler(device, use_amp))

    history: list[dict[str, Any]] = []
    fingerprint = training_fingerprint(networks, train_pairs, val_pairs, cfg)
    state = load_training_state(resume_state, fingerprint) if resume_state is not None else None
    if state is not None:
        restore_training_state(state, networks, optimizer, scaler, c4_generator)
        history = list(state["history"])
        log.info("resumed from %s after epoch %d of %d", resume_state, state["epoch"], cfg.epochs)
    # One loader for the whole run, so that its workers start once and stay ahead across epochs.
    remaining = range(len(history) * cfg.steps_per_epoch, cfg.epochs * cfg.steps_per_epoch)
    batches = iter(batch_loader(training_batches, remaining, workers, device))
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        start = time.perf_counter()
        for model in networks.values():
            model.train()
        losses = []
        for index, arrays in enumerate(itertools.islice(batches, cfg.steps_per_epoch)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at((epoch - 1) * cfg.steps_per_epoch + index, cfg)
            loss = training_step(networks, arrays, cfg, optimizer, scaler, c4_generator, device, use_amp)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} at epoch {epoch}; lower the learning rate"
                )
            losses.append(loss.item())
        recalibration = range((epoch - 1) * cfg.validation_batches, epoch * cfg.validation_batches)
        recalibrate_batchnorm(networks, (recalibration_batches[i] for i in recalibration), cfg, device, use_amp)
        val_loss = evaluate_loss(networks, validation, cfg, device, use_amp)
        history.append(
            {
                "epoch": epoch,
                "step": epoch * cfg.steps_per_epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "seconds": time.perf_counter() - start,
            }
        )
        row = history[-1]
        log.info(
            "epoch %d/%d train %.4f val %.4f (%.1f s)", epoch, cfg.epochs, row["train_loss"], val_loss, row["seconds"]
        )
        if resume_state is not None:
            save_training_state(resume_state, fingerprint, history, networks, optimizer, scaler, c4_generator)
    if device.type == "cuda":
        log.info("peak GPU memory %.1f MiB", torch.cuda.max_memory_allocated(device) / 2**20)
    return pd.DataFrame(history)


def training_fingerprint(
    models: Mapping[str, Tiramisu],
    train_pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    val_pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    cfg: TrainingConfig,
) -> str:
    """A digest of what determines a training run: settings (not threads), architectures and data.

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks trained; their architectures count.
    train_pairs, val_pairs : Sequence[tuple[numpy.ndarray, numpy.ndarray]]
        The training and validation images; their shapes, dtypes and bytes count.
    cfg : TrainingConfig
        The settings, all but ``threads`` and ``workers`` (and ``negatives``/``anatomy`` when empty).

    Returns
    -------
    str
        A 32-character hexadecimal BLAKE2b digest.
    """
    digest = hashlib.blake2b(digest_size=16)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("threads", "workers")}
    for key in ("negatives", "anatomy"):  # options added later: off, a run keeps the fingerprint it had before them
        if not settings[key]:
            del settings[key]
    architectures = {slot: model.config.to_dict() for slot, model in models.items()}
    digest.update(json.dumps([settings, architectures], sort_keys=True).encode())
    for split, pairs in (("train", train_pairs), ("val", val_pairs)):
        digest.update(split.encode())
        for array in (image for pair in pairs for image in pair):
            digest.update(repr((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def save_training_state(
    path: Path,
    fingerprint: str,
    history: Sequence[Mapping[str, Any]],
    models: Mapping[str, Tiramisu],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    c4_generator: torch.Generator,
) -> None:
    """Everything needed to continue after the last epoch of ``history``, written atomically.

    Patches need no saved state: each batch is seeded by its step (:class:`TrainingBatches`).

    Parameters
    ----------
    path : pathlib.Path
        The state file to write.
    fingerprint : str
        The run's :func:`training_fingerprint`.
    history : Sequence[Mapping[str, Any]]
        The rows of the epochs done; their count is the epoch to continue after.
    models : Mapping[str, Tiramisu]
        The networks trained.
    optimizer : torch.optim.Optimizer
        The optimiser, with its state.
    scaler : torch.amp.GradScaler
        The gradient scaler.
    c4_generator : torch.Generator
        The generator of the C4 rotations; torch's global CPU and CUDA generators are saved too.
    """
    state = {
        "fingerprint": fingerprint,
        "epoch": len(history),
        "history": [dict(row) for row in history],
        "models": {slot: model.state_dict() for slot, model in models.items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "c4_rng": c4_generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state at ``path`` if it belongs to a run with this ``fingerprint``, else ``None``.

    A missing file gives ``None``; an unreadable one, or one of another fingerprint, is logged as a
    warning and gives ``None``.

    Parameters
    ----------
    path : pathlib.Path
        The state file written by :func:`save_training_state`.
    fingerprint : str
        The current run's :func:`training_fingerprint`.

    Returns
    -------
    dict[str, Any] or None
        The state (loaded on the CPU), or ``None``.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unreadable state is not worth failing over: train from the start
        log.warning("ignoring the training state %s, which cannot be read (%s)", path, error)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring the training state %s: it belongs to other settings or data", path)
        return None
    return state


def restore_training_state(  # noqa: D103 - the inverse of save_training_state
    state: Mapping[str, Any],
    models: Mapping[str, Tiramisu],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    c4_generator: torch.Generator,
) -> None:
    """The inverse of :func:`save_training_state`: put a loaded state back into the run's objects.

    Parameters
    ----------
    state : Mapping[str, Any]
        A state from :func:`load_training_state`.
    models : Mapping[str, Tiramisu]
        The networks, whose weights are loaded in place.
    optimizer : torch.optim.Optimizer
        The optimiser, whose state is loaded.
    scaler : torch.amp.GradScaler
        The gradient scaler, whose state is loaded when one was saved.
    c4_generator : torch.Generator
        The generator of the C4 rotations; torch's global CPU (and, when available, CUDA) generators
        are restored too.
    """
    for slot, model in models.items():
        model.load_state_dict(state["models"][slot])
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    c4_generator.set_state(state["c4_rng"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def training_step(
    models: Mapping[str, Tiramisu],
    arrays: Sequence[np.ndarray | torch.Tensor],
    cfg: TrainingConfig,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    c4_generator: torch.Generator,
    device: torch.device,
    use_amp: bool,
) -> torch.Tensor:
    """One optimisation step of the networks on one batch (A, B); returns the step's loss.

    C4 rotations (when configured), the contrastive loss under the run's precision, gradient
    scaling, and the gradient-norm clip of each network separately (the paper's). ``models``
    may hold the third network of ``third_view`` (:func:`third_network`).

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks, in the order of the batch's inputs (A, B[, third]).
    arrays : Sequence[numpy.ndarray or torch.Tensor]
        The batch: ``(A, B)`` patches, or ``(A, B, info)`` with the patches' info.
    cfg : TrainingConfig
        The run's settings.
    optimizer : torch.optim.Optimizer
        The optimiser, stepped once.
    scaler : torch.amp.GradScaler
        The gradient scaler (disabled unless float16 autocast).
    c4_generator : torch.Generator
        CPU generator of the C4 rotations (:func:`~comir.training.loss.equivariant_forward`).
    device : torch.device
        Where the networks are.
    use_amp : bool
        Whether the forward pass runs under autocast.

    Returns
    -------
    torch.Tensor
        The scalar loss of the step.
    """
    arrays, info = split_batch(arrays, device)
    batch = network_inputs([to_device(b, device) for b in arrays], cfg)
    with _autocast(device, use_amp):
        outputs = [
            equivariant_forward(models[slot], x, c4_generator) if cfg.equivariance else models[slot](x)
            for slot, x in zip(models, batch, strict=True)
        ]
        loss = contrastive_loss(outputs, cfg, batch, info)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    for model in models.values():
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss


@torch.no_grad()
def recalibrate_batchnorm(
    models: Mapping[str, Tiramisu],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    cfg: TrainingConfig,
    device: torch.device,
    use_amp: bool,
) -> None:
    """Re-estimate BatchNorm running statistics for the current weights.

    The exponential running averages lag behind weights that are still
    changing quickly, and inference (eval mode) uses them: without this, a
    short training run gives CoMIRs far worse than its training loss says.
    A cumulative average over fresh training ``batches`` matches the final weights.

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks, in the order of the batches' inputs; left in train mode.
    batches : Iterable[tuple[numpy.ndarray, numpy.ndarray]]
        Training batches ``(A, B)`` of patches, as :class:`TrainingBatches` makes them.
    cfg : TrainingConfig
        The run's settings (for the third network's input).
    device : torch.device
        Where the networks are.
    use_amp : bool
        Whether the forward passes run under autocast.
    """
    norms = [
        m for model in models.values() for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    saved = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    for model in models.values():
        model.train()
    for arrays in batches:
        batch = network_inputs([to_device(b, device) for b in arrays], cfg)
        with _autocast(device, use_amp):
            for slot, x in zip(models, batch, strict=True):
                models[slot](x)
    for bn, momentum in zip(norms, saved):
        bn.momentum = momentum


@torch.no_grad()
def evaluate_loss(
    models: Mapping[str, Tiramisu],
    batches: Sequence[tuple],
    cfg: TrainingConfig,
    device: torch.device,
    use_amp: bool,
) -> float:
    """Contrastive loss on fixed, unaugmented validation batches (no C4 rotation); ``(A, B[, info])`` each.

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks, in the order of the batches' inputs; left in eval mode.
    batches : Sequence[tuple]
        The validation batches, ``(A, B)`` or ``(A, B, info)``.
    cfg : TrainingConfig
        The run's settings (the loss's options).
    device : torch.device
        Where the networks are.
    use_amp : bool
        Whether the forward passes run under autocast.

    Returns
    -------
    float
        The mean loss over the batches.
    """
    for model in models.values():
        model.eval()
    values = []
    for batch in batches:
        arrays, info = split_batch(batch, device)
        inputs = network_inputs([to_device(x, device) for x in arrays], cfg)
        with _autocast(device, use_amp):
            outputs = [models[slot](x) for slot, x in zip(models, inputs, strict=True)]
            values.append(contrastive_loss(outputs, cfg, inputs, info).item())
    return float(np.mean(values))

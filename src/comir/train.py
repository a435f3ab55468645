"""Contrastive training of one network per modality (docs/method.md, section 5)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from comir import precision
from comir.augment import augment_patches, elastic_pairs
from comir.io import atomic_path, write_csv
from comir.loss import (
    NEGATIVE_STRATEGIES,
    activation_decay,
    anatomy_info_nce,
    equivariant_forward,
    highpass,
    info_nce,
    near_pairs,
    region_labels,
    self_similarity_loss,
    structure_penalty,
)
from comir.model import Tiramisu, TiramisuConfig
from comir.preprocess import SLOTS, rotation_crop

log = logging.getLogger(__name__)

_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
# Seeds of the batch streams, with the run's seed: training patches and BatchNorm recalibration.
_TRAINING_STREAM, _RECALIBRATION_STREAM = 2, 6
# Validation batches are drawn once, from the stream [seed, 5].
_VALIDATION_STREAM = 5


@dataclass(frozen=True)
class TrainingConfig:
    """The settings of one training run: the ``training`` section (schema defaults), seed and execution."""

    epochs: int = 23
    steps_per_epoch: int = 32
    batch_size: int = 32
    patch_size: int = 128
    optimizer: str = "sgd"  # "sgd" | "adam"
    learning_rate: float = 1e-2
    learning_rate_schedule: str = "constant"  # "constant" | "cosine"
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    critic: str = "mse"
    temperature: float = 0.5
    l1_activation: float = 1e-4
    l2_activation: float = 1e-4
    equivariance: bool = True
    rotation: bool = True
    flips: bool = True
    augmentation: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # per slot (comir.augment)
    # Ablations beyond the paper, each off by default (docs/method.md, section 5, "Ablations").
    elastic: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # shared elastic deformation
    critic_highpass_sigma: float | None = None  # CoMIRs high-passed before the critic
    structure_penalty: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {kind, weight}
    self_similarity: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {weight, radius}
    shared_blocks: int = 0  # down blocks (with their transitions) shared by the two networks
    third_view: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {from, view}: a third network
    # Beyond the paper, off by default (docs/method.md, sections 3 and 5); {} keeps the paper's loss.
    negatives: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {strategy, min_distance_px, beta}
    anatomy: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {masks, weight, block_size, ...}
    validation_batches: int = 4
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    mixed_precision: bool = True  # CUDA only
    seed: int = 0
    # How the run is executed, not what it computes (left out of the resume fingerprint):
    threads: int = 1
    workers: int | None = None  # loader processes; None: see loader_workers

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int, threads: int, workers: int | None = None) -> TrainingConfig:
        """From a validated ``training`` section, the run's seed, threads and loader workers."""
        return cls(seed=seed, threads=threads, workers=workers, **dict(cfg))

    @property
    def negative_settings(self) -> dict[str, Any]:
        """``negatives`` with the schema's defaults (:data:`NEGATIVES_DEFAULTS`) and ``min_distance_px`` filled in.

        An absent ``min_distance_px`` is the patch size: two patches whose centres are closer overlap.
        """
        settings = {**NEGATIVES_DEFAULTS, **self.negatives}
        if settings.get("min_distance_px") is None:
            settings["min_distance_px"] = float(self.patch_size)
        return settings

    @property
    def anatomy_settings(self) -> dict[str, Any] | None:
        """``anatomy`` with the schema's defaults (:data:`ANATOMY_DEFAULTS`), or ``None`` when it is off."""
        return {**ANATOMY_DEFAULTS, **self.anatomy} if self.anatomy else None

    @property
    def needs_patch_info(self) -> bool:
        """Whether the loss needs the patches' images, centres or masks (:meth:`PatchSampler.sample_with_info`)."""
        return bool(self.anatomy) or self.negative_settings["strategy"] == "exclude_near"


# The schema's defaults inside ``training.negatives`` and ``training.anatomy`` (tests/test_anatomy_loss.py checks
# them against the schema), for configurations built in code, where the validator fills nothing in.
NEGATIVES_DEFAULTS: dict[str, Any] = {"strategy": "all", "beta": 1.0}
ANATOMY_DEFAULTS: dict[str, Any] = {
    "masks": "auto",
    "block_size": 16,
    "tissue_from": "A",
    "optical_density": 0.15,
    "signal_from": "B",
    "signal_percentile": 75.0,
}


def region_masks(
    bright_field: np.ndarray | None,
    signal: np.ndarray | None,
    optical_density: float = 0.15,
    signal_percentile: float = 75.0,
) -> np.ndarray:
    """Binary region masks ``(K, H, W)`` float32 of one aligned training pair (``training.anatomy``, ``masks: auto``).

    Args:
        bright_field: ``(C, H, W)`` transmitted-light image in [0, 1] (network
            input) or ``None``. Tissue: the mean over channels of the optical
            density ``-ln(max(I, 1e-3))`` above ``optical_density`` (glass
            transmits all light, OD ~ 0; Macenko's tissue threshold, 0.15).
        signal: ``(C, H, W)`` image whose bright pixels are the structure of
            interest (SHG: collagen), or ``None``. Signal: the channel mean
            strictly above its ``signal_percentile``-th percentile over this
            image (per image, so a dim or bright acquisition marks the same
            share; a constant image marks nothing).
        optical_density, signal_percentile: thresholds.

    Returns:
        The tissue mask (when ``bright_field`` is given), then the signal mask
        (when ``signal`` is given), 1.0 inside, 0.0 outside: ``K`` is 0, 1 or 2.
    """
    masks = []
    if bright_field is not None:
        density = -np.log(np.clip(np.asarray(bright_field, dtype=np.float64), 1e-3, None)).mean(axis=0)
        masks.append(density > optical_density)
    if signal is not None:
        intensity = np.asarray(signal, dtype=np.float64).mean(axis=0)
        masks.append(intensity > np.percentile(intensity, signal_percentile))
    if bright_field is not None and signal is not None and masks[0].shape != masks[1].shape:
        raise ValueError(f"region masks of images of different sizes: {masks[0].shape} and {masks[1].shape}")
    if not masks:
        return np.zeros((0, 0, 0), dtype=np.float32)
    return np.stack(masks).astype(np.float32)


def pair_region_masks(pairs: Sequence[tuple[np.ndarray, np.ndarray]], cfg: TrainingConfig) -> list[np.ndarray] | None:
    """Per training pair its :func:`region_masks` as ``training.anatomy`` configures them; ``None`` when it is off."""
    settings = cfg.anatomy_settings
    if settings is None:
        return None
    if settings["masks"] != "auto":
        raise ValueError(
            f"training.anatomy.masks must be 'auto' (masks from files are not supported), got {settings['masks']!r}"
        )
    tissue, signal = settings["tissue_from"], settings["signal_from"]
    if tissue is None and signal is None:
        raise ValueError("training.anatomy needs tissue_from or signal_from: no region would be defined")
    return [
        region_masks(
            pair[SLOTS.index(tissue)] if tissue is not None else None,
            pair[SLOTS.index(signal)] if signal is not None else None,
            settings["optical_density"],
            settings["signal_percentile"],
        )
        for pair in pairs
    ]


def check_loss_options(cfg: TrainingConfig) -> None:
    """Refuse ``negatives`` and ``anatomy`` settings the loss cannot use (before any work is done)."""
    strategy = cfg.negative_settings["strategy"]
    if strategy not in NEGATIVE_STRATEGIES:
        raise ValueError(f"training.negatives.strategy must be one of {NEGATIVE_STRATEGIES}, got {strategy!r}")
    settings = cfg.anatomy_settings
    if settings is not None:
        if "weight" not in settings:
            raise ValueError("training.anatomy needs a weight")
        if cfg.patch_size % int(settings["block_size"]):
            raise ValueError(
                f"training.anatomy.block_size {settings['block_size']} must divide the patch size {cfg.patch_size}"
            )


def loader_workers(configured: int | None, device: torch.device) -> int:
    """Processes that make training batches: as configured, else none on CPU and up to 4 beside a GPU.

    On CPU the cores are better spent on the network (batches are made in the training
    process); a GPU would otherwise wait for patches.
    """
    if configured is not None:
        return int(configured)
    if device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def resolve_device(name: str) -> torch.device:
    """The device of a configuration's ``device``: ``auto`` is CUDA when PyTorch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but PyTorch sees no CUDA device")
    return torch.device(name)


# cv2.warpAffine interpolates at most 4 channels with cubic interpolation: wider stacks are warped in chunks.
_WARP_CHANNELS = 4


class PatchSampler:
    """Random aligned patch pairs with the same geometric augmentation for both modalities.

    docs/method.md, section 5. A patch is placed where a crop of
    ``rotation_crop(P)`` px fits in the image, so that any rotation about the
    crop's centre keeps every output pixel inside the image (no padding). The
    ``P x P`` patch is then resampled in one step straight from the image: one
    affine map from patch to image pixels combines the position, the rotation
    and the flips, so only the ``P^2`` output pixels are interpolated. Each
    training pair is kept as channel-last chunks holding both modalities, so
    one warp moves both alike.

    ``regions`` (optional, ``training.anatomy``): per training pair ``(K, H, W)``
    region masks (:func:`region_masks`), kept as chunks of their own after the
    image chunks and cut, warped and elastically deformed with the patch but
    never intensity-augmented; they change no draw and no image patch.
    """

    def __init__(
        self,
        images: Sequence[tuple[np.ndarray, np.ndarray]],
        patch_size: int,
        rotation: bool,
        flips: bool,
        augmentation: Mapping[str, Mapping[str, Any]] | None = None,
        elastic: Mapping[str, Any] | None = None,
        regions: Sequence[np.ndarray] | None = None,
    ):
        self.augmentation = dict(augmentation or {})  # per slot: comir.augment's transforms
        self.elastic = dict(elastic or {})  # both slots alike: comir.augment.elastic_pairs
        self.patch = patch_size
        self.rotation = rotation
        self.flips = flips
        self.crop = rotation_crop(patch_size) if rotation else patch_size
        for a, _ in images:
            if min(a.shape[1:]) < self.crop:
                raise ValueError(f"training image of shape {a.shape[1:]} is smaller than the {self.crop} px crop")
        self.channels_a = images[0][0].shape[0]
        self.channels = self.channels_a + images[0][1].shape[0]
        # (C, H, W) pairs -> per pair, (H, W, <= 4) chunks of the A-then-B channels, contiguous for
        # OpenCV. As tensors, loader workers receive them through shared memory (PyTorch moves a
        # tensor there when it is sent to another process) instead of a copy per worker.
        self.chunks = [
            [
                torch.from_numpy(
                    np.ascontiguousarray(stack[c : c + _WARP_CHANNELS].transpose(1, 2, 0), dtype=np.float32)
                )
                for c in range(0, self.channels, _WARP_CHANNELS)
            ]
            for stack in (np.concatenate(pair, axis=0) for pair in images)
        ]
        self.region_channels = 0
        if regions is not None:
            if len(regions) != len(images):
                raise ValueError(f"{len(regions)} region masks for {len(images)} training pairs")
            self.region_channels = regions[0].shape[0]
            for chunks, masks, (a, _) in zip(self.chunks, regions, images, strict=True):
                if masks.shape != (self.region_channels, *a.shape[1:]):
                    raise ValueError(f"region masks of shape {masks.shape} for an image of shape {a.shape}")
                chunks.extend(
                    torch.from_numpy(
                        np.ascontiguousarray(masks[c : c + _WARP_CHANNELS].transpose(1, 2, 0), dtype=np.float32)
                    )
                    for c in range(0, self.region_channels, _WARP_CHANNELS)
                )
        areas = np.array([a.shape[1] * a.shape[2] for a, _ in images], dtype=float)
        self.weights = areas / areas.sum()  # large images contribute proportionally more patches

    def sample(self, rng: np.random.Generator, n: int, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``n`` patch pairs as ``(n, C_A, P, P)`` and ``(n, C_B, P, P)`` float32 arrays."""
        batch_a, batch_b, _ = self.sample_with_info(rng, n, augment)
        return batch_a, batch_b

    def sample_with_info(
        self, rng: np.random.Generator, n: int, augment: bool = True
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """:meth:`sample`'s patch pairs (the same draws) and what is known of each patch.

        The info: ``image`` ``(n,)`` int64, the index of the training pair it was cut
        from; ``centre`` ``(n, 2)`` float64, its centre (x, y) in that image's pixels
        (rotation and flips turn the patch about it; an elastic deformation moves the
        content by at most ``alpha`` px); with ``regions``, ``regions``
        ``(n, K, P, P)`` float32, the region masks resampled like the patch (interpolated
        values in about [0, 1]).
        """
        patches = np.empty((n, self.patch, self.patch, self.channels + self.region_channels), dtype=np.float32)
        crop = self.crop if augment else self.patch
        images = rng.choice(len(self.chunks), size=n, p=self.weights)
        centres = np.empty((n, 2), dtype=np.float64)
        for i, index in enumerate(images):
            chunks = [chunk.numpy() for chunk in self.chunks[index]]
            height, width = chunks[0].shape[:2]
            y = int(rng.integers(0, height - crop + 1))
            x = int(rng.integers(0, width - crop + 1))
            angle = float(rng.uniform(-180, 180)) if augment and self.rotation else 0.0
            interpolation = _INTERPOLATIONS[int(rng.integers(len(_INTERPOLATIONS)))]
            flip_h, flip_v = (rng.random(2) < 0.5) if augment and self.flips else (False, False)
            half = (crop - self.patch) // 2 + (self.patch - 1) / 2  # crop corner to patch centre
            centres[i] = (x + half, y + half)
            if not (angle or flip_h or flip_v):
                offset = (crop - self.patch) // 2
                top, left = y + offset, x + offset
                window = (slice(top, top + self.patch), slice(left, left + self.patch))
                patches[i] = np.concatenate([c[window] for c in chunks], axis=-1)
                continue
            matrix = self._patch_to_image(x, y, crop, angle, flip_h, flip_v)
            start = 0
            for chunk in chunks:
                warped = cv2.warpAffine(
                    chunk,
                    matrix,
                    (self.patch, self.patch),
                    flags=interpolation | cv2.WARP_INVERSE_MAP,
                    borderMode=cv2.BORDER_REFLECT_101,  # only a cubic kernel's outer taps can reach it
                )
                width_c = chunk.shape[2]
                patches[i, :, :, start : start + width_c] = warped.reshape(self.patch, self.patch, width_c)
                start += width_c
        channel_first = patches.transpose(0, 3, 1, 2)
        batch_a = np.ascontiguousarray(channel_first[:, : self.channels_a])
        batch_b = np.ascontiguousarray(channel_first[:, self.channels_a : self.channels])
        regions = np.ascontiguousarray(channel_first[:, self.channels :])
        if augment and self.elastic:
            if self.region_channels:  # the masks are deformed with B (elastic_pairs deforms every channel alike)
                batch_a, both = elastic_pairs(batch_a, np.concatenate([batch_b, regions], axis=1), self.elastic, rng)
                batch_b = np.ascontiguousarray(both[:, : batch_b.shape[1]])
                regions = np.ascontiguousarray(both[:, batch_b.shape[1] :])
            else:
                batch_a, batch_b = elastic_pairs(batch_a, batch_b, self.elastic, rng)
        if augment and self.augmentation:  # drawn after every geometric choice: the same places either way
            batch_a = augment_patches(batch_a, self.augmentation.get("A", {}), rng)
            batch_b = augment_patches(batch_b, self.augmentation.get("B", {}), rng)
        info = {"image": images.astype(np.int64), "centre": centres}
        if self.region_channels:
            info["regions"] = regions
        return batch_a, batch_b, info

    def _patch_to_image(self, x: int, y: int, crop: int, angle: float, flip_h: bool, flip_v: bool) -> np.ndarray:
        """The 2x3 map from patch pixels to image pixels: flips, then a rotation about the patch's centre.

        Without rotation the patch is the centre ``P`` px of the crop, pixel for pixel (flips
        included), so only a rotation interpolates; rotated, it stays inside the crop.
        """
        theta = math.radians(angle)
        rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        linear = rotation * np.array([-1.0 if flip_h else 1.0, -1.0 if flip_v else 1.0])  # column scaling = flip first
        half = (self.patch - 1) / 2
        offset = (crop - self.patch) // 2 + half
        centre = np.array([x + offset, y + offset])
        return np.hstack([linear, (centre - linear @ np.array([half, half]))[:, None]])


class TrainingBatches(torch.utils.data.Dataset):
    """Batch number ``index`` of one seeded stream of patch pairs.

    Each batch draws from its own generator, seeded by ``(seed, stream, index)``,
    so a batch does not depend on which process makes it or on the batches
    before it: loader workers, an in-process loop and a resumed run all see the
    same patches (docs/method.md, section 5). With ``info`` a batch is ``(A, B,
    info)`` (:meth:`PatchSampler.sample_with_info`, the same patches), else ``(A, B)``.
    """

    def __init__(
        self, sampler: PatchSampler, batch_size: int, seed: int, stream: int, augment: bool = True, info: bool = False
    ):
        self.sampler = sampler
        self.batch_size = batch_size
        self.key = (int(seed), int(stream))
        self.augment = augment
        self.info = info

    def __len__(self) -> int:
        return 2**31 - 1  # indexed by step, never iterated whole

    def __getitem__(self, index: int) -> tuple:
        rng = np.random.default_rng([*self.key, int(index)])
        if self.info:
            return self.sampler.sample_with_info(rng, self.batch_size, self.augment)
        return self.sampler.sample(rng, self.batch_size, self.augment)


def split_batch(
    batch: Sequence[Any], device: torch.device
) -> tuple[list[np.ndarray | torch.Tensor], dict[str, torch.Tensor] | None]:
    """A batch's image arrays and its patch info (on ``device``; ``None`` for a batch without one)."""
    if len(batch) == 3 and isinstance(batch[2], Mapping):
        info = {key: torch.as_tensor(value).to(device, non_blocking=True) for key, value in batch[2].items()}
        return list(batch[:2]), info
    return list(batch), None


def _one_thread_per_worker(_: int) -> None:
    # Loader workers run side by side: each uses one core, not OpenCV's whole pool.
    cv2.setNumThreads(1)


def batch_loader(
    batches: TrainingBatches, indices: range, workers: int, device: torch.device
) -> torch.utils.data.DataLoader:
    """The batches ``indices`` in order, made by ``workers`` processes (0: in this process) ahead of use.

    Workers are spawned, not forked: a process forked from one whose OpenMP, OpenCV or ITK thread
    pools are running can deadlock. The training images reach them through shared memory. On
    CUDA the batches land in pinned memory so that copies to the GPU overlap the step.
    """
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=indices,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_one_thread_per_worker if workers else None,
        prefetch_factor=4 if workers else None,
        multiprocessing_context="spawn" if workers else None,
        persistent_workers=False,
    )


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU, PyTorch's default on CUDA.

    Channels-last is the faster layout for a training step on CPU (benchmarks/bench_network.py;
    timings: docs/results/speed.md).
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` in its memory format (the copy overlaps computation from pinned memory)."""
    tensor = torch.as_tensor(array)
    return tensor.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))


def build_models(configs: Mapping[str, TiramisuConfig], seed: int) -> dict[str, Tiramisu]:
    """One network per modality; each initialised from its own fixed seed (paper Table 1)."""
    models = {}
    for offset, slot in enumerate(SLOTS):
        torch.manual_seed(seed * 1000 + offset)
        models[slot] = Tiramisu(configs[slot])
    return models


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """The networks' mixed precision, shared with inference (comir.precision; docs/method.md, section 5)."""
    return precision.autocast(device, enabled)


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
    (:func:`comir.loss.anatomy_info_nce`, on what the critic sees) with its
    weight; both need the patches' ``info`` (:meth:`PatchSampler.sample_with_info`)
    where they use it.  Every term casts the outputs up and computes in float32
    with autocast disabled itself, so the loss is the same inside the
    training's autocast context as outside it.
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

    ``all`` (default): the paper's loss, the same call as before the option existed.
    ``exclude_near``: pairs of patches of the same image whose centres are closer than
    ``min_distance_px`` are no negatives of each other (:func:`comir.loss.near_pairs`; needs
    ``info``'s ``image`` and ``centre``). ``hard``: the negatives reweighted with
    concentration ``beta`` (:func:`comir.loss.negative_log_sum`).
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


THIRD_VIEWS = ("grey", "sobel", "haematoxylin")
# The third network's slot and its seed offset (A and B use 0 and 1, build_models).
THIRD_SLOT = "C"


def derived_view(patches: torch.Tensor, view: str) -> torch.Tensor:
    """A single-channel view of a modality's patches ``(N, C, H, W)`` in [0, 1], for the third network.

    ``grey``: the channel mean; ``sobel``: the gradient magnitude of the grey
    image (:class:`comir.model.InputFilters`); ``haematoxylin``: the
    haematoxylin optical density of an RGB bright-field patch (Ruifrok and
    Johnston's colour deconvolution, :mod:`comir.augment`).
    """
    from comir.augment import HED_FROM_RGB
    from comir.model import InputFilters

    if view == "grey":
        return patches.mean(dim=1, keepdim=True)
    if view == "sobel":
        return InputFilters(("sobel",)).to(patches.device)(patches)[:, -1:]
    if view == "haematoxylin":
        density = -torch.log(patches.float().clamp(1e-3, 1.0))
        unmix = torch.as_tensor(HED_FROM_RGB[:, 0], dtype=density.dtype, device=density.device)
        return torch.einsum("nchw,c->nhw", density, unmix)[:, None].to(patches.dtype)
    raise ValueError(f"third view must be one of {THIRD_VIEWS}, got {view!r}")


def network_inputs(batch: Sequence[torch.Tensor], cfg: TrainingConfig) -> list[torch.Tensor]:
    """The networks' inputs of a batch: A, B and, with ``third_view``, the view derived from one of them."""
    if not cfg.third_view:
        return list(batch)
    return [*batch, derived_view(batch[SLOTS.index(cfg.third_view["from"])], cfg.third_view["view"])]


def third_network(models: Mapping[str, Tiramisu], cfg: TrainingConfig) -> dict[str, Tiramisu]:
    """The networks trained: A and B and, with ``third_view``, a third one of A's architecture on one channel.

    The third network adds a third view to the InfoNCE (M = 3 points per place,
    docs/method.md, section 3); it is not part of the model file, whose CoMIRs
    are A's and B's.
    """
    if not cfg.third_view:
        return dict(models)
    torch.manual_seed(cfg.seed * 1000 + 2)
    config = dataclasses.replace(models["A"].config, in_channels=1)
    return {**models, THIRD_SLOT: Tiramisu(config)}


def learning_rate_at(step: int, cfg: TrainingConfig) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of the run.

    ``constant``: ``learning_rate`` (the paper's). ``cosine``: half a cosine from
    ``learning_rate`` to 0 over the steps after the warm-up. ``warmup_steps``:
    a linear ramp from ``learning_rate / (warmup_steps + 1)`` up to it first.
    Computed from the step alone, so a resumed run continues the schedule.
    """
    base = float(cfg.learning_rate)
    warmup = int(cfg.warmup_steps)
    if step < warmup:
        return base * (step + 1) / (warmup + 1)
    if cfg.learning_rate_schedule == "constant":
        return base
    if cfg.learning_rate_schedule != "cosine":
        raise ValueError(f"learning_rate_schedule must be constant or cosine, got {cfg.learning_rate_schedule!r}")
    total = max(1, cfg.epochs * cfg.steps_per_epoch - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / total))


def share_blocks(models: Mapping[str, Tiramisu], count: int) -> None:
    """Make the first ``count`` down blocks and their transitions of network B those of network A.

    Each network keeps its own first convolution (the stem: the modalities'
    channel counts differ) and everything after the shared blocks; the shared
    modules are one set of parameters, trained by both modalities' batches
    (the ablation ``training.shared_blocks``).  The state_dicts still hold
    every parameter, so saved networks load and run independently.
    """
    a, b = models["A"], models["B"]
    if count > len(a.down_blocks):
        raise ValueError(f"shared_blocks is {count} but the networks have {len(a.down_blocks)} down blocks")
    if a.first_conv.out_channels != b.first_conv.out_channels:
        raise ValueError("shared blocks need the same init_filters in both networks")
    for index in range(count):
        b.down_blocks[index] = a.down_blocks[index]
        b.transitions_down[index] = a.transitions_down[index]


def unique_parameters(models: Mapping[str, Tiramisu]) -> list[torch.nn.Parameter]:
    """Every parameter of the networks once (shared blocks would otherwise be stepped twice)."""
    return list({id(p): p for model in models.values() for p in model.parameters()}.values())


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
    """A digest of what determines a training run: settings (not threads), architectures and data."""
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
    """The saved state at ``path`` if it belongs to a run with this ``fingerprint``, else ``None``."""
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
    """Contrastive loss on fixed, unaugmented validation batches (no C4 rotation); ``(A, B[, info])`` each."""
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


# Percentiles of the network input recorded per modality in the model file (``input_statistics``),
# with its minimum and maximum; the apply stage compares new images with them (comir.apply).
INPUT_PERCENTILES = (0.1, 50.0, 99.9)
# Pixels (over all images of a modality, channels pooled) behind those percentiles: an even stride through each
# image, so that the statistics of many large images stay cheap; the minimum and maximum use every pixel.
STATISTICS_SAMPLES = 1 << 22


def input_statistics(images: Sequence[np.ndarray], valid: Sequence[np.ndarray | None] | None = None) -> dict:
    """The percentiles :data:`INPUT_PERCENTILES` (``p0.1``, ``p50``, ``p99.9``), ``min`` and ``max`` of network inputs.

    ``images``: prepared (C, H, W) arrays as :func:`comir.preprocess.prepare_modality_image` returns them
    (after scaling, stain normalisation, log1p), channels pooled; ``valid``: per image an (H, W) mask of the
    pixels to use (None: all).  Plain floats, so the model file still loads with ``weights_only``.
    """
    valid = [None] * len(images) if valid is None else list(valid)
    per_image = max(1, STATISTICS_SAMPLES // max(1, len(images)))
    samples, low, high = [], math.inf, -math.inf
    for image, mask in zip(images, valid, strict=True):
        values = np.asarray(image)[:, mask] if mask is not None and mask.any() else np.asarray(image)
        values = values.ravel()
        low, high = min(low, float(values.min())), max(high, float(values.max()))
        samples.append(values[:: -(-values.size // per_image)])  # at most per_image values
    levels = np.percentile(np.concatenate(samples), INPUT_PERCENTILES)
    return {
        **{f"p{q:g}": float(v) for q, v in zip(INPUT_PERCENTILES, levels, strict=True)},
        "min": low,
        "max": high,
    }


def modality_statistics(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """:func:`input_statistics` per modality slot of prepared training pairs (``load_split``), for the model file."""
    return {slot: input_statistics([pair[index] for pair in pairs]) for index, slot in enumerate(SLOTS)}


# Version of the model file's layout: a reader refuses files of a newer layout instead of misreading
# them. Files without the key (written before it existed) are version 1. Keys added since (e.g.
# ``input_statistics``) are optional: readers skip what they need when it is absent.
CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, models: Mapping[str, Tiramisu], meta: Mapping[str, Any]) -> None:
    """state_dicts plus everything needed to rebuild the networks (never a pickled module), versioned."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dicts": {slot: {k: v.cpu() for k, v in m.state_dict().items()} for slot, m in models.items()},
        "model_configs": {slot: m.config.to_dict() for slot, m in models.items()},
        **meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, Tiramisu], dict[str, Any]]:
    """The networks of a checkpoint (eval mode, on ``device``) and its whole payload (``weights_only``).

    A file of a newer layout than :data:`CHECKPOINT_FORMAT` is a :class:`ValueError` saying so.
    """
    payload = torch.load(path, map_location=device, weights_only=True)
    version = payload.get("format", 1)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is a model file of format {version!r}; this version of comir reads format "
            f"{CHECKPOINT_FORMAT} and older: update comir"
        )
    models = {}
    for slot, config in payload["model_configs"].items():
        model = Tiramisu(TiramisuConfig.from_dict(config))
        model.load_state_dict(payload["state_dicts"][slot])
        models[slot] = model.to(device).eval()
    return models, payload


def write_history(history: pd.DataFrame, csv_path: Path, plot_path: Path) -> None:
    """The loss history as CSV and as a plot of training and validation loss per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_csv(csv_path, history)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["step"], history["train_loss"], marker="o", label="training (augmented, C4)")
    ax.plot(history["step"], history["val_loss"], marker="s", label="validation (fixed patches)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("contrastive loss (InfoNCE + activation decay)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(plot_path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def model_configs(dataset: Mapping[str, Any]) -> dict[str, TiramisuConfig]:
    """The two networks' architectures: same hyper-parameters, each with its modality's input channels."""
    model = dict(dataset["model"])
    for key in ("down_blocks", "up_blocks"):
        if model.get(key) is not None:
            model[key] = tuple(model[key])
    return {slot: TiramisuConfig(in_channels=dataset["modalities"][slot]["channels"], **model) for slot in SLOTS}

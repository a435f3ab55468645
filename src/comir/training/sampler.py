"""Training batches: random aligned patch pairs, seeded per batch, made ahead by loader workers.

docs/method.md, section 5: :class:`PatchSampler` cuts padding-free rotated and
flipped patch pairs (with :mod:`comir.training.augment`'s transforms),
:class:`TrainingBatches` seeds each batch by its step, :func:`batch_loader`
makes them in worker processes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from comir.imaging.preprocess import rotation_crop
from comir.training.augment import augment_patches, elastic_pairs

_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
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
    region masks (:func:`comir.training.ablations.region_masks`), kept as chunks of their own after the
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
        self.augmentation = dict(augmentation or {})  # per slot: comir.training.augment's transforms
        self.elastic = dict(elastic or {})  # both slots alike: comir.training.augment.elastic_pairs
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
        """``n`` patch pairs as ``(n, C_A, P, P)`` and ``(n, C_B, P, P)`` float32 arrays.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of every draw (images, positions, rotations, flips, interpolation, augmentation).
        n : int
            Number of pairs.
        augment : bool, optional
            Whether to rotate, flip and augment the patches; False cuts plain ``P`` px windows (no
            rotation, flips, elastic or intensity augmentation). Default True.

        Returns
        -------
        tuple of numpy.ndarray
            The patches of A and of B.
        """
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

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of every draw.
        n : int
            Number of pairs.
        augment : bool, optional
            Whether to rotate, flip and augment the patches. Default True.

        Returns
        -------
        batch_a, batch_b : numpy.ndarray
            ``(n, C_A, P, P)`` and ``(n, C_B, P, P)`` float32 patches.
        info : dict[str, numpy.ndarray]
            ``image``, ``centre`` and, with ``regions``, ``regions``.
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
    """A batch's image arrays and its patch info (on ``device``; ``None`` for a batch without one).

    Parameters
    ----------
    batch : Sequence[Any]
        ``(A, B)`` or ``(A, B, info)`` as :class:`TrainingBatches` gives it.
    device : torch.device
        Where the info's tensors are put (the arrays are left where they are).

    Returns
    -------
    arrays : list of numpy.ndarray or torch.Tensor
        The batch's patches of A and B.
    info : dict[str, torch.Tensor] or None
        The info as tensors on ``device``, or ``None``.
    """
    if len(batch) == 3 and isinstance(batch[2], Mapping):
        info = {key: torch.as_tensor(value).to(device, non_blocking=True) for key, value in batch[2].items()}
        return list(batch[:2]), info
    return list(batch), None


def loader_workers(configured: int | None, device: torch.device) -> int:
    """Processes that make training batches: as configured, else none on CPU and up to 4 beside a GPU.

    On CPU the cores are better spent on the network (batches are made in the training
    process); a GPU would otherwise wait for patches.

    Parameters
    ----------
    configured : int or None
        The configured count (``training.workers``); ``None``: choose.
    device : torch.device
        Where the networks train.

    Returns
    -------
    int
        ``configured``; else 0 on CPU, and ``min(4, cores - 1)`` (at least 1) elsewhere.
    """
    if configured is not None:
        return int(configured)
    if device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


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

    Parameters
    ----------
    batches : TrainingBatches
        The seeded batch stream.
    indices : range
        The batch numbers (steps) to make, in this order.
    workers : int
        Number of loader processes (:func:`loader_workers`); each uses one OpenCV thread and keeps
        4 batches ahead.
    device : torch.device
        Where the networks train; CUDA pins the batches' memory.

    Returns
    -------
    torch.utils.data.DataLoader
        An iterable of the batches, unbatched (each item is one of ``batches``' batches).
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

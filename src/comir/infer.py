"""Compute CoMIRs of whole images with bounded memory (method notes, section 6)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comir.io import atomic_path, read_image, to_uint8, write_png, write_tiff
from comir.model import Tiramisu
from comir.preprocess import prepare_image
from comir.train import memory_format, to_device


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@torch.no_grad()
def compute_comir(
    model: Tiramisu,
    image: np.ndarray,
    tile: int = 512,
    margin: int = 64,
    device: torch.device | str = "cpu",
    mixed_precision: bool = True,
) -> np.ndarray:
    """(C_in, H, W) float32 -> (C_out, H, W) float32 CoMIR.

    The image is reflect-padded and cut into tiles of at most ``tile`` px
    whose outputs are kept only in their centre: each tile is run with
    ``margin`` px of context on every side, so seams vanish once the margin
    covers the network's effective receptive field. Both sizes are rounded up
    to the network's multiple (2^depth); padding never crops content. Peak
    memory depends on ``tile + 2 * margin``, not on the image size.
    """
    device = torch.device(device)
    model.eval().to(device, memory_format=memory_format(device))
    multiple = model.config.multiple
    margin = _round_up(margin, multiple)
    _, height, width = image.shape
    tile_y = min(_round_up(tile, multiple), _round_up(height, multiple))
    tile_x = min(_round_up(tile, multiple), _round_up(width, multiple))
    rows, cols = math.ceil(height / tile_y), math.ceil(width / tile_x)
    padded = np.pad(
        image,
        ((0, 0), (margin, margin + rows * tile_y - height), (margin, margin + cols * tile_x - width)),
        mode="reflect",
    )
    output = np.empty((model.config.out_channels, rows * tile_y, cols * tile_x), dtype=np.float32)
    use_amp = mixed_precision and device.type == "cuda"
    autocast = torch.autocast(device_type="cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
    with autocast:
        for row in range(rows):
            for col in range(cols):
                y, x = row * tile_y, col * tile_x
                window = padded[:, y : y + tile_y + 2 * margin, x : x + tile_x + 2 * margin]
                result = model(to_device(np.ascontiguousarray(window)[None], device))
                core = result[0, :, margin : margin + tile_y, margin : margin + tile_x]
                output[:, y : y + tile_y, x : x + tile_x] = core.float().cpu().numpy()
    return output[:, :height, :width]


def preview(comir: np.ndarray) -> np.ndarray:
    """An 8-bit picture of a (C, H, W) CoMIR: grey for 1 channel, RGB of the first three otherwise."""
    if comir.shape[0] == 1:
        return to_uint8(comir[0])
    channels = [to_uint8(c) for c in comir[:3]]
    while len(channels) < 3:
        channels.append(np.zeros_like(channels[0]))
    return np.stack(channels, axis=-1)


def comir_test_set(
    models: Mapping[str, Tiramisu],
    cases: Sequence[str],
    image_dir: Path,
    out_dir: Path,
    preview_dir: Path,
    modalities: Mapping[str, Mapping[str, Any]],
    tile: int,
    margin: int,
    device: torch.device | str,
) -> None:
    """CoMIR (float32 TIFF, channel-last) and an 8-bit preview of every test patch."""
    for case in cases:
        for slot, model in models.items():
            for role in ("ref", "flo"):
                name = f"{case}_{slot}_{role}"
                spec = modalities[slot]
                image = prepare_image(read_image(image_dir / f"{name}.tif"), spec["channels"], spec["log1p"], name)
                comir = compute_comir(model, image, tile=tile, margin=margin, device=device)
                write_tiff(out_dir / f"{name}.tif", comir[0] if comir.shape[0] == 1 else np.moveaxis(comir, 0, -1))
                write_png(preview_dir / f"{name}.png", preview(comir))


def plot_examples(
    cases: Sequence[str], image_dir: Path, comir_dir: Path, modalities: Mapping[str, Mapping[str, Any]], path: Path
) -> None:
    """Grid: one row per case - modality A, modality B, CoMIR A, CoMIR B (reference patches)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(cases), 4, figsize=(12, 3 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        panels = []
        for slot in ("A", "B"):
            original = read_image(image_dir / f"{case}_{slot}_ref.tif")
            panels.append((original if original.ndim == 2 or original.shape[2] == 3 else original[..., 0], modalities[slot]["name"]))
        for slot in ("A", "B"):
            comir = read_image(comir_dir / f"{case}_{slot}_ref.tif")
            comir = comir[None] if comir.ndim == 2 else np.moveaxis(comir, -1, 0)
            panels.append((preview(comir), f"CoMIR of {modalities[slot]['name']}"))
        for ax, (picture, title) in zip(row, panels):
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.set_title(f"{title} ({case})", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)

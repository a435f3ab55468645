"""Turn a stored image into the network's input: float32, channel-first, in [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from comir.io import InputError, channels_of, read_image, to_float01

if TYPE_CHECKING:
    import pandas as pd

SLOTS = ("A", "B")  # the two modality slots of every dataset


def rotation_crop(patch_size: int) -> int:
    """Side of the crop that a patch is cut from so that any rotation adds no padding.

    A square of side ``P`` rotated by any angle fits in a square of side
    ``P * sqrt 2``; one more pixel on each side covers the interpolation kernel.
    """
    return int(math.ceil(patch_size * math.sqrt(2))) + 2


def prepare_image(image: np.ndarray, channels: int, log1p: bool, name: str = "image") -> np.ndarray:
    """(H, W[, C]) stored image -> (C, H, W) float32.

    ``log1p`` compresses the heavy-tailed intensities of SHG-like images
    (paper: SHG gets log(1 + x)); the result is rescaled to [0, 1] by log(2).
    """
    found = channels_of(image)
    if found != channels:
        raise InputError(f"{name} has {found} channel(s), the configuration expects {channels}")
    data = to_float01(image)
    if log1p:
        data = np.log1p(data) / np.log(2.0)
    if data.ndim == 2:
        data = data[None]
    else:
        data = np.moveaxis(data, -1, 0)
    return np.ascontiguousarray(data, dtype=np.float32)


def load_split(pairs: "pd.DataFrame", split: str, modalities: Mapping[str, Mapping[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Network-ready (A, B) arrays of every pair in one split of a pairs table."""
    rows = pairs[pairs["split"] == split]
    return [
        tuple(
            prepare_image(read_image(row[f"path_{slot}"]), modalities[slot]["channels"], modalities[slot]["log1p"], row[f"path_{slot}"])
            for slot in SLOTS
        )
        for _, row in rows.iterrows()
    ]

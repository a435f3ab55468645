"""Compute CoMIRs of whole images with bounded memory (docs/method.md, section 6).

The CoMIR of an image is defined as the network applied once to the image
reflect-padded by ``pad`` px on every side (the bottom and right sides by up to
``2 ** depth - 1`` px more, so that each side is a multiple of the pooling grid
of ``2 ** depth`` px) and cropped back. Larger
images are computed in tiles cut from that same padded image; with the
network's :func:`~comir.network.model.required_margin` of context around each tile the
result equals the one pass (up to float rounding) while the network never sees
more than ``(tile + 2 * margin) ** 2`` px at once.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from comir.inference.engines import OnnxRuntimeNetwork
from comir.network import precision
from comir.network.device import memory_format, to_device
from comir.network.model import Tiramisu, required_margin

log = logging.getLogger(__name__)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _windows(
    padded: int, start: int, length: int, tile: int, margin: int
) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis of the padded image: ``(keep_start, keep_end, window_start, window_end)``.

    ``[start, start + length)`` is the image inside the padding. If the padded
    axis fits in one window of ``tile + 2 * margin`` px it is read whole (the
    one pass: exact, and no more memory than a tile); otherwise the padded axis
    is cut into kept parts of ``tile`` px on the network's grid (those that hold
    image pixels), each read with ``margin`` px of context clipped to the padded
    image. Window bounds are multiples of the grid when ``padded``, ``tile`` and
    ``margin`` are, wherever the image starts.
    """
    if padded <= tile + 2 * margin:
        return [(0, padded, 0, padded)]
    end = start + length
    return [
        (a, min(a + tile, padded), max(0, a - margin), min(padded, a + tile + margin))
        for a in range(0, padded, tile)
        if a < end and a + tile > start
    ]


def compute_comir(
    model: Tiramisu | OnnxRuntimeNetwork,
    image: np.ndarray,
    tile: int = 512,
    margin: int | None = None,
    pad: int = 16,
    device: torch.device | str = "cpu",
    mixed_precision: bool = True,
    c4_average: bool = False,
) -> np.ndarray:
    """(C_in, H, W) float32 -> (C_out, H, W) float32 CoMIR (docs/method.md, section 6).

    Along an axis where the padded image fits in ``tile + 2 * margin`` px it
    is read whole, as in the one pass. Otherwise it is cut in tiles whose
    windows (kept part plus ``margin``, clipped to the padded image) start on
    the pooling grid, so every tile pools the same 2x2 windows as the one pass
    and, at the padded image's border, sees the same zero padding of the
    convolutions. The network never sees more than ``(tile + 2 * margin) ** 2``
    px, whatever the image size.

    Parameters
    ----------
    model : Tiramisu or OnnxRuntimeNetwork
        The modality's network (a module is put in eval mode on ``device``
        here), or its :class:`OnnxRuntimeNetwork` (:func:`comir.inference.engines.inference_network`).
    image : numpy.ndarray
        The preprocessed image, float32 ``(C_in, H, W)``.
    tile : int, optional
        Side of the part of the output each tiled pass keeps, rounded up
        to the network's multiple ``2 ** depth``. Default 512.
    margin : int or None, optional
        Context px read on every side of a tile (rounded up to
        ``2 ** depth``). ``None`` (default): :func:`~comir.network.model.required_margin` of
        the network, which makes the tiled result equal the one pass. A
        smaller margin saves memory but leaves seams; a warning says so.
    pad : int, optional
        Reflect padding px around the image; the bottom and right sides
        get up to ``2 ** depth - 1`` px more so that the padded size is a
        multiple of ``2 ** depth``. Every padded pixel is computed, so a
        small pad is fast: 16 px make a 256 px patch 288 px for the demo
        network (64 px would make it 384) and an 834 px patch 896 px for the paper's. Default 16.
    device : torch.device or str, optional
        Where the network runs. Default ``"cpu"``.
    mixed_precision : bool, optional
        Autocast (:mod:`comir.network.precision`: bf16, or fp16 on
        GPUs without bf16) where the configuration allows it (CUDA). Default True.
    c4_average : bool, optional
        The mean of the CoMIRs of the image rotated by ``k * 90``
        degrees, each rotated back (``k = 0..3``): a CoMIR that rotates
        exactly with the image by multiples of 90 degrees, at 4 times the
        cost (each rotation is computed like the image itself, so the
        four are the same arrays, in another order, for a rotated image). Default False.

    Returns
    -------
    numpy.ndarray
        float32 ``(C_out, H, W)``: the CoMIR on the image's grid.
    """
    if c4_average:
        options = dict(tile=tile, margin=margin, pad=pad, device=device, mixed_precision=mixed_precision)
        rotations = [
            np.rot90(compute_comir(model, np.rot90(image, k, axes=(1, 2)).copy(), **options), -k, axes=(1, 2))
            for k in range(4)
        ]
        return np.mean(rotations, axis=0, dtype=np.float64).astype(np.float32)
    device = torch.device(device)
    if isinstance(model, Tiramisu):
        model.eval().to(device, memory_format=memory_format(device))
    multiple = model.config.multiple
    needed = required_margin(model.config)
    margin = needed if margin is None else _round_up(margin, multiple)
    tile = _round_up(tile, multiple)
    _, height, width = image.shape
    padded_h, padded_w = _round_up(height + 2 * pad, multiple), _round_up(width + 2 * pad, multiple)
    padded = np.pad(image, ((0, 0), (pad, padded_h - height - pad), (pad, padded_w - width - pad)), mode="reflect")
    rows = _windows(padded_h, pad, height, tile, margin)
    cols = _windows(padded_w, pad, width, tile, margin)
    if margin < needed and (len(rows) > 1 or len(cols) > 1):
        log.warning(
            "inference margin %d px is below the %d px this network needs (its receptive field): "
            "the tiled CoMIR differs from one pass and seams will appear at the tile borders",
            margin,
            needed,
        )

    output = np.empty((model.config.out_channels, height, width), dtype=np.float32)
    use_amp = precision.mixed_precision_enabled(device, mixed_precision)
    # Inference mode only around the network's calls: parameters moved inside it would become
    # inference tensors, unusable for training or export afterwards.
    with torch.inference_mode(), precision.autocast(device, use_amp):
        for keep_y0, keep_y1, win_y0, win_y1 in rows:
            # Only the part of the kept rows inside the image is written (the padding is cropped).
            y0, y1 = max(keep_y0, pad), min(keep_y1, pad + height)
            for keep_x0, keep_x1, win_x0, win_x1 in cols:
                x0, x1 = max(keep_x0, pad), min(keep_x1, pad + width)
                window = np.ascontiguousarray(padded[:, win_y0:win_y1, win_x0:win_x1])
                result = model(to_device(window[None], device))[0]
                core = result[:, y0 - win_y0 : y1 - win_y0, x0 - win_x0 : x1 - win_x0]
                output[:, y0 - pad : y1 - pad, x0 - pad : x1 - pad] = core.float().cpu().numpy()
    return output

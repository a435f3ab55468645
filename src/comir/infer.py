"""Compute CoMIRs of whole images with bounded memory (docs/method.md, section 6).

The CoMIR of an image is defined as the network applied once to the image
reflect-padded by ``pad`` px on every side (the bottom and right sides by up to
``2 ** depth - 1`` px more, so that each side is a multiple of the pooling grid
of ``2 ** depth`` px) and cropped back. Larger
images are computed in tiles cut from that same padded image; with the
network's :func:`~comir.model.required_margin` of context around each tile the
result equals the one pass (up to float rounding) while the network never sees
more than ``(tile + 2 * margin) ** 2`` px at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comir import precision
from comir.io import atomic_path, comir_preview, read_image, write_png, write_tiff
from comir.model import Tiramisu, required_margin
from comir.preprocess import prepare_modality_image
from comir.train import memory_format, to_device

log = logging.getLogger(__name__)


ENGINES = ("onnxruntime", "torch")


class OnnxRuntimeNetwork:
    """A network exported to ONNX (any input size) and run by ONNX Runtime on the CPU.

    The same CoMIR as the PyTorch network to float32 rounding (about 1e-6 of its range), faster
    on the CPU for more peak memory (the runtime's memory arena); timings and memory:
    benchmarks/bench_network.py, docs/results/speed.md ("networks"). Exported from the
    training-time graph (one concatenation per dense layer), which the runtime executes faster
    than the in-place feature buffer of PyTorch inference. Called like the module, on CPU tensors.
    """

    def __init__(self, model: Tiramisu, threads: int):
        """Export ``model`` and open an ONNX Runtime session with ``threads`` threads."""
        import io
        import warnings

        import onnxruntime

        self.config = model.config
        exported = io.BytesIO()
        example = torch.zeros(1, model.config.in_channels, model.config.multiple, model.config.multiple)
        # Traced with gradients enabled: the concatenating graph; the shape checks of forward are
        # constant for the tracer, which warns about that (harmlessly: sizes are checked again here).
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval().cpu(),
                example,
                exported,
                input_names=["image"],
                output_names=["comir"],
                dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "comir")},
                dynamo=False,
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        # The memory arena makes it fast; planning buffers per input size (mem pattern) only costs memory here.
        options.enable_mem_pattern = False
        self.session = onnxruntime.InferenceSession(exported.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The CoMIR of ``x`` (N, C, H, W), computed by ONNX Runtime, as a CPU tensor."""
        Tiramisu.check_input(self.config, x)
        image = x.detach().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"image": image})[0])


def check_model_settings(payload: Mapping[str, Any], modalities: Mapping[str, Mapping[str, Any]], path: Any) -> None:
    """Stop unless the model file's recorded image settings are ``modalities``' (what turns images into input).

    A network sees images prepared as when it was trained; a model file trained elsewhere (a
    variant's ``model_file``) with, e.g., another ``log1p`` or stain normalisation would give
    CoMIRs of the wrong input.  ``payload``: the model file's contents (:func:`comir.train.load_checkpoint`).
    """
    stored = payload.get("modalities") or {}
    problems = []
    for slot, settings in modalities.items():
        recorded = stored.get(slot)
        if recorded is None:
            problems.append(f"it has no modality {slot}")
            continue
        for key, value in settings.items():
            if key in recorded and recorded[key] != value:
                problems.append(f"{slot}.{key} is {recorded[key]!r} there and {value!r} in the configuration")
    if problems:
        raise ValueError(f"the model file {path} was trained on other image settings: " + "; ".join(problems))


def inference_network(model: Tiramisu, engine: str, device: torch.device | str) -> Tiramisu | OnnxRuntimeNetwork:
    """The network as ``engine`` runs it: ONNX Runtime on the CPU, PyTorch on a GPU or when asked."""
    if engine not in ENGINES:
        raise ValueError(f"unknown inference engine {engine!r}; use one of {ENGINES}")
    device = torch.device(device)
    model.eval().to(device, memory_format=memory_format(device))
    if engine == "onnxruntime" and device.type == "cpu":
        return OnnxRuntimeNetwork(model, torch.get_num_threads())
    return model


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

    Args:
        model: the modality's network (a module is put in eval mode on ``device``
            here), or its :class:`OnnxRuntimeNetwork` (:func:`inference_network`).
        image: the preprocessed image.
        tile: side of the part of the output each tiled pass keeps, rounded up
            to the network's multiple ``2 ** depth``.
        margin: context px read on every side of a tile (rounded up to
            ``2 ** depth``). ``None``: :func:`~comir.model.required_margin` of
            the network, which makes the tiled result equal the one pass. A
            smaller margin saves memory but leaves seams; a warning says so.
        pad: reflect padding px around the image; the bottom and right sides
            get up to ``2 ** depth - 1`` px more so that the padded size is a
            multiple of ``2 ** depth``. Every padded pixel is computed, so a
            small pad is fast: 16 px make a 256 px patch 288 px for the demo
            network (64 px made it 384) and an 834 px patch 896 px for the paper's.
        device: where the network runs.
        mixed_precision: autocast (:mod:`comir.precision`: bf16, or fp16 on
            GPUs without bf16) where the configuration allows it (CUDA).
        c4_average: the mean of the CoMIRs of the image rotated by ``k * 90``
            degrees, each rotated back (``k = 0..3``): a CoMIR that rotates
            exactly with the image by multiples of 90 degrees, at 4 times the
            cost (each rotation is computed like the image itself, so the
            four are the same arrays, in another order, for a rotated image).

    Along an axis where the padded image fits in ``tile + 2 * margin`` px it
    is read whole, as in the one pass. Otherwise it is cut in tiles whose
    windows (kept part plus ``margin``, clipped to the padded image) start on
    the pooling grid, so every tile pools the same 2x2 windows as the one pass
    and, at the padded image's border, sees the same zero padding of the
    convolutions. The network never sees more than ``(tile + 2 * margin) ** 2``
    px, whatever the image size.
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


def comir_test_set(
    models: Mapping[str, Tiramisu],
    cases: Sequence[str],
    image_dir: Path,
    out_dir: Path,
    preview_dir: Path,
    modalities: Mapping[str, Mapping[str, Any]],
    inference: Mapping[str, Any],
    device: torch.device | str,
) -> None:
    """CoMIR (float32 TIFF, channel-last) and an 8-bit preview of every test patch.

    ``inference``: the configuration's section (``engine``, ``tile``, ``margin``, ``pad``,
    ``mixed_precision``, ``c4_average``; see :func:`inference_network` and :func:`compute_comir`).
    """
    networks = {slot: inference_network(model, inference["engine"], device) for slot, model in models.items()}
    options = {key: inference[key] for key in ("tile", "margin", "pad", "mixed_precision", "c4_average")}
    for case in cases:
        for slot, network in networks.items():
            for role in ("ref", "flo"):
                name = f"{case}_{slot}_{role}"
                spec = modalities[slot]
                image = prepare_modality_image(read_image(image_dir / f"{name}.tif"), spec, name)
                comir = compute_comir(network, image, device=device, **options)
                write_tiff(out_dir / f"{name}.tif", comir[0] if comir.shape[0] == 1 else np.moveaxis(comir, 0, -1))
                write_png(preview_dir / f"{name}.png", comir_preview(comir))


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
            shown = original if original.ndim == 2 or original.shape[2] == 3 else original[..., 0]
            panels.append((shown, modalities[slot]["name"]))
        for slot in ("A", "B"):
            comir = read_image(comir_dir / f"{case}_{slot}_ref.tif")
            comir = comir[None] if comir.ndim == 2 else np.moveaxis(comir, -1, 0)
            panels.append((comir_preview(comir), f"CoMIR of {modalities[slot]['name']}"))
        for ax, (picture, title) in zip(row, panels):
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.set_title(f"{title} ({case})", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)

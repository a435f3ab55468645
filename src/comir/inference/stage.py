"""The pipeline's CoMIR stage: a model file checked against the configuration, the CoMIRs of a test set, examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comir.imaging.preprocess import prepare_modality_image
from comir.inference.engines import inference_network
from comir.inference.tiling import compute_comir
from comir.io import atomic_path, comir_preview, read_image, write_png, write_tiff
from comir.network.model import Tiramisu


def check_model_settings(payload: Mapping[str, Any], modalities: Mapping[str, Mapping[str, Any]], path: Any) -> None:
    """Stop unless the model file's recorded image settings are ``modalities``' (what turns images into input).

    A network sees images prepared as when it was trained; a model file trained elsewhere (a
    variant's ``model_file``) with, e.g., another ``log1p`` or stain normalisation would give
    CoMIRs of the wrong input.

    Parameters
    ----------
    payload : Mapping[str, Any]
        The model file's contents (:func:`comir.network.checkpoint.load_checkpoint`); its
        ``modalities`` entry holds the recorded settings per slot.
    modalities : Mapping[str, Mapping[str, Any]]
        The configuration's image settings per modality slot. Every slot must be recorded in the
        model file; a setting is compared where the model file records it.
    path : Any
        The model file, named in the error message.

    Raises
    ------
    ValueError
        If a slot is missing from the model file or a recorded setting differs from the configuration.
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

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The network of each modality slot (``"A"``, ``"B"``).
    cases : Sequence[str]
        The test cases; each has the patches ``{case}_{slot}_ref.tif`` and ``{case}_{slot}_flo.tif``.
    image_dir : pathlib.Path
        The test set's image patches.
    out_dir : pathlib.Path
        Where the CoMIRs are written, one TIFF per patch under the patch's name (a one-channel
        CoMIR as a 2-D image).
    preview_dir : pathlib.Path
        Where the 8-bit PNG previews (:func:`comir.io.comir_preview`) are written, one per patch.
    modalities : Mapping[str, Mapping[str, Any]]
        The image settings per slot that prepare a patch as network input
        (:func:`comir.imaging.preprocess.prepare_modality_image`).
    inference : Mapping[str, Any]
        The configuration's section (``engine``, ``tile``, ``margin``, ``pad``,
        ``mixed_precision``, ``c4_average``; see :func:`inference_network` and :func:`compute_comir`).
    device : torch.device or str
        Where the networks run.
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
    """Grid: one row per case - modality A, modality B, CoMIR A, CoMIR B (reference patches).

    Parameters
    ----------
    cases : Sequence[str]
        The cases shown, one row each.
    image_dir : pathlib.Path
        The test set's image patches (``{case}_{slot}_ref.tif``); a multichannel image that is not
        RGB shows its first channel.
    comir_dir : pathlib.Path
        The CoMIRs of those patches (:func:`comir_test_set`).
    modalities : Mapping[str, Mapping[str, Any]]
        The settings per slot ``"A"`` and ``"B"``; their ``name`` titles the panels.
    path : pathlib.Path
        The figure file to write (atomically, 90 dpi).
    """
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

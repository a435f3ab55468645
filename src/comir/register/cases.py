"""Run one registration method over every test case: the tidy per-case results table."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comir import geometry
from comir.io import read_image
from comir.preprocess import prepare_image
from comir.register.base import Registration, to_single_channel
from comir.testset import MATRIX_KEYS

log = logging.getLogger(__name__)

DIRECTIONS = {"B_to_A": ("A", "B"), "A_to_B": ("B", "A")}  # direction -> (reference slot, floating slot)


def load_patch(
    image_dir: Path, name: str, image_input: str, modality: Mapping[str, Any], colour: bool = False
) -> np.ndarray:
    """A test patch as float32 (H, W) or (H, W, C), ready for a registration method.

    Originals get the same intensity pre-processing as the network input and
    are reduced to one channel by PCA, each image on its own (they are
    different modalities, so no shared projection exists); with ``colour``
    (methods with ``colour_input = True``, e.g. ``curvealign``) a
    multi-channel original keeps its channels, ``(H, W, C)``, and only a
    single-channel one is ``(H, W)``.  CoMIRs are used as computed.
    """
    image = read_image(image_dir / f"{name}.tif")
    if image_input == "comir":
        return image.astype(np.float32)
    prepared = prepare_image(image, modality["channels"], modality["log1p"], name)
    channel_last = prepared[0] if prepared.shape[0] == 1 else np.moveaxis(prepared, 0, -1)
    if colour:
        return np.ascontiguousarray(channel_last, dtype=np.float32)
    return to_single_channel(channel_last)[0]


def register_cases(
    cases: pd.DataFrame,
    image_dir: Path,
    method: Registration,
    run_name: str,
    image_input: str,
    direction: str,
    modalities: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    reference_slot, floating_slot = DIRECTIONS[direction]
    colour = bool(getattr(method, "colour_input", False))  # the method wants RGB originals as they are
    rows = []
    for case in cases.itertuples(index=False):
        reference = load_patch(
            image_dir, f"{case.case}_{reference_slot}_ref", image_input, modalities[reference_slot], colour
        )
        floating = load_patch(
            image_dir, f"{case.case}_{floating_slot}_flo", image_input, modalities[floating_slot], colour
        )
        result = method.register(reference, floating)
        truth = np.array([getattr(case, f"true_{k}") for k in MATRIX_KEYS]).reshape(2, 3)
        error = float(geometry.corner_error(result.matrix, truth, case.width, case.height))
        rows.append(
            {
                "case": case.case,
                "image_id": case.image_id,
                "stratum": case.stratum,
                "width": case.width,
                "height": case.height,
                "initial_displacement_px": case.initial_displacement_px,
                "method": run_name,
                "input": image_input,
                "direction": direction,
                "reference_modality": modalities[reference_slot]["name"],
                "floating_modality": modalities[floating_slot]["name"],
                "status": result.status,
                "metric": result.metric,
                "seconds": result.seconds,
                "error_px": error,
                **{f"est_{k}": v for k, v in zip(MATRIX_KEYS, np.asarray(result.matrix).ravel())},
                **{f"true_{k}": v for k, v in zip(MATRIX_KEYS, truth.ravel())},
                "message": result.message,
            }
        )
        log.info("%s: %s error %.2f px in %.2f s %s", case.case, result.status, error, result.seconds, result.message)
    return pd.DataFrame(rows)

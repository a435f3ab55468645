"""The apply stage: a trained model registers a folder of unaligned pairs (docs/method.md, section 13).

A folder in the ``pairs`` layout (``ROOT/<folder of A>/<id>.tif``,
``ROOT/<folder of B>/<id>.tif``) is split into ``batches`` jobs; each job
checks every pair (partner, readability, and :func:`comir.apply.checks.check_pair`'s
checks against the model: channels, size, extents, mask files, intensity
range) and the settings before registering any, then registers each pair with
:func:`comir.apply.pair.register_pair` and writes its outputs into ``<id>/``
(:func:`comir.apply.outputs.write_outputs`) and one row per pair into the batch's table.
The batches' tables are summarised and, with known transforms, evaluated by
:mod:`comir.apply.results`.

Several model files (an ensemble: :class:`comir.apply.model.ModelEnsemble`)
register every pair together: each model's CoMIRs, stacked, registered by the
cascade; every check holds for every model.

Masks (``masks`` of the settings): "auto" (constant borders, the default),
"none", or a folder ``MASKS`` in the same layout (``MASKS/<folder of A>/<id>``
with extension .tif, .tiff or .png): a modality whose sub-folder exists needs
a mask file for each of its images, one whose sub-folder does not gets "auto".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comir import geometry
from comir.apply.checks import check_pair, check_settings
from comir.apply.model import ModelEnsemble, TrainedModel
from comir.apply.outputs import peak_memory_mb, write_outputs
from comir.apply.pair import judging_calibration, pair_method, register_pair
from comir.data.pairs import Modality, discover_pairs
from comir.geometry import MATRIX_KEYS
from comir.imaging.masks import MASK_MARGIN_PX, MASK_MODES
from comir.io import IMAGE_SUFFIXES, InputError
from comir.register import deformable_stage, with_transform
from comir.register.coarse_to_fine import REGISTER_MAX_PX

log = logging.getLogger(__name__)


def folder_pairs(
    root: str | Path, model: TrainedModel | ModelEnsemble, folders: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The pairs (``id, path_A, path_B``) of ``root``; the folders default to the model's modality names.

    Parameters
    ----------
    root : str or pathlib.Path
        The folder in the ``pairs`` layout.
    model : TrainedModel or ModelEnsemble
        The model(s): the modalities' names (default folders), channels and ``max_value``.
    folders : Mapping[str, str] or None, optional
        Sub-folder of each slot (``A``, ``B``) where it differs from the modality's name. Default None.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``id``, ``path_A``, ``path_B``.

    Raises
    ------
    comir.io.InputError
        If a partner is missing, or a folder is missing or empty; the files are named
        (:func:`comir.data.pairs.discover_pairs`).
    """
    folders = dict(folders or {})
    modalities = tuple(
        Modality(folders.get(slot, spec["name"]), int(spec["channels"]), spec.get("max_value"))
        for slot, spec in sorted(model.modalities.items())
    )
    return discover_pairs(Path(root), modalities)


def mask_file(masks: str, folder: str, pair_id: str) -> Path | None:
    """The mask file of image ``pair_id`` of the modality in ``folder``, or None (the image gets "auto").

    Parameters
    ----------
    masks : str
        ``"auto"``, ``"none"`` or a folder of masks (the module doc).
    folder : str
        The modality's sub-folder.
    pair_id : str
        The pair's id, the mask's file stem (extension one of :data:`comir.io.IMAGE_SUFFIXES`).

    Returns
    -------
    pathlib.Path or None
        The mask file; None for ``"auto"``/``"none"`` or when the modality's sub-folder does not exist.

    Raises
    ------
    comir.io.InputError
        If the mask folder is missing, or the file is missing where the modality's sub-folder exists
        (naming what was looked for).
    """
    if masks in MASK_MODES:
        return None
    root = Path(masks)
    if not root.is_dir():
        raise InputError(f"mask folder not found: {root} (masks must be auto, none or a folder)")
    if not (root / folder).is_dir():
        return None
    for extension in IMAGE_SUFFIXES:
        candidate = root / folder / f"{pair_id}{extension}"
        if candidate.is_file():
            return candidate
    raise InputError(f"no mask for {pair_id} in {root / folder} (looked for {pair_id}{{{','.join(IMAGE_SUFFIXES)}}})")


def batch_of(pairs: pd.DataFrame, batches: int, batch: int) -> pd.DataFrame:
    """Batch ``batch`` of ``batches``: every ``batches``-th pair from the ``batch``-th (ids sorted).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pairs, with an ``id`` column.
    batches : int
        Number of batches.
    batch : int
        The 0-based batch, ``0 <= batch < batches``.

    Returns
    -------
    pandas.DataFrame
        The batch's rows, sorted by ``id``.

    Raises
    ------
    ValueError
        If ``batch`` is not in ``0 .. batches - 1``.
    """
    if not 0 <= batch < batches:
        raise ValueError(f"batch {batch} is not one of 0..{batches - 1}")
    return pairs.sort_values("id").iloc[batch::batches]


def register_batch(
    model_paths: str | Path | Sequence[str | Path],
    root: str | Path,
    out_dir: str | Path,
    settings: Mapping[str, Any],
    batches: int = 1,
    batch: int = 0,
    seed: int = 0,
    threads: int = 1,
) -> pd.DataFrame:
    """Register batch ``batch`` of the pairs under ``root``; outputs in ``out_dir/<id>/``; one row per pair.

    With a calibrated model (docs/method.md, section 15) each row has its ``confidence``, and a result below the
    threshold is ``failed`` (low confidence).  The settings and every
    pair of the batch (:func:`comir.apply.checks.check_pair`: images, masks, sizes, extents, intensity ranges) are
    checked before the first registration; a bad one stops the job with the file named.

    Parameters
    ----------
    model_paths : str or pathlib.Path or Sequence[str or pathlib.Path]
        One model file, or several registering together (:class:`comir.apply.model.ModelEnsemble`: the
        cascade only, no calibrated confidence).
    root : str or pathlib.Path
        The folder of pairs (the module doc).
    out_dir : str or pathlib.Path
        Where each pair's outputs go, ``out_dir/<id>/`` (:func:`comir.apply.outputs.write_outputs`).
    settings : Mapping[str, Any]
        An ``apply`` entry of the configuration (``reference``, ``method``, ``params``, ``transform``,
        ``pixel_size``, ``inference``, ``folders``, ``masks``, ``mask_margin_px``, ``register_max_px``,
        ``rescale``, ``min_confidence``, ``deformable``: ``{method, params}`` of a deformable stage after
        each pair's registration); missing keys take :func:`comir.apply.pair.register_pair`'s defaults
        (reference ``A``, no deformable stage).
    batches : int, optional
        Number of batches the pairs are split into (:func:`batch_of`). Default 1.
    batch : int, optional
        The 0-based batch to register. Default 0.
    seed : int, optional
        Seed of the registration method. Default 0.
    threads : int, optional
        Threads given to the registration method. Default 1.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``id``, ``reference``, ``floating``, ``direction``, the modalities, the floating
        image's ``width`` and ``height``, ``status``, ``metric``, ``confidence``, ``seconds``, the estimated
        matrix ``est_*``, ``angle_deg``, ``scale``, the valid fractions, ``peak_memory_mb``, with a deformable
        stage its columns (:meth:`comir.apply.pair.PairRegistration.deformable_columns`), and ``message``.

    Raises
    ------
    comir.io.InputError
        If a model file, a setting, a pair or its outputs' folder fails its check.
    ValueError
        If ``batch`` is out of range, or the method's parameters are invalid.
    """
    model = ModelEnsemble.load(model_paths)
    ref_slot = model.slot(settings.get("reference", "A"))
    flo_slot = model.other(ref_slot)
    folders = {slot: settings.get("folders", {}).get(slot, spec["name"]) for slot, spec in model.modalities.items()}
    masks = str(settings.get("masks", "auto"))
    pairs = batch_of(folder_pairs(root, model, settings.get("folders")), batches, batch)
    mode = masks if masks in MASK_MODES else "auto"
    method = settings.get("method", "cascade")
    margin = float(settings.get("mask_margin_px", MASK_MARGIN_PX))
    max_px = settings.get("register_max_px", REGISTER_MAX_PX)
    rescale = bool(settings.get("rescale", False))
    min_confidence = settings.get("min_confidence")
    check_settings(settings.get("inference"), max_px, margin)
    params = model.registration_params(
        method, with_transform(settings.get("params"), settings.get("transform", "rigid"))
    )
    pair_method(model, method, params, ref_slot, seed, threads, settings.get("transform", "rigid"), max_px)
    judging_calibration(model, method, params, min_confidence)  # a threshold without a calibration stops here
    deformable = deformable_stage(settings.get("deformable"), seed)
    masks_of = {}
    for pair in pairs.itertuples(index=False):  # every pair checked before any work
        masks_of[pair.id] = tuple(mask_file(masks, folders[slot], pair.id) for slot in (ref_slot, flo_slot))
        check_pair(
            model, getattr(pair, f"path_{ref_slot}"), getattr(pair, f"path_{flo_slot}"), ref_slot,
            settings.get("pixel_size"), mode, masks_of[pair.id], rescale,
        )  # fmt: skip
    direction = f"{flo_slot}_to_{ref_slot}"
    rows = []
    for pair in pairs.itertuples(index=False):
        reference_path, floating_path = getattr(pair, f"path_{ref_slot}"), getattr(pair, f"path_{flo_slot}")
        registered = register_pair(
            model, reference_path, floating_path, ref_slot, method, settings.get("params"), settings.get("inference"),
            seed, threads, settings.get("transform", "rigid"), settings.get("pixel_size"),
            mode, masks_of[pair.id], margin, max_px, rescale, min_confidence, deformable=deformable,
        )  # fmt: skip
        write_outputs(Path(out_dir) / pair.id, registered, reference_path, floating_path, method)
        result = registered.result
        height, width = registered.floating.shape[:2]
        valid = registered.valid_fractions()
        rows.append(
            {
                "id": pair.id,
                "reference": reference_path,
                "floating": floating_path,
                "direction": direction,
                "reference_modality": model.modalities[ref_slot]["name"],
                "floating_modality": model.modalities[flo_slot]["name"],
                "width": width,
                "height": height,
                "status": result.status,
                "metric": result.metric,
                "confidence": registered.confidence,
                "seconds": result.seconds,
                **{f"est_{k}": v for k, v in zip(MATRIX_KEYS, np.asarray(result.matrix).ravel())},
                "angle_deg": math.degrees(float(geometry.rotation_angle(result.matrix))),
                "scale": float(geometry.scale_factor(result.matrix)),
                "reference_valid": valid[0],
                "floating_valid": valid[1],
                "peak_memory_mb": peak_memory_mb(),
                **registered.deformable_columns(),
                "message": result.message,
            }
        )
        log.info("%s: %s metric %.4g in %.2f s %s", pair.id, result.status, result.metric, result.seconds,
                 result.message)  # fmt: skip
    return pd.DataFrame(rows)


__all__ = ["batch_of", "folder_pairs", "register_batch"]

"""A pair and the settings checked against the model(s) before any work (:mod:`comir.apply`, step 1).

Each problem is an :class:`~comir.io.InputError` naming the file(s) and what to do:
channels, size at the working resolution, extents, mask files, the network input's
intensity range (:func:`check_pair`) and the settings against the configuration
schema (:func:`check_settings`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comir.apply.model import MIN_REGISTER_PX, ModelEnsemble, TrainedModel
from comir.config.schema import load_schema, schema_problems, section_problems
from comir.imaging.masks import MASK_MARGIN_PX, image_mask
from comir.imaging.preprocess import input_statistics, prepare_modality_image
from comir.imaging.resampling import Resampling
from comir.io import InputError, channels_of, read_image
from comir.register.coarse_to_fine import REGISTER_MAX_PX

log = logging.getLogger(__name__)

# New network input whose 99.9th percentile (in linear intensity: log1p undone) is more than this factor above
# or below the training images' is refused: the network never saw such values (a float image in 0..60000 for a
# model trained on 0..1 gave CoMIR values of +-65000 instead of about +-1; a factor 1/20 is an image stored on
# another scale, e.g. 8-bit data in 16-bit files: 1/257).  Ordinary variation of gain and staining stays
# well inside it (12-bit data in 16-bit files without max_value: 1/16).
RANGE_FACTOR = 20.0
# Largest ratio of the two images' longer sides (physical, with pixel sizes; else in pixels): one pair shows
# overlapping views of one tissue region, so a larger ratio is a wrong file, a missing pixel size or a
# region to crop (a 2000 px reference with a 64 px floating image came out "ok" at a translation of 1240 px).
MAX_EXTENT_RATIO = 4.0


def read_checked(path: str | Path, modality: Mapping[str, Any], role: str) -> np.ndarray:
    """The image in ``path`` after checking its channels against ``modality``, naming the file otherwise.

    Parameters
    ----------
    path : str or pathlib.Path
        The image file.
    modality : Mapping[str, Any]
        The model's modality of the image (``channels``; ``name`` for the message).
    role : str
        ``"reference"`` or ``"floating"``, for the message.

    Returns
    -------
    numpy.ndarray
        The image as stored, ``(H, W)`` or ``(H, W, C)``.

    Raises
    ------
    comir.io.InputError
        If the file cannot be read or its channel count differs from the modality's.
    """
    image = read_image(path)
    found, expected = channels_of(image), int(modality["channels"])
    if found != expected:
        raise InputError(
            f"{role} image {path} has {found} channel(s), but the model's modality "
            f"{modality.get('name')!r} has {expected}: is it the right file, or the right modality?"
        )
    return image


def working_resamplings(
    model: TrainedModel, shapes: Mapping[str, tuple[int, ...]], pixel_sizes: Mapping[str, float] | None, ref_slot: str
) -> dict[str, Resampling]:
    """Per slot, how its image is brought to the working resolution (:mod:`comir.apply`, step 2).

    Parameters
    ----------
    model : TrainedModel
        The model; its modalities' ``pixel_size`` (when every slot records one) is each slot's working
        pixel size, else the reference image's pixel size is.
    shapes : Mapping[str, tuple[int, ...]]
        The images' shapes by slot.
    pixel_sizes : Mapping[str, float] or None
        The two images' pixel sizes by slot or modality name (both or none); None or empty: no resampling.
    ref_slot : str
        The reference image's slot.

    Returns
    -------
    dict[str, comir.imaging.resampling.Resampling]
        Per slot of ``shapes``, its resampling (the identity without pixel sizes).

    Raises
    ------
    comir.io.InputError
        If a modality is unknown to the model, the sizes do not cover both slots, or one is not a positive
        finite number.
    """
    if not pixel_sizes:
        return {slot: Resampling(tuple(shape[:2]), tuple(shape[:2])) for slot, shape in shapes.items()}
    given = {model.slot(key): float(value) for key, value in pixel_sizes.items()}
    if set(given) != set(shapes) or any(not (math.isfinite(v) and v > 0) for v in given.values()):
        raise InputError(
            f"pixel sizes must be positive numbers for both modalities "
            f"({', '.join(model.modalities[s]['name'] for s in sorted(shapes))}), got {dict(pixel_sizes)}"
        )
    trained = {slot: model.modalities[slot].get("pixel_size") for slot in shapes}
    if all(trained.values()):
        working = {slot: float(trained[slot]) for slot in shapes}
    else:  # a model without recorded pixel sizes: everything at the reference image's resolution
        working = {slot: given[ref_slot] for slot in shapes}
    return {slot: Resampling.between(shapes[slot], given[slot], working[slot]) for slot in shapes}


def check_settings(
    inference: Mapping[str, Any] | None = None,
    register_max_px: int | None = REGISTER_MAX_PX,
    mask_margin_px: float = MASK_MARGIN_PX,
    names: Mapping[str, str] | None = None,
) -> None:
    """:class:`InputError` listing every setting outside the configuration schema, before any work.

    The limits are the schema's, one source with config/README.md: ``inference`` as a dataset's
    ``inference`` section (e.g. ``tile`` >= 16, ``pad`` >= 0, no unknown key), ``register_max_px`` and
    ``mask_margin_px`` as an apply job's keys (>= 64 or None; >= 0).

    Parameters
    ----------
    inference : Mapping[str, Any] or None, optional
        Settings as a dataset's ``inference`` section; None: none given. Default None.
    register_max_px : int or None, optional
        An apply job's ``register_max_px``. Default :data:`comir.register.coarse_to_fine.REGISTER_MAX_PX`.
    mask_margin_px : float, optional
        An apply job's ``mask_margin_px``. Default :data:`comir.imaging.masks.MASK_MARGIN_PX`.
    names : Mapping[str, str] or None, optional
        What to call a setting in the message (``inference.tile``, ``register_max_px``, ...), e.g. the
        command's flags; None: the keys themselves. Default None.

    Raises
    ------
    comir.io.InputError
        If any setting is outside the schema; the message lists them all.
    """
    schema = load_schema()
    names = names or {}
    found = []
    for line in section_problems(inference or {}, "inference", schema):
        where, message = line.split(": ", 1)
        found.append(("inference" if where == "(top level)" else f"inference.{where}", message))
    job = schema["definitions"]["apply"]["properties"]
    for key, value in (("register_max_px", register_max_px), ("mask_margin_px", mask_margin_px)):
        found += [(key, line.split(": ", 1)[1]) for line in schema_problems(value, job[key])]
    if found:
        raise InputError("; ".join(f"{names.get(key, key)}: {message}" for key, message in found))


def check_size(model: TrainedModel, slot: str, resampling: Resampling, path: str | Path, role: str) -> None:
    """:class:`InputError` when an image is too small, at the working resolution, for :meth:`TrainedModel.min_side`.

    Parameters
    ----------
    model : TrainedModel
        The model whose ``slot`` network will see the image.
    slot : str
        The image's slot.
    resampling : comir.imaging.resampling.Resampling
        The image's resampling to the working resolution.
    path : str or pathlib.Path
        The image file, for the message.
    role : str
        ``"reference"`` or ``"floating"``, for the message.

    Raises
    ------
    comir.io.InputError
        If the shorter working side is below :meth:`TrainedModel.min_side`.
    """
    minimum = model.min_side(slot)
    if min(resampling.working_shape) >= minimum:
        return
    (height, width), (work_h, work_w) = resampling.shape, resampling.working_shape
    at = "" if resampling.identity else f", {work_h}x{work_w} px at the working resolution"
    raise InputError(
        f"{role} image {path} is {height}x{width} px (HxW{at}): smaller than the {minimum} px per side that "
        f"registering with this model needs (its network's pooling grid and the registration methods' "
        f"{MIN_REGISTER_PX} px); use a larger image"
    )


def check_extents(
    shapes: Mapping[str, tuple[int, ...]],
    paths: Mapping[str, str | Path],
    roles: Mapping[str, str],
    pixel_sizes: Mapping[str, float] | None,
) -> None:
    """:class:`InputError` when the two images' longer sides differ by more than :data:`MAX_EXTENT_RATIO`.

    With ``pixel_sizes`` (by slot) the physical extents (longer side x pixel size) are compared, else the
    sides in pixels.

    Parameters
    ----------
    shapes : Mapping[str, tuple[int, ...]]
        The images' shapes by slot.
    paths : Mapping[str, str or pathlib.Path]
        The image files by slot, for the message.
    roles : Mapping[str, str]
        ``"reference"`` or ``"floating"`` by slot, for the message.
    pixel_sizes : Mapping[str, float] or None
        The pixel sizes by slot, or None.

    Raises
    ------
    comir.io.InputError
        If the ratio of the longer sides exceeds :data:`MAX_EXTENT_RATIO`; the message says what to do.
    """
    sides = {
        slot: max(shape[:2]) * (float(pixel_sizes[slot]) if pixel_sizes else 1.0) for slot, shape in shapes.items()
    }
    ratio = max(sides.values()) / min(sides.values())
    if ratio <= MAX_EXTENT_RATIO:
        return
    described = " and ".join(
        f"{roles[slot]} image {paths[slot]} is {shape[0]}x{shape[1]} px"
        + (f" at {float(pixel_sizes[slot]):g} per px" if pixel_sizes else "")
        for slot, shape in shapes.items()
    )
    if pixel_sizes:
        raise InputError(
            f"{described}: their physical extents (longer side x pixel size) differ by a factor {ratio:.1f}, more "
            f"than the {MAX_EXTENT_RATIO:g} of two views of one region; check the pixel sizes, or crop the larger "
            "image to the region of the smaller"
        )
    raise InputError(
        f"{described}: their longer sides differ by a factor {ratio:.1f}, more than the {MAX_EXTENT_RATIO:g} of "
        "two views of one region; give their pixel sizes (--pixel-sizes REFERENCE FLOATING; apply: pixel_size) "
        "if they differ, or crop the larger image to the region of the smaller"
    )


def _linear(value: float, modality: Mapping[str, Any]) -> float:
    """A network-input level in linear intensity: log1p undone for a log1p modality (y = log2(1 + x))."""
    return 2.0 ** min(value, 1000.0) - 1.0 if modality.get("log1p") else value


def range_problem(found: Mapping[str, float], trained: Mapping[str, float], modality: Mapping[str, Any]) -> str | None:
    """Why network input of statistics ``found`` is far outside the training input ``trained``, or None.

    Far: the 99.9th percentiles differ by more than :data:`RANGE_FACTOR`, compared in linear intensity
    (log1p undone), so that the factor means the same for every modality; a training level of 0 or less
    gives no scale (None).

    Parameters
    ----------
    found : Mapping[str, float]
        :func:`comir.imaging.preprocess.input_statistics` of the new network input.
    trained : Mapping[str, float]
        The same statistics of the training images.
    modality : Mapping[str, Any]
        The modality (``log1p``; ``name`` for the message).

    Returns
    -------
    str or None
        The problem, for a message naming the file; None when the input is within range.
    """
    high, reference = _linear(found["p99.9"], modality), _linear(trained["p99.9"], modality)
    if reference <= 0:
        return None
    if high > RANGE_FACTOR * reference:
        side = "above"
    elif high < reference / RANGE_FACTOR:
        side = "below"
    else:
        return None
    return (
        f"its network input spans {found['p0.1']:.4g}..{found['p99.9']:.4g} (0.1..99.9th percentiles), but the "
        f"model's {modality.get('name')!r} training images spanned {trained['p0.1']:.4g}..{trained['p99.9']:.4g}: "
        f"more than {RANGE_FACTOR:g}x {side} what the network has seen"
    )


def prepare_checked(
    model: TrainedModel,
    slot: str,
    image: np.ndarray,
    path: str | Path,
    role: str,
    valid: np.ndarray | None = None,
    rescale: bool = False,
) -> np.ndarray:
    """The network input (C, H, W) of ``image``, its intensity range checked against the training images'.

    Statistics (:func:`comir.imaging.preprocess.input_statistics`) over the ``valid`` pixels; an input far outside the
    training range (:func:`range_problem`) is an :class:`InputError` naming the file and the remedy.
    A model file without statistics skips the check (:meth:`TrainedModel.load` says so); a constant image
    has no range to check or map.

    Parameters
    ----------
    model : TrainedModel
        The model (its modality of ``slot`` and training statistics).
    slot : str
        The image's slot.
    image : numpy.ndarray
        The image as stored.
    path : str or pathlib.Path
        The image file, for messages.
    role : str
        ``"reference"`` or ``"floating"``, for messages.
    valid : numpy.ndarray or None, optional
        ``(H, W)`` bool mask of the pixels the statistics use; None: all. Default None.
    rescale : bool, optional
        Instead of the check, map the image's 0.1..99.9th percentile range linearly onto the training
        images' (clipped to their minimum and maximum), for every image. Default False.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` float32 network input, at the image's own resolution.

    Raises
    ------
    comir.io.InputError
        If the image does not fit its modality, its input is far outside the training range, or
        ``rescale`` is asked of a model file without statistics.
    """
    modality = model.modalities[slot]
    prepared = prepare_modality_image(image, modality, str(path))
    trained = None if model.statistics is None else model.statistics[slot]
    if trained is None:
        if rescale:
            raise InputError(
                f"rescaling {path} needs the training images' range, which {model.path} does not record (written "
                "before it was): retrain the model, or scale the image yourself and leave out --rescale"
            )
        return prepared
    found = input_statistics([prepared], [valid])
    low, high = found["p0.1"], found["p99.9"]
    if high <= low:
        log.warning("%s image %s is constant (%.4g): no intensity range to check or rescale", role, path, high)
        return prepared
    if rescale:
        scale = (trained["p99.9"] - trained["p0.1"]) / (high - low)
        log.info("%s image %s rescaled: %.4g..%.4g -> %.4g..%.4g", role, path, low, high, trained["p0.1"],
                 trained["p99.9"])  # fmt: skip
        mapped = (prepared - np.float32(low)) * np.float32(scale) + np.float32(trained["p0.1"])
        return np.clip(mapped, trained["min"], trained["max"]).astype(np.float32)
    problem = range_problem(found, trained, modality)
    if problem:
        max_value = modality.get("max_value")
        scale = (
            f"full intensity {max_value:g}, the model's max_value" if max_value
            else "integer images divided by their type's maximum, float images as they are (0..1)"
        )  # fmt: skip
        raise InputError(
            f"{role} image {path}: {problem}. Store it on the training scale ({scale}), or pass --rescale "
            "(apply: rescale: true) to map its 0.1..99.9th percentile range onto the training range"
        )
    return prepared


@dataclass
class CheckedPair:
    """A pair checked against the model(s) (:func:`check_pair`).

    By slot: the images as stored, their full-resolution masks (None: all
    valid) and their resamplings; ``inputs``: per model, in order, by slot,
    the network inputs (before resampling).
    """

    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray | None]
    resamplings: dict[str, Resampling]
    inputs: list[dict[str, np.ndarray]]


def check_pair(
    model: TrainedModel | ModelEnsemble,
    reference_path: str | Path,
    floating_path: str | Path,
    reference_modality: str,
    pixel_sizes: Mapping[str, float] | None = None,
    masks: str = "auto",
    mask_files: tuple[str | Path | None, str | Path | None] = (None, None),
    rescale: bool = False,
) -> CheckedPair:
    """Read one pair and check it against the model before any network or registration work.

    In order, each an :class:`InputError` naming the file(s) and what to do: the modality and the
    channels (:func:`read_checked`), the pixel sizes (:func:`working_resamplings`), each side at the
    working resolution (:func:`check_size`), the two extents (:func:`check_extents`), the mask files,
    and each network input's intensity range (:func:`prepare_checked`; ``rescale`` maps it instead).
    The size and the intensity range are checked for every model of an ensemble, each against its own
    network and training images.

    Parameters
    ----------
    model : TrainedModel or ModelEnsemble
        The model(s); the first model's modalities and slots are used.
    reference_path : str or pathlib.Path
        The reference image.
    floating_path : str or pathlib.Path
        The floating image.
    reference_modality : str
        The reference image's modality, by slot or name; the floating image has the other.
    pixel_sizes : Mapping[str, float] or None, optional
        The two images' pixel sizes by slot or modality name, or None (no resampling). Default None.
    masks : str, optional
        ``"auto"`` or ``"none"`` (:func:`comir.imaging.masks.image_mask`). Default ``"auto"``.
    mask_files : tuple, optional
        Mask files of the reference and the floating image (None: none). Default ``(None, None)``.
    rescale : bool, optional
        Map each network input's range onto the training range instead of checking it
        (:func:`prepare_checked`). Default False.

    Returns
    -------
    CheckedPair
        The images, full-resolution masks, resamplings and network inputs.

    Raises
    ------
    comir.io.InputError
        On the first problem found, naming the file(s).
    ValueError
        If ``masks`` is not a known mode.
    """
    members = ModelEnsemble.of(model).members
    first = members[0]
    ref_slot = first.slot(reference_modality)
    flo_slot = first.other(ref_slot)
    paths = {ref_slot: reference_path, flo_slot: floating_path}
    roles = {ref_slot: "reference", flo_slot: "floating"}
    images = {slot: read_checked(paths[slot], first.modalities[slot], roles[slot]) for slot in paths}
    shapes = {slot: image.shape for slot, image in images.items()}
    resamplings = working_resamplings(first, shapes, pixel_sizes, ref_slot)
    for member in members:
        for slot in paths:
            check_size(member, slot, resamplings[slot], paths[slot], roles[slot])
    sizes = {first.slot(key): float(value) for key, value in pixel_sizes.items()} if pixel_sizes else None
    check_extents(shapes, paths, roles, sizes)
    files = {ref_slot: mask_files[0], flo_slot: mask_files[1]}
    full_masks = {slot: image_mask(images[slot], masks, files[slot], paths[slot]) for slot in paths}
    inputs = [
        {
            slot: prepare_checked(member, slot, images[slot], paths[slot], roles[slot], full_masks[slot], rescale)
            for slot in paths
        }
        for member in members
    ]
    return CheckedPair(images, full_masks, resamplings, inputs)

"""The settings of the representation stages and their checks (docs/representation.md).

Kept apart from :mod:`comir.representation.stages` (which trains networks) so that the
configuration can check a dataset's ``representation`` section at parse time without
importing PyTorch or the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CELLS",
    "EQUIVARIANCE_KEYS",
    "REPRODUCIBILITY_KEYS",
    "cell_name",
    "PROBLEMS",
    "check_settings",
    "equivariance_problems",
    "models_per_cell",
    "reproducibility_problems",
]

EQUIVARIANCE_KEYS = ("images", "angle_step_deg", "patch", "crop", "shifts", "margin")
REPRODUCIBILITY_KEYS = ("models", "steps", "patches", "patch", "bootstrap")
#: The cells of paper Table 1 as (seed, training image), in the table's order.
CELLS: tuple[tuple[str, str], ...] = (
    ("fixed", "fixed"),
    ("fixed", "varying"),
    ("random", "fixed"),
    ("random", "varying"),
)


def cell_name(seed_kind: str, image_kind: str) -> str:
    """The key of a cell in ``models`` and in the tables, e.g. ``fixed_seed_varying_image``.

    Parameters
    ----------
    seed_kind : str
        How the seed varies between the cell's training runs, ``"fixed"`` or ``"random"`` (:data:`CELLS`).
    image_kind : str
        How the training images vary between the cell's runs, ``"fixed"`` or ``"varying"``.

    Returns
    -------
    str
        ``"<seed_kind>_seed_<image_kind>_image"``.
    """
    return f"{seed_kind}_seed_{image_kind}_image"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _missing(settings: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    absent = [key for key in keys if key not in settings]
    return [f"missing key(s): {', '.join(absent)}"] if absent else []


def equivariance_problems(settings: Mapping[str, Any]) -> list[str]:
    """What is wrong with a ``representation.equivariance`` section, one line per problem (empty: fine).

    Beyond the schema's types and ranges: the rotated patch must fit in the crop without empty
    corners (``crop >= patch * sqrt 2``) and be centred on the centre of rotation (``crop - patch``
    even; docs/representation.md, section 2), and every shift must leave an overlap of at least
    2 px inside the margins (section 3).

    Parameters
    ----------
    settings : Mapping[str, Any]
        The ``representation.equivariance`` section, with the keys of :data:`EQUIVARIANCE_KEYS`
        (``images``, ``angle_step_deg``, ``patch``, ``crop``, ``shifts`` as ``[dy, dx]`` pairs, ``margin``; px).

    Returns
    -------
    list[str]
        One message per problem; empty when the section is fine. Missing keys are reported alone.
    """
    problems = _missing(settings, EQUIVARIANCE_KEYS)
    if problems:
        return problems
    patch, crop, margin = settings["patch"], settings["crop"], settings["margin"]
    if not _is_int(settings["images"]) or settings["images"] < 1:
        problems.append(f"images: {settings['images']!r} is not a positive integer")
    step = settings["angle_step_deg"]
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 360:
        problems.append(f"angle_step_deg: {step!r} is not in (0, 360]")
    if not _is_int(patch) or patch < 8:
        problems.append(f"patch: {patch!r} is not an integer >= 8")
        return problems
    if not _is_int(margin) or margin < 0:
        problems.append(f"margin: {margin!r} is not a non-negative integer")
        return problems
    if not _is_int(crop) or crop < patch * math.sqrt(2):
        problems.append(f"crop: {crop!r} px is less than patch * sqrt(2) = {patch * math.sqrt(2):.1f} px")
    elif (crop - patch) % 2:
        problems.append(f"crop - patch must be even (to centre the patch on the centre of rotation): {crop} - {patch}")
    shifts = settings["shifts"]
    if not isinstance(shifts, Sequence) or not shifts:
        problems.append(f"shifts: {shifts!r} is not a non-empty list of [dy, dx]")
        return problems
    for shift in shifts:
        if not isinstance(shift, Sequence) or len(shift) != 2 or not all(_is_int(s) for s in shift):
            problems.append(f"shifts: {shift!r} is not a pair of integers [dy, dx]")
        elif patch - 2 * margin - max(abs(s) for s in shift) < 2:
            problems.append(f"shifts: {list(shift)} leaves no overlap of {patch} px windows in a {margin} px margin")
    return problems


def models_per_cell(models: int | Mapping[str, int]) -> dict[str, int]:
    """Training runs per cell: ``models`` for every cell, or one count per :func:`cell_name`.

    Parameters
    ----------
    models : int or Mapping[str, int]
        One count for every cell, or a count per cell keyed by :func:`cell_name`.

    Returns
    -------
    dict[str, int]
        The count of each cell of :data:`CELLS`, keyed by :func:`cell_name`, in the table's order.

    Raises
    ------
    KeyError
        If ``models`` is a mapping without a count for some cell.
    """
    if isinstance(models, Mapping):
        return {cell_name(*cell): models[cell_name(*cell)] for cell in CELLS}
    return {cell_name(*cell): models for cell in CELLS}


def reproducibility_problems(settings: Mapping[str, Any]) -> list[str]:
    """What is wrong with a ``representation.reproducibility`` section, one line per problem (empty: fine).

    Parameters
    ----------
    settings : Mapping[str, Any]
        The ``representation.reproducibility`` section, with the keys of :data:`REPRODUCIBILITY_KEYS`:
        ``models`` (an integer >= 2, or one per cell of :func:`cell_name`), ``steps`` (null or a positive
        integer), ``patches`` (>= 1), ``patch`` (>= 8 px) and ``bootstrap`` (>= 1).

    Returns
    -------
    list[str]
        One message per problem; empty when the section is fine. Missing keys are reported alone.
    """
    problems = _missing(settings, REPRODUCIBILITY_KEYS)
    if problems:
        return problems
    models = settings["models"]
    if isinstance(models, Mapping):
        names = {cell_name(*cell) for cell in CELLS}
        if set(models) != names:
            problems.append(f"models: give a count for each of {', '.join(sorted(names))}, got {sorted(models)}")
            models = {}
    else:
        models = {"models": models}
    for name, count in models.items():
        if not _is_int(count) or count < 2:
            problems.append(f"models: {name} {count!r} is not an integer >= 2 (a pairwise correlation needs two)")
    steps = settings["steps"]
    if steps is not None and (not _is_int(steps) or steps < 1):
        problems.append(f"steps: {steps!r} is neither null nor a positive integer")
    for key, minimum in (("patches", 1), ("patch", 8), ("bootstrap", 1)):
        if not _is_int(settings[key]) or settings[key] < minimum:
            problems.append(f"{key}: {settings[key]!r} is not an integer >= {minimum}")
    return problems


#: The check of each measurement's settings, by its key in the ``representation`` section.
PROBLEMS = {"equivariance": equivariance_problems, "reproducibility": reproducibility_problems}


def check_settings(kind: str, settings: Mapping[str, Any]) -> None:
    """Raise :class:`ValueError` listing every problem of ``representation.<kind>`` (:data:`PROBLEMS`).

    Parameters
    ----------
    kind : str
        The measurement, a key of :data:`PROBLEMS` (``"equivariance"`` or ``"reproducibility"``).
    settings : Mapping[str, Any]
        The ``representation.<kind>`` section.

    Raises
    ------
    ValueError
        If the section has any problem; the message lists them all.
    KeyError
        If ``kind`` is not a key of :data:`PROBLEMS`.
    """
    problems = PROBLEMS[kind](settings)
    if problems:
        raise ValueError(f"representation.{kind}: " + "; ".join(problems))


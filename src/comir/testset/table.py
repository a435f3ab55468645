"""A test set's cases table (``cases.csv``): its columns and how a table is built from the truths.

Shared by the recipes (:mod:`comir.testset`) and the import of a record's prebuilt test set
(:mod:`comir.testset.prebuilt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from comir import geometry
from comir.geometry import MATRIX_KEYS

#: The columns of a test set's cases table (``cases.csv``), in order.
TESTSET_COLUMNS = (
    "case",
    "image_id",
    "stratum",
    "rotation_deg",
    "scale",
    "translation_x",
    "translation_y",
    "initial_displacement_px",
    *(f"true_{k}" for k in MATRIX_KEYS),
    *(f"corner{i}_{a}" for i in range(4) for a in "xy"),
    "crop_x",
    "crop_y",
    "width",
    "height",
)


def case_labels(n: int) -> list[str]:
    """The names of ``n`` cases in table order: ``case_0000``, ``case_0001``, ...

    Parameters
    ----------
    n : int
        The number of cases.

    Returns
    -------
    list of str
    """
    return [f"case_{i:04d}" for i in range(n)]


def cases_table(
    truth: np.ndarray,
    width: int | Sequence[int] | np.ndarray,
    height: int | Sequence[int] | np.ndarray,
    *,
    case: Sequence[str],
    image_id: Sequence[Any],
    stratum: Sequence[str] | np.ndarray,
    move: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """A test set's cases table: one row per case, the columns :data:`TESTSET_COLUMNS` in order.

    Also derived from ``truth`` (docs/method.md, section 8): the initial displacement (the corner
    error of the identity) and where the floating patch's corner pixels land in the reference
    patch (the anchors of the error).  ``crop_x``, ``crop_y`` (the reference patch's place in its
    source image) are -1: not known, or not yet placed.

    Parameters
    ----------
    truth : numpy.ndarray
        The ``(n, 2, 3)`` ground truths, floating -> reference.
    width, height : int or Sequence[int] or numpy.ndarray
        The patch size, px: one for all cases or one per case.
    case : Sequence[str]
        The cases' names (:func:`case_labels`).
    image_id : Sequence[Any]
        The source image of each case.
    stratum : Sequence[str] or numpy.ndarray
        The stratum of each case.
    move : tuple of numpy.ndarray or None, optional
        Rotation (degrees), scale and ``(n, 2)`` translation of the reference -> floating move as
        drawn (a rotation and zoom about the patch centre, then a translation). Default None:
        derived from ``truth``.

    Returns
    -------
    pandas.DataFrame
    """
    truth = np.asarray(truth, dtype=float).reshape(-1, 2, 3)
    n = len(truth)
    width = np.broadcast_to(np.asarray(width, dtype=int), (n,)).copy()
    height = np.broadcast_to(np.asarray(height, dtype=int), (n,)).copy()
    sizes = list(zip(width, height))
    displacement = np.array([geometry.corner_error(geometry.IDENTITY, t, w, h) for t, (w, h) in zip(truth, sizes)])
    landed = np.array([geometry.apply(t, geometry.corners(w, h)) for t, (w, h) in zip(truth, sizes)]).reshape(n, 4, 2)
    if move is None:
        moves = geometry.invert(truth)
        centres = np.stack([(width - 1) / 2.0, (height - 1) / 2.0], axis=1)
        move = (
            np.degrees(geometry.rotation_angle(moves)),
            geometry.scale_factor(moves),
            geometry.apply(moves, centres[:, None, :])[:, 0] - centres,
        )
    rotation_deg, scale, translation = move
    columns = {
        "case": list(case),
        "image_id": list(image_id),
        "stratum": stratum,
        "rotation_deg": rotation_deg,
        "scale": scale,
        "translation_x": translation[:, 0],
        "translation_y": translation[:, 1],
        "initial_displacement_px": displacement,
        **{f"true_{key}": values for key, values in zip(MATRIX_KEYS, truth.reshape(-1, 6).T)},
        **{f"corner{i}_{axis}": landed[:, i, j] for i in range(4) for j, axis in enumerate("xy")},
        "crop_x": np.full(n, -1),
        "crop_y": np.full(n, -1),
        "width": width,
        "height": height,
    }
    return pd.DataFrame(columns, columns=list(TESTSET_COLUMNS))

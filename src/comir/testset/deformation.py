"""Test sets with a known smooth deformation: the draw, the truth and its files (docs/explanation/deformable.md).

A test set's ``deformation`` section deforms the floating patches of every case by a seeded
random smooth invertible displacement field (:func:`comir.deformation.synthetic.random_displacement`) on
top of the recipe's rigid (or similarity) transform. Both floating patches of a case (A and B)
get the same deformation, as they get the same transform, so one truth serves both directions.

* The floating patch is sampled from the source image once, through the deformation and the
  transform together (:func:`sample_points`): deformed floating pixel ``y`` shows the undeformed
  floating patch at ``y + u(y)``.
* The truth is the **total** field on the reference grid (:func:`true_field`): reference pixel
  ``x`` shows what the deformed floating patch shows at ``x + T(x)``; the convention of a
  registration's field (:mod:`comir.register.deformable`), so a registration is scored by
  comparing its field with ``T``.
* The landmarks are the points of a regular grid on the reference patch whose true position lies
  inside the floating patch (:func:`landmarks`).

Files, next to the case's patches: ``<case>_field.h5`` (``T``, SimpleITK's displacement-field
transform file, :func:`comir.deformation.sitk.write_field`) and ``<case>_landmarks.csv`` (columns
``x``, ``y``: reference pixels); :func:`read_truth` reads both, and :class:`FieldScorer` scores a
registration's total field against them (the register rule's per-case TRE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from comir import geometry
from comir.deformation.algebra import invert_field
from comir.deformation.jacobian import folding_fraction, jacobian_determinant
from comir.deformation.landmarks import TRE_SUMMARY_KEYS, landmark_grid, map_points, tre, tre_summary
from comir.deformation.sitk import read_field, write_field
from comir.deformation.synthetic import random_displacement
from comir.io import atomic_path, write_csv

__all__ = [
    "FIELD_SCORE_COLUMNS",
    "Deformation",
    "FieldScorer",
    "landmarks",
    "read_truth",
    "sample_points",
    "true_field",
    "write_truth",
]

#: The columns :class:`FieldScorer` adds to a registration's row, in order.
FIELD_SCORE_COLUMNS: tuple[str, ...] = (
    *(f"tre_{key}" for key in TRE_SUMMARY_KEYS),
    "folded_fraction",
    "jacobian_min",
    "jacobian_max",
)


@dataclass(frozen=True)
class Deformation:
    """A test set's known deformation (its ``deformation`` section).

    Attributes
    ----------
    max_displacement_px : float
        The largest displacement length of each case's field, pixels.
    smoothness_px : float
        The spacing of the field's random B-spline control grid, pixels: its length scale.
    landmark_spacing_px : float
        The spacing of the landmark grid on the reference patch, pixels; the grid starts half a
        spacing from the border.
    """

    max_displacement_px: float
    smoothness_px: float = 64.0
    landmark_spacing_px: float = 16.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Deformation | None:
        """The deformation of a test set's ``deformation`` section (``None`` when it has none)."""
        if cfg is None:
            return None
        return cls(**{key: float(value) for key, value in cfg.items()})

    def draw(self, seed: int, case_number: int, size: int) -> np.ndarray:
        """Case ``case_number``'s backward field on the ``size`` px floating grid (``default_rng([seed, 3, case])``).

        Raises
        ------
        ValueError
            Where the draw would fold (:func:`comir.deformation.synthetic.random_displacement`: the
            displacement is too large for the smoothness).
        """
        rng = np.random.default_rng([int(seed), 3, int(case_number)])
        return random_displacement((size, size), self.max_displacement_px, self.smoothness_px, rng)

    def columns(self) -> dict[str, float]:
        """The cases table's columns that record it."""
        return {
            "deformation_max_displacement_px": self.max_displacement_px,
            "deformation_smoothness_px": self.smoothness_px,
        }


def _pixel_grid(shape: tuple[int, int]) -> np.ndarray:
    """The ``(x, y)`` pixel centres of a grid, row by row, float64 ``(H * W, 2)``."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return np.stack([cols.ravel(), rows.ravel()], axis=1)


def sample_points(displacement: np.ndarray) -> np.ndarray:
    """Where each deformed floating pixel samples the undeformed floating patch: ``y + u(y)``, ``(H, W, 2)``."""
    return _pixel_grid(displacement.shape[:2]).reshape(displacement.shape) + displacement


def true_field(truth: np.ndarray, displacement: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The true total field on the reference grid ``shape``: reference pixel -> the deformed floating patch.

    Reference pixel ``x`` is undeformed floating point ``q = inverse(truth)(x)`` (``truth``:
    floating -> reference), which the deformed patch shows at ``q + v(q)`` with ``v`` the inverse
    of ``displacement`` (:func:`comir.deformation.algebra.invert_field`: exact up to interpolation where
    ``q + v(q)`` lies inside the patch).

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)``.
    """
    grid = _pixel_grid(shape)
    undeformed = geometry.apply(geometry.invert(truth), grid)
    total = map_points(undeformed, invert_field(displacement)) - grid
    return total.reshape(*shape, 2).astype(np.float32)


def landmarks(field: np.ndarray, floating_shape: tuple[int, int], spacing_px: float) -> np.ndarray:
    """The landmark grid's reference points whose true position ``p + T(p)`` lies inside the floating patch.

    Returns
    -------
    numpy.ndarray
        float64 ``(N, 2)`` points ``(x, y)``, row by row.
    """
    points = landmark_grid(field.shape, spacing_px, spacing_px / 2)
    moved = map_points(points, field)
    rows, cols = floating_shape
    inside = (moved[:, 0] >= 0) & (moved[:, 0] <= cols - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= rows - 1)
    return points[inside]


def _field_path(image_dir: Path, case: str) -> Path:
    return Path(image_dir) / f"{case}_field.h5"


def _landmarks_path(image_dir: Path, case: str) -> Path:
    return Path(image_dir) / f"{case}_landmarks.csv"


def write_truth(image_dir: Path, case: str, field: np.ndarray, points: np.ndarray) -> None:
    """Write a case's true total field and landmarks next to its patches, each atomically."""
    with atomic_path(_field_path(image_dir, case)) as tmp:
        write_field(tmp, field)
    write_csv(_landmarks_path(image_dir, case), pd.DataFrame(points, columns=["x", "y"]))


def read_truth(image_dir: Path, case: str) -> tuple[np.ndarray, np.ndarray]:
    """A case's true total field (float32 ``(H, W, 2)``) and landmarks (float64 ``(N, 2)``) from ``image_dir``."""
    points = pd.read_csv(_landmarks_path(image_dir, case))[["x", "y"]].to_numpy(np.float64)
    return read_field(_field_path(image_dir, case)), points


@dataclass(frozen=True)
class FieldScorer:
    """A case's total field scored against the truth that a deformation test set keeps in ``image_dir``.

    Calling it with a case's name and field (reference grid -> floating patch) gives
    :data:`FIELD_SCORE_COLUMNS`: :func:`comir.deformation.landmarks.tre_summary` of the TREs at the case's
    landmarks, prefixed ``tre_`` (``tre_n`` landmarks; without any, ``nan`` statistics: a
    failure in the tables), the fraction of reference pixels where the field folds and the range
    of its Jacobian determinant.
    """

    image_dir: Path
    columns: ClassVar[tuple[str, ...]] = FIELD_SCORE_COLUMNS

    def __call__(self, case: str, field: np.ndarray) -> dict[str, float]:
        """The scores of ``field`` for ``case``."""
        truth, points = read_truth(self.image_dir, case)
        height, width = truth.shape[:2]
        summary = tre_summary(tre(field, truth, points), width, height)
        determinant = jacobian_determinant(field)
        return {
            **{f"tre_{key}": value for key, value in summary.items()},
            "folded_fraction": folding_fraction(field),
            "jacobian_min": float(determinant.min()),
            "jacobian_max": float(determinant.max()),
        }

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
registration's total field against them (the register rule's per-case TRE). With ``mask_slot``,
``<case>_mask_flo.tif`` holds the structures of that modality's source image (:func:`structure_mask`)
cut like the floating patches; the scorer maps it onto the reference grid by the registration's
field and by the truth and compares the two (Dice, HD95).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import ndimage

from comir import geometry
from comir.deformation.algebra import invert_field
from comir.deformation.jacobian import folding_fraction, jacobian_determinant
from comir.deformation.landmarks import TRE_SUMMARY_KEYS, landmark_grid, map_points, tre, tre_summary
from comir.deformation.overlap import dice, hausdorff95
from comir.deformation.sitk import read_field, write_field
from comir.deformation.synthetic import random_displacement
from comir.deformation.warp import inside_mask, warp_image
from comir.io import atomic_path, read_image, reject_unknown_keys, write_csv, write_tiff

__all__ = [
    "FIELD_SCORE_COLUMNS",
    "Deformation",
    "FieldScorer",
    "landmarks",
    "otsu_threshold",
    "read_mask",
    "read_truth",
    "sample_points",
    "structure_mask",
    "true_field",
    "write_mask",
    "write_truth",
]

#: The columns :class:`FieldScorer` adds to a registration's row, in order.
FIELD_SCORE_COLUMNS: tuple[str, ...] = (
    *(f"tre_{key}" for key in TRE_SUMMARY_KEYS),
    "folded_fraction",
    "jacobian_min",
    "jacobian_max",
    "dice",
    "hd95_px",
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
    mask_slot : str or None
        The modality (``"A"`` or ``"B"``) whose source image gives each case its structure masks
        (:func:`structure_mask`), cut like the patches; ``None``: no masks (no Dice, no HD95).
    mask_smoothing_px : float
        The Gaussian sigma of :func:`structure_mask`, pixels.
    """

    max_displacement_px: float
    smoothness_px: float = 64.0
    landmark_spacing_px: float = 16.0
    mask_slot: str | None = None
    mask_smoothing_px: float = 2.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Deformation | None:
        """The deformation of a test set's ``deformation`` section (``None`` when it has none).

        Parameters
        ----------
        cfg : Mapping[str, Any] or None
            The section: the fields of :class:`Deformation` by name, each converted to float but
            ``mask_slot``.

        Returns
        -------
        Deformation or None

        Raises
        ------
        ValueError
            If the section has a key that is not a field.
        """
        if cfg is None:
            return None
        reject_unknown_keys(cfg, [f.name for f in fields(cls)], "deformation key(s)")
        return cls(**{key: value if key == "mask_slot" else float(value) for key, value in cfg.items()})

    def draw(self, seed: int, case_number: int, size: int) -> np.ndarray:
        """Case ``case_number``'s backward field on the ``size`` px floating grid (``default_rng([seed, 3, case])``).

        Parameters
        ----------
        seed : int
            The test set's seed.
        case_number : int
            The case's number in the cases table.
        size : int
            The floating patch's side, px.

        Returns
        -------
        numpy.ndarray
            ``(size, size, 2)`` backward field (:func:`comir.deformation.synthetic.random_displacement`).

        Raises
        ------
        ValueError
            Where the draw would fold (:func:`comir.deformation.synthetic.random_displacement`: the
            displacement is too large for the smoothness).
        """
        rng = np.random.default_rng([int(seed), 3, int(case_number)])
        return random_displacement((size, size), self.max_displacement_px, self.smoothness_px, rng)

    def columns(self) -> dict[str, float | str]:
        """The cases table's columns that record it (with masks, their slot)."""
        masks = {} if self.mask_slot is None else {"deformation_mask_slot": self.mask_slot}
        return {
            "deformation_max_displacement_px": self.max_displacement_px,
            "deformation_smoothness_px": self.smoothness_px,
            **masks,
        }


def structure_mask(image: np.ndarray, smoothing_px: float, log1p: bool = False) -> np.ndarray:
    """The bright structures of an image: its channel mean, Gaussian-smoothed, above Otsu's threshold.

    The structures a deformation test set scores by overlap (Dice, HD95), e.g. the collagen of an
    SHG image or the vegetation of a near-infrared one; the same mask is cut into a case's
    reference and floating grids, so a perfect registration maps one onto the other.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` source image.
    smoothing_px : float
        Gaussian sigma, pixels (0: none).
    log1p : bool, optional
        Threshold ``log(1 + max(I, 0))`` instead, as the networks see a modality with ``log1p``
        (heavy-tailed SHG intensities: on the raw values Otsu keeps only the brightest fibres).
        Default False.

    Returns
    -------
    numpy.ndarray
        Boolean ``(H, W)``; all False for a constant image.
    """
    grey = np.asarray(image, dtype=np.float64)
    grey = grey.mean(axis=2) if grey.ndim == 3 else grey
    if log1p:
        grey = np.log1p(np.maximum(grey, 0.0))
    if smoothing_px > 0:
        grey = ndimage.gaussian_filter(grey, smoothing_px)
    if np.ptp(grey) == 0:
        return np.zeros(grey.shape, dtype=bool)
    return grey > otsu_threshold(grey)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the histogram bin centre that maximises the between-class variance.

    As ``skimage.filters.threshold_otsu`` (here because the test-set environment has no
    scikit-image): pixels above the returned value form the bright class.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape, finite, not all equal.
    bins : int, optional
        Histogram bins over the value range. Default 256.

    Returns
    -------
    float
    """
    counts, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1].astype(np.float64)  # class sizes and means for a cut after each bin
    above = below[-1] + counts[-1] - below
    sums = np.cumsum(counts * centres)[:-1]
    mean_below = sums / np.maximum(below, 1)
    mean_above = (sums[-1] + counts[-1] * centres[-1] - sums) / np.maximum(above, 1)
    return float(centres[int(np.argmax(below * above * (mean_below - mean_above) ** 2))])


def _pixel_grid(shape: tuple[int, int]) -> np.ndarray:
    """The ``(x, y)`` pixel centres of a grid, row by row, float64 ``(H * W, 2)``."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return np.stack([cols.ravel(), rows.ravel()], axis=1)


def sample_points(displacement: np.ndarray) -> np.ndarray:
    """Where each deformed floating pixel samples the undeformed floating patch: ``y + u(y)``, ``(H, W, 2)``.

    Parameters
    ----------
    displacement : numpy.ndarray
        ``(H, W, 2)`` backward field ``u`` on the floating grid.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 2)`` points ``(x, y)``, pixels of the undeformed floating patch.
    """
    return _pixel_grid(displacement.shape[:2]).reshape(displacement.shape) + displacement


def true_field(truth: np.ndarray, displacement: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The true total field on the reference grid ``shape``: reference pixel -> the deformed floating patch.

    Reference pixel ``x`` is undeformed floating point ``q = inverse(truth)(x)`` (``truth``:
    floating -> reference), which the deformed patch shows at ``q + v(q)`` with ``v`` the inverse
    of ``displacement`` (:func:`comir.deformation.algebra.invert_field`: exact up to interpolation where
    ``q + v(q)`` lies inside the patch).

    Parameters
    ----------
    truth : numpy.ndarray
        2x3 floating -> reference matrix of the case.
    displacement : numpy.ndarray
        ``(h, w, 2)`` backward field that deformed the floating patch (:meth:`Deformation.draw`).
    shape : tuple of int
        ``(H, W)`` of the reference grid.

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

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` true total field ``T`` on the reference grid (:func:`true_field`).
    floating_shape : tuple of int
        ``(h, w)`` of the floating patch.
    spacing_px : float
        The grid's spacing, pixels; it starts half a spacing from the border
        (:func:`comir.deformation.landmarks.landmark_grid`).

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
    """Write a case's true total field and landmarks next to its patches, each atomically.

    Parameters
    ----------
    image_dir : pathlib.Path
        The test set's patch folder.
    case : str
        The case's name; the files are ``<case>_field.h5`` and ``<case>_landmarks.csv``.
    field : numpy.ndarray
        ``(H, W, 2)`` true total field (:func:`true_field`).
    points : numpy.ndarray
        ``(N, 2)`` landmarks ``(x, y)`` (:func:`landmarks`).
    """
    with atomic_path(_field_path(image_dir, case)) as tmp:
        write_field(tmp, field)
    write_csv(_landmarks_path(image_dir, case), pd.DataFrame(points, columns=["x", "y"]))


def _mask_path(image_dir: Path, case: str) -> Path:
    return Path(image_dir) / f"{case}_mask_flo.tif"


def write_mask(image_dir: Path, case: str, mask: np.ndarray) -> None:
    """Write a case's structure mask on its (deformed) floating grid, atomically.

    Parameters
    ----------
    image_dir : pathlib.Path
        The test set's patch folder.
    case : str
        The case's name; the file is ``<case>_mask_flo.tif``.
    mask : numpy.ndarray
        ``(H, W)`` uint8 mask (255 inside), cut as the case's floating patches are.
    """
    write_tiff(_mask_path(image_dir, case), mask)


def read_mask(image_dir: Path, case: str) -> np.ndarray | None:
    """A case's structure mask on its floating grid (boolean), or ``None`` when its test set has none.

    Parameters
    ----------
    image_dir : pathlib.Path
        The test set's patch folder.
    case : str
        The case's name.

    Returns
    -------
    numpy.ndarray or None
        The mask :func:`write_mask` wrote.
    """
    path = _mask_path(image_dir, case)
    return read_image(path) > 0 if path.exists() else None


def read_truth(image_dir: Path, case: str) -> tuple[np.ndarray, np.ndarray]:
    """A case's true total field (float32 ``(H, W, 2)``) and landmarks (float64 ``(N, 2)``) from ``image_dir``.

    Parameters
    ----------
    image_dir : pathlib.Path
        The test set's patch folder.
    case : str
        The case's name.

    Returns
    -------
    field, points : numpy.ndarray
        The files :func:`write_truth` wrote.
    """
    points = pd.read_csv(_landmarks_path(image_dir, case))[["x", "y"]].to_numpy(np.float64)
    return read_field(_field_path(image_dir, case)), points


@dataclass(frozen=True)
class FieldScorer:
    """A case's total field scored against the truth that a deformation test set keeps in ``image_dir``.

    Calling it with a case's name and field (reference grid -> floating patch) gives
    :data:`FIELD_SCORE_COLUMNS`: :func:`comir.deformation.landmarks.tre_summary` of the TREs at the case's
    landmarks, prefixed ``tre_`` (``tre_n`` landmarks; without any, ``nan`` statistics: a
    failure in the tables), the fraction of reference pixels where the field folds, the range
    of its Jacobian determinant and, where the test set has structure masks (``mask_slot``), the
    overlap of the case's floating mask mapped onto the reference grid by the field and by the
    true field: ``dice`` and ``hd95_px`` (:mod:`comir.deformation.overlap`; on the reference
    pixels the truth maps inside the floating patch; ``nan`` without masks). A perfect field
    scores Dice 1 and HD95 0 exactly.
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
            **self._overlap(case, field, truth),
        }

    def _overlap(self, case: str, field: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """Dice and HD95 of the floating mask mapped by ``field`` against it mapped by the truth."""
        mask = read_mask(self.image_dir, case)
        if mask is None:
            return {"dice": math.nan, "hd95_px": math.nan}
        # Scored where the truth maps into the floating patch: elsewhere nothing shows the structures.
        region = inside_mask(truth, mask.shape)
        true_mask = (warp_image(mask.astype(np.float32), truth, order=0) > 0.5) & region
        mapped = (warp_image(mask.astype(np.float32), field, order=0) > 0.5) & region
        return {"dice": dice(true_mask, mapped), "hd95_px": hausdorff95(true_mask, mapped)}

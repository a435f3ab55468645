"""The transformed test set: reference patches, rigidly (or similarly) moved floating patches, ground truth.

Two recipes are supported:

* ``comir`` (the paper; docs/method.md, section 8): rotation uniform in
  ``[-rotation_deg, rotation_deg]``, translation uniform in
  ``[-translation_px, translation_px]`` per axis, about the patch centre; each
  case is assigned to a stratum by its mean corner displacement and strata are
  filled by rejection sampling up to their configured counts.
* ``multiregeval`` (Lu et al. 2021): transform levels; level ``i`` draws a
  rotation magnitude in ``[i*step_deg, (i+1)*step_deg)`` with a random sign
  and a translation magnitude in ``[i*step_px, (i+1)*step_px)`` per axis with
  random signs. The level is the stratum.

Either recipe can add an isotropic scale (``scale_range: [low, high]``, drawn
log-uniformly, i.e. symmetric in zoom in and out; default ``[1, 1]``: the
paper's rigid cases, drawn exactly as without it), which makes similarity test
sets for the similarity and affine transform models (docs/method.md, section
13).  The scale is the floating patch's zoom: content appears ``scale`` times
larger in it than in the reference patch.

Any test set can also degrade one modality's patches (``shift: {modality,
kind, severity}``, :mod:`comir.imaging.shifts`, docs/method.md, section 14): both
patches of that modality are shifted after they are cut (or imported) and
before they are written, in their stored dtype; the cases table then gains the
columns ``shift_modality``, ``shift_kind`` and ``shift_severity``.  Without a
shift nothing is drawn and the files are those of a test set without the key.

A drawn test set can also deform its floating patches by a known smooth field
(``deformation: {max_displacement_px, smoothness_px, landmark_spacing_px}``,
:mod:`comir.testset.deformation`, docs/explanation/deformable.md): each case's
floating patches are sampled through its seeded field and the transform together,
and its true total field and landmarks are written next to its patches; the cases
table then gains the columns ``deformation_max_displacement_px``,
``deformation_smoothness_px`` and ``landmarks``.  Without the key nothing is drawn
and the files are those of a test set without it.

For every case both modalities get the *same* transform, so the same case can
be registered in both directions. The floating patch is resampled from the
full source image (never from the reference patch), so no padding or border
appears as long as the source is large enough; an image that is too small for
the requested patch size and transform range is rejected up front.

A test set can also be a Zenodo record's own transformed test set, imported as
it is (:func:`make_testset`, :mod:`comir.testset.prebuilt`).  Every test set has
the same cases table (:func:`cases_table`, columns :data:`TESTSET_COLUMNS`).

A drawn test set cuts its cases from every image of its split, or from the images it names
(``images``, :func:`split_images`): one test set for the held-out images of the training source
and another for those of other sources, each with its own tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from comir import geometry
from comir.geometry import MATRIX_KEYS
from comir.imaging.preprocess import SLOTS, check_image_sizes
from comir.imaging.shifts import Shift, case_rng
from comir.io import InputError, read_image, reject_unknown_keys, write_tiff
from comir.testset.deformation import (
    Deformation,
    landmarks,
    sample_points,
    structure_mask,
    true_field,
    write_mask,
    write_truth,
)
from comir.testset.prebuilt import import_prebuilt_testset
from comir.testset.table import TESTSET_COLUMNS, case_labels, cases_table

__all__ = [
    "TESTSET_COLUMNS",
    "Stratum",
    "TestSetRecipe",
    "build_testset",
    "case_labels",
    "cases_table",
    "draw_transforms",
    "extract_patches",
    "import_prebuilt_testset",
    "make_testset",
    "shift_written_testset",
    "split_images",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stratum:
    """``count`` cases with an initial displacement above the previous stratum's, up to ``max_displacement_px``."""

    name: str
    max_displacement_px: float | None  # upper bound (inclusive); None = unbounded
    count: int


@dataclass(frozen=True)
class TestSetRecipe:
    """How a test set's transforms are drawn and its patches cut (docs/method.md, section 8)."""

    __test__ = False  # not a pytest test class despite its name

    patch_size: int = 834
    recipe: str = "comir"  # "comir" | "multiregeval"
    rotation_deg: float = 30.0
    translation_px: float = 100.0
    strata: tuple[Stratum, ...] = (
        Stratum("small", 100.0, 45),
        Stratum("medium", 200.0, 45),
        Stratum("large", None, 44),
    )
    # MultiRegEval recipe
    levels: int = 4
    level_rotation_step_deg: float = 5.0
    level_translation_step_px: float = 20.0
    cases_per_level: int = 34
    scale_range: tuple[float, float] = (1.0, 1.0)
    position: str = "center"  # "center" | "random": where the reference patch lies in the source
    interpolation: str = "cubic"
    seed: int = 0
    max_draws: int = 100_000
    shift: Shift | None = None  # one modality's patches degraded (comir.imaging.shifts); None: as drawn
    deformation: Deformation | None = None  # floating patches deformed (comir.testset.deformation); None: rigid

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int) -> TestSetRecipe:
        """The recipe of one of a data set's ``testsets`` in the configuration, drawn with ``seed``.

        Parameters
        ----------
        cfg : Mapping[str, Any]
            The test set's configuration: the recipe's fields by name, ``strata`` (a list of
            ``name``, ``max_displacement_px``, ``count``), ``multiregeval`` (``levels``,
            ``rotation_step_deg``, ``translation_step_px``, ``cases_per_level``), ``shift``
            (:meth:`comir.imaging.shifts.Shift.from_config`) and ``deformation``
            (:meth:`comir.testset.deformation.Deformation.from_config`); ``prebuilt``, ``zenodo``, ``split``
            and ``images`` are ignored. Keys left out keep the recipe's defaults.
        seed : int
            The seed of every draw of the test set.

        Returns
        -------
        TestSetRecipe

        Raises
        ------
        ValueError
            If ``cfg`` has a key that is none of these, or ``scale_range`` is not ``[low, high]``
            with ``0 < low <= high``.
        """
        sections = ("strata", "multiregeval", "prebuilt", "zenodo", "shift", "split", "images", "deformation")
        known = {f.name for f in fields(cls) if f.name not in ("seed", "shift", "deformation")}
        reject_unknown_keys(cfg, sorted(known | set(sections)), "test set key(s)")
        strata = tuple(Stratum(s["name"], s.get("max_displacement_px"), int(s["count"])) for s in cfg.get("strata", []))
        kwargs = {k: v for k, v in cfg.items() if k not in sections}
        mre = cfg.get("multiregeval", {})
        renamed = {
            "levels": mre.get("levels"),
            "level_rotation_step_deg": mre.get("rotation_step_deg"),
            "level_translation_step_px": mre.get("translation_step_px"),
            "cases_per_level": mre.get("cases_per_level"),
        }
        kwargs.update({k: v for k, v in renamed.items() if v is not None})
        if "scale_range" in kwargs:
            low, high = (float(v) for v in kwargs["scale_range"])
            if not 0 < low <= high:
                raise ValueError(f"scale_range must be [low, high] with 0 < low <= high, got {kwargs['scale_range']}")
            kwargs["scale_range"] = (low, high)
        if strata:
            kwargs["strata"] = strata
        shift, deformation = Shift.from_config(cfg.get("shift")), Deformation.from_config(cfg.get("deformation"))
        return cls(seed=seed, shift=shift, deformation=deformation, **kwargs)

    def max_reach(self) -> float:
        """Largest distance from the patch centre at which a floating patch samples the source."""
        if self.recipe == "multiregeval":
            rot = math.radians(self.levels * self.level_rotation_step_deg)
            shift = self.levels * self.level_translation_step_px
        else:
            rot = math.radians(self.rotation_deg)
            shift = self.translation_px
        half = (self.patch_size - 1) / 2
        # A floating pixel p (relative to the centre) samples R^T (p - t) / s; each component
        # is at most (|cos| + |sin|) * (half + shift) / s, which grows up to 45 degrees. A
        # deformation moves p by at most its largest displacement first.
        if self.deformation is not None:
            half += self.deformation.max_displacement_px
        spread = math.sqrt(2) if rot >= math.pi / 4 else math.cos(rot) + math.sin(rot)
        return spread * (half + shift) / self.scale_range[0] + 2  # +2 px for the cubic kernel's support

    @property
    def scaled(self) -> bool:
        """Whether the cases have a scale (``scale_range`` is not ``[1, 1]``)."""
        return self.scale_range != (1.0, 1.0)

    def draw_scales(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` scales, log-uniform in ``scale_range`` (ones, drawing nothing, for ``[1, 1]``).

        Parameters
        ----------
        rng : numpy.random.Generator
            The generator drawn from.
        n : int
            How many scales.

        Returns
        -------
        numpy.ndarray
            float64 ``(n,)``.
        """
        if not self.scaled:
            return np.ones(n)
        low, high = np.log(self.scale_range)
        return np.exp(rng.uniform(low, high, n))

    def min_source_size(self) -> int:
        """The smallest source image side (px) from which every case's patches can be cut."""
        return int(math.ceil(2 * self.max_reach()))


def draw_transforms(recipe: TestSetRecipe, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the stratified transforms: the cases table, not yet tied to an image.

    Cases are numbered in the order drawn; ``image_id`` is empty and ``crop_x``,
    ``crop_y`` are -1 until :func:`build_testset` places each case in an image.

    Parameters
    ----------
    recipe : TestSetRecipe
        The recipe: ``comir`` (strata filled by rejection sampling) or ``multiregeval`` (levels).
    rng : numpy.random.Generator
        The generator drawn from.

    Returns
    -------
    pandas.DataFrame
        The cases table (:func:`cases_table`), strata in the recipe's order.

    Raises
    ------
    ValueError
        For the ``comir`` recipe, if its strata are not ordered by increasing
        ``max_displacement_px`` or cannot be filled within ``recipe.max_draws`` draws.
    """
    size = recipe.patch_size
    center = ((size - 1) / 2, (size - 1) / 2)
    if recipe.recipe == "multiregeval":
        level = np.repeat(np.arange(recipe.levels), recipe.cases_per_level)
        sign = rng.choice([-1.0, 1.0], size=(level.size, 3))
        angle = sign[:, 0] * (level + rng.random(level.size)) * recipe.level_rotation_step_deg
        shift = sign[:, 1:] * (level[:, None] + rng.random((level.size, 2)))
        shift *= recipe.level_translation_step_px
        stratum = np.array([f"level{i + 1}" for i in level])
        scale = recipe.draw_scales(rng, level.size)
    else:
        angle, scale, shift, stratum = _draw_stratified(recipe, rng, center)
    # The transform moves reference content to where it appears in the floating patch.
    moves = np.stack([_similarity_about(a, s, tx, ty, center) for a, s, (tx, ty) in zip(angle, scale, shift)])
    truth = geometry.invert(moves)  # floating -> reference
    n = len(truth)
    return cases_table(
        truth, size, size, case=case_labels(n), image_id=[""] * n, stratum=stratum, move=(angle, scale, shift)
    )


def _similarity_about(angle_deg: float, scale: float, tx: float, ty: float, center: tuple[float, float]) -> np.ndarray:
    """``p -> scale R (p - c) + c + t``: rotation by ``angle_deg`` and zoom by ``scale`` about ``c``, then ``t``."""
    matrix = geometry.rigid_matrix(np.radians(angle_deg), tx, ty, center)
    matrix[:, :2] *= scale
    matrix[:, 2] = np.asarray(center) + (tx, ty) - matrix[:, :2] @ np.asarray(center)
    return matrix


def _draw_stratified(
    recipe: TestSetRecipe, rng: np.random.Generator, center: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rejection sampling: draw uniform transforms in batches until every stratum is full."""
    bounds = [s.max_displacement_px for s in recipe.strata]
    upper = np.array([math.inf if b is None else b for b in bounds])
    if np.any(np.diff(upper) <= 0):
        raise ValueError("test-set strata must be ordered by increasing max_displacement_px")
    size = recipe.patch_size
    picked: list[list[tuple[float, float, float, float]]] = [[] for _ in recipe.strata]
    needed = np.array([s.count for s in recipe.strata])
    drawn = 0
    while any(len(p) < n for p, n in zip(picked, needed)):
        if drawn >= recipe.max_draws:
            missing = {s.name: int(n - len(p)) for s, p, n in zip(recipe.strata, picked, needed) if len(p) < n}
            raise ValueError(
                f"could not fill test-set strata {missing} after {drawn} draws: with rotation "
                f"+-{recipe.rotation_deg} deg and translation +-{recipe.translation_px} px these "
                "displacements are (nearly) unreachable; change the strata or the ranges"
            )
        batch = 4096
        angle = rng.uniform(-recipe.rotation_deg, recipe.rotation_deg, batch)
        shift = rng.uniform(-recipe.translation_px, recipe.translation_px, (batch, 2))
        scale = recipe.draw_scales(rng, batch)
        cos, sin = scale * np.cos(np.radians(angle)), scale * np.sin(np.radians(angle))
        rel = geometry.corners(size, size) - np.asarray(center)
        # Displacement of each corner under rotation and zoom about the centre plus translation.
        moved_x = cos[:, None] * rel[:, 0] - sin[:, None] * rel[:, 1] + shift[:, :1]
        moved_y = sin[:, None] * rel[:, 0] + cos[:, None] * rel[:, 1] + shift[:, 1:]
        disp = np.hypot(moved_x - rel[:, 0], moved_y - rel[:, 1]).mean(axis=1)
        which = np.searchsorted(upper, disp, side="left")  # <= bound belongs to that stratum
        for a, z, (tx, ty), w in zip(angle, scale, shift, which):
            if w < len(picked) and len(picked[w]) < needed[w]:
                picked[w].append((a, z, tx, ty))
        drawn += batch
    rows = [(s.name, *t) for s, p in zip(recipe.strata, picked) for t in p]
    names = np.array([r[0] for r in rows])
    angle = np.array([r[1] for r in rows])
    scale = np.array([r[2] for r in rows])
    shift = np.array([[r[3], r[4]] for r in rows])
    return angle, scale, shift, names


_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def extract_patches(
    image: np.ndarray,
    origin: tuple[float, float],
    truth: np.ndarray,
    size: int,
    interpolation: str,
    displacement: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the reference patch at ``origin`` and the floating patch of the same place.

    ``floating(p) = source(truth @ p + origin)``: the floating pixel ``p`` shows
    the reference point ``truth(p)``, i.e. the source point offset by the crop.
    With a ``displacement`` (a backward field on the floating grid) the floating
    patch is deformed in the same single interpolation: ``floating(p) =
    source(truth @ (p + u(p)) + origin)``.

    Parameters
    ----------
    image : numpy.ndarray
        The source image, ``(H, W)`` or ``(H, W, C)``.
    origin : tuple of float
        ``(x0, y0)``: the reference patch's top-left pixel in the source, px.
    truth : numpy.ndarray
        2x3 floating -> reference matrix.
    size : int
        The patches' side, px.
    interpolation : str
        ``"nearest"``, ``"linear"`` or ``"cubic"`` (OpenCV's) for the floating patch.
    displacement : numpy.ndarray or None, optional
        ``(size, size, 2)`` backward field ``u`` on the floating grid. Default None: no deformation.

    Returns
    -------
    reference, floating : numpy.ndarray
        The two patches, in the image's dtype. The source is reflected beyond its border, which
        only a caller that skips the size check reaches.
    """
    x0, y0 = origin
    reference = image[int(y0) : int(y0) + size, int(x0) : int(x0) + size]
    sample = truth.copy()
    sample[:, 2] += (x0, y0)
    border = cv2.BORDER_REFLECT_101  # only reached if a caller skips the size check
    if displacement is None:
        floating = cv2.warpAffine(
            image, sample, (size, size), flags=_INTERPOLATION[interpolation] | cv2.WARP_INVERSE_MAP, borderMode=border
        )
    else:
        source = geometry.apply(sample, sample_points(displacement)).astype(np.float32)
        maps = [np.ascontiguousarray(source[..., k]) for k in range(2)]
        floating = cv2.remap(image, *maps, _INTERPOLATION[interpolation], borderMode=border)
    return reference.copy(), floating


def split_images(pairs: pd.DataFrame, split: str, images: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of a pairs table a test set's cases are cut from: its split's, or the named images of it.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pairs table (columns ``id`` and ``split`` at least).
    split : str
        The test set's split (``"test"`` or ``"val"``).
    images : Sequence[str] or None, optional
        The test set's ``images`` (pair ids of that split), in any order; None (default): all of them.

    Returns
    -------
    pandas.DataFrame
        The rows, in the table's order.

    Raises
    ------
    comir.io.InputError
        If an image of ``images`` is not in the split (each named, with the split's ids).
    """
    rows = pairs[pairs["split"] == split]
    if images is None:
        return rows
    missing = sorted(set(images) - set(rows["id"]))
    if missing:
        raise InputError(
            f"test set images {missing} are not in the {split} split, whose images are {sorted(rows['id'])}"
        )
    return rows[rows["id"].isin(list(images))]


def build_testset(
    pairs: pd.DataFrame,
    recipe: TestSetRecipe,
    out_dir: Path,
    modalities: Mapping[str, Mapping[str, Any]] | None = None,
    split: str = "test",
) -> pd.DataFrame:
    """Write ``out_dir/<case>_<slot>_{ref,flo}.tif`` for every case and return the cases table.

    ``pairs`` holds the images of ``split`` (columns ``id, path_A, path_B``); cases are
    spread over its images round-robin in a seeded random order.  With a
    ``recipe.shift``, its modality's patches are shifted before they are
    written (the full scale of their stored values: that modality's
    ``max_value`` in ``modalities``, by default the dtype's).  With a
    ``recipe.deformation``, case ``i``'s floating patches are deformed by its
    field (:meth:`Deformation.draw` with the recipe's seed and ``i``) and its
    truth is written next to them (:func:`comir.testset.deformation.write_truth`).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pairs table of the split's images (columns ``id``, ``path_A``, ``path_B``).
    recipe : TestSetRecipe
        How the transforms are drawn and the patches cut.
    out_dir : pathlib.Path
        Where the patches are written.
    modalities : Mapping[str, Mapping[str, Any]] or None, optional
        The modality settings per slot; only the shifted modality's ``max_value`` is read.
        Default None.
    split : str, optional
        The split ``pairs`` holds, named in the error message for an empty table. Default ``"test"``.

    Returns
    -------
    pandas.DataFrame
        The cases table (:func:`cases_table`) with ``crop_x``, ``crop_y`` set, then the shift's
        columns and the deformation's (with ``landmarks``, the count per case) where there are any.

    Raises
    ------
    comir.io.InputError
        If ``pairs`` is empty or an image is too small for the patch size and transform range.
    ValueError
        If the transforms cannot be drawn (:func:`draw_transforms`) or a deformation would fold
        (:meth:`Deformation.draw`).
    """
    if pairs.empty:
        raise InputError(f"the {split} split is empty: no images to build a test set from")
    rng = np.random.default_rng([recipe.seed, 1])
    cases = draw_transforms(recipe, rng)
    cases = cases.sample(frac=1.0, random_state=np.random.RandomState(recipe.seed)).reset_index(drop=True)
    cases["case"] = case_labels(len(cases))
    order = rng.permutation(len(pairs))
    cases["image_id"] = [pairs["id"].iloc[order[i % len(pairs)]] for i in range(len(cases))]
    size = recipe.patch_size
    reach = recipe.max_reach()
    lo = reach - (size - 1) / 2  # the patch origin must keep the whole reach inside the image
    by_id = pairs.set_index("id")
    deformation, counts = recipe.deformation, {}  # landmarks per case (with a deformation)
    for image_id, group in cases.groupby("image_id", sort=False):
        images = {slot: read_image(by_id.loc[image_id, f"path_{slot}"]) for slot in SLOTS}
        mask = None  # the structures scored by overlap, cut like the patches (nearest neighbour)
        if deformation is not None and deformation.mask_slot is not None:
            log1p = bool((modalities or {}).get(deformation.mask_slot, {}).get("log1p", False))
            found = structure_mask(images[deformation.mask_slot], deformation.mask_smoothing_px, log1p)
            mask = 255 * found.astype(np.uint8)
        height, width = images["A"].shape[:2]
        hi_x, hi_y = width - size - lo, height - size - lo
        if hi_x < lo or hi_y < lo:
            raise InputError(
                f"image {by_id.loc[image_id, 'path_A']} ({width}x{height} px) is too small for "
                f"{size} px test patches with this transform range: it needs at least "
                f"{recipe.min_source_size()} px per side"
            )
        for index, row in group.iterrows():
            if recipe.position == "random":
                x0 = int(rng.integers(math.ceil(lo), math.floor(hi_x) + 1))
                y0 = int(rng.integers(math.ceil(lo), math.floor(hi_y) + 1))
            else:
                x0, y0 = (width - size) // 2, (height - size) // 2
            cases.loc[index, ["crop_x", "crop_y"]] = (x0, y0)
            truth = row[[f"true_{k}" for k in MATRIX_KEYS]].to_numpy(float).reshape(2, 3)
            displacement = None if deformation is None else deformation.draw(recipe.seed, index, size)
            for slot in SLOTS:
                ref, flo = extract_patches(images[slot], (x0, y0), truth, size, recipe.interpolation, displacement)
                if recipe.shift is not None and slot == recipe.shift.modality:
                    ref, flo = _shifted(recipe.shift, recipe.seed, index, (ref, flo), modalities)
                write_tiff(out_dir / f"{row['case']}_{slot}_ref.tif", ref)
                write_tiff(out_dir / f"{row['case']}_{slot}_flo.tif", flo)
            if deformation is not None:
                field = true_field(truth, displacement, (size, size))
                points = landmarks(field, (size, size), deformation.landmark_spacing_px)
                write_truth(out_dir, row["case"], field, points)
                if mask is not None:
                    _, floating_mask = extract_patches(mask, (x0, y0), truth, size, "nearest", displacement)
                    write_mask(out_dir, row["case"], floating_mask)
                counts[index] = len(points)
    cases = _with_shift_columns(cases, recipe.shift)
    if deformation is None:
        return cases
    return cases.assign(**deformation.columns(), landmarks=pd.Series(counts))


def _shifted(
    shift: Shift,
    seed: int,
    case_number: int,
    patches: tuple[np.ndarray, np.ndarray],
    modalities: Mapping[str, Mapping[str, Any]] | None,
) -> list[np.ndarray]:
    """One case's reference and floating patch of the shifted modality, shifted with the case's own draw."""
    max_value = (modalities or {}).get(shift.modality, {}).get("max_value")
    return shift.apply_stored(patches, case_rng(seed, case_number), max_value)


def _with_shift_columns(cases: pd.DataFrame, shift: Shift | None) -> pd.DataFrame:
    """The cases table, with the shift recorded in its last columns when there is one."""
    if shift is None:
        return cases
    return cases.assign(**shift.columns())


def shift_written_testset(
    cases: pd.DataFrame,
    images_dir: Path,
    shift: Shift,
    seed: int,
    modalities: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Shift the patches of a test set already written to ``images_dir`` (an imported one), in place.

    Case ``i`` of ``cases`` (table order) draws from ``case_rng(seed, i)``, as in
    :func:`build_testset`.

    Parameters
    ----------
    cases : pandas.DataFrame
        The test set's cases table.
    images_dir : pathlib.Path
        The folder of the written patches; the shifted modality's ``ref`` and ``flo`` patches are
        overwritten.
    shift : Shift
        The shift (:mod:`comir.imaging.shifts`).
    seed : int
        The test set's seed.
    modalities : Mapping[str, Mapping[str, Any]] or None, optional
        The modality settings per slot; the shifted modality's ``max_value`` is the full scale of
        its stored values (None: the dtype's). Default None.

    Returns
    -------
    pandas.DataFrame
        The cases table with the shift's columns.
    """
    images_dir = Path(images_dir)
    for number, case in enumerate(cases["case"]):
        paths = [images_dir / f"{case}_{shift.modality}_{kind}.tif" for kind in ("ref", "flo")]
        shifted = _shifted(shift, seed, number, tuple(read_image(p) for p in paths), modalities)
        for path, patch in zip(paths, shifted):
            write_tiff(path, patch)
    return _with_shift_columns(cases, shift)


def make_testset(
    spec: Mapping[str, Any],
    seed: int,
    pairs_csv: Path,
    images_dir: Path,
    record_dir: Path | None = None,
    modalities: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One named test set (docs/method.md, section 8): its patches written to ``images_dir``, its cases table.

    ``spec`` is the test set's configuration.  Recipe ``prebuilt`` imports the
    transformed test set ``spec["prebuilt"]`` of the unpacked record
    ``record_dir`` for the dataset's ``modalities`` (slots A, B); any other
    recipe draws the cases with ``seed`` from the split ``spec["split"]`` (default: test) of the pairs
    table ``pairs_csv``, or from its images ``spec["images"]`` (:func:`split_images`), once every
    test image is known to be large enough.  A
    ``spec["shift"]`` degrades one modality's patches (:mod:`comir.imaging.shifts`; the
    full scale of its stored values from ``modalities``).

    Parameters
    ----------
    spec : Mapping[str, Any]
        The test set's configuration.
    seed : int
        The seed of the draws and of the shift.
    pairs_csv : pathlib.Path
        The pairs table (not read for recipe ``prebuilt``).
    images_dir : pathlib.Path
        Where the patches are written.
    record_dir : pathlib.Path or None, optional
        The unpacked record, required for recipe ``prebuilt``. Default None.
    modalities : Mapping[str, Any] or None, optional
        The dataset's modalities (slots A, B). Default None.

    Returns
    -------
    pandas.DataFrame
        The cases table.

    Raises
    ------
    ValueError
        If recipe ``prebuilt`` has no ``record_dir``, or the recipe's settings or draws are invalid.
    comir.io.InputError
        If an image is too small, ``spec["images"]`` names one outside the split, or the record's
        test set cannot be imported (:func:`import_prebuilt_testset`).
    """
    images_dir = Path(images_dir)
    if spec["recipe"] == "prebuilt":
        if record_dir is None:
            raise ValueError("a prebuilt test set needs its unpacked record")
        from comir.data.layouts.detect import detect_layout

        cases = import_prebuilt_testset(detect_layout(Path(record_dir)), spec["prebuilt"], images_dir, modalities)
        shift = Shift.from_config(spec.get("shift"))
        if shift is not None:
            cases = shift_written_testset(cases, images_dir, shift, seed, modalities)
    else:
        pairs = pd.read_csv(pairs_csv)
        recipe = TestSetRecipe.from_config(spec, seed)
        split = spec.get("split", "test")
        pairs = split_images(pairs, split, spec.get("images"))
        check_image_sizes(pairs, [split], recipe.min_source_size(), "this test set's patches and transforms")
        cases = build_testset(pairs, recipe, images_dir, modalities, split)
    log.info("%d cases: %s", len(cases), cases["stratum"].value_counts().to_dict())
    return cases

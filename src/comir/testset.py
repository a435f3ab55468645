"""The transformed test set: reference patches, rigidly moved floating patches, ground truth.

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

For every case both modalities get the *same* transform, so the same case can
be registered in both directions. The floating patch is resampled from the
full source image (never from the reference patch), so no padding or border
appears as long as the source is large enough; an image that is too small for
the requested patch size and transform range is rejected up front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from comir import geometry
from comir.io import InputError, read_image, write_tiff
from comir.preprocess import SLOTS

MATRIX_KEYS = ("a11", "a12", "tx", "a21", "a22", "ty")


@dataclass(frozen=True)
class Stratum:
    name: str
    max_displacement_px: float | None  # upper bound (inclusive); None = unbounded
    count: int


@dataclass(frozen=True)
class TestSetRecipe:
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
    cases_per_level: int = 10
    position: str = "center"  # "center" | "random": where the reference patch lies in the source
    interpolation: str = "cubic"
    seed: int = 0
    max_draws: int = 100_000

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int) -> TestSetRecipe:
        strata = tuple(
            Stratum(s["name"], s.get("max_displacement_px"), int(s["count"]))
            for s in cfg.get("strata", [])
        )
        kwargs = {k: v for k, v in cfg.items() if k not in ("strata", "multiregeval", "prebuilt")}
        mre = cfg.get("multiregeval", {})
        renamed = {
            "levels": mre.get("levels"),
            "level_rotation_step_deg": mre.get("rotation_step_deg"),
            "level_translation_step_px": mre.get("translation_step_px"),
            "cases_per_level": mre.get("cases_per_level"),
        }
        kwargs.update({k: v for k, v in renamed.items() if v is not None})
        if strata:
            kwargs["strata"] = strata
        return cls(seed=seed, **kwargs)

    def max_reach(self) -> float:
        """Largest distance from the patch centre at which a floating patch samples the source."""
        if self.recipe == "multiregeval":
            rot = math.radians(self.levels * self.level_rotation_step_deg)
            shift = self.levels * self.level_translation_step_px
        else:
            rot = math.radians(self.rotation_deg)
            shift = self.translation_px
        half = (self.patch_size - 1) / 2
        # A floating pixel p (relative to the centre) samples R^T (p - t); each component
        # is at most (|cos| + |sin|) * (half + shift), which grows up to 45 degrees.
        spread = math.sqrt(2) if rot >= math.pi / 4 else math.cos(rot) + math.sin(rot)
        return spread * (half + shift) + 2  # +2 px for the cubic kernel's support

    def min_source_size(self) -> int:
        return int(math.ceil(2 * self.max_reach()))


def draw_transforms(recipe: TestSetRecipe, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the stratified transforms: one row per case, not yet tied to an image."""
    size = recipe.patch_size
    center = ((size - 1) / 2, (size - 1) / 2)
    if recipe.recipe == "multiregeval":
        level = np.repeat(np.arange(recipe.levels), recipe.cases_per_level)
        sign = rng.choice([-1.0, 1.0], size=(level.size, 3))
        angle = sign[:, 0] * (level + rng.random(level.size)) * recipe.level_rotation_step_deg
        shift = sign[:, 1:] * (level[:, None] + rng.random((level.size, 2)))
        shift *= recipe.level_translation_step_px
        stratum = np.array([f"level{i + 1}" for i in level])
    else:
        angle, shift, stratum = _draw_stratified(recipe, rng, center)
    # The transform moves reference content to where it appears in the floating patch.
    moves = np.stack(
        [geometry.rigid_matrix(np.radians(a), tx, ty, center) for a, (tx, ty) in zip(angle, shift)]
    )
    truth = geometry.invert(moves)  # floating -> reference
    displacement = geometry.corner_error(geometry.IDENTITY, truth, size, size)
    frame = pd.DataFrame(
        {
            "stratum": stratum,
            "rotation_deg": angle,
            "translation_x": shift[:, 0],
            "translation_y": shift[:, 1],
            "initial_displacement_px": displacement,
        }
    )
    for key, values in zip(MATRIX_KEYS, truth.reshape(-1, 6).T):
        frame[f"true_{key}"] = values
    # Where the floating patch's corner pixels lie in the reference patch (the error's anchors).
    landed = geometry.apply(truth, geometry.corners(size, size))
    for index in range(4):
        frame[f"corner{index}_x"] = landed[:, index, 0]
        frame[f"corner{index}_y"] = landed[:, index, 1]
    return frame


def _draw_stratified(
    recipe: TestSetRecipe, rng: np.random.Generator, center: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rejection sampling: draw uniform transforms in batches until every stratum is full."""
    bounds = [s.max_displacement_px for s in recipe.strata]
    upper = np.array([math.inf if b is None else b for b in bounds])
    if np.any(np.diff(upper) <= 0):
        raise ValueError("test-set strata must be ordered by increasing max_displacement_px")
    size = recipe.patch_size
    picked: list[list[tuple[float, float, float]]] = [[] for _ in recipe.strata]
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
        cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        rel = geometry.corners(size, size) - np.asarray(center)
        # Displacement of each corner under rotation about the centre plus translation.
        moved_x = cos[:, None] * rel[:, 0] - sin[:, None] * rel[:, 1] + shift[:, :1]
        moved_y = sin[:, None] * rel[:, 0] + cos[:, None] * rel[:, 1] + shift[:, 1:]
        disp = np.hypot(moved_x - rel[:, 0], moved_y - rel[:, 1]).mean(axis=1)
        which = np.searchsorted(upper, disp, side="left")  # <= bound belongs to that stratum
        for a, (tx, ty), w in zip(angle, shift, which):
            if w < len(picked) and len(picked[w]) < needed[w]:
                picked[w].append((a, tx, ty))
        drawn += batch
    rows = [(s.name, *t) for s, p in zip(recipe.strata, picked) for t in p]
    names = np.array([r[0] for r in rows])
    angle = np.array([r[1] for r in rows])
    shift = np.array([[r[2], r[3]] for r in rows])
    return angle, shift, names


_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def extract_patches(
    image: np.ndarray, origin: tuple[float, float], truth: np.ndarray, size: int, interpolation: str
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the reference patch at ``origin`` and the floating patch of the same place.

    ``floating(p) = source(truth @ p + origin)``: the floating pixel ``p`` shows
    the reference point ``truth(p)``, i.e. the source point offset by the crop.
    """
    x0, y0 = origin
    reference = image[int(y0) : int(y0) + size, int(x0) : int(x0) + size]
    sample = truth.copy()
    sample[:, 2] += (x0, y0)
    floating = cv2.warpAffine(
        image,
        sample,
        (size, size),
        flags=_INTERPOLATION[interpolation] | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,  # only reached if a caller skips the size check
    )
    return reference.copy(), floating


def build_testset(
    pairs: pd.DataFrame, recipe: TestSetRecipe, out_dir: Path
) -> pd.DataFrame:
    """Write ``out_dir/<case>_<slot>_{ref,flo}.tif`` for every case and return the metadata.

    ``pairs`` holds the test split (columns ``id, path_A, path_B``); cases are
    spread over its images round-robin in a seeded random order.
    """
    if pairs.empty:
        raise InputError("the test split is empty: no images to build a test set from")
    rng = np.random.default_rng([recipe.seed, 1])
    cases = draw_transforms(recipe, rng)
    cases = cases.sample(frac=1.0, random_state=np.random.RandomState(recipe.seed)).reset_index(drop=True)
    cases.insert(0, "case", [f"case_{i:04d}" for i in range(len(cases))])
    order = rng.permutation(len(pairs))
    cases.insert(1, "image_id", [pairs["id"].iloc[order[i % len(pairs)]] for i in range(len(cases))])
    size = recipe.patch_size
    reach = recipe.max_reach()
    lo = reach - (size - 1) / 2  # the patch origin must keep the whole reach inside the image
    cases["crop_x"] = 0
    cases["crop_y"] = 0
    by_id = pairs.set_index("id")
    for image_id, group in cases.groupby("image_id", sort=False):
        images = {slot: read_image(by_id.loc[image_id, f"path_{slot}"]) for slot in SLOTS}
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
            for slot in SLOTS:
                ref, flo = extract_patches(images[slot], (x0, y0), truth, size, recipe.interpolation)
                write_tiff(out_dir / f"{row['case']}_{slot}_ref.tif", ref)
                write_tiff(out_dir / f"{row['case']}_{slot}_flo.tif", flo)
    cases["width"] = size
    cases["height"] = size
    return cases

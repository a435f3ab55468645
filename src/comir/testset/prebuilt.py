"""The paper's Zenodo records after unpacking: import a prebuilt transformed test set.

:func:`import_prebuilt_testset` converts a record's transformed test set (found
by :func:`comir.data.layouts.detect.detect_layout`) to the pipeline's test-set format:
``<case>_<slot>_{ref,flo}.tif`` and the cases table of
:func:`comir.testset.cases_table`.  The ground truth (floating -> reference) is
fitted to the corner columns of the record's metadata; which way the corner
columns point is *verified on the pixels* (see :func:`import_prebuilt_testset`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from comir import geometry
from comir.data.convert import BFSHG_CHANNELS, ZURICH_CHANNELS, canonical_image, resolve_modalities
from comir.data.layouts.metadata import read_corner_metadata
from comir.data.layouts.result import MAX_LISTED, Layout, PrebuiltTestSet
from comir.io import InputError, read_image, write_tiff
from comir.testset.table import case_labels, cases_table

__all__ = ["CONVENTIONS", "import_prebuilt_testset"]

log = logging.getLogger(__name__)

#: Conventions of the corner columns that :func:`import_prebuilt_testset` can verify.
#: ``forward``: Trans corners = floating->reference transform of the Ref corners
#: (MultiRegEval's generator); ``inverse``: the opposite direction; ``*_yx``:
#: the same with X and Y meaning (row, column).
CONVENTIONS = ("forward", "inverse", "forward_yx", "inverse_yx")


@dataclass(frozen=True)
class _Case:
    """One case of a prebuilt test set: its patch files and the corners of its metadata row."""

    image_id: str
    part: int  # index of the test set part it belongs to
    stratum: str | None
    files: Mapping[tuple[str, str], Path]  # (modality, role) -> file
    ref: np.ndarray
    trans: np.ndarray


@dataclass(frozen=True)
class _Patches:
    """How the patches of each modality are read: their channels, and whether stored as B, G, R."""

    channels: Mapping[str, int]
    reverse: Mapping[str, bool]

    def load(self, case: _Case, modality: str, role: str) -> np.ndarray:
        """The ``role`` ("R" or "T") patch of ``modality`` of ``case``, channels made canonical."""
        path = case.files[(modality, role)]
        image = canonical_image(read_image(path), self.channels[modality], str(path))
        if self.reverse[modality]:
            image = np.ascontiguousarray(image[..., ::-1])
        return image


def import_prebuilt_testset(
    layout: Layout,
    name: str,
    out_dir: Path,
    modalities: Mapping[str, Any] | Sequence[str],
    *,
    convention: str = "auto",
    min_ncc: float = 0.5,
    check_cases: int = 12,
    strata: Sequence[tuple[str, float | None]] | None = None,
) -> pd.DataFrame:
    """Convert a record's transformed test set to ``out_dir/<case>_<slot>_{ref,flo}.tif`` + cases table.

    Slot ``X``'s ``ref`` is its R patch and ``flo`` its T patch; one ground truth per case,
    floating -> reference, fitted (rigid least squares) to the metadata's Ref -> Trans corners.

    The direction of the corner columns is verified on the pixels: for up to
    ``check_cases`` cases (spread over the parts) and each modality, the T
    patch is warped into the reference frame by each candidate of
    :data:`CONVENTIONS` and compared with the R patch (NCC inside the valid
    overlap).

    Parameters
    ----------
    layout : Layout
        The unpacked record (:func:`comir.data.layouts.detect.detect_layout`).
    name : str
        The transformed test set's name in the record.
    out_dir : pathlib.Path
        Where the patches are written.
    modalities : Mapping[str, Any] or Sequence[str]
        Names slots A and B (``("BF", "SHG")``, ``{"A": "BF", "B": "SHG"}`` or the
        configuration's ``{"A": {"name": ...}, ...}``); both must have reference (R) and
        transformed (T) patches in the record, otherwise an InputError says what was found.
    convention : str, optional
        ``"auto"`` (default) takes the best-matching convention (a warning when it is not
        ``forward``); an explicit convention of :data:`CONVENTIONS` must be the one that matches.
    min_ncc : float, optional
        The least mean NCC the convention must reach. Default 0.5.
    check_cases : int, optional
        How many cases at most are checked on the pixels. Default 12.
    strata : Sequence[tuple[str, float or None]] or None, optional
        ``(name, upper bound px or None), ...`` in increasing order, for the cases of parts
        without a level. Default None: the paper's displacement strata (100 / 200 px at 834 px,
        scaled to the patch width).

    Returns
    -------
    pandas.DataFrame
        The cases table; the columns are those of every test set (:func:`comir.testset.cases_table`).
        ``stratum``: the record's level (e.g. ``tlevel1``) where it has levels, else by ``strata``.
        ``crop_x`` / ``crop_y`` are -1 (the position in the core is not known).
        ``attrs["records"]`` holds the convention and the NCC scores.

    Raises
    ------
    comir.io.InputError
        For an unknown convention; missing R or T patches of a modality, a part without metadata
        or no complete case; corners not related by a rigid transform; R and T patches of a case
        that differ in size; when the best mean NCC is below ``min_ncc``, an explicit convention
        is not the one that matches, or the best convention wins in fewer than 80 % of the cases
        whose candidates differ.
    """
    if convention != "auto" and convention not in CONVENTIONS:
        raise InputError(f"convention must be 'auto' or one of {', '.join(CONVENTIONS)}, got {convention!r}")
    testset = layout.testset(name)
    allowed = ZURICH_CHANNELS if testset.dataset == "zurich" else BFSHG_CHANNELS
    names = resolve_modalities(modalities, tuple(allowed), allowed)  # type: ignore[arg-type]
    patches = _Patches({m: allowed[m] for m in names}, {m: m in testset.bgr_modalities for m in names})
    cases, skipped = _collect_cases(testset, name, names)
    candidates = _candidate_truths(cases, name)
    chosen, summary, checked = _verify_convention(
        cases, candidates, patches, names, len(testset.parts), convention, min_ncc, check_cases, name
    )
    frame = _write_cases(cases, [c[chosen] for c in candidates], patches, names, Path(out_dir), name, strata)
    frame.attrs["records"] = {
        "testset": name, "source": testset.source, "convention": chosen, "ncc": summary,
        "checked_cases": checked, "skipped": skipped, "modalities": list(names),
    }  # fmt: skip
    log.info(
        "test set %r: %d case(s) written to %s (strata %s)", name, len(frame), out_dir,
        frame["stratum"].value_counts().to_dict(),
    )  # fmt: skip
    return frame


def _collect_cases(testset: PrebuiltTestSet, name: str, names: tuple[str, str]) -> tuple[list[_Case], list[str]]:
    """The cases with R and T patches of both modalities and a metadata row, and why others were skipped.

    InputError when a modality lacks R or T patches altogether, a part has no
    metadata CSV, or no case is complete.
    """
    found = testset.modalities()
    lacking = [m for m in names if found.get(m, set()) != {"R", "T"}]
    if lacking:
        have = "; ".join(f"{m}: {'+'.join(sorted(r))}" for m, r in sorted(found.items())) or "no patches"
        raise InputError(
            f"test set {name!r} ({testset.parts[0].folder}) lacks reference (R) and transformed (T) patches "
            f"of {', '.join(lacking)}: found {have}. Registration in both directions needs R and T of both "
            "modalities; build the test set with the pipeline's recipe instead"
        )
    cases: list[_Case] = []
    skipped: list[str] = []
    for part_index, part in enumerate(testset.parts):
        if part.metadata is None:
            raise InputError(
                f"test set {name!r}: no metadata CSV (columns Filename, X1_Ref .. Y4_Trans) listing the patches "
                f"of {part.folder} was found in the record"
            )
        meta = read_corner_metadata(part.metadata)
        rows = {case_id: i for i, case_id in enumerate(meta.ids)}
        for case_id in part.ids():
            files = {(m, r): part.files.get((case_id, m, r)) for m in names for r in ("R", "T")}
            if any(v is None for v in files.values()):
                missing = ", ".join(f"{m} {r}" for (m, r), v in files.items() if v is None)
                skipped.append(f"{case_id}: missing {missing}")
                continue
            if case_id not in rows:
                skipped.append(f"{case_id}: not listed in {part.metadata.name}")
                continue
            i = rows[case_id]
            case = _Case(case_id, part_index, part.stratum, files, meta.ref[i], meta.trans[i])  # type: ignore[arg-type]
            cases.append(case)
        unlisted = sorted(set(rows) - set(part.ids()))
        if unlisted:
            log.warning(
                "%s lists %d case(s) without patches in %s: %s",
                part.metadata, len(unlisted), part.folder, ", ".join(unlisted[:5]),
            )  # fmt: skip
    if skipped:
        log.warning("test set %r: %d patch set(s) skipped: %s", name, len(skipped), "; ".join(skipped[:5]))
    if not cases:
        raise InputError(f"test set {name!r}: no case has R and T patches of {', '.join(names)} and a metadata row")
    return cases, skipped


def _candidate_truths(cases: list[_Case], name: str) -> list[dict[str, np.ndarray]]:
    """Per case the rigid fit under each convention; InputError when corners are not rigidly related."""
    candidates = [_candidate_transforms(c.ref, c.trans) for c in cases]
    residual = np.array(
        [np.abs(geometry.apply(cand["forward"], c.ref) - c.trans).max() for c, cand in zip(cases, candidates)]
    )
    scale = np.array([np.ptp(c.ref, axis=0).max() for c in cases])
    bad = np.flatnonzero(residual > 0.5 + 1e-3 * scale)
    if bad.size:
        listed = ", ".join(f"{cases[i].image_id} ({residual[i]:.2f} px)" for i in bad[:MAX_LISTED])
        raise InputError(f"test set {name!r}: Ref and Trans corners are not related by a rigid transform: {listed}")
    return candidates


def _verify_convention(
    cases: list[_Case],
    candidates: list[dict[str, np.ndarray]],
    patches: _Patches,
    names: tuple[str, str],
    n_parts: int,
    convention: str,
    min_ncc: float,
    check_cases: int,
    name: str,
) -> tuple[str, dict[str, float], list[str]]:
    """The corner convention the pixels confirm, the mean NCC per convention and the cases checked.

    Up to ``check_cases`` cases, spread evenly over the ``n_parts`` parts, are
    scored: per modality the T patch is warped onto the R patch by each
    candidate and compared (NCC), and the modalities' scores are averaged.
    """
    per_part = max(1, int(math.ceil(check_cases / n_parts)))
    sample: list[int] = []
    for part_index in range(n_parts):
        members = [i for i, c in enumerate(cases) if c.part == part_index]
        if members:
            picks = np.linspace(0, len(members) - 1, min(per_part, len(members))).round().astype(int)
            sample.extend(members[j] for j in np.unique(picks))
    scores = np.full((len(sample), len(CONVENTIONS)), np.nan)
    for row, index in enumerate(sample):
        case = cases[index]
        per_modality = []
        for modality in names:
            ref = patches.load(case, modality, "R")
            flo = patches.load(case, modality, "T")
            per_modality.append(_warped_ncc(ref, flo, [candidates[index][c] for c in CONVENTIONS]))
        with np.errstate(all="ignore"):
            scores[row] = np.nanmean(np.array(per_modality), axis=0) if np.isfinite(per_modality).any() else np.nan
    checked = [cases[i].image_id for i in sample]
    chosen, summary = _choose_convention(scores, convention, min_ncc, name, checked)
    return chosen, summary, checked


def _write_cases(
    cases: list[_Case],
    truths: list[np.ndarray],
    patches: _Patches,
    names: tuple[str, str],
    out_dir: Path,
    name: str,
    strata: Sequence[tuple[str, float | None]] | None,
) -> pd.DataFrame:
    """Write every case's R and T patches as slot ``ref`` and ``flo`` patches and return the cases table."""
    labels = case_labels(len(cases))
    widths, heights = [], []
    for label, case in zip(labels, cases):
        shapes = set()
        for slot, modality in zip(("A", "B"), names):
            for role, suffix in (("R", "ref"), ("T", "flo")):
                image = patches.load(case, modality, role)
                shapes.add(image.shape[:2])
                write_tiff(out_dir / f"{label}_{slot}_{suffix}.tif", image)
        if len(shapes) != 1:
            raise InputError(
                f"test set {name!r}, case {case.image_id}: R and T patches of {', '.join(names)} differ in size "
                f"({', '.join(f'{h}x{w}' for h, w in sorted(shapes))}, HxW)"
            )
        (height, width) = shapes.pop()
        widths.append(width)
        heights.append(height)
    frame = cases_table(
        np.stack(truths), widths, heights,
        case=labels, image_id=[c.image_id for c in cases], stratum=[c.stratum or "" for c in cases],
    )  # fmt: skip
    # Parts without a transform level get their strata from the initial displacement.
    unknown = np.array([c.stratum is None for c in cases])
    if unknown.any():
        displacement = frame["initial_displacement_px"].to_numpy()[unknown]
        frame.loc[unknown, "stratum"] = _strata_for(displacement, int(np.median(widths)), strata).tolist()
    return frame


def _candidate_transforms(ref: np.ndarray, trans: np.ndarray) -> dict[str, np.ndarray]:
    """floating->reference transform of one case under each corner convention."""
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    forward = geometry.fit_rigid(ref, trans)
    forward_yx = geometry.fit_rigid(ref @ swap, trans @ swap)
    return {
        "forward": forward,
        "inverse": geometry.invert(forward),
        "forward_yx": forward_yx,
        "inverse_yx": geometry.invert(forward_yx),
    }


def _grey(image: np.ndarray) -> np.ndarray:
    """The image as float32, colour averaged to one channel."""
    data = image.astype(np.float32)
    return data.mean(axis=2) if data.ndim == 3 else data


def _warped_ncc(
    reference: np.ndarray, floating: np.ndarray, matrices: Sequence[np.ndarray], erode: int = 2
) -> list[float]:
    """NCC between ``reference`` and ``floating`` warped by each floating->reference matrix, in the overlap."""
    height, width = reference.shape[:2]
    ref = _grey(reference)
    flo = _grey(floating)
    ones = np.ones(flo.shape, np.uint8)
    kernel = np.ones((2 * erode + 1, 2 * erode + 1), np.uint8)
    scores = []
    for matrix in matrices:
        warped = cv2.warpAffine(flo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        inside = cv2.warpAffine(ones, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        mask = (cv2.erode(inside, kernel) if erode else inside).astype(bool)
        if mask.sum() < 0.1 * mask.size:
            scores.append(float("nan"))
            continue
        a = ref[mask].astype(np.float64)
        b = warped[mask].astype(np.float64)
        a -= a.mean()
        b -= b.mean()
        denom = math.sqrt(float((a @ a) * (b @ b)))
        scores.append(float((a @ b) / denom) if denom > 0 else float("nan"))
    return scores


def _choose_convention(
    scores: np.ndarray, convention: str, min_ncc: float, name: str, checked: list[str]
) -> tuple[str, dict[str, float]]:
    """Pick the corner convention from an (n_cases, n_conventions) NCC matrix."""
    with np.errstate(all="ignore"):
        means = np.nanmean(scores, axis=0) if np.isfinite(scores).any() else np.full(len(CONVENTIONS), np.nan)
    summary = {c: round(float(m), 4) for c, m in zip(CONVENTIONS, means)}
    table = ", ".join(f"{c} {m:.3f}" for c, m in summary.items())
    if not np.isfinite(means).any():
        raise InputError(f"test set {name!r}: no overlap to verify the corner convention on ({', '.join(checked)})")
    best = int(np.nanargmax(means))
    wanted = best if convention == "auto" else CONVENTIONS.index(convention)
    if convention != "auto" and means[best] >= min_ncc and means[best] > means[wanted] + 0.05:
        raise InputError(
            f"test set {name!r}: the corner columns follow the {CONVENTIONS[best]} convention, not "
            f"{convention} (mean NCC {table})"
        )
    if not means[wanted] >= min_ncc:
        how = "no convention" if convention == "auto" else f"the {convention} convention"
        raise InputError(
            f"test set {name!r}: {how} of the corner columns matches the pixels: warping each transformed "
            f"patch onto its reference patch gives mean NCC {table} (need >= {min_ncc}) over cases "
            f"{', '.join(checked)}; the metadata do not describe these patches as assumed"
        )
    finite = np.isfinite(scores).all(axis=1)
    ordered = np.sort(scores[finite], axis=1)
    informative = finite.copy()
    informative[finite] = ordered[:, -1] - ordered[:, -2] > 0.05
    if informative.any():
        winners = np.argmax(np.where(np.isfinite(scores), scores, -np.inf)[informative], axis=1)
        agree = float(np.mean(winners == wanted))
        if agree < 0.8:
            raise InputError(
                f"test set {name!r}: the corner convention is not consistent over the cases: "
                f"{CONVENTIONS[wanted]} fits best in only {agree:.0%} of the informative cases (mean NCC {table})"
            )
    if CONVENTIONS[wanted] != "forward":
        log.warning(
            "test set %r: the corner columns follow the %s convention, not the expected forward one "
            "(mean NCC %s); the ground truth follows the pixels", name, CONVENTIONS[wanted], table,
        )  # fmt: skip
    else:
        log.info(
            "test set %r: corner convention %s verified on the pixels (mean NCC %s)", name, CONVENTIONS[wanted], table
        )
    return CONVENTIONS[wanted], summary


def _strata_for(displacement: np.ndarray, width: int, strata: Sequence[tuple[str, float | None]] | None) -> np.ndarray:
    """The stratum of each displacement: the first whose upper bound it does not exceed."""
    if strata is None:  # the paper's strata at 834 px, scaled to the patch width
        scale = width / 834.0
        strata = (("small", 100.0 * scale), ("medium", 200.0 * scale), ("large", None))
    bounds = np.array([math.inf if b is None else float(b) for _, b in strata])
    which = np.searchsorted(bounds, displacement, side="left")
    names = np.array([n for n, _ in strata])
    return names[np.minimum(which, len(names) - 1)]

"""A prebuilt test set's metadata CSV: the four corners of each case before and after its transform.

Contract: :func:`read_corner_metadata` reads a CSV separated by ``;`` or ``,`` with the columns
``Filename, X1_Ref .. Y4_Ref, X1_Trans .. Y4_Trans[, Displacement]`` (names matched loosely) into
:class:`CornerMetadata`, and raises :class:`~comir.io.InputError` on a missing or non-numeric
value or an id listed twice. :func:`metadata_candidates` finds the CSVs below a record's root
that have those columns, and :func:`pick_metadata` the one listing most of a folder's cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from comir.data.layouts.result import MAX_LISTED
from comir.io import IMAGE_SUFFIXES, InputError

__all__ = ["CornerMetadata", "metadata_candidates", "pick_metadata", "read_corner_metadata"]


def _norm(name: str) -> str:
    """A column name reduced to lower-case letters and digits (``X1_Ref`` -> ``x1ref``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


_CORNER_KEYS = [f"{axis}{i}{kind}" for kind in ("ref", "trans") for i in range(1, 5) for axis in "xy"]


def _metadata_columns(columns: Iterable[str]) -> dict[str, str] | None:
    """Map normalised names (filename, x1ref, ...) to the real columns, or None if incomplete."""
    lookup = {_norm(c): c for c in columns}
    if "filename" not in lookup and "unnamed0" in lookup:
        lookup["filename"] = lookup["unnamed0"]
    needed = ["filename", *_CORNER_KEYS]
    if any(k not in lookup for k in needed):
        return None
    return {k: lookup[k] for k in needed + (["displacement"] if "displacement" in lookup else [])}


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV as strings, separated by ``;`` or ``,`` (whichever the header holds more of)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline()
        sep = ";" if header.count(";") > header.count(",") else ","
        return pd.read_csv(path, sep=sep, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except Exception as error:  # any parser failure: a corrupt or foreign CSV
        raise InputError(f"cannot read CSV {path}: {error}") from error


def _normalise_case_id(value: str) -> str:
    """A metadata Filename as a case id: without an image suffix or trailing underscore."""
    text = str(value).strip()
    for suffix in (*IMAGE_SUFFIXES, ".jpg"):
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
    return text.rstrip("_").strip()


@dataclass(frozen=True)
class CornerMetadata:
    """A prebuilt test set's metadata CSV: per case the four corners before (Ref) and after (Trans)."""

    path: Path
    ids: list[str]
    ref: np.ndarray  # (n, 4, 2)
    trans: np.ndarray  # (n, 4, 2)
    displacement: np.ndarray | None  # (n,) as stored, if present


def read_corner_metadata(path: Path) -> CornerMetadata:
    """Read a metadata CSV (``Filename, X1_Ref .. Y4_Trans``); InputError on missing values or duplicate ids.

    Parameters
    ----------
    path : pathlib.Path
        The CSV, separated by ``;`` or ``,``; column names matched loosely (case and separators ignored).

    Returns
    -------
    CornerMetadata
        The case ids (Filenames without image suffix), the ``(n, 4, 2)`` corners before and after, and
        ``Displacement`` if present.

    Raises
    ------
    comir.io.InputError
        If the file cannot be read, lacks the corner columns, has a missing or non-numeric corner or an
        empty Filename, or lists an id twice.
    """
    frame = _read_csv(path)
    columns = _metadata_columns(frame.columns)
    if columns is None:
        raise InputError(
            f"{path}: not a test-set metadata file; expected columns Filename, X1_Ref .. Y4_Ref, "
            f"X1_Trans .. Y4_Trans, found {', '.join(map(str, frame.columns))}"
        )
    ids = [_normalise_case_id(v) for v in frame[columns["filename"]].fillna("")]
    values = frame[[columns[k] for k in _CORNER_KEYS]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = [f"row {i + 2} ({ids[i] or 'no Filename'})" for i in np.flatnonzero(~np.isfinite(values).all(axis=1))]
    bad += [f"row {i + 2}: empty Filename" for i, v in enumerate(ids) if not v]
    if bad:
        raise InputError(f"{path}: missing or non-numeric corner coordinates in " + ", ".join(bad[:MAX_LISTED]))
    duplicated = sorted({v for v in ids if ids.count(v) > 1})
    if duplicated:
        raise InputError(f"{path}: Filename(s) listed more than once: {', '.join(duplicated[:MAX_LISTED])}")
    corners = values.reshape(len(ids), 2, 4, 2)
    displacement = None
    if "displacement" in columns:
        displacement = pd.to_numeric(frame[columns["displacement"]], errors="coerce").to_numpy(float)
    return CornerMetadata(path, ids, corners[:, 0], corners[:, 1], displacement)


def metadata_candidates(root: Path, files: list[PurePosixPath]) -> dict[PurePosixPath, set[str]]:
    """CSV files with the corner columns -> the (normalised) Filenames they list.

    Parameters
    ----------
    root : pathlib.Path
        The record's root.
    files : list[pathlib.PurePosixPath]
        The record's files relative to ``root`` (:func:`comir.data.layouts.tree.walk`); CSVs that cannot
        be read are skipped.

    Returns
    -------
    dict[pathlib.PurePosixPath, set[str]]
        Each metadata CSV (relative path) -> the case ids it lists.
    """
    found = {}
    for rel in files:
        if rel.suffix.lower() != ".csv":
            continue
        try:
            frame = _read_csv(root / rel)
        except InputError:
            continue
        columns = _metadata_columns(frame.columns)
        if columns is not None:
            found[rel] = {_normalise_case_id(v) for v in frame[columns["filename"]].fillna("")}
    return found


def pick_metadata(
    folder: PurePosixPath, ids: set[str], candidates: dict[PurePosixPath, set[str]], only_inside: bool
) -> PurePosixPath | None:
    """The candidate CSV listing most of ``ids``; ties go to the one nearest ``folder``.

    Parameters
    ----------
    folder : pathlib.PurePosixPath
        The test set's folder, relative to the record's root.
    ids : set[str]
        The folder's case ids.
    candidates : dict[pathlib.PurePosixPath, set[str]]
        :func:`metadata_candidates` of the record.
    only_inside : bool
        Consider only CSVs directly in ``folder``.

    Returns
    -------
    pathlib.PurePosixPath or None
        The chosen CSV (relative path); None when no candidate lists any of ``ids``.
    """

    def distance(rel: PurePosixPath) -> int:
        a, b = rel.parent.parts, folder.parts
        common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return (len(a) - common) + (len(b) - common)

    scored = []
    for rel, listed in candidates.items():
        if only_inside and rel.parent != folder:
            continue
        overlap = len(ids & listed)
        if overlap:
            scored.append((-overlap, distance(rel), str(rel)))
    return PurePosixPath(min(scored)[2]) if scored else None

"""A user's folder of aligned image pairs: discovery, validation and splits.

Layout expected::

    root/<A.name>/<id>.tif     e.g. root/BF/1B_A1.tif
    root/<B.name>/<id>.tif          root/SHG/1B_A1.tif

Files with the same ``<id>`` (the file stem) in the two modality folders
form an aligned pair.  The result is the pipeline's canonical *pairs table*:
a DataFrame with columns ``id, split, path_A, path_B`` (``split`` is added by
:func:`split_pairs`).

Every problem raises :class:`comir.io.InputError` with a message naming the
offending file or id and saying what was expected.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comir.io import IMAGE_SUFFIXES, InputError, channels_of, intensity_warning, read_image

__all__ = [
    "PAIRS_COLUMNS",
    "SPLITS",
    "Modality",
    "discover_pairs",
    "image_files",
    "split_pairs",
    "validate_pairs",
]

PAIRS_COLUMNS = ("id", "split", "path_A", "path_B")
SPLITS = ("train", "val", "test")
_MAX_LISTED = 10  # problems listed in one error message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Modality:
    """One imaging modality: its folder name under the data root, channel count and value range.

    ``max_value``: what a stored value of full intensity is (e.g. 4095 for 12-bit data in
    16-bit files); ``None`` means the integer type's maximum, or 1 for float images.
    """

    name: str  # folder name under root, e.g. "BF"
    channels: int  # expected channel count (1, 3, 4, ...)
    max_value: float | None = None

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise InputError(f"modality name must be a plain folder name, got {name!r}")
        if isinstance(self.channels, bool) or int(self.channels) != self.channels or self.channels < 1:
            raise InputError(f"modality {name!r}: channels must be a positive integer, got {self.channels!r}")
        if self.max_value is not None and not (math.isfinite(self.max_value) and self.max_value > 0):
            raise InputError(f"modality {name!r}: max_value must be a positive number, got {self.max_value!r}")


def _join_problems(problems: list[str]) -> str:
    shown = problems[:_MAX_LISTED]
    text = "\n  ".join(shown)
    if len(problems) > len(shown):
        text += f"\n  ... and {len(problems) - len(shown)} more"
    return text


def _check_modalities(modalities: Sequence[Modality]) -> tuple[Modality, Modality]:
    if len(modalities) != 2 or not all(isinstance(m, Modality) for m in modalities):
        raise InputError(f"expected two Modality objects (A, B), got {modalities!r}")
    mod_a, mod_b = modalities
    if mod_a.name == mod_b.name:
        raise InputError(f"the two modalities must have different folder names, both are {mod_a.name!r}")
    return mod_a, mod_b


def _normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    out = []
    for ext in extensions:
        ext = str(ext).lower()
        if not ext.startswith("."):
            ext = "." + ext
        if ext not in IMAGE_SUFFIXES:
            raise InputError(f"unsupported image extension {ext!r}; supported: {', '.join(IMAGE_SUFFIXES)}")
        out.append(ext)
    if not out:
        raise InputError("no image extensions given")
    return tuple(dict.fromkeys(out))


def image_files(folder: Path, extensions: Sequence[str]) -> list[Path]:
    """The files of ``folder`` (not recursive) whose lower-case suffix is in ``extensions``, sorted.

    Hidden files (e.g. an unfinished atomic write) are left out. The pairs of a dataset are made
    from these, and the workflow declares the same files as prepare_data's inputs.

    Parameters
    ----------
    folder : pathlib.Path
        An existing folder.
    extensions : Sequence[str]
        Lower-case suffixes with the dot (``".tif"``), compared as given.

    Returns
    -------
    list[pathlib.Path]
        The matching files, sorted by path.
    """
    return [
        path
        for path in sorted(folder.iterdir())
        if not path.name.startswith(".") and path.suffix.lower() in extensions and path.is_file()
    ]


def _scan_folder(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """Map id -> file for the images in ``folder`` (not recursive; hidden files ignored)."""
    found: dict[str, Path] = {}
    duplicates: list[str] = []
    for path in image_files(folder, extensions):
        key = path.stem
        if key in found:
            duplicates.append(
                f"id {key!r}: both {found[key]} and {path} exist; keep exactly one file per id and modality"
            )
            continue
        found[key] = path
    if duplicates:
        raise InputError(f"duplicate ids in {folder}:\n  " + _join_problems(duplicates))
    return found


def discover_pairs(
    root: Path | str | Sequence[Path | str],
    modalities: tuple[Modality, Modality],
    extensions: Sequence[str] = IMAGE_SUFFIXES,
) -> pd.DataFrame:
    """Find aligned pairs ``root/<A.name>/<id>.<ext>`` + ``root/<B.name>/<id>.<ext>``.

    Files whose extension is not in ``extensions`` and hidden files are ignored.

    Parameters
    ----------
    root : pathlib.Path or str or Sequence[pathlib.Path or str]
        One folder or a list of folders (e.g. slides kept apart on disk), whose pairs are pooled; an id
        found under two of them is an error naming both files.
    modalities : tuple[Modality, Modality]
        Modalities A and B; their names are the sub-folders.
    extensions : Sequence[str], optional
        Image suffixes to consider (with or without the dot, any case; each one of
        :data:`comir.io.IMAGE_SUFFIXES`). Default :data:`comir.io.IMAGE_SUFFIXES`.

    Returns
    -------
    pandas.DataFrame
        Columns ``id, path_A, path_B`` (absolute paths as strings), sorted by id.

    Raises
    ------
    comir.io.InputError
        If no root is given, the modalities are not two with different names, an extension is unsupported,
        a root or modality folder is missing, an id appears twice in a folder or under two roots, an image
        has no partner, or a root holds no pairs.
    """
    roots = [root] if isinstance(root, (str, Path)) else list(root)
    if not roots:
        raise InputError("no data root given (pairs: root is an empty list)")
    tables = [_discover_in(Path(folder), modalities, extensions) for folder in roots]
    table = pd.concat(tables, ignore_index=True)
    repeated = table[table["id"].duplicated(keep=False)].sort_values("id")
    if len(repeated):
        listed = [f"{key}: {', '.join(group['path_A'])}" for key, group in repeated.groupby("id")]
        raise InputError(
            "the same pair id under several data roots (ids must be unique across roots):\n  "
            + _join_problems(listed)
        )
    return table.sort_values("id").reset_index(drop=True)


def _discover_in(
    root: Path, modalities: tuple[Modality, Modality], extensions: Sequence[str]
) -> pd.DataFrame:
    """The pairs of one data root (:func:`discover_pairs`)."""
    mod_a, mod_b = _check_modalities(modalities)
    extensions = _normalise_extensions(extensions)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(
            f"data root not found: {root} (expected a folder holding {mod_a.name}/ and {mod_b.name}/)"
        )
    root = root.resolve()
    scans = []
    for mod in (mod_a, mod_b):
        folder = root / mod.name
        if not folder.is_dir():
            raise InputError(
                f"modality folder not found: {folder} (expected the {mod.name} images as {folder}/<id>"
                f"{extensions[0]})"
            )
        scans.append(_scan_folder(folder, extensions))
    files_a, files_b = scans

    problems = []
    ext_hint = "|".join(extensions)
    for key in sorted(set(files_a) - set(files_b)):
        problems.append(
            f"missing partner: {files_a[key]} has no {mod_b.name} partner; expected {root / mod_b.name / key}"
            f"{{{ext_hint}}}"
        )
    for key in sorted(set(files_b) - set(files_a)):
        problems.append(
            f"missing partner: {files_b[key]} has no {mod_a.name} partner; expected {root / mod_a.name / key}"
            f"{{{ext_hint}}}"
        )
    if problems:
        raise InputError(f"unpaired images under {root}:\n  " + _join_problems(problems))

    ids = sorted(files_a)
    if not ids:
        raise InputError(
            f"no image pairs found under {root}: {root / mod_a.name} and {root / mod_b.name} hold no "
            f"files with extension {', '.join(extensions)}"
        )
    return pd.DataFrame(
        {
            "id": ids,
            "path_A": [str(files_a[k]) for k in ids],
            "path_B": [str(files_b[k]) for k in ids],
        }
    )


def _check_table(table: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"expected a pairs table (pandas DataFrame), got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            f"pairs table lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, table.columns))}"
        )
    ids = table["id"].astype(str)
    dup = sorted(set(ids[ids.duplicated()]))
    if dup:
        raise InputError(f"pairs table lists id(s) more than once: {', '.join(dup[:_MAX_LISTED])}")


def validate_pairs(
    table: pd.DataFrame, modalities: tuple[Modality, Modality], min_size: int = 1
) -> dict[str, Any]:
    """Read every image of ``table`` and check it is usable.

    Checks: readable, channel count equals the modality's ``channels``, A and B
    of one id have the same height and width, ``min(H, W) >= min_size``, and
    every pixel finite (NaN or inf would poison training and registration).
    All problems are collected and reported together in one InputError.
    Values that the modality's scaling would not map into [0, 1] are logged as
    warnings naming the files (:func:`comir.io.intensity_warning`).

    Parameters
    ----------
    table : pandas.DataFrame
        A pairs table with ``id``, ``path_A`` and ``path_B`` (ids unique), not empty.
    modalities : tuple[Modality, Modality]
        Modalities A and B (channels, ``max_value``).
    min_size : int, optional
        The least height and width, px. Default 1.

    Returns
    -------
    dict[str, Any]
        ``{"n_pairs", "height", "width", "min_height", "max_height", "min_width", "max_width",
        "channels_A", "channels_B", "sizes"}`` where ``height`` and ``width`` are the smallest ones
        found (the limiting size) and ``sizes`` lists ``(height, width)`` per row of ``table``.

    Raises
    ------
    comir.io.InputError
        If the arguments are invalid, the table is empty, or any image has a problem (all listed).
    """
    mod_a, mod_b = _check_modalities(modalities)
    _check_table(table, ("id", "path_A", "path_B"))
    if int(min_size) != min_size or min_size < 1:
        raise InputError(f"min_size must be a positive integer, got {min_size!r}")
    if len(table) == 0:
        raise InputError("the pairs table is empty: no image pairs to validate")

    problems: list[str] = []
    warnings: dict[str, list[str]] = {}
    heights: list[int] = []
    widths: list[int] = []
    for row in table.itertuples(index=False):
        shapes = []
        for slot, mod, path in (("A", mod_a, row.path_A), ("B", mod_b, row.path_B)):
            try:
                image = read_image(path)
            except InputError as error:
                problems.append(f"{error} (id {row.id!r}, modality {slot} = {mod.name})")
                shapes.append(None)
                continue
            found = channels_of(image)
            if found != mod.channels:
                problems.append(
                    f"{path}: found {found} channel(s) (shape {image.shape}), expected {mod.channels} for "
                    f"modality {slot} = {mod.name} (id {row.id!r})"
                )
            numeric = np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
            if image.size == 0 or not numeric:
                problems.append(f"{path}: unsupported image data (dtype {image.dtype}, shape {image.shape})")
            elif not np.isfinite(image).all():
                problems.append(
                    f"{path}: {int(np.count_nonzero(~np.isfinite(image)))} pixel(s) are NaN or infinite "
                    f"(modality {slot} = {mod.name}, id {row.id!r}); replace them (e.g. by 0) before use"
                )
            else:
                warning = intensity_warning(image, mod.max_value)
                if warning:
                    warnings.setdefault(mod.name, []).append(f"{path}: {warning}")
            shapes.append(image.shape[:2])
        shape_a, shape_b = shapes
        if shape_a is not None and shape_b is not None and shape_a != shape_b:
            problems.append(
                f"size mismatch for id {row.id!r}: {row.path_A} is {shape_a[0]}x{shape_a[1]} (HxW) but "
                f"{row.path_B} is {shape_b[0]}x{shape_b[1]}; the two images of a pair must have the same size"
            )
            continue
        shape = shape_a or shape_b
        if shape is None:
            continue
        if min(shape) < min_size:
            problems.append(
                f"{row.path_A if shape_a else row.path_B} (id {row.id!r}) is {shape[0]}x{shape[1]} (HxW), "
                f"smaller than min_size {min_size} px needed for the patch size"
            )
        heights.append(int(shape[0]))
        widths.append(int(shape[1]))
    for name, found in warnings.items():
        setting = next(f"modalities.{s}.max_value" for s, m in zip("AB", (mod_a, mod_b)) if m.name == name)
        log.warning(
            "%d %s image(s) are not in the range the pipeline expects (set %s to the value of full "
            "intensity if that is wrong):\n  %s", len(found), name, setting, _join_problems(found)
        )
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the image pairs:\n  " + _join_problems(problems))
    return {
        "n_pairs": int(len(table)),
        "height": min(heights),
        "width": min(widths),
        "min_height": min(heights),
        "max_height": max(heights),
        "min_width": min(widths),
        "max_width": max(widths),
        "channels_A": int(mod_a.channels),
        "channels_B": int(mod_b.channels),
        "sizes": list(zip(heights, widths)),
    }


def _fraction_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` items by ``fractions`` (largest remainder), non-empty where possible."""
    raw = [f * n for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    # every split with a positive fraction gets at least one item, if another can spare it
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def split_pairs(
    table: pd.DataFrame,
    *,
    train: Sequence[str] | None = None,
    val: Sequence[str] | None = None,
    test: Sequence[str] | None = None,
    fractions: tuple[float, float, float] | None = None,
    seed: int = 0,
    require_nonempty: Sequence[str] = ("train", "test"),
) -> pd.DataFrame:
    """Add a ``split`` column (train / val / test) to a pairs table.

    Either explicit id lists (``train``, ``val``, ``test``; every listed id
    must exist and be in one list only; ids in no list are *dropped*, the
    result holds only listed ids) or seeded ``fractions`` (train, val, test)
    summing to 1 (ids shuffled with ``numpy.random.default_rng(seed)`` after
    sorting, so the split does not depend on the table's row order; every
    split with a positive fraction is non-empty when there are enough pairs).

    Parameters
    ----------
    table : pandas.DataFrame
        A pairs table with unique ``id``s (an existing ``split`` column is replaced).
    train : Sequence[str] or None, optional
        Ids of the training split. Default None.
    val : Sequence[str] or None, optional
        Ids of the validation split. Default None.
    test : Sequence[str] or None, optional
        Ids of the test split. Default None.
    fractions : tuple[float, float, float] or None, optional
        Non-negative (train, val, test) fractions summing to 1, instead of the lists. Default None.
    seed : int, optional
        Seed of the shuffle with ``fractions``. Default 0.
    require_nonempty : Sequence[str], optional
        Splits that must not be empty. Default ``("train", "test")``.

    Returns
    -------
    pandas.DataFrame
        A new table with columns ``id, split, path_A, path_B`` (plus any other columns of ``table``),
        rows in table order.

    Raises
    ------
    comir.io.InputError
        If both or neither of lists and fractions are given, a list or the fractions are invalid, or a
        required split is empty.
    """
    _check_table(table, ("id",))
    for name in require_nonempty:
        if name not in SPLITS:
            raise InputError(f"require_nonempty names unknown split {name!r}; splits are {', '.join(SPLITS)}")
    lists = {"train": train, "val": val, "test": test}
    explicit = any(v is not None for v in lists.values())
    if explicit and fractions is not None:
        raise InputError("give either explicit train/val/test id lists or fractions, not both")
    if not explicit and fractions is None:
        raise InputError("give either explicit train/val/test id lists or fractions (train, val, test)")

    ids = table["id"].astype(str)
    known = set(ids)
    assignment: dict[str, str] = {}
    if explicit:
        problems = []
        for split, listed in lists.items():
            if listed is None:
                continue
            if isinstance(listed, str):
                raise InputError(f"the {split} ids must be a list of ids, got the single string {listed!r}")
            for key in map(str, listed):
                if key not in known:
                    problems.append(f"unknown id {key!r} in the {split} list (no such pair in the table)")
                elif key in assignment:
                    if assignment[key] == split:
                        problems.append(f"id {key!r} is listed twice in the {split} list")
                    else:
                        problems.append(
                            f"id {key!r} is in both the {assignment[key]} and the {split} list; "
                            "an id may be in one split only"
                        )
                else:
                    assignment[key] = split
        if problems:
            raise InputError("bad split lists:\n  " + _join_problems(problems))
    else:
        try:
            fr = [float(f) for f in fractions]
        except (TypeError, ValueError) as error:
            raise InputError(f"fractions must be three numbers (train, val, test), got {fractions!r}") from error
        if len(fr) != 3 or any(not math.isfinite(f) or f < 0 for f in fr):
            raise InputError(f"fractions must be three non-negative numbers (train, val, test), got {fractions!r}")
        if abs(sum(fr) - 1.0) > 1e-6:
            raise InputError(f"fractions (train, val, test) must sum to 1, got {fractions!r} (sum {sum(fr):g})")
        n = len(known)
        counts = _fraction_counts(n, fr)
        order = sorted(known)
        perm = np.random.default_rng(int(seed)).permutation(n)
        shuffled = [order[i] for i in perm]
        start = 0
        for split, count in zip(SPLITS, counts):
            for key in shuffled[start : start + count]:
                assignment[key] = split
            start += count

    sizes = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
    empty = [s for s in require_nonempty if sizes[s] == 0]
    if empty:
        how = "the id lists" if explicit else f"fractions {tuple(fractions)} over {len(known)} pair(s)"
        raise InputError(
            f"{how} give {', '.join(f'{s}={sizes[s]}' for s in SPLITS)} pairs; "
            f"{' and '.join(empty)} must hold at least one pair"
        )

    keep = ids.isin(assignment.keys()).to_numpy()
    out = table.loc[keep].drop(columns=["split"], errors="ignore").copy()
    out["id"] = out["id"].astype(str)
    out.insert(1, "split", out["id"].map(assignment))
    front = [c for c in PAIRS_COLUMNS if c in out.columns]
    out = out[front + [c for c in out.columns if c not in front]]
    return out.reset_index(drop=True)

"""The files of an unpacked record: every visible file, and what its name and folders say it is.

Contract: no reading of file contents. :func:`walk` lists every file below a root except hidden
ones and ``__MACOSX``; :func:`classify` names one file by its name and folders alone (an aligned
pair's file, a reference or transformed patch, an evaluation patch with its data set, fold and
transform level, a Zurich image, or other); :func:`split_of_folder` and :func:`split_of_path`
read a split from folder names (``TrainSet`` -> train, ``Validation2Set`` -> tuning);
:func:`tree_summary` describes a tree for messages; :func:`zurich_number` sorts Zurich ids.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from comir.io import IMAGE_SUFFIXES

__all__ = ["ClassifiedFile", "classify", "split_of_folder", "split_of_path", "tree_summary", "walk", "zurich_number"]

_MODALITY_ALIASES = {"SHG": "SHG", "MI": "SHG", "BF": "BF", "WB": "BF"}
_ID = r"[A-Za-z0-9][A-Za-z0-9_\-]*?"
_MOD = r"(?P<mod>SHG|BF|MI|WB)"
_ROLE = r"(?P<role>R|T|Ref|Reference|Trans|Transformed)"
_ROLE_PREFIX = re.compile(rf"^{_ROLE}_(?P<id>{_ID})_{_MOD}$", re.IGNORECASE)
_ROLE_SUFFIX = re.compile(rf"^(?P<id>{_ID})_{_MOD}_{_ROLE}$", re.IGNORECASE)
_PAIR = re.compile(rf"^(?P<id>{_ID})_{_MOD}$", re.IGNORECASE)
_EVAL_FILE = re.compile(r"^(?P<id>.+?)_(?P<role>R|T)$", re.IGNORECASE)
_ZURICH_FILE = re.compile(r"^zh(?P<num>\d{1,3})$", re.IGNORECASE)
_PATCH_LEVEL = re.compile(r"^patch_(?P<level>.+)$", re.IGNORECASE)
_FOLD = re.compile(r"^fold(?P<fold>\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class ClassifiedFile:
    """One file below a record's root, as :func:`classify` names it."""

    rel: PurePosixPath
    category: str  # "pair" | "role" | "eval" | "zurich" | "other"
    id: str = ""
    modality: str = ""
    role: str = ""
    eval_dataset: str = ""
    eval_fold: int | None = None
    eval_level: str = ""
    eval_root: PurePosixPath | None = None  # the patch_<level> folder


def walk(root: Path) -> list[PurePosixPath]:
    """Every visible file below ``root`` as a relative POSIX path, sorted.

    Parameters
    ----------
    root : pathlib.Path
        The folder; hidden files and folders (a leading ``.``) and ``__MACOSX`` are skipped.

    Returns
    -------
    list[pathlib.PurePosixPath]
        The files relative to ``root``, sorted.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        rel = PurePosixPath(Path(folder).relative_to(root).as_posix())
        found.extend(rel / name for name in sorted(files) if not name.startswith("."))
    return sorted(found)


def tree_summary(root: Path, max_folders: int = 30, examples: int = 3) -> str:
    """A compact description of a folder tree: folders with their file counts and examples.

    Parameters
    ----------
    root : pathlib.Path
        The folder (a missing one is described as empty).
    max_folders : int, optional
        The most folders listed. Default 30.
    examples : int, optional
        File names shown per folder. Default 3.

    Returns
    -------
    str
        One line for the tree, then one per folder (file count, suffixes, examples).
    """
    root = Path(root)
    files = walk(root) if root.is_dir() else []
    by_folder: dict[PurePosixPath, list[str]] = defaultdict(list)
    for rel in files:
        by_folder[rel.parent].append(rel.name)
    lines = [f"{root}/: {len(files)} file(s) in {len(by_folder)} folder(s)"]
    for folder in sorted(by_folder)[:max_folders]:
        names = by_folder[folder]
        suffixes = Counter(Path(n).suffix.lower() or "(none)" for n in names)
        kinds = ", ".join(f"{s} {c}" for s, c in suffixes.most_common())
        shown = ", ".join(names[:examples]) + (", ..." if len(names) > examples else "")
        label = "./" if str(folder) == "." else f"{folder}/"
        lines.append(f"  {label}  {len(names)} file(s) ({kinds}), e.g. {shown}")
    if len(by_folder) > max_folders:
        lines.append(f"  ... and {len(by_folder) - max_folders} more folder(s)")
    return "\n".join(lines)


def _tokens(name: str) -> list[str]:
    """Lower-case words of a folder name: CamelCase and separators split ("Validation1Set")."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def split_of_folder(name: str) -> str | None:
    """The split a folder name stands for, or None (``TrainSet`` -> train, ``Validation2Set`` -> tuning).

    Parameters
    ----------
    name : str
        One folder name; its CamelCase and separated words are read in order.

    Returns
    -------
    str or None
        ``"train"``, ``"val"``, ``"tuning"`` or ``"test"``; None when the name names no split.
    """
    for token in _tokens(name):
        if token.startswith("train"):
            return "train"
        if token.startswith("tun") or re.fullmatch(r"(validation|valid|val)(set)?2", token):
            return "tuning"
        if re.fullmatch(r"(validation|valid|val)(set)?1?", token) or token.startswith("validation"):
            return "val"
        if token.startswith("test"):
            return "test"
    return None


def split_of_path(folder: PurePosixPath) -> str | None:
    """The split named by the innermost folder of ``folder`` that names one, or None.

    Parameters
    ----------
    folder : pathlib.PurePosixPath
        A relative folder path.

    Returns
    -------
    str or None
        The split (:func:`split_of_folder`), or None.
    """
    for name in reversed(folder.parts):
        split = split_of_folder(name)
        if split is not None:
            return split
    return None


def classify(rel: PurePosixPath, root_name: str = "") -> ClassifiedFile:
    """What one file is, from its name and folders (``root_name``: the unpacked root's own name).

    Parameters
    ----------
    rel : pathlib.PurePosixPath
        The file relative to the record's root.
    root_name : str, optional
        The unpacked root's own name, read for an evaluation patch's data set and fold. Default ``""``.

    Returns
    -------
    ClassifiedFile
        Category ``"eval"``, ``"zurich"``, ``"role"``, ``"pair"`` or ``"other"`` with what the name says.
    """
    suffix = rel.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return ClassifiedFile(rel, "other")
    stem = rel.name[: -len(rel.suffix)]
    parts = rel.parts
    lowered = [p.lower() for p in parts]
    for index in range(len(parts) - 2):
        level = _PATCH_LEVEL.match(parts[index])
        if level and lowered[index + 1] in ("a", "b"):
            match = _EVAL_FILE.match(stem)
            below = lowered[index + 2 : -1]
            if match is None or any(b != "test" for b in below):
                return ClassifiedFile(rel, "other")
            ancestors = " ".join([root_name.lower(), *lowered[:index]])
            dataset = (
                "bfshg" if "eliceiri" in ancestors else
                "zurich" if "zurich" in ancestors else
                "cytological" if "balvan" in ancestors else "unknown"
            )  # fmt: skip
            fold = next((int(m["fold"]) for p in (root_name, *parts[:index]) if (m := _FOLD.match(p))), None)
            return ClassifiedFile(
                rel,
                "eval",
                id=match["id"],
                modality=parts[index + 1].upper(),
                role=match["role"].upper(),
                eval_dataset=dataset,
                eval_fold=fold,
                eval_level=level["level"].lower(),
                eval_root=PurePosixPath(*parts[: index + 1]),
            )
    if suffix in (".tif", ".tiff") and (match := _ZURICH_FILE.match(stem)):
        return ClassifiedFile(rel, "zurich", id=f"zh{int(match['num'])}")
    for pattern in (_ROLE_PREFIX, _ROLE_SUFFIX):
        if match := pattern.match(stem):
            role = "R" if match["role"].upper().startswith("R") else "T"
            return ClassifiedFile(
                rel, "role", id=match["id"], modality=_MODALITY_ALIASES[match["mod"].upper()], role=role
            )
    if match := _PAIR.match(stem):
        return ClassifiedFile(rel, "pair", id=match["id"], modality=_MODALITY_ALIASES[match["mod"].upper()])
    return ClassifiedFile(rel, "other")


def zurich_number(image_id: str) -> int:
    """The number of a Zurich image id (``zh10`` -> 10), to sort ids numerically.

    Parameters
    ----------
    image_id : str
        A Zurich image id, ``zh<N>``.

    Returns
    -------
    int
        ``N``.

    Raises
    ------
    ValueError
        If the id does not end in a number after its first two characters.
    """
    return int(image_id[2:])

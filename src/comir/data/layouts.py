"""The paper's Zenodo records after unpacking: recognise their layout.

:func:`detect_layout` walks an unpacked record and says what it holds: its kind,
its aligned pairs per split, its Zurich images and its prebuilt transformed test
sets (what :mod:`comir.data.convert` and :mod:`comir.testset.prebuilt` then read).

Recognised layouts (folder names are matched case-insensitively, anywhere below
the unpacked root; hidden files and ``__MACOSX`` are ignored):

``bfshg-comir`` (Zenodo 3874362, the CoMIR paper's BF/SHG patches)
    ``<any>/TrainSet|Validation1Set|Validation2Set|TestSet/<id>_{SHG,BF}.tif``.
    Folder names map to splits: ``train*`` -> train, ``validation1*`` /
    ``val*`` / ``valid*`` -> val, ``validation2*`` / ``val2*`` / ``tun*`` ->
    tuning, ``test*`` -> test.  Transformed test patches are recognised as
    ``R_<id>_<MOD>.tif`` / ``T_<id>_<MOD>.tif`` (the authors' MATLAB naming) or
    ``<id>_<MOD>_{R,T}.tif``, with a metadata CSV (``;`` or ``,``) holding
    ``Filename, X1_Ref .. Y4_Ref, X1_Trans .. Y4_Trans[, Displacement]``.
``bfshg-multiregeval`` (Zenodo 4550300, full-size cores)
    ``HighRes_Splits/WSI/{train,test}/<id>_{SHG|MI,BF|WB}.tif``; other pair
    folders next to ``WSI`` (``CNN_Training_Crops``, ...) are ignored;
    ``Registration_UltimateTesting/<exp>_Patches/<id>_<MOD>_{R,T}.tif`` are
    listed as prebuilt test sets.
``zurich`` (Zenodo 5914759)
    ``images_tif/zh<N>.tif``: 4 channels, 12-bit values in uint16
    (``groundtruth/`` is not used).
``multiregeval-eval`` (Zenodo 5557568, evaluation patches of Lu et al. 2021)
    ``Eliceiri_patches/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.tif`` (A = SHG,
    B = BF) and ``Zurich_patches/fold<f>/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.png``
    (A = NIR, B = colour in B, G, R order), each level with ``info_test.csv``.

Anything else stops with an :class:`~comir.io.InputError` that shows a compact
summary of the tree that was found and the layouts that were expected.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from comir.io import IMAGE_SUFFIXES, InputError

__all__ = [
    "KINDS",
    "MAX_LISTED",
    "RECORD_SPLITS",
    "CornerMetadata",
    "Layout",
    "PairFiles",
    "PrebuiltPart",
    "PrebuiltTestSet",
    "detect_layout",
    "read_corner_metadata",
    "split_of_folder",
    "tree_summary",
    "zurich_number",
]

log = logging.getLogger(__name__)

KINDS = ("bfshg-comir", "bfshg-multiregeval", "zurich", "multiregeval-eval")
RECORD_SPLITS = ("train", "val", "tuning", "test")
#: How many problems (or cases) a message lists before it stops.
MAX_LISTED = 10

_MODALITY_ALIASES = {"SHG": "SHG", "MI": "SHG", "BF": "BF", "WB": "BF"}
_EVAL_MODALITIES = {"bfshg": {"A": "SHG", "B": "BF"}, "zurich": {"A": "NIR", "B": "RGB"}}
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

_EXPECTED = """expected one of these layouts (folder names case-insensitive, at any depth):
  bfshg-comir (Zenodo 3874362): TrainSet/, Validation1Set/, Validation2Set/, TestSet/ holding
      <id>_SHG.tif + <id>_BF.tif; transformed test patches R_<id>_<MOD>.tif / T_<id>_<MOD>.tif
      (or <id>_<MOD>_R.tif / _T.tif) with a metadata CSV (Filename;X1_Ref;...;Y4_Trans)
  bfshg-multiregeval (Zenodo 4550300): HighRes_Splits/WSI/{train,test}/<id>_{SHG|MI,BF|WB}.tif
  zurich (Zenodo 5914759): images_tif/zh<N>.tif with 4 channels
  multiregeval-eval (Zenodo 5557568): Eliceiri_patches/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.tif
      and Zurich_patches/fold<f>/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.png, each level with info_test.csv"""


# ----------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class PairFiles:
    """One aligned pair of a record: its id, split and one file per modality."""

    id: str
    split: str
    files: Mapping[str, Path]  # modality name ("SHG", "BF") -> file
    folder: str  # folder relative to the record root (for messages)


@dataclass(frozen=True)
class PrebuiltPart:
    """One folder (or one transform level) of a prebuilt transformed test set."""

    folder: Path
    stratum: str | None  # None: derived from the initial displacement
    metadata: Path | None  # the CSV with the corner columns, if one was found
    files: Mapping[tuple[str, str, str], Path]  # (id, modality, "R" | "T") -> file

    def ids(self) -> list[str]:
        """The case ids of this part, sorted."""
        return sorted({key[0] for key in self.files})

    def roles(self) -> dict[str, set[str]]:
        """Modality -> the roles ("R", "T") present for it."""
        found: dict[str, set[str]] = defaultdict(set)
        for _, modality, role in self.files:
            found[modality].add(role)
        return dict(found)


@dataclass(frozen=True)
class PrebuiltTestSet:
    """A record's transformed test set: reference (R) and transformed (T) patches + corners."""

    name: str
    dataset: str  # "bfshg" | "zurich"
    source: str  # "comir" (R_/T_ files + CSV) | "multiregeval" (patch_tlevel folders)
    parts: tuple[PrebuiltPart, ...]
    bgr_modalities: tuple[str, ...] = ()  # modalities whose patches hold B, G, R (reversed on import)

    def modalities(self) -> dict[str, set[str]]:
        """Modality -> the roles ("R", "T") present for it in any part."""
        found: dict[str, set[str]] = defaultdict(set)
        for part in self.parts:
            for modality, roles in part.roles().items():
                found[modality] |= roles
        return dict(found)

    def n_cases(self) -> int:
        """Number of cases over all parts."""
        return sum(len(part.ids()) for part in self.parts)


@dataclass(frozen=True)
class Layout:
    """What :func:`detect_layout` found under an unpacked record."""

    kind: str  # one of KINDS
    root: Path
    dataset: str  # "bfshg" | "zurich" | "mixed" (evaluation record with both)
    pairs: tuple[PairFiles, ...] = ()
    zurich_images: Mapping[str, Path] = field(default_factory=dict)  # "zh10" -> file
    testsets: tuple[PrebuiltTestSet, ...] = ()
    orphans: tuple[str, ...] = ()  # pair files without a partner (messages)
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Pairs per split (for Zurich: the number of images under ``"images"``)."""
        if self.kind == "zurich":
            return {"images": len(self.zurich_images)}
        counts = Counter(pair.split for pair in self.pairs)
        return {split: counts[split] for split in RECORD_SPLITS if counts[split]}

    def testset(self, name: str | None) -> PrebuiltTestSet:
        """The prebuilt test set ``name``; ``None`` means the record's only one."""
        if name is None and len(self.testsets) == 1:
            return self.testsets[0]
        for testset in self.testsets:
            if testset.name == name:
                return testset
        known = ", ".join(t.name for t in self.testsets) or "none"
        wanted = (
            "a prebuilt test set (give its name: testsets.<name>.prebuilt)" if name is None
            else f"prebuilt test set {name!r}"
        )  # fmt: skip
        raise InputError(f"no {wanted} under {self.root}; found: {known}")

    def describe(self) -> str:
        """A few lines for the log: kind, pairs per split (or images), prebuilt test sets, notes."""
        lines = [f"{self.kind} record at {self.root} ({self.dataset})"]
        if self.kind == "zurich":
            lines.append(f"  images: {', '.join(sorted(self.zurich_images, key=zurich_number))}")
        else:
            lines.append(f"  pairs per split: {self.counts() or 'none'}")
        for testset in self.testsets:
            meta = sum(part.metadata is not None for part in testset.parts)
            mods = ", ".join(f"{m}: {'+'.join(sorted(r))}" for m, r in sorted(testset.modalities().items()))
            lines.append(
                f"  prebuilt test set {testset.name!r}: {testset.n_cases()} case(s) in {len(testset.parts)} "
                f"part(s), {meta} with metadata; patches {mods}"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class _File:
    """One file below a record's root, as :func:`_classify` names it."""

    rel: PurePosixPath
    category: str  # "pair" | "role" | "eval" | "zurich" | "other"
    id: str = ""
    modality: str = ""
    role: str = ""
    eval_dataset: str = ""
    eval_fold: int | None = None
    eval_level: str = ""
    eval_root: PurePosixPath | None = None  # the patch_<level> folder


# ----------------------------------------------------------------------------- tree walking


def _walk(root: Path) -> list[PurePosixPath]:
    """Every visible file below ``root`` as a relative POSIX path, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        rel = PurePosixPath(Path(folder).relative_to(root).as_posix())
        found.extend(rel / name for name in sorted(files) if not name.startswith("."))
    return sorted(found)


def tree_summary(root: Path, max_folders: int = 30, examples: int = 3) -> str:
    """A compact description of a folder tree: folders with their file counts and examples."""
    root = Path(root)
    files = _walk(root) if root.is_dir() else []
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
    """The split a folder name stands for, or None (``TrainSet`` -> train, ``Validation2Set`` -> tuning)."""
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


def _split_of_path(folder: PurePosixPath) -> str | None:
    """The split named by the innermost folder of ``folder`` that names one, or None."""
    for name in reversed(folder.parts):
        split = split_of_folder(name)
        if split is not None:
            return split
    return None


def _classify(rel: PurePosixPath, root_name: str = "") -> _File:
    """What one file is, from its name and folders (``root_name``: the unpacked root's own name)."""
    suffix = rel.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return _File(rel, "other")
    stem = rel.name[: -len(rel.suffix)]
    parts = rel.parts
    lowered = [p.lower() for p in parts]
    for index in range(len(parts) - 2):
        level = _PATCH_LEVEL.match(parts[index])
        if level and lowered[index + 1] in ("a", "b"):
            match = _EVAL_FILE.match(stem)
            below = lowered[index + 2 : -1]
            if match is None or any(b != "test" for b in below):
                return _File(rel, "other")
            ancestors = " ".join([root_name.lower(), *lowered[:index]])
            dataset = (
                "bfshg" if "eliceiri" in ancestors else
                "zurich" if "zurich" in ancestors else
                "cytological" if "balvan" in ancestors else "unknown"
            )  # fmt: skip
            fold = next((int(m["fold"]) for p in (root_name, *parts[:index]) if (m := _FOLD.match(p))), None)
            return _File(
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
        return _File(rel, "zurich", id=f"zh{int(match['num'])}")
    for pattern in (_ROLE_PREFIX, _ROLE_SUFFIX):
        if match := pattern.match(stem):
            role = "R" if match["role"].upper().startswith("R") else "T"
            return _File(rel, "role", id=match["id"], modality=_MODALITY_ALIASES[match["mod"].upper()], role=role)
    if match := _PAIR.match(stem):
        return _File(rel, "pair", id=match["id"], modality=_MODALITY_ALIASES[match["mod"].upper()])
    return _File(rel, "other")


def zurich_number(image_id: str) -> int:
    """The number of a Zurich image id (``zh10`` -> 10), to sort ids numerically."""
    return int(image_id[2:])


# ----------------------------------------------------------------------------- metadata


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
    """Read a metadata CSV (``Filename, X1_Ref .. Y4_Trans``); InputError on missing values or duplicate ids."""
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


def _metadata_candidates(root: Path, files: list[PurePosixPath]) -> dict[PurePosixPath, set[str]]:
    """CSV files with the corner columns -> the (normalised) Filenames they list."""
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


def _pick_metadata(
    folder: PurePosixPath, ids: set[str], candidates: dict[PurePosixPath, set[str]], only_inside: bool
) -> PurePosixPath | None:
    """The candidate CSV listing most of ``ids``; ties go to the one nearest ``folder``."""

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


# ----------------------------------------------------------------------------- detection


def detect_layout(root: Path) -> Layout:
    """Recognise an unpacked record under ``root``: its kind, pairs per split and prebuilt test sets.

    Raises :class:`InputError` with a summary of the tree when no known layout
    matches, and when pairs are inconsistent (one id in two splits, a file
    given twice).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"record folder not found: {root}")
    root = root.resolve()
    files = _walk(root)
    classified = [_classify(rel, root.name) for rel in files]
    notes: list[str] = []
    problems: list[str] = []
    grouped, multiregeval = _pair_groups(classified, notes, problems)
    candidates = _metadata_candidates(root, files)
    used_names: set[str] = set()
    testsets = _comir_testsets(root, classified, candidates, grouped, used_names, notes, problems)
    testsets += _evaluation_testsets(root, classified, candidates, used_names, notes, problems)
    zurich_images = _zurich_images(root, classified, problems)
    _stop_if_inconsistent(root, problems)
    pairs, orphans = _pairs_of(root, grouped, problems)
    _stop_if_inconsistent(root, problems)
    kind, dataset = _kind_of(root, pairs, orphans, zurich_images, testsets, multiregeval)
    layout = Layout(kind, root, dataset, tuple(pairs), zurich_images, tuple(testsets), tuple(orphans), tuple(notes))
    log.info("%s", layout.describe())
    return layout


def _unrecognised(root: Path, reason: str) -> InputError:
    """The error for a record that matches no layout: ``reason``, the tree found and the layouts expected."""
    return InputError(f"{reason}\n\nfound:\n{tree_summary(root)}\n\n{_EXPECTED}")


def _stop_if_inconsistent(root: Path, problems: list[str]) -> None:
    """Raise an InputError listing the first problems, if there are any."""
    if problems:
        raise _unrecognised(root, f"inconsistent record under {root}:\n  " + "\n  ".join(problems[:MAX_LISTED]))


def _pair_groups(
    classified: list[_File], notes: list[str], problems: list[str]
) -> tuple[dict[tuple[str, str], dict[str, PurePosixPath]], bool]:
    """BF/SHG pair files by (split, id) -> {modality: file}, and whether the record is MultiRegEval's.

    Appends to ``notes`` the folders that are ignored and to ``problems`` a
    modality given twice for one id.
    """
    pair_files = [f for f in classified if f.category == "pair"]
    multiregeval = any(p.lower() in ("wsi", "highres_splits") for f in pair_files for p in f.rel.parts[:-1])
    if multiregeval and any("wsi" in (p.lower() for p in f.rel.parts[:-1]) for f in pair_files):
        ignored = Counter(
            str(f.rel.parent) for f in pair_files if "wsi" not in (p.lower() for p in f.rel.parts[:-1])
        )
        for folder, count in sorted(ignored.items()):
            notes.append(f"{folder}: {count} pair file(s) ignored (only HighRes_Splits/WSI holds the cores)")
        pair_files = [f for f in pair_files if "wsi" in (p.lower() for p in f.rel.parts[:-1])]
    unassigned = Counter(str(f.rel.parent) for f in pair_files if _split_of_path(f.rel.parent) is None)
    for folder, count in sorted(unassigned.items()):
        notes.append(f"{folder}: {count} pair file(s) in a folder that names no split; ignored")
    grouped: dict[tuple[str, str], dict[str, PurePosixPath]] = defaultdict(dict)
    for f in pair_files:
        split = _split_of_path(f.rel.parent)
        if split is None:
            continue
        slot = grouped[(split, f.id)]
        if f.modality in slot:
            problems.append(f"{f.modality} of {f.id!r} ({split}) given twice: {slot[f.modality]} and {f.rel}")
        slot[f.modality] = f.rel
    return grouped, multiregeval


def _comir_testsets(
    root: Path,
    classified: list[_File],
    candidates: dict[PurePosixPath, set[str]],
    grouped: dict[tuple[str, str], dict[str, PurePosixPath]],
    used_names: set[str],
    notes: list[str],
    problems: list[str],
) -> list[PrebuiltTestSet]:
    """Prebuilt test sets of R/T files (CoMIR naming), one per folder, each with its metadata CSV.

    A split folder holding only R/T patches adds its reference patches to
    ``grouped`` as that split's pairs.
    """
    role_groups: dict[PurePosixPath, dict[tuple[str, str, str], Path]] = defaultdict(dict)
    for f in classified:
        if f.category == "role":
            key = (f.id, f.modality, f.role)
            if key in role_groups[f.rel.parent]:
                problems.append(f"{f.rel}: a second {f.role} patch of {f.id!r} ({f.modality}) in {f.rel.parent}")
            role_groups[f.rel.parent][key] = root / f.rel
    testsets: list[PrebuiltTestSet] = []
    for folder, group in sorted(role_groups.items()):
        ids = {key[0] for key in group}
        meta = _pick_metadata(folder, ids, candidates, only_inside=False)
        split = _split_of_path(folder)
        own = split_of_folder(folder.name) if folder.parts else None
        base = "comir" if own == "test" else re.sub(r"(?i)[_-]?patches$", "", folder.name) or "testset"
        name = _unique_name(re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_") or "testset", used_names)
        part = PrebuiltPart(root / folder, None, None if meta is None else root / meta, group)
        testsets.append(PrebuiltTestSet(name, "bfshg", "comir", (part,)))
        # A split folder holding only R/T patches: the reference patches of both modalities are its pairs.
        if split is not None and not any(s == split for s, _ in grouped):
            refs = defaultdict(dict)
            for (case_id, modality, role), path in group.items():
                if role == "R":
                    refs[case_id][modality] = PurePosixPath(path.relative_to(root).as_posix())
            complete = {k: v for k, v in refs.items() if {"SHG", "BF"} <= set(v)}
            if complete:
                notes.append(
                    f"{folder}: {len(complete)} {split} pair(s) taken from the reference (R) patches "
                    "(the folder holds no whole cores)"
                )
                for case_id, mods in complete.items():
                    grouped[(split, case_id)] = dict(mods)
    return testsets


def _evaluation_testsets(
    root: Path,
    classified: list[_File],
    candidates: dict[PurePosixPath, set[str]],
    used_names: set[str],
    notes: list[str],
    problems: list[str],
) -> list[PrebuiltTestSet]:
    """MultiRegEval's evaluation patches: one test set per data set (and fold), one part per transform level."""
    eval_groups: dict[tuple[str, int | None], dict[PurePosixPath, list[_File]]] = defaultdict(lambda: defaultdict(list))
    for f in classified:
        if f.category == "eval":
            eval_groups[(f.eval_dataset, f.eval_fold)][f.eval_root].append(f)
    testsets: list[PrebuiltTestSet] = []
    for (dataset, fold), levels in sorted(eval_groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        if dataset not in _EVAL_MODALITIES:
            n = sum(len(v) for v in levels.values())
            notes.append(
                f"{n} evaluation patch(es) of the {dataset} data set ignored (not a data set of this pipeline)"
            )
            continue
        parts = []
        for level_root, level_files in sorted(levels.items(), key=lambda kv: _level_key(kv[1][0].eval_level)):
            group = {}
            for f in level_files:
                key = (f.id, _EVAL_MODALITIES[dataset][f.modality], f.role)
                if key in group:
                    problems.append(f"{f.rel}: a second {f.role} patch of {f.id!r} in {level_root}")
                group[key] = root / f.rel
            meta = _pick_metadata(level_root, {k[0] for k in group}, candidates, only_inside=True)
            metadata = None if meta is None else root / meta
            parts.append(PrebuiltPart(root / level_root, level_files[0].eval_level, metadata, group))
        name = f"multiregeval_{'eliceiri' if dataset == 'bfshg' else 'zurich'}" + (f"_fold{fold}" if fold else "")
        testsets.append(
            PrebuiltTestSet(
                _unique_name(name, used_names), dataset, "multiregeval", tuple(parts),
                bgr_modalities=("RGB",) if dataset == "zurich" else (),
            )
        )  # fmt: skip
    return testsets


def _zurich_images(root: Path, classified: list[_File], problems: list[str]) -> dict[str, Path]:
    """Zurich image id ("zh10") -> file; of several copies the one under ``images_tif`` counts."""
    zurich: dict[str, list[PurePosixPath]] = defaultdict(list)
    for f in classified:
        if f.category == "zurich":
            zurich[f.id].append(f.rel)
    zurich_images = {}
    for image_id, rels in zurich.items():
        if len(rels) > 1:
            preferred = [r for r in rels if "images_tif" in (p.lower() for p in r.parts)]
            if len(preferred) != 1:
                problems.append(f"{image_id} found {len(rels)} times: {', '.join(map(str, rels))}")
                continue
            rels = preferred
        zurich_images[image_id] = root / rels[0]
    return zurich_images


def _pairs_of(
    root: Path, grouped: dict[tuple[str, str], dict[str, PurePosixPath]], problems: list[str]
) -> tuple[list[PairFiles], list[str]]:
    """The complete pairs (ordered by split, then id) and the files without a partner (messages).

    Appends to ``problems`` every id found in two splits.
    """
    pairs: list[PairFiles] = []
    orphans: list[str] = []
    split_of_id: dict[str, str] = {}
    for (split, pair_id), mods in sorted(grouped.items(), key=lambda kv: (RECORD_SPLITS.index(kv[0][0]), kv[0][1])):
        if set(mods) != {"SHG", "BF"}:
            (only,) = mods
            missing = "BF" if only == "SHG" else "SHG"
            orphans.append(f"{mods[only]} has no {missing} partner")
            continue
        if pair_id in split_of_id:
            problems.append(f"id {pair_id!r} is in both {split_of_id[pair_id]} and {split}")
            continue
        split_of_id[pair_id] = split
        pairs.append(
            PairFiles(pair_id, split, {m: root / p for m, p in mods.items()}, str(mods["SHG"].parent))
        )
    return pairs, orphans


def _kind_of(
    root: Path,
    pairs: list[PairFiles],
    orphans: list[str],
    zurich_images: Mapping[str, Path],
    testsets: list[PrebuiltTestSet],
    multiregeval: bool,
) -> tuple[str, str]:
    """The record's kind (one of :data:`KINDS`) and data set from what was found; InputError if none fits."""
    if pairs and zurich_images:
        raise _unrecognised(
            root, f"{root} holds both BF/SHG pairs and Zurich images; unpack each record into its own folder"
        )
    if pairs or (orphans and not zurich_images):
        if not pairs:
            raise _unrecognised(root, f"only unpaired BF/SHG files under {root}: " + "; ".join(orphans[:MAX_LISTED]))
        return ("bfshg-multiregeval" if multiregeval else "bfshg-comir"), "bfshg"
    if zurich_images:
        return "zurich", "zurich"
    if any(t.source == "multiregeval" for t in testsets):
        datasets = {t.dataset for t in testsets}
        return "multiregeval-eval", datasets.pop() if len(datasets) == 1 else "mixed"
    what = "R/T patches but no aligned pairs" if testsets else "no file of a known record"
    raise _unrecognised(root, f"unrecognised record layout under {root}: {what}")


def _unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if taken; the result is added to ``used``."""
    candidate, index = name, 2
    while candidate in used:
        candidate, index = f"{name}_{index}", index + 1
    used.add(candidate)
    return candidate


def _level_key(level: str) -> tuple[int, str]:
    """Sort key of a transform level (``tlevel2`` before ``tlevel10``)."""
    digits = re.findall(r"\d+", level)
    return (int(digits[0]) if digits else 0, level)

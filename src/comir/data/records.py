"""The paper's Zenodo records after unpacking: recognise their layout, convert them.

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

Conversions
-----------
:func:`convert_pairs` writes the canonical aligned-pairs layout
``out_dir/<modality>/<id>.tif`` and returns the pairs table (``id, split,
path_A, path_B``; splits ``train, val, tuning, test``).  BF/SHG cores are kept
whole (the test-set recipe cuts its own patches).  Zurich images become
``RGB`` (3 channels, R, G, B order) and ``NIR`` (1 channel), float32 in [0, 1]
(value / 4096, clipped).

:func:`import_prebuilt_testset` converts a record's transformed test set to
the pipeline's test-set format (``<case>_<slot>_{ref,flo}.tif`` and the cases
table of :func:`comir.testset.build_testset`).  The ground truth
(floating -> reference) is fitted to the corner columns; which way the corner
columns point is *verified on the pixels* (see :func:`import_prebuilt_testset`).

Zurich channel order
--------------------
The paper's text says the 4 channels are stored as [NIR, B, G, R]; the
authors' code (and MultiRegEval: "three colour channels (in B-G-R order)",
NIR = channel 3) reads channels 0-2 as B, G, R and channel 3 as NIR, and that
code produced the published numbers.  The default is therefore
``("B", "G", "R", "NIR")`` (:data:`DEFAULT_ZURICH_CHANNEL_ORDER`).  Because
the two sources disagree, every converted image is also checked against the
data (:func:`nir_channel`: in vegetated aerial scenes the near-infrared band is
the one least correlated with the three visible bands) and a warning is logged
when the data point to another channel.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import pandas as pd

from comir import geometry
from comir.io import IMAGE_SUFFIXES, InputError, channels_of, read_image, write_tiff
from comir.testset import MATRIX_KEYS

__all__ = [
    "CONVENTIONS",
    "DEFAULT_ZURICH_CHANNEL_ORDER",
    "KINDS",
    "PAPER_COUNTS",
    "RECORD_SPLITS",
    "TESTSET_COLUMNS",
    "ZURICH_GROUPS",
    "Layout",
    "PairFiles",
    "PrebuiltPart",
    "PrebuiltTestSet",
    "RecordOptions",
    "band_correlations",
    "convert_pairs",
    "convert_record",
    "detect_layout",
    "import_prebuilt_testset",
    "nir_channel",
    "tree_summary",
]

log = logging.getLogger(__name__)

KINDS = ("bfshg-comir", "bfshg-multiregeval", "zurich", "multiregeval-eval")
RECORD_SPLITS = ("train", "val", "tuning", "test")
#: The CoMIR paper's BF/SHG split (pairs per split); counts that differ only warn.
PAPER_COUNTS = {"train": 40, "val": 25, "tuning": 7, "test": 134}
#: MultiRegEval's 3-fold grouping of the Zurich images (fold k tests on group k).
ZURICH_GROUPS = ((7, 9, 20, 3, 15, 18), (10, 1, 13, 4, 11, 6, 16), (14, 8, 17, 5, 19, 12, 2))
#: The paper's Zurich experiments: train on zh10, test on zh12; zh11 (an image the
#: paper uses for neither, in the same MultiRegEval group as zh10) validates.
ZURICH_PAPER_SPLIT = {"train": ("zh10",), "val": ("zh11",), "test": ("zh12",)}
#: Validation image of MultiRegEval fold k: the first image (in MultiRegEval's
#: listing order) of the next group, which is a training group of that fold.
ZURICH_FOLD_VAL = {1: "zh10", 2: "zh14", 3: "zh7"}
DEFAULT_ZURICH_CHANNEL_ORDER = ("B", "G", "R", "NIR")
ZURICH_SCALE = 4096.0
#: Conventions of the corner columns that :func:`import_prebuilt_testset` can verify.
#: ``forward``: Trans corners = floating->reference transform of the Ref corners
#: (MultiRegEval's generator); ``inverse``: the opposite direction; ``*_yx``:
#: the same with X and Y meaning (row, column).
CONVENTIONS = ("forward", "inverse", "forward_yx", "inverse_yx")
TESTSET_COLUMNS = (
    "case",
    "image_id",
    "stratum",
    "rotation_deg",
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

_MODALITY_ALIASES = {"SHG": "SHG", "MI": "SHG", "BF": "BF", "WB": "BF"}
_BFSHG_CHANNELS = {"SHG": 1, "BF": 3}
_ZURICH_CHANNELS = {"RGB": 3, "NIR": 1}
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
_MAX_LISTED = 10

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
        found: dict[str, set[str]] = defaultdict(set)
        for part in self.parts:
            for modality, roles in part.roles().items():
                found[modality] |= roles
        return dict(found)

    def n_cases(self) -> int:
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
        wanted = "a prebuilt test set (give its name: testsets.<name>.prebuilt)" if name is None else f"prebuilt test set {name!r}"
        raise InputError(f"no {wanted} under {self.root}; found: {known}")

    def describe(self) -> str:
        lines = [f"{self.kind} record at {self.root} ({self.dataset})"]
        if self.kind == "zurich":
            lines.append(f"  images: {', '.join(sorted(self.zurich_images, key=_zurich_number))}")
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
class RecordOptions:
    """Choices of :func:`convert_pairs` (all have the paper's defaults)."""

    #: "paper" (train zh10, val zh11, test zh12) or "fold1" / "fold2" / "fold3" (MultiRegEval)
    zurich_split: str = "paper"
    #: validation image overriding the default of the chosen split (e.g. "zh11")
    zurich_val: str | None = None
    #: what the 4 stored channels are, in order; the default is the authors' code
    zurich_channel_order: tuple[str, ...] = DEFAULT_ZURICH_CHANNEL_ORDER
    zurich_scale: float = ZURICH_SCALE
    #: run :func:`nir_channel` on every Zurich image and warn when it disagrees
    check_channel_order: bool = True
    #: layouts without validation / tuning folders (MultiRegEval's WSI/train): how many
    #: training pairs to move there (seeded); None: the paper's proportions 25/72 and 7/72
    carve_val: int | None = None
    carve_tuning: int | None = None
    seed: int = 0
    #: pair files without a partner: False stops with an InputError, True skips them
    allow_orphans: bool = False

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RecordOptions:
        if mapping is None:
            return cls()
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise InputError(f"unknown record option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(mapping)
        if "zurich_channel_order" in values:
            values["zurich_channel_order"] = tuple(values["zurich_channel_order"])
        return cls(**values)


@dataclass(frozen=True)
class _File:
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


def _zurich_number(image_id: str) -> int:
    return int(image_id[2:])


# ----------------------------------------------------------------------------- metadata


def _norm(name: str) -> str:
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
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline()
        sep = ";" if header.count(";") > header.count(",") else ","
        return pd.read_csv(path, sep=sep, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except Exception as error:  # any parser failure: a corrupt or foreign CSV
        raise InputError(f"cannot read CSV {path}: {error}") from error


def _normalise_case_id(value: str) -> str:
    text = str(value).strip()
    for suffix in (*IMAGE_SUFFIXES, ".jpg"):
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
    return text.rstrip("_").strip()


@dataclass(frozen=True)
class _Metadata:
    path: Path
    ids: list[str]
    ref: np.ndarray  # (n, 4, 2)
    trans: np.ndarray  # (n, 4, 2)
    displacement: np.ndarray | None  # (n,) as stored, if present


def _read_metadata(path: Path) -> _Metadata:
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
        raise InputError(f"{path}: missing or non-numeric corner coordinates in " + ", ".join(bad[:_MAX_LISTED]))
    duplicated = sorted({v for v in ids if ids.count(v) > 1})
    if duplicated:
        raise InputError(f"{path}: Filename(s) listed more than once: {', '.join(duplicated[:_MAX_LISTED])}")
    corners = values.reshape(len(ids), 2, 4, 2)
    displacement = None
    if "displacement" in columns:
        displacement = pd.to_numeric(frame[columns["displacement"]], errors="coerce").to_numpy(float)
    return _Metadata(path, ids, corners[:, 0], corners[:, 1], displacement)


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

    def fail(reason: str) -> InputError:
        return InputError(f"{reason}\n\nfound:\n{tree_summary(root)}\n\n{_EXPECTED}")

    # --- BF/SHG aligned pairs
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
    problems = []
    for f in pair_files:
        split = _split_of_path(f.rel.parent)
        if split is None:
            continue
        slot = grouped[(split, f.id)]
        if f.modality in slot:
            problems.append(f"{f.modality} of {f.id!r} ({split}) given twice: {slot[f.modality]} and {f.rel}")
        slot[f.modality] = f.rel

    # --- prebuilt test sets: R/T files (CoMIR naming) grouped by folder
    candidates = _metadata_candidates(root, files)
    role_groups: dict[PurePosixPath, dict[tuple[str, str, str], Path]] = defaultdict(dict)
    for f in classified:
        if f.category == "role":
            key = (f.id, f.modality, f.role)
            if key in role_groups[f.rel.parent]:
                problems.append(f"{f.rel}: a second {f.role} patch of {f.id!r} ({f.modality}) in {f.rel.parent}")
            role_groups[f.rel.parent][key] = root / f.rel
    testsets: list[PrebuiltTestSet] = []
    used_names: set[str] = set()
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

    # --- MultiRegEval evaluation patches
    eval_groups: dict[tuple[str, int | None], dict[PurePosixPath, list[_File]]] = defaultdict(lambda: defaultdict(list))
    for f in classified:
        if f.category == "eval":
            eval_groups[(f.eval_dataset, f.eval_fold)][f.eval_root].append(f)
    for (dataset, fold), levels in sorted(eval_groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        if dataset not in _EVAL_MODALITIES:
            n = sum(len(v) for v in levels.values())
            notes.append(f"{n} evaluation patch(es) of the {dataset} data set ignored (not a data set of this pipeline)")
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
            parts.append(PrebuiltPart(root / level_root, level_files[0].eval_level, None if meta is None else root / meta, group))
        name = f"multiregeval_{'eliceiri' if dataset == 'bfshg' else 'zurich'}" + (f"_fold{fold}" if fold else "")
        testsets.append(
            PrebuiltTestSet(
                _unique_name(name, used_names), dataset, "multiregeval", tuple(parts),
                bgr_modalities=("RGB",) if dataset == "zurich" else (),
            )
        )  # fmt: skip

    # --- Zurich images
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

    if problems:
        raise fail(f"inconsistent record under {root}:\n  " + "\n  ".join(problems[:_MAX_LISTED]))

    # --- pairs table rows, orphans, id clashes between splits
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
    if problems:
        raise fail(f"inconsistent record under {root}:\n  " + "\n  ".join(problems[:_MAX_LISTED]))

    if pairs and zurich_images:
        raise fail(
            f"{root} holds both BF/SHG pairs and Zurich images; unpack each record into its own folder"
        )
    if pairs or (orphans and not zurich_images):
        if not pairs:
            raise fail(f"only unpaired BF/SHG files under {root}: " + "; ".join(orphans[:_MAX_LISTED]))
        kind, dataset = ("bfshg-multiregeval" if multiregeval else "bfshg-comir"), "bfshg"
    elif zurich_images:
        kind, dataset = "zurich", "zurich"
    elif any(t.source == "multiregeval" for t in testsets):
        kind = "multiregeval-eval"
        datasets = {t.dataset for t in testsets}
        dataset = datasets.pop() if len(datasets) == 1 else "mixed"
    else:
        what = "R/T patches but no aligned pairs" if testsets else "no file of a known record"
        raise fail(f"unrecognised record layout under {root}: {what}")
    layout = Layout(kind, root, dataset, tuple(pairs), zurich_images, tuple(testsets), tuple(orphans), tuple(notes))
    log.info("%s", layout.describe())
    return layout


def _unique_name(name: str, used: set[str]) -> str:
    candidate, index = name, 2
    while candidate in used:
        candidate, index = f"{name}_{index}", index + 1
    used.add(candidate)
    return candidate


def _level_key(level: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", level)
    return (int(digits[0]) if digits else 0, level)


# ----------------------------------------------------------------------------- image conversion


def canonical_image(image: np.ndarray, channels: int, name: str = "image") -> np.ndarray:
    """Bring a stored image to ``channels`` channels without changing its values.

    One channel: grey images stored as RGB(A) with equal channels, or with a
    single non-constant channel (a false-colour LUT), are reduced to that
    channel.  Three channels: an alpha channel is dropped.  Anything else
    raises :class:`InputError`.
    """
    found = channels_of(image)
    if channels == 1:
        if image.ndim == 2:
            return image
        if found == 1:
            return image[..., 0]
        colour = image[..., : min(found, 3)]
        flat = colour.reshape(-1, colour.shape[-1])
        varying = np.flatnonzero(flat.min(axis=0) != flat.max(axis=0))
        if (flat == flat[:, :1]).all() or len(varying) <= 1:
            return np.ascontiguousarray(colour[..., varying[0] if len(varying) else 0])
        raise InputError(f"{name}: expected one channel, found {found} different channels (shape {image.shape})")
    if channels == 3 and found in (3, 4):
        return np.ascontiguousarray(image[..., :3])
    raise InputError(f"{name}: expected {channels} channel(s), found {found} (shape {image.shape})")


def band_correlations(image: np.ndarray, max_pixels: int = 1_000_000) -> np.ndarray:
    """Pearson correlation matrix (C x C) of the channels of an (H, W, C) image.

    Pixels are subsampled on a regular grid to at most ``max_pixels``; a
    constant channel gets correlation 0 with every other channel.
    """
    if image.ndim != 3 or image.shape[2] < 2:
        raise InputError(f"band correlations need a multi-channel image, got shape {image.shape}")
    step = max(1, int(math.ceil(math.sqrt(image.shape[0] * image.shape[1] / max_pixels))))
    data = image[::step, ::step].reshape(-1, image.shape[2]).astype(np.float64)
    data -= data.mean(axis=0)
    norm = np.sqrt((data**2).sum(axis=0))
    safe = np.where(norm > 0, norm, 1.0)
    corr = (data.T @ data) / np.outer(safe, safe)
    corr[norm == 0, :] = 0.0
    corr[:, norm == 0] = 0.0
    np.fill_diagonal(corr, 1.0)
    return corr


def nir_channel(image: np.ndarray) -> int:
    """Index of the near-infrared band of a 4-band (visible + NIR) aerial image.

    The visible bands (B, G, R) of a vegetated summer scene are strongly
    inter-correlated; near-infrared is bright on vegetation, where the
    visible bands are dark, and is the band least correlated with the others.
    Returns the channel with the lowest mean correlation with the other bands.
    """
    corr = band_correlations(image)
    n = corr.shape[0]
    mean_other = (corr.sum(axis=1) - 1.0) / (n - 1)
    return int(np.argmin(mean_other))


def _zurich_channels(order: Sequence[str]) -> tuple[list[int], int]:
    """Indices of R, G, B and of NIR in the stored channel order."""
    names = [str(n).upper() for n in order]
    if sorted(names) != ["B", "G", "NIR", "R"]:
        raise InputError(f"zurich_channel_order must name B, G, R and NIR once each, got {list(order)}")
    return [names.index(c) for c in ("R", "G", "B")], names.index("NIR")


# ----------------------------------------------------------------------------- pairs


def _resolve_modalities(
    modalities: Mapping[str, Any] | Sequence[str] | None, default: tuple[str, str], allowed: Iterable[str]
) -> tuple[str, str]:
    """(A name, B name) from ("BF", "SHG"), {"A": "BF", "B": "SHG"} or {"A": {"name": "BF"}, ...}."""
    if modalities is None:
        names = default
    elif isinstance(modalities, Mapping):
        names = tuple(
            modalities[s]["name"] if isinstance(modalities[s], Mapping) else modalities[s] for s in ("A", "B")
        )
    else:
        names = tuple(modalities)
    allowed = tuple(allowed)
    if len(names) != 2 or names[0] == names[1] or any(n not in allowed for n in names):
        raise InputError(f"modalities must be two different names of {', '.join(allowed)}, got {names!r}")
    return names  # type: ignore[return-value]


def convert_pairs(
    layout: Layout,
    out_dir: Path,
    *,
    dataset: str,
    options: RecordOptions | Mapping[str, Any] | None = None,
    modalities: Mapping[str, Any] | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Write the record's aligned pairs as ``out_dir/<modality>/<id>.tif``; return the pairs table.

    ``dataset`` is the data family the caller expects, ``"bfshg"`` or
    ``"zurich"`` (it must match the record).  ``modalities`` names the
    slots A and B (default BF, SHG for BF/SHG as in ``config/bfshg-dev.yaml``;
    RGB, NIR for Zurich).  The table has columns ``id, split, path_A,
    path_B`` (absolute paths) with splits train, val, tuning, test; counts that
    differ from the paper's (40/25/7/134) are logged as a warning.  The
    conversion summary is in ``table.attrs["records"]``.
    """
    opts = options if isinstance(options, RecordOptions) else RecordOptions.from_mapping(options)
    if dataset not in ("bfshg", "zurich"):
        raise InputError(f"dataset must be 'bfshg' or 'zurich', got {dataset!r}")
    if layout.dataset != dataset:
        raise InputError(f"the record at {layout.root} is a {layout.kind} record ({layout.dataset}), not {dataset}")
    out_dir = Path(out_dir)
    if dataset == "zurich":
        return _convert_zurich(layout, out_dir, opts, _resolve_modalities(modalities, ("RGB", "NIR"), _ZURICH_CHANNELS))
    return _convert_bfshg(layout, out_dir, opts, _resolve_modalities(modalities, ("BF", "SHG"), _BFSHG_CHANNELS))


def convert_record(
    record: Path,
    out_dir: Path,
    modalities: Sequence[Any] | Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Detect and convert an unpacked record in one call (for ``prepare_dataset``).

    ``modalities``: slots A, B as names, :class:`~comir.data.pairs.Modality`
    objects or the configuration's mapping.  ``config``: the dataset's
    ``zenodo`` section; its ``split`` becomes ``zurich_split`` and keys named
    like :class:`RecordOptions` fields are passed on (others, such as ``url``,
    are ignored).  Returns the pairs table and a JSON-able description of the
    record (kind, pairs per split, prebuilt test sets, notes, conversion summary).
    """
    layout = detect_layout(record)
    if layout.kind == "multiregeval-eval":
        raise InputError(
            f"{layout.root} is an evaluation record (MultiRegEval patches only, no aligned pairs to train on); "
            f"its test sets ({', '.join(t.name for t in layout.testsets)}) can be imported as prebuilt test sets"
        )
    if isinstance(modalities, Mapping):
        names = _resolve_modalities(modalities, ("", ""), (*_BFSHG_CHANNELS, *_ZURICH_CHANNELS))
    else:
        names = tuple(getattr(m, "name", m) for m in modalities)
    cfg = dict(config or {})
    options = {k: cfg[k] for k in RecordOptions.__dataclass_fields__ if k in cfg}
    if "split" in cfg:
        options["zurich_split"] = cfg["split"]
    table = convert_pairs(layout, out_dir, dataset=layout.dataset, options=options, modalities=names)
    description = {
        "kind": layout.kind,
        "root": str(layout.root),
        "dataset": layout.dataset,
        "found": layout.counts(),
        "testsets": [
            {
                "name": t.name, "source": t.source, "cases": t.n_cases(),
                "modalities": {m: sorted(r) for m, r in sorted(t.modalities().items())},
                "metadata": [None if p.metadata is None else str(p.metadata) for p in t.parts],
            }
            for t in layout.testsets
        ],
        "notes": list(layout.notes),
        **table.attrs.get("records", {}),
    }  # fmt: skip
    return table, description


def _carve(pairs: list[PairFiles], opts: RecordOptions, kind: str) -> list[PairFiles]:
    """Move seeded training pairs to val / tuning when the record has no such folders."""
    present = {p.split for p in pairs}
    train = sorted(p.id for p in pairs if p.split == "train")
    wanted = {}
    for split, count, share in (("val", opts.carve_val, 25 / 72), ("tuning", opts.carve_tuning, 7 / 72)):
        if split not in present:
            wanted[split] = int(round(len(train) * share)) if count is None else int(count)
    if not wanted or not train:
        return pairs
    if "val" in wanted and len(train) >= 2:
        wanted["val"] = max(wanted["val"], 1)
    if sum(wanted.values()) >= len(train):
        raise InputError(
            f"cannot move {sum(wanted.values())} of {len(train)} training pairs to {', '.join(wanted)}: "
            "training would be empty"
        )
    order = [train[i] for i in np.random.default_rng([int(opts.seed), 72]).permutation(len(train))]
    moved, start = {}, 0
    for split, count in wanted.items():
        moved.update({pair_id: split for pair_id in order[start : start + count]})
        start += count
    log.log(
        logging.INFO if kind == "bfshg-multiregeval" else logging.WARNING,
        "no %s folder in the %s record: moved %s seeded training pair(s) there", "/".join(wanted), kind, wanted,
    )  # fmt: skip
    return [replace(p, split=moved.get(p.id, p.split)) for p in pairs]


def _check_counts(counts: Mapping[str, int], expected: Mapping[str, int], what: str) -> None:
    found = {s: int(counts.get(s, 0)) for s in expected}
    if found != dict(expected):
        log.warning("%s: pairs per split %s differ from the paper's %s", what, found, dict(expected))


def _convert_bfshg(layout: Layout, out_dir: Path, opts: RecordOptions, names: tuple[str, str]) -> pd.DataFrame:
    if not layout.pairs:
        raise InputError(
            f"the {layout.kind} record at {layout.root} holds no aligned BF/SHG pairs "
            "(an evaluation record has only test patches: use import_prebuilt_testset)"
        )
    if layout.orphans:
        message = "pair file(s) without a partner:\n  " + "\n  ".join(layout.orphans[:_MAX_LISTED])
        if not opts.allow_orphans:
            raise InputError(message + "\n(set allow_orphans to skip them)")
        log.warning("%s; skipped", message)
    pairs = _carve(list(layout.pairs), opts, layout.kind)
    rows = []
    problems = []
    for pair in pairs:
        paths = {}
        shapes = {}
        for modality in names:
            source = pair.files[modality]
            try:
                image = canonical_image(read_image(source), _BFSHG_CHANNELS[modality], str(source))
            except InputError as error:
                problems.append(str(error))
                continue
            target = out_dir / modality / f"{pair.id}.tif"
            write_tiff(target, image)
            paths[modality] = str(target.resolve())
            shapes[modality] = image.shape[:2]
        if len(set(shapes.values())) > 1:
            problems.append(f"size mismatch for {pair.id!r}: " + ", ".join(f"{m} {s}" for m, s in shapes.items()))
        if len(paths) == 2:
            rows.append({"id": pair.id, "split": pair.split, "path_A": paths[names[0]], "path_B": paths[names[1]]})
    if problems:
        raise InputError(f"{len(problems)} problem(s) converting {layout.root}:\n  " + "\n  ".join(problems[:_MAX_LISTED]))
    table = pd.DataFrame(rows, columns=["id", "split", "path_A", "path_B"])
    counts = {s: int(n) for s in RECORD_SPLITS if (n := (table["split"] == s).sum())}
    log.info("%s: converted pairs per split %s into %s", layout.kind, counts, out_dir)
    _check_counts(counts, PAPER_COUNTS, f"{layout.kind} record {layout.root}")
    table.attrs["records"] = {"kind": layout.kind, "counts": counts, "modalities": list(names)}
    return table


def zurich_split(image_ids: Iterable[str], opts: RecordOptions) -> dict[str, str]:
    """Image id -> split for the chosen Zurich split (ids not used are left out)."""
    available = set(image_ids)
    if opts.zurich_split == "paper":
        assignment = {i: s for s, ids in ZURICH_PAPER_SPLIT.items() for i in ids}
    elif (m := re.fullmatch(r"fold([123])", str(opts.zurich_split))) is not None:
        fold = int(m[1])
        test = {f"zh{n}" for n in ZURICH_GROUPS[fold - 1]}
        assignment = {f"zh{n}": "train" for group in ZURICH_GROUPS for n in group}
        assignment.update({i: "test" for i in test})
        assignment[ZURICH_FOLD_VAL[fold]] = "val"
    else:
        raise InputError(f"zurich_split must be 'paper', 'fold1', 'fold2' or 'fold3', got {opts.zurich_split!r}")
    if opts.zurich_val is not None:
        val = str(opts.zurich_val)
        if assignment.get(val) == "test":
            raise InputError(f"zurich_val {val} is a test image of split {opts.zurich_split}")
        assignment = {i: ("train" if s == "val" and opts.zurich_split != "paper" else s) for i, s in assignment.items()}
        assignment = {i: s for i, s in assignment.items() if s != "val"}
        assignment[val] = "val"
        if "train" not in assignment.values():
            raise InputError(f"zurich_val {val} leaves split {opts.zurich_split} without a training image")
    missing = sorted((i for i in assignment if i not in available), key=_zurich_number)
    if missing:
        raise InputError(
            f"Zurich split {opts.zurich_split} needs {', '.join(missing)}, not in the record "
            f"(found {', '.join(sorted(available, key=_zurich_number)) or 'none'})"
        )
    return assignment


def _convert_zurich(layout: Layout, out_dir: Path, opts: RecordOptions, names: tuple[str, str]) -> pd.DataFrame:
    if not layout.zurich_images:
        raise InputError(f"the {layout.kind} record at {layout.root} holds no Zurich images (images_tif/zh<N>.tif)")
    rgb_index, nir_index = _zurich_channels(opts.zurich_channel_order)
    assignment = zurich_split(layout.zurich_images, opts)
    votes: Counter[int] = Counter()
    paths: dict[str, dict[str, str]] = {}
    clipped_total = 0
    for image_id in sorted(layout.zurich_images, key=_zurich_number):
        source = layout.zurich_images[image_id]
        image = read_image(source)
        if channels_of(image) != 4:
            raise InputError(f"{source}: a Zurich image must have 4 channels, found shape {image.shape}")
        if not np.issubdtype(image.dtype, np.integer):
            raise InputError(f"{source}: expected 12-bit integer values, found dtype {image.dtype}")
        peak = int(image.max())
        if peak >= opts.zurich_scale:
            clipped = int((image >= opts.zurich_scale).sum())
            clipped_total += clipped
            log.warning("%s: maximum %d >= %g: %d value(s) clipped to 1", source, peak, opts.zurich_scale, clipped)
        if opts.check_channel_order:
            votes[nir_channel(image)] += 1
        scaled = np.clip(image.astype(np.float32) / np.float32(opts.zurich_scale), 0.0, 1.0)
        outputs = {"RGB": scaled[..., rgb_index], "NIR": scaled[..., nir_index]}
        paths[image_id] = {}
        for modality, data in outputs.items():
            target = out_dir / modality / f"{image_id}.tif"
            write_tiff(target, np.ascontiguousarray(data, dtype=np.float32))
            paths[image_id][modality] = str(target.resolve())
    check = None
    if opts.check_channel_order and votes:
        detected, count = votes.most_common(1)[0]
        check = {"configured_nir": nir_index, "detected_nir": detected, "votes": dict(votes)}
        if detected != nir_index:
            log.warning(
                "Zurich channel order: the configured order %s puts NIR in channel %d, but in %d of %d image(s) "
                "channel %d is the band least correlated with the others (what NIR is in vegetated scenes); "
                "check zurich_channel_order",
                list(opts.zurich_channel_order), nir_index, count, sum(votes.values()), detected,
            )  # fmt: skip
        else:
            log.info("Zurich channel order: data agree that NIR is channel %d (%s)", nir_index, dict(votes))
    rows = [
        {"id": i, "split": s, "path_A": paths[i][names[0]], "path_B": paths[i][names[1]]}
        for i, s in sorted(assignment.items(), key=lambda kv: (RECORD_SPLITS.index(kv[1]), _zurich_number(kv[0])))
    ]
    table = pd.DataFrame(rows, columns=["id", "split", "path_A", "path_B"])
    counts = table["split"].value_counts().to_dict()
    log.info("zurich: %d image(s) converted into %s; split %s: %s", len(paths), out_dir, opts.zurich_split, counts)
    table.attrs["records"] = {
        "kind": layout.kind, "counts": counts, "modalities": list(names), "converted": sorted(paths),
        "channel_order": list(opts.zurich_channel_order), "channel_check": check, "clipped_values": clipped_total,
    }  # fmt: skip
    return table


# ----------------------------------------------------------------------------- prebuilt test sets


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
    data = image.astype(np.float32)
    return data.mean(axis=2) if data.ndim == 3 else data


def _warped_ncc(reference: np.ndarray, floating: np.ndarray, matrices: Sequence[np.ndarray], erode: int = 2) -> list[float]:
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


@dataclass(frozen=True)
class _Case:
    image_id: str
    part: int  # index of the test set part it belongs to
    stratum: str | None
    files: Mapping[tuple[str, str], Path]  # (modality, role) -> file
    ref: np.ndarray
    trans: np.ndarray


def _load_patch(path: Path, modality: str, channels: int, reverse: bool) -> np.ndarray:
    image = canonical_image(read_image(path), channels, str(path))
    if reverse:
        image = np.ascontiguousarray(image[..., ::-1])
    return image


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
        log.info("test set %r: corner convention %s verified on the pixels (mean NCC %s)", name, CONVENTIONS[wanted], table)
    return CONVENTIONS[wanted], summary


def _strata_for(displacement: np.ndarray, width: int, strata: Sequence[tuple[str, float | None]] | None) -> np.ndarray:
    if strata is None:  # the paper's strata at 834 px, scaled to the patch width
        scale = width / 834.0
        strata = (("small", 100.0 * scale), ("medium", 200.0 * scale), ("large", None))
    bounds = np.array([math.inf if b is None else float(b) for _, b in strata])
    which = np.searchsorted(bounds, displacement, side="left")
    names = np.array([n for n, _ in strata])
    return names[np.minimum(which, len(names) - 1)]


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

    ``modalities`` names slots A and B (``("BF", "SHG")``, ``{"A": "BF", "B":
    "SHG"}`` or the configuration's ``{"A": {"name": ...}, ...}``); both must
    have reference (R) and transformed (T) patches in the record, otherwise an
    InputError says what was found.  Slot ``X``'s ``ref`` is its R patch and
    ``flo`` its T patch; one ground truth per case, floating -> reference,
    fitted (rigid least squares) to the metadata's Ref -> Trans corners.

    The direction of the corner columns is verified on the pixels: for up to
    ``check_cases`` cases (spread over the parts) and each modality, the T
    patch is warped into the reference frame by each candidate of
    :data:`CONVENTIONS` and compared with the R patch (NCC inside the valid
    overlap).  ``convention="auto"`` takes the best-matching convention (a
    warning when it is not ``forward``); an explicit convention must be the
    one that matches.  InputError when the best mean NCC is below
    ``min_ncc`` or the best convention wins in fewer than 80 % of the cases
    whose candidates differ.

    ``stratum``: the record's level (e.g. ``tlevel1``) where it has levels,
    else the paper's displacement strata (100 / 200 px at 834 px, scaled to
    the patch width) unless ``strata`` ((name, upper bound or None), ...) is
    given.  ``crop_x`` / ``crop_y`` are -1 (the position in the core is not
    known).  The columns are exactly those of :func:`comir.testset.build_testset`;
    ``attrs["records"]`` holds the convention and the NCC scores.
    """
    if convention != "auto" and convention not in CONVENTIONS:
        raise InputError(f"convention must be 'auto' or one of {', '.join(CONVENTIONS)}, got {convention!r}")
    testset = layout.testset(name)
    allowed = _ZURICH_CHANNELS if testset.dataset == "zurich" else _BFSHG_CHANNELS
    names = _resolve_modalities(modalities, tuple(allowed), allowed)  # type: ignore[arg-type]
    channels = {m: allowed[m] for m in names}
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
        meta = _read_metadata(part.metadata)
        rows = {case_id: i for i, case_id in enumerate(meta.ids)}
        for case_id in part.ids():
            files = {(m, r): part.files.get((case_id, m, r)) for m in names for r in ("R", "T")}
            if any(v is None for v in files.values()):
                skipped.append(f"{case_id}: missing " + ", ".join(f"{m} {r}" for (m, r), v in files.items() if v is None))
                continue
            if case_id not in rows:
                skipped.append(f"{case_id}: not listed in {part.metadata.name}")
                continue
            i = rows[case_id]
            cases.append(_Case(case_id, part_index, part.stratum, files, meta.ref[i], meta.trans[i]))  # type: ignore[arg-type]
        unlisted = sorted(set(rows) - set(part.ids()))
        if unlisted:
            log.warning("%s lists %d case(s) without patches in %s: %s", part.metadata, len(unlisted), part.folder, ", ".join(unlisted[:5]))
    if skipped:
        log.warning("test set %r: %d patch set(s) skipped: %s", name, len(skipped), "; ".join(skipped[:5]))
    if not cases:
        raise InputError(f"test set {name!r}: no case has R and T patches of {', '.join(names)} and a metadata row")

    # Rigid fit per case under each convention; the corners must be rigidly related.
    candidates = [_candidate_transforms(c.ref, c.trans) for c in cases]
    residual = np.array(
        [np.abs(geometry.apply(cand["forward"], c.ref) - c.trans).max() for c, cand in zip(cases, candidates)]
    )
    scale = np.array([np.ptp(c.ref, axis=0).max() for c in cases])
    bad = np.flatnonzero(residual > 0.5 + 1e-3 * scale)
    if bad.size:
        listed = ", ".join(f"{cases[i].image_id} ({residual[i]:.2f} px)" for i in bad[:_MAX_LISTED])
        raise InputError(f"test set {name!r}: Ref and Trans corners are not related by a rigid transform: {listed}")

    # Verify the convention on the pixels.
    reverse = {m: m in testset.bgr_modalities for m in names}
    per_part = max(1, int(math.ceil(check_cases / len(testset.parts))))
    sample: list[int] = []
    for part_index in range(len(testset.parts)):
        members = [i for i, c in enumerate(cases) if c.part == part_index]
        if members:
            picks = np.linspace(0, len(members) - 1, min(per_part, len(members))).round().astype(int)
            sample.extend(members[j] for j in np.unique(picks))
    scores = np.full((len(sample), len(CONVENTIONS)), np.nan)
    for row, index in enumerate(sample):
        case = cases[index]
        per_modality = []
        for modality in names:
            ref = _load_patch(case.files[(modality, "R")], modality, channels[modality], reverse[modality])
            flo = _load_patch(case.files[(modality, "T")], modality, channels[modality], reverse[modality])
            per_modality.append(_warped_ncc(ref, flo, [candidates[index][c] for c in CONVENTIONS]))
        with np.errstate(all="ignore"):
            scores[row] = np.nanmean(np.array(per_modality), axis=0) if np.isfinite(per_modality).any() else np.nan
    chosen, summary = _choose_convention(scores, convention, min_ncc, name, [cases[i].image_id for i in sample])

    # Write the patches and the cases table.
    out_dir = Path(out_dir)
    records = []
    for number, (case, cand) in enumerate(zip(cases, candidates)):
        label = f"case_{number:04d}"
        shapes = set()
        for slot, modality in zip(("A", "B"), names):
            for role, suffix in (("R", "ref"), ("T", "flo")):
                image = _load_patch(case.files[(modality, role)], modality, channels[modality], reverse[modality])
                shapes.add(image.shape[:2])
                write_tiff(out_dir / f"{label}_{slot}_{suffix}.tif", image)
        if len(shapes) != 1:
            raise InputError(
                f"test set {name!r}, case {case.image_id}: R and T patches of {', '.join(names)} differ in size "
                f"({', '.join(f'{h}x{w}' for h, w in sorted(shapes))}, HxW)"
            )
        (height, width) = shapes.pop()
        records.append((label, case, cand[chosen], width, height))

    truth = np.stack([r[2] for r in records])
    widths = np.array([r[3] for r in records])
    heights = np.array([r[4] for r in records])
    displacement = np.array([geometry.corner_error(geometry.IDENTITY, t, w, h) for t, w, h in zip(truth, widths, heights)])
    moves = geometry.invert(truth)  # reference -> floating, as the recipe's drawn transform
    centres = np.stack([(widths - 1) / 2.0, (heights - 1) / 2.0], axis=1)
    shift = geometry.apply(moves, centres[:, None, :])[:, 0] - centres
    landed = np.stack([geometry.apply(t, geometry.corners(w, h)) for t, w, h in zip(truth, widths, heights)])
    stratum = np.array([r[1].stratum for r in records], dtype=object)
    unknown = np.array([s is None for s in stratum])
    if unknown.any():
        stratum[unknown] = _strata_for(displacement[unknown], int(np.median(widths)), strata)
    frame = pd.DataFrame(
        {
            "case": [r[0] for r in records],
            "image_id": [r[1].image_id for r in records],
            "stratum": stratum.astype(str),
            "rotation_deg": np.degrees(geometry.rotation_angle(moves)),
            "translation_x": shift[:, 0],
            "translation_y": shift[:, 1],
            "initial_displacement_px": displacement,
        }
    )
    for key, values in zip(MATRIX_KEYS, truth.reshape(-1, 6).T):
        frame[f"true_{key}"] = values
    for index in range(4):
        frame[f"corner{index}_x"] = landed[:, index, 0]
        frame[f"corner{index}_y"] = landed[:, index, 1]
    frame["crop_x"] = -1
    frame["crop_y"] = -1
    frame["width"] = widths.astype(int)
    frame["height"] = heights.astype(int)
    frame = frame[list(TESTSET_COLUMNS)]
    frame.attrs["records"] = {
        "testset": name, "source": testset.source, "convention": chosen, "ncc": summary,
        "checked_cases": [cases[i].image_id for i in sample], "skipped": skipped, "modalities": list(names),
    }  # fmt: skip
    log.info(
        "test set %r: %d case(s) written to %s (strata %s)", name, len(frame), out_dir,
        frame["stratum"].value_counts().to_dict(),
    )  # fmt: skip
    return frame

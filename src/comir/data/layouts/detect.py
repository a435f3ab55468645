"""Recognise an unpacked record: :func:`detect_layout`, from the classified files to a :class:`.result.Layout`.

Contract: :func:`detect_layout` walks the record (:mod:`.tree`), groups the aligned pairs by split
and id, collects the prebuilt test sets with their metadata (:mod:`.metadata`), finds the Zurich
images, and decides the record's kind. It raises :class:`~comir.io.InputError` with a summary of
the tree found and the layouts expected (the package docstring) when no layout matches, and when
the pairs are inconsistent (one id in two splits, a file given twice).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from comir.data.layouts.metadata import metadata_candidates, pick_metadata
from comir.data.layouts.result import MAX_LISTED, RECORD_SPLITS, Layout, PairFiles, PrebuiltPart, PrebuiltTestSet
from comir.data.layouts.tree import ClassifiedFile, classify, split_of_folder, split_of_path, tree_summary, walk
from comir.io import InputError

__all__ = ["detect_layout"]

log = logging.getLogger(__name__)

_EVAL_MODALITIES = {"bfshg": {"A": "SHG", "B": "BF"}, "zurich": {"A": "NIR", "B": "RGB"}}

_EXPECTED = """expected one of these layouts (folder names case-insensitive, at any depth):
  bfshg-comir (Zenodo 3874362): TrainSet/, Validation1Set/, Validation2Set/, TestSet/ holding
      <id>_SHG.tif + <id>_BF.tif; transformed test patches R_<id>_<MOD>.tif / T_<id>_<MOD>.tif
      (or <id>_<MOD>_R.tif / _T.tif) with a metadata CSV (Filename;X1_Ref;...;Y4_Trans)
  bfshg-multiregeval (Zenodo 4550300): HighRes_Splits/WSI/{train,test}/<id>_{SHG|MI,BF|WB}.tif
  zurich (Zenodo 5914759): images_tif/zh<N>.tif with 4 channels
  multiregeval-eval (Zenodo 5557568): Eliceiri_patches/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.tif
      and Zurich_patches/fold<f>/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.png, each level with info_test.csv"""


def detect_layout(root: Path) -> Layout:
    """Recognise an unpacked record under ``root``: its kind, pairs per split and prebuilt test sets.

    Parameters
    ----------
    root : pathlib.Path
        The unpacked record's folder (``~`` expanded).

    Returns
    -------
    comir.data.layouts.result.Layout
        The record's kind, dataset, pairs, Zurich images, prebuilt test sets, orphans and notes.

    Raises
    ------
    comir.io.InputError
        If ``root`` is not a folder; or, with a summary of the tree, when no known layout matches or the
        pairs are inconsistent (one id in two splits, a file given twice).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"record folder not found: {root}")
    root = root.resolve()
    files = walk(root)
    classified = [classify(rel, root.name) for rel in files]
    notes: list[str] = []
    problems: list[str] = []
    grouped, multiregeval = _pair_groups(classified, notes, problems)
    candidates = metadata_candidates(root, files)
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
    classified: list[ClassifiedFile], notes: list[str], problems: list[str]
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
    unassigned = Counter(str(f.rel.parent) for f in pair_files if split_of_path(f.rel.parent) is None)
    for folder, count in sorted(unassigned.items()):
        notes.append(f"{folder}: {count} pair file(s) in a folder that names no split; ignored")
    grouped: dict[tuple[str, str], dict[str, PurePosixPath]] = defaultdict(dict)
    for f in pair_files:
        split = split_of_path(f.rel.parent)
        if split is None:
            continue
        slot = grouped[(split, f.id)]
        if f.modality in slot:
            problems.append(f"{f.modality} of {f.id!r} ({split}) given twice: {slot[f.modality]} and {f.rel}")
        slot[f.modality] = f.rel
    return grouped, multiregeval


def _comir_testsets(
    root: Path,
    classified: list[ClassifiedFile],
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
        meta = pick_metadata(folder, ids, candidates, only_inside=False)
        split = split_of_path(folder)
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
    classified: list[ClassifiedFile],
    candidates: dict[PurePosixPath, set[str]],
    used_names: set[str],
    notes: list[str],
    problems: list[str],
) -> list[PrebuiltTestSet]:
    """MultiRegEval's evaluation patches: one test set per data set (and fold), one part per transform level."""
    eval_groups: dict[tuple[str, int | None], dict[PurePosixPath, list[ClassifiedFile]]] = defaultdict(
        lambda: defaultdict(list)
    )
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
            meta = pick_metadata(level_root, {k[0] for k in group}, candidates, only_inside=True)
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


def _zurich_images(root: Path, classified: list[ClassifiedFile], problems: list[str]) -> dict[str, Path]:
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

"""The paper's Zenodo records after unpacking: convert their aligned pairs to the canonical layout.

:func:`convert_pairs` writes the canonical aligned-pairs layout
``out_dir/<modality>/<id>.tif`` of a record that :func:`comir.data.layouts.detect.detect_layout`
recognised and returns the pairs table (``id, split, path_A, path_B``; splits
``train, val, tuning, test``); :func:`convert_record` detects and converts in one
call.  BF/SHG cores are kept whole (the test-set recipe cuts its own patches).
Zurich images become ``RGB`` (3 channels, R, G, B order) and ``NIR`` (1
channel), float32 in [0, 1] (value / 4096, clipped).

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
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comir.data.layouts.detect import detect_layout
from comir.data.layouts.result import MAX_LISTED, RECORD_SPLITS, Layout, PairFiles
from comir.data.layouts.tree import zurich_number
from comir.io import InputError, channels_of, read_image, reject_unknown_keys, write_tiff

__all__ = [
    "BFSHG_CHANNELS",
    "DEFAULT_ZURICH_CHANNEL_ORDER",
    "PAPER_COUNTS",
    "ZURICH_CHANNELS",
    "ZURICH_GROUPS",
    "RecordOptions",
    "band_correlations",
    "canonical_image",
    "convert_pairs",
    "convert_record",
    "nir_channel",
    "resolve_modalities",
    "zurich_split",
]

log = logging.getLogger(__name__)

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
#: Channels of each modality a record's images are converted to.
BFSHG_CHANNELS = {"SHG": 1, "BF": 3}
ZURICH_CHANNELS = {"RGB": 3, "NIR": 1}


@dataclass(frozen=True)
class RecordOptions:
    """Choices of :func:`convert_pairs` (all have the paper's defaults)."""

    #: "paper" (train zh10, val zh11, test zh12), "fold1" / "fold2" / "fold3" (MultiRegEval), or
    #: "strips" (one scene cut into column strips, :data:`zurich_strips`)
    zurich_split: str = "paper"
    #: split "strips": {"image": "zh17", "train": [x0, x1], "val": [...], "test": [...]}, fractions of the width
    zurich_strips: Mapping[str, Any] | None = None
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
        """Options from a configuration mapping (None: the defaults); InputError on unknown keys.

        Parameters
        ----------
        mapping : Mapping[str, Any] or None
            Keys named like the fields; ``zurich_channel_order`` may be any sequence. None: the defaults.

        Returns
        -------
        RecordOptions
            The options (values are not checked here).

        Raises
        ------
        comir.io.InputError
            If a key is not a field.
        """
        if mapping is None:
            return cls()
        reject_unknown_keys(mapping, sorted(cls.__dataclass_fields__), "record option(s)", error=InputError)
        values = dict(mapping)
        if "zurich_channel_order" in values:
            values["zurich_channel_order"] = tuple(values["zurich_channel_order"])
        return cls(**values)


# ----------------------------------------------------------------------------- image conversion


def canonical_image(image: np.ndarray, channels: int, name: str = "image") -> np.ndarray:
    """Bring a stored image to ``channels`` channels without changing its values.

    One channel: grey images stored as RGB(A) with equal channels, or with a
    single non-constant channel (a false-colour LUT), are reduced to that
    channel.  Three channels: an alpha channel is dropped.

    Parameters
    ----------
    image : numpy.ndarray
        The stored ``(H, W)`` or ``(H, W, C)`` image.
    channels : int
        The channels wanted, 1 or 3.
    name : str, optional
        The image's name in error messages. Default ``"image"``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` for one channel, ``(H, W, 3)`` for three; the stored values and dtype.

    Raises
    ------
    comir.io.InputError
        If the image cannot be brought to ``channels`` channels this way.
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

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, C)`` image, ``C >= 2``.
    max_pixels : int, optional
        The most pixels used. Default 1 000 000.

    Returns
    -------
    numpy.ndarray
        ``(C, C)`` float64 correlations, 1 on the diagonal.

    Raises
    ------
    comir.io.InputError
        If ``image`` is not a multi-channel ``(H, W, C)`` array.
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

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 4)`` aerial image (any multi-channel image is accepted).

    Returns
    -------
    int
        The channel with the lowest mean correlation with the other bands (:func:`band_correlations`).

    Raises
    ------
    comir.io.InputError
        If ``image`` is not a multi-channel ``(H, W, C)`` array.
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


def resolve_modalities(
    modalities: Mapping[str, Any] | Sequence[str] | None, default: tuple[str, str], allowed: Iterable[str]
) -> tuple[str, str]:
    """(A name, B name) from ("BF", "SHG"), {"A": "BF", "B": "SHG"} or {"A": {"name": "BF"}, ...}.

    Parameters
    ----------
    modalities : Mapping[str, Any] or Sequence[str] or None
        Two names in slot order, a mapping of slot to name, or a mapping of slot to a section with ``name``;
        None: ``default``.
    default : tuple[str, str]
        The names when ``modalities`` is None.
    allowed : Iterable[str]
        The names the record provides.

    Returns
    -------
    tuple[str, str]
        The names of slots A and B.

    Raises
    ------
    comir.io.InputError
        If there are not two different names of ``allowed``.
    KeyError
        If a mapping lacks slot ``A`` or ``B``.
    """
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

    Parameters
    ----------
    layout : comir.data.layouts.result.Layout
        The record as :func:`comir.data.layouts.detect.detect_layout` found it.
    out_dir : pathlib.Path
        Root of the canonical layout.
    dataset : str
        The data family the caller expects, ``"bfshg"`` or ``"zurich"``; it must match the record.
    options : RecordOptions or Mapping[str, Any] or None, optional
        The conversion's choices (:meth:`RecordOptions.from_mapping`); None: the paper's. Default None.
    modalities : Mapping[str, Any] or Sequence[str] or None, optional
        Names of slots A and B (:func:`resolve_modalities`); None: BF, SHG for BF/SHG (as in
        ``config/bfshg-dev.yaml``), RGB, NIR for Zurich. Default None.

    Returns
    -------
    pandas.DataFrame
        The pairs table, ``id, split, path_A, path_B``, the summary in ``attrs["records"]``.

    Raises
    ------
    comir.io.InputError
        If ``dataset`` is unknown or not the record's, a modality or option is invalid, the record holds
        no pairs, a pair has no partner (unless ``allow_orphans``), or an image cannot be converted.
    """
    opts = options if isinstance(options, RecordOptions) else RecordOptions.from_mapping(options)
    if dataset not in ("bfshg", "zurich"):
        raise InputError(f"dataset must be 'bfshg' or 'zurich', got {dataset!r}")
    if layout.dataset != dataset:
        raise InputError(f"the record at {layout.root} is a {layout.kind} record ({layout.dataset}), not {dataset}")
    out_dir = Path(out_dir)
    if dataset == "zurich":
        return _convert_zurich(layout, out_dir, opts, resolve_modalities(modalities, ("RGB", "NIR"), ZURICH_CHANNELS))
    return _convert_bfshg(layout, out_dir, opts, resolve_modalities(modalities, ("BF", "SHG"), BFSHG_CHANNELS))


def convert_record(
    record: Path,
    out_dir: Path,
    modalities: Sequence[Any] | Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Detect and convert an unpacked record in one call (for ``prepare_dataset``).

    Parameters
    ----------
    record : pathlib.Path
        The unpacked record's folder.
    out_dir : pathlib.Path
        Root of the canonical layout.
    modalities : Sequence[Any] or Mapping[str, Any]
        Slots A, B as names, :class:`~comir.data.pairs.Modality` objects or the configuration's mapping.
    config : Mapping[str, Any] or None, optional
        The dataset's ``zenodo`` section; its ``split`` becomes ``zurich_split``, its ``strips``
        ``zurich_strips``, and keys named like :class:`RecordOptions` fields are passed on (others, such
        as ``url``, are ignored). Default None.

    Returns
    -------
    table : pandas.DataFrame
        The pairs table (:func:`convert_pairs`).
    description : dict[str, Any]
        A JSON-able description of the record (kind, pairs per split, prebuilt test sets, notes,
        conversion summary).

    Raises
    ------
    comir.io.InputError
        If the record is an evaluation record (no aligned pairs), or cannot be detected or converted.
    """
    layout = detect_layout(record)
    if layout.kind == "multiregeval-eval":
        raise InputError(
            f"{layout.root} is an evaluation record (MultiRegEval patches only, no aligned pairs to train on); "
            f"its test sets ({', '.join(t.name for t in layout.testsets)}) can be imported as prebuilt test sets"
        )
    if isinstance(modalities, Mapping):
        names = resolve_modalities(modalities, ("", ""), (*BFSHG_CHANNELS, *ZURICH_CHANNELS))
    else:
        names = tuple(getattr(m, "name", m) for m in modalities)
    cfg = dict(config or {})
    options = {k: cfg[k] for k in RecordOptions.__dataclass_fields__ if k in cfg}
    if "split" in cfg:
        options["zurich_split"] = cfg["split"]
    if cfg.get("strips") is not None:
        options["zurich_strips"] = cfg["strips"]
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
    """Warn when the pairs per split differ from the paper's."""
    found = {s: int(counts.get(s, 0)) for s in expected}
    if found != dict(expected):
        log.warning("%s: pairs per split %s differ from the paper's %s", what, found, dict(expected))


def _convert_bfshg(layout: Layout, out_dir: Path, opts: RecordOptions, names: tuple[str, str]) -> pd.DataFrame:
    """Write every BF/SHG pair (whole cores, channels made canonical) and return the pairs table."""
    if not layout.pairs:
        raise InputError(
            f"the {layout.kind} record at {layout.root} holds no aligned BF/SHG pairs "
            "(an evaluation record has only test patches: use import_prebuilt_testset)"
        )
    if layout.orphans:
        message = "pair file(s) without a partner:\n  " + "\n  ".join(layout.orphans[:MAX_LISTED])
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
                image = canonical_image(read_image(source), BFSHG_CHANNELS[modality], str(source))
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
        listed = "\n  ".join(problems[:MAX_LISTED])
        raise InputError(f"{len(problems)} problem(s) converting {layout.root}:\n  {listed}")
    table = pd.DataFrame(rows, columns=["id", "split", "path_A", "path_B"])
    counts = {s: int(n) for s in RECORD_SPLITS if (n := (table["split"] == s).sum())}
    log.info("%s: converted pairs per split %s into %s", layout.kind, counts, out_dir)
    _check_counts(counts, PAPER_COUNTS, f"{layout.kind} record {layout.root}")
    table.attrs["records"] = {"kind": layout.kind, "counts": counts, "modalities": list(names)}
    return table


def strip_bounds(width: int, strips: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Split -> the column range ``[x0, x1)`` of its strip in a scene ``width`` px wide.

    Fractions of the width, rounded; the strips must be non-empty and must not overlap
    (an :class:`InputError` says which).

    Parameters
    ----------
    width : int
        Width of the scene, px.
    strips : Mapping[str, Any]
        ``train``, ``val`` and ``test``: each ``[x0, x1]`` as fractions of the width.

    Returns
    -------
    dict[str, tuple[int, int]]
        ``train``, ``val``, ``test`` -> ``(x0, x1)`` in px.

    Raises
    ------
    comir.io.InputError
        If a strip is missing, empty, outside the scene, or overlaps another.
    """
    bounds = {}
    for split in ("train", "val", "test"):
        if split not in strips:
            raise InputError(f"Zurich strips need a {split!r} strip, got {dict(strips)}")
        x0, x1 = (round(float(f) * width) for f in strips[split])
        if not 0 <= x0 < x1 <= width:
            raise InputError(f"Zurich strip {split} {list(strips[split])} is empty or outside [0, 1]")
        bounds[split] = (x0, x1)
    ordered = sorted(bounds.values())
    if any(a[1] > b[0] for a, b in zip(ordered, ordered[1:])):
        raise InputError(f"Zurich strips overlap: {dict(strips)}")
    return bounds


def zurich_split(image_ids: Iterable[str], opts: RecordOptions) -> dict[str, str]:
    """Image id -> split for the chosen Zurich split (ids not used are left out).

    Split "strips" assigns its one scene to "strips" (cut by :func:`strip_bounds`).

    Parameters
    ----------
    image_ids : Iterable[str]
        The record's Zurich image ids (``zh<N>``).
    opts : RecordOptions
        ``zurich_split`` (``"paper"``, ``"fold1"`` .. ``"fold3"``, ``"strips"``), ``zurich_strips`` and
        ``zurich_val``.

    Returns
    -------
    dict[str, str]
        Image id -> ``"train"``, ``"val"``, ``"test"`` (or ``"strips"``).

    Raises
    ------
    comir.io.InputError
        If the split is unknown, ``zurich_val`` is a test image or leaves no training image, or an image
        the split needs is not in the record.
    """
    available = set(image_ids)
    if opts.zurich_split == "strips":
        image = str((opts.zurich_strips or {}).get("image", ""))
        if image not in available:
            raise InputError(
                f"Zurich split strips needs zurich_strips.image, one of the record's images "
                f"({', '.join(sorted(available, key=zurich_number)) or 'none'}), got {image!r}"
            )
        return {image: "strips"}
    if opts.zurich_split == "paper":
        assignment = {i: s for s, ids in ZURICH_PAPER_SPLIT.items() for i in ids}
    elif (m := re.fullmatch(r"fold([123])", str(opts.zurich_split))) is not None:
        fold = int(m[1])
        test = {f"zh{n}" for n in ZURICH_GROUPS[fold - 1]}
        assignment = {f"zh{n}": "train" for group in ZURICH_GROUPS for n in group}
        assignment.update({i: "test" for i in test})
        assignment[ZURICH_FOLD_VAL[fold]] = "val"
    else:
        raise InputError(
            f"zurich_split must be 'paper', 'fold1', 'fold2', 'fold3' or 'strips', got {opts.zurich_split!r}"
        )
    if opts.zurich_val is not None:
        val = str(opts.zurich_val)
        if assignment.get(val) == "test":
            raise InputError(f"zurich_val {val} is a test image of split {opts.zurich_split}")
        assignment = {i: ("train" if s == "val" and opts.zurich_split != "paper" else s) for i, s in assignment.items()}
        assignment = {i: s for i, s in assignment.items() if s != "val"}
        assignment[val] = "val"
        if "train" not in assignment.values():
            raise InputError(f"zurich_val {val} leaves split {opts.zurich_split} without a training image")
    missing = sorted((i for i in assignment if i not in available), key=zurich_number)
    if missing:
        raise InputError(
            f"Zurich split {opts.zurich_split} needs {', '.join(missing)}, not in the record "
            f"(found {', '.join(sorted(available, key=zurich_number)) or 'none'})"
        )
    return assignment


def _convert_zurich(layout: Layout, out_dir: Path, opts: RecordOptions, names: tuple[str, str]) -> pd.DataFrame:
    """Write every Zurich image as RGB and NIR in [0, 1], check the channel order, return the split's pairs."""
    if not layout.zurich_images:
        raise InputError(f"the {layout.kind} record at {layout.root} holds no Zurich images (images_tif/zh<N>.tif)")
    rgb_index, nir_index = _zurich_channels(opts.zurich_channel_order)
    assignment = zurich_split(layout.zurich_images, opts)
    votes: Counter[int] = Counter()
    paths: dict[str, dict[str, str]] = {}
    clipped_total = 0
    strips = opts.zurich_split == "strips"
    for image_id in sorted(layout.zurich_images, key=zurich_number):
        if strips and image_id not in assignment:
            continue  # one scene is cut into strips; the others are not used
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
        # The scene itself, or its strips as images <id>-train, <id>-val, <id>-test.
        parts = {image_id: slice(None)}
        if strips:
            bounds = strip_bounds(image.shape[1], opts.zurich_strips)
            parts = {f"{image_id}-{split}": slice(*bounds[split]) for split in bounds}
            assignment = {f"{image_id}-{split}": split for split in bounds}
        for part, columns in parts.items():
            paths[part] = {}
            for modality, data in outputs.items():
                target = out_dir / modality / f"{part}.tif"
                write_tiff(target, np.ascontiguousarray(data[:, columns], dtype=np.float32))
                paths[part][modality] = str(target.resolve())
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
        for i, s in sorted(
            assignment.items(), key=lambda kv: (RECORD_SPLITS.index(kv[1]), zurich_number(kv[0].split("-")[0]))
        )
    ]
    table = pd.DataFrame(rows, columns=["id", "split", "path_A", "path_B"])
    counts = table["split"].value_counts().to_dict()
    log.info("zurich: %d image(s) converted into %s; split %s: %s", len(paths), out_dir, opts.zurich_split, counts)
    table.attrs["records"] = {
        "kind": layout.kind, "counts": counts, "modalities": list(names), "converted": sorted(paths),
        "channel_order": list(opts.zurich_channel_order), "channel_check": check, "clipped_values": clipped_total,
    }  # fmt: skip
    return table


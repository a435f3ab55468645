"""Fake unpacked Zenodo records: the real folder and file naming, tiny images.

Used by ``tests/test_records.py`` and by end-to-end tests that serve the
zipped records over a loopback HTTP server.  Every builder writes below
``root`` and returns a :class:`FakeRecord` whose ``path`` is the record's top
folder (what the record's zip file holds) and which carries the ids per split
and the true floating -> reference transform of every transformed case.

* :func:`build_fake_bfshg` - Zenodo 3874362 (``BioData/TrainSet``,
  ``Validation1Set``, ``Validation2Set``, ``TestSet`` with ``R_<id>_<MOD>.tif`` /
  ``T_<id>_<MOD>.tif`` and the authors' semicolon metadata CSV), or with
  ``style="multiregeval"`` Zenodo 4550300 (``HighRes_Splits/WSI/{train,test}``).
* :func:`build_fake_zurich` - Zenodo 5914759 (``Zurich_dataset_v1.0/images_tif/zh<N>.tif``,
  4 channels, 12-bit values in uint16, realistic band correlations).
* :func:`build_fake_multiregeval_eval` - Zenodo 5557568 (``Eliceiri_patches`` and
  ``Zurich_patches/fold<f>``, ``patch_tlevel<k>/{A,B}/test/<id>_{R,T}`` + ``info_test.csv``).
* :func:`zip_record` - the zip file of a record folder.

Transformed patches are real: they are resampled from the core by the true
transform (:func:`comir.testset.extract_patches`), so a convention check on
the pixels sees the same geometry as on the real data.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tifffile

from comir import geometry
from comir.io import write_png
from comir.testset import extract_patches

__all__ = [
    "FakeRecord",
    "build_fake_bfshg",
    "build_fake_multiregeval_eval",
    "build_fake_zurich",
    "fake_core",
    "fake_zurich_bands",
    "zip_record",
]

PAPER_LIKE_COUNTS = {"train": 4, "val": 3, "tuning": 2, "test": 3}
COMIR_HEADER = (
    "Filename;X1_Ref;Y1_Ref;X2_Ref;Y2_Ref;X3_Ref;Y3_Ref;X4_Ref;Y4_Ref;"
    "X1_Trans;Y1_Trans;X2_Trans;Y2_Trans;X3_Trans;Y3_Trans;X4_Trans;Y4_Trans;Displacement"
)
MULTIREGEVAL_HEADER = (
    "Filename,ReferenceImage,Method,X1_Ref,Y1_Ref,X2_Ref,Y2_Ref,X3_Ref,Y3_Ref,X4_Ref,Y4_Ref,"
    "X1_Trans,Y1_Trans,X2_Trans,Y2_Trans,X3_Trans,Y3_Trans,X4_Trans,Y4_Trans,"
    "X1_Recover,Y1_Recover,X2_Recover,Y2_Recover,X3_Recover,Y3_Recover,X4_Recover,Y4_Recover,"
    "Displacement,RelativeDisplacement,Tx,Ty,AngleDegree,AngleRad,Error,DisplacementCategory"
)


@dataclass
class FakeRecord:
    path: Path  # the record's top folder
    ids: dict[str, list[str]]  # split (or "images") -> ids
    truths: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # test set -> id -> 2x3
    sources: dict[str, np.ndarray] = field(default_factory=dict)  # extra arrays for checks


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigmas: Sequence[float]) -> np.ndarray:
    """Multi-scale smooth random field in [0, 1], float32."""
    field_ = np.zeros(shape, np.float32)
    for sigma in sigmas:
        noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
        field_ += noise / (noise.std() + 1e-9)
    return (field_ - field_.min()) / (np.ptp(field_) + 1e-9)


def fake_core(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An SHG-like (uint8, H x W) and a BF-like (uint8, H x W x 3) image sharing one structure."""
    rng = np.random.default_rng(seed)
    shared = _smooth(rng, (size, size), (1.5, 4.0, 10.0))
    own = _smooth(rng, (size, size), (2.0, 6.0))
    shg = (255 * np.clip(1.4 * shared - 0.2, 0, 1) ** 2).astype(np.uint8)
    density = 1.2 * shared[..., None] * np.array([0.15, 0.9, 0.45]) + 0.8 * own[..., None] * np.array([0.7, 0.75, 0.2])
    bf = (255 * np.exp(-density)).astype(np.uint8)
    return shg, bf


def _ids(n: int, start: int = 0) -> list[str]:
    """Core ids in the record's style: 1B_A1, 1B_A2, ..., 2B_C10, ..."""
    out = []
    for k in range(start, start + n):
        block, rest = divmod(k, 130)
        row, col = divmod(rest, 10)
        out.append(f"{block + 1}B_{chr(ord('A') + row)}{col + 1}")
    return out


def _tiff(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image)


def _random_truth(rng: np.random.Generator, size: int, rotation_deg: float, translation_px: float) -> np.ndarray:
    """A floating -> reference transform drawn like the pipeline's recipe (about the patch centre)."""
    centre = ((size - 1) / 2, (size - 1) / 2)
    angle = np.radians(rng.uniform(-rotation_deg, rotation_deg))
    tx, ty = rng.uniform(-translation_px, translation_px, 2)
    return geometry.invert(geometry.rigid_matrix(angle, tx, ty, centre))


def _fmt(values: Iterable[float]) -> list[str]:
    return [f"{float(v):.12g}" for v in values]


def build_fake_bfshg(
    root: Path,
    *,
    style: str = "comir",
    counts: Mapping[str, int] | None = None,
    core_size: int = 160,
    patch_size: int = 64,
    testset: bool = True,
    naming: str = "prefix",
    transformed: Sequence[str] = ("SHG", "BF"),
    metadata: str = "forward",
    metadata_folder: str = "TestSet",
    test_cores: bool = False,
    rotation_deg: float = 20.0,
    translation_px: float = 8.0,
    seed: int = 0,
) -> FakeRecord:
    """A fake BF/SHG record under ``root``.

    ``style="comir"`` (Zenodo 3874362): ``BioData/{TrainSet,Validation1Set,
    Validation2Set}/<id>_{SHG,BF}.tif`` (whole cores of ``core_size`` px) and
    ``BioData/TestSet/`` with the transformed test set: reference and
    transformed ``patch_size`` px patches named ``R_<id>_<MOD>.tif`` /
    ``T_<id>_<MOD>.tif`` (``naming="suffix"``: ``<id>_<MOD>_R.tif``) for the
    modalities in ``transformed`` (reference patches of both modalities are
    always written), and ``BioData/<metadata_folder>/metadata.csv`` in the
    authors' format (semicolons, Filename ``<id>_``, corners (0,0), (0,P-1),
    (P-1,0), (P-1,P-1)).  ``metadata``: ``"forward"`` (Trans corners = the
    true floating -> reference transform of the Ref corners), ``"inverse"``,
    ``"mixed"`` (every second case inverted), ``"random"`` (unrelated
    transforms) or ``"none"`` (no CSV).  ``test_cores`` also writes the whole
    test cores into TestSet.

    ``style="multiregeval"`` (Zenodo 4550300): ``HighRes_Splits/WSI/train/<id>_{MI,WB}.tif``
    (train + val + tuning counts), ``WSI/test/<id>_{SHG,BF}.tif``, two
    ``CNN_Training_Crops`` pairs (to be ignored) and, with ``testset``,
    ``Registration_UltimateTesting/RotationOnly_Patches/<id>_<MOD>_{R,T}.tif``
    without metadata.
    """
    counts = dict(PAPER_LIKE_COUNTS if counts is None else counts)
    rng = np.random.default_rng([seed, 3874362])
    all_ids: dict[str, list[str]] = {}
    start = 0
    for split in ("train", "val", "tuning", "test"):
        all_ids[split] = _ids(counts.get(split, 0), start)
        start += counts.get(split, 0)
    cores = {i: fake_core(core_size, seed * 1000 + n) for n, i in enumerate(sum(all_ids.values(), []))}
    truths: dict[str, np.ndarray] = {}
    if style == "comir":
        top = Path(root) / "BioData"
        folders = {"train": "TrainSet", "val": "Validation1Set", "tuning": "Validation2Set", "test": "TestSet"}
        for split in ("train", "val", "tuning"):
            for core_id in all_ids[split]:
                shg, bf = cores[core_id]
                _tiff(top / folders[split] / f"{core_id}_SHG.tif", shg)
                _tiff(top / folders[split] / f"{core_id}_BF.tif", bf)
        if test_cores or not testset:
            for core_id in all_ids["test"]:
                shg, bf = cores[core_id]
                _tiff(top / "TestSet" / f"{core_id}_SHG.tif", shg)
                _tiff(top / "TestSet" / f"{core_id}_BF.tif", bf)
        if testset:
            origin = ((core_size - patch_size) // 2,) * 2
            rows = [COMIR_HEADER]
            last = patch_size - 1.0
            ref_corners = np.array([[0, 0], [0, last], [last, 0], [last, last]])
            for n, core_id in enumerate(all_ids["test"]):
                truth = _random_truth(rng, patch_size, rotation_deg, translation_px)
                truths[core_id] = truth
                for modality, image in zip(("SHG", "BF"), cores[core_id]):
                    ref, flo = extract_patches(image, origin, truth, patch_size, "linear")
                    names = (
                        (f"R_{core_id}_{modality}.tif", f"T_{core_id}_{modality}.tif")
                        if naming == "prefix"
                        else (f"{core_id}_{modality}_R.tif", f"{core_id}_{modality}_T.tif")
                    )
                    _tiff(top / "TestSet" / names[0], ref)
                    if modality in transformed:
                        _tiff(top / "TestSet" / names[1], flo)
                if metadata == "forward" or (metadata == "mixed" and n % 2 == 0):
                    written = truth
                elif metadata in ("inverse", "mixed"):
                    written = geometry.invert(truth)
                else:
                    written = _random_truth(rng, patch_size, rotation_deg, translation_px)
                trans = geometry.apply(written, ref_corners)
                disp = np.linalg.norm(trans - ref_corners, axis=1).mean()
                rows.append(";".join([f"{core_id}_", *_fmt(ref_corners.ravel()), *_fmt(trans.ravel()), *_fmt([disp])]))
            if metadata != "none":
                target = top / metadata_folder / "metadata.csv"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("\n".join(rows) + "\n")
    elif style == "multiregeval":
        top = Path(root) / "HighRes_Splits"
        for split in ("train", "val", "tuning", "test"):
            names = ("SHG", "BF") if split == "test" else ("MI", "WB")
            folder = top / "WSI" / ("test" if split == "test" else "train")
            for core_id in all_ids[split]:
                for name, image in zip(names, cores[core_id]):
                    _tiff(folder / f"{core_id}_{name}.tif", image)
        for core_id in all_ids["train"][:2]:
            for name, image in zip(("SHG", "BF"), cores[core_id]):
                _tiff(top / "CNN_Training_Crops" / f"{core_id}_{name}.tif", image[:48, :48])
        if testset:
            origin = ((core_size - patch_size) // 2,) * 2
            for core_id in all_ids["test"]:
                truth = _random_truth(rng, patch_size, rotation_deg, 0.0)
                truths[core_id] = truth
                for name, image in zip(("SHG", "BF"), cores[core_id]):
                    ref, flo = extract_patches(image, origin, truth, patch_size, "linear")
                    folder = top / "Registration_UltimateTesting" / "RotationOnly_Patches"
                    _tiff(folder / f"{core_id}_{name}_R.tif", ref)
                    _tiff(folder / f"{core_id}_{name}_T.tif", flo)
    else:
        raise ValueError(f"style must be 'comir' or 'multiregeval', got {style!r}")
    return FakeRecord(top, all_ids, {"comir" if style == "comir" else "rotationonly": truths})


def fake_zurich_bands(height: int, width: int, seed: int) -> dict[str, np.ndarray]:
    """A vegetated aerial scene: B, G, R, NIR as 12-bit uint16 (H x W).

    Built from a brightness field ``u`` (roads, roofs, bare soil) and an
    independent vegetation field ``v``: the visible bands follow ``u`` (and
    darken a little on vegetation), so they correlate strongly with each other;
    NIR is dominated by ``v`` (vegetation reflects near-infrared), so it is the
    band least correlated with the others, as in real summer scenes.
    """
    rng = np.random.default_rng([seed, 5914759])
    u = _smooth(rng, (height, width), (1.0, 3.0, 8.0))
    v = _smooth(rng, (height, width), (2.0, 6.0))
    noise = lambda: rng.normal(0, 25, (height, width))  # noqa: E731 - sensor noise per band
    bands = {
        "B": 300 + 1400 * u - 200 * v + noise(),
        "G": 350 + 1500 * u - 100 * v + noise(),
        "R": 300 + 1700 * u - 300 * v + noise(),
        "NIR": 500 + 500 * u + 2600 * v + noise(),
    }
    return {k: np.clip(np.round(b), 0, 4095).astype(np.uint16) for k, b in bands.items()}


def build_fake_zurich(
    root: Path,
    *,
    ids: Iterable[int] = range(1, 21),
    size_range: tuple[int, int] = (80, 112),
    channel_order: Sequence[str] = ("B", "G", "R", "NIR"),
    groundtruth: bool = True,
    seed: int = 0,
) -> FakeRecord:
    """A fake Zurich record: ``Zurich_dataset_v1.0/images_tif/zh<N>.tif`` (+ ``groundtruth/``).

    Each image is 4-channel uint16 with 12-bit values stored in
    ``channel_order`` (the default is what the authors' code reads), of a
    random size in ``size_range`` (images differ in size, as in the record).
    ``sources`` holds the bands of every image as ``"zh<N>/<band>"``.
    """
    top = Path(root) / "Zurich_dataset_v1.0"
    rng = np.random.default_rng([seed, 20])
    names = []
    sources = {}
    for n in ids:
        height, width = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
        bands = fake_zurich_bands(height, width, seed * 100 + n)
        _tiff(top / "images_tif" / f"zh{n}.tif", np.stack([bands[c] for c in channel_order], axis=-1))
        if groundtruth:
            _tiff(top / "groundtruth" / f"zh{n}_GT.tif", np.zeros((height, width, 3), np.uint8))
        names.append(f"zh{n}")
        sources.update({f"zh{n}/{band}": data for band, data in bands.items()})
    return FakeRecord(top, {"images": names}, {}, sources)


def _multiregeval_truth(rng: np.random.Generator, size: int, level: int, step_deg: float, step_px: float) -> np.ndarray:
    """MultiRegEval's tform_centred: p -> R (p + t - c) + c, c = size / 2 - 0.5 (floating -> reference)."""
    angle = np.radians(rng.choice([-1, 1]) * rng.uniform((level - 1) * step_deg, level * step_deg))
    shift = rng.choice([-1, 1], 2) * rng.uniform((level - 1) * step_px, level * step_px, 2)
    centre = np.array([size / 2 - 0.5, size / 2 - 0.5])
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    return np.hstack([rotation, (rotation @ (shift - centre) + centre)[:, None]])


def _info_row(name: str, truth: np.ndarray, size: int) -> str:
    coords_ref = np.array([[0, 0], [0, size], [size, size], [size, 0]], float)
    coords_trans = geometry.apply(truth, coords_ref)
    disp = np.linalg.norm(coords_trans - coords_ref, axis=1).mean()
    angle = float(geometry.rotation_angle(truth))
    return ",".join(
        [name, "", "", *_fmt(coords_ref.ravel()), *_fmt(coords_trans.ravel()), *[""] * 8,
         *_fmt([disp, disp / size, truth[0, 2], truth[1, 2], np.degrees(angle), angle]), "", ""]
    )  # fmt: skip


def build_fake_multiregeval_eval(
    root: Path,
    *,
    eliceiri_ids: Sequence[str] | None = None,
    zurich_fold: int | None = 1,
    zurich_ids: Sequence[str] = ("zh7_01_01", "zh9_01_02"),
    levels: int = 2,
    core_size: int = 112,
    patch_size: int = 48,
    step_deg: float = 5.0,
    step_px: float = 3.0,
    seed: int = 0,
) -> FakeRecord:
    """A fake MultiRegEval evaluation record (Zenodo 5557568) under ``root/Datasets``.

    ``Eliceiri_patches/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.tif`` (A = SHG,
    B = BF) and, when ``zurich_fold`` is set,
    ``Zurich_patches/fold<f>/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.png`` (A =
    NIR, B = colour stored as B, G, R like MultiRegEval's PNGs), each level with
    a comma-separated ``info_test.csv`` as MultiRegEval writes it (index
    ``Filename``, corners (0,0), (0,w), (w,w), (w,0), empty Recover columns).
    Truth names: ``multiregeval_eliceiri`` and ``multiregeval_zurich_fold<f>``,
    keyed ``tlevel<k>/<id>``; ``sources["<id>/RGB"]`` holds the colour patch in
    R, G, B order for checking the channel reversal.
    """
    top = Path(root) / "Datasets"
    rng = np.random.default_rng([seed, 5557568])
    eliceiri_ids = list(_ids(3, 200) if eliceiri_ids is None else eliceiri_ids)
    truths: dict[str, dict[str, np.ndarray]] = {"multiregeval_eliceiri": {}}
    sources: dict[str, np.ndarray] = {}
    origin = ((core_size - patch_size) // 2,) * 2
    for level in range(1, levels + 1):
        folder = top / "Eliceiri_patches" / f"patch_tlevel{level}"
        rows = [MULTIREGEVAL_HEADER]
        for n, core_id in enumerate(eliceiri_ids):
            truth = _multiregeval_truth(rng, patch_size, level, step_deg, step_px)
            truths["multiregeval_eliceiri"][f"tlevel{level}/{core_id}"] = truth
            for slot, image in zip("AB", fake_core(core_size, 7000 + n)):
                ref, flo = extract_patches(image, origin, truth, patch_size, "linear")
                _tiff(folder / slot / "test" / f"{core_id}_R.tif", ref)
                _tiff(folder / slot / "test" / f"{core_id}_T.tif", flo)
            rows.append(_info_row(core_id, truth, patch_size))
        (folder / "info_test.csv").write_text("\n".join(rows) + "\n")
    if zurich_fold is not None:
        name = f"multiregeval_zurich_fold{zurich_fold}"
        truths[name] = {}
        for level in range(1, levels + 1):
            folder = top / "Zurich_patches" / f"fold{zurich_fold}" / f"patch_tlevel{level}"
            rows = [MULTIREGEVAL_HEADER]
            for n, patch_id in enumerate(zurich_ids):
                bands = fake_zurich_bands(core_size, core_size, 9000 + n)
                as8 = {k: (255 * (b.astype(np.float32) / 4095)).astype(np.uint8) for k, b in bands.items()}
                bgr = np.stack([as8["B"], as8["G"], as8["R"]], axis=-1)
                truth = _multiregeval_truth(rng, patch_size, level, step_deg, step_px)
                truths[name][f"tlevel{level}/{patch_id}"] = truth
                for slot, image in (("A", as8["NIR"]), ("B", bgr)):
                    ref, flo = extract_patches(image, origin, truth, patch_size, "linear")
                    write_png(folder / slot / "test" / f"{patch_id}_R.png", ref)
                    write_png(folder / slot / "test" / f"{patch_id}_T.png", flo)
                    if slot == "B":
                        sources[f"tlevel{level}/{patch_id}/RGB"] = np.ascontiguousarray(ref[..., ::-1])
                rows.append(_info_row(patch_id, truth, patch_size))
            (folder / "info_test.csv").write_text("\n".join(rows) + "\n")
    return FakeRecord(top, {"test": eliceiri_ids}, truths, sources)


def zip_record(folder: Path, zip_path: Path) -> Path:
    """Zip a record folder; entries start with the folder's own name (as Zenodo archives do)."""
    folder, zip_path = Path(folder), Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
    return zip_path

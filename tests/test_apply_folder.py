"""The apply stage over a folder of unaligned pairs (comir.apply.folder) and its configuration."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml

from comir import geometry
from comir.apply.folder import batch_of, register_batch
from comir.apply.outputs import DEFORMABLE_OUTPUTS
from comir.apply.results import (
    DEFORMABLE_FAILED_FLAG,
    LOW_CONFIDENCE_FLAG,
    LOW_QUALITY_FLAG,
    export_testset_pairs,
    read_truth,
    summarise,
    with_errors,
)
from comir.config.schema import ConfigError
from comir.config.validate import validate_config
from comir.deformation.affine import affine_to_field
from comir.deformation.sitk import read_field
from comir.geometry import MATRIX_KEYS
from comir.io import InputError
from comir.network.checkpoint import save_checkpoint
from comir.network.model import Tiramisu, TiramisuConfig
from helpers.registration_cases import make_pair, texture

ROOT = Path(__file__).resolve().parents[1]
# The FFT search over +-45 deg: every pair's rotation (up to 40 deg, MOVES) and the identity inside, a quarter
# of the angles of the whole circle.
SETTINGS = {"reference": "fine", "method": "fft_search", "params": {"score": "ncc", "angle_range_deg": 45}}


def save_twin(path: Path, seed: int) -> Path:
    """Two identical single-channel networks: the same content gives the same CoMIR (known answers)."""
    torch.manual_seed(seed)
    small = dict(in_channels=1, out_channels=1, init_filters=6, down_blocks=(2,), bottleneck=2, dropout=0.0)
    twins = {slot: Tiramisu(TiramisuConfig(**small)) for slot in ("A", "B")}
    twins["B"].load_state_dict(twins["A"].state_dict())
    modalities = {"A": {"name": "fine", "channels": 1}, "B": {"name": "other", "channels": 1}}
    save_checkpoint(path, twins, {"modalities": modalities})
    return path


@pytest.fixture(scope="module")
def twin_model(tmp_path_factory):
    """A known-answer model (:func:`save_twin`)."""
    return save_twin(tmp_path_factory.mktemp("twin") / "comir.pt", seed=3)


def write_folder(root: Path, moves: dict[str, tuple[float, tuple[float, float]]]) -> pd.DataFrame:
    """Pairs ``root/fine/<id>.tif`` + ``root/other/<id>.tif`` of known rigid moves; returns the truth."""
    rows = []
    for index, (pair_id, (angle, shift)) in enumerate(moves.items()):
        reference, floating, truth = make_pair(angle, shift, seed=index)
        for folder, image in (("fine", reference), ("other", floating)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / folder / f"{pair_id}.tif", image)
        rows.append({"id": pair_id, **dict(zip(MATRIX_KEYS, truth.ravel()))})
    return pd.DataFrame(rows)


MOVES = {"p1": (10.0, (5.0, -3.0)), "p2": (-25.0, (-8.0, 6.0)), "p3": (40.0, (2.0, 9.0))}


def test_a_folder_is_registered_in_batches_with_outputs_per_pair(tmp_path, twin_model):
    truth = write_folder(tmp_path / "pairs", MOVES)
    tables = [
        register_batch(twin_model, tmp_path / "pairs", tmp_path / "out", SETTINGS, batches=2, batch=b)
        for b in range(2)
    ]
    assert [list(t["id"]) for t in tables] == [["p1", "p3"], ["p2"]]
    summary = summarise(pd.concat(tables), min_quality=None)
    assert (summary["status"] == "ok").all() and (summary["flag"] == "").all()
    for pair_id in MOVES:
        written = {p.name for p in (tmp_path / "out" / pair_id).iterdir()}
        assert written >= {"transform.csv", "warped.tif", "overlay.png"}
    cases = with_errors(summary, truth, "fft")
    assert (cases["error_px"] < 1.0).all(), cases[["case", "error_px"]]
    assert (cases["direction"] == "B_to_A").all() and (cases["method"] == "fft").all()
    flagged = summarise(summary.drop(columns="flag"), min_quality=1.01)
    assert (flagged["flag"] == LOW_QUALITY_FLAG).all()
    assert summary["confidence"].isna().all()  # the model has no calibration: nothing judged
    rejected = summary.drop(columns="flag").assign(status="failed", message="low confidence: 0.1 below 0.5")
    assert (summarise(rejected, min_quality=None)["flag"] == LOW_CONFIDENCE_FLAG).all()


def test_an_ensembles_model_files_register_a_folder_together_with_the_cascade_only(tmp_path, twin_model):
    other = save_twin(tmp_path / "other.pt", seed=5)
    truth = write_folder(tmp_path / "pairs", {"p1": MOVES["p1"]})
    with pytest.raises(InputError, match="2 models .* not 'fft_search'"):
        register_batch([twin_model, other], tmp_path / "pairs", tmp_path / "out", SETTINGS)
    assert not (tmp_path / "out").exists()
    settings = {"reference": "fine", "method": "cascade", "params": {"global_search": None},
                "inference": {"engine": "torch"}}  # fmt: skip
    rows = register_batch([twin_model, other], tmp_path / "pairs", tmp_path / "out", settings)
    assert rows.loc[0, "status"] == "ok" and "sift@2" in rows.loc[0, "message"], rows.loc[0, "message"]
    assert rows["confidence"].isna().all()  # an ensemble is not judged
    assert (with_errors(summarise(rows, None), truth, "ensemble")["error_px"] < 1.0).all()
    assert tifffile.imread(tmp_path / "out" / "p1" / "comir_reference.tif").shape == (256, 256, 2)


def test_a_pair_without_common_structure_is_a_failed_row_with_a_message(tmp_path, twin_model):
    write_folder(tmp_path / "pairs", {"good": MOVES["p1"]})
    tifffile.imwrite(tmp_path / "pairs" / "fine" / "blank.tif", np.zeros((256, 256), np.float32))
    tifffile.imwrite(tmp_path / "pairs" / "other" / "blank.tif", texture(256, 7))
    tifffile.imwrite(tmp_path / "pairs" / "fine" / "unrelated.tif", texture(256, 8))
    tifffile.imwrite(tmp_path / "pairs" / "other" / "unrelated.tif", texture(256, 9))
    settings = {"reference": "fine", "method": "cascade", "params": {"min_quality": 0.8}}
    rows = register_batch(twin_model, tmp_path / "pairs", tmp_path / "out", settings).set_index("id")
    assert rows.loc["good", "status"] == "ok"
    for pair_id in ("blank", "unrelated"):
        assert rows.loc[pair_id, "status"] == "failed" and rows.loc[pair_id, "message"]
        assert not (tmp_path / "out" / pair_id / "warped.tif").exists()  # no warped image of a failure
    assert "min_quality" in rows.loc["unrelated", "message"]


# The register_pairs table's columns before deformable stages existed: a job without one keeps them.
RIGID_COLUMNS = [
    "id", "reference", "floating", "direction", "reference_modality", "floating_modality", "width", "height",
    "status", "metric", "confidence", "seconds", *(f"est_{k}" for k in MATRIX_KEYS), "angle_deg", "scale",
    "reference_valid", "floating_valid", "peak_memory_mb", "message",
]  # fmt: skip
RIGID_FILES = {"transform.csv", "transform.tfm", "warped.tif", "overlay.png", "comir_reference.tif",
               "comir_floating.tif"}  # fmt: skip
DEFORMABLE_COLUMNS = ["deformable_method", "deformable_status", "deformable_seconds", "folded_fraction",
                      "jacobian_min", "jacobian_max"]  # fmt: skip


def test_a_deformable_stage_refines_every_pair_and_off_leaves_the_outputs_as_before(tmp_path, twin_model):
    """deformable: {method: demons}: per pair its files and columns; without it, the table and files of before."""
    truth = write_folder(tmp_path / "pairs", {"p1": MOVES["p1"]})
    plain = register_batch(twin_model, tmp_path / "pairs", tmp_path / "plain", SETTINGS)
    assert list(plain.columns) == RIGID_COLUMNS
    assert {p.name for p in (tmp_path / "plain" / "p1").iterdir()} == RIGID_FILES
    assert list(pd.read_csv(tmp_path / "plain" / "p1" / "transform.csv").columns) == [
        "reference", "floating", "method", "status", "metric", "confidence", "seconds", *MATRIX_KEYS, "angle_deg",
        "reference_valid", "floating_valid", "peak_memory_mb", "message",
    ]  # fmt: skip
    settings = {**SETTINGS, "deformable": {"method": "demons", "params": {"iterations": 20}}}
    rows = register_batch(twin_model, tmp_path / "pairs", tmp_path / "out", settings)
    assert list(rows.columns) == [*RIGID_COLUMNS[:-1], *DEFORMABLE_COLUMNS, "message"]
    row = rows.iloc[0]
    assert row["status"] == "ok" and row["deformable_status"] == "ok" and row["folded_fraction"] == 0
    assert row["jacobian_min"] > 0 and row["deformable_seconds"] > 0 and "demons: SimpleITK" in row["message"]
    est = [f"est_{k}" for k in MATRIX_KEYS]
    np.testing.assert_array_equal(rows[est].to_numpy(), plain[est].to_numpy())  # the rigid result as without
    written = {p.name for p in (tmp_path / "out" / "p1").iterdir()}
    assert written == RIGID_FILES | set(DEFORMABLE_OUTPUTS)
    field = read_field(tmp_path / "out" / "p1" / "deformable_field.h5")  # a rigid pair: the field of its truth
    matrix = truth.loc[0, list(MATRIX_KEYS)].to_numpy(float).reshape(2, 3)
    error = np.hypot(*(field - affine_to_field(matrix, field.shape))[32:-32, 32:-32].transpose(2, 0, 1))
    assert np.median(error) < 0.5
    summary = summarise(rows, min_quality=None)
    assert summary.loc[0, "flag"] == "" and list(summary.columns[-7:]) == [*DEFORMABLE_COLUMNS, "message"]
    failed = summarise(rows.assign(deformable_status="failed"), min_quality=None)
    assert failed.loc[0, "flag"] == DEFORMABLE_FAILED_FLAG


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "other" / "p2.tif").unlink(), "missing partner.*p2"),
        (lambda root: (root / "fine" / "p3.tif").write_bytes(b"not a tiff"), "p3.tif"),
        (lambda root: tifffile.imwrite(root / "other" / "p3.tif", np.zeros((64, 64, 3), np.uint8)), "p3.tif has 3"),
    ],
)
def test_bad_input_stops_the_batch_before_any_work(tmp_path, twin_model, damage, message):
    write_folder(tmp_path / "pairs", MOVES)
    damage(tmp_path / "pairs")
    with pytest.raises(InputError, match=message):
        register_batch(twin_model, tmp_path / "pairs", tmp_path / "out", SETTINGS)
    assert not (tmp_path / "out").exists()  # p1, registrable, was not registered either


def test_batches_partition_the_sorted_pairs():
    pairs = pd.DataFrame({"id": [f"p{i}" for i in (3, 1, 4, 0, 2)]})
    parts = [list(batch_of(pairs, 3, b)["id"]) for b in range(3)]
    assert parts == [["p0", "p3"], ["p1", "p4"], ["p2"]]
    with pytest.raises(ValueError, match="batch 3"):
        batch_of(pairs, 3, 3)


def test_truth_files_are_checked_and_errors_are_corner_errors(tmp_path):
    bad = tmp_path / "truth.csv"
    pd.DataFrame({"id": ["a"], "a11": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="lacks column"):
        read_truth(bad)
    with pytest.raises(InputError, match="not found"):
        read_truth(tmp_path / "none.csv")
    truth_matrix = geometry.rigid_matrix(0.1, 3.0, 4.0)
    truth = pd.DataFrame([{"id": "a", **dict(zip(MATRIX_KEYS, truth_matrix.ravel()))}])
    estimate = geometry.compose(geometry.rigid_matrix(0.0, 2.0, 0.0), truth_matrix)  # 2 px off everywhere
    summary = pd.DataFrame(
        [{"id": "a", "width": 50, "height": 40, "direction": "B_to_A", "reference_modality": "x",
          "floating_modality": "y", "status": "ok", "metric": 0.9, "seconds": 0.1, "message": "",
          **{f"est_{k}": v for k, v in zip(MATRIX_KEYS, estimate.ravel())}}]
    )  # fmt: skip
    cases = with_errors(summary, truth, "job")
    assert cases.loc[0, "error_px"] == pytest.approx(2.0)
    with pytest.raises(InputError, match="no known transform for pair"):
        with_errors(summary.assign(id="b"), truth, "job")


def test_a_test_set_is_exported_as_pairs_with_its_truth(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for slot in ("A", "B"):
        for role in ("ref", "flo"):
            tifffile.imwrite(images / f"case_0000_{slot}_{role}.tif", np.full((8, 8), ord(slot) + len(role), np.uint8))
    truth = geometry.rigid_matrix(0.2, 1.0, 2.0)
    cases = pd.DataFrame([{"case": "case_0000", "stratum": "small", **{f"true_{k}": v for k, v in
                                                                        zip(MATRIX_KEYS, truth.ravel())}}])  # fmt: skip
    modalities = {"A": {"name": "BF"}, "B": {"name": "SHG"}}
    export_testset_pairs(cases, images, modalities, "B", tmp_path / "pairs", tmp_path / "truth.csv")
    assert tifffile.imread(tmp_path / "pairs" / "SHG" / "case_0000.tif")[0, 0] == ord("B") + 3  # B's reference
    assert tifffile.imread(tmp_path / "pairs" / "BF" / "case_0000.tif")[0, 0] == ord("A") + 3  # A's floating
    read = read_truth(tmp_path / "truth.csv")
    np.testing.assert_allclose(read.loc[0, list(MATRIX_KEYS)].to_numpy(float), truth.ravel())


def tiny_config():
    return yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda job: job["model"].update(file="m.pt"), "either dataset .and variant. or file"),
        (lambda job: job["model"].update(dataset="nope"), "no dataset 'nope'"),
        (lambda job: job["model"].update(variant="nope"), "'nope' is not a variant"),
        (lambda job: job.update(pairs="folder"), "either pairs .a folder. or testset"),
        (lambda job: job.update(testset={"dataset": "tiny", "name": "nope"}), "no test set 'nope'"),
        (lambda job: job.update(truth="t.csv"), "brings its own true transforms"),
        (lambda job: job.update(method="alpha_amd", params={}), "rigid transforms only"),
        (lambda job: job.update(params={"keypoints": {"ratio": 2}}), "ratio must be in"),
        (lambda job: job.update(inference={"tiles": 5}), "unknown key"),
        (lambda job: job.update(batch=3), "unknown key"),
        (lambda job: job.update(transform="projective"), "projective"),
        (lambda job: job.update(pixel_size={"A": 1.0}), "'B' is a required property"),
        (lambda job: job.update(deformable={"method": "bspline", "params": {"spacing": 8}}), "unknown parameter"),
        (lambda job: job.update(deformable={"method": "affine"}), "'affine' is not one of"),
    ],
)
def test_bad_apply_jobs_are_rejected_at_parse_time(change, message):
    config = tiny_config()
    job = copy.deepcopy(config["apply"]["similarity"])
    change(job)
    config["apply"] = {"broken": job}
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_the_shipped_apply_jobs_validate():
    config = validate_config(tiny_config())
    assert config["apply"]["rigid"]["transform"] == "rigid" and config["apply"]["rigid"]["batches"] == 2


def write_wedge_folder(root: Path) -> pd.DataFrame:
    """One pair of ``MOVES["p2"]`` whose images share a zero-filled corner (an earlier resampling's border)."""
    truth = write_folder(root, {"wedge": MOVES["p2"]})
    for folder in ("fine", "other"):
        image = tifffile.imread(root / folder / "wedge.tif")
        yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
        image[(xx + yy) < 0.8 * image.shape[0]] = 0
        tifffile.imwrite(root / folder / "wedge.tif", image)
    return truth


@pytest.mark.parametrize("masks", ["auto", "files"])
def test_masks_keep_a_shared_zero_border_from_deciding_the_match(tmp_path, twin_model, masks):
    truth = write_wedge_folder(tmp_path / "pairs")
    if masks == "files":  # the same masks as files, for the reference modality only (the other: auto)
        (tmp_path / "masks" / "fine").mkdir(parents=True)
        valid = tifffile.imread(tmp_path / "pairs" / "fine" / "wedge.tif") != 0
        tifffile.imwrite(tmp_path / "masks" / "fine" / "wedge.tif", valid.astype(np.uint8))
        masks = str(tmp_path / "masks")
    settings = {**SETTINGS, "masks": masks}
    rows = register_batch(twin_model, tmp_path / "pairs", tmp_path / "out", settings)
    cases = with_errors(summarise(rows, None), truth, "fft")
    assert (rows["status"] == "ok").all() and (cases["error_px"] < 1.0).all(), rows["message"].tolist()
    assert 0.6 < rows.loc[0, "reference_valid"] < 0.7 and 0.6 < rows.loc[0, "floating_valid"] < 0.7
    written = {p.name for p in (tmp_path / "out" / "wedge").iterdir()}
    assert {"mask_reference.png", "mask_floating.png"} <= written
    unmasked = register_batch(twin_model, tmp_path / "pairs", tmp_path / "plain", {**SETTINGS, "masks": "none"})
    error = with_errors(summarise(unmasked, None), truth, "fft")["error_px"]
    assert (unmasked["reference_valid"] == 1.0).all() and (error > 20).all()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (lambda root: None, "mask folder not found"),
        (lambda root: (root / "other").mkdir(parents=True), r"no mask for p1 in .*other"),
        (lambda root: (root / "fine").mkdir(parents=True) or tifffile.imwrite(
            root / "fine" / "p1.tif", np.ones((8, 8), np.uint8)), r"mask .*p1.tif is 8x8 px but its image"),
    ],
)
def test_bad_mask_folders_stop_the_batch_before_any_work(tmp_path, twin_model, layout, message):
    write_folder(tmp_path / "pairs", {"p1": MOVES["p1"]})
    layout(tmp_path / "masks")
    with pytest.raises(InputError, match=message):
        register_batch(twin_model, tmp_path / "pairs", tmp_path / "out", {**SETTINGS, "masks": str(tmp_path / "masks")})
    assert not (tmp_path / "out").exists()

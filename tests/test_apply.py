"""A trained model applied to one pair: python -m comir register (comir.apply)."""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import tifffile
import torch

from comir import geometry
from comir.__main__ import main
from comir.apply.model import APPLY_DEFAULT_PARAMS, ModelEnsemble, TrainedModel, write_calibrated_model
from comir.apply.outputs import DEFORMABLE_OUTPUTS, itk_transform_text, warp_to_reference, write_outputs
from comir.apply.pair import field_on_original_grids, judging_calibration, register_pair
from comir.calibration import calibration_key, fit_calibration
from comir.deformation.affine import affine_to_field
from comir.deformation.sitk import sitk_to_field
from comir.deformation.warp import warp_image
from comir.geometry import MATRIX_KEYS
from comir.imaging.resampling import Resampling, to_original_grids
from comir.io import InputError
from comir.network.checkpoint import save_checkpoint
from comir.network.model import Tiramisu, TiramisuConfig
from comir.register.confidence import evidence
from comir.register.deformable.bspline import bspline_register
from comir.register.deformable.stage import DEFORMABLE_METHODS
from helpers.registration_cases import deformed_pair, make_pair

# The FFT search with NCC over +-20 deg: every test pair's rotation (up to 15 deg) inside, a second per pair
# instead of several over all angles.
FFT_NCC = {"score": "ncc", "angle_range_deg": 20}
MODALITIES = {"A": {"name": "stain", "channels": 3, "log1p": False}, "B": {"name": "fibres", "channels": 1}}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An untrained two-network model file in the train rule's format."""
    torch.manual_seed(0)
    small = dict(out_channels=1, init_filters=4, down_blocks=(1,), bottleneck=1, dropout=0.0)
    models = {slot: Tiramisu(TiramisuConfig(in_channels=m["channels"], **small)) for slot, m in MODALITIES.items()}
    path = tmp_path_factory.mktemp("model") / "comir.pt"
    save_checkpoint(path, models, {"modalities": MODALITIES})
    return path


def test_warp_to_reference_keeps_dtype_and_channels_and_moves_pixels():
    rng = np.random.default_rng(0)
    floating = rng.integers(0, 60000, (40, 50, 3), dtype=np.uint16)
    matrix = geometry.rigid_matrix(0.0, 7.0, -3.0)  # floating (x, y) -> reference (x + 7, y - 3)
    warped = warp_to_reference(floating, matrix, (45, 60))
    assert warped.shape == (45, 60, 3) and warped.dtype == np.uint16
    np.testing.assert_array_equal(warped[0:37, 7:57], floating[3:40, 0:50])
    assert (warped[:, :7] == 0).all()  # outside the floating image
    odd = warp_to_reference(floating[..., 0].astype(np.int32), matrix, (45, 60))
    assert odd.dtype == np.int32 and odd[10, 20] == floating[13, 13, 0]


def test_itk_transform_maps_reference_points_to_floating_points(tmp_path):
    matrix = geometry.rigid_matrix(math.radians(25.0), 12.0, -4.0, center=(30.0, 20.0))
    path = tmp_path / "t.tfm"
    path.write_text(itk_transform_text(matrix))
    transform = sitk.ReadTransform(str(path))
    reference_points = np.array([[0.0, 0.0], [63.0, 10.0], [5.5, 47.25]])
    expected = geometry.apply(geometry.invert(matrix), reference_points)
    got = np.array([transform.TransformPoint(tuple(p)) for p in reference_points])
    np.testing.assert_allclose(got, expected, atol=1e-9)


def write_pair(folder, rgb_channels=3):
    rng = np.random.default_rng(1)
    reference = folder / "ref.tif"
    floating = folder / "flo.tif"
    tifffile.imwrite(reference, rng.integers(0, 255, (64, 64, rgb_channels), dtype=np.uint8))
    tifffile.imwrite(floating, rng.integers(0, 255, (64, 64), dtype=np.uint8))
    return reference, floating


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reference_channels": 4}, "ref.tif has 4 channel"),
        ({"model": "missing.pt"}, "model file not found"),
        ({"model": "ref.tif"}, "not a CoMIR model file"),
        ({"modality": "SHG"}, "'SHG' is not one of the model's"),
        ({"floating": "nothing.tif"}, "nothing.tif"),
        ({"params": "{keypoints: {preset: fiji}}"}, "preset"),
    ],
)
def test_bad_input_stops_before_any_work_and_writes_nothing(tmp_path, model_file, capsys, change, message):
    reference, floating = write_pair(tmp_path, change.get("reference_channels", 3))
    model = tmp_path / change["model"] if "model" in change else model_file
    args = ["register", "--model", str(model), "--reference", str(reference), "--out", str(tmp_path / "out"),
            "--floating", str(tmp_path / change.get("floating", "flo.tif")),
            "--reference-modality", change.get("modality", "stain"), "--params", change.get("params", "")]  # fmt: skip
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_never_overwritten(tmp_path, model_file, capsys):
    reference, floating = write_pair(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "warped.tif").write_bytes(b"keep me")
    args = ["register", "--model", str(model_file), "--reference", str(reference), "--floating", str(floating),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    assert "already holds warped.tif" in capsys.readouterr().err
    assert (out / "warped.tif").read_bytes() == b"keep me" and sorted(p.name for p in out.iterdir()) == ["warped.tif"]


def test_the_command_takes_mask_files_and_checks_them_before_any_work(tmp_path, model_file, capsys):
    reference, floating = write_pair(tmp_path)
    mask = np.ones((64, 64), np.uint8)
    mask[:, :16] = 0
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    tifffile.imwrite(tmp_path / "small.tif", mask[:32])
    args = ["register", "--model", str(model_file), "--reference", str(reference), "--floating", str(floating),
            "--method", "fft_search", "--masks", "none"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "bad"), "--floating-mask", str(tmp_path / "small.tif")]) == 2
    assert "small.tif is 64x32 px but its image" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    main([*args, "--out", str(tmp_path / "out"), "--reference-mask", str(tmp_path / "mask.tif")])
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert "mask_reference.png" in written and "mask_floating.png" not in written  # --masks none: no auto mask
    saved = cv2.imread(str(tmp_path / "out" / "mask_reference.png"), cv2.IMREAD_UNCHANGED)
    assert not saved[:, :16].any() and saved[:, 16 + 4 :].all()  # the file's mask, shrunk by the 4 px margin


@pytest.mark.slow
def test_the_command_and_the_register_rule_agree_on_a_pair(tiny_run, tmp_path):
    """The CLI, from the tiny run's model and a test patch pair, gives the cascade rule's transform."""
    images = tiny_run / "results" / "tiny" / "testsets" / "main" / "images"
    rule = pd.read_csv(tiny_run / "results" / "tiny" / "mse" / "registration" / "main" / "cascade_B_to_A.csv")
    case = rule.iloc[0]
    reference, floating = images / f"{case['case']}_A_ref.tif", images / f"{case['case']}_B_flo.tif"
    out = tmp_path / "pair"
    # The tiny configuration's cascade parameters (.test/config.yaml); a subprocess, as users run it.
    command = [sys.executable, "-m", "comir", "register", "--model", str(tiny_run / "results/tiny/mse/model/comir.pt"),
               "--reference", str(reference), "--floating", str(floating), "--reference-modality", "A",
               "--out", str(out),
               "--params", "{keypoints: &k {max_error_px: 4, min_octave_px: 16}, original_keypoints: *k}"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == (0 if case["status"] == "ok" else 1), run.stderr
    row = pd.read_csv(out / "transform.csv").iloc[0]
    assert row["status"] == case["status"] and row["message"] == case["message"]
    got = np.array([row[k] for k in MATRIX_KEYS]).reshape(2, 3)
    expected = np.array([case[f"est_{k}"] for k in MATRIX_KEYS]).reshape(2, 3)
    np.testing.assert_allclose(got, expected, atol=1e-3)  # CoMIRs equal to float rounding (tiles vs one pass)
    stored = tifffile.imread(floating)
    if row["status"] == "ok":
        warped = tifffile.imread(out / "warped.tif")
        assert warped.shape[:2] == tifffile.imread(reference).shape[:2] and warped.dtype == stored.dtype
        assert (out / "overlay.png").stat().st_size > 1000 and (out / "transform.tfm").exists()
    assert tifffile.imread(out / "comir_reference.tif").shape[:2] == tifffile.imread(reference).shape[:2]


TWIN_MODALITIES = {"A": {"name": "fine", "channels": 1}, "B": {"name": "coarse", "channels": 1}}


def save_twin(path, seed, out_channels=1, modalities=TWIN_MODALITIES):
    """Two identical single-channel networks: the same content gives the same CoMIR, a known-answer model."""
    torch.manual_seed(seed)
    small = dict(in_channels=1, out_channels=out_channels, init_filters=6, down_blocks=(2,), bottleneck=2, dropout=0.0)
    network = Tiramisu(TiramisuConfig(**small))
    twins = {"A": network, "B": Tiramisu(TiramisuConfig(**small))}
    twins["B"].load_state_dict(network.state_dict())
    save_checkpoint(path, twins, {"modalities": modalities})
    return path


@pytest.fixture(scope="module")
def twin_model_file(tmp_path_factory):
    """A known-answer model (:func:`save_twin`)."""
    return save_twin(tmp_path_factory.mktemp("twin") / "comir.pt", seed=3)


@pytest.fixture(scope="module")
def other_twin_model_file(tmp_path_factory):
    """Another known-answer model of the same modalities (other weights): an ensemble with the first."""
    return save_twin(tmp_path_factory.mktemp("twin") / "other.pt", seed=5)


def test_resampling_maps_pixel_centres_like_cv2_resize():
    image = np.zeros((1, 40, 60), np.float32)
    image[0, 10:12, 20:22] = 1.0  # a 2x2 square centred at (20.5, 10.5)
    resampling = Resampling.between(image.shape[1:], pixel_size=1.0, working_pixel_size=2.0)
    assert resampling.working_shape == (20, 30) and not resampling.identity
    small = resampling.apply(image)
    assert small.shape == (1, 20, 30)
    centre = geometry.apply(resampling.matrix, np.array([[20.5, 10.5]]))[0]
    np.testing.assert_allclose(centre, [10.0, 5.0])
    assert small[0, 5, 10] == pytest.approx(1.0)  # area averaging of the square's four pixels
    back = geometry.apply(geometry.invert(resampling.matrix), centre[None])[0]
    np.testing.assert_allclose(back, [20.5, 10.5])


def test_transforms_between_working_grids_are_reported_in_the_original_grids():
    fine = Resampling((100, 80), (100, 80))
    coarse = Resampling((50, 40), (100, 80))  # a floating image at half the resolution
    truth = geometry.rigid_matrix(math.radians(10.0), 4.0, -2.0, (40.0, 50.0))  # floating -> reference (original px)
    working = geometry.compose(truth, geometry.invert(coarse.matrix))  # what a registration of the working images finds
    np.testing.assert_allclose(to_original_grids(working, fine, coarse), geometry.compose(truth, np.eye(2, 3)))
    points = np.array([[0.0, 0.0], [39.0, 49.0]])  # floating pixels
    np.testing.assert_allclose(
        geometry.apply(to_original_grids(working, fine, coarse), points), geometry.apply(truth, points)
    )
    # A field between the working grids is carried the same way: the affine field of the working matrix
    # on a reference at half its resolution is the affine field of the matrix between the original grids.
    half = Resampling((100, 80), (50, 40))
    carried = field_on_original_grids(affine_to_field(working, half.working_shape), half, coarse)
    expected = affine_to_field(to_original_grids(working, half, coarse), (100, 80))
    np.testing.assert_allclose(carried[2:-2, 2:-2], expected[2:-2, 2:-2], atol=1e-3)  # edges: nearest values
    assert field_on_original_grids(expected, fine, fine) is expected  # identities: the field as it is


def test_a_pair_at_two_pixel_sizes_is_registered_and_reported_in_its_own_grids(tmp_path, twin_model_file):
    """Floating image at 2 units/px, reference at 1: resampled, registered, the transform in original pixels."""
    reference, floating, truth = make_pair(12.0, (8.0, -5.0))
    small = cv2.resize(floating, (128, 128), interpolation=cv2.INTER_AREA)
    # Coarse floating px -> fine floating px (the inverse of fine -> coarse) -> reference px.
    truth_small = geometry.compose(truth, geometry.invert(Resampling((256, 256), (128, 128)).matrix))
    paths = {"ref.tif": reference, "flo.tif": small}
    for name, image in paths.items():
        tifffile.imwrite(tmp_path / name, image)
    model = TrainedModel.load(twin_model_file)
    pair = register_pair(
        model, tmp_path / "ref.tif", tmp_path / "flo.tif", "fine", "fft_search", FFT_NCC,
        pixel_sizes={"fine": 1.0, "coarse": 2.0},
    )  # fmt: skip
    assert pair.result.ok, pair.result.message
    assert pair.comirs[1].shape[1:] == (256, 256)  # the CoMIRs at the working (reference) resolution
    assert float(geometry.corner_error(pair.result.matrix, truth_small, 128, 128)) < 1.0
    unscaled = register_pair(model, tmp_path / "ref.tif", tmp_path / "flo.tif", "fine", "fft_search", FFT_NCC)
    assert not unscaled.result.ok or geometry.corner_error(unscaled.result.matrix, truth_small, 128, 128) > 5
    written = write_outputs(tmp_path / "out", pair, tmp_path / "ref.tif", tmp_path / "flo.tif", "fft_search")
    assert {p.name for p in written} == {"transform.csv", "transform.tfm", "warped.tif", "overlay.png",
                                         "comir_reference.tif", "comir_floating.tif"}  # fmt: skip
    warped = tifffile.imread(tmp_path / "out" / "warped.tif")
    inside = warped > 0
    assert warped.shape == reference.shape  # the floating image at half resolution, upsampled:
    assert np.corrcoef(warped[inside], reference[inside])[0, 1] > 0.9


def test_the_cascade_gets_the_originals_on_the_comirs_grid(tmp_path, twin_model_file):
    """Keypoints on the originals (resampled like the network input) carry a 40 deg pair.

    The cascade's only CoMIR stage, a global search confined to 0 deg, gets it wrong.
    """
    reference, floating, truth = make_pair(40.0, (5.0, 3.0))
    small = cv2.resize(floating, (128, 128), interpolation=cv2.INTER_AREA)
    truth_small = geometry.compose(truth, geometry.invert(Resampling((256, 256), (128, 128)).matrix))
    for name, image in {"ref.tif": reference, "flo.tif": small}.items():
        tifffile.imwrite(tmp_path / name, image)
    params = {"global_search": {"angle_range_deg": 0}, "keypoints": None, "original_keypoints": {}}
    pair = register_pair(
        TrainedModel.load(twin_model_file), tmp_path / "ref.tif", tmp_path / "flo.tif", "fine", "cascade", params,
        pixel_sizes={"fine": 1.0, "coarse": 2.0},
    )  # fmt: skip
    assert pair.result.ok and "kept sift-original" in pair.result.message, pair.result.message
    assert float(geometry.corner_error(pair.result.matrix, truth_small, 128, 128)) < 1.0


def test_pixel_sizes_must_name_both_modalities(tmp_path, twin_model_file):
    reference, floating, _ = make_pair(0.0, (0.0, 0.0))
    for name, image in {"ref.tif": reference, "flo.tif": floating}.items():
        tifffile.imwrite(tmp_path / name, image)
    model = TrainedModel.load(twin_model_file)
    with pytest.raises(InputError, match="pixel sizes must be positive numbers for both modalities"):
        register_pair(model, tmp_path / "ref.tif", tmp_path / "flo.tif", "fine", pixel_sizes={"fine": 1.0})
    with pytest.raises(ValueError, match="rigid transforms only"):
        register_pair(model, tmp_path / "ref.tif", tmp_path / "flo.tif", "fine", "alpha_amd", transform="affine")


def test_a_model_file_of_a_newer_format_is_refused_with_the_reason(tmp_path, model_file):
    payload = torch.load(model_file, weights_only=True)
    assert payload["format"] == 1
    payload["format"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(InputError, match="format 99.*update comir"):
        TrainedModel.load(newer)


def _pair_evidence(model, folder, name, reference, floating):
    """The evidence of fft_search with FFT_NCC on the twin model's CoMIRs of one pair (written to ``folder``)."""
    tifffile.imwrite(folder / f"{name}_ref.tif", reference)
    tifffile.imwrite(folder / f"{name}_flo.tif", floating)
    pair = register_pair(model, folder / f"{name}_ref.tif", folder / f"{name}_flo.tif", "fine", "fft_search",
                         FFT_NCC)  # fmt: skip
    return evidence(*(c[0] for c in pair.comirs), pair.comir_matrix)


@pytest.fixture(scope="module")
def calibrated_twin(tmp_path_factory, twin_model_file):
    """The twin model calibrated for fft_search with FFT_NCC on its own evidence.

    Three true pairs (right) and three unrelated pairs (two textures; wrong), false-accept rate 0.
    """
    folder = tmp_path_factory.mktemp("calibration")
    model = TrainedModel.load(twin_model_file)
    rows = [_pair_evidence(model, folder, f"true{seed}", *make_pair(-15.0, (-6.0, 4.0), seed=seed)[:2])
            for seed in (1, 2, 3)]  # fmt: skip
    rows += [_pair_evidence(model, folder, f"unrelated{seed}", make_pair(0.0, (0.0, 0.0), seed=seed)[0],
                            make_pair(0.0, (0.0, 0.0), seed=seed + 9)[1]) for seed in (0, 1, 3)]  # fmt: skip
    calibration = fit_calibration(rows, [True] * 3 + [False] * 3, ["true"] * 3 + ["unrelated"] * 3, 0.0)
    path = folder / "comir-calibrated.pt"
    write_calibrated_model(twin_model_file, {calibration_key("fft_search", FFT_NCC): calibration}, path)
    return path


def test_a_calibrated_model_accepts_a_true_pair_and_rejects_an_unrelated_one(tmp_path, calibrated_twin, capsys):
    reference, floating, truth = make_pair(12.0, (8.0, -5.0))
    # A held-out unrelated pair: two other textures, nothing to register.
    unrelated_images = {"ref2.tif": make_pair(0.0, (0.0, 0.0), seed=2)[0],
                        "other.tif": make_pair(0.0, (0.0, 0.0), seed=11)[1]}  # fmt: skip
    for name, image in {"ref.tif": reference, "flo.tif": floating, **unrelated_images}.items():
        tifffile.imwrite(tmp_path / name, image)
    model = TrainedModel.load(calibrated_twin)
    threshold = model.calibration("fft_search", FFT_NCC).threshold
    true = register_pair(model, tmp_path / "ref.tif", tmp_path / "flo.tif", "fine", "fft_search", FFT_NCC)
    assert true.result.ok and true.confidence >= threshold
    assert float(geometry.corner_error(true.result.matrix, truth, 256, 256)) < 1.0
    unrelated = register_pair(model, tmp_path / "ref2.tif", tmp_path / "other.tif", "fine", "fft_search",
                              FFT_NCC)  # fmt: skip
    assert not unrelated.result.ok and unrelated.result.message.startswith("low confidence")
    assert unrelated.confidence < threshold and np.allclose(unrelated.result.matrix, np.eye(2, 3))
    # Another method (or other parameters) has no calibration: no confidence, no judgement.
    plain = register_pair(model, tmp_path / "ref2.tif", tmp_path / "other.tif", "fine", "fft_search")
    assert math.isnan(plain.confidence)
    # The command: exit 1 for a rejected pair, 0 when the threshold is overridden; the confidence written.
    args = ["register", "--model", str(calibrated_twin), "--reference-modality", "fine", "--method", "fft_search",
            "--params", "{score: ncc, angle_range_deg: 20}"]  # fmt: skip
    unrelated_args = [*args, "--reference", str(tmp_path / "ref2.tif"), "--floating", str(tmp_path / "other.tif")]
    assert main([*unrelated_args, "--out", str(tmp_path / "rejected")]) == 1
    assert "low confidence" in capsys.readouterr().out
    written = pd.read_csv(tmp_path / "rejected" / "transform.csv")
    assert written.loc[0, "status"] == "failed" and written.loc[0, "confidence"] == pytest.approx(unrelated.confidence)
    assert main([*unrelated_args, "--out", str(tmp_path / "forced"), "--min-confidence", "0"]) == 0
    true_args = [*args, "--reference", str(tmp_path / "ref.tif"), "--floating", str(tmp_path / "flo.tif")]
    assert main([*true_args, "--out", str(tmp_path / "true")]) == 0
    assert f"confidence {true.confidence:.3f}" in capsys.readouterr().out


def test_the_apply_stage_defaults_select_the_cascade_with_keypoints_on_the_originals_and_its_calibration(
    tmp_path, twin_model_file, other_twin_model_file, calibrated_twin
):
    model = ModelEnsemble.load(twin_model_file)
    originals = {"original_keypoints": {"preset": "opencv"}}
    assert APPLY_DEFAULT_PARAMS == {"cascade": originals}
    assert model.registration_params("cascade", None) == originals
    assert model.registration_params("cascade", {"keypoints": None}) == {"keypoints": None, **originals}
    mine = {"original_keypoints": {"max_error_px": 5.0}}
    assert model.registration_params("cascade", mine) == mine  # the user's value replaces the default
    assert model.registration_params("cascade", {"original_keypoints": None}) == {}  # off: the method's own default
    assert model.registration_params("fft_search", {"score": "ncc"}) == {"score": "ncc"}  # other methods: as given
    pair = ModelEnsemble.load([twin_model_file, other_twin_model_file])
    assert pair.registration_params("cascade", {}) == {**originals, "networks": 2}
    # A calibration of the cascade with the defaults judges a registration with no parameters given, and one
    # with them turned off does not.
    calibration = TrainedModel.load(calibrated_twin).calibration("fft_search", FFT_NCC)
    path = tmp_path / "cascade-calibrated.pt"
    write_calibrated_model(twin_model_file, {calibration_key("cascade", originals): calibration}, path)
    calibrated = ModelEnsemble.load(path)
    assert judging_calibration(calibrated, "cascade", calibrated.registration_params("cascade", {}), None) is not None
    off = calibrated.registration_params("cascade", {"original_keypoints": None})
    assert judging_calibration(calibrated, "cascade", off, None) is None


def test_a_minimum_confidence_needs_a_calibration(tmp_path, twin_model_file, calibrated_twin, capsys):
    reference, floating, _ = make_pair(0.0, (0.0, 0.0))
    for name, image in {"ref.tif": reference, "flo.tif": floating}.items():
        tifffile.imwrite(tmp_path / name, image)
    args = ["register", "--reference", str(tmp_path / "ref.tif"), "--floating", str(tmp_path / "flo.tif"),
            "--reference-modality", "fine", "--method", "fft_search", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*args, "--model", str(twin_model_file), "--min-confidence", "0.5"]) == 2
    assert "has no calibration for fft_search" in capsys.readouterr().err
    assert main([*args, "--model", str(calibrated_twin), "--min-confidence", "1.5"]) == 2
    assert "a minimum confidence is a probability" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# The ensemble tests' cascade: keypoints (each network's CoMIRs) refined by ECC, no global search; PyTorch
# inference (no ONNX export of four networks), so that each test takes seconds.
KEYPOINTS_CASCADE = {"global_search": None}
TORCH = {"engine": "torch"}


def write_known_pair(folder):
    """A 128 px rigid pair of the twin models' modalities (``ref.tif``, ``flo.tif`` in ``folder``) and its truth."""
    reference, floating, truth = make_pair(12.0, (8.0, -5.0), floating_box=(192, 192, 128, 128))
    reference = reference[64:192, 64:192]  # the central 128 px of the 256 px reference
    truth = geometry.compose(geometry.rigid_matrix(0.0, -64.0, -64.0), truth)
    for name, image in {"ref.tif": reference, "flo.tif": floating}.items():
        tifffile.imwrite(folder / name, image)
    return folder / "ref.tif", folder / "flo.tif", truth


def test_an_ensemble_registers_a_pair_on_every_models_comirs_stacked_in_order(
    tmp_path, twin_model_file, other_twin_model_file, caplog
):
    reference, floating, truth = write_known_pair(tmp_path)
    with caplog.at_level(logging.WARNING):
        models = ModelEnsemble.load([twin_model_file, other_twin_model_file])
    assert "an ensemble of 2 models" in caplog.text and "no calibrated confidence" in caplog.text
    pair = register_pair(models, reference, floating, "fine", params=KEYPOINTS_CASCADE, inference=TORCH)
    assert pair.result.ok and "sift@1" in pair.result.message and "sift@2" in pair.result.message
    assert float(geometry.corner_error(pair.result.matrix, truth, 128, 128)) < 1.0
    assert math.isnan(pair.confidence)  # an ensemble is not judged
    alone = register_pair(TrainedModel.load(twin_model_file), reference, floating, "fine", params=KEYPOINTS_CASCADE,
                          inference=TORCH)  # fmt: skip
    assert pair.comirs[0].shape == (2, 128, 128)
    np.testing.assert_array_equal(pair.comirs[0][:1], alone.comirs[0])  # the first model's channels first
    assert not np.array_equal(pair.comirs[0][1:], alone.comirs[0])
    written = write_outputs(tmp_path / "out", pair, reference, floating, "cascade")
    assert {p.name for p in written} == {"transform.csv", "transform.tfm", "warped.tif", "overlay.png",
                                         "comir_reference.tif", "comir_floating.tif"}  # fmt: skip
    assert tifffile.imread(tmp_path / "out" / "comir_floating.tif").shape == (128, 128, 2)  # the stacked CoMIRs


def test_models_of_other_modalities_or_comir_channels_cannot_form_an_ensemble(tmp_path, twin_model_file, model_file):
    with pytest.raises(InputError, match=f"{twin_model_file} and {model_file} cannot register a pair together"):
        ModelEnsemble.load([twin_model_file, model_file])
    wide = save_twin(tmp_path / "wide.pt", seed=5, out_channels=2)
    channels = "'comir_channels': 1}.* against .*'comir_channels': 2"
    with pytest.raises(InputError, match=f"{twin_model_file} and {wide} .*{channels}"):
        ModelEnsemble.load([twin_model_file, wide])
    coarser = save_twin(tmp_path / "coarser.pt", seed=5, modalities={**TWIN_MODALITIES, "B": {
        **TWIN_MODALITIES["B"], "pixel_size": 2.0}})  # fmt: skip
    with pytest.raises(InputError, match="'pixel_size': None.* against .*'pixel_size': 2.0"):
        ModelEnsemble.load([twin_model_file, coarser])


def test_an_ensemble_registers_with_the_cascade_only_and_without_a_confidence(
    tmp_path, twin_model_file, other_twin_model_file, capsys
):
    reference, floating, _ = write_known_pair(tmp_path)
    models = ModelEnsemble.load([twin_model_file, other_twin_model_file])
    with pytest.raises(InputError, match=r"2 models .* together only with cascade .*not 'fft_search'"):
        register_pair(models, reference, floating, "fine", "fft_search")
    with pytest.raises(InputError, match="an ensemble of models .* has no calibrated confidence"):
        register_pair(models, reference, floating, "fine", min_confidence=0.5)
    args = ["register", "--model", str(twin_model_file), "--model", str(other_twin_model_file), "--reference",
            str(reference), "--floating", str(floating), "--reference-modality", "fine",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*args, "--method", "mi"]) == 2
    assert "not 'mi'" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_command_registers_with_every_model_given(tmp_path, twin_model_file, other_twin_model_file, capsys):
    reference, floating, truth = write_known_pair(tmp_path)
    out = tmp_path / "out"
    args = ["register", "--model", str(twin_model_file), "--model", str(other_twin_model_file), "--reference",
            str(reference), "--floating", str(floating), "--reference-modality", "fine", "--out", str(out),
            "--params", "{global_search: null}", "--engine", "torch", "--threads", "1"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    row = pd.read_csv(out / "transform.csv").iloc[0]
    assert row["status"] == "ok" and row["method"] == "cascade" and "sift@2" in row["message"]
    assert math.isnan(row["confidence"])
    estimate = np.array([row[k] for k in MATRIX_KEYS]).reshape(2, 3)
    assert float(geometry.corner_error(estimate, truth, 128, 128)) < 1.0
    assert tifffile.imread(out / "comir_reference.tif").shape == (128, 128, 2)


# The rigid stage of the deformable tests: the FFT search near 0 deg (the pairs are deformed, not rotated).
FFT_NEAR_ZERO = "{score: ncc, angle_range_deg: 5}"


def deformable_command(folder, model, *extra):
    """``comir register`` of a 128 px pair with a known 3 px field (:func:`deformed_pair`) written to ``folder``."""
    reference, floating, _ = deformed_pair(128, 3.0)
    tifffile.imwrite(folder / "ref.tif", reference)
    tifffile.imwrite(folder / "flo.tif", floating)
    return ["register", "--model", str(model), "--reference", str(folder / "ref.tif"), "--floating",
            str(folder / "flo.tif"), "--reference-modality", "fine", "--out", str(folder / "out"), "--method",
            "fft_search", "--params", FFT_NEAR_ZERO, "--engine", "torch", "--threads", "1", *extra]  # fmt: skip


def test_the_command_refines_by_a_deformable_stage_and_writes_its_field(tmp_path, twin_model_file, capsys):
    """--deformable bspline: the field file reads back in SimpleITK, the warped image is warp_image of it."""
    args = deformable_command(tmp_path, twin_model_file, "--deformable", "bspline", "--deformable-params",
                              "{grid_spacing_px: 32}")  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "deformable bspline: ok" in printed and "Jacobian determinant" in printed, printed
    out = tmp_path / "out"
    assert {"warped.tif", "transform.tfm", "overlay.png", *DEFORMABLE_OUTPUTS} <= {p.name for p in out.iterdir()}
    row = pd.read_csv(out / "transform.csv").iloc[0]
    assert row["status"] == "ok" and row["deformable_status"] == "ok" and row["deformable_method"] == "bspline"
    assert row["folded_fraction"] == 0 and 0.5 < row["jacobian_min"] <= 1 <= row["jacobian_max"] < 2
    assert "bspline: SimpleITK B-spline" in row["message"]
    transform = sitk.ReadTransform(str(out / "deformable_field.h5"))
    assert transform.GetName() == "DisplacementFieldTransform"
    field = sitk_to_field(transform)
    assert field.shape == (128, 128, 2)
    points = np.array([[10.0, 20.0], [64.0, 64.0], [100.0, 37.0]])  # pixel centres: the field's own values
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(mapped, points + field[points[:, 1].astype(int), points[:, 0].astype(int)], atol=1e-6)
    composite = sitk.ReadTransform(str(out / "deformable_transform.h5"))  # the rigid affine, then the residual
    np.testing.assert_allclose(sitk_to_field(composite, (128, 128)), field, atol=1e-3)
    floating = tifffile.imread(tmp_path / "flo.tif")
    expected = np.clip(np.rint(warp_image(floating, field)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(tifffile.imread(out / "deformable_warped.tif"), expected)
    _, _, truth = deformed_pair(128, 3.0)
    error = np.hypot(*(field - truth)[24:-24, 24:-24].transpose(2, 0, 1))  # the interior, 24 px from the border
    assert np.median(error) < 0.5 and np.abs(truth).max() > 2


def test_the_deformable_stage_registers_where_the_mask_files_say(tmp_path, twin_model_file, capsys, monkeypatch):
    """A floating mask file reaches the stage as the rigid method had it (shrunk by the margin); none: no mask."""
    received = []

    def recording(reference, floating, initial_matrix=None, reference_mask=None, floating_mask=None, **params):
        received.append((reference_mask, floating_mask))
        return bspline_register(reference, floating, initial_matrix, reference_mask, floating_mask, **params)

    monkeypatch.setitem(DEFORMABLE_METHODS, "bspline", recording)
    mask = np.ones((128, 128), np.uint8)
    mask[:, :32] = 0
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    args = deformable_command(tmp_path, twin_model_file, "--deformable", "bspline", "--masks", "none")
    assert main([*args, "--floating-mask", str(tmp_path / "mask.tif")]) == 0, capsys.readouterr().err
    ((reference_mask, floating_mask),) = received
    assert reference_mask is None and floating_mask.shape == (128, 128)
    assert not floating_mask[:, : 32 + 4].any() and floating_mask[:, 32 + 8 :].all()  # the 4 px margin
    assert pd.read_csv(tmp_path / "out" / "transform.csv").iloc[0]["deformable_status"] == "ok"


def test_a_failed_deformable_stage_keeps_the_rigid_result_and_says_so(tmp_path, twin_model_file, capsys, monkeypatch):
    """A stage whose start does not overlap fails: exit 1, the rigid outputs written, no deformable ones."""

    def far_start(reference, floating, initial_matrix=None, *masks, **params):
        return bspline_register(reference, floating, geometry.rigid_matrix(0.0, 500.0, 0.0), *masks, **params)

    monkeypatch.setitem(DEFORMABLE_METHODS, "bspline", far_start)
    assert main(deformable_command(tmp_path, twin_model_file, "--deformable", "bspline")) == 1
    assert "deformable bspline: failed, the rigid result is kept" in capsys.readouterr().out
    out = tmp_path / "out"
    written = {p.name for p in out.iterdir()}
    assert {"warped.tif", "transform.tfm", "overlay.png", "transform.csv"} <= written
    assert not written & set(DEFORMABLE_OUTPUTS)
    row = pd.read_csv(out / "transform.csv").iloc[0]
    assert row["status"] == "ok" and row["deformable_status"] == "failed" and math.isnan(row["folded_fraction"])
    assert "bspline failed: the initial matrix maps only" in row["message"]
    assert row["message"].endswith("the rigid result is kept")
    for extra, message in (
        (["--deformable", "demons", "--deformable-params", "{grid_spacing_px: 8}"], "unknown parameter"),
        (["--deformable-params", "{iterations: 5}"], "--deformable-params needs --deformable"),
    ):
        args = [*deformable_command(tmp_path, twin_model_file, *extra)]
        args[args.index("--out") + 1] = str(tmp_path / "bad")
        assert main(args) == 2 and message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()

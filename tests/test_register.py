"""Registration methods (SIFT + rigid RANSAC, Mattes MI) on real images and libraries.

Test images are built here: a smooth seeded random texture with blobs and
lines.  A floating image is the reference's source warped by a known rigid
transform with ``cv2.warpAffine`` (large source, cropped after warping, so no
padding enters either crop); the ground truth floating->reference matrix is
derived with :mod:`comir.geometry`.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from comir import geometry as g
from comir.register import (
    METHODS,
    MutualInformationRegistration,
    Registration,
    RegistrationResult,
    SiftRegistration,
    make_method,
    ransac_rigid,
    to_single_channel,
)
from comir.register.mi import sitk_transform_matrix
from comir.register.sift import rigid_hypotheses

from registration_cases import SIZE, SOURCE, make_pair, pair_error, texture


def error(result: RegistrationResult, truth: np.ndarray, floating: np.ndarray) -> float:
    return pair_error(result.matrix, truth, floating)


def assert_failed(result: RegistrationResult) -> None:
    assert result.status == "failed"
    np.testing.assert_array_equal(result.matrix, g.IDENTITY)
    assert result.message
    assert result.seconds > 0


def assert_rigid(matrix: np.ndarray) -> None:
    linear = np.asarray(matrix)[..., :2]
    np.testing.assert_allclose(np.linalg.det(linear), 1.0, atol=1e-9)
    np.testing.assert_allclose(linear @ np.swapaxes(linear, -1, -2), np.broadcast_to(np.eye(2), linear.shape), atol=1e-9)


# ----------------------------------------------------------------- interface


def test_result_fields_and_validation():
    result = RegistrationResult(g.rigid_matrix(0.1, 2, 3), "ok", 12, 0.5, "note")
    assert result.ok and result.metric == 12.0 and result.seconds == 0.5 and result.message == "note"
    assert not result.matrix.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "failed"  # type: ignore[misc]
    failed = RegistrationResult.failed("why", 0.25)
    assert failed.status == "failed" and not failed.ok and math.isnan(failed.metric)
    np.testing.assert_array_equal(failed.matrix, g.IDENTITY)
    with pytest.raises(ValueError, match="2x3"):
        RegistrationResult(np.eye(3), "ok", 1, 0.1)
    with pytest.raises(ValueError, match="status"):
        RegistrationResult(g.IDENTITY, "maybe", 1, 0.1)


def test_make_method_registry_and_errors():
    assert set(METHODS) >= {"sift", "mi", "alpha_amd", "fft_search", "curvealign"}
    sift = make_method("sift", {"ratio": 0.8}, seed=3)
    assert isinstance(sift, SiftRegistration) and sift.ratio == 0.8 and sift.seed == 3
    mi = make_method("mi", {"shrink_factors": [2, 1], "smoothing_sigmas": [1, 0]}, seed=1)
    assert isinstance(mi, MutualInformationRegistration)
    assert mi.shrink_factors == (2, 1) and mi.smoothing_sigmas == (1.0, 0.0)
    for method in (sift, mi):
        assert isinstance(method, Registration) and method.name in METHODS
    with pytest.raises(ValueError, match="nosuch") as info:
        make_method("nosuch", {}, 0)
    assert "sift" in str(info.value) and "mi" in str(info.value)
    with pytest.raises(ValueError, match="bogus_key"):
        make_method("sift", {"bogus_key": 1}, 0)
    with pytest.raises(ValueError, match="learning_rat"):
        make_method("mi", {"learning_rat": 1.0}, 0)
    with pytest.raises(ValueError, match="seed"):
        make_method("mi", {"seed": 1}, 0)
    with pytest.raises(ValueError, match="optimizer"):
        make_method("mi", {"optimizer": "newton"}, 0)
    with pytest.raises(ValueError, match="shrink_factors"):
        make_method("mi", {"shrink_factors": [4, 2, 1], "smoothing_sigmas": [1, 0]}, 0)


@pytest.mark.parametrize("name", ["sift", "mi", "alpha_amd", "fft_search"])
def test_bad_arguments_raise_value_error(name):
    method = make_method(name, {}, 0)
    rgb = np.zeros((32, 32, 3), np.float32)
    grey = np.zeros((32, 32), np.float32)
    with pytest.raises(ValueError, match="channel"):
        method.register(rgb, grey)
    with pytest.raises(ValueError, match="channel"):
        method.register(rgb, np.zeros((32, 32, 2), np.float32))
    with pytest.raises(ValueError, match="shape"):
        method.register(np.zeros(32, np.float32), np.zeros(32, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        method.register(np.full((32, 32), np.nan, np.float32), grey)


# ------------------------------------------------------------ single channel


def test_to_single_channel_grey_unchanged():
    image = texture(64, 5)
    out, basis = to_single_channel(image.astype(np.float64))
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(basis, [1.0])
    out, _ = to_single_channel(image[..., None])
    np.testing.assert_array_equal(out, image)


def test_to_single_channel_pca_recovers_linear_combination():
    signal = np.asarray(texture(128, 1), dtype=np.float64)
    other = np.asarray(texture(128, 2), dtype=np.float64)
    s0, o0 = signal - signal.mean(), other - other.mean()
    other = o0 - (o0 * s0).sum() / (s0 * s0).sum() * s0  # uncorrelated with the signal
    weights = np.array([0.8, 0.5, -0.3])
    orthogonal = np.cross(weights, [0.0, 0.0, 1.0])  # a direction with no signal
    rgb = (
        signal[..., None] * weights
        + 0.4 * other[..., None] * orthogonal
        + np.array([0.1, 0.2, 0.9])
    ).astype(np.float32)
    projected, basis = to_single_channel(rgb)
    assert projected.shape == signal.shape and projected.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(basis), 1.0)
    assert abs(np.dot(basis, weights / np.linalg.norm(weights))) > 0.9999
    assert basis.sum() >= 0  # sign convention
    assert abs(np.corrcoef(projected.ravel(), signal.ravel())[0, 1]) > 0.99
    np.testing.assert_allclose(projected, rgb @ basis.astype(np.float32), rtol=1e-5, atol=1e-5)
    # A single channel (the naive reduction) is clearly worse than PCA here.
    assert abs(np.corrcoef(rgb[..., 0].ravel(), signal.ravel())[0, 1]) < 0.98


def test_to_single_channel_basis_reuse():
    a = np.stack([texture(64, 3), 0.5 * texture(64, 3), np.asarray(texture(64, 4))], axis=-1)
    b = np.stack([texture(64, 5), np.asarray(texture(64, 6)), 0.1 * texture(64, 5)], axis=-1)
    _, basis_a = to_single_channel(a)
    reused, basis_again = to_single_channel(b, basis_a)
    np.testing.assert_array_equal(basis_again, basis_a)
    np.testing.assert_allclose(reused, b @ basis_a.astype(np.float32), rtol=1e-5, atol=1e-6)
    own, basis_b = to_single_channel(b)
    assert abs(np.dot(basis_a, basis_b)) < 0.99  # really a different projection
    assert not np.allclose(own, reused)
    with pytest.raises(ValueError, match="basis"):
        to_single_channel(b, np.ones(2))


# ------------------------------------------------------------------- RANSAC


def test_ransac_exact_with_40_percent_outliers():
    rng = np.random.default_rng(7)
    truth = g.rigid_matrix(math.radians(23.0), 14.0, -9.0, (128.0, 128.0))
    source = rng.uniform(0, 256, (200, 2))
    target = g.apply(truth, source)
    outlier = np.zeros(len(source), bool)
    outlier[rng.permutation(len(source))[:80]] = True
    target[outlier] = rng.uniform(0, 256, (outlier.sum(), 2))
    outlier &= np.linalg.norm(target - g.apply(truth, source), axis=1) >= 25  # a few land near by chance
    matrix, inliers = ransac_rigid(source, target, 1000, 25.0, np.random.default_rng(0))
    np.testing.assert_allclose(matrix, truth, atol=1e-8)
    assert not inliers[outlier].any()
    assert inliers[~outlier].all()
    assert_rigid(matrix)


def test_ransac_never_scales():
    rng = np.random.default_rng(8)
    source = rng.uniform(0, 256, (60, 2))
    similarity = 1.25 * g.rigid_matrix(math.radians(-12.0), 0.0, 0.0)
    similarity[:, 2] = [5.0, 7.0]
    target = g.apply(similarity, source)
    matrix, _ = ransac_rigid(source, target, 300, 25.0, np.random.default_rng(1))
    assert_rigid(matrix)
    np.testing.assert_allclose(g.rotation_angle(matrix), math.radians(-12.0), atol=0.02)
    pairs = np.stack([np.arange(59), np.arange(1, 60)], axis=1)
    assert_rigid(rigid_hypotheses(source, target, pairs))


def test_ransac_noisy_inliers_least_squares_refit():
    rng = np.random.default_rng(9)
    truth = g.rigid_matrix(math.radians(-7.0), -4.0, 11.0, (100.0, 80.0))
    source = rng.uniform(0, 256, (300, 2))
    target = g.apply(truth, source) + rng.normal(0, 0.7, source.shape)
    target[:100] = rng.uniform(0, 256, (100, 2))
    matrix, inliers = ransac_rigid(source, target, 1000, 25.0, np.random.default_rng(2))
    assert float(g.corner_error(matrix, truth, 256, 256)) < 0.3
    assert inliers[100:].all()


# --------------------------------------------------------------------- SIFT


def test_sift_recovers_rotation_and_translation():
    reference, floating, truth = make_pair(20.0, (15.0, -10.0))
    assert float(g.corner_error(g.IDENTITY, truth, SIZE, SIZE)) > 30
    result = make_method("sift", {}, 0).register(reference, floating)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0
    assert result.metric >= 5 and result.seconds > 0
    assert_rigid(result.matrix)
    again = make_method("sift", {}, 0).register(reference, floating)
    np.testing.assert_array_equal(again.matrix, result.matrix)  # seeded


def test_sift_presets_and_explicit_overrides():
    paper = make_method("sift", {}, 0)
    assert paper.preset == "paper"
    assert (paper.octave_layers, paper.sigma, paper.ratio, paper.ransac_iterations) == (4, 1.6, 0.9, 1000)
    assert (paper.max_error_px, paper.min_inlier_ratio, paper.min_inliers) == (25.0, 0.05, 5)
    opencv = make_method("sift", {"preset": "opencv"}, 0)
    defaults = cv2.SIFT_create()
    assert opencv.octave_layers == defaults.getNOctaveLayers() == 3
    assert opencv.sigma == defaults.getSigma() and opencv.contrast_threshold == defaults.getContrastThreshold()
    assert opencv.edge_threshold == defaults.getEdgeThreshold()
    assert (opencv.ratio, opencv.max_error_px, opencv.ransac_iterations) == (0.75, 3.0, 2000)
    assert (opencv.min_inlier_ratio, opencv.min_inliers) == (0.05, 5)  # the acceptance rule stays
    mixed = make_method("sift", {"preset": "opencv", "ratio": 0.8, "max_error_px": 8}, 0)
    assert (mixed.ratio, mixed.max_error_px, mixed.octave_layers) == (0.8, 8, 3)
    assert make_method("sift", {"max_error_px": 8}, 0).octave_layers == 4
    with pytest.raises(ValueError, match="preset"):
        make_method("sift", {"preset": "fiji"}, 0)
    with pytest.raises(ValueError, match="ratio"):
        make_method("sift", {"preset": "opencv", "ratio": 1.5}, 0)


@pytest.mark.parametrize("preset", ["paper", "opencv"])
@pytest.mark.parametrize("angle, shift, seed", [(20.0, (15.0, -10.0), 0), (-35.0, (-8.0, 12.0), 1), (4.0, (3.0, 2.0), 2)])
def test_sift_presets_recover_known_transforms(preset, angle, shift, seed):
    reference, floating, truth = make_pair(angle, shift, seed=seed)
    result = make_method("sift", {"preset": preset}, 0).register(reference, floating)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0
    assert_rigid(result.matrix)


def test_sift_opencv_preset_fails_on_unrelated_noise():
    method = make_method("sift", {"preset": "opencv"}, 0)
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        a, b = (ndimage.gaussian_filter(rng.standard_normal((256, 256)), 2).astype(np.float32) for _ in range(2))
        result = method.register(a, b)
        assert_failed(result)


def test_sift_multichannel_and_different_sizes():
    # A 3-channel "CoMIR"-like pair; floating 224x200, offset inside the warped source.
    reference, floating, truth = make_pair(-8.0, (4.0, 9.0), seed=1, floating_box=(150, 140, 224, 200))
    mix = np.array([0.9, -0.4, 0.2], np.float32)
    ref3 = reference[..., None] * mix + 0.3
    flo3 = floating[..., None] * mix + 0.3
    result = make_method("sift", {}, 0).register(ref3, flo3)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0


def test_sift_fails_on_unrelated_noise():
    # Two independent smooth-noise images: matches exist but are random. At 512 px the
    # paper's criteria (25 px error, >= 5 inliers, >= 5 % inlier ratio) reject them.
    # (At 256 px they do not: see the module report; 25 px is a large share of the image.)
    method = make_method("sift", {}, 0)
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        a, b = (ndimage.gaussian_filter(rng.standard_normal((512, 512)), 2).astype(np.float32) for _ in range(2))
        result = method.register(a, b)
        assert_failed(result)
        assert "inlier" in result.message


def test_sift_acceptance_thresholds(monkeypatch):
    """min_inliers and min_inlier_ratio decide; matches are injected to isolate the rule."""
    rng = np.random.default_rng(10)
    truth = g.rigid_matrix(0.2, 5.0, -3.0)
    image = np.asarray(texture(64, 0))

    def run(good: int, bad: int, **params):
        source = rng.uniform(0, 256, (good + bad, 2))
        target = g.apply(truth, source)
        target[good:] = rng.uniform(-3000, 3000, (bad, 2))  # scattered far and wide
        method = make_method("sift", params, 0)
        monkeypatch.setattr(method, "correspondences", lambda reference, floating: (source, target))
        return method.register(image, image)

    ok = run(5, 0)
    assert ok.status == "ok" and ok.metric == 5
    np.testing.assert_allclose(ok.matrix, truth, atol=1e-9)
    few = run(4, 0)
    assert_failed(few)
    assert "too few inliers" in few.message and few.metric == 4
    assert run(4, 0, min_inliers=4).status == "ok"
    # Many iterations so that RANSAC surely samples two true matches.
    low = run(10, 300, ransac_iterations=50_000)  # 10 / 310 = 3.2 % < 5 %
    assert_failed(low)
    assert "ratio" in low.message and low.metric == 10
    assert run(20, 300, ransac_iterations=50_000).status == "ok"  # 6.25 %
    assert run(10, 300, ransac_iterations=50_000, min_inlier_ratio=0.03).status == "ok"
    assert_failed(run(1, 0))  # fewer than 2 matches


def test_sift_fails_on_constant_and_degenerate_images():
    method = make_method("sift", {}, 0)
    constant = np.full((SIZE, SIZE), 0.5, np.float32)
    reference, _, _ = make_pair(20.0, (15.0, -10.0))
    for ref, flo in [(constant, constant), (reference, constant), (constant, reference)]:
        assert_failed(method.register(ref, flo))
    tiny = np.zeros((1, 1), np.float32)
    assert_failed(method.register(tiny, tiny))


# ---------------------------------------------------------------------- MI


def test_sitk_transform_conversion_matches_transform_point():
    sitk = pytest.importorskip("SimpleITK")
    transform = sitk.Euler2DTransform()
    transform.SetCenter((100.0, 40.0))
    transform.SetAngle(0.3)
    transform.SetTranslation((5.0, -2.0))
    matrix = sitk_transform_matrix(transform)
    points = np.array([[0.0, 0.0], [255.0, 3.0], [17.5, 200.25]])
    expected = np.array([transform.TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(g.apply(matrix, points), expected, atol=1e-9)
    composite = sitk.CompositeTransform([transform, sitk.TranslationTransform(2, (1.0, 2.0))])
    expected = np.array([composite.TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(g.apply(sitk_transform_matrix(composite), points), expected, atol=1e-9)


@pytest.mark.parametrize("optimizer", ["gradient", "evolutionary"])
@pytest.mark.parametrize("inverted", [False, True])
def test_mi_recovers_small_transform(optimizer, inverted):
    reference, floating, truth = make_pair(5.0, (6.0, -4.0), seed=2)
    assert float(g.corner_error(g.IDENTITY, truth, SIZE, SIZE)) > 10
    if inverted:
        floating = 1.0 - floating  # MI does not care about the intensity mapping
    result = make_method("mi", {"optimizer": optimizer}, 0).register(reference, floating)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0
    assert result.metric < 0 and result.seconds > 0
    assert_rigid(result.matrix)


def test_mi_rgb_each_image_its_own_pca_and_different_sizes():
    reference, floating, truth = make_pair(4.0, (-5.0, 3.0), seed=3, floating_box=(140, 130, 240, 220))
    ref_rgb = reference[..., None] * np.array([0.7, 0.5, 0.2], np.float32) + 0.1
    flo_rgb = (1.0 - floating[..., None]) * np.array([0.2, 0.3, 0.9], np.float32)
    result = make_method("mi", {}, 0).register(ref_rgb, flo_rgb)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0


def test_mi_starts_from_matched_geometric_centres():
    # The floating image is a 128 px crop of the reference's centre: its
    # identity placement is 64 px off, the centred start only 3 deg + 2 px.
    o = (SOURCE - SIZE) // 2
    reference, floating, truth = make_pair(3.0, (2.0, -1.0), seed=5, floating_box=(o + 64, o + 64, 128, 128))
    assert float(g.corner_error(g.IDENTITY, truth, 128, 128)) > 60
    result = make_method("mi", {}, 0).register(reference, floating)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0


def test_mi_shared_basis_option():
    # Reference colour along (1, 1, 0), floating colour along (1, -1, 0): the
    # reference's PCA basis sees nothing in the floating image, its own basis does.
    reference, floating, truth = make_pair(4.0, (-5.0, 3.0), seed=3)
    ref_rgb = reference[..., None] * np.array([0.6, 0.6, 0.0], np.float32)
    flo_rgb = floating[..., None] * np.array([0.6, -0.6, 0.0], np.float32) + 0.5
    own = make_method("mi", {}, 0).register(ref_rgb, flo_rgb)
    assert own.status == "ok", own.message
    assert error(own, truth, floating) < 1.0
    shared = make_method("mi", {"shared_basis": True}, 0).register(ref_rgb, flo_rgb)
    assert shared.status == "failed" or error(shared, truth, floating) > 5


@pytest.mark.parametrize("name", ["sift", "mi"])
def test_direction_is_floating_to_reference(name):
    # Rotation about a corner of the reference: the inverse is far from the truth.
    reference, floating, truth = make_pair(5.0, (2.0, 3.0), seed=4, center=(128.0, 384.0))
    inverse = g.invert(truth)
    assert float(g.corner_error(inverse, truth, SIZE, SIZE)) > 20
    result = make_method(name, {}, 0).register(reference, floating)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0
    assert float(g.corner_error(result.matrix, inverse, SIZE, SIZE)) > 20
    # And the estimate really aligns the images: warp floating into the reference frame.
    aligned = cv2.warpAffine(floating, result.matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    inner = (slice(40, -40), slice(40, -40))
    assert np.abs(aligned[inner] - reference[inner]).mean() < 0.01


def test_mi_multi_start_keeps_lowest_metric():
    reference, floating, truth = make_pair(40.0, (8.0, -6.0), seed=0)
    single = {
        start: make_method("mi", {"start_angles_deg": (start,)}, 0).register(reference, floating)
        for start in (-40.0, 0.0, 40.0)
    }
    assert error(single[0.0], truth, floating) > 20  # a 0 deg start misses a 40 deg rotation
    # A start angle is the rotation of the starting floating->reference estimate
    # (here -40 deg, since the floating image is the reference turned by +40 deg).
    assert error(single[-40.0], truth, floating) < 1.0
    assert error(single[40.0], truth, floating) > 20
    multi = make_method("mi", {"start_angles_deg": (0.0, 40.0, -40.0)}, 0).register(reference, floating)
    assert multi.status == "ok", multi.message
    assert error(multi, truth, floating) < 1.0
    best = min(single, key=lambda s: single[s].metric)
    assert multi.metric == pytest.approx(min(r.metric for r in single.values()))
    np.testing.assert_allclose(multi.matrix, single[best].matrix, atol=1e-9)
    assert f"start {best:g} deg" in multi.message


@pytest.mark.parametrize("optimizer", ["gradient", "evolutionary"])
def test_mi_fails_without_raising(optimizer):
    method = make_method("mi", {"optimizer": optimizer}, 0)
    constant = np.full((64, 64), 0.5, np.float32)
    assert_failed(method.register(constant, constant))
    tiny = np.zeros((3, 3), np.float32)
    assert_failed(method.register(tiny, tiny))

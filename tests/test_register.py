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
import threading

import cv2
import numpy as np
import pytest
from scipy import ndimage

from comir import geometry as g
from comir.io import to_uint8
from comir.register import (
    METHODS,
    MutualInformationRegistration,
    Registration,
    RegistrationResult,
    SiftRegistration,
    make_method,
    ransac_fit,
    set_native_threads,
    to_single_channel,
)
from comir.register.mi import explain_itk_error, sitk_transform_matrix
from comir.register.sift import (
    PRESETS,
    Features,
    decode_octaves,
    halving_factor,
    match_descriptors,
    match_features,
    octave_sides,
    rigid_hypotheses,
    unique_targets,
)
from helpers.registration_cases import SIZE, SOURCE, make_colour_pair, make_pair, pair_error, texture


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
    np.testing.assert_allclose(
        linear @ np.swapaxes(linear, -1, -2), np.broadcast_to(np.eye(2), linear.shape), atol=1e-9
    )


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


@pytest.mark.parametrize("name", ["sift", "mi", "alpha_amd", "fft_search", "elastix"])
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
    matrix, inliers = ransac_fit(source, target, 1000, 25.0, np.random.default_rng(0))
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
    matrix, _ = ransac_fit(source, target, 300, 25.0, np.random.default_rng(1))
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
    matrix, inliers = ransac_fit(source, target, 1000, 25.0, np.random.default_rng(2))
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
    # Seeded; to rounding, since NumPy's SIMD reductions may round differently with memory alignment.
    np.testing.assert_allclose(again.matrix, result.matrix, rtol=0, atol=1e-6)


def test_sift_presets_and_explicit_overrides():
    paper = make_method("sift", {}, 0)
    assert paper.preset == "paper"
    # The paper's text: 3 steps per octave, octaves of 128-1024 px, ambiguous matches removed.
    assert (paper.octave_layers, paper.sigma, paper.ratio, paper.ransac_iterations) == (3, 1.6, 0.9, 1000)
    assert (paper.max_error_px, paper.min_inlier_ratio, paper.min_inliers) == (25.0, 0.05, 5)
    assert (paper.min_octave_px, paper.max_octave_px, paper.unique_matches) == (128, 1024, True)
    # The authors' Fiji script: 4 steps per octave, everything else as the paper.
    authors = make_method("sift", {"preset": "authors"}, 0)
    assert authors.octave_layers == 4
    for name in PRESETS["paper"]:
        if name != "octave_layers":
            assert getattr(authors, name) == getattr(paper, name), name
    opencv = make_method("sift", {"preset": "opencv"}, 0)
    defaults = cv2.SIFT_create()
    assert opencv.octave_layers == defaults.getNOctaveLayers() == 3
    assert opencv.sigma == defaults.getSigma() and opencv.contrast_threshold == defaults.getContrastThreshold()
    assert opencv.edge_threshold == defaults.getEdgeThreshold()
    assert (opencv.ratio, opencv.max_error_px, opencv.ransac_iterations) == (0.75, 3.0, 2000)
    assert (opencv.min_inlier_ratio, opencv.min_inliers) == (0.05, 5)  # the acceptance rule stays
    assert (opencv.min_octave_px, opencv.max_octave_px, opencv.unique_matches) == (None, None, False)
    mixed = make_method("sift", {"preset": "opencv", "ratio": 0.8, "max_error_px": 8}, 0)
    assert (mixed.ratio, mixed.max_error_px, mixed.octave_layers) == (0.8, 8, 3)
    assert make_method("sift", {"max_error_px": 8}, 0).octave_layers == 3
    # 0 switches a preset's limit off (None takes the preset's value).
    unlimited = make_method("sift", {"min_octave_px": 0, "max_octave_px": 0, "unique_matches": False}, 0)
    assert (unlimited.min_octave_px, unlimited.max_octave_px, unlimited.unique_matches) == (None, None, False)
    assert make_method("sift", {"preset": "opencv", "min_octave_px": 64}, 0).min_octave_px == 64
    with pytest.raises(ValueError, match="preset"):
        make_method("sift", {"preset": "fiji"}, 0)
    with pytest.raises(ValueError, match="ratio"):
        make_method("sift", {"preset": "opencv", "ratio": 1.5}, 0)
    with pytest.raises(ValueError, match="min_octave_px"):
        make_method("sift", {"min_octave_px": -1}, 0)
    with pytest.raises(ValueError, match="must not exceed"):
        make_method("sift", {"min_octave_px": 512, "max_octave_px": 256}, 0)
    with pytest.raises(ValueError, match="unique_matches"):
        make_method("sift", {"unique_matches": "false"}, 0)


@pytest.mark.parametrize("preset", ["paper", "authors", "opencv"])
@pytest.mark.parametrize(
    "angle, shift, seed", [(20.0, (15.0, -10.0), 0), (-35.0, (-8.0, 12.0), 1), (4.0, (3.0, 2.0), 2)]
)
def test_sift_presets_recover_known_transforms(preset, angle, shift, seed):
    reference, floating, truth = make_pair(angle, shift, seed=seed)
    result = make_method("sift", {"preset": preset}, 0).register(reference, floating)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0
    assert_rigid(result.matrix)


def test_decode_octaves_and_octave_sides():
    # KeyPoint.octave packs octave | layer << 8 | scale << 16; the octave byte is signed (255 = -1).
    packed = np.array([255 | 2 << 8 | 77 << 16, 0 | 1 << 8, 1 | 3 << 8 | 200 << 16, 3 | 1 << 8])
    np.testing.assert_array_equal(decode_octaves(packed), [-1, 0, 1, 3])
    np.testing.assert_array_equal(octave_sides(np.array([-1, 0, 1, 2, 3]), 256), [512, 256, 128, 64, 32])
    np.testing.assert_array_equal(octave_sides(np.array([1, 2]), 255), [127, 63])  # OpenCV halves with floor


def test_sift_octave_limits_drop_upsampled_and_small_octaves():
    """The paper's 128 px minimum on a 256 px patch leaves the 256 and 128 px octaves only."""
    image8 = to_uint8(make_pair(20.0, (15.0, -10.0))[0])
    everything = make_method("sift", {"preset": "opencv"}, 0).features(image8)
    # OpenCV alone: the 2x up-sampled octave (-1, 512 px) and octaves below 128 px (64, 32 px).
    assert {-1, 0, 1, 2} <= set(everything.octaves.tolist())
    assert everything.octave_sides.max() == 512 and everything.octave_sides.min() < 128
    limited = make_method("sift", {}, 0).features(image8)  # paper: same detector settings, 128-1024 px
    assert set(limited.octaves.tolist()) == {0, 1}
    assert set(limited.octave_sides.tolist()) == {256, 128}
    # Exactly OpenCV's keypoints of those two octaves, descriptors with them.
    kept = (everything.octaves >= 0) & (everything.octave_sides >= 128)
    assert 0 < kept.sum() < len(kept)
    np.testing.assert_array_equal(limited.points, everything.points[kept])
    np.testing.assert_array_equal(limited.descriptors, everything.descriptors[kept])
    # Sizes: the up-sampled octave's keypoints are the smallest, the small octaves' the largest.
    assert limited.sizes.min() > everything.sizes[everything.octaves == -1].max()
    assert limited.sizes.max() < everything.sizes[everything.octaves == 2].min()
    # A lower minimum keeps the 64 px octave too.
    lower = make_method("sift", {"min_octave_px": 64}, 0).features(image8)
    assert set(lower.octave_sides.tolist()) == {256, 128, 64}


def test_sift_max_octave_halves_large_images():
    assert halving_factor(1024, 1000, 1024) == 1
    assert halving_factor(1025, 10, 1024) == 2  # Fiji skips the 1025 px octave: the 513 px one is first
    assert halving_factor(10, 2048, 1024) == 2
    assert halving_factor(2049, 2049, 1024) == 4
    assert halving_factor(5000, 5000, None) == 1
    image8 = to_uint8(make_pair(20.0, (15.0, -10.0))[0])
    halved = make_method("sift", {"max_octave_px": 128, "min_octave_px": 32}, 0).features(image8)
    assert halved.factor == 2 and set(halved.octave_sides.tolist()) <= {128, 64, 32}
    # The same keypoints as on the 128 px image itself, in the 256 px image's pixels.
    small = cv2.resize(image8, (128, 128), interpolation=cv2.INTER_AREA)
    direct = make_method("sift", {"min_octave_px": 32, "max_octave_px": 0}, 0).features(small)
    np.testing.assert_allclose(halved.points, (direct.points + 0.5) * 2.0 - 0.5, atol=1e-9)
    np.testing.assert_array_equal(halved.descriptors, direct.descriptors)
    assert halved.points.max() > 200  # the input frame, not the detection image's


def test_sift_recovers_transform_on_image_larger_than_max_octave():
    """An 1100 px pair, above the paper's 1024 px: detected on its 550 px halving, estimated in full pixels."""
    size, source = 1100, 1400
    image = texture(source, 3)
    c = (source - 1) / 2.0
    moved = g.rigid_matrix(math.radians(12.0), 20.0, -15.0, (c, c))
    warped = cv2.warpAffine(np.asarray(image), moved, (source, source), flags=cv2.INTER_LINEAR)
    o = (source - size) // 2
    reference = image[o : o + size, o : o + size].copy()
    floating = warped[o : o + size, o : o + size].copy()
    truth = g.compose(g.rigid_matrix(0, -o, -o), g.compose(g.invert(moved), g.rigid_matrix(0, o, o)))
    method = make_method("sift", {}, 0)
    assert method.features(to_uint8(reference)).factor == 2
    result = method.register(reference, floating)
    assert result.status == "ok", result.message
    assert error(result, truth, floating) < 1.0  # 0.09 % of the width
    assert_rigid(result.matrix)


def _features(points, descriptors) -> Features:
    count = len(points)
    zeros = np.zeros(count, dtype=np.int64)
    return Features(np.asarray(points, float), np.asarray(descriptors, np.float32), zeros, zeros + 256, np.ones(count))


def test_match_descriptors_ratio_test():
    train = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    query = np.array([[1.0, 0.0], [5.0, 0.0], [0.0, 9.0]])  # clear, ambiguous (5 vs 5), clear
    query_index, train_index = match_descriptors(query, train, 0.8)
    np.testing.assert_array_equal(query_index, [0, 2])
    np.testing.assert_array_equal(train_index, [0, 2])
    # The same matches as OpenCV's brute-force k-nearest-neighbour matcher.
    rng = np.random.default_rng(4)
    q, t = rng.random((200, 128), np.float32) * 100, rng.random((150, 128), np.float32) * 100
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(q, t, k=2)
    expected = [(m.queryIdx, m.trainIdx) for m, n in knn if m.distance < 0.95 * n.distance]
    got = match_descriptors(q, t, 0.95)
    assert list(zip(*(a.tolist() for a in got))) == expected


def test_unique_matches_remove_every_ambiguous_match():
    """Fiji: a reference point that is the target of several matches loses all of them."""
    rng = np.random.default_rng(5)
    ref_desc = rng.random((4, 128)) * 100
    # Reference keypoints 1 and 2 share their location (one place, two orientations).
    ref_points = np.array([[10.0, 10.0], [20.0, 20.0], [20.0, 20.0], [30.0, 30.0]])
    # Floating descriptors close to reference 0, 0 (two matches on one keypoint), 1, 2 (one place), 3.
    flo_desc = ref_desc[[0, 0, 1, 2, 3]] + rng.normal(0, 0.5, (5, 128))
    flo_points = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0], [5.0, 5.0]])
    floating, reference = _features(flo_points, flo_desc), _features(ref_points, ref_desc)
    all_flo, all_ref = match_features(floating, reference, 0.9, unique=False)
    np.testing.assert_array_equal(all_ref, ref_points[[0, 0, 1, 2, 3]])
    flo, ref = match_features(floating, reference, 0.9, unique=True)
    np.testing.assert_array_equal(flo, [[5.0, 5.0]])
    np.testing.assert_array_equal(ref, [[30.0, 30.0]])
    np.testing.assert_array_equal(unique_targets(all_ref), [False, False, False, False, True])
    assert unique_targets(np.empty((0, 2))).shape == (0,)


def test_sift_unique_matches_changes_the_matches():
    reference, floating, truth = make_pair(20.0, (15.0, -10.0))
    kept = make_method("sift", {"unique_matches": False}, 0).correspondences(reference, floating)
    unique = make_method("sift", {}, 0).correspondences(reference, floating)
    assert not unique_targets(kept[1]).all()  # OpenCV gives some reference locations several matches
    assert unique_targets(unique[1]).all()
    assert len(unique[0]) == np.count_nonzero(unique_targets(kept[1]))


def test_sift_fails_on_too_small_image_for_the_octave_limits():
    reference, floating, _ = make_pair(20.0, (15.0, -10.0))
    result = make_method("sift", {}, 0).register(reference[:100, :100], floating[:100, :100])
    assert_failed(result)
    assert "too few SIFT keypoints in octaves of 128-1024 px" in result.message
    # OpenCV's preset has no minimum octave size: it finds keypoints there.
    opencv = make_method("sift", {"preset": "opencv"}, 0).register(reference[:100, :100], floating[:100, :100])
    assert "keypoints" not in opencv.message


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
        monkeypatch.setattr(method, "correspondences", lambda *images: (source, target))
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
def test_mi_finest_level_starts_screens_on_the_coarser_levels(optimizer):
    """Only the best start after the coarser levels pays for the finest one; it finds what every start finds."""
    reference, floating, truth = make_pair(40.0, (8.0, -6.0), seed=0)
    starts = (0.0, 40.0, -40.0)
    full = make_method("mi", {"start_angles_deg": starts, "optimizer": optimizer}, 0).register(reference, floating)
    screened = make_method(
        "mi", {"start_angles_deg": starts, "optimizer": optimizer, "finest_level_starts": 1}, 0
    ).register(reference, floating)
    for result in (full, screened):
        assert result.status == "ok", result.message
        assert error(result, truth, floating) < 1.0
    assert "start -40 deg" in screened.message and "1 of 3 start(s) to the finest level" in screened.message
    assert "finest level" not in full.message
    assert screened.metric == pytest.approx(full.metric, rel=0.05)
    # The screen kept the right start: its result is that start's own registration (the finest
    # level run as a second ITK call, so equal within the optimiser's tolerance, not bit for bit).
    alone = make_method("mi", {"start_angles_deg": (-40.0,), "optimizer": optimizer}, 0).register(reference, floating)
    assert float(g.corner_error(screened.matrix, alone.matrix, SIZE, SIZE)) < 0.1


def test_mi_finest_level_starts_leaves_unscreened_runs_alone():
    """As many starts kept as there are, or a single level: no screen; k < 1 is refused."""
    reference, floating, _ = make_pair(5.0, (6.0, -4.0), seed=2)
    plain = make_method("mi", {"start_angles_deg": (0.0, 10.0)}, 0).register(reference, floating)
    single_level = {"finest_level_starts": 1, "shrink_factors": (1,), "smoothing_sigmas": (0,)}
    for params in ({"finest_level_starts": 2}, single_level):
        result = make_method("mi", {"start_angles_deg": (0.0, 10.0), **params}, 0).register(reference, floating)
        assert "finest level" not in result.message
        if "shrink_factors" not in params:  # as many starts kept as there are: the plain registration
            np.testing.assert_allclose(result.matrix, plain.matrix, atol=1e-9)
    with pytest.raises(ValueError, match="finest_level_starts"):
        make_method("mi", {"finest_level_starts": 0}, 0)


@pytest.fixture
def native_threads():
    """The register rule's thread settings (set_native_threads) for a test, the previous ones restored after."""
    import SimpleITK as sitk

    before = (cv2.getNumThreads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
    set_native_threads(2)
    yield
    cv2.setNumThreads(before[0])
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before[1])


def test_set_native_threads_keeps_itk_single_threaded(native_threads):
    import SimpleITK as sitk

    assert cv2.getNumThreads() == 2 and sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1


@pytest.mark.parametrize("params", [{}, {"optimizer": "evolutionary"}, {"finest_level_starts": 2}])
def test_mi_starts_on_threads_give_the_sequential_result(params, native_threads, monkeypatch):
    """The starts run concurrently, each a single-threaded ITK registration: threads change nothing but the time."""
    reference, floating, truth = make_pair(40.0, (8.0, -6.0), seed=0)
    settings = {"start_angles_deg": (0.0, 40.0, -40.0, 20.0), **params}
    sequential = make_method("mi", settings, 0, threads=1).register(reference, floating)
    workers = set()
    register_once = MutualInformationRegistration._register_once

    def recording(self, *args, **kwargs):
        workers.add(threading.get_ident())
        return register_once(self, *args, **kwargs)

    monkeypatch.setattr(MutualInformationRegistration, "_register_once", recording)
    concurrent = make_method("mi", settings, 0, threads=3).register(reference, floating)
    assert len(workers) >= 2 and threading.get_ident() not in workers
    assert sequential.status == concurrent.status == "ok", (sequential.message, concurrent.message)
    assert error(concurrent, truth, floating) < 1.0
    np.testing.assert_allclose(concurrent.matrix, sequential.matrix, rtol=0, atol=1e-9)
    assert concurrent.metric == pytest.approx(sequential.metric, rel=1e-9)
    assert concurrent.message.split(";")[0] == sequential.message.split(";")[0]  # the same start won


def test_mi_failed_starts_on_threads_are_reported_in_start_order(native_threads):
    reference, floating, _ = make_pair(5.0, (6.0, -4.0), seed=2)
    result = make_method("mi", {"learning_rate": 1e6, "start_angles_deg": [-5, 5, 15]}, 0, threads=2).register(
        reference, floating
    )
    assert_failed(result)
    assert result.message.startswith("starts -5, 5, 15 deg: the reference and the transformed floating image")


@pytest.mark.parametrize("optimizer", ["gradient", "evolutionary"])
def test_mi_fails_without_raising(optimizer):
    method = make_method("mi", {"optimizer": optimizer}, 0)
    constant = np.full((64, 64), 0.5, np.float32)
    assert_failed(method.register(constant, constant))
    tiny = np.zeros((3, 3), np.float32)
    assert_failed(method.register(tiny, tiny))


def test_mi_all_pixels_independent_of_seed():
    """sampling_fraction 1.0: every reference pixel (SimpleITK's NONE), so the seed plays no part."""
    reference, floating, truth = make_pair(5.0, (6.0, -4.0), seed=2)
    params = {"bins": 80, "sampling_fraction": 1.0}  # the paper's MI
    runs = [make_method("mi", params, seed).register(reference, floating) for seed in (0, 7)]
    for run in runs:
        assert run.status == "ok", run.message
        assert error(run, truth, floating) < 1.0
    # Equal up to SimpleITK's multi-threaded summation order (~1e-11 px); random sampling
    # at 100 % (the old behaviour) differed by ~2e-3 between these seeds.
    np.testing.assert_allclose(runs[0].matrix, runs[1].matrix, atol=1e-6)
    assert runs[0].metric == pytest.approx(runs[1].metric, rel=1e-9)
    sampled = [make_method("mi", {"bins": 80}, seed).register(reference, floating) for seed in (0, 7)]
    assert np.abs(sampled[0].matrix - sampled[1].matrix).max() > 1e-6  # a random subset depends on the seed


def test_curvealign_passes_mi_sampling_through():
    method = make_method("curvealign", {"bins": 80, "sampling_fraction": 1.0}, 3)
    assert (method._mi.bins, method._mi.sampling_fraction, method._mi.seed) == (80, 1.0, 3)
    reference, floating, _ = make_colour_pair(5.0, (6.0, -4.0))
    runs = [make_method("curvealign", {"bins": 80, "sampling_fraction": 1.0}, seed).register(reference, floating)
            for seed in (0, 5)]
    assert runs[0].ok and runs[1].ok, [r.message for r in runs]
    np.testing.assert_allclose(runs[0].matrix, runs[1].matrix, atol=1e-6)  # hsv_otsu and full MI: no randomness


def test_mi_constant_image_failure_explains_itself():
    reference, _, _ = make_pair(5.0, (6.0, -4.0), seed=2)
    constant = np.full(reference.shape, 0.5, np.float32)
    for ref, flo in [(reference, constant), (constant, reference)]:
        result = make_method("mi", {}, 0).register(ref, flo)
        assert_failed(result)
        assert "no intensity variation" in result.message and "check the patch" in result.message
        assert "(ITK: Image: Zero-valued spacing" in result.message  # ITK's words, short, at the end
        assert "/" not in result.message.split("(ITK:")[1]  # no source path of ITK's build


def test_mi_no_overlap_failure_explains_itself():
    # A 1e6 px first step throws the floating image off the reference: no sample overlaps.
    reference, floating, _ = make_pair(5.0, (6.0, -4.0), seed=2)
    for params in ({"learning_rate": 1e6}, {"optimizer": "evolutionary", "evolutionary_radius": 1e6}):
        result = make_method("mi", {**params, "start_angles_deg": [-5, 5]}, 0).register(reference, floating)
        assert_failed(result)
        assert result.message.startswith("starts -5, 5 deg: the reference and the transformed floating image do not")
        assert "try a smaller learning_rate" in result.message
        assert result.message.endswith("(ITK: MattesMutualInformationImageToImageMetricv4: All samples map "
                                       "outside moving image buffer.)")


def test_explain_itk_error_known_and_unknown_messages():
    raw = ("Exception thrown in SimpleITK ImageRegistrationMethod_Execute: /build/ITK-5.4/itkMattesMutual"
           "InformationImageToImageMetricv4.hxx:312: ITK ERROR: MattesMutualInformationImageToImageMetricv4"
           "(0x55d0c0ffee00): Joint PDF summed to zero")
    assert explain_itk_error(raw).startswith("the reference and the transformed floating image do not overlap")
    assert explain_itk_error(raw).endswith(
        "(ITK: MattesMutualInformationImageToImageMetricv4: Joint PDF summed to zero)"
    )
    too_many = raw.replace("Joint PDF summed to zero", "Too many samples map outside moving image buffer: 3 / 4096")
    assert "do not overlap (enough)" in explain_itk_error(too_many)
    small = raw.replace("Joint PDF summed to zero", "The number of pixels along dimension 0 is less than 4. This...")
    assert explain_itk_error(small).startswith("an image is too small for the resolution pyramid")
    unknown = raw.replace("Joint PDF summed to zero", "Something new happened. Details follow.")
    assert explain_itk_error(unknown) == (
        "ITK: MattesMutualInformationImageToImageMetricv4: Something new happened. Details follow."
    )

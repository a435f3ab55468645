"""Similarity and affine transform models: the fits, RANSAC, SIFT, MI, ECC and the cascade on known pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comir import geometry as g
from comir.register import make_method
from comir.register.fft_search import ecc_refine
from comir.register.sift import ransac_fit
from helpers.registration_cases import SOURCE, crop_pair, texture
from helpers.registration_cases import pair_error as error


def similarity(scale: float, angle_deg: float) -> np.ndarray:
    angle = math.radians(angle_deg)
    return scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


SHEAR = np.array([[1.06, 0.12], [-0.05, 0.93]]) @ similarity(1.0, 12.0)


def scaled_pair(linear: np.ndarray, shift=(7.0, -5.0), seed: int = 0):
    source = texture(SOURCE, seed)
    return crop_pair(source, source, 0.0, shift, linear=linear)


def random_transform(kind: str, rng: np.random.Generator) -> np.ndarray:
    linear = similarity(rng.uniform(0.8, 1.25), rng.uniform(-40, 40))
    if kind == "rigid":
        linear /= math.sqrt(np.linalg.det(linear))
    if kind == "affine":
        linear = linear @ np.array([[1.0, rng.uniform(-0.2, 0.2)], [0.0, rng.uniform(0.8, 1.2)]])
    return np.hstack([linear, rng.uniform(-30, 30, (2, 1))])


@pytest.mark.parametrize("kind", g.TRANSFORMS)
def test_least_squares_fits_recover_exact_transforms_of_their_model(kind):
    rng = np.random.default_rng(1)
    truth = random_transform(kind, rng)
    source = rng.uniform(0, 256, (20, 2))
    np.testing.assert_allclose(g.fit_transform(kind, source, g.apply(truth, source)), truth, atol=1e-9)


def test_fits_reject_degenerate_points_and_unknown_models():
    with pytest.raises(np.linalg.LinAlgError, match="non-collinear"):
        g.fit_affine(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), np.zeros((3, 2)))
    with pytest.raises(np.linalg.LinAlgError, match="distinct"):
        g.fit_similarity(np.ones((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="rigid, similarity, affine"):
        g.fit_transform("projective", np.zeros((4, 2)), np.zeros((4, 2)))


def test_nearest_transform_projects_onto_the_model_and_keeps_the_anchor():
    anchor = np.array([100.0, 60.0])
    matrix = np.hstack([SHEAR * 1.1, [[5.0], [-3.0]]])
    for kind in g.TRANSFORMS:
        projected = g.nearest_transform(kind, matrix, anchor)
        np.testing.assert_allclose(g.apply(projected, anchor[None]), g.apply(matrix, anchor[None]), atol=1e-9)
        linear = projected[:, :2]
        if kind != "affine":
            assert linear[0, 0] == pytest.approx(linear[1, 1]) and linear[0, 1] == pytest.approx(-linear[1, 0])
        if kind == "rigid":
            assert np.linalg.det(linear) == pytest.approx(1.0)
    exact = np.hstack([similarity(1.2, 30.0), [[1.0], [2.0]]])
    np.testing.assert_allclose(g.nearest_transform("similarity", exact, anchor), exact, atol=1e-12)
    np.testing.assert_allclose(g.scale_factor(exact), 1.2)


@pytest.mark.parametrize("kind", g.TRANSFORMS)
def test_ransac_recovers_each_model_through_outliers(kind):
    rng = np.random.default_rng(2)
    truth = random_transform(kind, rng)
    source = rng.uniform(0, 256, (60, 2))
    target = g.apply(truth, source) + rng.normal(0, 0.3, (60, 2))
    target[:20] = rng.uniform(0, 256, (20, 2))  # a third are outliers
    matrix, inliers = ransac_fit(source, target, 500, 3.0, np.random.default_rng(0), transform=kind)
    assert inliers[20:].all() and not inliers[:20].any()
    assert g.corner_error(matrix, truth, 256, 256) < 0.5


def test_ransac_of_a_rigid_model_cannot_fit_a_scale():
    rng = np.random.default_rng(3)
    truth = np.hstack([similarity(1.25, 10.0), [[4.0], [2.0]]])
    source = rng.uniform(0, 256, (40, 2))
    target = g.apply(truth, source)
    rigid, rigid_inliers = ransac_fit(source, target, 500, 3.0, np.random.default_rng(0))
    fitted, inliers = ransac_fit(source, target, 500, 3.0, np.random.default_rng(0), transform="similarity")
    assert inliers.all() and rigid_inliers.sum() < 20
    assert np.linalg.det(rigid[:, :2]) == pytest.approx(1.0)
    np.testing.assert_allclose(fitted, truth, atol=1e-9)


@pytest.mark.parametrize(
    ("method", "params", "kind", "linear"),
    [
        ("sift", {}, "similarity", similarity(1.12, 20.0)),
        ("sift", {}, "affine", SHEAR),
        ("mi", {"start_angles_deg": [0.0]}, "similarity", similarity(1.08, 4.0)),
        ("mi", {"start_angles_deg": [0.0], "iterations": 400}, "affine", np.array([[1.05, 0.06], [-0.03, 0.96]])),
        # The global searches over +-40 deg (the rotations, up to 25 deg, inside): a quarter of the whole circle.
        ("cascade", {"global_search": {"angle_range_deg": 40}}, "similarity", similarity(0.9, -25.0)),
        ("fft_search", {"angle_range_deg": 40}, "similarity", similarity(1.1, 15.0)),
        ("fft_search", {"angle_range_deg": 40}, "affine", SHEAR),
        ("cascade", {"refine": "mi", "global_search": {"angle_range_deg": 40}}, "affine", SHEAR),
    ],
)
def test_methods_recover_known_similarity_and_affine_transforms(method, params, kind, linear):
    reference, floating, truth = scaled_pair(linear)
    result = make_method(method, {**params, "transform": kind}, seed=0).register(reference, floating)
    assert result.ok, result.message
    assert error(result.matrix, truth, floating) < 1.0, result.message
    if kind == "similarity":
        estimated = g.nearest_transform("similarity", result.matrix, g.image_center(floating.shape))
        np.testing.assert_allclose(result.matrix, estimated, atol=1e-9)  # exactly a similarity
    rigid = make_method(method, params, seed=0).register(reference, floating)
    assert not rigid.ok or error(rigid.matrix, truth, floating) > 2.0  # the scale or shear matters


@pytest.mark.parametrize("kind", ["similarity", "affine"])
def test_ecc_refines_a_rough_estimate_to_the_model(kind):
    linear = similarity(1.07, 8.0) if kind == "similarity" else SHEAR
    reference, floating, truth = scaled_pair(linear)
    rough = g.compose(g.rigid_matrix(0.0, 3.0, -2.0), truth)
    refined = ecc_refine(reference, floating, g.nearest_transform("rigid", rough, (128, 128)), 100, kind)
    assert refined is not None
    assert error(refined, truth, floating) < 0.5


@pytest.mark.parametrize("method", ["alpha_amd", "curvealign"])
def test_rigid_only_methods_say_so_when_asked_for_another_model(method):
    with pytest.raises(ValueError, match="rigid transforms only.*cascade, elastix, fft_search, mi, sift"):
        make_method(method, {"transform": "similarity"}, seed=0)


def test_the_fft_search_fits_another_model_only_in_its_refinement():
    with pytest.raises(ValueError, match="needs refine: true"):
        make_method("fft_search", {"transform": "affine", "refine": False}, seed=0)


@pytest.mark.parametrize("method", ["sift", "mi", "cascade", "fft_search", "elastix"])
def test_an_unknown_transform_model_is_a_configuration_error(method):
    with pytest.raises(ValueError, match="transform must be one of"):
        make_method(method, {"transform": "projective"}, seed=0)

"""Deformable registration (comir.register.deformable): known smooth fields recovered, failures, conventions.

The pairs: a smooth random texture as the reference and the floating image built so that the
truth field ``u`` (reference grid, backward) maps it onto the reference:
``floating(x + u(x)) = reference(x)``.  Errors are measured in the interior, away from the border
by about the B-spline grid spacing, where the floating image lacks the content that left it.
The elastix tests pay the import of itk once per session (5-12 s), as tests/test_elastix.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from comir import geometry as g
from comir.deformation.affine import compose_affine
from comir.deformation.algebra import invert_field
from comir.deformation.landmarks import map_points
from comir.deformation.synthetic import random_displacement
from comir.deformation.warp import warp_image
from comir.register.deformable import demons
from comir.register.deformable.bspline import bspline_register
from comir.register.deformable.demons import demons_register
from comir.register.deformable.elastix_bspline import elastix_bspline_register, elastix_parameter_maps
from comir.register.deformable.stage import DeformableStage
from helpers.registration_cases import floating_for, texture

SIZE = 112
MARGIN = 24
INTERIOR = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))


def interior_errors(field: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-pixel distance between two fields in the interior, pixels."""
    difference = (np.asarray(field, dtype=float) - truth)[INTERIOR]
    return np.hypot(difference[..., 0], difference[..., 1])


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, floating, truth): a 3 px smooth deformation of a 112 px texture."""
    reference = np.array(texture(SIZE, seed=3, lines=False))
    truth = random_displacement(reference.shape, 3.0, 48, 1)
    return reference, floating_for(reference, truth), truth


@pytest.fixture(scope="module")
def shifted_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(reference, floating, matrix, total truth): a translation by (3.5, -2.25) px and a 1.5 px field after it.

    floating(y) = reference(psi(M y)) with psi the inverse of x -> x + u(x), so that
    floating(inverse(M)(x + u(x))) = reference(x): the total truth is compose_affine(M, u).
    """
    reference = np.array(texture(SIZE, seed=5, lines=False))
    matrix = g.rigid_matrix(0.0, 3.5, -2.25)
    residual = random_displacement(reference.shape, 1.5, 48, 2)
    rows, cols = np.indices(reference.shape, dtype=float)
    points = np.stack([cols.ravel(), rows.ravel()], axis=1)
    sources = map_points(g.apply(matrix, points), invert_field(residual))
    floating = warp_image(reference, (sources - points).reshape(reference.shape + (2,)), order=3, mode="nearest")
    return reference, floating, matrix, compose_affine(matrix, residual)


METHODS = {
    "bspline": lambda *args, **kwargs: bspline_register(*args, grid_spacing_px=28, **kwargs),
    "demons": lambda *args, **kwargs: demons_register(*args, iterations=60, **kwargs),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_known_smooth_field_is_recovered(case, method):
    reference, floating, truth = case
    result = METHODS[method](reference, floating)
    assert result.ok, result.message
    assert result.field.shape == reference.shape + (2,) and result.field.dtype == np.float32
    errors = interior_errors(result.field, truth)
    assert np.median(errors) < 0.5, (np.median(errors), errors.max())
    assert result.folded_fraction == 0.0 and result.jacobian_range[0] > 0
    # The warped floating image is the reference again where it is known.
    assert np.abs(result.warped[INTERIOR] - reference[INTERIOR]).mean() < 0.02
    assert result.seconds > 0 and math.isfinite(result.metric)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_an_identical_pair_gives_the_zero_field(case, method):
    reference = case[0]
    result = METHODS[method](reference, reference)
    assert result.ok
    assert np.abs(result.field).max() < 0.1


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_initial_matrix_is_part_of_the_total_field(shifted_case, method):
    reference, floating, matrix, truth = shifted_case
    result = METHODS[method](reference, floating, initial_matrix=matrix)
    assert result.ok, result.message
    errors = interior_errors(result.field, truth)
    assert np.median(errors) < 0.5, (np.median(errors), errors.max())


def test_multichannel_comirs_share_one_projection_and_keep_their_channels(case):
    reference, floating, truth = case
    mix = np.array([0.5, 1.0, -0.25], np.float32)
    result = bspline_register(reference[..., None] * mix, floating[..., None] * mix, grid_spacing_px=28)
    assert result.ok and result.warped.shape == reference.shape + (3,)
    assert np.median(interior_errors(result.field, truth)) < 0.5


def test_random_sampling_follows_the_seed(case):
    reference, floating, _ = case
    runs = [
        bspline_register(reference, floating, sampling_fraction=0.3, seed=seed, iterations=20) for seed in (1, 1, 2)
    ]
    assert np.array_equal(runs[0].field, runs[1].field)
    assert not np.array_equal(runs[0].field, runs[2].field)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("role", ["reference", "floating"])
def test_a_constant_image_is_a_failure_not_an_exception(case, method, role):
    reference, floating, _ = case
    pair = {"reference": reference, "floating": floating}
    pair[role] = np.full_like(reference, 0.5)
    result = METHODS[method](pair["reference"], pair["floating"])
    assert result.status == "failed" and not result.ok
    assert "no intensity variation" in result.message and role in result.message
    assert not result.field.any() and result.warped.shape == reference.shape


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_start_without_overlap_is_a_failure(case, method):
    reference, floating, _ = case
    result = METHODS[method](reference, floating, initial_matrix=g.rigid_matrix(0.0, 500.0, 0.0))
    assert result.status == "failed" and "overlap" in result.message


def test_an_image_too_small_for_the_pyramid_is_a_failure_with_itk_reason():
    rng = np.random.default_rng(0)
    result = demons_register(rng.random((3, 3)), rng.random((3, 3)), shrink_factors=(2, 1))
    assert result.status == "failed" and "too small for the resolution pyramid" in result.message


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda a: bspline_register(a, a, metric="mi"), "metric must be one of"),
        (lambda a: bspline_register(a, a, grid_spacing_px=0), "grid_spacing_px"),
        (lambda a: demons_register(a, a, iterations=0), "iterations"),
        (lambda a: demons_register(a, a, shrink_factors=(2, 1), smoothing_sigmas=(1,)), "smoothing_sigmas"),
        (lambda a: bspline_register(a, a, initial_matrix=np.zeros((2, 3))), "invertible"),
        (lambda a: demons_register(a, a[:, :, None].repeat(2, axis=2)), "channel"),
    ],
)
def test_malformed_arguments_are_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(np.random.default_rng(0).random((32, 32)).astype(np.float32))


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("bspline", {"grid_spacing_px": -1}, "'bspline': grid_spacing_px must be finite and > 0"),
        ("bspline", {"sampling_fraction": 1.5}, "sampling_fraction must be in"),
        ("demons", {"smoothing_sigma": 0}, "'demons': smoothing_sigma must be finite and > 0"),
        ("demons", {"shrink_factors": [4, 2, 1], "smoothing_sigmas": [1]}, "smoothing_sigmas has 1 entries"),
        ("elastix_bspline", {"metric": "mi"}, "'elastix_bspline': metric must be one of"),
        ("elastix_bspline", {"affine": "no"}, "affine must be true or false"),
        ("elastix_bspline", {"bins": 2}, "bins must be an integer >= 4"),
        ("elastix_bspline", {"grid_spacing_px": [1, 2]}, "grid_spacing_px must be a number"),
    ],
)
def test_a_stage_checks_its_values_when_it_is_built(method, params, message):
    # No image is registered and elastix is not loaded: a configuration's mistake shows at parse time.
    with pytest.raises(ValueError, match=message):
        DeformableStage(method, params)
    assert DeformableStage(method, {}).params == {}


def test_a_bug_inside_propagates(monkeypatch, case):
    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(demons, "compose_affine", broken)
    with pytest.raises(TypeError, match="a bug"):
        demons_register(case[0], case[1], iterations=2)


# --- elastix ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def itk_loaded() -> None:
    """Loads itk with elastix (once per process, 5-20 s), so that the cost shows as this setup, not a test."""
    from comir.register.elastix import load_itk

    load_itk()


def test_elastix_recovers_a_known_field_between_two_modalities(case, itk_loaded):
    reference, floating, truth = case
    # Inverted intensities: a monomodal metric would fail, Mattes MI does not.
    result = elastix_bspline_register(reference, 1.0 - floating, grid_spacing_px=28, resolutions=2, iterations=100)
    assert result.ok, result.message
    errors = interior_errors(result.field, truth)
    assert np.median(errors) < 1.0, (np.median(errors), errors.max())
    assert result.folded_fraction == 0.0 and result.metric < 0  # elastix's Mattes MI is negative


def test_elastix_with_normalised_correlation_recovers_a_monomodal_field(case, itk_loaded):
    reference, floating, truth = case
    kwargs = {"grid_spacing_px": 28, "resolutions": 2, "iterations": 100, "affine": False, "metric": "ncc"}
    result = elastix_bspline_register(reference, floating, **kwargs)
    assert result.ok, result.message
    assert np.median(interior_errors(result.field, truth)) < 1.0
    assert result.metric < -0.9  # elastix's normalised correlation is negated: -1 is a perfect match
    # Inverted intensities anti-correlate: the B-spline folds its way to a correlation, not the field.
    inverted = elastix_bspline_register(reference, 1.0 - floating, **kwargs)
    assert not inverted.ok or np.median(interior_errors(inverted.field, truth)) > 2.0


def test_elastix_takes_the_initial_matrix_and_leaves_no_file(shifted_case, itk_loaded, tmp_path, monkeypatch):
    reference, floating, matrix, truth = shifted_case
    monkeypatch.chdir(tmp_path)  # transformix writes its field into the working directory unless told otherwise
    result = elastix_bspline_register(
        reference, floating, initial_matrix=matrix, grid_spacing_px=28, resolutions=2, iterations=100, affine=False
    )
    assert result.ok, result.message
    assert np.median(interior_errors(result.field, truth)) < 1.0
    assert not list(tmp_path.iterdir())


MASKED = {
    **METHODS,
    "elastix_bspline": lambda *args, **kwargs: elastix_bspline_register(
        *args, grid_spacing_px=28, resolutions=2, iterations=100, affine=False, metric="ncc", **kwargs
    ),
}


@pytest.mark.parametrize("method", sorted(MASKED))
@pytest.mark.parametrize("role", ["reference", "floating"])
def test_masked_pixels_do_not_pull_the_field(case, method, role, itk_loaded):
    reference, floating, truth = case
    # A 40 px block of one image replaced by noise (an artefact, a tear, a label) and masked out.
    block = (slice(36, 76), slice(36, 76))
    images = {"reference": reference.copy(), "floating": floating.copy()}
    images[role][block] = np.random.default_rng(0).random((40, 40))
    valid = np.ones(reference.shape, bool)
    valid[block] = False
    unmasked = MASKED[method](images["reference"], images["floating"])
    masked = MASKED[method](images["reference"], images["floating"], **{f"{role}_mask": valid})
    assert masked.ok, masked.message
    away = np.zeros(reference.shape, bool)  # the interior, 10 px or more from the block
    away[INTERIOR] = True
    away[26:86, 26:86] = False
    medians = {
        name: float(np.median(np.hypot(*np.moveaxis(result.field - truth, -1, 0))[away]))
        for name, result in (("masked", masked), ("unmasked", unmasked))
    }
    # Without the mask the block drags the field around it (1.8-4.4 px); with it 0.01-0.25 px.
    assert medians["masked"] < 0.4 < 1.2 < medians["unmasked"], medians
    everywhere = np.zeros(reference.shape, bool)
    with pytest.raises(ValueError, match="mask has shape"):
        MASKED[method](reference, floating, reference_mask=valid[:-1])
    assert "has no valid pixel" in MASKED[method](reference, floating, floating_mask=everywhere).message


def test_elastix_constant_image_is_a_failure(case, itk_loaded):
    result = elastix_bspline_register(case[0], np.zeros_like(case[0]))
    assert result.status == "failed" and "no intensity variation" in result.message


def test_elastix_maps_set_the_bending_penalty_and_the_grid(itk_loaded):
    affine, bspline = elastix_parameter_maps(grid_spacing_px=20, bending_weight=0.5, seed=3)
    assert affine["Transform"] == ("AffineTransform",) and bspline["Transform"] == ("BSplineTransform",)
    assert bspline["Metric"] == ("AdvancedMattesMutualInformation", "TransformBendingEnergyPenalty")
    assert float(bspline["Metric1Weight"][0]) == 0.5 and float(bspline["FinalGridSpacingInPhysicalUnits"][0]) == 20
    assert affine["RandomSeed"] == bspline["RandomSeed"] == ("3",)
    (only,) = elastix_parameter_maps(bending_weight=0, affine=False)
    assert only["Metric"] == ("AdvancedMattesMutualInformation",)
    assert only["Registration"] == ("MultiResolutionRegistration",) and "Metric1Weight" not in only
    (_, correlation) = elastix_parameter_maps(metric="ncc")
    assert correlation["Metric"] == ("AdvancedNormalizedCorrelation", "TransformBendingEnergyPenalty")
    with pytest.raises(ValueError, match="metric must be one of"):
        elastix_parameter_maps(metric="mse")

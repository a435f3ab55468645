"""Displacement fields (comir.deformation): known deformations, warping, inversion, SimpleITK exchange."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from comir import geometry as g
from comir.deformation.affine import affine_to_field, compose_affine, field_between_grids
from comir.deformation.algebra import compose_fields, invert_field
from comir.deformation.jacobian import folding_fraction, jacobian_determinant
from comir.deformation.landmarks import map_points
from comir.deformation.sitk import composite_with_affine, field_to_sitk, read_field, sitk_to_field, write_field
from comir.deformation.synthetic import random_displacement
from comir.deformation.warp import inside_mask, warp_image


def smooth_image(shape: tuple[int, int] = (64, 80), seed: int = 0) -> np.ndarray:
    """A smooth random texture (Gaussian-filtered noise), float32."""
    noise = np.random.default_rng(seed).standard_normal(shape)
    image = ndimage.gaussian_filter(noise, 3.0)
    return (image / image.std()).astype(np.float32)


# --- random_displacement --------------------------------------------------------------------------


def test_random_displacement_honours_the_maximum_and_does_not_fold():
    field = random_displacement((96, 128), 4.0, 40, np.random.default_rng(1))
    assert field.shape == (96, 128, 2) and field.dtype == np.float32
    assert np.hypot(field[..., 0], field[..., 1]).max() == pytest.approx(4.0, abs=1e-5)
    determinant = jacobian_determinant(field)
    # The rule: Jacobian norm <= max_gradient (0.5), so det >= (1 - 0.5)^2.
    assert determinant.min() >= 0.25
    assert folding_fraction(field) == 0.0


def test_random_displacement_is_reproducible_by_seed():
    first = random_displacement((40, 50), 2.0, 24, 7)
    assert np.array_equal(first, random_displacement((40, 50), 2.0, 24, np.random.default_rng(7)))
    assert not np.allclose(first, random_displacement((40, 50), 2.0, 24, 8))


def test_random_displacement_refuses_a_displacement_that_would_fold():
    with pytest.raises(ValueError, match="too large for a smoothness"):
        random_displacement((64, 64), 30.0, 8, 0)


def test_random_displacement_of_zero_is_the_zero_field():
    assert not random_displacement((8, 9), 0.0, 4, 0).any()


@pytest.mark.parametrize(
    "args",
    [((0, 5), 1.0, 4.0), ((5, 5), -1.0, 4.0), ((5, 5), 1.0, 0.0), ((5, 5), float("nan"), 4.0)],
)
def test_random_displacement_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        random_displacement(*args, rng=0)


# --- warp_image ---------------------------------------------------------------------------------


def test_a_constant_field_is_a_shift():
    image = smooth_image()
    field = np.zeros(image.shape + (2,), np.float32)
    field[..., 0], field[..., 1] = 3.0, -2.0  # output(x, y) = image(x + 3, y - 2)
    warped = warp_image(image, field)
    expected = np.roll(image, (2, -3), axis=(0, 1))
    assert np.array_equal(warped[2:, :-3], expected[2:, :-3])
    # Outside the image: cval, and inside_mask says where.
    inside = inside_mask(field, image.shape)
    assert inside[2:, :-3].all() and not inside[:2].any() and not inside[:, -3:].any()
    assert np.all(warped[~inside] == 0)


def test_warp_is_bilinear_between_pixels_and_keeps_channels():
    image = np.stack([smooth_image(seed=1), smooth_image(seed=2)], axis=-1)
    field = np.zeros(image.shape[:2] + (2,), np.float32)
    field[..., 0] = 0.5
    warped = warp_image(image, field)
    assert warped.shape == image.shape
    np.testing.assert_allclose(warped[:, :-1], (image[:, :-1] + image[:, 1:]) / 2, atol=1e-6)


def test_warp_image_onto_another_grid_size():
    image = smooth_image((30, 40))
    warped = warp_image(image, np.zeros((10, 12, 2)), order=3)
    np.testing.assert_allclose(warped, image[:10, :12], atol=1e-5)


# --- inversion and composition ------------------------------------------------------------------


def test_the_inverse_composed_with_the_field_is_the_identity_in_the_interior():
    field = random_displacement((96, 96), 3.0, 32, 3)
    inverse = invert_field(field)
    interior = (slice(8, -8), slice(8, -8))
    for composed in (compose_fields(field, inverse), compose_fields(inverse, field)):
        assert np.abs(composed[interior]).max() < 0.05


def test_compose_fields_matches_warping_twice():
    image = smooth_image((80, 80), seed=4)
    outer = random_displacement((80, 80), 2.0, 32, 5)
    inner = random_displacement((80, 80), 2.0, 32, 6)
    twice = warp_image(warp_image(image, outer, order=3), inner, order=3)
    once = warp_image(image, compose_fields(outer, inner), order=3)
    interior = (slice(8, -8), slice(8, -8))
    assert np.abs(twice[interior] - once[interior]).max() < 0.02  # the image's std is 1


def test_constant_fields_compose_by_adding():
    a = np.full((5, 6, 2), [1.0, 0.5])
    b = np.full((5, 6, 2), [-2.0, 0.25])
    np.testing.assert_allclose(compose_fields(a, b), np.full((5, 6, 2), [-1.0, 0.75]))


def test_jacobian_determinant_of_known_fields():
    rows, cols = np.indices((10, 12), dtype=float)
    stretch = np.stack([0.1 * cols, np.zeros_like(cols)], axis=-1)  # x -> 1.1 x
    np.testing.assert_allclose(jacobian_determinant(stretch), 1.1)
    assert folding_fraction(stretch) == 0.0
    mirror = np.stack([-2.0 * cols, np.zeros_like(cols)], axis=-1)  # x -> -x: folds everywhere
    np.testing.assert_allclose(jacobian_determinant(mirror), -1.0)
    assert folding_fraction(mirror) == 1.0
    shear = np.stack([0.5 * rows, 0.2 * cols], axis=-1)
    np.testing.assert_allclose(jacobian_determinant(shear), 1.0 - 0.5 * 0.2)


def test_map_points_interpolates_the_field_bilinearly():
    rows, cols = np.indices((10, 12), dtype=float)
    field = np.stack([0.5 * cols + 1.0, -0.25 * rows], axis=-1)  # linear: bilinear is exact
    points = np.array([[2.5, 3.25], [0.0, 0.0], [10.75, 8.5]])
    expected = points + np.stack([0.5 * points[:, 0] + 1.0, -0.25 * points[:, 1]], axis=1)
    np.testing.assert_allclose(map_points(points, field), expected, atol=1e-12)


# --- matrices ------------------------------------------------------------------------------------


def test_affine_to_field_moves_the_floating_image_onto_the_reference():
    floating = smooth_image((60, 60), seed=5)
    matrix = g.rigid_matrix(0.0, 4.0, -3.0)  # floating (x, y) shows reference (x + 4, y - 3)
    field = affine_to_field(matrix, (60, 60))
    np.testing.assert_allclose(field, np.full((60, 60, 2), [-4.0, 3.0]))
    moved = warp_image(floating, field)
    assert np.array_equal(moved[:-3, 4:], floating[3:, :-4])


def test_compose_affine_equals_composing_with_the_affine_field():
    matrix = g.rigid_matrix(0.05, 2.0, -1.5, center=(40.0, 30.0))
    residual = random_displacement((60, 80), 2.0, 32, 9)
    total = compose_affine(matrix, residual)
    sampled = compose_fields(affine_to_field(matrix, (60, 80)), residual)  # the affine field interpolated
    interior = (slice(3, -3), slice(3, -3))  # beyond the grid compose_fields repeats the edge values
    np.testing.assert_allclose(total[interior], sampled[interior], atol=1e-4)
    # And it is inverse(matrix) applied to x + residual(x).
    points = np.array([[10.0, 20.0], [55.0, 41.0]])
    expected = g.apply(g.invert(matrix), map_points(points, residual))
    np.testing.assert_allclose(map_points(points, total), expected, atol=1e-4)


def test_a_field_carried_to_other_grids_maps_each_point_through_the_three_maps():
    # A working level at half the resolution: original pixel x is working (x + 0.5) / 2 - 0.5.
    half = np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25]])
    matrix = g.rigid_matrix(0.3, 3.0, -2.0, center=(15.0, 12.0))  # floating -> reference, working px
    start = g.rigid_matrix(0.2, 0.0, 0.0, center=(30.0, 25.0))  # what the floating image was moved by
    from_working = g.compose(g.invert(start), g.invert(half))
    carried = field_between_grids(affine_to_field(matrix, (26, 32)), half, from_working, (50, 60))
    assert carried.shape == (50, 60, 2) and carried.dtype == np.float32
    # The affine field of the same map between the original grids (to_original_grids, then the start).
    expected = affine_to_field(g.compose(g.compose(g.invert(half), g.compose(matrix, half)), start), (50, 60))
    interior = (slice(2, -2), slice(2, -2))  # beyond its grid the working field repeats its edge values
    np.testing.assert_allclose(carried[interior], expected[interior], atol=1e-3)
    # A deformation is carried point by point: x -> from_working(u + field(u)), u = half(x).
    residual = random_displacement((26, 32), 2.0, 12, 3)
    points = np.array([[20.0, 14.0], [41.0, 33.0]])
    inner = g.apply(half, points)
    through = g.apply(from_working, map_points(inner, residual))
    deformed = field_between_grids(residual, half, from_working, (50, 60))
    np.testing.assert_allclose(map_points(points, deformed), through, atol=1e-4)


def test_a_singular_matrix_is_a_value_error():
    with pytest.raises(ValueError, match="invertible"):
        affine_to_field(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]), (4, 4))


# --- SimpleITK -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".h5", ".tfm"])
def test_a_field_round_trips_through_a_simpleitk_transform_file(tmp_path, suffix):
    field = random_displacement((33, 47), 2.5, 16, 2)
    path = tmp_path / f"field{suffix}"
    write_field(path, field)
    transform = sitk.ReadTransform(str(path))
    assert transform.GetName() == "DisplacementFieldTransform"
    np.testing.assert_allclose(read_field(path), field, rtol=0, atol=1e-6)
    np.testing.assert_allclose(read_field(path, (33, 47)), field, rtol=0, atol=1e-6)


def test_simpleitk_resamples_with_the_same_convention():
    image = smooth_image((50, 60), seed=6)
    field = random_displacement((50, 60), 3.0, 24, 4)
    moving = sitk.GetImageFromArray(image)
    resampled = sitk.GetArrayFromImage(sitk.Resample(moving, moving, field_to_sitk(field), sitk.sitkLinear, 0.0))
    inside = inside_mask(field, image.shape)
    np.testing.assert_allclose(resampled[inside], warp_image(image, field)[inside], atol=1e-5)


def test_the_composite_transform_is_the_affine_after_the_field():
    shape = (64, 72)
    matrix = g.rigid_matrix(0.1, 3.0, -2.0, center=(36.0, 32.0))
    residual = random_displacement(shape, 2.0, 24, 11)
    composite = composite_with_affine(matrix, residual)
    total = compose_affine(matrix, residual)
    np.testing.assert_allclose(sitk_to_field(composite, shape), total, atol=1e-5)
    point = np.array([[20.0, 30.0]])
    expected = g.apply(g.invert(matrix), point + residual[30, 20])[0]
    np.testing.assert_allclose(composite.TransformPoint((20.0, 30.0)), expected, atol=1e-9)
    # Applied to an image: moving by the matrix, then warping by the residual.
    floating = smooth_image(shape, seed=8)
    sitk_floating = sitk.GetImageFromArray(floating)
    resampled = sitk.GetArrayFromImage(sitk.Resample(sitk_floating, sitk_floating, composite, sitk.sitkLinear, 0.0))
    sequential = warp_image(warp_image(floating, affine_to_field(matrix, shape), order=3), residual, order=3)
    interior = (slice(10, -10), slice(10, -10))
    assert np.abs(resampled[interior] - sequential[interior]).max() < 0.05  # two interpolations against one
    inside = inside_mask(total, floating.shape)
    np.testing.assert_allclose(resampled[inside], warp_image(floating, total)[inside], atol=1e-4)


def test_bad_fields_are_value_errors():
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        warp_image(np.zeros((4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        invert_field(np.full((4, 4, 2), np.nan))

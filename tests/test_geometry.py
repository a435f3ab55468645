import numpy as np
import pytest

from comir import geometry


def test_translation_corner_error_is_its_length():
    truth = geometry.rigid_matrix(0.0, 3.0, 4.0)
    assert geometry.corner_error(geometry.IDENTITY, truth, 100, 80) == pytest.approx(5.0)


def test_rotation_about_centre_moves_each_corner_by_chord():
    size = 101
    centre = ((size - 1) / 2, (size - 1) / 2)
    angle = np.radians(30)
    truth = geometry.rigid_matrix(angle, 0, 0, centre)
    radius = np.hypot(50, 50)
    assert geometry.corner_error(geometry.IDENTITY, truth, size, size) == pytest.approx(2 * radius * np.sin(angle / 2))


def test_corner_error_is_symmetric_and_zero_for_equal_transforms():
    a = geometry.rigid_matrix(0.2, 5, -3, (10, 10))
    b = geometry.rigid_matrix(-0.1, 1, 2, (10, 10))
    assert geometry.corner_error(a, a, 64, 64) == pytest.approx(0.0)
    assert geometry.corner_error(a, b, 64, 64) == pytest.approx(geometry.corner_error(b, a, 64, 64))


def test_invert_compose_and_batches():
    a = geometry.rigid_matrix(0.3, 7, -2, (5, 9))
    np.testing.assert_allclose(geometry.compose(a, geometry.invert(a)), geometry.IDENTITY, atol=1e-12)
    batch = np.stack([a, geometry.IDENTITY])
    errors = geometry.corner_error(batch, geometry.IDENTITY, 32, 32)
    assert errors.shape == (2,) and errors[1] == 0
    assert geometry.rotation_angle(a) == pytest.approx(0.3)


def test_fit_rigid_recovers_transform_without_scale():
    rng = np.random.default_rng(0)
    truth = geometry.rigid_matrix(-0.7, 12, 30, (3, 4))
    source = rng.uniform(0, 200, (20, 2))
    target = geometry.apply(truth, source) + rng.normal(0, 1e-3, (20, 2))
    fitted = geometry.fit_rigid(source, target)
    np.testing.assert_allclose(fitted, truth, atol=1e-3)
    assert np.linalg.det(fitted[:, :2]) == pytest.approx(1.0)

"""Accuracy measures of deformable registration (comir.evaluate.deformation_metrics) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comir.evaluate import deformation_metrics as m


def square(top: int, left: int, size: int = 10, shape: tuple[int, int] = (24, 30)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_landmark_grid_spans_the_interior():
    points = m.landmark_grid((21, 31), spacing_px=10, margin_px=5)  # the last rows and columns: 15 and 25
    np.testing.assert_array_equal(points, [[5, 5], [15, 5], [25, 5], [5, 15], [15, 15], [25, 15]])
    assert m.landmark_grid((3, 3), 1).shape == (9, 2)
    with pytest.raises(ValueError, match="leaves no landmark"):
        m.landmark_grid((10, 10), 2, margin_px=6)


def test_tre_is_the_distance_between_the_mapped_landmarks():
    truth = np.zeros((12, 16, 2))
    estimate = np.zeros((12, 16, 2))
    estimate[..., 0], estimate[..., 1] = 3.0, 4.0
    points = np.array([[2.0, 3.0], [10.5, 7.25]])
    np.testing.assert_allclose(m.tre(estimate, truth, points), [5.0, 5.0])
    # A field varying along x: the error of a landmark between pixels is interpolated.
    rows, cols = np.indices((12, 16), dtype=float)
    ramp = np.stack([0.5 * cols, np.zeros_like(cols)], axis=-1)
    np.testing.assert_allclose(m.tre(ramp, truth, np.array([[3.5, 2.0], [0.0, 0.0]])), [1.75, 0.0])
    with pytest.raises(ValueError, match="different grids"):
        m.tre(estimate, np.zeros((12, 15, 2)), points)


def test_rtre_divides_by_the_diagonal():
    np.testing.assert_allclose(m.rtre(np.array([5.0, 10.0]), 30, 40), [0.1, 0.2])


def test_tre_summary_in_pixels_percent_of_width_and_rtre():
    summary = m.tre_summary(np.array([1.0, 2.0, 3.0, 4.0, 10.0]), width=30, height=40)
    assert list(summary) == list(m.TRE_SUMMARY_KEYS)
    assert summary["n"] == 5
    assert summary["mean_px"] == pytest.approx(4.0)
    assert summary["median_px"] == pytest.approx(3.0)
    assert summary["p90_px"] == pytest.approx(4.0 + 0.6 * 6.0)  # linear between the 4th and 5th
    assert summary["max_px"] == 10.0
    assert summary["median_pct_width"] == pytest.approx(10.0)
    assert summary["max_pct_width"] == pytest.approx(100.0 / 3)
    assert summary["median_rtre"] == pytest.approx(3.0 / 50) and summary["max_rtre"] == pytest.approx(0.2)
    empty = m.tre_summary(np.array([]), 30, 40)
    assert empty["n"] == 0 and all(math.isnan(v) for k, v in empty.items() if k != "n")
    with pytest.raises(ValueError, match="finite"):
        m.tre_summary(np.array([1.0, np.nan]), 30, 40)


def test_two_squares_offset_by_two_pixels():
    a, b = square(5, 5), square(5, 7)
    assert m.dice(a, b) == pytest.approx(2 * 80 / 200)  # overlap 10 x 8
    assert m.hausdorff(a, b) == 2.0
    # Of the 72 boundary distances 32 are 2 (most of the left and right sides): the 95th percentile is 2.
    assert m.hausdorff95(a, b) == 2.0
    distances = m.surface_distances(a, b)
    assert distances.size == 72 and np.sum(distances == 2) == 32 and np.sum(distances == 1) == 8


def test_hd95_ignores_a_stray_pixel_that_sets_the_hausdorff_distance():
    a = square(5, 5)
    b = a.copy()
    b[7, 24] = True  # 10 px right of the square's right side, (7, 14)
    assert m.hausdorff(a, b) == 10.0
    assert m.hausdorff95(a, b) == 0.0
    assert m.dice(a, b) == pytest.approx(200 / 201)


def test_identical_and_disjoint_masks():
    a = square(2, 3)
    assert m.dice(a, a) == 1.0 and m.hausdorff(a, a) == 0.0 and m.hausdorff95(a, a) == 0.0
    far = square(12, 18)
    assert m.dice(a, far) == 0.0
    assert m.hausdorff(a, far) == pytest.approx(math.hypot(15, 10))  # corner (2, 3) to corner (12, 18)


def test_empty_masks_give_nan():
    empty = np.zeros((24, 30), bool)
    assert math.isnan(m.dice(empty, empty))
    assert m.dice(square(2, 3), empty) == 0.0
    assert math.isnan(m.hausdorff(square(2, 3), empty)) and math.isnan(m.hausdorff95(empty, empty))


def test_a_mask_touching_the_image_border_has_a_boundary_there():
    a = np.zeros((8, 8), bool)
    a[:, :4] = True
    b = np.zeros((8, 8), bool)
    b[:, :3] = True
    assert m.hausdorff(a, b) == 1.0


def test_masks_of_different_shapes_are_a_value_error():
    with pytest.raises(ValueError, match="one shape"):
        m.dice(np.zeros((4, 4)), np.zeros((4, 5)))

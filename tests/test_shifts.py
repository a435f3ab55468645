"""The stress shifts (comir.imaging.shifts) against their formulas, and the stress curve (comir.evaluate.stress)."""

import numpy as np
import pandas as pd
import pytest

from comir.evaluate import stress
from comir.evaluate.stats import clopper_pearson
from comir.evaluate.stress import STRESS_COLUMNS, plot_stress_curve, stress_table
from comir.imaging.shifts import (
    Shift,
    case_rng,
    from_float01,
    gain,
    noise,
    rotate_about_grey,
    severity_label,
    shift_problem,
    shifted_stains,
    sparsity,
    sparsity_percentile,
    stain,
)
from comir.imaging.stain import HED_FROM_RGB, RGB_FROM_HED
from comir.io import read_image


def rgb(seed=0, shape=(16, 16)):
    return np.random.default_rng(seed).uniform(0.05, 1.0, (*shape, 3))


def test_stain_at_severity_zero_is_the_identity_to_rounding():
    image = rgb()
    for signs in ([1, 1, 1, 1], [-1, 1, -1, 1]):
        np.testing.assert_allclose(stain(image, 0.0, signs), image, atol=1e-12)
    stored = (np.random.default_rng(1).random((8, 8, 3)) * 255).astype(np.uint8)
    out = Shift("B", "stain", 0.0).apply_stored([stored], case_rng(0, 0))[0]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, stored)


@pytest.mark.parametrize("signs", [(1, 1, 1, 1), (-1, -1, -1, -1), (1, -1, -1, 1)])
def test_a_pure_haematoxylin_pixel_stays_on_the_rotated_haematoxylin_line(signs):
    severity = 0.7
    amounts = np.array([0.1, 0.5, 1.2])
    image = np.exp(-amounts[:, None] * RGB_FROM_HED[0])[None]  # (1, 3, 3): three haematoxylin pixels
    density = -np.log(stain(image, severity, signs))[0]
    rotated = rotate_about_grey(RGB_FROM_HED[0], signs[0] * 20 * severity)
    expected = (amounts * 2.0 ** (signs[2] * severity))[:, None] * rotated
    np.testing.assert_allclose(density, expected, rtol=1e-9, atol=1e-12)
    # The hue rotation is about the grey axis: seen along it, the vector turns by 20 deg x severity.
    grey = np.ones(3) / np.sqrt(3)
    new, old = (v - (v @ grey) * grey for v in (rotated, RGB_FROM_HED[0]))
    angle = np.degrees(np.arccos(new @ old / (np.linalg.norm(new) * np.linalg.norm(old))))
    assert angle == pytest.approx(14.0)
    assert rotated @ grey == pytest.approx(RGB_FROM_HED[0] @ grey)  # the grey component stays


def test_stain_scales_the_eosin_amount_and_keeps_dab():
    matrix, factors = shifted_stains(1.0, (1, -1, -1, 1))
    np.testing.assert_allclose(factors, [0.5, 2.0, 1.0])
    np.testing.assert_array_equal(matrix[2], RGB_FROM_HED[2])
    assert (matrix >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0)
    # Unmixing with the original vectors recovers the concentrations the remix used.
    image = rgb(3)
    out = stain(image, 1.0, (1, -1, -1, 1))
    expected = np.exp(-((-np.log(image) @ HED_FROM_RGB) * factors) @ matrix)
    np.testing.assert_allclose(out, np.clip(expected, 0, 1))


def test_gain_halves_at_severity_one_half_and_quarters_at_one():
    image = np.random.default_rng(0).random((5, 6))
    np.testing.assert_allclose(gain(image, 0.5), image / 2)
    np.testing.assert_allclose(gain(image, 1.0), image / 4)
    np.testing.assert_allclose(gain(rgb(), 0.0), rgb())


def test_sparsity_keeps_only_the_pixels_above_the_percentile_and_the_maximum():
    image = np.random.default_rng(2).random((40, 40)) ** 3
    for severity in (0.0, 0.5, 1.0):
        q = sparsity_percentile(severity)
        assert q == pytest.approx(95 * severity)
        level = np.percentile(image, q)
        out = sparsity(image, severity)
        np.testing.assert_array_equal(out > 0, image > level)
        assert out.max() == pytest.approx(image.max())
        np.testing.assert_allclose(out, np.maximum(image - level, 0) * image.max() / (image.max() - level))
    assert sparsity_percentile(5) == 99.9
    np.testing.assert_array_equal(sparsity(np.full((4, 4), 0.3), 1.0), 0.0)
    assert (sparsity(image, 1.0) > 0).mean() == pytest.approx(0.05, abs=0.01)


def test_noise_has_the_stated_variance_and_is_seeded():
    flat = np.full((400, 400), 0.5)
    for severity in (0.5, 1.0):
        out = Shift("A", "noise", severity).apply([flat], case_rng(7, 3))[0]
        expected = severity**2 * (0.04 * 0.5 + 0.05**2)
        assert out.var() == pytest.approx(expected, rel=0.03)
        assert out.mean() == pytest.approx(0.5, abs=0.005)
    dark = Shift("A", "noise", 1.0).apply([np.full((300, 300), 0.2)], case_rng(7, 3))[0]
    assert dark.std() == pytest.approx(np.sqrt(0.04 * 0.2 + 0.05**2), rel=0.03)  # shot noise grows with the signal
    z = np.random.default_rng(0).standard_normal((3, 3))
    np.testing.assert_allclose(noise(np.full((3, 3), 0.5), 0.0, z), 0.5)
    first = Shift("B", "noise", 1.0).apply([rgb(), rgb(1)], case_rng(1, 2))
    again = Shift("B", "noise", 1.0).apply([rgb(), rgb(1)], case_rng(1, 2))
    other = Shift("B", "noise", 1.0).apply([rgb(), rgb(1)], case_rng(1, 3))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert not np.allclose(first[0] - rgb(), first[1] - rgb(1))  # each patch its own noise


def test_one_draw_serves_both_patches_of_a_case_and_every_severity():
    image = rgb(4)
    for number in range(6):
        mild = Shift("B", "stain", 0.25).apply([image, image], case_rng(0, number))
        strong = Shift("B", "stain", 1.0).apply([image, image], case_rng(0, number))
        np.testing.assert_array_equal(mild[0], mild[1])  # the same slide: the same stain shift
        signs = case_rng(0, number).choice([-1.0, 1.0], size=4)
        np.testing.assert_allclose(strong[0], stain(image, 1.0, signs))


def test_kinds_refuse_the_wrong_channel_count():
    assert "RGB (3-channel)" in shift_problem("stain", 1)
    assert "single-channel" in shift_problem("sparsity", 3)
    assert shift_problem("gain", 1) is None and shift_problem("noise", 3) is None
    with pytest.raises(ValueError, match="needs an RGB"):
        stain(np.zeros((4, 4)), 1.0, (1, 1, 1, 1))
    with pytest.raises(ValueError, match="single-channel"):
        sparsity(np.zeros((4, 4, 3)), 1.0)
    with pytest.raises(ValueError, match="kind"):
        Shift("A", "blur", 1.0)
    with pytest.raises(ValueError, match="severity"):
        Shift("A", "gain", -1)


def test_stored_values_round_trip_in_their_dtype():
    stored = np.array([[0, 1000, 4095]], dtype=np.uint16)
    out = Shift("A", "gain", 0.5).apply_stored([stored], case_rng(0, 0), max_value=4095)[0]
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[0, 500, 2048]])  # 2047.5 rounds to even
    np.testing.assert_array_equal(from_float01(np.array([0.0, 0.5, 1.0]), np.uint8), [0, 128, 255])
    floats = from_float01(np.array([0.25]), np.float32)
    assert floats.dtype == np.float32 and floats[0] == 0.25


def test_severity_labels_are_file_names():
    assert [severity_label(s) for s in (0.5, 1, 1.0, 0.25, 2.5, 1e-5)] == ["0p5", "1", "1", "0p25", "2p5", "0p00001"]


def success(rows):
    """A success table (the columns stress_table reads) from (method, input, direction, n, s1, s5) rows."""
    return pd.DataFrame(rows, columns=["method", "input", "direction", "n", "success_1pct", "success_5pct"])


def test_the_stress_table_has_the_rates_and_clopper_pearson_bounds():
    tables = [
        success([("sift", "comir", "B_to_A", 10, 6, 9), ("mi", "original", "B_to_A", 10, 1, 4)]),
        success([("sift", "comir", "B_to_A", 10, 3, 7), ("mi", "original", "B_to_A", 10, 0, 2)]),
        success([("mi", "original", "B_to_A", 10, 0, 0), ("sift", "comir", "B_to_A", 10, 0, 10)]),
    ]
    table = stress_table(tables, [0.0, 0.5, 1.0], fractions=[0.05])
    assert tuple(table.columns) == STRESS_COLUMNS
    assert table[["method", "severity"]].values.tolist() == [
        ["mi", 0.0], ["mi", 0.5], ["mi", 1.0], ["sift", 0.0], ["sift", 0.5], ["sift", 1.0],
    ]  # fmt: skip
    np.testing.assert_array_equal(table["successes"], [4, 2, 0, 9, 7, 10])
    np.testing.assert_allclose(table["rate"], [0.4, 0.2, 0.0, 0.9, 0.7, 1.0])
    low, high = clopper_pearson([4, 2, 0, 9, 7, 10], 10)
    np.testing.assert_allclose(table["ci_low"], low)
    np.testing.assert_allclose(table["ci_high"], high)
    assert table.loc[2, "ci_low"] == 0 and table.loc[5, "ci_high"] == 1
    # Known values: 4 of 10 -> [0.1216, 0.7376] (exact binomial).
    assert table.loc[0, ["ci_low", "ci_high"]].tolist() == pytest.approx([0.12155, 0.73762], abs=1e-4)
    both = stress_table(tables, [0.0, 0.5, 1.0], fractions=[0.01, 0.05])
    assert len(both) == 12 and both["fraction"].tolist()[:6] == [0.01] * 6
    with pytest.raises(ValueError, match="3 success tables for 2 severities"):
        stress_table(tables, [0.0, 1.0])
    with pytest.raises(ValueError, match="success_2pct"):
        stress_table(tables, [0.0, 0.5, 1.0], fractions=[0.02])


def test_the_stress_curve_is_drawn(tmp_path, monkeypatch):
    tables = [success([("sift", "comir", d, 8, 4, 8 - i) for d in ("B_to_A", "A_to_B")]) for i in range(3)]
    table = stress_table(tables, [0, 0.5, 1], fractions=[0.01, 0.05])
    plot_stress_curve(table, tmp_path / "curve.png", title="demo")
    image = read_image(tmp_path / "curve.png")
    assert image.ndim == 3 and image.shape[0] > 300
    labels = set()
    monkeypatch.setattr(stress, "save_figure", lambda figure, path: labels.update(a.get_ylabel() for a in figure.axes))
    plot_stress_curve(stress_table(tables, [0, 0.5, 1], alpha=0.1), tmp_path / "curve90.png", alpha=0.1)
    assert labels - {""} == {"success rate (band: 90 % CI)"}
    with pytest.raises(ValueError, match="no rows"):
        plot_stress_curve(table.iloc[:0], tmp_path / "empty.png")

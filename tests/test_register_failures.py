"""Failures are failed rows, bugs stop the job (docs/method.md, section 7).

``timed`` turns :class:`RegistrationFailure` and the numerical libraries' failure
types into ``failed`` results and lets every other exception propagate; the
per-case runner turns a non-finite patch into a failed row that names the case
and the file, and keeps going.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from comir import geometry as g
from comir.geometry import MATRIX_KEYS
from comir.io import read_image, write_tiff
from comir.register import RegistrationFailure, RegistrationResult, make_method, timed
from comir.register.base import OK, is_registration_failure
from comir.register.cases import non_finite_count, register_cases
from comir.register.mi import MutualInformationRegistration
from comir.register.sift import SiftRegistration
from helpers.registration_cases import SIZE, make_pair


@dataclass
class Raising:
    """A registration method whose internals raise ``error`` (or succeed when it is None)."""

    name: ClassVar[str] = "raising"
    error: BaseException | None = None

    @timed
    def register(self, reference: np.ndarray, floating: np.ndarray, reference_mask=None, floating_mask=None):
        if self.error is not None:
            raise self.error
        return RegistrationResult(g.IDENTITY, OK, 1.0, 0.0, "fine")


IMAGE = np.random.default_rng(0).random((16, 16), dtype=np.float32)


@pytest.mark.parametrize(
    "bug",
    [
        TypeError("unsupported operand"),
        NameError("name 'x' is not defined"),
        AttributeError("'NoneType' object has no attribute 'pt'"),
        IndexError("index 3 is out of bounds"),
        KeyError("bins"),
        AssertionError("invariant"),
        ZeroDivisionError("division by zero"),
        ValueError("a bad argument deep inside"),
        NotImplementedError("a RuntimeError subclass, but a bug"),
        RecursionError("maximum recursion depth exceeded"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_programming_errors_propagate(bug):
    with pytest.raises(type(bug)):
        Raising(bug).register(IMAGE, IMAGE)
    assert not is_registration_failure(bug)


@pytest.mark.parametrize(
    "failure, expected",
    [
        (RegistrationFailure("too few keypoints: 1"), "too few keypoints: 1"),
        (RuntimeError("Exception thrown in SimpleITK\n ITK ERROR: it failed"), "RuntimeError: Exception thrown in "
         "SimpleITK ITK ERROR: it failed"),
        (cv2.error("OpenCV(5.0) (-215:Assertion failed)"), "cv2.error: OpenCV(5.0) (-215:Assertion failed)"),
        (np.linalg.LinAlgError("Singular matrix"), "numpy.LinAlgError: Singular matrix"),
        (FloatingPointError("overflow encountered"), "FloatingPointError: overflow encountered"),
    ],
    ids=lambda item: type(item).__name__ if isinstance(item, BaseException) else "",
)
def test_registration_and_library_failures_become_failed_results(failure, expected):
    result = Raising(failure).register(IMAGE, IMAGE)
    assert result.status == "failed" and result.message == expected
    np.testing.assert_array_equal(result.matrix, g.IDENTITY)
    assert result.seconds > 0 and math.isnan(result.metric)


def test_registration_failure_keeps_its_metric():
    result = Raising(RegistrationFailure("too few inliers", metric=4)).register(IMAGE, IMAGE)
    assert result.status == "failed" and result.metric == 4.0


def test_real_methods_let_internal_bugs_through(monkeypatch):
    reference, floating, _ = make_pair(20.0, (15.0, -10.0))

    def broken(*args, **kwargs):
        raise TypeError("a bug inside the method")

    monkeypatch.setattr(SiftRegistration, "features", broken)
    with pytest.raises(TypeError, match="a bug inside"):
        make_method("sift", {}, 0).register(reference, floating)
    # MI skips a start that SimpleITK fails (RuntimeError), never one that a bug breaks.
    monkeypatch.setattr(MutualInformationRegistration, "_register_once", broken)
    with pytest.raises(TypeError, match="a bug inside"):
        make_method("mi", {"start_angles_deg": [-5, 0, 5]}, 0).register(reference, floating)


def test_curvealign_kmeans_on_fewer_pixels_than_clusters_is_a_failure():
    rgb = np.random.default_rng(1).random((2, 2, 3), dtype=np.float32)
    grey = np.random.default_rng(2).random((32, 32), dtype=np.float32)
    result = make_method("curvealign", {"segmentation": "kmeans_ab", "kmeans_clusters": 5}, 0).register(rgb, grey)
    assert result.status == "failed" and "fewer than kmeans_clusters = 5" in result.message


# ------------------------------------------------------------------ the per-case runner

MODALITIES = {
    "A": {"name": "ModA", "channels": 1, "log1p": False},
    "B": {"name": "ModB", "channels": 1, "log1p": False},
}
CASES = [(5.0, (4.0, -3.0), 0), (-8.0, (-6.0, 5.0), 1), (3.0, (7.0, 2.0), 2)]


def write_testset(folder, poison: dict[str, float] | None = None) -> pd.DataFrame:
    """A tiny test set as the pipeline writes it: ``cases.csv`` rows and ``<case>_<slot>_<ref|flo>.tif``.

    Both slots hold the same texture pair (two identical "modalities"); ``poison``
    maps a file name (without ``.tif``) to a value written into its pixel (5, 7).
    """
    rows = []
    for index, (angle, shift, seed) in enumerate(CASES):
        reference, floating, truth = make_pair(angle, shift, seed=seed)
        case = f"case_{index:04d}"
        for slot in ("A", "B"):
            for role, image in (("ref", reference), ("flo", floating)):
                name = f"{case}_{slot}_{role}"
                data = np.array(image, dtype=np.float32)
                if poison and name in poison:
                    data[5, 7] = poison[name]
                write_tiff(folder / f"{name}.tif", data)
        rows.append(
            {"case": case, "image_id": f"img{seed}", "stratum": "small", "width": SIZE, "height": SIZE,
             "initial_displacement_px": float(g.corner_error(g.IDENTITY, truth, SIZE, SIZE)),
             **{f"true_{k}": v for k, v in zip(MATRIX_KEYS, truth.ravel())}}
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("image_input", ["comir", "original"])
def test_non_finite_patch_is_a_failed_row_naming_case_and_file(tmp_path, image_input):
    cases = write_testset(tmp_path, {"case_0001_B_flo": np.nan, "case_0002_A_ref": np.inf})
    method = make_method("sift", {}, 0)
    table = register_cases(cases, tmp_path, method, "sift", image_input, "B_to_A", MODALITIES)
    assert list(table["case"]) == ["case_0000", "case_0001", "case_0002"]
    by_case = table.set_index("case")
    # The clean case still runs.
    assert by_case.loc["case_0000", "status"] == "ok", by_case.loc["case_0000", "message"]
    assert by_case.loc["case_0000", "error_px"] < 1.0
    nan_case = by_case.loc["case_0001"]
    assert nan_case["status"] == "failed"
    assert nan_case["message"] == (
        "case case_0001: case_0001_B_flo.tif (floating, ModB) has non-finite pixels: 1 of 65536 values are NaN "
        "or infinite (or beyond float32's range)"
    )
    inf_case = by_case.loc["case_0002"]
    assert inf_case["status"] == "failed"
    assert inf_case["message"].startswith("case case_0002: case_0002_A_ref.tif (reference, ModA) has non-finite")
    for row in (nan_case, inf_case):  # a failed row: identity estimate, its error against the truth
        np.testing.assert_array_equal(row[[f"est_{k}" for k in MATRIX_KEYS]].to_numpy(float), g.IDENTITY.ravel())
        truth = row[[f"true_{k}" for k in MATRIX_KEYS]].to_numpy(float).reshape(2, 3)
        assert row["error_px"] == pytest.approx(float(g.corner_error(g.IDENTITY, truth, SIZE, SIZE)))
    # The other direction reads the other two files of each case, which are clean.
    other = register_cases(cases, tmp_path, method, "sift", image_input, "A_to_B", MODALITIES).set_index("case")
    assert other.loc["case_0001", "status"] == "ok" and other.loc["case_0002", "status"] == "ok"


def test_both_bad_files_are_named(tmp_path):
    cases = write_testset(tmp_path, {"case_0000_B_ref": np.nan, "case_0000_A_flo": -np.inf})
    table = register_cases(cases.iloc[:1], tmp_path, make_method("sift", {}, 0), "sift", "comir", "A_to_B", MODALITIES)
    message = table.loc[0, "message"]
    assert table.loc[0, "status"] == "failed"
    assert "case_0000_B_ref.tif (reference, ModB)" in message and "case_0000_A_flo.tif (floating, ModA)" in message


def test_runner_failures_and_bugs(tmp_path):
    cases = write_testset(tmp_path)
    table = register_cases(
        cases, tmp_path, Raising(RegistrationFailure("no overlap")), "stub", "comir", "B_to_A", MODALITIES
    )
    assert (table["status"] == "failed").all() and (table["message"] == "no overlap").all()
    table = register_cases(
        cases, tmp_path, Raising(RuntimeError("ITK ERROR: boom")), "stub", "comir", "B_to_A", MODALITIES
    )
    assert (table["message"] == "RuntimeError: ITK ERROR: boom").all()
    with pytest.raises(TypeError, match="a bug"):
        register_cases(cases, tmp_path, Raising(TypeError("a bug")), "stub", "comir", "B_to_A", MODALITIES)


def test_non_finite_count():
    assert non_finite_count(np.array([1.0, np.nan, np.inf, -np.inf])) == 3
    assert non_finite_count(np.array([1e300, 1.0])) == 1  # beyond float32: infinite once cast
    assert non_finite_count(np.arange(5, dtype=np.uint16)) == 0


def test_a_method_using_the_originals_gets_the_test_sets_original_patches(tmp_path):
    """The cascade's keypoints on the originals (``original_dir``) carry CoMIRs too blurred for its own."""
    cases = write_testset(tmp_path / "originals")
    (tmp_path / "comirs").mkdir()
    for file in (tmp_path / "originals").glob("*.tif"):  # "CoMIRs" without keypoints
        write_tiff(tmp_path / "comirs" / file.name, ndimage.gaussian_filter(read_image(file), 8).astype(np.float32))
    method = make_method("cascade", {"global_search": None, "original_keypoints": {}}, 0)
    run = (cases, tmp_path / "comirs", method, "cascade", "comir", "A_to_B", MODALITIES)
    with pytest.raises(ValueError, match="original_dir"):
        register_cases(*run)
    table = register_cases(*run, original_dir=tmp_path / "originals")
    assert (table["status"] == "ok").all(), list(table["message"])
    assert table["message"].str.contains("kept sift-original").all() and (table["error_px"] < 1.0).all()

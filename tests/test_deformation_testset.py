"""Test sets with a known deformation, the register rule's deformable runs and their TRE (comir.testset.deformation).

The truth written beside the patches must be what the patches show; a registration's field is
scored against it, a rigid result as the field of its matrix; the TRE table reuses the rigid
tables' protocol.
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from comir.deformation.affine import affine_of_field, affine_to_field
from comir.deformation.landmarks import map_points
from comir.deformation.sitk import read_field
from comir.deformation.warp import inside_mask, warp_image
from comir.evaluate.tables import to_markdown, wilcoxon_table
from comir.evaluate.tre import tre_results, tre_table
from comir.geometry import MATRIX_KEYS, rigid_matrix
from comir.io import read_image
from comir.register import RegistrationResult, make_run, registers_deformably
from comir.register.cases import DEFORMABLE_SECONDS, register_cases
from comir.register.deformable.stage import DeformableStage
from comir.testset import TESTSET_COLUMNS, Stratum, TestSetRecipe, build_testset
from comir.testset.deformation import (
    FIELD_SCORE_COLUMNS,
    Deformation,
    FieldScorer,
    otsu_threshold,
    read_mask,
    read_truth,
    structure_mask,
)
from helpers.registration_cases import monomodal_pair

DEFORMATION = Deformation(max_displacement_px=3.0, smoothness_px=48.0, landmark_spacing_px=12.0)
RECIPE = TestSetRecipe(
    patch_size=96, rotation_deg=10, translation_px=6, strata=(Stratum("all", None, 3),), seed=2,
    deformation=DEFORMATION,
)  # fmt: skip
MODALITIES = {"A": {"name": "fibres", "channels": 1}, "B": {"name": "copy", "channels": 1}}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Two monomodal pairs: B is A with another contrast."""
    folder = tmp_path_factory.mktemp("pairs")
    rows = []
    for i in range(2):
        a, b = folder / f"a{i}.tif", folder / f"b{i}.tif"
        for path, image in zip((a, b), monomodal_pair(200, i)):
            tifffile.imwrite(path, image)
        rows.append({"id": f"img{i}", "split": "test", "path_A": str(a), "path_B": str(b)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def deformed(pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("deformed")
    return build_testset(pairs, RECIPE, folder), folder


def interior(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The reference pixels whose true position lies inside the floating patch, 6 px from its border."""
    return ndimage.binary_erosion(inside_mask(field, shape), iterations=6)


def test_the_stored_truth_is_what_the_deformed_patches_show(deformed):
    cases, folder = deformed
    assert tuple(cases.columns) == (*TESTSET_COLUMNS, "deformation_max_displacement_px",
                                    "deformation_smoothness_px", "landmarks")  # fmt: skip
    for case in cases.itertuples():
        field, landmarks = read_truth(folder, case.case)
        assert field.shape == (96, 96, 2) and len(landmarks) == case.landmarks > 30
        truth = np.array([getattr(case, f"true_{k}") for k in MATRIX_KEYS]).reshape(2, 3)
        rigid = affine_to_field(truth, (96, 96))
        # The deformation is there: up to its largest displacement beyond the rigid truth.
        assert 1.0 < np.abs(field - rigid).max() <= 3.0 + 1e-3
        for slot in ("A", "B"):  # both floating patches carry the same deformation
            reference = read_image(folder / f"{case.case}_{slot}_ref.tif").astype(np.float32)
            floating = read_image(folder / f"{case.case}_{slot}_flo.tif").astype(np.float32)
            inside = interior(field, floating.shape)
            error = np.abs(warp_image(floating, field, order=3)[inside] - reference[inside])
            assert np.median(error) < 1.0 and np.percentile(error, 99) < 4.0, (case.case, slot)
            # The rigid truth alone does not explain the patch.
            rigid_error = np.abs(warp_image(floating, rigid, order=3)[inside] - reference[inside])
            assert np.median(rigid_error) > 4 * np.median(error), (case.case, slot)


def test_without_a_deformation_the_test_set_is_the_rigid_one(pairs, deformed, tmp_path):
    cases, folder = deformed
    rigid = build_testset(pairs, replace(RECIPE, deformation=None), tmp_path)
    assert tuple(rigid.columns) == TESTSET_COLUMNS and not list(tmp_path.glob("*_field.h5"))
    pd.testing.assert_frame_equal(cases[list(TESTSET_COLUMNS)], rigid)  # the same draws and crops
    for case in rigid["case"]:
        name = f"{case}_A_ref.tif"
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes()
    assert TestSetRecipe.from_config({"patch_size": 96}, 0).deformation is None
    with_key = TestSetRecipe.from_config({"patch_size": 96, "deformation": {"max_displacement_px": 2}}, 0)
    assert with_key.deformation == Deformation(2.0)
    assert with_key.max_reach() > replace(with_key, deformation=None).max_reach()
    # Keys the recipes do not know are named (the schema rejects them in a workflow; the API too).
    with pytest.raises(ValueError, match=r"unknown test set key\(s\) 'patch_sise'; known: .*patch_size"):
        TestSetRecipe.from_config({"patch_sise": 96}, 0)
    with pytest.raises(ValueError, match=r"unknown deformation key\(s\) 'max_px'; known: max_displacement_px"):
        TestSetRecipe.from_config({"patch_size": 96, "deformation": {"max_px": 2}}, 0)


def test_a_draw_that_would_fold_stops_the_build(pairs, tmp_path):
    folding = replace(RECIPE, deformation=Deformation(max_displacement_px=20.0, smoothness_px=16.0))
    with pytest.raises(ValueError, match="too large for a smoothness of 16 px"):
        build_testset(pairs, folding, tmp_path)


def test_structure_masks_score_a_field_by_overlap(pairs, tmp_path):
    masked = replace(RECIPE, deformation=replace(DEFORMATION, mask_slot="A"))
    cases = build_testset(pairs, masked, tmp_path)
    assert (cases["deformation_mask_slot"] == "A").all()
    score = FieldScorer(tmp_path)
    for case, truth in zip(cases["case"], truths(cases)):
        mask = read_mask(tmp_path, case)
        assert mask.shape == (96, 96) and 0.1 < mask.mean() < 0.9  # Otsu splits the texture
        field, _ = read_truth(tmp_path, case)
        perfect = score(case, field)
        assert perfect["dice"] == 1.0 and perfect["hd95_px"] == 0.0
        rigid = score(case, affine_to_field(truth, (96, 96)))  # misses the deformation (up to 3 px)
        assert 0.6 < rigid["dice"] < 0.99 and 0.5 < rigid["hd95_px"] <= 4.0
        shifted = score(case, field + 6.0)  # 6 px off everywhere: worse
        assert shifted["dice"] < rigid["dice"] and shifted["hd95_px"] > rigid["hd95_px"]
    assert np.isnan(FieldScorer(tmp_path / "none")._overlap("c", field, field)["dice"])


def test_otsu_threshold_is_scikit_images():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(3)
    for values in (rng.normal(0, 1, 4000), np.concatenate([rng.normal(0, 1, 3000), rng.gamma(2, 2, 900) + 4])):
        assert otsu_threshold(values) == pytest.approx(threshold_otsu(values), abs=1e-12)
    assert not structure_mask(np.full((8, 8, 3), 7.0), 2.0).any()
    heavy = rng.lognormal(0, 2, (64, 64))  # SHG-like: on the raw values Otsu keeps only the brightest
    assert structure_mask(heavy, 0, log1p=True).mean() > 2 * structure_mask(heavy, 0).mean()
    threshold = np.expm1(otsu_threshold(np.log1p(heavy)))
    np.testing.assert_array_equal(structure_mask(heavy, 0, log1p=True), heavy > threshold)


class TrueRigid:
    """A rigid method that knows each case's truth (the matrices in ``truths``, in call order)."""

    name = "truth"

    def __init__(self, truths):
        self.truths = list(truths)

    def register(self, reference, floating):
        return RegistrationResult(self.truths.pop(0), "ok", 1.0, 0.01, "the rigid truth")


def truths(cases: pd.DataFrame) -> list[np.ndarray]:
    return [np.array([getattr(c, f"true_{k}") for k in MATRIX_KEYS]).reshape(2, 3) for c in cases.itertuples()]


def test_a_deformable_stage_refines_the_rigid_truth_and_is_scored_against_the_field(deformed, tmp_path):
    cases, folder = deformed
    score = FieldScorer(folder)
    run = ("original", "B_to_A", MODALITIES)
    rigid = register_cases(cases, folder, TrueRigid(truths(cases)), "rigid", *run, score=score)
    stage = DeformableStage("bspline", {"grid_spacing_px": 32, "iterations": 30})
    refined = register_cases(cases, folder, TrueRigid(truths(cases)), "rigid-bspline", *run,
                             deformable=stage, score=score, field_dir=tmp_path / "fields")  # fmt: skip
    # save_fields (rule register_fields): each case's total field, the one scored.
    assert sorted(p.name for p in (tmp_path / "fields").iterdir()) == [f"{c}_field.h5" for c in cases["case"]]
    for case, row in zip(cases["case"], refined.itertuples()):
        assert score(case, read_field(tmp_path / "fields" / f"{case}_field.h5"))["tre_median_px"] == row.tre_median_px
    assert list(rigid.columns[-len(FIELD_SCORE_COLUMNS) - 1 : -1]) == list(FIELD_SCORE_COLUMNS)
    assert DEFORMABLE_SECONDS in refined and DEFORMABLE_SECONDS not in rigid
    assert (refined["status"] == "ok").all() and (refined[DEFORMABLE_SECONDS] > 0).all()
    np.testing.assert_allclose(refined["seconds"], refined[DEFORMABLE_SECONDS] + 0.01)
    # The rigid truth misses the deformation (about 1-2 px at the landmarks); the B-spline finds it.
    assert (rigid["tre_median_px"] > 0.5).all() and (rigid["error_px"] < 1e-9).all()
    assert (refined["tre_median_px"] < 0.25 * rigid["tre_median_px"]).all()
    assert (refined["folded_fraction"] == 0).all() and (refined["message"].str.contains("bspline: ")).all()
    # The row's matrix is the affine part of its field: near the rigid truth.
    assert (refined["error_px"] < 2.0).all()
    # A deformable method alone starts from the identity (the patches' centres).
    alone = register_cases(cases, folder, None, "demons", *run, deformable=DeformableStage("demons"), score=score)
    assert len(alone) == 3 and set(alone["status"]) <= {"ok", "failed"} and alone["tre_n"].gt(30).all()
    assert alone["message"].str.startswith("demons: ").all() and alone["metric"].notna().all()


def test_a_method_with_a_field_of_its_own_is_scored_by_its_field(deformed, tmp_path):
    cases, folder = deformed

    class TrueField:
        """The rigid truth with the true field of each case (as ACCR gives its model's field)."""

        name = "true-field"

        def __init__(self):
            self.rigid, self.cases = TrueRigid(truths(cases)), list(cases["case"])

        def register(self, reference, floating):
            return replace(self.rigid.register(reference, floating), field=read_truth(folder, self.cases.pop(0))[0])

    score = FieldScorer(folder)
    table = register_cases(cases, folder, TrueField(), "true-field", "original", "A_to_B", MODALITIES,
                           score=score, field_dir=tmp_path / "fields")  # fmt: skip
    # The field is scored and written, not the field of the matrix (which misses the deformation by 1-2 px).
    assert (table["tre_median_px"] < 1e-3).all() and (table["error_px"] < 1e-9).all()
    for case in cases["case"]:
        np.testing.assert_allclose(read_field(tmp_path / "fields" / f"{case}_field.h5"), read_truth(folder, case)[0])
    with pytest.raises(ValueError, match="a failed result has no field"):
        RegistrationResult(rigid_matrix(0, 0, 0), "failed", 0.0, 0.0, "", np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match=r"must have shape \(H, W, 2\)"):
        RegistrationResult(rigid_matrix(0, 0, 0), "ok", 0.0, 0.0, "", np.zeros((4, 4)))


def test_a_failed_rigid_stage_is_not_refined_and_scored_as_the_identity(deformed):
    cases, folder = deformed

    class Failing:
        name = "failing"

        def register(self, reference, floating):
            return RegistrationResult.failed("no luck")

    table = register_cases(cases, folder, Failing(), "x", "original", "A_to_B", MODALITIES,
                           deformable=DeformableStage("demons"), score=FieldScorer(folder))  # fmt: skip
    assert (table["status"] == "failed").all() and table[DEFORMABLE_SECONDS].isna().all()
    assert (table["message"] == "no luck").all() and (table["jacobian_min"] == 1).all()
    field, landmarks = read_truth(folder, cases["case"][0])
    displacement = map_points(landmarks, field) - landmarks  # the identity's TRE: the true displacement
    assert table["tre_median_px"][0] == pytest.approx(np.median(np.hypot(*displacement.T)))


def test_affine_of_field_inverts_affine_to_field():
    matrix = rigid_matrix(0.2, 3.0, -2.0, (20, 20))
    np.testing.assert_allclose(affine_of_field(affine_to_field(matrix, (40, 50))), matrix, atol=1e-5)


def test_a_run_is_rigid_deformable_or_both_and_its_names_are_checked():
    rigid, stage = make_run({"method": "mi", "params": {}}, seed=0)
    assert rigid.name == "mi" and stage is None
    rigid, stage = make_run({"method": "elastix_bspline", "params": {"grid_spacing_px": 16}}, seed=5)
    assert rigid is None and stage == DeformableStage("elastix_bspline", {"grid_spacing_px": 16}, 5)
    run = {"method": "cascade", "params": {}, "deformable": {"method": "demons", "params": {"iterations": 3}}}
    assert make_run(run, 0)[1].method == "demons" and registers_deformably(run)
    assert not registers_deformably({"method": "cascade"})
    with pytest.raises(ValueError, match="unknown parameter.*'grid'.*'bspline'; accepted: grid_spacing_px"):
        DeformableStage("bspline", {"grid": 3})
    with pytest.raises(ValueError, match="seed.*passed on"):
        DeformableStage("bspline", {"seed": 3})
    with pytest.raises(ValueError, match="on its own"):
        make_run({"method": "demons", "deformable": {"method": "bspline"}}, 0)


def rows(method: str, medians: list[float], status: str = "ok") -> pd.DataFrame:
    n = len(medians)
    return pd.DataFrame({
        "case": [f"c{i}" for i in range(n)], "width": 100, "status": status, "seconds": 1.0, "method": method,
        "input": "comir", "direction": "B_to_A", "error_px": 50.0, "tre_median_px": medians,
        "folded_fraction": 0.0, "jacobian_min": 0.5,
    })  # fmt: skip


def test_the_tre_table_counts_successes_in_pixels_with_the_rigid_tables_protocol():
    results = pd.concat([rows("rigid", [1.5, 2.5, 3.0, 20.0]), rows("deformable", [0.5, 0.9, 1.5, 13.0])])
    table = tre_table(results, [1, 2], failure_fraction=0.12).set_index("method")
    assert table.loc["deformable", "success_1px"] == 2 and table.loc["rigid", "success_1px"] == 0
    assert table.loc["rigid", "success_2px"] == 1 and table.loc["rigid", "failures"] == 1  # 20 px >= 12 px
    assert table.loc["deformable", "failures"] == 1  # 13 px >= 12 px: scored at the bound
    assert table.loc["deformable", "median_tre_px"] == pytest.approx((0.9 + 1.5) / 2)
    assert 0 < table.loc["deformable", "success_1px_low"] < 0.5 < table.loc["deformable", "success_1px_high"] < 1
    assert "2 [" in to_markdown(table.reset_index())  # count and interval in one cell
    tests = wilcoxon_table(tre_results(results), failure_fraction=0.12)
    assert len(tests) == 1 and tests["rank_biserial_r"][0] == -1  # "deformable" has the smaller errors
    with pytest.raises(ValueError, match="no TRE columns"):
        tre_results(results.drop(columns="tre_median_px"))
    assert "median_dice" not in table  # no structure masks
    masked = results.assign(dice=[0.7, 0.8, 0.9, np.nan, 0.95, 0.97, 0.99, 0.2], hd95_px=np.arange(8.0))
    table = tre_table(masked, [1]).set_index("method")
    assert table.loc["rigid", "median_dice"] == pytest.approx(0.8) and table.loc["deformable", "median_dice"] == 0.96
    assert table.loc["rigid", "median_hd95_px"] == 1.5 and table.loc["deformable", "median_hd95_px"] == 5.5

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from comir import geometry
from comir.geometry import MATRIX_KEYS
from comir.io import InputError, read_image
from comir.testset import (
    TESTSET_COLUMNS,
    Stratum,
    TestSetRecipe,
    build_testset,
    draw_transforms,
    make_testset,
)


def texture(size, seed, channels=None):
    rng = np.random.default_rng(seed)
    noise = rng.random((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3) + 0.3 * cv2.GaussianBlur(noise, (0, 0), 1)
    image = (255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)
    return image if channels is None else np.stack([image, 255 - image, image // 2], axis=-1)


@pytest.fixture
def pairs(tmp_path):
    rows = []
    for i in range(2):
        a, b = tmp_path / f"a{i}.tif", tmp_path / f"b{i}.tif"
        tifffile.imwrite(a, texture(200, i))
        tifffile.imwrite(b, texture(200, i, channels=3))
        rows.append({"id": f"img{i}", "split": "test", "path_A": str(a), "path_B": str(b)})
    return pd.DataFrame(rows)


RECIPE = TestSetRecipe(
    patch_size=96,
    rotation_deg=20,
    translation_px=12,
    strata=(Stratum("small", 10, 5), Stratum("medium", 20, 5), Stratum("large", None, 4)),
    seed=3,
)


def test_strata_are_filled_and_displacements_consistent():
    cases = draw_transforms(RECIPE, np.random.default_rng(0))
    assert cases["stratum"].value_counts().to_dict() == {"small": 5, "medium": 5, "large": 4}
    truth = cases[[f"true_{k}" for k in MATRIX_KEYS]].to_numpy().reshape(-1, 2, 3)
    recomputed = geometry.corner_error(geometry.IDENTITY, truth, 96, 96)
    np.testing.assert_allclose(cases["initial_displacement_px"], recomputed)
    landed = cases[[f"corner{i}_{a}" for i in range(4) for a in "xy"]].to_numpy().reshape(-1, 4, 2)
    moved = np.linalg.norm(landed - geometry.corners(96, 96), axis=-1).mean(axis=1)
    np.testing.assert_allclose(moved, cases["initial_displacement_px"])
    assert (cases.loc[cases.stratum == "small", "initial_displacement_px"] <= 10).all()
    medium = cases.loc[cases.stratum == "medium", "initial_displacement_px"]
    assert ((medium > 10) & (medium <= 20)).all()
    assert (cases.loc[cases.stratum == "large", "initial_displacement_px"] > 20).all()
    assert cases["rotation_deg"].abs().max() <= 20
    assert cases[["translation_x", "translation_y"]].abs().to_numpy().max() <= 12
    # The truth maps floating -> reference: its rotation is the negated drawn rotation.
    np.testing.assert_allclose(np.degrees(geometry.rotation_angle(truth)), -cases["rotation_deg"], atol=1e-9)


def test_unreachable_strata_fail_clearly():
    strata = (Stratum("near", 5, 1), Stratum("far", None, 3))
    recipe = TestSetRecipe(patch_size=96, rotation_deg=1, translation_px=1, strata=strata, max_draws=10000)
    with pytest.raises(ValueError, match="could not fill test-set strata.*far"):
        draw_transforms(recipe, np.random.default_rng(0))


def test_multiregeval_levels():
    recipe = TestSetRecipe(patch_size=96, recipe="multiregeval", levels=4, cases_per_level=6)
    cases = draw_transforms(recipe, np.random.default_rng(1))
    assert sorted(cases["stratum"].unique()) == ["level1", "level2", "level3", "level4"]
    level = cases["stratum"].str[-1].astype(int) - 1
    magnitude = cases["rotation_deg"].abs()
    assert ((magnitude >= 5 * level) & (magnitude < 5 * (level + 1))).all()
    shift = cases[["translation_x", "translation_y"]].abs()
    assert ((shift.ge(20 * level, axis=0)) & (shift.lt(20 * (level + 1), axis=0))).all().all()


def test_build_is_deterministic_and_reference_is_the_crop(pairs, tmp_path):
    first = build_testset(pairs, RECIPE, tmp_path / "one")
    second = build_testset(pairs, RECIPE, tmp_path / "two")
    pd.testing.assert_frame_equal(first, second)
    case = first.iloc[0]
    ref = read_image(tmp_path / "one" / f"{case.case}_A_ref.tif")
    source = read_image(pairs.set_index("id").loc[case.image_id, "path_A"])
    np.testing.assert_array_equal(ref, source[case.crop_y : case.crop_y + 96, case.crop_x : case.crop_x + 96])
    rgb = read_image(tmp_path / "one" / f"{case.case}_B_flo.tif")
    assert rgb.shape == (96, 96, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(
        read_image(tmp_path / "one" / f"{case.case}_B_flo.tif"), read_image(tmp_path / "two" / f"{case.case}_B_flo.tif")
    )


def test_ground_truth_recovered_by_monomodal_registration(pairs, tmp_path):
    """OpenCV's ECC (independent of this project) finds the recorded transform to < 0.5 px."""
    cases = build_testset(pairs, RECIPE, tmp_path)
    checked = 0
    for case in cases.itertuples():
        reference = read_image(tmp_path / f"{case.case}_A_ref.tif").astype(np.float32)
        floating = read_image(tmp_path / f"{case.case}_A_flo.tif").astype(np.float32)
        warp = np.eye(2, 3, dtype=np.float32)  # ECC's warp maps reference -> floating coordinates
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 500, 1e-8)
        try:
            _, warp = cv2.findTransformECC(reference, floating, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
        except cv2.error:
            continue  # ECC from the identity does not converge for the largest moves
        truth = np.array([getattr(case, f"true_{k}") for k in MATRIX_KEYS]).reshape(2, 3)
        error = geometry.corner_error(geometry.invert(warp.astype(float)), truth, 96, 96)
        if case.stratum == "small":
            assert error < 0.5, case
            checked += 1
    assert checked >= 4


def test_testset_columns_are_those_of_build_testset(tmp_path):
    image = (np.random.default_rng(0).random((120, 120)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "b.tif", image)
    pairs = pd.DataFrame(
        {"id": ["x"], "split": ["test"], "path_A": [str(tmp_path / "a.tif")], "path_B": [str(tmp_path / "b.tif")]}
    )
    recipe = TestSetRecipe(patch_size=32, rotation_deg=5, translation_px=3, strata=(Stratum("all", None, 1),))
    assert tuple(build_testset(pairs, recipe, tmp_path / "out").columns) == TESTSET_COLUMNS


def test_make_testset_checks_the_sizes_then_draws_the_recipe(pairs, tmp_path):
    table = pairs.assign(height=200, width=200)
    table.to_csv(tmp_path / "pairs.csv", index=False)
    strata = [{"name": s.name, "max_displacement_px": s.max_displacement_px, "count": s.count} for s in RECIPE.strata]
    spec = {"recipe": "comir", "patch_size": 96, "rotation_deg": 20, "translation_px": 12, "strata": strata}
    cases = make_testset(spec, RECIPE.seed, tmp_path / "pairs.csv", tmp_path / "made")
    pd.testing.assert_frame_equal(cases, build_testset(pairs, RECIPE, tmp_path / "built"))
    with pytest.raises(InputError, match="smaller than the .* px that this test set's patches"):
        make_testset({**spec, "patch_size": 190}, RECIPE.seed, tmp_path / "pairs.csv", tmp_path / "big")


def test_a_calibration_test_set_is_cut_from_the_validation_images(pairs, tmp_path):
    table = pd.concat([pairs.assign(split="test"), pairs.assign(split="val", id=["v0", "v1"])])
    table = table.assign(height=200, width=200)
    table.to_csv(tmp_path / "pairs.csv", index=False)
    strata = [{"name": s.name, "max_displacement_px": s.max_displacement_px, "count": s.count} for s in RECIPE.strata]
    spec = {"recipe": "comir", "patch_size": 96, "rotation_deg": 20, "translation_px": 12, "strata": strata}
    validation = make_testset({**spec, "split": "val"}, RECIPE.seed, tmp_path / "pairs.csv", tmp_path / "val")
    assert set(validation["image_id"]) == {"v0", "v1"}
    test = make_testset(spec, RECIPE.seed, tmp_path / "pairs.csv", tmp_path / "test")
    assert set(test["image_id"]) == {"img0", "img1"}
    table[table["split"] == "test"].to_csv(tmp_path / "no_val.csv", index=False)
    with pytest.raises(InputError, match="the val split is empty"):
        make_testset({**spec, "split": "val"}, RECIPE.seed, tmp_path / "no_val.csv", tmp_path / "none")


def test_a_test_set_of_named_images_is_cut_from_those_only(pairs, tmp_path):
    table = pd.concat([pairs, pairs.assign(id=["img2", "img3"])]).assign(height=200, width=200)
    table.to_csv(tmp_path / "pairs.csv", index=False)
    strata = [{"name": s.name, "max_displacement_px": s.max_displacement_px, "count": s.count} for s in RECIPE.strata]
    spec = {"recipe": "comir", "patch_size": 96, "rotation_deg": 20, "translation_px": 12, "strata": strata}
    named = make_testset({**spec, "images": ["img3", "img0"]}, RECIPE.seed, tmp_path / "pairs.csv", tmp_path / "named")
    assert set(named["image_id"]) == {"img0", "img3"}
    # The same draws as a test set of a split holding those two images alone, in the table's order.
    alone = table[table["id"].isin(["img0", "img3"])].drop(columns=["height", "width"])
    pd.testing.assert_frame_equal(named, build_testset(alone, RECIPE, tmp_path / "alone"))
    with pytest.raises(InputError, match=r"\['v0'\] are not in the test split, whose images are \['img0', 'img1'"):
        make_testset({**spec, "images": ["img0", "v0"]}, RECIPE.seed, tmp_path / "pairs.csv", tmp_path / "bad")


def test_too_small_image_names_the_file(tmp_path):
    a, b = tmp_path / "small_a.tif", tmp_path / "small_b.tif"
    tifffile.imwrite(a, texture(100, 0))
    tifffile.imwrite(b, texture(100, 0))
    pairs = pd.DataFrame([{"id": "x", "split": "test", "path_A": str(a), "path_B": str(b)}])
    with pytest.raises(InputError, match="small_a.tif.*too small"):
        build_testset(pairs, RECIPE, tmp_path / "out")


def test_min_source_size_covers_every_sampled_pixel():
    recipe = TestSetRecipe(patch_size=834, rotation_deg=30, translation_px=100)
    half = 833 / 2
    worst = geometry.rigid_matrix(np.radians(30), 100, 100, (half, half))
    reach = np.abs(geometry.apply(geometry.invert(worst), geometry.corners(834, 834)) - half).max()
    assert recipe.max_reach() >= reach
    assert recipe.min_source_size() < 2048  # the paper's cores are large enough


SCALED = TestSetRecipe(
    patch_size=96,
    rotation_deg=20,
    translation_px=12,
    strata=(Stratum("small", 10, 5), Stratum("medium", 20, 5), Stratum("large", None, 4)),
    scale_range=(0.8, 1.25),
    seed=3,
)


def test_a_scale_range_draws_similarity_cases_within_it():
    cases = draw_transforms(SCALED, np.random.default_rng(0))
    assert cases["scale"].between(0.8, 1.25).all() and cases["scale"].std() > 0.05
    truth = cases[[f"true_{k}" for k in MATRIX_KEYS]].to_numpy().reshape(-1, 2, 3)
    np.testing.assert_allclose(geometry.scale_factor(truth), 1 / cases["scale"])  # the truth undoes the zoom
    for matrix in truth:
        np.testing.assert_allclose(geometry.nearest_transform("similarity", matrix, (0, 0)), matrix, atol=1e-12)
    assert cases["stratum"].value_counts().to_dict() == {"small": 5, "medium": 5, "large": 4}
    recomputed = geometry.corner_error(geometry.IDENTITY, truth, 96, 96)
    np.testing.assert_allclose(cases["initial_displacement_px"], recomputed)
    rigid = draw_transforms(RECIPE, np.random.default_rng(0))
    np.testing.assert_allclose(rigid["scale"].to_numpy(), np.ones(14))


def test_scaled_floating_patches_show_the_reference_zoomed_by_the_truth(pairs, tmp_path):
    cases = build_testset(pairs, SCALED, tmp_path)
    for case in cases.itertuples():
        reference = read_image(tmp_path / f"{case.case}_A_ref.tif").astype(np.float32)
        floating = read_image(tmp_path / f"{case.case}_A_flo.tif").astype(np.float32)
        truth = np.array([getattr(case, f"true_{k}") for k in MATRIX_KEYS]).reshape(2, 3)
        # The floating patch sent back by the truth equals the reference where it lands inside.
        back = cv2.warpAffine(floating, truth, (96, 96), flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(np.ones_like(floating), truth, (96, 96), flags=cv2.INTER_NEAREST) > 0
        inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.corrcoef(back[inside], reference[inside])[0, 1] > 0.97, case


def test_the_source_size_bound_covers_zoomed_out_cases():
    recipe = TestSetRecipe(patch_size=256, rotation_deg=30, translation_px=31, scale_range=(0.8, 1.25))
    worst = geometry.compose(
        geometry.rigid_matrix(np.radians(30), 31, 31, (127.5, 127.5)),
        np.array([[0.8, 0, 127.5 * 0.2], [0, 0.8, 127.5 * 0.2]]),
    )
    reach = np.abs(geometry.apply(geometry.invert(worst), geometry.corners(256, 256)) - 127.5).max()
    assert recipe.max_reach() >= reach
    assert TestSetRecipe(patch_size=256, rotation_deg=30, translation_px=31).max_reach() < reach


def test_a_shift_degrades_only_its_modality_and_is_reproducible(pairs, tmp_path):
    """Stress test sets (comir.imaging.shifts): B (RGB here) stain-shifted, A's files byte for byte unchanged."""
    from dataclasses import replace

    from comir.imaging.shifts import Shift, case_rng

    plain = build_testset(pairs, RECIPE, tmp_path / "plain")
    shift = Shift("B", "stain", 1.0)
    shifted = build_testset(pairs, replace(RECIPE, shift=shift), tmp_path / "shifted")
    again = build_testset(pairs, replace(RECIPE, shift=shift), tmp_path / "again")
    pd.testing.assert_frame_equal(again, shifted)
    assert tuple(shifted.columns) == (*TESTSET_COLUMNS, "shift_modality", "shift_kind", "shift_severity")
    assert (shifted[["shift_modality", "shift_kind", "shift_severity"]].drop_duplicates().values.tolist()
            == [["B", "stain", 1.0]])  # fmt: skip
    pd.testing.assert_frame_equal(shifted[list(TESTSET_COLUMNS)], plain)
    for number, case in enumerate(plain["case"]):
        for kind in ("ref", "flo"):
            name = f"{case}_A_{kind}.tif"
            assert (tmp_path / "shifted" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
            name = f"{case}_B_{kind}.tif"
            assert (tmp_path / "shifted" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
            before, after = read_image(tmp_path / "plain" / name), read_image(tmp_path / "shifted" / name)
            assert after.dtype == np.uint8 and after.shape == before.shape
            assert np.abs(after.astype(int) - before).mean() > 5
        # The case's own draw from the test set's seed, applied to the unshifted patches.
        patches = [read_image(tmp_path / "plain" / f"{case}_B_{kind}.tif") for kind in ("ref", "flo")]
        expected = shift.apply_stored(patches, case_rng(RECIPE.seed, number))
        for kind, patch in zip(("ref", "flo"), expected):
            np.testing.assert_array_equal(read_image(tmp_path / "shifted" / f"{case}_B_{kind}.tif"), patch)


def test_a_shifted_prebuilt_test_set_equals_one_shifted_while_built(pairs, tmp_path):
    from dataclasses import replace

    from comir.imaging.shifts import Shift
    from comir.testset import shift_written_testset

    shift = Shift("A", "sparsity", 0.5)
    plain = build_testset(pairs, RECIPE, tmp_path / "imported")
    cases = shift_written_testset(plain, tmp_path / "imported", shift, RECIPE.seed)
    built = build_testset(pairs, replace(RECIPE, shift=shift), tmp_path / "built")
    pd.testing.assert_frame_equal(cases, built)
    for path in sorted((tmp_path / "built").iterdir()):
        np.testing.assert_array_equal(read_image(path), read_image(tmp_path / "imported" / path.name))
    ref = read_image(tmp_path / "built" / f"{plain['case'][0]}_A_ref.tif")
    assert (ref > 0).mean() == pytest.approx(0.525, abs=0.02)  # q = 47.5: the brightest 52.5 % survive


def test_make_testset_reads_the_shift_and_the_full_scale(pairs, tmp_path):
    table = pairs.assign(height=200, width=200)
    table.to_csv(tmp_path / "pairs.csv", index=False)
    strata = [{"name": s.name, "max_displacement_px": s.max_displacement_px, "count": s.count} for s in RECIPE.strata]
    spec = {"recipe": "comir", "patch_size": 96, "rotation_deg": 20, "translation_px": 12, "strata": strata,
            "shift": {"modality": "A", "kind": "gain", "severity": 0.5}}  # fmt: skip
    recipe = TestSetRecipe.from_config(spec, RECIPE.seed)
    assert recipe.shift is not None and (recipe.shift.kind, recipe.shift.severity) == ("gain", 0.5)
    assert TestSetRecipe.from_config({k: v for k, v in spec.items() if k != "shift"}, 3).shift is None
    modalities = {"A": {"name": "a", "channels": 1, "max_value": 127.5}, "B": {"name": "b", "channels": 3}}
    make_testset(spec, RECIPE.seed, tmp_path / "pairs.csv", tmp_path / "made", modalities=modalities)
    build_testset(pairs, RECIPE, tmp_path / "plain")
    name = "case_0000_A_flo.tif"
    before, after = read_image(tmp_path / "plain" / name), read_image(tmp_path / "made" / name)
    # Full scale 127.5: values above it clip to 1 before the gain of 1/2, i.e. to 63.75 -> 64; the
    # rest halve, rounded to the nearest integer (a tie either way: float32 scaling).
    expected = np.minimum(before, 127.5) / 2
    assert np.abs(after - expected).max() <= 0.5 + 1e-4 and after.max() == 64

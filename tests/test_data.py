"""Tests for comir.data: the synthetic data set and the user's folder of pairs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from comir.data import (
    Modality,
    SyntheticSpec,
    discover_pairs,
    generate_pair,
    split_pairs,
    validate_pairs,
    write_dataset,
)
from comir.io import InputError, read_image

BFSHG_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bfshg-dev"

# --------------------------------------------------------------------------- synthetic

SMALL = SyntheticSpec(n_images=4, size=256, seed=3)


@pytest.fixture(scope="module")
def small_pairs():
    return [generate_pair(SMALL, i, return_masks=True) for i in range(3)]


def test_synthetic_shapes_and_dtypes(small_pairs):
    for a, b, masks in small_pairs:
        assert a.shape == (256, 256) and a.dtype == np.uint8
        assert b.shape == (256, 256, 3) and b.dtype == np.uint8
        assert set(masks) == {"fibres_a", "fibres_b", "nuclei", "holes"}
        for mask in masks.values():
            assert mask.shape == (256, 256) and mask.dtype == bool
    a, b = generate_pair(SyntheticSpec(size=64), 0)  # without masks: exactly two arrays
    assert a.shape == (64, 64) and b.shape == (64, 64, 3)


def test_synthetic_is_deterministic(small_pairs):
    a1, b1 = generate_pair(SMALL, 1)  # generated after index 0 in the fixture: order must not matter
    a1_again, b1_again, _ = small_pairs[1]
    np.testing.assert_array_equal(a1, a1_again)
    np.testing.assert_array_equal(b1, b1_again)
    a0, b0, _ = small_pairs[0]
    assert not np.array_equal(a0, a1) and not np.array_equal(b0, b1)
    a_other, b_other = generate_pair(SyntheticSpec(n_images=4, size=256, seed=4), 1)
    assert not np.array_equal(a1, a_other) and not np.array_equal(b1, b_other)
    # the data set size does not change an image
    a_big, _ = generate_pair(SyntheticSpec(n_images=40, size=256, seed=3), 1)
    np.testing.assert_array_equal(a1, a_big)


def _regions(masks):
    fa, fb, nu, ho = masks["fibres_a"], masks["fibres_b"], masks["nuclei"], masks["holes"]
    near = lambda m, n=3: ndi.binary_dilation(m, iterations=n)  # noqa: E731
    return {
        "a_core": ndi.binary_erosion(fa),
        "a_background": ~near(fa) & ~ho,
        "b_fibre": ndi.binary_erosion(fb) & ~near(nu, 2),
        "stroma": ~near(fb) & ~near(nu) & ~near(ho),
        "nucleus": ndi.binary_erosion(nu) & ~near(fa),
    }


def test_fibres_are_bright_in_a_and_darker_pink_in_b(small_pairs):
    for a, b, masks in small_pairs:
        r = _regions(masks)
        assert r["a_core"].sum() > 500 and r["b_fibre"].sum() > 500
        assert a[r["a_core"]].mean() > 60
        assert a[r["a_background"]].mean() < 5
        fibre = b[r["b_fibre"]].astype(float).mean(0)
        stroma = b[r["stroma"]].astype(float).mean(0)
        # more eosin: much less green, still red-dominated (pink-red, not purple)
        assert stroma[1] - fibre[1] > 30
        assert fibre[0] > fibre[1] + 60 and fibre[0] > fibre[2] + 40
        # shared structure overlaps: most of A's fibre pixels are fibre pixels in B
        assert (masks["fibres_a"] & masks["fibres_b"]).sum() > 0.5 * masks["fibres_a"].sum()


def test_nuclei_are_purple_in_b_and_absent_from_a(small_pairs):
    for a, b, masks in small_pairs:
        r = _regions(masks)
        assert r["nucleus"].sum() > 300
        nucleus = b[r["nucleus"]].astype(float).mean(0)
        stroma = b[r["stroma"]].astype(float).mean(0)
        assert nucleus[2] > nucleus[0] + 15  # blue-purple, unlike the red-dominated stroma
        assert stroma[0] > stroma[2] + 25
        assert nucleus.mean() < stroma.mean() - 40  # dark
        assert a[r["nucleus"]].mean() < 5  # nothing in A where nuclei are (away from fibres)
        # holes: white in B, no fibres in either modality
        if masks["holes"].any():
            inner = ndi.binary_erosion(masks["holes"], iterations=2)
            if inner.any():
                assert b[inner].mean() > 220 and a[inner].mean() < 5


def test_structure_is_only_partly_shared(small_pairs):
    a_cv, b_cv, b_only = [], [], 0
    for a, b, masks in small_pairs:
        r = _regions(masks)
        # some fibres of A are invisible in B, and some of B are absent from A
        assert (masks["fibres_a"] & ~ndi.binary_dilation(masks["fibres_b"], iterations=2)).sum() > 100
        b_only += (masks["fibres_b"] & ~ndi.binary_dilation(masks["fibres_a"], iterations=4)).sum()
        core = a[r["a_core"]].astype(float)
        a_cv.append(core.std() / core.mean())
        green = b[r["b_fibre"]][:, 1].astype(float)
        b_cv.append(green.std() / green.mean())
        # A is not a simple intensity function of B
        grey = b.astype(float).mean(2).ravel()
        assert np.corrcoef(grey, a.ravel().astype(float))[0, 1] ** 2 < 0.4
    assert b_only > 300
    # fibre brightness varies a lot in A, fibre strength is roughly uniform in B
    assert min(a_cv) > 0.35
    assert max(b_cv) < 0.25


def test_structure_fills_windows_without_periodicity():
    a, _, masks = generate_pair(SyntheticSpec(size=512, seed=1), 0, return_masks=True)
    fibres = masks["fibres_a"]
    fractions = [fibres[y : y + 128, x : x + 128].mean() for y in range(0, 385, 64) for x in range(0, 385, 64)]
    assert min(fractions) > 0.01  # several fibres in every 128 px training patch
    # no repeating pattern: normalised autocorrelation away from zero lag stays low
    x = a.astype(float) - a.mean()
    n = 1024
    spectrum = np.fft.fft2(x, s=(n, n))
    auto = np.fft.ifft2(np.abs(spectrum) ** 2).real
    overlap = np.fft.ifft2(np.abs(np.fft.fft2(np.ones_like(x), s=(n, n))) ** 2).real
    auto = np.fft.fftshift(auto / np.maximum(overlap, 1.0))
    auto /= auto[n // 2, n // 2]
    yy, xx = np.mgrid[-n // 2 : n // 2, -n // 2 : n // 2]
    lag = np.hypot(yy, xx)
    assert auto[(lag > 20) & (lag < 200)].max() < 0.5


def test_write_dataset_round_trip(tmp_path):
    spec = SyntheticSpec(n_images=3, size=64, seed=5)
    ids = write_dataset(spec, tmp_path, ("SHG", "BF"))
    assert ids == ["syn_000", "syn_001", "syn_002"]
    assert sorted(p.name for p in (tmp_path / "SHG").iterdir()) == [f"{i}.tif" for i in ids]
    assert sorted(p.name for p in (tmp_path / "BF").iterdir()) == [f"{i}.tif" for i in ids]
    for index, pair_id in enumerate(ids):
        a, b = generate_pair(spec, index)
        np.testing.assert_array_equal(read_image(tmp_path / "SHG" / f"{pair_id}.tif"), a)
        np.testing.assert_array_equal(read_image(tmp_path / "BF" / f"{pair_id}.tif"), b)
    modalities = (Modality("SHG", 1), Modality("BF", 3))
    table = discover_pairs(tmp_path, modalities)
    assert list(table["id"]) == ids
    assert validate_pairs(table, modalities, min_size=64)["height"] == 64


def test_synthetic_rejects_bad_parameters(tmp_path):
    with pytest.raises(InputError, match="n_images"):
        SyntheticSpec(n_images=0)
    with pytest.raises(InputError, match="size"):
        SyntheticSpec(size=8)
    with pytest.raises(InputError, match="faint_fraction"):
        SyntheticSpec(faint_fraction=1.5)
    with pytest.raises(InputError, match="differ"):
        write_dataset(SyntheticSpec(n_images=1, size=32), tmp_path, ("X", "X"))
    with pytest.raises(InputError, match="index"):
        generate_pair(SMALL, -1)


# --------------------------------------------------------------------------- pairs

MODS = (Modality("BF", 3), Modality("SHG", 1))


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        data = array[..., ::-1] if array.ndim == 3 else array
        assert cv2.imwrite(str(path), np.ascontiguousarray(data))
    else:
        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 and array.shape[-1] == 3 else None)
    return path


def _rgb(h=40, w=40, value=0):
    return np.full((h, w, 3), value, np.uint8) + np.arange(w, dtype=np.uint8)[None, :, None]


def _grey(h=40, w=40, value=0):
    return np.full((h, w), value, np.uint8) + np.arange(h, dtype=np.uint8)[:, None]


def _make_folder(root: Path, ids=("p1", "p2", "p3")) -> Path:
    for i, key in enumerate(ids):
        _write(root / "BF" / f"{key}.tif", _rgb(value=i))
        _write(root / "SHG" / f"{key}.png", _grey(value=i))
    return root


def test_discover_and_validate_happy_path(tmp_path):
    root = _make_folder(tmp_path / "data", ids=("b", "a", "c"))
    (root / "BF" / "notes.txt").write_text("not an image")
    _write(root / "SHG" / ".p9.tif", _grey())  # hidden (e.g. an unfinished atomic write): ignored
    table = discover_pairs(root, MODS)
    assert list(table.columns) == ["id", "path_A", "path_B"]
    assert list(table["id"]) == ["a", "b", "c"]
    assert all(Path(p).is_absolute() and Path(p).parent.name == "BF" for p in table["path_A"])
    assert table.loc[0, "path_B"].endswith("a.png")
    stats = validate_pairs(table, MODS, min_size=32)
    assert stats["n_pairs"] == 3 and stats["height"] == 40 and stats["width"] == 40
    # only the requested extensions are used
    with pytest.raises(InputError, match="no image pairs"):
        discover_pairs(root, MODS, extensions=(".tiff",))


def test_pairs_of_several_roots_are_pooled_and_an_id_in_two_is_named(tmp_path):
    first = _make_folder(tmp_path / "slide1", ids=("a1", "a2"))
    second = _make_folder(tmp_path / "slide2", ids=("b1",))
    table = discover_pairs([second, first], MODS)
    assert list(table["id"]) == ["a1", "a2", "b1"]
    assert Path(table.loc[2, "path_A"]).parent.parent == second.resolve()
    assert discover_pairs([str(first)], MODS).equals(discover_pairs(first, MODS))
    _make_folder(tmp_path / "slide3", ids=("a2",))
    message = _error(discover_pairs, [first, tmp_path / "slide3"], MODS)
    assert "several data roots" in message
    assert str(first.resolve() / "BF" / "a2.tif") in message
    assert str((tmp_path / "slide3").resolve() / "BF" / "a2.tif") in message
    assert "no data root" in _error(discover_pairs, [], MODS)


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    return str(info.value)


def test_missing_root_and_modality_folder(tmp_path):
    message = _error(discover_pairs, tmp_path / "nowhere", MODS)
    assert "nowhere" in message and "not found" in message
    _write(tmp_path / "d" / "BF" / "x.tif", _rgb())
    message = _error(discover_pairs, tmp_path / "d", MODS)
    assert str(tmp_path / "d" / "SHG") in message


def test_missing_partner_names_the_file_and_expected_place(tmp_path):
    root = _make_folder(tmp_path)
    _write(root / "BF" / "lonely.tif", _rgb())
    _write(root / "SHG" / "orphan.tif", _grey())
    message = _error(discover_pairs, root, MODS)
    assert "missing partner" in message
    assert str(root / "BF" / "lonely.tif") in message and str(root / "SHG" / "lonely") in message
    assert str(root / "SHG" / "orphan.tif") in message and str(root / "BF" / "orphan") in message


def test_duplicate_id_with_two_extensions(tmp_path):
    root = _make_folder(tmp_path)
    _write(root / "SHG" / "p2.tif", _grey())  # p2.png exists too
    message = _error(discover_pairs, root, MODS)
    assert "p2.png" in message and "p2.tif" in message and "'p2'" in message


def test_no_pairs_found(tmp_path):
    (tmp_path / "BF").mkdir()
    (tmp_path / "SHG").mkdir()
    message = _error(discover_pairs, tmp_path, MODS)
    assert "no image pairs" in message and str(tmp_path) in message


def test_corrupt_file(tmp_path):
    root = _make_folder(tmp_path)
    (root / "BF" / "p2.tif").write_bytes(b"this is not a tiff")
    table = discover_pairs(root, MODS)
    message = _error(validate_pairs, table, MODS, 16)
    assert "p2.tif" in message and "cannot read" in message


def test_wrong_channel_count(tmp_path):
    root = _make_folder(tmp_path)
    _write(root / "SHG" / "p3.png", _rgb())  # RGB where one channel is expected
    message = _error(validate_pairs, discover_pairs(root, MODS), MODS, 16)
    assert "p3.png" in message and "found 3 channel" in message and "expected 1" in message and "SHG" in message
    _write(root / "SHG" / "p3.png", _grey())
    _write(root / "BF" / "p1.tif", _rgb()[..., :1].copy().squeeze(-1))
    message = _error(validate_pairs, discover_pairs(root, MODS), MODS, 16)
    assert "p1.tif" in message and "found 1 channel" in message and "expected 3" in message and "BF" in message


def test_size_mismatch_names_both_files_and_shapes(tmp_path):
    root = _make_folder(tmp_path)
    _write(root / "SHG" / "p2.png", _grey(h=36, w=40))
    message = _error(validate_pairs, discover_pairs(root, MODS), MODS, 16)
    assert "p2.tif" in message and "p2.png" in message
    assert "40x40" in message and "36x40" in message and "'p2'" in message


def test_too_small_for_the_patch_size(tmp_path):
    root = _make_folder(tmp_path)
    _write(root / "BF" / "p1.tif", _rgb(h=20, w=40))
    _write(root / "SHG" / "p1.png", _grey(h=20, w=40))
    message = _error(validate_pairs, discover_pairs(root, MODS), MODS, 32)
    assert "p1" in message and "20x40" in message and "min_size 32" in message
    assert validate_pairs(discover_pairs(root, MODS), MODS, 20)["min_height"] == 20


def test_all_problems_are_reported_together(tmp_path):
    root = _make_folder(tmp_path)
    _write(root / "SHG" / "p1.png", _rgb())
    _write(root / "SHG" / "p3.png", _grey(h=30))
    message = _error(validate_pairs, discover_pairs(root, MODS), MODS, 16)
    assert "p1.png" in message and "p3.png" in message


# --------------------------------------------------------------------------- splits


def _table(n=10) -> pd.DataFrame:
    ids = [f"id{i:02d}" for i in range(n)]
    return pd.DataFrame({"id": ids, "path_A": [f"/a/{i}.tif" for i in ids], "path_B": [f"/b/{i}.tif" for i in ids]})


def test_split_by_explicit_lists_drops_unlisted_ids():
    out = split_pairs(_table(6), train=["id00", "id01", "id02"], val=["id03"], test=["id05"])
    assert list(out.columns) == ["id", "split", "path_A", "path_B"]
    assert dict(zip(out["id"], out["split"])) == {
        "id00": "train", "id01": "train", "id02": "train", "id03": "val", "id05": "test"
    }
    assert "id04" not in set(out["id"])
    assert out.loc[out["id"] == "id05", "path_A"].item() == "/a/id05.tif"
    # re-splitting a table that already has a split column replaces it
    again = split_pairs(out, train=["id05"], test=["id00"])
    assert dict(zip(again["id"], again["split"])) == {"id00": "test", "id05": "train"}


def test_split_list_errors_name_the_id():
    table = _table(4)
    message = _error(split_pairs, table, train=["id00", "ghost"], test=["id01"])
    assert "ghost" in message and "unknown" in message
    message = _error(split_pairs, table, train=["id00", "id01"], test=["id01"])
    assert "id01" in message and "train" in message and "test" in message
    message = _error(split_pairs, table, train=["id00", "id01"], val=["id02"])
    assert "test" in message  # test must not be empty
    message = _error(split_pairs, table, train=["id00"], test=["id01"], fractions=(0.5, 0.0, 0.5))
    assert "not both" in message
    assert "fractions" in _error(split_pairs, table)


def test_split_by_fractions_is_seeded_and_complete():
    table = _table(20)
    first = split_pairs(table, fractions=(0.6, 0.2, 0.2), seed=7)
    again = split_pairs(table.iloc[::-1], fractions=(0.6, 0.2, 0.2), seed=7)  # row order does not matter
    assignment = dict(zip(first["id"], first["split"]))
    assert assignment == dict(zip(again["id"], again["split"]))
    assert set(assignment) == set(table["id"])  # union = all ids, each id exactly once
    assert len(first) == 20
    counts = first["split"].value_counts().to_dict()
    assert counts == {"train": 12, "val": 4, "test": 4}
    others = [
        dict(zip(s["id"], s["split"]))
        for s in (split_pairs(table, fractions=(0.6, 0.2, 0.2), seed=k) for k in range(5))
    ]
    assert sum(o != assignment for o in others) >= 4  # different seeds give different splits


def test_split_fractions_small_and_bad():
    out = split_pairs(_table(3), fractions=(0.8, 0.1, 0.1), seed=0)
    assert sorted(out["split"]) == ["test", "train", "val"]  # each split non-empty when possible
    out = split_pairs(_table(5), fractions=(0.75, 0.0, 0.25), seed=0)
    assert "val" not in set(out["split"]) and (out["split"] == "test").sum() >= 1
    assert "sum to 1" in _error(split_pairs, _table(5), fractions=(0.5, 0.2, 0.2))
    message = _error(split_pairs, _table(1), fractions=(0.8, 0.0, 0.2))
    assert "train" in message and "test" in message
    assert "test" in _error(split_pairs, _table(5), fractions=(0.9, 0.1, 0.0))


def test_real_bfshg_dev_folder_is_accepted():
    if not (BFSHG_DEV / "BF").is_dir() or not (BFSHG_DEV / "SHG").is_dir():
        pytest.skip(f"real example data not present at {BFSHG_DEV}")
    modalities = (Modality("BF", 3), Modality("SHG", 1))
    table = discover_pairs(BFSHG_DEV, modalities)
    assert len(table) >= 2
    stats = validate_pairs(table, modalities, min_size=256)
    assert stats["height"] >= 256 and stats["width"] >= 256
    split = split_pairs(table, fractions=(0.5, 0.0, 0.5), seed=0)
    assert set(split["split"]) == {"train", "test"}


# --------------------------------------------------------------------------- pixel values


def test_non_finite_pixels_are_rejected_with_the_file_named(tmp_path):
    root = _make_folder(tmp_path)
    grey = _grey().astype(np.float32) / 255
    grey[3, 4] = np.nan
    grey[5, 6] = np.inf
    _write(root / "SHG" / "p2.png", _grey())
    (root / "SHG" / "p2.png").unlink()
    _write(root / "SHG" / "p2.tif", grey)
    message = _error(validate_pairs, discover_pairs(root, MODS), MODS)
    assert "p2.tif" in message and "2 pixel(s) are NaN or infinite" in message and "SHG" in message


def test_values_outside_the_expected_range_are_warned_about(tmp_path, caplog):
    root = _make_folder(tmp_path)
    # 12-bit data in 16-bit files: divided by 65535 the image would be nearly black
    twelve_bit = (_grey().astype(np.uint16) * 16).astype(np.uint16)
    for key in ("p1", "p2", "p3"):
        (root / "SHG" / f"{key}.png").unlink()
        _write(root / "SHG" / f"{key}.tif", twelve_bit)
    table = discover_pairs(root, MODS)
    with caplog.at_level("WARNING", logger="comir.data.pairs"):
        validate_pairs(table, MODS)
    assert "3 SHG image(s)" in caplog.text and "modalities.B.max_value" in caplog.text and "uint16" in caplog.text
    caplog.clear()
    told = (MODS[0], Modality("SHG", 1, max_value=4095))
    with caplog.at_level("WARNING", logger="comir.data.pairs"):
        validate_pairs(table, told)
    assert caplog.text == ""  # max_value says what full intensity is: nothing to warn about
    floats = _rgb().astype(np.float32) * 2.0  # floats far outside [0, 1]
    _write(root / "BF" / "p1.tif", floats)
    with caplog.at_level("WARNING", logger="comir.data.pairs"):
        validate_pairs(table, told)
    assert "1 BF image(s)" in caplog.text and "p1.tif" in caplog.text and "outside [0, 1]" in caplog.text


def test_prepare_image_scales_by_max_value_and_rejects_non_finite_pixels():
    from comir.imaging.preprocess import prepare_image

    image = np.array([[0, 2048, 4095]], np.uint16)
    np.testing.assert_allclose(prepare_image(image, 1, False, "x", max_value=4095)[0], [[0, 2048 / 4095, 1]], rtol=1e-6)
    np.testing.assert_allclose(prepare_image(image, 1, False, "x")[0], image / 65535, rtol=1e-6)
    logged = prepare_image(np.array([[-0.5, 1.0]], np.float32), 1, True, "x")
    np.testing.assert_allclose(logged[0], [[0.0, 1.0]], atol=1e-7)  # log1p of max(x, 0): no NaN
    with pytest.raises(InputError, match="bad.tif has NaN or infinite pixels"):
        prepare_image(np.array([[0.1, np.nan]], np.float32), 1, False, "bad.tif")


def test_each_stage_checks_the_image_size_it_needs():
    from comir.imaging.preprocess import check_image_sizes

    pairs = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "split": ["train", "train", "test"],
            "path_A": ["/d/A/a.tif", "/d/A/b.tif", "/d/A/c.tif"],
            "path_B": ["/d/B/a.tif", "/d/B/b.tif", "/d/B/c.tif"],
            "height": [512, 150, 300],
            "width": [512, 400, 300],
        }
    )
    check_image_sizes(pairs, ["train"], 150, "training")
    message = _error(check_image_sizes, pairs, ["train"], 182, "training (128 px patches cut from 182 px crops)")
    assert "/d/A/b.tif" in message and "150x400" in message and "182 px" in message and "/d/A/a.tif" not in message
    check_image_sizes(pairs, ["test"], 300, "this test set")
    assert "/d/A/c.tif" in _error(check_image_sizes, pairs, ["test"], 301, "this test set")

"""Recognising and converting the paper's Zenodo records (on fake records with the real naming)."""

import logging
import zipfile

import numpy as np
import pytest
import tifffile

from comir import geometry
from comir.data.convert import (
    DEFAULT_ZURICH_CHANNEL_ORDER,
    RecordOptions,
    band_correlations,
    convert_pairs,
    convert_record,
    nir_channel,
)
from comir.data.layouts.detect import detect_layout
from comir.data.layouts.tree import split_of_folder
from comir.geometry import MATRIX_KEYS
from comir.io import InputError, read_image, to_float01
from comir.testset import TESTSET_COLUMNS
from comir.testset.prebuilt import import_prebuilt_testset
from helpers.fake_records import (
    build_fake_bfshg,
    build_fake_multiregeval_eval,
    build_fake_zurich,
    fake_zurich_bands,
    zip_record,
)


def truths_of(cases):
    return cases[[f"true_{k}" for k in MATRIX_KEYS]].to_numpy(float).reshape(-1, 2, 3)


def assert_truth_recovered(cases, known, key=lambda row: row.image_id):
    truth = truths_of(cases)
    expected = np.stack([known[key(row)] for row in cases.itertuples()])
    errors = [geometry.corner_error(t, e, w, h) for t, e, w, h in zip(truth, expected, cases["width"], cases["height"])]
    assert max(errors) < 1e-6


@pytest.fixture(scope="module")
def comir_record(tmp_path_factory):
    return build_fake_bfshg(tmp_path_factory.mktemp("comir"))


# ----------------------------------------------------------------------------- BF/SHG, Zenodo 3874362


def test_split_folder_names():
    assert split_of_folder("TrainSet") == "train"
    assert split_of_folder("TrainSet2") == "train"
    assert split_of_folder("CNN_Training_Crops") == "train"
    assert split_of_folder("Validation1Set") == "val"
    assert split_of_folder("ValidationSet1") == "val"
    assert split_of_folder("val") == "val"
    assert split_of_folder("Validation2Set") == "tuning"
    assert split_of_folder("Tuning") == "tuning"
    assert split_of_folder("TestSet") == "test"
    assert split_of_folder("test") == "test"
    assert split_of_folder("images_tif") is None


def test_comir_record_detected_and_converted(comir_record, tmp_path, caplog):
    layout = detect_layout(comir_record.path.parent)
    assert layout.kind == "bfshg-comir"
    assert layout.dataset == "bfshg"
    assert layout.counts() == {"train": 4, "val": 3, "tuning": 2, "test": 3}
    assert [t.name for t in layout.testsets] == ["comir"]
    assert layout.testsets[0].modalities() == {"SHG": {"R", "T"}, "BF": {"R", "T"}}
    assert layout.testsets[0].parts[0].metadata.name == "metadata.csv"

    with caplog.at_level(logging.WARNING, logger="comir.data.convert"):
        table = convert_pairs(layout, tmp_path, dataset="bfshg")
    assert "differ from the paper's" in caplog.text
    assert list(table.columns) == ["id", "split", "path_A", "path_B"]
    assert table["split"].value_counts().to_dict() == {"train": 4, "val": 3, "tuning": 2, "test": 3}
    assert set(table.loc[table.split == "train", "id"]) == set(comir_record.ids["train"])
    for row in table.itertuples():
        bf, shg = read_image(row.path_A), read_image(row.path_B)
        assert row.path_A == str(tmp_path / "BF" / f"{row.id}.tif")
        assert bf.shape[2] == 3 and shg.ndim == 2 and bf.dtype == shg.dtype == np.uint8
        assert bf.shape[:2] == shg.shape[:2]
    train = table[table.split == "train"].iloc[0]
    assert read_image(train.path_A).shape[:2] == (160, 160)  # whole cores, not cropped
    test = table[table.split == "test"].iloc[0]
    assert read_image(test.path_A).shape[:2] == (64, 64)  # the TestSet holds only patches: its R patches


def test_comir_testset_imported_with_exact_truth(comir_record, tmp_path):
    layout = detect_layout(comir_record.path)
    cases = import_prebuilt_testset(layout, "comir", tmp_path, {"A": {"name": "BF"}, "B": {"name": "SHG"}})
    assert tuple(cases.columns) == TESTSET_COLUMNS
    assert len(cases) == 3 and cases.attrs["records"]["convention"] == "forward"
    assert cases.attrs["records"]["ncc"]["forward"] > 0.95
    assert_truth_recovered(cases, comir_record.truths["comir"])
    # Same derived quantities as the recipe: displacement, landed corners, drawn transform.
    truth = truths_of(cases)
    np.testing.assert_allclose(
        cases["initial_displacement_px"], geometry.corner_error(geometry.IDENTITY, truth, 64, 64)
    )
    landed = cases[[f"corner{i}_{a}" for i in range(4) for a in "xy"]].to_numpy().reshape(-1, 4, 2)
    np.testing.assert_allclose(landed, geometry.apply(truth, geometry.corners(64, 64)))
    np.testing.assert_allclose(np.degrees(geometry.rotation_angle(truth)), -cases["rotation_deg"], atol=1e-9)
    assert (cases[["crop_x", "crop_y"]] == -1).all().all()
    assert (cases[["width", "height"]] == 64).all().all()
    # Files: slot A = BF, reference = R patch, floating = T patch.
    first = cases.iloc[0]
    bf_ref = read_image(tmp_path / f"{first.case}_A_ref.tif")
    source = read_image(comir_record.path / "TestSet" / f"R_{first.image_id}_BF.tif")
    np.testing.assert_array_equal(bf_ref, source)
    np.testing.assert_array_equal(
        read_image(tmp_path / f"{first.case}_B_flo.tif"),
        read_image(comir_record.path / "TestSet" / f"T_{first.image_id}_SHG.tif"),
    )


def test_inverted_metadata_follow_the_pixels_or_are_rejected(tmp_path, caplog):
    record = build_fake_bfshg(tmp_path / "rec", counts={"train": 2, "test": 4}, metadata="inverse", naming="suffix")
    layout = detect_layout(tmp_path / "rec")
    with pytest.raises(InputError, match="follow the inverse convention, not forward"):
        import_prebuilt_testset(layout, "comir", tmp_path / "forced", ("BF", "SHG"), convention="forward")
    with caplog.at_level(logging.WARNING, logger="comir.testset.prebuilt"):
        cases = import_prebuilt_testset(layout, "comir", tmp_path / "auto", ("BF", "SHG"))
    assert cases.attrs["records"]["convention"] == "inverse"
    assert "not the expected forward one" in caplog.text
    assert_truth_recovered(cases, record.truths["comir"])


@pytest.mark.parametrize("metadata, message", [("mixed", "not consistent"), ("random", "no convention")])
def test_metadata_that_do_not_describe_the_pixels_are_rejected(tmp_path, metadata, message):
    build_fake_bfshg(tmp_path / "rec", counts={"train": 2, "test": 4}, metadata=metadata, seed=1)
    layout = detect_layout(tmp_path / "rec")
    with pytest.raises(InputError, match=message):
        import_prebuilt_testset(layout, "comir", tmp_path / "out", ("BF", "SHG"))
    assert not list((tmp_path / "out").glob("*.tif")) if (tmp_path / "out").exists() else True


def test_transformed_patches_of_one_modality_only_are_reported(tmp_path):
    build_fake_bfshg(tmp_path / "rec", counts={"train": 2, "test": 2}, transformed=("BF",))
    layout = detect_layout(tmp_path / "rec")
    lacks = r"lacks reference \(R\) and transformed \(T\) patches of SHG: found BF: R\+T; SHG: R"
    with pytest.raises(InputError, match=lacks):
        import_prebuilt_testset(layout, "comir", tmp_path / "out", ("BF", "SHG"))


def test_metadata_found_outside_the_test_folder(tmp_path):
    record = build_fake_bfshg(
        tmp_path / "rec", counts={"train": 2, "test": 2}, metadata_folder="Metadata", test_cores=True
    )
    layout = detect_layout(tmp_path / "rec")
    assert layout.counts()["test"] == 2
    assert layout.testsets[0].parts[0].metadata.parent.name == "Metadata"
    cases = import_prebuilt_testset(layout, "comir", tmp_path / "out", ("SHG", "BF"))
    assert_truth_recovered(cases, record.truths["comir"])
    assert read_image(tmp_path / "out" / "case_0000_A_ref.tif").ndim == 2  # slot A = SHG here


def test_missing_metadata_is_reported(tmp_path):
    build_fake_bfshg(tmp_path / "rec", counts={"train": 2, "test": 2}, metadata="none")
    layout = detect_layout(tmp_path / "rec")
    with pytest.raises(InputError, match="no metadata CSV"):
        import_prebuilt_testset(layout, "comir", tmp_path / "out", ("BF", "SHG"))


def test_orphans_and_split_clashes(tmp_path):
    record = build_fake_bfshg(tmp_path / "rec", counts={"train": 3, "test": 1}, testset=False)
    (record.path / "TrainSet" / "1B_A1_BF.tif").unlink()
    layout = detect_layout(tmp_path / "rec")
    assert layout.orphans and "1B_A1_SHG.tif has no BF partner" in layout.orphans[0]
    with pytest.raises(InputError, match="without a partner"):
        convert_pairs(layout, tmp_path / "out", dataset="bfshg")
    table = convert_pairs(layout, tmp_path / "out", dataset="bfshg", options={"allow_orphans": True})
    assert table["split"].value_counts().to_dict() == {"train": 1, "val": 1, "test": 1}  # no val folder: carved
    test_id = record.ids["test"][0]
    for modality in ("SHG", "BF"):
        (record.path / "Validation1Set").mkdir(exist_ok=True)
        tifffile.imwrite(record.path / "Validation1Set" / f"{test_id}_{modality}.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match=f"id '{test_id}' is in both"):
        detect_layout(tmp_path / "rec")


def test_convert_record_wrapper(comir_record, tmp_path):
    import json

    from comir.data.pairs import Modality

    mods = (Modality("BF", 3), Modality("SHG", 1))
    table, description = convert_record(comir_record.path, tmp_path, mods, {"record": 3874362, "url": "x"})
    assert table["split"].value_counts().to_dict() == {"train": 4, "val": 3, "tuning": 2, "test": 3}
    assert description["kind"] == "bfshg-comir" and description["testsets"][0]["name"] == "comir"
    assert description["counts"] == {"train": 4, "val": 3, "tuning": 2, "test": 3}
    json.dumps(description)


# ----------------------------------------------------------------------------- BF/SHG, MultiRegEval full cores


def test_multiregeval_cores_detected_with_carved_splits(tmp_path):
    record = build_fake_bfshg(tmp_path, style="multiregeval", counts={"train": 6, "val": 4, "tuning": 2, "test": 3})
    layout = detect_layout(tmp_path)
    assert layout.kind == "bfshg-multiregeval"
    assert layout.counts() == {"train": 12, "test": 3}  # WSI/train holds every non-test core
    assert any("CNN_Training_Crops" in note and "ignored" in note for note in layout.notes)
    assert [t.name for t in layout.testsets] == ["rotationonly"]
    table = convert_pairs(layout, tmp_path / "out", dataset="bfshg", options=RecordOptions(seed=3))
    counts = table["split"].value_counts().to_dict()
    assert counts == {"train": 7, "val": 4, "tuning": 1, "test": 3}  # 25/72 and 7/72 of 12, seeded
    again = convert_pairs(layout, tmp_path / "out2", dataset="bfshg", options=RecordOptions(seed=3))
    assert table["split"].tolist() == again["split"].tolist()
    explicit = convert_pairs(layout, tmp_path / "out3", dataset="bfshg", options={"carve_val": 2, "carve_tuning": 0})
    assert explicit["split"].value_counts().to_dict() == {"train": 10, "val": 2, "test": 3}
    shg = read_image(table.loc[table.split == "train", "path_B"].iloc[0])
    assert shg.ndim == 2  # _MI files became SHG
    assert set(table["id"]) == set(sum(record.ids.values(), []))
    with pytest.raises(InputError, match="no metadata CSV"):
        import_prebuilt_testset(layout, "rotationonly", tmp_path / "ts", ("BF", "SHG"))


# ----------------------------------------------------------------------------- MultiRegEval evaluation patches


def test_multiregeval_evaluation_patches(tmp_path):
    record = build_fake_multiregeval_eval(tmp_path)
    layout = detect_layout(tmp_path)
    assert layout.kind == "multiregeval-eval" and layout.dataset == "mixed"
    names = [t.name for t in layout.testsets]
    assert names == ["multiregeval_eliceiri", "multiregeval_zurich_fold1"]
    with pytest.raises(InputError, match="no aligned BF/SHG pairs"):
        convert_pairs(replace_dataset(layout, "bfshg"), tmp_path / "pairs", dataset="bfshg")
    with pytest.raises(InputError, match="is an evaluation record"):
        convert_record(tmp_path, tmp_path / "pairs", ("BF", "SHG"))

    cases = import_prebuilt_testset(layout, "multiregeval_eliceiri", tmp_path / "eli", ("BF", "SHG"))
    assert cases["stratum"].value_counts().to_dict() == {"tlevel1": 3, "tlevel2": 3}
    assert cases.attrs["records"]["convention"] == "forward"
    assert_truth_recovered(cases, record.truths["multiregeval_eliceiri"], key=lambda r: f"{r.stratum}/{r.image_id}")
    assert read_image(tmp_path / "eli" / "case_0000_A_ref.tif").shape == (48, 48, 3)  # A = BF (folder B)

    zurich = import_prebuilt_testset(layout, "multiregeval_zurich_fold1", tmp_path / "zh", ("RGB", "NIR"))
    assert_truth_recovered(
        zurich, record.truths["multiregeval_zurich_fold1"], key=lambda r: f"{r.stratum}/{r.image_id}"
    )
    for row in zurich.itertuples():
        rgb = read_image(tmp_path / "zh" / f"{row.case}_A_ref.tif")
        np.testing.assert_array_equal(rgb, record.sources[f"{row.stratum}/{row.image_id}/RGB"])  # B,G,R -> R,G,B
        assert read_image(tmp_path / "zh" / f"{row.case}_B_flo.tif").ndim == 2


def test_evaluation_record_unpacked_without_its_top_folder(tmp_path):
    record = build_fake_multiregeval_eval(tmp_path, zurich_fold=None, levels=1)
    layout = detect_layout(record.path / "Eliceiri_patches")
    assert layout.kind == "multiregeval-eval" and layout.dataset == "bfshg"
    assert [t.name for t in layout.testsets] == ["multiregeval_eliceiri"]


def replace_dataset(layout, dataset):
    from dataclasses import replace

    return replace(layout, dataset=dataset)


# ----------------------------------------------------------------------------- Zurich


def test_zurich_default_channel_order_is_the_authors_code():
    assert DEFAULT_ZURICH_CHANNEL_ORDER == ("B", "G", "R", "NIR")
    assert RecordOptions().zurich_channel_order == ("B", "G", "R", "NIR")


def test_nir_detector_on_realistic_bands():
    bands = fake_zurich_bands(96, 128, seed=4)
    stored = np.stack([bands[c] for c in ("B", "G", "R", "NIR")], axis=-1)
    corr = band_correlations(stored)
    assert corr[:3, :3].min() > 0.9  # visible bands strongly inter-correlated
    assert np.abs(corr[3, :3]).max() < 0.5
    assert nir_channel(stored) == 3
    paper_text_order = np.stack([bands[c] for c in ("NIR", "B", "G", "R")], axis=-1)
    assert nir_channel(paper_text_order) == 0
    constant = stored.copy()
    constant[..., 1] = 7
    assert np.isfinite(band_correlations(constant)).all()


def test_zurich_record_converted_with_paper_split(tmp_path, caplog):
    record = build_fake_zurich(tmp_path, ids=(10, 11, 12, 3))
    layout = detect_layout(tmp_path)
    assert layout.kind == "zurich" and layout.counts() == {"images": 4}
    with caplog.at_level(logging.WARNING, logger="comir.data.convert"):
        table = convert_pairs(layout, tmp_path / "out", dataset="zurich")
    assert "Zurich channel order" not in caplog.text
    assert table[["id", "split"]].values.tolist() == [["zh10", "train"], ["zh11", "val"], ["zh12", "test"]]
    assert table.attrs["records"]["channel_check"]["detected_nir"] == 3
    for row in table.itertuples():
        rgb, nir = read_image(row.path_A), read_image(row.path_B)
        assert rgb.dtype == nir.dtype == np.float32 and rgb.shape[2] == 3 and nir.ndim == 2
        assert 0 <= rgb.min() and rgb.max() <= 1 and 0 <= nir.min() and nir.max() <= 1
        np.testing.assert_array_equal(to_float01(rgb), rgb)  # float32 is taken as already in [0, 1]
        for index, band in enumerate("RGB"):
            np.testing.assert_allclose(rgb[..., index], record.sources[f"{row.id}/{band}"] / 4096.0, rtol=1e-6)
        np.testing.assert_allclose(nir, record.sources[f"{row.id}/NIR"] / 4096.0, rtol=1e-6)
    assert (tmp_path / "out" / "RGB" / "zh3.tif").exists()  # every image converted, only the split listed


def test_zurich_channel_order_disagreement_is_logged(tmp_path, caplog):
    build_fake_zurich(tmp_path, ids=(10, 11, 12), channel_order=("NIR", "B", "G", "R"))
    layout = detect_layout(tmp_path)
    with caplog.at_level(logging.WARNING, logger="comir.data.convert"):
        table = convert_pairs(layout, tmp_path / "out", dataset="zurich")
    assert "puts NIR in channel 3" in caplog.text and "channel 0 is the band least correlated" in caplog.text
    assert table.attrs["records"]["channel_check"]["detected_nir"] == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="comir.data.convert"):
        order = {"zurich_channel_order": ["NIR", "B", "G", "R"]}
        convert_pairs(layout, tmp_path / "out2", dataset="zurich", options=order)
    assert "Zurich channel order" not in caplog.text


def test_zurich_folds(tmp_path):
    build_fake_zurich(tmp_path, size_range=(40, 48))
    layout = detect_layout(tmp_path)
    modalities = {"A": {"name": "RGB"}, "B": {"name": "NIR"}}
    table, _ = convert_record(tmp_path, tmp_path / "out", modalities, {"split": "fold2"})
    split = dict(zip(table["id"], table["split"]))
    assert {i for i, s in split.items() if s == "test"} == {f"zh{n}" for n in (10, 1, 13, 4, 11, 6, 16)}
    assert [i for i, s in split.items() if s == "val"] == ["zh14"]
    assert sum(s == "train" for s in split.values()) == 12
    with pytest.raises(InputError, match="zurich_split must be"):
        convert_pairs(layout, tmp_path / "o", dataset="zurich", options={"zurich_split": "fold4"})
    with pytest.raises(InputError, match="not bfshg"):
        convert_pairs(layout, tmp_path / "o", dataset="bfshg")


def test_one_zurich_scene_is_cut_into_strips(tmp_path):
    record = build_fake_zurich(tmp_path, ids=(17, 3), size_range=(100, 100))
    modalities = {"A": {"name": "RGB"}, "B": {"name": "NIR"}}
    strips = {"image": "zh17", "train": [0.0, 0.5], "val": [0.5, 0.6], "test": [0.6, 1.0]}
    table, _ = convert_record(tmp_path, tmp_path / "out", modalities, {"split": "strips", "strips": strips})
    assert table[["id", "split"]].values.tolist() == [["zh17-train", "train"], ["zh17-val", "val"],
                                                       ["zh17-test", "test"]]  # fmt: skip
    nir = record.sources["zh17/NIR"] / 4096.0
    for row, (x0, x1) in zip(table.itertuples(), [(0, 50), (50, 60), (60, 100)]):
        np.testing.assert_allclose(read_image(row.path_B), nir[:, x0:x1], rtol=1e-6)
    assert not (tmp_path / "out" / "RGB" / "zh3.tif").exists()  # only the cut scene is converted
    layout = detect_layout(tmp_path)
    bad = [
        ({**strips, "val": [0.4, 0.6]}, "overlap"),
        ({**strips, "test": [0.6, 0.6]}, "empty"),
        ({**strips, "image": "zh5"}, "needs zurich_strips.image"),
    ]
    for options, message in bad:
        with pytest.raises(InputError, match=message):
            convert_pairs(layout, tmp_path / "o", dataset="zurich",
                          options={"zurich_split": "strips", "zurich_strips": options})  # fmt: skip


def test_zurich_missing_split_image(tmp_path):
    build_fake_zurich(tmp_path, ids=(10, 11))
    with pytest.raises(InputError, match="needs zh12"):
        convert_pairs(detect_layout(tmp_path), tmp_path / "out", dataset="zurich")


# ----------------------------------------------------------------------------- unknown layouts, zip


def test_unrecognised_layout_shows_the_tree(tmp_path):
    tree = {"scans/day1": ["img_001.tif", "img_002.tif", "img_003.tif", "img_004.tif"], "docs": ["readme.txt"]}
    for folder, names in tree.items():
        (tmp_path / folder).mkdir(parents=True)
        for name in names:
            (tmp_path / folder / name).write_bytes(b"x")
    with pytest.raises(InputError) as error:
        detect_layout(tmp_path)
    message = str(error.value)
    assert "unrecognised record layout" in message
    assert "scans/day1/  4 file(s) (.tif 4), e.g. img_001.tif, img_002.tif, img_003.tif, ..." in message
    assert "docs/  1 file(s) (.txt 1)" in message
    assert "expected one of these layouts" in message and "zh<N>.tif" in message
    with pytest.raises(InputError, match="record folder not found"):
        detect_layout(tmp_path / "nope")


def test_zip_record_round_trip(tmp_path, comir_record):
    archive = zip_record(comir_record.path, tmp_path / "BioData.zip")
    with zipfile.ZipFile(archive) as handle:
        names = handle.namelist()
        assert "BioData/TrainSet/1B_A1_SHG.tif" in names and "BioData/TestSet/metadata.csv" in names
        handle.extractall(tmp_path / "unpacked")
    assert detect_layout(tmp_path / "unpacked").counts() == {"train": 4, "val": 3, "tuning": 2, "test": 3}

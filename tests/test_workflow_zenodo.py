"""The data stage of the real workflow on a fake Zenodo record: download, verify, unpack, convert.

A fake BF/SHG record with the naming of Zenodo 3874362 (tiny cores, a transformed test set with
the authors' metadata) is zipped and served by a loopback HTTP server (or a file:// mirror);
Snakemake runs the download, unpack, prepare_data and build_testset rules as users run them.
"""

from pathlib import Path

import pandas as pd
import pytest

from helpers.fake_records import build_fake_bfshg, zip_record
from helpers.fake_zenodo import FakeZenodo
from helpers.snakemake import run_snakemake

RECORD = 3874362
TARGETS = ["results/bf/testsets/paper/cases.csv", "results/bf/testsets/zenodo/cases.csv"]


def snakemake(*args, cwd):
    return run_snakemake("--cores", "2", *args, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def record_files(tmp_path_factory):
    """The fake record's files: one zip archive of BioData/ (key -> bytes), and the truth."""
    folder = tmp_path_factory.mktemp("record")
    fake = build_fake_bfshg(folder, core_size=160, patch_size=64, test_cores=True, seed=3)
    archive = zip_record(fake.path, folder / "BioData.zip")
    return {"BioData.zip": archive.read_bytes()}, fake


def write_config(tmp_path, zenodo: str, *, bad_layout=False) -> Path:
    config = tmp_path / "zenodo.yaml"
    config.write_text(
        f"""datasets:
  bf:
    source: zenodo
    zenodo: {{record: {RECORD}, {zenodo}, retries: 1, timeout_s: 5}}
    modalities: {{A: {{name: BF, channels: 3}}, B: {{name: SHG, channels: 1, log1p: true}}}}
    testsets:
      paper: {{patch_size: 48, rotation_deg: 10, translation_px: 5, strata: [{{name: all, count: 4}}]}}
      zenodo: {{recipe: prebuilt}}
    model: {{init_filters: 8, down_blocks: [1, 1], bottleneck: 1}}
    training: {{patch_size: 32, device: cpu}}
"""
    )
    return config


def test_download_convert_and_import_the_prebuilt_test_set(tmp_path, record_files):
    files, fake = record_files
    with FakeZenodo(RECORD, files) as server:
        config = write_config(tmp_path, f"url: '{server.base_url}'")
        run = snakemake(*TARGETS, "--configfile", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    resources = tmp_path / "resources" / "zenodo" / str(RECORD)
    assert (resources / "MANIFEST.tsv").read_text().splitlines()[1].endswith("\tyes")
    pairs = pd.read_csv(tmp_path / "results/bf/data/pairs.csv")
    assert pairs["split"].value_counts().to_dict() == {"train": 4, "val": 3, "test": 3, "tuning": 2}
    assert (tmp_path / "results/bf/data/layout.json").read_text().count("bfshg-comir") == 1
    recipe = pd.read_csv(tmp_path / TARGETS[0])
    prebuilt = pd.read_csv(tmp_path / TARGETS[1])
    assert len(recipe) == 4 and set(recipe["image_id"]) <= set(pairs.loc[pairs["split"] == "test", "id"])
    # The record's own cases, with the ground truth it was made with.
    truths = fake.truths["comir"]  # the record's one transformed test set
    assert sorted(prebuilt["image_id"]) == sorted(truths)
    for row in prebuilt.itertuples():
        truth = truths[row.image_id]
        assert abs(row.true_tx - truth[0, 2]) < 1e-6 and abs(row.true_a12 - truth[0, 1]) < 1e-9
    for case in prebuilt["case"]:
        for name in (f"{case}_A_ref", f"{case}_A_flo", f"{case}_B_ref", f"{case}_B_flo"):
            assert (tmp_path / "results/bf/testsets/zenodo/images" / f"{name}.tif").is_file()


def test_a_file_mirror_needs_no_server(tmp_path, record_files):
    files, _ = record_files
    mirror = tmp_path / "mirror"
    with FakeZenodo(RECORD, files) as server:  # only to produce the record's JSON, then closed
        record_json = server.record_json()
    mirror.mkdir()
    import json

    (mirror / "record.json").write_text(json.dumps(record_json))
    (mirror / "BioData.zip").write_bytes(files["BioData.zip"])
    config = write_config(tmp_path, f"url: 'http://127.0.0.1:9', mirror: '{mirror.as_uri()}'")
    run = snakemake("results/bf/data/pairs.csv", "--configfile", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]


def test_checksum_mismatch_stops_before_anything_downstream(tmp_path, record_files):
    files, _ = record_files
    with FakeZenodo(RECORD, files) as server:
        server.faults.corrupt.add("BioData.zip")
        config = write_config(tmp_path, f"url: '{server.base_url}'")
        run = snakemake(*TARGETS, "--configfile", str(config), cwd=tmp_path)
    assert run.returncode != 0
    log = (tmp_path / "resources/zenodo/logs" / f"download_{RECORD}.log").read_text()
    assert "BioData.zip" in log and "md5" in log
    resources = tmp_path / "resources" / "zenodo" / str(RECORD)
    assert not (resources / "BioData.zip").exists() and not (resources / "MANIFEST.tsv").exists()
    assert not (tmp_path / "results").exists()


def test_offline_without_local_files_says_what_to_place_where(tmp_path):
    config = write_config(tmp_path, "url: 'http://127.0.0.1:9'")
    run = snakemake("results/bf/data/pairs.csv", "--configfile", str(config), cwd=tmp_path)
    assert run.returncode != 0
    log = (tmp_path / "resources/zenodo/logs" / f"download_{RECORD}.log").read_text()
    assert f"api/records/{RECORD}" in log and "local_dir" in log and "mirror" in log


def test_local_directory_mode_and_an_unrecognised_layout(tmp_path, record_files):
    files, _ = record_files
    local = tmp_path / "staged"
    local.mkdir()
    (local / "BioData.zip").write_bytes(files["BioData.zip"])
    config = write_config(tmp_path, f"url: 'http://127.0.0.1:9', local_dir: '{local}'")
    run = snakemake("results/bf/data/pairs.csv", "--configfile", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (local / "BioData.zip").read_bytes() == files["BioData.zip"]  # the user's file, untouched
    # A record whose folders match no known layout stops prepare_data with what was found.
    other = tmp_path / "other"
    (other / "staged").mkdir(parents=True)
    import zipfile

    with zipfile.ZipFile(other / "staged" / "Stuff.zip", "w") as archive:
        archive.writestr("Stuff/holiday/photo_001.jpg", b"not an image of the record")
    config = write_config(other, f"url: 'http://127.0.0.1:9', local_dir: '{other / 'staged'}'")
    run = snakemake("results/bf/data/pairs.csv", "--configfile", str(config), cwd=other)
    assert run.returncode != 0
    log = (other / "results/bf/logs/prepare_data.log").read_text()
    assert "photo_001.jpg" in log and "holiday" in log
    assert not (other / "results/bf/data/pairs.csv").exists()

"""Tests for comir.data.zenodo against a loopback fake Zenodo (tests/helpers/fake_zenodo.py): no network."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import runpy
import socket
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from comir.data.zenodo import transfer
from comir.data.zenodo.download import download_record
from comir.data.zenodo.record import DownloadError, RecordFile, RecordUnavailable, parse_record
from comir.data.zenodo.unpack import unpack, unpack_record
from comir.io import InputError
from helpers.fake_zenodo import RECORD, FakeZenodo, corrupted

RID = 4242
FAST = {"retries": 3, "backoff_s": 0.001, "timeout_s": 5.0, "progress": False}
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download.py"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def payloads() -> dict[str, bytes]:
    rng = random.Random(0)
    return {"images.zip": rng.randbytes(300_000), "labels v2.tar.gz": rng.randbytes(200_000), "README.md": b"# fake\n"}


@pytest.fixture
def server(payloads):
    with FakeZenodo(RID, payloads) as fake:
        yield fake


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens: connections are refused, like an offline node."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def read_manifest(dest: Path) -> list[list[str]]:
    return [line.split("\t") for line in (dest / "MANIFEST.tsv").read_text().splitlines()]


def expected_manifest(payloads: dict[str, bytes], verified: str = "yes") -> list[list[str]]:
    return [["key", "size", "md5", "verified"]] + [[k, str(len(v)), md5(v), verified] for k, v in payloads.items()]


def write_folder(folder: Path, payloads: dict[str, bytes], record: dict | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if record is not None:
        (folder / "record.json").write_text(json.dumps(record))
    for key, data in payloads.items():
        (folder / key).write_bytes(data)


# --------------------------------------------------------------------------- download


def test_full_download(tmp_path, server, payloads):
    dest = tmp_path / "rec"
    paths = download_record(RID, dest, base_url=server.base_url, **FAST)
    assert paths == [dest / key for key in payloads]
    for path in paths:
        assert path.read_bytes() == payloads[path.name]
    assert read_manifest(dest) == expected_manifest(payloads)
    assert json.loads((dest / "record.json").read_text()) == server.record_json()
    assert sorted(p.name for p in dest.iterdir()) == sorted([*payloads, "record.json", "MANIFEST.tsv"])
    assert [r.path for r in server.requests][0] == f"/api/records/{RID}"
    assert len(server.requests) == 1 + len(payloads)
    assert all(r.user_agent.startswith("comir/") for r in server.requests)


def test_resume_within_a_run_after_a_dropped_connection(tmp_path, server, payloads):
    server.faults.drop_after["images.zip"] = 100_000
    dest = tmp_path / "rec"
    download_record(RID, dest, base_url=server.base_url, **FAST)
    requests = server.file_requests("images.zip")
    assert [(r.range, r.status) for r in requests] == [(None, 200), ("bytes=100000-", 206)]
    assert (dest / "images.zip").read_bytes() == payloads["images.zip"]


def test_resume_in_a_later_run(tmp_path, server, payloads):
    server.faults.drop_after["images.zip"] = 123_456
    dest = tmp_path / "rec"
    with pytest.raises(
        DownloadError, match=r"images\.zip: download from .* failed.*run again to resume from the 123456 bytes"
    ):
        download_record(RID, dest, base_url=server.base_url, **{**FAST, "retries": 0})
    assert (dest / "images.zip.part").stat().st_size == 123_456
    assert not (dest / "MANIFEST.tsv").exists()

    download_record(RID, dest, base_url=server.base_url, **FAST)
    assert server.file_requests("images.zip")[-1].range == "bytes=123456-"
    assert (dest / "images.zip").read_bytes() == payloads["images.zip"]
    assert not (dest / "images.zip.part").exists()
    assert read_manifest(dest) == expected_manifest(payloads)


def test_server_ignoring_range_restarts_from_zero(tmp_path, server, payloads):
    dest = tmp_path / "rec"
    dest.mkdir()
    (dest / "images.zip.part").write_bytes(b"x" * 5000)  # not even a prefix of the file
    server.faults.ignore_range.add("images.zip")
    download_record(RID, dest, base_url=server.base_url, **FAST)
    assert [(r.range, r.status) for r in server.file_requests("images.zip")] == [("bytes=5000-", 200)]
    assert (dest / "images.zip").read_bytes() == payloads["images.zip"]


def test_retries_after_server_errors_with_exponential_backoff(tmp_path, server, payloads, monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(transfer.time, "sleep", delays.append)
    server.faults.errors_500[RECORD] = 1
    server.faults.errors_500["images.zip"] = 3
    dest = tmp_path / "rec"
    download_record(RID, dest, base_url=server.base_url, retries=3, backoff_s=0.5, timeout_s=5, progress=False)
    assert delays == [0.5, 0.5, 1.0, 2.0]  # the record's JSON once, then the file three times
    assert [r.status for r in server.file_requests("images.zip")] == [500, 500, 500, 200]
    assert read_manifest(dest) == expected_manifest(payloads)


def test_gives_up_after_the_retries(tmp_path, server):
    server.faults.errors_500["images.zip"] = 10
    dest = tmp_path / "rec"
    with pytest.raises(
        DownloadError, match=r"images\.zip: download from http://127\.0\.0\.1.* failed: HTTP 500 .* \(3 attempts\)"
    ):
        download_record(RID, dest, base_url=server.base_url, **{**FAST, "retries": 2})
    assert len(server.file_requests("images.zip")) == 3
    assert not (dest / "MANIFEST.tsv").exists()


def test_missing_record_is_not_retried(tmp_path, server):
    with pytest.raises(DownloadError, match=r"cannot read Zenodo record 999 from .*/api/records/999: HTTP 404") as info:
        download_record(999, tmp_path / "rec", base_url=server.base_url, **FAST)
    assert not isinstance(info.value, RecordUnavailable)
    assert len(server.requests) == 1


def test_checksum_mismatch_deletes_the_file_and_names_it(tmp_path, server, payloads):
    server.faults.corrupt.add("labels v2.tar.gz")
    dest = tmp_path / "rec"
    with pytest.raises(DownloadError) as info:
        download_record(RID, dest, base_url=server.base_url, **FAST)
    message = str(info.value)
    good = payloads["labels v2.tar.gz"]
    assert "labels v2.tar.gz" in message and "corrupt" in message
    expected = f"expected md5 {md5(good)} ({len(good)} bytes), found md5 {md5(corrupted(good))} ({len(good)} bytes)"
    assert expected in message
    assert not (dest / "labels v2.tar.gz").exists() and not (dest / "labels v2.tar.gz.part").exists()
    assert not (dest / "MANIFEST.tsv").exists()
    assert isinstance(info.value, InputError)


def test_server_with_less_than_announced_answers_416_and_fails_verification(tmp_path, server, payloads):
    real = len(payloads["README.md"])
    server.faults.declared_size["README.md"] = real + 10
    dest = tmp_path / "rec"
    with pytest.raises(
        DownloadError,
        match=rf"README\.md .* corrupt: expected md5 \w+ \({real + 10} bytes\), found md5 \w+ \({real} bytes\)",
    ):
        download_record(RID, dest, base_url=server.base_url, **FAST)
    assert [(r.range, r.status) for r in server.file_requests("README.md")] == [(None, 200), (f"bytes={real}-", 416)]
    assert not (dest / "README.md").exists() and not (dest / "README.md.part").exists()


def test_idempotent_rerun_requests_only_the_file_list(tmp_path, server, payloads):
    dest = tmp_path / "rec"
    download_record(RID, dest, base_url=server.base_url, **FAST)
    stamps = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.iterdir() if p.name in payloads}
    del server.requests[:]
    download_record(RID, dest, base_url=server.base_url, **FAST)
    assert [r.key for r in server.requests] == [RECORD]
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.iterdir() if p.name in payloads} == stamps
    assert read_manifest(dest) == expected_manifest(payloads)

    (dest / "README.md").write_bytes(b"edited\n")  # a damaged file is fetched again, alone
    del server.requests[:]
    download_record(RID, dest, base_url=server.base_url, **FAST)
    assert [r.key for r in server.requests] == [RECORD, "README.md"]
    assert (dest / "README.md").read_bytes() == payloads["README.md"]


def test_old_json_shape(tmp_path, payloads):
    with FakeZenodo(RID, payloads, shape="old") as old:
        assert "filename" in old.record_json()["files"][0]
        dest = tmp_path / "rec"
        download_record(RID, dest, base_url=old.base_url, **FAST)
        assert {r.path.split("/")[2] for r in old.requests if r.key != RECORD} == {"files"}  # links.download used
    assert read_manifest(dest) == expected_manifest(payloads)


# --------------------------------------------------------------------------- parsing


def test_parse_record_shapes():
    md5_hex = "0123456789abcdef0123456789abcdef"
    invenio = {"id": "7", "files": {"enabled": True, "entries": {"a.zip": {
        "key": "a.zip", "size": 3, "checksum": f"MD5:{md5_hex.upper()}",
        "links": {"self": "https://x/api/records/7/files/a.zip", "content": "https://x/api/records/7/files/a.zip/content"}}}}}
    record = parse_record(invenio, 7, "test")
    assert record.files == [RecordFile("a.zip", 3, md5_hex, "https://x/api/records/7/files/a.zip/content")]
    no_link = parse_record({"files": [{"key": "b c.tif", "size": 1, "checksum": md5_hex}]}, "7", "test", "https://host/")
    assert no_link.files[0].url == "https://host/api/records/7/files/b%20c.tif/content"
    # a concept id redirects to the latest version, whose id differs
    assert parse_record({"id": 8, "conceptrecid": "7", "files": invenio["files"]}, 7, "test").id == "7"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], r"expected the JSON object of a Zenodo record, found \[1, 2\]"),
        ({"id": 7, "title": "x"}, r"no list of files in record 7 \(keys found: id, title; files: null\)"),
        ({"id": 7, "files": []}, r"lists no files"),
        ({"id": 9, "files": []}, r"describes Zenodo record 9, not 7"),
        ({"files": [{"name": "a.zip", "bytes": 3}]}, r'no known Zenodo shape .* found \{"name": "a.zip", "bytes": 3\}'),
        ({"files": [{"key": "a", "size": "3", "checksum": "md5:" + "0" * 32}]}, r'found \{"key": "a", "size": "3"'),
        ({"files": [{"key": "a", "size": 3, "checksum": "sha256:" + "0" * 64}]},
         r"'a' of record 7 has no md5 checksum; found 'sha256:0"),
        ({"files": [{"key": "../a", "size": 3, "checksum": "0" * 32}]},
         r"a file named '\.\./a', which is not a usable file name"),
        ({"files": [{"key": "record.json", "size": 3, "checksum": "0" * 32}]}, r"named 'record\.json'"),
    ],
)
def test_parse_record_rejects_unknown_shapes(data, message):
    with pytest.raises(DownloadError, match=message):
        parse_record(data, 7, "record.json")


# --------------------------------------------------------------------------- mirror, local dir, offline


def test_file_mirror(tmp_path, server, payloads, closed_url):
    mirror = tmp_path / "mirror"
    write_folder(mirror, payloads, server.record_json())
    for location in (mirror.as_uri(), str(mirror)):
        dest = tmp_path / f"rec-{len(location)}"
        download_record(RID, dest, base_url=closed_url, mirror=location, **FAST)
        assert read_manifest(dest) == expected_manifest(payloads)
        assert (dest / "images.zip").read_bytes() == payloads["images.zip"]
    assert server.requests == []  # nothing from the record's own links


def test_http_mirror(tmp_path, server, payloads, closed_url):
    dest = tmp_path / "rec"
    download_record(RID, dest, base_url=closed_url, mirror=server.base_url + "/mirror/", **FAST)
    assert sorted(r.path for r in server.requests) == sorted(
        ["/mirror/record.json", "/mirror/images.zip", "/mirror/labels%20v2.tar.gz", "/mirror/README.md"]
    )
    assert read_manifest(dest) == expected_manifest(payloads)


def test_file_mirror_without_the_file(tmp_path, server, payloads, closed_url):
    mirror = tmp_path / "mirror"
    write_folder(mirror, {"images.zip": payloads["images.zip"]}, server.record_json())
    with pytest.raises(
        DownloadError, match=r"labels v2\.tar\.gz: download from file://.*labels%20v2\.tar\.gz failed: .*No such file"
    ) as info:
        download_record(RID, tmp_path / "rec", base_url=closed_url, mirror=mirror.as_uri(), **FAST)
    assert "run again" not in str(info.value)  # retrying cannot help


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode) for p in folder.iterdir()}


def test_local_dir_verified_and_untouched(tmp_path, server, payloads, closed_url):
    local = tmp_path / "local"
    write_folder(local, payloads, server.record_json())
    before = snapshot(local)
    dest = tmp_path / "rec"
    paths = download_record(RID, dest, base_url=closed_url, local_dir=local, **FAST)
    assert [p.read_bytes() for p in paths] == list(payloads.values())
    assert read_manifest(dest) == expected_manifest(payloads)
    assert snapshot(local) == before
    assert server.requests == []
    download_record(RID, dest, base_url=closed_url, local_dir=local, **FAST)  # again: links already there
    assert snapshot(local) == before and read_manifest(dest) == expected_manifest(payloads)


def test_local_dir_missing_and_corrupt_files(tmp_path, server, payloads, closed_url):
    local = tmp_path / "local"
    write_folder(local, {k: v for k, v in payloads.items() if k != "labels v2.tar.gz"}, server.record_json())
    dest = tmp_path / "rec"
    with pytest.raises(DownloadError) as info:
        download_record(RID, dest, base_url=closed_url, local_dir=local, **FAST)
    message = str(info.value)
    good = payloads["labels v2.tar.gz"]
    assert f"record {RID}: 1 file(s) missing from the local directory" in message
    assert f"to place in {local.resolve()}:" in message
    assert f"labels v2.tar.gz  {len(good)} bytes  md5 {md5(good)}" in message
    assert "images.zip" not in message

    (local / "labels v2.tar.gz").write_bytes(good)
    (local / "README.md").write_bytes(b"changed\n")
    before = snapshot(local)
    with pytest.raises(
        DownloadError,
        match=rf"README\.md does not match record {RID}: expected md5 {md5(payloads['README.md'])}.*left untouched",
    ):
        download_record(RID, dest, base_url=closed_url, local_dir=local, **FAST)
    assert snapshot(local) == before
    assert not (dest / "MANIFEST.tsv").exists()


def test_local_dir_verified_against_the_api(tmp_path, server, payloads):
    local = tmp_path / "local"
    write_folder(local, payloads, record=None)
    dest = tmp_path / "rec"
    download_record(RID, dest, base_url=server.base_url, local_dir=local, **FAST)
    assert [r.key for r in server.requests] == [RECORD]
    assert read_manifest(dest) == expected_manifest(payloads)
    assert json.loads((dest / "record.json").read_text()) == server.record_json()
    assert not (local / "record.json").exists()


def test_local_dir_offline_without_record_json_is_unverified(tmp_path, payloads, closed_url, caplog):
    local = tmp_path / "local"
    write_folder(local, payloads, record=None)
    dest = tmp_path / "rec"
    with caplog.at_level(logging.WARNING, logger="comir"):
        download_record(RID, dest, base_url=closed_url, local_dir=local, **FAST)
    assert "UNVERIFIED" in caplog.text
    rows = read_manifest(dest)
    assert rows[0] == ["key", "size", "md5", "verified"]
    assert sorted(rows[1:]) == sorted(expected_manifest(payloads, verified="no")[1:])


def test_offline_with_nothing_local(tmp_path, closed_url):
    dest = tmp_path / "rec"
    with pytest.raises(RecordUnavailable) as info:
        download_record(RID, dest, base_url=closed_url, **FAST)
    message = str(info.value)
    assert f"cannot read the file list of Zenodo record {RID} from {closed_url}/api/records/{RID}: " in message
    assert "Connection refused" in message
    assert "where there is internet" in message and "`mirror`" in message and "`local_dir`" in message
    assert f"record.json (saved from {closed_url}/api/records/{RID})" in message
    assert not (dest / "MANIFEST.tsv").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        RecordUnavailable, match=rf"into the local directory {empty.resolve()}.*\nThe local directory .* holds no files"
    ):
        download_record(RID, dest, base_url=closed_url, local_dir=empty, **FAST)


def test_offline_with_the_file_list_in_dest(tmp_path, server, payloads, closed_url):
    dest = tmp_path / "rec"
    write_folder(dest, {"README.md": payloads["README.md"]}, server.record_json())
    with pytest.raises(RecordUnavailable) as info:
        download_record(RID, dest, base_url=closed_url, **FAST)
    message = str(info.value)
    assert f"Missing file(s), to place in {dest.resolve()}:" in message
    for key in ("images.zip", "labels v2.tar.gz"):
        assert f"  {key}  {len(payloads[key])} bytes  md5 {md5(payloads[key])}" in message
    assert "README.md" not in message.split("Missing file(s)")[1]

    write_folder(dest, payloads, record=None)  # placed as told: the run completes offline
    download_record(RID, dest, base_url=closed_url, **FAST)
    assert read_manifest(dest) == expected_manifest(payloads)


# --------------------------------------------------------------------------- progress, script


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_log_lines_otherwise(tmp_path, server, monkeypatch, caplog):
    monkeypatch.setattr(transfer, "_BAR_EVERY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    download_record(RID, tmp_path / "a", base_url=server.base_url, **{**FAST, "progress": True})
    drawn = sys.stderr.getvalue()
    assert "\rimages.zip:  87.4% of 0.3 MB" in drawn and "\rimages.zip: 100.0% of 0.3 MB" in drawn

    monkeypatch.setattr(transfer, "_LOG_EVERY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with caplog.at_level(logging.INFO, logger="comir"):
        download_record(RID, tmp_path / "b", base_url=server.base_url, **{**FAST, "progress": True})
    assert sys.stderr.getvalue() == ""
    assert "images.zip:  87.4% of 0.3 MB" in caplog.text


@pytest.fixture
def restore_logging(monkeypatch):
    """The script configures the root logger and sys.excepthook for a Snakemake job; undo that."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_snakemake_script(tmp_path, server, payloads, restore_logging):
    manifest = tmp_path / "resources" / str(RID) / "MANIFEST.tsv"
    log_file = tmp_path / "download.log"
    settings = {"record": RID, "url": server.base_url, "mirror": None, "local_dir": None, "retries": 1,
                "timeout_s": 5, "split": "paper"}
    snakemake = SimpleNamespace(params=SimpleNamespace(download=settings),
                                output=SimpleNamespace(manifest=str(manifest)), log=[str(log_file)])
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": snakemake})
    assert read_manifest(manifest.parent) == expected_manifest(payloads)
    assert f"record {RID}: 3 file(s) in" in log_file.read_text()


# --------------------------------------------------------------------------- unpack


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"data") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info in members:
            if info.isfile():
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_unpack_zip_and_tar_atomically_and_idempotently(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"top/one.txt": b"1", "top/sub/two.txt": b"22"})
    dest = unpack(archive, tmp_path / "out")
    assert (dest / "top" / "sub" / "two.txt").read_bytes() == b"22"
    archive.unlink()
    assert unpack(archive, tmp_path / "out") == dest  # already there: not unpacked again

    tarball = make_tar(tmp_path / "b.tar.gz", [tar_member("d", tarfile.DIRTYPE), tar_member("d/f.bin"),
                                                tar_member("d/link", tarfile.SYMTYPE, "f.bin")])
    dest = unpack(tarball, tmp_path / "tar-out")
    assert (dest / "d" / "link").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "out", "tar-out"]  # no temporary folder left


@pytest.mark.parametrize(
    ("name", "members", "message"),
    [
        ("zip", {"ok.txt": b"1", "../evil.txt": b"x"}, r"member '\.\./evil\.txt'"),
        ("zip", {"a/../../evil.txt": b"x"}, r"member 'a/\.\./\.\./evil\.txt'"),
        ("zip", {"/tmp/evil.txt": b"x"}, r"member '/tmp/evil\.txt'"),
        ("tar", [tar_member("ok"), tar_member("../evil.txt")], r"member '\.\./evil\.txt'"),
        ("tar", [tar_member("/etc/evil")], r"member '/etc/evil'"),
        ("tar", [tar_member("d/link", tarfile.SYMTYPE, "../../evil.txt")],
         r"link 'd/link' points to 'd/\.\./\.\./evil\.txt'"),
        ("tar", [tar_member("link", tarfile.SYMTYPE, "/etc/passwd")], r"link 'link' points to '/etc/passwd'"),
        ("tar", [tar_member("hard", tarfile.LNKTYPE, "../evil.txt")], r"link 'hard' points to '\.\./evil\.txt'"),
        ("tar", [tar_member("dev", tarfile.CHRTYPE)], r"member 'dev' is not a file, folder or link"),
    ],
)
def test_unpack_rejects_members_escaping_dest(tmp_path, name, members, message):
    work = tmp_path / "work"
    work.mkdir()
    archive = make_zip(work / "x.zip", members) if name == "zip" else make_tar(work / "x.tar.gz", members)
    with pytest.raises(DownloadError, match=message):
        unpack(archive, work / "out")
    assert sorted(os.listdir(work)) == [archive.name]  # no dest, no temporary folder
    assert not (tmp_path / "evil.txt").exists()


def test_unpack_record_unpacks_archives_and_links_plain_files(tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    with zipfile.ZipFile(record / "TrainSet.zip", "w") as archive:
        archive.writestr("TrainSet/1B_A1_SHG.tif", b"shg")
    (record / "notes.txt").write_text("plain")
    (record / "MANIFEST.tsv").write_text("key\tsize\tmd5\tverified\nTrainSet.zip\t1\tx\tyes\nnotes.txt\t5\ty\tyes\n")
    out = unpack_record(record / "MANIFEST.tsv", tmp_path / "unpacked")
    assert (out / "TrainSet" / "TrainSet" / "1B_A1_SHG.tif").read_bytes() == b"shg"
    assert (out / "notes.txt").read_text() == "plain" and (record / "notes.txt").exists()
    assert not list(tmp_path.glob(".*staging"))
    (record / "MANIFEST.tsv").write_text("key\tsize\tmd5\tverified\nmissing.zip\t1\tx\tyes\n")
    with pytest.raises(DownloadError, match="archive not found"):
        unpack_record(record / "MANIFEST.tsv", tmp_path / "other")
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".*staging"))

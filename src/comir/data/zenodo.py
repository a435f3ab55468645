"""Zenodo records: download with resume, verify (size and md5), unpack; online or offline.

The paper's data sets are Zenodo records of several gigabytes. Downloads break, compute nodes
often have no internet, and a silently corrupt archive would poison every later stage. So every
file is streamed to ``<key>.part`` and resumed with an HTTP ``Range`` request after an
interruption, network errors are retried with exponential back-off, and a file is used only after
its size and md5 match the record; a mismatching file is deleted and reported. When Zenodo cannot
be reached, the error says what to place where.

Where a record comes from
-------------------------
Its *file list* (keys, sizes, md5 checksums), from the first of:

1. ``<local_dir>/record.json``, when ``local_dir`` is given and holds one;
2. ``<mirror>/record.json``, when ``mirror`` is given;
3. the REST API ``<base_url>/api/records/<id>`` (default ``https://zenodo.org``);
4. when 2 or 3 cannot be reached: ``<dest>/record.json`` saved by an earlier run.

Its *files*:

* with ``local_dir``: ``<local_dir>/<key>``, checked against the file list (when one is known)
  and hard-linked (copied across file systems) into ``dest``. These files are the user's: they
  are never modified or deleted, and nothing is downloaded; a missing file is an error that lists
  what to put there.
* with ``mirror``: ``<mirror>/<key>``;
* otherwise the download link of each file in the record's JSON.

A mirror is one record's folder, given as an ``http(s)://`` or ``file://`` URL or a plain path::

    <mirror>/record.json   the JSON of https://zenodo.org/api/records/<id>, saved as it is
    <mirror>/<key>         every file of the record under its key (its name in the record)

A local directory has the same layout (``record.json`` optional but recommended: without it, and
without the API, the files cannot be verified and the manifest says so). The destination folder
that :func:`download_record` fills has that layout too, so a finished download can be copied to an
offline machine and used there as ``local_dir`` or ``mirror``::

    <dest>/record.json     the record's JSON, written as soon as it is known
    <dest>/<key>           every file, verified
    <dest>/<key>.part      a partial download, resumed by the next run
    <dest>/MANIFEST.tsv    key, size, md5, verified; written last, so that it exists only when
                           every file is in place and verified (the Snakemake rule's output)

Why not pooch or snakemake-storage-plugin-zenodo
------------------------------------------------
Both were read for this (pooch 1.9.0, snakemake-storage-plugin-zenodo 0.1.5); neither does a
part as well as the code here, so neither is a dependency.

* pooch (``retrieve``/``fetch`` with a known hash, ``doi:`` URLs, ``load_registry_from_doi``)
  verifies md5 as well, and skips a file already present with the right hash. But it streams into
  a randomly named temporary file that is deleted on any error, so an interrupted multi-gigabyte
  transfer starts again from zero (no ``Range``). Its retries wait 1, 2, ... 10 s and also repeat
  hopeless requests (a 404) and whole downloads after a checksum mismatch. It knows no ``file://``
  (a mirror or ``local_dir`` would need a custom downloader), and offline it raises the bare
  ``requests`` error. A record is found through doi.org and must be on zenodo.org (for one of
  the two JSON shapes it even builds ``https://zenodo.org/records/...`` itself): no base URL, so
  no mirror and no loopback Zenodo for the tests; sizes are not read. Its progress bar needs
  tqdm and is made for terminals, not Snakemake log files. What it would replace, ``md5sum``, is
  seven lines.
* snakemake-storage-plugin-zenodo makes each file a storage object
  (``zenodo://record/<id>/<key>``), so the keys must be known when the Snakefile is parsed (here
  they come from the record's JSON, at run time). It requires an access token even for public records, hard-wires
  zenodo.org (or its sandbox), and reads the current API shape only. Its download is
  ``requests`` without ``stream=True``: the whole file is held in memory before it is written,
  straight to the final path (no ``.part``, no resume). The md5 is checked, but a mismatch or a
  404 is retried like a network error (3 tries, by tenacity). There is no progress, no mirror or
  local directory, no offline message.

What remains hand-written is therefore what the pipeline needs and these lack: resume by
``Range``, retries only where trying again can help, ``file://`` mirrors and local directories
verified against ``record.json``, the saved file list for offline reruns, and messages that say
what to place where; all of it tested against a loopback Zenodo (``tests/test_download.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import ssl
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from comir import __version__
from comir.io import InputError, write_json, write_text

__all__ = [
    "DEFAULT_BASE_URL",
    "MANIFEST_NAME",
    "RECORD_NAME",
    "DownloadError",
    "Record",
    "RecordFile",
    "RecordUnavailable",
    "download_record",
    "fetch_record",
    "md5sum",
    "parse_record",
    "read_record_file",
    "unpack",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://zenodo.org"
MANIFEST_NAME = "MANIFEST.tsv"
RECORD_NAME = "record.json"
USER_AGENT = f"comir/{__version__} (CoMIR Snakemake pipeline; Python urllib)"
_CHUNK = 256 * 1024
_BAR_EVERY_S = 0.2  # redraw interval of the progress bar on a terminal
_LOG_EVERY_S = 30.0  # interval of progress log lines otherwise (Snakemake logs)
_MD5 = re.compile(r"[0-9a-f]{32}")
_T = TypeVar("_T")


class DownloadError(InputError):
    """A record could not be fetched or verified; the message names the file and what to do."""


class RecordUnavailable(DownloadError):
    """The record's file list could not be read from the network (offline, server down)."""


class _Interrupted(ConnectionError):
    """The connection ended before the whole file arrived (urllib does not raise for that)."""


# Errors of one network attempt; everything else (a full disk, a bug) is not retried.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


@dataclass(frozen=True)
class RecordFile:
    """One file of a record as the record describes it."""

    key: str  # file name in the record (a plain name, checked)
    size: int  # bytes
    md5: str  # lower-case hex digest
    url: str  # where to download it


@dataclass(frozen=True)
class Record:
    """A record's file list and the JSON it was read from (saved as ``<dest>/record.json``)."""

    id: str
    files: list[RecordFile]
    metadata: dict[str, Any]
    source: str  # URL or path the JSON was read from, for messages


_Row = tuple[str, int, str, bool]  # key, size, md5, verified against the record


# --------------------------------------------------------------------------- file list


def parse_record(data: Any, record_id: int | str, source: str, base_url: str = DEFAULT_BASE_URL) -> Record:
    """The file list of a Zenodo record's JSON, in any of the shapes Zenodo has served.

    * current API: ``files: [{key, size, checksum: "md5:<hex>", links: {self: <content URL>}}]``;
    * InvenioRDM's own shape: ``files: {entries: {<key>: {..., links: {content: ...}}}}``;
    * older responses: ``files: [{filename, filesize, checksum: "<hex>", links: {download: ...}}]``.

    A file without a link gets ``<base_url>/api/records/<id>/files/<key>/content``. Anything else
    raises :class:`DownloadError` quoting what was found, rather than guessing.
    """
    rid = _record_id(record_id)
    if not isinstance(data, dict):
        raise DownloadError(f"{source}: expected the JSON object of a Zenodo record, found {_quote(data)}")
    ids = {str(data[name]) for name in ("id", "recid", "conceptrecid") if data.get(name) is not None}
    if ids and rid not in ids:  # a concept id redirects to its latest version: conceptrecid matches
        raise DownloadError(f"{source} describes Zenodo record {data.get('id', data.get('recid'))}, not {rid}")
    files = data.get("files")
    if isinstance(files, dict) and "entries" in files:
        files = files["entries"]
        files = list(files.values()) if isinstance(files, dict) else files
    if not isinstance(files, list):
        raise DownloadError(
            f"{source}: no list of files in record {rid} (keys found: {', '.join(map(str, data))}; "
            f"files: {_quote(files)})"
        )
    if not files:
        raise DownloadError(f"{source}: record {rid} lists no files (restricted or embargoed?)")
    api = f"{base_url.rstrip('/')}/api/records/{rid}/files"
    return Record(rid, [_parse_file(entry, rid, source, api) for entry in files], data, source)


def _parse_file(entry: Any, rid: str, source: str, api: str) -> RecordFile:
    fields = entry if isinstance(entry, dict) else {}
    key = fields.get("key", fields.get("filename"))
    size = fields.get("size", fields.get("filesize"))
    checksum = fields.get("checksum")
    links = fields.get("links") if isinstance(fields.get("links"), dict) else {}
    if not (
        isinstance(key, str)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
        and isinstance(checksum, str)
    ):
        raise DownloadError(
            f"{source}: a file of record {rid} is in no known Zenodo shape (expected key, size and "
            f"checksum, or filename, filesize and checksum); found {_quote(entry)}"
        )
    algorithm, _, digest = checksum.lower().rpartition(":")
    if algorithm not in ("", "md5") or not _MD5.fullmatch(digest):
        raise DownloadError(f"{source}: file {key!r} of record {rid} has no md5 checksum; found {checksum!r}")
    # The key becomes a file name in dest: refuse anything that could land elsewhere.
    if key in ("", ".", "..", RECORD_NAME, MANIFEST_NAME) or "/" in key or "\\" in key or not key.isprintable():
        raise DownloadError(f"{source}: record {rid} has a file named {key!r}, which is not a usable file name")
    url = next(
        (links[name] for name in ("content", "download", "self") if isinstance(links.get(name), str)),
        f"{api}/{urllib.parse.quote(key)}/content",
    )
    return RecordFile(key, size, digest, url)


def read_record_file(path: str | os.PathLike[str], record_id: int | str, base_url: str = DEFAULT_BASE_URL) -> Record:
    """The file list of a saved ``record.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DownloadError(f"cannot read the record's JSON {path}: {error}") from error
    return parse_record(data, record_id, str(path), base_url)


def fetch_record(
    record_id: int | str,
    *,
    base_url: str = DEFAULT_BASE_URL,
    mirror: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    timeout_s: float = 60.0,
    retries: int = 5,
    backoff_s: float = 2.0,
) -> Record:
    """A record's file list from ``<local_dir>/record.json``, else the mirror, else the API.

    File URLs point into the mirror when one is given. Raises :class:`RecordUnavailable`, with
    what to do, when the mirror or API cannot be reached after the retries, and
    :class:`DownloadError` when the record does not exist or its JSON is unusable.
    """
    rid = _record_id(record_id)
    if local_dir is not None and (Path(local_dir) / RECORD_NAME).is_file():
        return read_record_file(Path(local_dir) / RECORD_NAME, rid, base_url)
    api_url = f"{base_url.rstrip('/')}/api/records/{rid}"
    folder = _folder_url(mirror) if mirror is not None else None
    url = f"{folder}/{RECORD_NAME}" if folder else api_url
    try:
        body = _retrying(lambda: _read_url(url, timeout_s), f"record {rid} ({url})", retries, backoff_s)
    except _NETWORK_ERRORS as error:
        if _transient(error):
            raise RecordUnavailable(_unavailable_message(rid, url, error, api_url, local_dir)) from error
        raise DownloadError(f"cannot read Zenodo record {rid} from {url}: {_reason(error)}") from error
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DownloadError(f"{url} did not return JSON ({error}); it began with {body[:200]!r}") from error
    record = parse_record(data, rid, url, base_url)
    if folder:
        files = [dataclasses.replace(f, url=f"{folder}/{urllib.parse.quote(f.key)}") for f in record.files]
        record = dataclasses.replace(record, files=files)
    return record


# --------------------------------------------------------------------------- download


def download_record(
    record_id: int | str,
    dest: str | os.PathLike[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    mirror: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> list[Path]:
    """Every file of a record in ``dest``, verified, then ``dest/MANIFEST.tsv``; their paths.

    Idempotent and resumable: verified files already in ``dest`` are not requested again, and a
    ``.part`` left by an interrupted run is resumed. See the module docstring for the sources.
    """
    rid = _record_id(record_id)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # A manifest must never outlive a failed run: its existence means "all verified".
    (dest / MANIFEST_NAME).unlink(missing_ok=True)
    local = Path(local_dir) if local_dir is not None else None
    saved = dest / RECORD_NAME
    offline: RecordUnavailable | None = None
    record: Record | None
    try:
        record = fetch_record(
            rid, base_url=base_url, mirror=mirror, local_dir=local, timeout_s=timeout_s, retries=retries,
            backoff_s=backoff_s,
        )
    except RecordUnavailable as error:
        if local is None and not saved.is_file():
            raise
        offline = error
        record = read_record_file(saved, rid, base_url) if saved.is_file() else None
        if record is not None:
            log.warning("%s\nUsing the file list saved in %s.", error, saved)
    if record is not None:
        _save_metadata(record, saved)

    if local is not None:
        rows = _from_local_dir(record, rid, local, dest, offline)
    elif offline is not None and record is not None:
        rows = _already_here(record, dest, offline)
    else:
        assert record is not None  # fetched: no local_dir and no exception
        rows = []
        for file in record.files:
            _download_file(file, dest, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s, progress=progress)
            rows.append((file.key, file.size, file.md5, True))
    _write_manifest(dest, rows)
    log.info("record %s: %d file(s) in %s, manifest written", rid, len(rows), dest)
    return [dest / key for key, *_ in rows]


def _save_metadata(record: Record, saved: Path) -> None:
    """``<dest>/record.json``, so that an offline rerun knows the files (unless read from there)."""
    source = Path(record.source)
    if not (saved.is_file() and source.is_file() and os.path.samefile(source, saved)):
        write_json(saved, record.metadata)


def _download_file(
    file: RecordFile, dest: Path, *, retries: int, backoff_s: float, timeout_s: float, progress: bool
) -> None:
    target = dest / file.key
    if target.is_file():
        problem = _mismatch(target, file)
        if problem is None:
            log.info("%s: already present and verified", file.key)
            return
        log.warning("%s: the file in %s does not match the record (%s); downloading it again", file.key, dest, problem)
        target.unlink()
    part = dest / f"{file.key}.part"
    started = time.monotonic()
    try:
        _retrying(lambda: _transfer(file, part, timeout_s, progress), file.key, retries, backoff_s)
    except _NETWORK_ERRORS as error:
        message = f"{file.key}: download from {file.url} failed: {_reason(error)}"
        if _transient(error):
            kept = part.stat().st_size if part.exists() else 0
            message += f" ({retries + 1} attempts); run again to resume from the {kept} bytes kept in {part}"
        raise DownloadError(message) from error
    problem = _mismatch(part, file)
    if problem is not None:
        part.unlink()
        raise DownloadError(
            f"{file.key} downloaded from {file.url} is corrupt: {problem}. It was deleted and is not used; "
            "run again to download it again (if that fails too, the source is bad: use another copy)"
        )
    os.replace(part, target)
    log.info("%s: %d bytes in %.1f s, md5 verified", file.key, file.size, time.monotonic() - started)


def _transfer(file: RecordFile, part: Path, timeout_s: float, progress: bool) -> None:
    """One attempt to bring ``part`` to the file's size, resuming after what it already holds."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > file.size:  # cannot be a prefix of the file
        part.unlink()
        offset = 0
    if offset == file.size:
        return  # complete, or corrupt: the caller verifies
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(file.url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after offset on the server: verify what is here
            error.close()
            return
        raise
    with response:
        status = response.status or 200  # file:// answers without a status and ignores Range
        if status == 206 and _range_start(response.headers.get("Content-Range")) != offset:
            part.unlink()
            raise _Interrupted(f"the server sent another range than bytes={offset}- ; starting again from zero")
        if status != 206:
            if offset:
                log.info("%s: the source ignored the Range request; downloading from the start", file.key)
            offset = 0
        else:
            log.info("%s: resuming after %d of %d bytes", file.key, offset, file.size)
        bar = _Progress(file.key, file.size, offset, progress)
        try:
            with open(part, "ab" if offset else "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    offset += len(chunk)
                    bar.update(offset)
        finally:
            bar.finish()
    if offset < file.size:
        raise _Interrupted(f"the connection closed after {offset} of {file.size} bytes")


def _range_start(content_range: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", content_range or "")
    return int(match.group(1)) if match else None


def _retrying(action: Callable[[], _T], what: str, retries: int, backoff_s: float) -> _T:
    """``action()``, tried again after transient network errors, waiting backoff_s * 2**n."""
    attempt = 0
    while True:
        try:
            return action()
        except _NETWORK_ERRORS as error:
            if attempt >= retries or not _transient(error):
                raise
            delay = backoff_s * 2**attempt
            attempt += 1
            log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.3g s",
                what, attempt, retries + 1, _reason(error), delay,
            )
            time.sleep(delay)


def _transient(error: BaseException) -> bool:
    """Whether trying again may help: server and network failures, not a 404, a missing file or a bad certificate."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code in (408, 429) or error.code >= 500
    if isinstance(error, urllib.error.URLError):  # reason: an OSError for network and file:// errors
        return isinstance(error.reason, OSError) and not isinstance(
            error.reason,
            (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ssl.SSLCertVerificationError),
        )
    return True


def _read_url(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read()


class _Progress:
    """One file's progress on stderr: a redrawn bar on a terminal, else a log line every 30 s."""

    def __init__(self, name: str, total: int, done: int, enabled: bool) -> None:
        self.name, self.total, self.first = name, total, done
        self.stream = sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.every = (_BAR_EVERY_S if self.tty else _LOG_EVERY_S) if enabled else float("inf")
        self.started = self.shown = time.monotonic()
        self.done = done

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.shown < self.every:
            return
        self.shown = now
        if self.tty:
            self.stream.write(f"\r{self._status(now)}")
            self.stream.flush()
        else:
            log.info("%s", self._status(now))

    def finish(self) -> None:
        if self.tty:
            self.stream.write(f"\r{self._status(time.monotonic())}\n")
            self.stream.flush()

    def _status(self, now: float) -> str:
        rate = (self.done - self.first) / max(now - self.started, 1e-9) / 1e6
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.name}: {percent:5.1f}% of {self.total / 1e6:.1f} MB, {rate:.1f} MB/s"


# --------------------------------------------------------------------------- offline


def _already_here(record: Record, dest: Path, offline: RecordUnavailable) -> list[_Row]:
    """Offline with a saved file list: the files verified in ``dest``, or what is missing."""
    rows: list[_Row] = []
    missing = []
    for file in record.files:
        target = dest / file.key
        if target.is_file() and _mismatch(target, file) is None:
            rows.append((file.key, file.size, file.md5, True))
        else:
            missing.append(file)
    if missing:
        raise RecordUnavailable(f"{offline}\n{_missing_list(missing, dest)}") from offline
    return rows


def _from_local_dir(
    record: Record | None, rid: str, local: Path, dest: Path, offline: RecordUnavailable | None
) -> list[_Row]:
    """The record's files linked from ``local`` into ``dest``: verified when the list is known."""
    if record is None:
        found = sorted(
            p for p in (local.iterdir() if local.is_dir() else ())
            if p.is_file() and not p.name.startswith(".") and p.name not in (RECORD_NAME, MANIFEST_NAME)
            and p.suffix != ".part"
        )
        if not found:
            raise RecordUnavailable(f"{offline}\nThe local directory {local.resolve()} holds no files.") from offline
        log.warning(
            "record %s: no file list (no %s in %s and the record cannot be read), so the %d file(s) found there "
            "are used UNVERIFIED; put record.json there to verify them", rid, RECORD_NAME, local, len(found),
        )
        for source in found:
            _place(source, dest / source.name)
        return [(p.name, p.stat().st_size, md5sum(p), False) for p in found]

    missing = [f for f in record.files if not (local / f.key).is_file()]
    if missing:
        raise DownloadError(
            f"record {rid}: {len(missing)} file(s) missing from the local directory.\n{_missing_list(missing, local)}"
        )
    rows: list[_Row] = []
    for file in record.files:
        source = local / file.key
        problem = _mismatch(source, file)
        if problem is not None:
            raise DownloadError(
                f"{source} does not match record {rid}: {problem}. It was left untouched: replace it with a good "
                f"copy of {file.url}"
            )
        _place(source, dest / file.key)
        rows.append((file.key, file.size, file.md5, True))
    log.info("record %s: %d file(s) verified in %s and linked into %s", rid, len(rows), local, dest)
    return rows


def _place(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems); ``source`` is not touched."""
    if target.exists() and os.path.samefile(source, target):
        return
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _unavailable_message(
    rid: str, url: str, error: BaseException, api_url: str, local_dir: str | os.PathLike[str] | None
) -> str:
    where = (
        f"into the local directory {Path(local_dir).resolve()}" if local_dir is not None
        else "into a folder and set `local_dir` to it"
    )
    return (
        f"cannot read the file list of Zenodo record {rid} from {url}: {_reason(error)}.\n"
        "If this machine has no internet access:\n"
        "  - run the download where there is internet (the same command or Snakemake target) and copy the "
        "resulting folder here, or\n"
        "  - set `mirror` to a folder or URL holding record.json and the record's files, or\n"
        f"  - put the record's files and record.json (saved from {api_url}) {where}."
    )


def _missing_list(missing: list[RecordFile], folder: Path) -> str:
    lines = [f"Missing file(s), to place in {folder.resolve()}:"]
    lines += [f"  {f.key}  {f.size} bytes  md5 {f.md5}  ({f.url})" for f in missing]
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def md5sum(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file, read in chunks (files are gigabytes)."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum, allowed on FIPS systems
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, file: RecordFile) -> str | None:
    """None when ``path`` has the record's size and md5, else what was expected and found."""
    size, digest = path.stat().st_size, md5sum(path)
    if size == file.size and digest == file.md5:
        return None
    return f"expected md5 {file.md5} ({file.size} bytes), found md5 {digest} ({size} bytes)"


def _write_manifest(dest: Path, rows: list[_Row]) -> None:
    lines = ["key\tsize\tmd5\tverified"] + [f"{k}\t{s}\t{m}\t{'yes' if v else 'no'}" for k, s, m, v in rows]
    write_text(dest / MANIFEST_NAME, "\n".join(lines) + "\n")


def _record_id(record_id: int | str) -> str:
    rid = str(record_id).strip()
    if not re.fullmatch(r"[A-Za-z0-9-]+", rid):
        raise DownloadError(f"not a Zenodo record id: {record_id!r}")
    return rid


def _folder_url(location: str) -> str:
    """A mirror's base URL; a plain path becomes a file:// URL."""
    if "://" in location:
        return location.rstrip("/")
    return Path(location).resolve().as_uri()


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _quote(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- unpack


def unpack(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a .zip or .tar (.gz, .bz2, .xz) archive into ``dest``, all or nothing; ``dest``.

    Every member is checked before anything is written: an absolute path, a path or link leading
    out of ``dest`` (``../``), or a device file rejects the whole archive. Extraction goes into a
    sibling folder renamed to ``dest`` at the end, so ``dest`` exists only complete, and an
    existing ``dest`` is returned as it is (idempotent).
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        log.info("%s already unpacked in %s", archive.name, dest)
        return dest
    if not archive.is_file():
        raise DownloadError(f"archive not found: {archive}")
    tmp = dest.with_name(f".{dest.name}.unpacking")
    if tmp.exists():  # left by an interrupted run
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                for name in zipped.namelist():
                    _check_member(archive, name)
                zipped.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                for member in tarred.getmembers():
                    _check_tar_member(archive, member)
                # The stdlib's own check too, where this Python has it (3.11.4+).
                tarred.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive")
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("unpacked %s into %s", archive.name, dest)
    return dest


_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def unpack_record(manifest: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Every file of a verified record (its ``MANIFEST.tsv``) in ``dest``: archives unpacked.

    An archive ``<stem>.zip`` becomes the folder ``dest/<stem>``; any other file is hard-linked
    (or copied) as ``dest/<key>``. Everything goes into a sibling folder renamed to ``dest`` at
    the end, so ``dest`` exists only complete and an interrupted run starts over cleanly.
    """
    manifest, dest = Path(manifest), Path(dest)
    if dest.is_dir():
        return dest
    try:
        keys = [line.split("\t")[0] for line in manifest.read_text().splitlines()[1:] if line.strip()]
    except OSError as error:
        raise DownloadError(f"cannot read the record's manifest {manifest}: {error}") from error
    if not keys:
        raise DownloadError(f"the manifest {manifest} lists no files")
    staging = dest.with_name(f".{dest.name}.staging")
    if staging.exists():  # left by an interrupted run
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        for key in keys:
            source = manifest.parent / key
            suffix = next((s for s in _ARCHIVE_SUFFIXES if key.lower().endswith(s)), None)
            if suffix:
                unpack(source, staging / key[: -len(suffix)])
            else:
                _place(source, staging / key)
        os.rename(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("record of %s unpacked into %s (%d files)", manifest, dest, len(keys))
    return dest


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_member(archive, member.name)
    if member.issym():
        _check_member(archive, posixpath.join(posixpath.dirname(member.name), member.linkname), member.name)
    elif member.islnk():
        _check_member(archive, member.linkname, member.name)
    elif not (member.isfile() or member.isdir()):
        raise DownloadError(f"{archive}: member {member.name!r} is not a file, folder or link; refusing to unpack")


def _check_member(archive: Path, path: str, member: str | None = None) -> None:
    """Reject a member (or a link's target) that is absolute or leads out of the extraction folder."""
    normal = posixpath.normpath(path.replace("\\", "/"))
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        what = f"link {member!r} points to {path!r}" if member else f"member {path!r}"
        raise DownloadError(f"{archive}: {what}, outside the folder it is unpacked into; refusing to unpack it")

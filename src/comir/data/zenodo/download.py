"""A record's file list from the first source that answers, then every file, verified.

Contract: :func:`fetch_record` reads the file list from ``<local_dir>/record.json``, else the
mirror, else the REST API, with retries; it raises :class:`~.record.RecordUnavailable` (saying
what to do) when the mirror or API cannot be reached, :class:`~.record.DownloadError` when the
record does not exist or its JSON is unusable. :func:`download_record` fills ``dest`` as the
package docstring (:mod:`comir.data.zenodo`) describes: ``record.json`` as soon as the list is
known, each file downloaded (or linked from ``local_dir``) and used only once its size and md5
match, ``MANIFEST.tsv`` last. It is idempotent and resumable, and falls back to the saved file
list when offline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import urllib.parse
from pathlib import Path

from comir.data.zenodo.files import mismatch, write_manifest
from comir.data.zenodo.offline import already_here, from_local_dir, unavailable_message
from comir.data.zenodo.record import (
    DEFAULT_BASE_URL,
    MANIFEST_NAME,
    RECORD_NAME,
    DownloadError,
    Record,
    RecordFile,
    RecordUnavailable,
    checked_record_id,
    parse_record,
    read_record_file,
)
from comir.data.zenodo.transfer import NETWORK_ERRORS, read_url, reason, retrying, transfer, transient
from comir.io import write_json

__all__ = ["download_record", "fetch_record"]

log = logging.getLogger(__name__)


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

    File URLs point into the mirror when one is given.

    Parameters
    ----------
    record_id : int or str
        The Zenodo record id.
    base_url : str, optional
        The Zenodo server. Default :data:`~comir.data.zenodo.record.DEFAULT_BASE_URL`.
    mirror : str or None, optional
        A folder or URL holding ``record.json`` and the record's files, read instead of the API. Default None.
    local_dir : str or os.PathLike or None, optional
        A folder whose ``record.json``, if present, is read first (no network). Default None.
    timeout_s : float, optional
        Timeout of one request, seconds. Default 60.
    retries : int, optional
        Further attempts after a transient network error. Default 5.
    backoff_s : float, optional
        Wait before the first retry, doubled for each further one, seconds. Default 2.

    Returns
    -------
    comir.data.zenodo.record.Record
        The record's file list.

    Raises
    ------
    comir.data.zenodo.record.RecordUnavailable
        With what to do, when the mirror or API cannot be reached after the retries.
    comir.data.zenodo.record.DownloadError
        When the record id is invalid, the record does not exist or its JSON is unusable.
    """
    rid = checked_record_id(record_id)
    if local_dir is not None and (Path(local_dir) / RECORD_NAME).is_file():
        return read_record_file(Path(local_dir) / RECORD_NAME, rid, base_url)
    api_url = f"{base_url.rstrip('/')}/api/records/{rid}"
    folder = _folder_url(mirror) if mirror is not None else None
    url = f"{folder}/{RECORD_NAME}" if folder else api_url
    try:
        body = retrying(lambda: read_url(url, timeout_s), f"record {rid} ({url})", retries, backoff_s)
    except NETWORK_ERRORS as error:
        if transient(error):
            raise RecordUnavailable(unavailable_message(rid, url, error, api_url, local_dir)) from error
        raise DownloadError(f"cannot read Zenodo record {rid} from {url}: {reason(error)}") from error
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DownloadError(f"{url} did not return JSON ({error}); it began with {body[:200]!r}") from error
    record = parse_record(data, rid, url, base_url)
    if folder:
        files = [dataclasses.replace(f, url=f"{folder}/{urllib.parse.quote(f.key)}") for f in record.files]
        record = dataclasses.replace(record, files=files)
    return record


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

    Parameters
    ----------
    record_id : int or str
        The Zenodo record id.
    dest : str or os.PathLike
        The destination folder (created); ``record.json`` is saved there as soon as the list is known.
    base_url : str, optional
        The Zenodo server. Default :data:`~comir.data.zenodo.record.DEFAULT_BASE_URL`.
    mirror : str or None, optional
        A folder or URL holding ``record.json`` and the files, used instead of Zenodo. Default None.
    local_dir : str or os.PathLike or None, optional
        A folder holding the record's files, linked into ``dest`` instead of downloading (never modified).
        Default None.
    retries : int, optional
        Further attempts after a transient network error. Default 5.
    backoff_s : float, optional
        Wait before the first retry, doubled for each further one, seconds. Default 2.
    timeout_s : float, optional
        Timeout of one request, seconds. Default 60.
    progress : bool, optional
        Show each file's progress on stderr. Default True.

    Returns
    -------
    list[pathlib.Path]
        The record's files in ``dest``, in the record's order.

    Raises
    ------
    comir.data.zenodo.record.RecordUnavailable
        When the file list cannot be read and no saved list or local files can stand in, or files are missing.
    comir.data.zenodo.record.DownloadError
        When a file cannot be downloaded, is corrupt, or is missing from or does not match ``local_dir``.
    """
    rid = checked_record_id(record_id)
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
        rows = from_local_dir(record, rid, local, dest, offline)
    elif offline is not None and record is not None:
        rows = already_here(record, dest, offline)
    else:
        assert record is not None  # fetched: no local_dir and no exception
        rows = []
        for file in record.files:
            _download_file(file, dest, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s, progress=progress)
            rows.append((file.key, file.size, file.md5, True))
    write_manifest(dest, rows)
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
        problem = mismatch(target, file)
        if problem is None:
            log.info("%s: already present and verified", file.key)
            return
        log.warning("%s: the file in %s does not match the record (%s); downloading it again", file.key, dest, problem)
        target.unlink()
    part = dest / f"{file.key}.part"
    started = time.monotonic()
    try:
        retrying(lambda: transfer(file, part, timeout_s, progress), file.key, retries, backoff_s)
    except NETWORK_ERRORS as error:
        message = f"{file.key}: download from {file.url} failed: {reason(error)}"
        if transient(error):
            kept = part.stat().st_size if part.exists() else 0
            message += f" ({retries + 1} attempts); run again to resume from the {kept} bytes kept in {part}"
        raise DownloadError(message) from error
    problem = mismatch(part, file)
    if problem is not None:
        part.unlink()
        raise DownloadError(
            f"{file.key} downloaded from {file.url} is corrupt: {problem}. It was deleted and is not used; "
            "run again to download it again (if that fails too, the source is bad: use another copy)"
        )
    os.replace(part, target)
    log.info("%s: %d bytes in %.1f s, md5 verified", file.key, file.size, time.monotonic() - started)


def _folder_url(location: str) -> str:
    """A mirror's base URL; a plain path becomes a file:// URL."""
    if "://" in location:
        return location.rstrip("/")
    return Path(location).resolve().as_uri()

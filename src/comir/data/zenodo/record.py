"""A Zenodo record's file list: its names, errors and types, read from the record's JSON.

Contract: no network and no writing. :func:`parse_record` turns the JSON of a record, in any
of the shapes Zenodo has served, into a :class:`Record` of :class:`RecordFile` (key, size, md5,
URL), refusing rather than guessing: a missing field, a checksum other than md5 or a key that is
not a plain file name raises :class:`DownloadError` quoting what was found.
:func:`read_record_file` does the same for a saved ``record.json``. Every error of the
subpackage is a :class:`DownloadError` (an :class:`~comir.io.InputError`);
:class:`RecordUnavailable` is the one for a file list the network could not deliver.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comir.io import InputError

__all__ = [
    "DEFAULT_BASE_URL",
    "MANIFEST_NAME",
    "RECORD_NAME",
    "DownloadError",
    "Record",
    "RecordFile",
    "RecordUnavailable",
    "checked_record_id",
    "parse_record",
    "read_record_file",
]

DEFAULT_BASE_URL = "https://zenodo.org"
MANIFEST_NAME = "MANIFEST.tsv"
RECORD_NAME = "record.json"
_MD5 = re.compile(r"[0-9a-f]{32}")


class DownloadError(InputError):
    """A record could not be fetched or verified; the message names the file and what to do."""


class RecordUnavailable(DownloadError):
    """The record's file list could not be read from the network (offline, server down)."""


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


def parse_record(data: Any, record_id: int | str, source: str, base_url: str = DEFAULT_BASE_URL) -> Record:
    """The file list of a Zenodo record's JSON, in any of the shapes Zenodo has served.

    * current API: ``files: [{key, size, checksum: "md5:<hex>", links: {self: <content URL>}}]``;
    * InvenioRDM's own shape: ``files: {entries: {<key>: {..., links: {content: ...}}}}``;
    * older responses: ``files: [{filename, filesize, checksum: "<hex>", links: {download: ...}}]``.

    A file without a link gets ``<base_url>/api/records/<id>/files/<key>/content``.

    Parameters
    ----------
    data : Any
        The record's parsed JSON.
    record_id : int or str
        The record id expected; the JSON's ``id``, ``recid`` or ``conceptrecid`` must match it.
    source : str
        URL or path the JSON was read from, for messages.
    base_url : str, optional
        The Zenodo server, for files without a link. Default :data:`DEFAULT_BASE_URL`.

    Returns
    -------
    Record
        The record's files (key, size, md5, URL) and the JSON.

    Raises
    ------
    DownloadError
        Quoting what was found, rather than guessing: for another record's JSON, no or an empty file
        list, a file without key, size or md5 checksum, or a key that is not a plain file name.
    """
    rid = checked_record_id(record_id)
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
    """The file list of a saved ``record.json``.

    Parameters
    ----------
    path : str or os.PathLike
        The saved JSON.
    record_id : int or str
        The record id expected.
    base_url : str, optional
        The Zenodo server, for files without a link. Default :data:`DEFAULT_BASE_URL`.

    Returns
    -------
    Record
        As :func:`parse_record`.

    Raises
    ------
    DownloadError
        If the file cannot be read or parsed, or :func:`parse_record` refuses it.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DownloadError(f"cannot read the record's JSON {path}: {error}") from error
    return parse_record(data, record_id, str(path), base_url)


def checked_record_id(record_id: int | str) -> str:
    """``record_id`` as a string, checked to be a Zenodo record id (letters, digits, ``-``).

    Parameters
    ----------
    record_id : int or str
        The id; surrounding whitespace is stripped.

    Returns
    -------
    str
        The id.

    Raises
    ------
    DownloadError
        If it holds anything but letters, digits and ``-``, or is empty.
    """
    rid = str(record_id).strip()
    if not re.fullmatch(r"[A-Za-z0-9-]+", rid):
        raise DownloadError(f"not a Zenodo record id: {record_id!r}")
    return rid


def _quote(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."

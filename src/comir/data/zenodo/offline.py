"""Without the network: a local directory, the file list saved by an earlier run, the messages.

Contract: :func:`from_local_dir` links the record's files from the user's ``local_dir`` into the
destination, verified against the file list when one is known (unverified, with a warning, when
none is); the user's files are never modified or deleted. :func:`already_here` accepts, when the
record cannot be read, the files already verified in the destination. Both raise, when files are
missing, an error that lists every missing file with its size, md5 and URL and the folder to put
it in; :func:`unavailable_message` says what to do when the file list cannot be read at all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from comir.data.zenodo.files import Row, md5sum, mismatch, place
from comir.data.zenodo.record import MANIFEST_NAME, RECORD_NAME, DownloadError, Record, RecordFile, RecordUnavailable
from comir.data.zenodo.transfer import reason

__all__ = ["already_here", "from_local_dir", "unavailable_message"]

log = logging.getLogger(__name__)


def already_here(record: Record, dest: Path, offline: RecordUnavailable) -> list[Row]:
    """Offline with a saved file list: the files verified in ``dest``, or what is missing.

    Parameters
    ----------
    record : comir.data.zenodo.record.Record
        The saved file list.
    dest : pathlib.Path
        The destination folder.
    offline : comir.data.zenodo.record.RecordUnavailable
        Why the record could not be read, repeated in the error.

    Returns
    -------
    list[Row]
        ``(key, size, md5, True)`` per file.

    Raises
    ------
    comir.data.zenodo.record.RecordUnavailable
        If a file is missing from ``dest`` or does not match, listing every such file.
    """
    rows: list[Row] = []
    missing = []
    for file in record.files:
        target = dest / file.key
        if target.is_file() and mismatch(target, file) is None:
            rows.append((file.key, file.size, file.md5, True))
        else:
            missing.append(file)
    if missing:
        raise RecordUnavailable(f"{offline}\n{_missing_list(missing, dest)}") from offline
    return rows


def from_local_dir(
    record: Record | None, rid: str, local: Path, dest: Path, offline: RecordUnavailable | None
) -> list[Row]:
    """The record's files linked from ``local`` into ``dest``: verified when the list is known.

    Without a list, every visible file of ``local`` (not ``record.json``, the manifest or ``.part`` files)
    is used unverified, with a warning.

    Parameters
    ----------
    record : comir.data.zenodo.record.Record or None
        The file list, or None when none could be read.
    rid : str
        The record id, for messages.
    local : pathlib.Path
        The user's folder; its files are never modified or deleted.
    dest : pathlib.Path
        The destination folder.
    offline : comir.data.zenodo.record.RecordUnavailable or None
        Why the record could not be read, if it could not.

    Returns
    -------
    list[Row]
        ``(key, size, md5, verified)`` per file.

    Raises
    ------
    comir.data.zenodo.record.RecordUnavailable
        If there is no list and ``local`` holds no files.
    comir.data.zenodo.record.DownloadError
        If a listed file is missing from ``local`` (all listed) or does not match the record.
    """
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
            place(source, dest / source.name)
        return [(p.name, p.stat().st_size, md5sum(p), False) for p in found]

    missing = [f for f in record.files if not (local / f.key).is_file()]
    if missing:
        raise DownloadError(
            f"record {rid}: {len(missing)} file(s) missing from the local directory.\n{_missing_list(missing, local)}"
        )
    rows: list[Row] = []
    for file in record.files:
        source = local / file.key
        problem = mismatch(source, file)
        if problem is not None:
            raise DownloadError(
                f"{source} does not match record {rid}: {problem}. It was left untouched: replace it with a good "
                f"copy of {file.url}"
            )
        place(source, dest / file.key)
        rows.append((file.key, file.size, file.md5, True))
    log.info("record %s: %d file(s) verified in %s and linked into %s", rid, len(rows), local, dest)
    return rows


def unavailable_message(
    rid: str, url: str, error: BaseException, api_url: str, local_dir: str | os.PathLike[str] | None
) -> str:
    """The error when the file list cannot be read: why, and the three ways to go on without internet.

    Parameters
    ----------
    rid : str
        The record id.
    url : str
        Where the list was read from.
    error : BaseException
        The network error (:func:`comir.data.zenodo.transfer.reason` words it).
    api_url : str
        The record's API URL, to save ``record.json`` from.
    local_dir : str or os.PathLike or None
        The configured local directory, if any.

    Returns
    -------
    str
        The message.
    """
    where = (
        f"into the local directory {Path(local_dir).resolve()}" if local_dir is not None
        else "into a folder and set `local_dir` to it"
    )
    return (
        f"cannot read the file list of Zenodo record {rid} from {url}: {reason(error)}.\n"
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

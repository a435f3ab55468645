"""A record's files on disk: checksums, verification against the record, placing, the manifest.

Contract: local files only, no network. :func:`md5sum` reads a file in chunks;
:func:`mismatch` says whether a file has its record entry's size and md5 (``None``) or what
differs; :func:`place` puts a file into the destination as a hard link (a copy across file
systems) without touching the source; :func:`write_manifest` writes ``MANIFEST.tsv`` (key, size,
md5, verified), the last file of a finished download.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from comir.data.zenodo.record import MANIFEST_NAME, RecordFile
from comir.io import write_text

__all__ = ["Row", "md5sum", "mismatch", "place", "write_manifest"]


Row = tuple[str, int, str, bool]  # key, size, md5, verified against the record


def md5sum(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file, read in chunks (files are gigabytes).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        The lower-case hex digest.
    """
    digest = hashlib.md5(usedforsecurity=False)  # a checksum, allowed on FIPS systems
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def mismatch(path: Path, file: RecordFile) -> str | None:
    """None when ``path`` has the record's size and md5, else what was expected and found.

    Parameters
    ----------
    path : pathlib.Path
        An existing file.
    file : comir.data.zenodo.record.RecordFile
        Its entry in the record.

    Returns
    -------
    str or None
        None when size and md5 match; else the expected and found md5 and sizes.
    """
    size, digest = path.stat().st_size, md5sum(path)
    if size == file.size and digest == file.md5:
        return None
    return f"expected md5 {file.md5} ({file.size} bytes), found md5 {digest} ({size} bytes)"


def place(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems); ``source`` is not touched.

    An existing ``target`` is replaced atomically, unless it already is ``source``.

    Parameters
    ----------
    source : pathlib.Path
        An existing file.
    target : pathlib.Path
        Where it goes; its folder must exist.
    """
    if target.exists() and os.path.samefile(source, target):
        return
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def write_manifest(dest: Path, rows: list[Row]) -> None:
    """``dest/MANIFEST.tsv``: one row per file (key, size, md5, verified ``yes``/``no``).

    Parameters
    ----------
    dest : pathlib.Path
        The record's destination folder.
    rows : list[Row]
        ``(key, size, md5, verified)`` per file.
    """
    lines = ["key\tsize\tmd5\tverified"] + [f"{k}\t{s}\t{m}\t{'yes' if v else 'no'}" for k, s, m, v in rows]
    write_text(dest / MANIFEST_NAME, "\n".join(lines) + "\n")

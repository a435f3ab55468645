"""A verified record unpacked: archives extracted with path checks, all or nothing.

Contract: :func:`unpack` extracts one .zip or .tar (.gz, .bz2, .xz) archive after checking every
member (an absolute path, a path or link out of the folder, or a device file rejects the whole
archive); :func:`unpack_record` unpacks every archive a ``MANIFEST.tsv`` lists and links the other
files. Both build their result in a sibling folder renamed at the end, so the destination exists
only complete, and return an existing destination as it is (idempotent). Errors are
:class:`~.record.DownloadError`.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
import zipfile
from pathlib import Path

from comir.data.zenodo.files import place
from comir.data.zenodo.record import DownloadError

__all__ = ["unpack", "unpack_record"]

log = logging.getLogger(__name__)


def unpack(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a .zip or .tar (.gz, .bz2, .xz) archive into ``dest``, all or nothing; ``dest``.

    Every member is checked before anything is written: an absolute path, a path or link leading
    out of ``dest`` (``../``), or a device file rejects the whole archive. Extraction goes into a
    sibling folder renamed to ``dest`` at the end, so ``dest`` exists only complete, and an
    existing ``dest`` is returned as it is (idempotent).

    Parameters
    ----------
    archive : str or os.PathLike
        The archive.
    dest : str or os.PathLike
        The folder to create.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    comir.data.zenodo.record.DownloadError
        If the archive is missing, is neither zip nor tar, or has an unsafe member.
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
    the end, so ``dest`` exists only complete and an interrupted run starts over cleanly. An existing
    ``dest`` is returned as it is.

    Parameters
    ----------
    manifest : str or os.PathLike
        The record's ``MANIFEST.tsv``; the files are next to it.
    dest : str or os.PathLike
        The folder to create.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    comir.data.zenodo.record.DownloadError
        If the manifest cannot be read or lists no files, or an archive cannot be unpacked (:func:`unpack`).
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
                place(source, staging / key)
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

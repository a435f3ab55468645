"""The network: one file streamed with resume, retries with back-off, progress.

Contract: :func:`transfer` makes one attempt to bring ``<key>.part`` to the file's size,
resuming after what it already holds with an HTTP ``Range`` request (a source that ignores
``Range``, such as ``file://``, is read from the start); it does not verify the result.
:func:`retrying` repeats an action after transient network errors only (:func:`transient`:
server and network failures, not a 404, a missing file or a bad certificate), waiting
``backoff_s * 2**n``. :data:`NETWORK_ERRORS` are the errors of one attempt; anything else (a full
disk, a bug) propagates at once. :func:`reason` words an error for messages. Progress goes to
stderr: a redrawn bar on a terminal, else a log line every 30 s (Snakemake logs).
"""

from __future__ import annotations

import http.client
import logging
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from comir import __version__
from comir.data.zenodo.record import RecordFile

__all__ = ["NETWORK_ERRORS", "USER_AGENT", "read_url", "reason", "retrying", "transfer", "transient"]

log = logging.getLogger(__name__)

USER_AGENT = f"comir/{__version__} (CoMIR Snakemake pipeline; Python urllib)"
_CHUNK = 256 * 1024
_BAR_EVERY_S = 0.2  # redraw interval of the progress bar on a terminal
_LOG_EVERY_S = 30.0  # interval of progress log lines otherwise (Snakemake logs)
_T = TypeVar("_T")


class _Interrupted(ConnectionError):
    """The connection ended before the whole file arrived (urllib does not raise for that)."""


# Errors of one network attempt; everything else (a full disk, a bug) is not retried.
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


def transfer(file: RecordFile, part: Path, timeout_s: float, progress: bool) -> None:
    """One attempt to bring ``part`` to the file's size, resuming after what it already holds.

    The result is not verified. A ``part`` larger than the file is started again.

    Parameters
    ----------
    file : comir.data.zenodo.record.RecordFile
        The file (URL, size, key).
    part : pathlib.Path
        The partial download, appended to (resumed with an HTTP ``Range`` request).
    timeout_s : float
        Timeout of the request, seconds.
    progress : bool
        Show progress on stderr.

    Raises
    ------
    ConnectionError
        If the connection ends before the whole file arrived, or the server sends another range than asked
        (``part`` is then deleted).
    urllib.error.URLError
        On other network errors (:data:`NETWORK_ERRORS`), as ``urllib`` raises them.
    """
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


def retrying(action: Callable[[], _T], what: str, retries: int, backoff_s: float) -> _T:
    """``action()``, tried again after transient network errors, waiting backoff_s * 2**n.

    Parameters
    ----------
    action : Callable[[], T]
        One attempt.
    what : str
        What is attempted, for the log.
    retries : int
        Further attempts after the first.
    backoff_s : float
        Wait before the first retry, doubled for each further one, seconds.

    Returns
    -------
    T
        What ``action`` returns.

    Raises
    ------
    urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError
        The last error of :data:`NETWORK_ERRORS`, when it is not :func:`transient` or the retries are spent.
        Any other error of ``action`` propagates at once.
    """
    attempt = 0
    while True:
        try:
            return action()
        except NETWORK_ERRORS as error:
            if attempt >= retries or not transient(error):
                raise
            delay = backoff_s * 2**attempt
            attempt += 1
            log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.3g s",
                what, attempt, retries + 1, reason(error), delay,
            )
            time.sleep(delay)


def transient(error: BaseException) -> bool:
    """Whether trying again may help: server and network failures, not a 404, a missing file or a bad certificate.

    Parameters
    ----------
    error : BaseException
        An error of :data:`NETWORK_ERRORS`.

    Returns
    -------
    bool
        True for HTTP 408, 429 and 5xx, for URL errors caused by other OS errors than a missing file,
        folder or permission or a certificate failure, and for any other error.
    """
    if isinstance(error, urllib.error.HTTPError):
        return error.code in (408, 429) or error.code >= 500
    if isinstance(error, urllib.error.URLError):  # reason: an OSError for network and file:// errors
        return isinstance(error.reason, OSError) and not isinstance(
            error.reason,
            (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ssl.SSLCertVerificationError),
        )
    return True


def read_url(url: str, timeout_s: float) -> bytes:
    """The body of a JSON request to ``url`` (one attempt; errors propagate).

    Parameters
    ----------
    url : str
        The URL (``http(s)://`` or ``file://``).
    timeout_s : float
        Timeout of the request, seconds.

    Returns
    -------
    bytes
        The response body.
    """
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


def reason(error: BaseException) -> str:
    """An error in a few words for messages (``HTTP 404 Not Found``, the network's reason).

    Parameters
    ----------
    error : BaseException
        Any error.

    Returns
    -------
    str
        ``HTTP <code> <reason>``, a URL error's reason, else the error's text or its type's name.
    """
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__

"""A loopback Zenodo for the download tests: the records API, the files, HTTP Range, and faults.

``FakeZenodo`` serves, on 127.0.0.1 at a free port, in a thread:

* ``/api/records/<id>``: the record's JSON, in the current shape (``key``, ``size``,
  ``checksum: "md5:..."``, ``links.self``) or, with ``shape="old"``, the older one (``filename``,
  ``filesize``, bare md5, ``links.download``); its links point back to this server;
* the files at those links, with ``Range: bytes=N-`` answered by 206 (or 416 past the end);
* ``/mirror/record.json`` and ``/mirror/<key>``: the same record as an http mirror.

Every request is logged in ``requests``; ``faults`` makes the server misbehave the way real
networks and servers do, so that the downloader's recovery can be tested offline.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECORD = "<record>"  # the key that addresses the record's JSON in ``Faults.errors_500``


@dataclass
class Faults:
    """Misbehaviour to inject, per file key."""

    # bytes sent before dropping the connection (first request only)
    drop_after: dict[str, int] = field(default_factory=dict)
    # how many requests are answered 500 first (RECORD: the JSON)
    errors_500: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)  # served as corrupted(data): same size, other bytes
    ignore_range: set[str] = field(default_factory=set)  # answer 200 with the whole file even to a Range request
    declared_size: dict[str, int] = field(default_factory=dict)  # size the record announces instead of the real one


@dataclass(frozen=True)
class Request:
    path: str
    range: str | None
    user_agent: str | None
    status: int
    key: str | None  # the file (or RECORD) it addressed


def corrupted(data: bytes) -> bytes:
    """What a file in ``Faults.corrupt`` is served as."""
    return bytes(b ^ 0x5A for b in data)


class FakeZenodo:
    """A record ``record_id`` holding ``files`` (key -> bytes); use as a context manager."""

    def __init__(self, record_id: int, files: dict[str, bytes], *, shape: str = "modern") -> None:
        self.record_id = record_id
        self.files = dict(files)
        self.shape = shape
        self.faults = Faults()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeZenodo:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def record_json(self) -> dict[str, Any]:
        """The record's JSON as ``/api/records/<id>`` serves it."""
        entries = []
        for key, data in self.files.items():
            quoted = urllib.parse.quote(key)
            size = self.faults.declared_size.get(key, len(data))
            md5 = hashlib.md5(data).hexdigest()
            if self.shape == "old":
                entries.append({"filename": key, "filesize": size, "checksum": md5,
                                "links": {"download": f"{self.base_url}/api/files/bucket-0/{quoted}"}})
            else:
                content = f"{self.base_url}/api/records/{self.record_id}/files/{quoted}/content"
                entries.append({"id": f"file-{len(entries)}", "key": key, "size": size, "checksum": f"md5:{md5}",
                                "links": {"self": content}})
        return {
            "id": self.record_id, "recid": str(self.record_id), "metadata": {"title": "fake record"}, "files": entries
        }

    def file_requests(self, key: str) -> list[Request]:
        return [r for r in self.requests if r.key == key]

    # ---------------------------------------------------------------- serving

    def _route(self, path: str) -> str | None:
        """The file key (or RECORD) that ``path`` addresses, None for an unknown path."""
        patterns = [
            (rf"/api/records/{self.record_id}", None),
            (r"/mirror/record\.json", None),
            (rf"/api/records/{self.record_id}/files/(?P<key>[^/]+)/content", "key"),
            (r"/api/files/bucket-0/(?P<key>[^/]+)", "key"),
            (r"/mirror/(?P<key>[^/]+)", "key"),
        ]
        for pattern, group in patterns:
            match = re.fullmatch(pattern, path)
            if match:
                key = urllib.parse.unquote(match.group(group)) if group else RECORD
                return key if key == RECORD or key in self.files else None
        return None

    def _take_fault(self, table: dict[str, int], key: str) -> int | None:
        """Consume a one-off fault (drop_after) or one of a countdown (errors_500)."""
        with self._lock:
            if key not in table:
                return None
            value = table[key]
            if table is self.faults.errors_500:
                if value <= 1:
                    del table[key]
                else:
                    table[key] = value - 1
            else:
                del table[key]
            return value


def _handler(fake: FakeZenodo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a dropped one is simply closed

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
            pass

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            key = fake._route(path)
            status, body, headers, cut = self._answer(key)
            fake.requests.append(Request(path, self.headers.get("Range"), self.headers.get("User-Agent"), status, key))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()

        def _answer(self, key: str | None) -> tuple[int, bytes, dict[str, str], int | None]:
            """Status, body, headers and the byte count after which to drop the connection."""
            if key is None:
                return 404, b'{"status": 404, "message": "not found"}', {"Content-Type": "application/json"}, None
            if fake._take_fault(fake.faults.errors_500, key):
                return 500, b"internal server error", {}, None
            if key == RECORD:
                return 200, json.dumps(fake.record_json()).encode(), {"Content-Type": "application/json"}, None
            data = fake.files[key]
            if key in fake.faults.corrupt:
                data = corrupted(data)
            cut = fake._take_fault(fake.faults.drop_after, key)
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match is None or key in fake.faults.ignore_range:
                return 200, data, {"Accept-Ranges": "bytes"}, cut
            start = int(match.group(1))
            if start >= len(data):
                return 416, b"", {"Content-Range": f"bytes */{len(data)}"}, None
            content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return 206, data[start:], {"Content-Range": content_range}, cut

    return Handler

"""Real servers on 127.0.0.1 for the remote-read tests (``tests/test_remote*.py``) and the docs.

:class:`RangeServer` is a small threaded ``http.server`` that serves files from memory,
honours single byte ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``), ``If-Match`` and
``ETag``, and counts every request and body byte it sends. It can also misbehave on
purpose (:attr:`RangeServer.faults`) to test how a reader copes with a hostile server.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Served:
    """One answered request: its path, the Range header it carried, the status and body bytes sent."""

    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class Faults:
    """Ways the server misbehaves (all off by default)."""

    status: int | None = None
    """Answer every request with this status (e.g. 404, 500)."""
    ignore_range: bool = False
    """Answer 200 with the whole file."""
    truncate: bool = False
    """Declare the full length but close the connection after half the body."""
    short_length: bool = False
    """Declare (and send) one byte less than the range asked for, with a Content-Range that claims all of it."""
    shifted_range: bool = False
    """Send the bytes one position later than asked for, with the Content-Range of the request."""
    ignore_if_match: bool = False
    """Serve the current file even when ``If-Match`` names an older ETag."""
    after: int = 0
    """Misbehave only from this request on (numbered in order of arrival from the start or the last reset)."""
    weak_etag: bool = False
    """Send weak ETags (``W/"..."``), which never satisfy ``If-Match`` (strong comparison, RFC 9110)."""
    replace_with: bytes | None = None
    """From request number ``after`` on, serve these bytes instead of the file (the file changed)."""


@dataclass
class RangeServer:
    """A threaded HTTP/1.1 file server on 127.0.0.1 with range support and request counting."""

    files: dict[str, bytes] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    log: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = 0
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset(self) -> None:
        """Forget the request log and the faults."""
        with self._lock:
            self.log.clear()
            self._arrived = 0
            self.faults = Faults()

    @property
    def requests(self) -> int:
        return len(self.log)

    @property
    def bytes_sent(self) -> int:
        return sum(s.sent for s in self.log)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> RangeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, served: Served) -> None:
        with self._lock:
            self.log.append(served)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client closing its connection (as readers do after a bad answer) is not an error here."""


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha1(data).hexdigest() + '"'


def _handler(server: RangeServer) -> Any:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            """Quiet: the tests read :attr:`RangeServer.log` instead."""

        def _send(self, status: int, headers: dict[str, str], body: bytes, declared: int | None = None) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if declared is None else declared))
            self.end_headers()
            server._record(Served(self.path, self.headers.get("Range"), status, len(body)))  # before the client has it
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            with server._lock:  # requests are numbered as they arrive (concurrent ones too)
                number = server._arrived
                server._arrived += 1
                faults = server.faults
            active = number >= faults.after
            data = server.files.get(self.path)
            if data is None:
                self._send(404, {}, b"not found")
                return
            if active and faults.replace_with is not None:
                data = faults.replace_with
            if active and faults.status is not None:
                self._send(faults.status, {}, b"failure")
                return
            etag = ("W/" if faults.weak_etag else "") + _etag(data)
            wanted = self.headers.get("If-Match")
            strong_match = wanted == etag and not etag.startswith("W/")
            if wanted is not None and not strong_match and not (active and faults.ignore_if_match):
                self._send(412, {}, b"precondition failed")
                return
            headers = {"ETag": etag}
            spec = self.headers.get("Range")
            match = _RANGE.match(spec or "")
            if spec is None or match is None or (active and faults.ignore_range):
                self._send(200, headers, data)
                return
            first, last = match.groups()
            size = len(data)
            if first == "":
                start, end = max(size - int(last), 0), size - 1
            else:
                start, end = int(first), min(int(last) if last else size - 1, size - 1)
            if start >= size or start > end:
                self._send(416, {"Content-Range": f"bytes */{size}"}, b"")
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            body = data[start : end + 1]
            if active and faults.shifted_range:
                body = data[start + 1 : end + 2].ljust(end + 1 - start, b"\0")
            if active and faults.short_length:
                body = body[:-1]
            if active and faults.truncate:
                self.close_connection = True
                self.send_response(206)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                server._record(Served(self.path, spec, 206, len(body) // 2))
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                return
            self._send(206, headers, body)

    return Handler

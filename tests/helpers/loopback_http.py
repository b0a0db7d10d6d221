"""A real HTTP server on 127.0.0.1 for download tests: serves files from a dict (by path, or by path
and query when a file is keyed so), answers HEAD as GET without the body, honours Range and If-Range
requests, logs every request (with its time and Authorization header), and can drop a connection part-way through a
body, answer errors (with headers such as Retry-After), end a body short of its Content-Length, stall
mid-body, send short ranges or pause before a body (slow downloads that overlap)."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    """What one request of a path gets instead of its plain answer: a `status` (with `headers`), or
    the body's first `after` bytes and then a `drop` (reset), a `short` end (clean close, short of
    the Content-Length sent), or a `stall` of `seconds` before closing."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    kind: str = "drop"  # drop | short | stall
    seconds: float = 0.0


@dataclass
class Site:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # path → bytes sent before dropping (once)
    status: dict[str, list[int]] = field(default_factory=dict)  # path → statuses to answer first
    faults: dict[str, list[Fault]] = field(default_factory=dict)  # path → faults of its next requests
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # GETs: (path, Range header)
    heads: list[str] = field(default_factory=list)  # paths of HEAD requests
    authorizations: list[tuple[str, str | None]] = field(
        default_factory=list
    )  # every request's (path, Authorization)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each request
    etags: bool = True  # send a strong ETag and honour If-Range (a changed file is sent whole)
    range_cap: int | None = None  # answer a Range request with at most this many bytes
    pause: float = 0.0  # seconds to wait before sending a body
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path → extra headers of its answers
    pages: set[str] = field(default_factory=set)  # paths sent whole whatever the Range, as dynamic pages are
    url: str = ""


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, head: bool) -> None:
            path = self.path if self.path in site.files else self.path.split("?")[0]
            site.authorizations.append((path, self.headers.get("Authorization")))
            if head:
                site.heads.append(path)
            else:
                site.requests.append((path, self.headers.get("Range")))
                site.times.append(time.monotonic())
            fault = site.faults[path].pop(0) if site.faults.get(path) and not head else None
            if fault is not None and fault.status is not None:
                self.send_response(fault.status)
                for name, value in fault.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if site.status.get(path):
                self.send_error(site.status[path].pop(0))
                return
            if path not in site.files:
                self.send_error(404)
                return
            data = site.files[path]
            etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
            start = 0
            ranged = None if path in site.pages else self.headers.get("Range")
            if site.etags and self.headers.get("If-Range") not in (None, etag):
                ranged = None
            if ranged:
                start = int(ranged.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                end = len(data) if site.range_cap is None else min(len(data), start + site.range_cap)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            else:
                end = len(data)
                self.send_response(200)
            if site.etags:
                self.send_header("ETag", etag)
            for name, value in site.headers.get(path, {}).items():
                self.send_header(name, value)
            body = data[start:end]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            time.sleep(site.pause)
            if fault is not None:
                self._fail(fault, body)
                return
            if path in site.cut_after:
                self.wfile.write(body[: site.cut_after.pop(path)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def _fail(self, fault: Fault, body: bytes) -> None:
            self.wfile.write(body[: fault.after])
            self.wfile.flush()
            self.close_connection = True
            if fault.kind == "stall":
                time.sleep(fault.seconds)
            elif fault.kind == "drop":  # a reset, as a lost connection looks to the client
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on a stalled body
                self.close_connection = True

    return Handler


@contextmanager
def serve(site: Site) -> Iterator[Site]:
    """Run `site` on a free loopback port until the block ends; `site.url` is its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()

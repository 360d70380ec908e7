"""Hostile registries that are slow on purpose (issue 10, item 8): a per-call deadline and a
minimum-progress rule hold even when every single read keeps arriving within ``timeout``.

Each attack runs in a child interpreter (``servers.bounded.run_bounded``) with small limits set
through the environment, against a loopback server from this file that sends a header line every
2 s, a body at one byte a second, one byte per connection (accepting Range resumes), or catalog
pages slowly. The child must fail with :class:`~regexplore.errors.DeadlineExceeded` (or, for a
server that makes a byte of progress per reconnect, the resume budget's error) within the limit
plus a little slack; without the watchdog each of them runs until the wall-clock timeout. Last, a
server that is slow but above the minimum and a caller that reads slowly are left alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socketserver
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from digests import sha256_digest
from servers import serve, stop
from servers.bounded import Bounded, run_bounded

MiB = 1024 * 1024
CLAIMED = 16 * MiB  #: the size the hostile blob claims: above the 8 MiB manifest cap, so files() streams it
SLACK = 4.0  #: seconds on top of a limit: the child's start (~1 s), the watchdog's tick, the error's way out
HARD_TIMEOUT = 40.0  #: the child is killed (and the test fails) after this: a hang without the fix


def _layer(size: int = 2 * MiB) -> bytes:
    """A gzip layer of one incompressible file, so its first MiB holds a tar header and data."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        member = tarfile.TarInfo("data.bin")
        member.size = size
        tar.addfile(member, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


class Hostile(BaseHTTPRequestHandler):
    """A registry front: ``/v2/``, blob HEAD/GET (any digest) and ``/v2/_catalog``, misbehaving as
    ``mode`` says. ``hits`` records (method, path, Range) of every request."""

    protocol_version = "HTTP/1.1"
    mode = "fast"
    body = b""  #: the blob's bytes that are sent fast (all of it for "fast"/"steady", a prefix else)
    size = CLAIMED  #: the blob size announced
    hits: list[tuple[str, str, str | None]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def do_HEAD(self) -> None:
        self.hits.append(("HEAD", self.path, None))
        self._head(200, {"Content-Type": "application/octet-stream", "Content-Length": str(self.size)})

    def do_GET(self) -> None:
        self.hits.append(("GET", self.path, self.headers.get("Range")))
        if self.mode == "trickle_head":
            return self._trickle_head()
        if self.path == "/v2/":
            return self._json({})
        if self.path.startswith("/v2/_catalog"):
            return self._catalog()
        return getattr(self, f"_blob_{self.mode}")()

    def _json(self, doc: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self._head(200, {"Content-Type": "application/json", "Content-Length": str(len(data)),
                         **(extra or {})})
        self.wfile.write(data)

    def _trickle_head(self) -> None:
        """A status line, then one header line every 2 s, for as long as the client listens."""
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(60):
                time.sleep(2)
                self.wfile.write(b"X-Slow-%d: still coming\r\n" % i)
        except OSError:
            pass
        self.close_connection = True

    def _catalog(self) -> None:
        """Endless pages, each after half a second, each linking to a new next page."""
        m = re.search(r"last=r(\d+)", self.path)
        k = int(m.group(1)) + 1 if m else 0
        time.sleep(0.5)
        self._json({"repositories": [f"r{k}"]}, {"Link": f'</v2/_catalog?last=r{k}&n=1000>; rel="next"'})

    def _range(self) -> int:
        m = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        return int(m.group(1)) if m else 0

    def _start_body(self, start: int, length: int | None = None) -> None:
        """200 for the whole blob; 206 for a Range, or when ``length`` says less than the rest."""
        length = self.size - start if length is None else length
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        if self.headers.get("Range") or start + length < self.size:
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{self.size}"
        self._head(206 if "Content-Range" in headers else 200, headers)

    def _blob_byte_per_second(self) -> None:
        """The prefix in ``body`` at once, then one byte a second (Range resumes honoured)."""
        start = self._range()
        self._start_body(start)
        try:
            if start < len(self.body):
                self.wfile.write(self.body[start:])
            for _ in range(120):
                self.wfile.write(b"\0")
                time.sleep(1)
        except OSError:
            pass
        self.close_connection = True

    def _blob_byte_per_connection(self) -> None:
        """One byte of what was asked, then the connection is closed (a Range resume is welcome)."""
        self._start_body(self._range())
        self.wfile.write(b"\0")
        self.close_connection = True

    def _blob_one_byte_206(self) -> None:
        """A clean 206 of a single byte for every request, Range or not (keep-alive)."""
        start = self._range()
        self._start_body(start, 1)
        self.wfile.write(b"\0")

    def _blob_steady(self) -> None:
        """All of ``body`` in 8 KiB pieces every 50 ms (160 KiB/s): slow, but well above the minimum."""
        start = self._range()
        self._start_body(start)
        for i in range(start, len(self.body), 8192):
            self.wfile.write(self.body[i:i + 8192])
            time.sleep(0.05)

    def _blob_fast(self) -> None:
        start = self._range()
        self._start_body(start)
        self.wfile.write(self.body[start:])


@pytest.fixture
def hostile() -> Iterator[Any]:
    """Start a :class:`Hostile` server; call it with the mode (and class attributes) to use."""
    servers = []

    def start(mode: str, **attrs: Any) -> Any:
        handler = type("Handler", (Hostile,), {"mode": mode, "hits": [], **attrs})
        httpd = serve(handler)
        httpd.handler = handler  # type: ignore[attr-defined]
        servers.append(httpd)
        return httpd

    yield start
    for httpd in servers:
        stop(httpd)


def attack(code: str, httpd: Any, tmp_path: Path, timeout: float = HARD_TIMEOUT, **env: str) -> Bounded:
    """Run ``code`` in a child against ``httpd``, with ``URL``, ``REF`` (a blob of a random digest),
    ``DEST`` and the limits in ``env``; an empty Docker config and no cache."""
    (tmp_path / "docker").mkdir(exist_ok=True)
    child_env = {"URL": httpd.url, "REF": f"demo/slow@sha256:{os.urandom(32).hex()}",
                 "DEST": str(tmp_path / "out"), "DOCKER_CONFIG": str(tmp_path / "docker"),
                 "REGEXPLORE_CACHE": "0", **env}
    return run_bounded(code, env=child_env, timeout=timeout, memory_mb=1500)


DOWNLOAD = """
import os, regexplore as rx
rx.Registry(os.environ["URL"]).download(os.environ["REF"], os.environ["DEST"], progress=False)
"""
FILES = """
import os, regexplore as rx
rx.Registry(os.environ["URL"]).files(os.environ["REF"])
"""
CATALOG = """
import os, regexplore as rx
result = len(rx.Registry(os.environ["URL"]).catalog())
"""


def assert_deadline(res: Bounded, limit: float, variable: str) -> None:
    assert res.raised("DeadlineExceeded"), res.output[-3000:]
    assert res.raised("RegistryError")
    assert variable in res.message, res.message
    assert res.elapsed < limit + SLACK, f"took {res.elapsed:.1f} s for a {limit} s limit"


def assert_no_good_file(tmp_path: Path) -> None:
    """Nothing under a blob's final name; a ``.partial`` (kept for a resume) is allowed."""
    out = tmp_path / "out"
    names = [p.name for p in out.iterdir()] if out.exists() else []
    assert all(n.endswith(".partial") for n in names), names


# ================================================================ (a) a header line every 2 s
@pytest.mark.parametrize("code", [CATALOG, DOWNLOAD], ids=["catalog", "download"])
def test_trickled_headers_meet_the_deadline(hostile: Any, tmp_path: Path, code: str) -> None:
    httpd = hostile("trickle_head")
    res = attack(code, httpd, tmp_path, REGEXPLORE_DEADLINE="3", REGEXPLORE_TRANSFER_DEADLINE="3")
    assert_deadline(res, 3, "REGEXPLORE_DEADLINE" if code is CATALOG else "REGEXPLORE_TRANSFER_DEADLINE")
    assert "ran past its deadline of 3 s" in res.message
    assert_no_good_file(tmp_path)


def test_trickled_headers_are_too_slow(hostile: Any, tmp_path: Path) -> None:
    """No deadline near: the minimum progress alone ends it, through the transport's retries."""
    httpd = hostile("trickle_head")
    res = attack(CATALOG, httpd, tmp_path, REGEXPLORE_LOW_SPEED_TIME="0.5")
    assert res.raised("DeadlineExceeded"), res.output[-3000:]
    assert "too slow" in res.message and "REGEXPLORE_LOW_SPEED_LIMIT" in res.message
    assert res.elapsed < 15
    assert len(httpd.handler.hits) == 5  # the RetryPolicy's attempts, each cut, none forever


class _TrickledHandshake(socketserver.BaseRequestHandler):
    """Answers a TLS ClientHello with the header of a 16 KiB handshake record, then a byte a second."""

    def handle(self) -> None:
        try:
            self.request.recv(4096)
            self.request.sendall(b"\x16\x03\x03\x40\x00")
            for _ in range(60):
                time.sleep(1)
                self.request.sendall(b"\x02")
        except OSError:
            pass


def test_a_trickled_tls_handshake_meets_the_deadline(tmp_path: Path) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TrickledHandshake)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = attack(CATALOG, type("S", (), {"url": f"https://127.0.0.1:{server.server_address[1]}"}),
                     tmp_path, REGEXPLORE_DEADLINE="3")
    finally:
        server.shutdown()
        server.server_close()
    assert_deadline(res, 3, "REGEXPLORE_DEADLINE")


# ================================================================ (b) a body at one byte a second
@pytest.mark.parametrize("code", [DOWNLOAD, FILES], ids=["download", "files"])
def test_a_body_at_one_byte_a_second_meets_the_deadline(hostile: Any, tmp_path: Path, code: str) -> None:
    # files(): the first 1.5 MiB of a real gzip layer come at once, so the listing is under way in its
    # worker threads (the resume after the cut is asked for from there) when the trickle starts
    httpd = hostile("byte_per_second", body=_layer()[: 3 * MiB // 2] if code is FILES else b"")
    res = attack(code, httpd, tmp_path, REGEXPLORE_TRANSFER_DEADLINE="4")
    assert_deadline(res, 4, "REGEXPLORE_TRANSFER_DEADLINE")
    assert_no_good_file(tmp_path)


def test_a_body_at_one_byte_a_second_is_too_slow(hostile: Any, tmp_path: Path) -> None:
    """Each attempt is cut by the minimum-progress rule and resumed; the resumes, which gain a byte
    or two each, spend the budget: a clear error after a bounded number of requests."""
    httpd = hostile("byte_per_second")
    res = attack(DOWNLOAD, httpd, tmp_path, REGEXPLORE_LOW_SPEED_TIME="0.5")
    assert res.raised("DeadlineExceeded"), res.output[-3000:]
    assert "too slow" in res.message
    assert res.elapsed < 20
    gets = [h for h in httpd.handler.hits if h[0] == "GET"]
    assert 2 <= len(gets) <= 9  # the first GET and at most MAX_RESUMES resumes
    assert_no_good_file(tmp_path)


# ================================================================ (c) one byte per connection
@pytest.mark.parametrize("mode", ["byte_per_connection", "one_byte_206"])
def test_a_byte_per_reconnect_spends_the_resume_budget(hostile: Any, tmp_path: Path, mode: str) -> None:
    """Progress by the byte no longer resets the count of failed resumes: a 16 MiB blob would take
    16 million requests; the budget ends it after a handful."""
    httpd = hostile(mode)
    res = attack(DOWNLOAD, httpd, tmp_path)
    assert res.raised("RegistryError") and not res.raised("DeadlineExceeded"), res.output[-3000:]
    assert "kept breaking" in res.message
    assert res.elapsed < 15
    gets = [h for h in httpd.handler.hits if h[0] == "GET"]
    assert 2 <= len(gets) <= 10
    ranges = [re.match(r"bytes=(\d+)-", r or "") for _, _, r in gets[1:]]
    starts = [int(m.group(1)) for m in ranges if m]
    assert starts == list(range(1, len(gets)))  # each resume one byte further
    assert_no_good_file(tmp_path)


# ================================================================ (d) catalog pages, slowly
def test_slow_catalog_pages_meet_the_deadline(hostile: Any, tmp_path: Path) -> None:
    httpd = hostile("fast")
    res = attack(CATALOG, httpd, tmp_path, REGEXPLORE_DEADLINE="3")
    assert_deadline(res, 3, "REGEXPLORE_DEADLINE")
    assert "catalog() ran past its deadline" in res.message
    assert 3 <= len(httpd.handler.hits) <= 8  # pages kept coming, each in time, until the deadline


def test_the_deadline_is_a_registry_attribute(hostile: Any, tmp_path: Path) -> None:
    httpd = hostile("fast")
    res = attack("""
        import os, regexplore as rx
        reg = rx.Registry(os.environ["URL"])
        assert reg.deadline == 900 and reg.transfer_deadline == 6 * 3600  # the documented defaults
        reg.deadline = 2
        reg.catalog()
    """, httpd, tmp_path)
    assert_deadline(res, 2, "REGEXPLORE_DEADLINE")
    assert "deadline of 2 s" in res.message


# ================================================================ what must not be cut
def test_a_slow_server_above_the_minimum_and_a_long_transfer_are_left_alone(hostile: Any,
                                                                           tmp_path: Path) -> None:
    """A 320 KiB blob at 160 KiB/s (2 s) with a 0.5 s window and a 64 KiB/s minimum; the metadata
    deadline (1 s) does not apply to a download, which has the transfer deadline."""
    body = os.urandom(320 * 1024)
    httpd = hostile("steady", body=body, size=len(body))
    ref = f"demo/slow@sha256:{hashlib.sha256(body).hexdigest()}"
    res = attack(DOWNLOAD, httpd, tmp_path, REF=ref, REGEXPLORE_DEADLINE="1",
                 REGEXPLORE_LOW_SPEED_TIME="0.5", REGEXPLORE_LOW_SPEED_LIMIT=str(64 * 1024))
    assert res.ok, res.output[-3000:]
    [path] = (tmp_path / "out").glob("sha256-*")
    assert path.read_bytes() == body
    assert res.elapsed > 2


def test_a_caller_that_reads_slowly_is_not_cut(hostile: Any, tmp_path: Path) -> None:
    """The server is fast; the caller stops reading for 2 s while the socket is full, and meanwhile
    another stream (160 KiB/s) keeps the watchdog looking. Only waiting on the server is judged, so
    the 0.5 s window cuts neither."""
    body, steady = os.urandom(24 * MiB), os.urandom(320 * 1024)
    fast = hostile("fast", body=body, size=len(body))
    slow = hostile("steady", body=steady, size=len(steady))
    digests = [sha256_digest(b) for b in (body, steady)]
    res = attack("""
        import os, threading, time, hashlib, regexplore as rx
        from regexplore.content import blobs

        def read(url, digest, pause_at=None):
            h, n = hashlib.sha256(), 0
            stream = blobs.open_verified_stream(rx.Registry(url), "demo/x", digest, cache=False)
            for i, block in enumerate(stream):
                if i == pause_at:
                    time.sleep(2)
                h.update(block)
                n += len(block)
            return [n, "sha256:" + h.hexdigest()]

        other = []
        t = threading.Thread(target=lambda: other.append(read(os.environ["SLOW_URL"], os.environ["D2"])))
        t.start()
        result = read(os.environ["URL"], os.environ["D1"], pause_at=1)
        t.join()
        result = [result, other[0]]
    """, fast, tmp_path, SLOW_URL=slow.url, D1=digests[0], D2=digests[1],
        REGEXPLORE_LOW_SPEED_TIME="0.5", REGEXPLORE_LOW_SPEED_LIMIT=str(64 * 1024))
    assert res.ok, res.output[-3000:]
    assert res.value == [[len(body), digests[0]], [len(steady), digests[1]]]
    for httpd in (fast, slow):  # never cut, never resumed
        assert len([h for h in httpd.handler.hits if h[0] == "GET"]) == 1

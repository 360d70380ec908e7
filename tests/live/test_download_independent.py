"""Regressions found by an independent fault proxy: resuming a ``.partial`` of a blob named by
digest alone (``repo@sha256:…``, no descriptor size, only a HEAD's Content-Length).

- the resume Range must be closed (``bytes=N-(size-1)``), as for blobs with a known size;
- a ``.partial`` that already holds every byte (a process killed between the last write and
  the rename) or more bytes than the blob must not fail forever with the registry's 416
  (distribution answers 416 to ``Range: bytes=<size>-``, RFC 9110 §14.1.1).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from digests import sha256_digest
from servers import serve, stop

from regexplore import Registry

BLOB = os.urandom(300_000 + 17)
DIGEST = sha256_digest(BLOB)
NAME = "sha256-" + DIGEST[7:]


class _Blobs(BaseHTTPRequestHandler):
    """``/v2/`` and one blob, with Range handled as distribution does (416 past the end)."""

    protocol_version = "HTTP/1.1"
    ranges: list[str | None] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: bool) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            if body:
                self.wfile.write(b"{}")
            return
        if not self.path.endswith(f"/blobs/{DIGEST}"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rng = self.headers.get("Range")
        if body:
            type(self).ranges.append(rng)
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        start, end = (int(m.group(1)), int(m.group(2) or len(BLOB) - 1)) if m else (0, len(BLOB) - 1)
        end = min(end, len(BLOB) - 1)
        if m and start >= len(BLOB):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(BLOB)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if m else 200)
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(BLOB)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if body:
            self.wfile.write(BLOB[start:end + 1])

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("REGEXPLORE_CACHE", "off")
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")
    _Blobs.ranges = []
    httpd = serve(_Blobs)
    try:
        yield httpd.url
    finally:
        stop(httpd)


def _download(url: str, dest: Path) -> Path:
    reg = Registry(url, auth=False)
    (path,) = reg.download(f"demo/blob@{DIGEST}", dest, progress=False, parallel=1)
    return path


def test_resume_by_digest_asks_a_closed_range(server: str, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.partial").write_bytes(BLOB[:1000])
    path = _download(server, tmp_path)
    assert path.read_bytes() == BLOB
    assert _Blobs.ranges == [f"bytes=1000-{len(BLOB) - 1}"]
    assert not (tmp_path / f"{NAME}.partial").exists()


@pytest.mark.parametrize("content", [BLOB, BLOB + b"junk"], ids=["complete", "too-long"])
def test_partial_holding_every_byte_is_not_stuck_on_416(server: str, tmp_path: Path, content: bytes) -> None:
    (tmp_path / f"{NAME}.partial").write_bytes(content)
    path = _download(server, tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DIGEST[7:]
    assert not (tmp_path / f"{NAME}.partial").exists()
    if content == BLOB:
        assert _Blobs.ranges in ([], [f"bytes={len(BLOB)}-"])  # verified from the bytes on disk
    else:
        assert _Blobs.ranges[-1] is None  # the bad prefix was dropped and the blob fetched whole


def test_real_registry_complete_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same against distribution itself, which answers 416 past the end."""
    from regexplore.sandbox import LocalRegistry

    monkeypatch.setenv("REGEXPLORE_CACHE", "off")
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")
    folder = tmp_path / "layout"
    (folder / "blobs" / "sha256").mkdir(parents=True)
    import json

    def put(data: bytes) -> dict:
        d = sha256_digest(data)
        (folder / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    cfg = put(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
    layer = put(BLOB)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}).encode()
    m = put(man)
    (folder / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **m}]}))
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    dest = tmp_path / "dest"
    dest.mkdir()
    with LocalRegistry() as lr:
        reg = Registry(lr.url, auth=False)
        reg.push(str(folder), "demo/blob:t")
        (dest / f"{NAME}.partial").write_bytes(BLOB)
        (path,) = reg.download(f"demo/blob@{DIGEST}", dest, progress=False)
    assert path.read_bytes() == BLOB

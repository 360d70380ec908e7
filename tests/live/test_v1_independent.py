"""Regressions found by driving the v1 client against an independently written v1 server.

The tiny server here is written from docs/protocol.md §1 alone (not from ``tests/support/v1server.py``):
an index and a registry on separate loopback ports; the registry accepts only ``Token`` auth
(hub_registry_spec.md: "Registry accepts only Token") with single-use tokens followed by a
session cookie, and sends the layer checksums with the image JSON in configurable headers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from servers import serve, stop

from regexplore.content.v1layers import download_layer, pull
from regexplore.errors import DigestMismatch
from regexplore.protocol.v1.client import V1Client

USER, PASSWORD = "alice", "pw-independent"
REPO = "alice/app"


def _image(image_id: str, parent: str | None, layer: bytes, cmd: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": image_id, "created": "2014-10-16T19:39:20.185302941Z",
                           "container_config": {"Cmd": ["/bin/sh", "-c", cmd]}, "Size": len(layer)}
    if parent:
        doc["parent"] = parent
    raw = json.dumps(doc).encode()
    return {"id": image_id, "json": raw, "layer": layer,
            "payload": "sha256:" + hashlib.sha256(raw + b"\n" + layer).hexdigest()}


BASE = _image("a" * 64, None, bytes(range(256)) * 40, "base")  # not a tar: no tarsum can be computed
TOP = _image("b" * 64, "a" * 64, b"top layer bytes " * 500, "top")
IMAGES = {i["id"]: i for i in (BASE, TOP)}


class _Independent:
    """Index + registry. ``checksums(image) -> [(header, value)]`` picks the image-JSON headers;
    ``standalone`` is the ``X-Docker-Registry-Standalone`` value (None: absent)."""

    def __init__(self, checksums: Any, standalone: str | None = None, corrupt: bool = False,
                 first_endpoint: str | None = None) -> None:
        self.checksums = checksums
        self.first_endpoint = first_endpoint  # listed before the registry in X-Docker-Endpoints
        self.standalone = standalone
        self.corrupt = corrupt
        self.tokens: set[str] = set()
        self.sessions: set[str] = set()
        self.registry_auth: list[str] = []
        self.lock = threading.Lock()
        self.servers = [serve(self._index_handler()), serve(self._registry_handler())]
        self.index_url = f"http://127.0.0.1:{self.servers[0].server_address[1]}"
        self.registry_host = f"127.0.0.1:{self.servers[1].server_address[1]}"

    def close(self) -> None:
        for httpd in self.servers:
            stop(httpd)

    def _index_handler(self) -> type:
        outer = self

        class Index(_Handler):
            def do_GET(self) -> None:
                if self.path == "/v1/_ping":
                    headers = [] if outer.standalone is None else [("X-Docker-Registry-Standalone", outer.standalone)]
                    return self.reply(200, {}, headers)
                if self.path == f"/v1/repositories/{REPO}/images":
                    auth = self.headers.get("Authorization", "")
                    if auth and auth != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
                        return self.reply(401, {"error": "bad credentials"},
                                          [("WWW-Authenticate", 'Basic realm="auth required",Token')])
                    sig = secrets.token_hex(8)
                    with outer.lock:
                        outer.tokens.add(sig)
                    return self.reply(200, [{"id": i, "checksum": ""} for i in IMAGES], [
                        ("X-Docker-Token", f'signature={sig},repository="{REPO}",access=read'),
                        ("X-Docker-Endpoints", f"{outer.first_endpoint}, {outer.registry_host}"
                         if outer.first_endpoint else f" {outer.registry_host} \t, ")])
                self.reply(404, {"error": "not found"})

        return Index

    def _registry_handler(self) -> type:
        outer = self

        class Registry(_Handler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                outer.registry_auth.append(auth.split(" ", 1)[0])
                cookie = re.search(r"session=(\w+)", self.headers.get("Cookie", ""))
                sigs = re.findall(r"signature=(\w+)", auth) if auth.startswith("Token ") else []
                extra = []
                with outer.lock:
                    used = [s for s in sigs if s in outer.tokens]
                    outer.tokens.difference_update(used)  # single use
                    if used:
                        sid = secrets.token_hex(8)
                        outer.sessions.add(sid)
                        extra.append(("Set-Cookie", f"session={sid}; Path=/"))
                    elif not (cookie and cookie.group(1) in outer.sessions):
                        return self.reply(401, {"error": "Requires authorization"}, [("WWW-Authenticate", "Token")])
                if self.path == f"/v1/repositories/{REPO}/tags":
                    return self.reply(200, {"latest": TOP["id"]}, extra)
                m = re.match(r"^/v1/images/(\w{64})/(json|ancestry|layer)$", self.path)
                if not m or m.group(1) not in IMAGES:
                    return self.reply(404, {"error": "Image not found"}, extra)
                img = IMAGES[m.group(1)]
                if m.group(2) == "json":
                    return self.reply(200, None, extra + [("X-Docker-Size", str(len(img["layer"])))]
                                      + outer.checksums(img), raw=img["json"])
                if m.group(2) == "ancestry":
                    chain = [TOP["id"], BASE["id"]] if img is TOP else [BASE["id"]]  # self first
                    return self.reply(200, chain, extra)
                layer = img["layer"]
                if outer.corrupt:
                    layer = bytes([layer[0] ^ 1]) + layer[1:]
                self.reply(200, None, extra, raw=layer, content_type="application/octet-stream")

        return Registry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, doc: Any, headers: Any = (), raw: bytes | None = None,
              content_type: str = "application/json") -> None:
        body = raw if raw is not None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _payload_header(img: dict[str, Any]) -> list[tuple[str, str]]:
    return [("X-Docker-Checksum-Payload", img["payload"])]


@pytest.fixture()
def plain() -> Iterator[_Independent]:
    srv = _Independent(_payload_header)
    yield srv
    srv.close()


def test_token_only_registry_of_an_http_index_without_standalone_header(plain: _Independent, tmp_path: Path) -> None:
    """protocol.md §1.2: Docker 1.3 adds Basic to every request only when the standalone index is
    **https**; over http the registry gets the index's tokens. A registry that refuses Basic with a
    ``Token`` challenge must then get the tokens (it used to get Basic again and fail with 401)."""
    client = V1Client.connect(plain.index_url, auth=(USER, PASSWORD))
    assert client.ping()["standalone"] is True  # header absent: standalone, as Docker 1.3 reads it
    assert client.tags(REPO) == {"latest": TOP["id"]}
    assert [r["id"] for r in client.history(REPO)] == [BASE["id"], TOP["id"]]
    got = pull(client, REPO, "latest", tmp_path)
    assert [g.path.read_bytes() for g in got] == [BASE["layer"], TOP["layer"]] and all(g.verified for g in got)
    assert "Token" in plain.registry_auth
    # after the first refusal the registry is not offered Basic again
    assert plain.registry_auth.count("Basic") == 1
    client.close()


def test_checksums_in_one_comma_joined_header_line(tmp_path: Path) -> None:
    """RFC 7230 §3.2.2: ``X: a, b`` is the same as two ``X`` headers; each value is a checksum."""
    srv = _Independent(lambda img: [("X-Docker-Checksum-Payload", f"tarsum+sha256:{'0' * 64}, {img['payload']}")],
                       standalone="False")
    try:
        got = download_layer(V1Client.connect(srv.index_url, auth=False), REPO, TOP["id"], tmp_path)
        assert got.verified and got.verified_against == "X-Docker-Checksum-Payload"
    finally:
        srv.close()


@pytest.mark.parametrize("corrupt", [False, True])
def test_payload_header_counts_when_a_tarsum_header_comes_first(tmp_path: Path, corrupt: bool) -> None:
    """The older ``X-Docker-Checksum`` (a tarsum, which cannot be computed for a layer that is not a
    tar) next to ``X-Docker-Checksum-Payload`` (protocol.md §1.2): the payload checksum verifies the
    layer, and catches a corrupted one."""
    srv = _Independent(lambda img: [("X-Docker-Checksum", f"tarsum+sha256:{'1' * 64}"),
                                    ("X-Docker-Checksum-Payload", img["payload"])],
                       standalone="False", corrupt=corrupt)
    try:
        client = V1Client.connect(srv.index_url, auth=False)
        if corrupt:
            with pytest.raises(DigestMismatch, match="X-Docker-Checksum-Payload"):
                download_layer(client, REPO, BASE["id"], tmp_path)
            assert not list(tmp_path.iterdir())
        else:
            got = download_layer(client, REPO, BASE["id"], tmp_path)
            assert got.path.read_bytes() == BASE["layer"]
            assert got.verified and got.verified_against == "X-Docker-Checksum-Payload"
    finally:
        srv.close()


def test_a_failing_endpoint_is_left_for_the_next_one_without_retries(tmp_path: Path) -> None:
    """protocol.md §1: the client tries each registry endpoint in turn; like Docker 1.3 it moves on
    at once from one that fails (a 500 here), keeping its retries for the last endpoint."""
    hits: list[str] = []

    class Broken(_Handler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.reply(500, {"error": "Internal Server Error"})

    broken = serve(Broken)
    srv = _Independent(_payload_header, standalone="False",
                       first_endpoint=f"127.0.0.1:{broken.server_address[1]}")
    try:
        client = V1Client.connect(srv.index_url, auth=False)
        assert [r["id"] for r in client.history(REPO)] == [BASE["id"], TOP["id"]]
        assert hits and len(hits) == len(set(hits))  # each path asked once: no retries on it
        hits.clear()
        got = pull(client, REPO, "latest", tmp_path)
        assert [g.path.read_bytes() for g in got] == [BASE["layer"], TOP["layer"]]
        assert hits and len(hits) == len(set(hits))
    finally:
        srv.close()
        stop(broken)

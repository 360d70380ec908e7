"""Downloads and uploads when servers behave as real ones did: expired signed storage URLs, short
206 answers, the Python v1 registry's ranges, checksum headers and 416s, opaque upload state,
awkward ``Link`` headers, non-sha256 ``Docker-Content-Digest``, and Docker 1.3's push order.

Servers: the real registry (``LocalRegistry``) behind ``servers.FaultProxy`` and its S3-like
store; the v1 sandbox (``regexplore.sandbox.v1server``, the Python registry's behaviour); and, for what no
real registry here can be made to send, a tiny stdlib HTTP server in this file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from servers import FaultProxy, TinyImage
from v1server import V1Image, V1Server

from regexplore import Registry
from regexplore.content import blobs, fetch
from regexplore.content.v1layers import download_layer
from regexplore.errors import Denied, DigestMismatch, RegistryError, UnsupportedMediaType
from regexplore.http.transport import RetryPolicy
from regexplore.protocol.v1.client import V1Client
from regexplore.sandbox import LocalRegistry

FAST = RetryPolicy(attempts=2, backoff=0.01, max_sleep=0.02, budget=1.0)


def sha(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:" + hashlib.new(alg, data).hexdigest()


def payload_checksum(img: V1Image) -> str:
    return sha(img.json + b"\n" + img.layer)


pytestmark = pytest.mark.usefixtures("private_cache")  # conftest: a cache folder of its own per test


@pytest.fixture
def proxy(plain: tuple[LocalRegistry, TinyImage]) -> Iterator[FaultProxy]:
    with FaultProxy(plain[0].url) as p:
        yield p


def store_gets(store: Any) -> list[tuple[int | None, str | None]]:
    return [(r["status"], r["headers"].get("Range")) for r in store.requests]


# ================================================================ 6. expired signed storage URLs (v2)
def test_blob_redirect_to_an_expired_url_is_asked_again(plain: tuple, proxy: FaultProxy, tmp_path: Path) -> None:
    img = plain[1]
    store = proxy.redirect_blobs()
    store.expire(times=1)  # the first redirect hands out a URL whose signature has run out
    reg = Registry(proxy.url, auth=False)
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False, cache=False)
    assert p.read_bytes() == img.layer
    assert store_gets(store) == [(403, None), (200, None)]
    assert proxy.hits("/blobs/sha256:", "GET") == 2  # the second went back to the registry


def test_blob_resume_after_the_url_expired_mid_download(plain: tuple, proxy: FaultProxy, tmp_path: Path) -> None:
    img = plain[1]
    store = proxy.redirect_blobs()
    store.drop(100_000)  # the first URL's body is cut ...
    store.expire(after=1, times=1)  # ... and the redirect of the resume has expired
    reg = Registry(proxy.url, auth=False)
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False, cache=False)
    assert p.read_bytes() == img.layer
    rng = f"bytes=100000-{len(img.layer) - 1}"
    assert store_gets(store) == [(200, None), (403, rng), (206, rng)]  # resumed from the bytes on disk
    assert not list(tmp_path.glob("*.partial"))


def test_blob_refused_twice_by_storage_fails_without_a_file(plain: tuple, proxy: FaultProxy, tmp_path: Path) -> None:
    img = plain[1]
    store = proxy.redirect_blobs()
    store.expire(times=None)
    reg = Registry(proxy.url, auth=False)
    with pytest.raises(Denied, match="403"):
        blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False, cache=False)
    assert [s for s, _ in store_gets(store)] == [403, 403]  # restarted once, not forever
    assert not (tmp_path / blobs.blob_filename(img.layer_digest)).exists()
    assert store.signature not in repr(reg.transport.trace_records)


def test_streamed_blob_survives_an_expired_url(plain: tuple, proxy: FaultProxy) -> None:
    img = plain[1]
    store = proxy.redirect_blobs()
    store.drop(50_000)
    store.expire(after=1, times=1)
    reg = Registry(proxy.url, auth=False)
    data = b"".join(blobs.open_verified_stream(reg, "demo/rand", img.layer_digest, len(img.layer), cache=False))
    assert data == img.layer
    assert [s for s, _ in store_gets(store)] == [206, 403, 206]  # a known size is asked as a closed range


# ================================================================ 7. short 206 answers (v2)
def test_a_short_206_is_kept_and_the_rest_asked_for(plain: tuple, proxy: FaultProxy, tmp_path: Path) -> None:
    img = plain[1]
    store = proxy.redirect_blobs()
    store.drop(1000)
    store.max_range = 65536  # every 206 covers at most 64 KiB of what was asked
    reg = Registry(proxy.url, auth=False)
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False, cache=False)
    assert p.read_bytes() == img.layer
    starts = [int(re.match(r"bytes=(\d+)-", r).group(1)) for _, r in store_gets(store)[1:]]  # type: ignore[union-attr]
    assert starts == list(range(1000, len(img.layer), 65536))
    assert all(r == f"bytes={s}-{len(img.layer) - 1}" for s, (_, r) in zip(starts, store_gets(store)[1:]))


def test_short_206_in_ranged_parts(plain: tuple, proxy: FaultProxy, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    img = plain[1]
    monkeypatch.setattr(fetch, "PARTS_MIN_SIZE", 100_000)
    monkeypatch.setattr(fetch, "PART_SIZE", 64_000)
    monkeypatch.setattr(fetch, "FAST_LINK", float("inf"))  # parts whatever the speed of loopback
    store = proxy.redirect_blobs()
    store.max_range = 20_000
    reg = Registry(proxy.url, auth=False)
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False, cache=False, parallel=3)
    assert p.read_bytes() == img.layer
    asked = sorted(int(re.match(r"bytes=(\d+)-", r).group(1)) for _, r in store_gets(store))  # type: ignore[union-attr]
    assert {s for s, _ in store_gets(store)} == {206}
    parts = range(0, len(img.layer), 64_000)
    assert asked == sorted(a + k for a in parts for k in range(0, min(64_000, len(img.layer) - a), 20_000))


# ================================================================ v1: the Python registry's answers
USERS = {"alice": "s3cret-pw-robust"}
AUTH = ("alice", USERS["alice"])


def _chain() -> list[V1Image]:
    base = V1Image.build(files={"etc/os-release": b"ID=demo\n" * 40}, seed="robust-base")
    mid = V1Image.build(parent=base, files={"usr/lib/libdemo.so": os.urandom(20_000)}, seed="robust-mid",
                        cmd=["/bin/sh", "-c", "apt-get install -y demo"])
    top = V1Image.build(parent=mid, files={"usr/bin/hello": b"#!/bin/sh\necho hi\n" * 90}, seed="robust-top",
                        cmd=["/bin/sh", "-c", "#(nop) CMD [hello]"])
    return [base, mid, top]


def layer_requests(srv: V1Server) -> list[tuple[str | None, int | None]]:
    return [(r["headers"].get("Range"), r["status"]) for r in srv.requests if r["path"].endswith("/layer")]


@pytest.mark.parametrize("header", ["X-Docker-Payload-Checksum", "X-Docker-Checksum"])
def test_v1_layer_is_checked_against_the_registry_checksum_header(header: str, tmp_path: Path) -> None:
    """3: the Python registry sends ``X-Docker-Payload-Checksum`` with the image JSON (older
    versions and the 2014 docs: ``X-Docker-Checksum``); either one verifies the layer."""
    chain = _chain()
    with V1Server(standalone=True, checksum_header=header) as srv, FaultProxy(srv.registry_url) as proxy:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        client = V1Client.connect(srv.index_url, auth=False, retry=FAST)
        got = download_layer(client, "alice/app", chain[1].id, tmp_path, endpoints=[proxy.url])
        assert got.path.read_bytes() == chain[1].layer
        assert got.verified and got.verified_against == header and got.checksum == payload_checksum(chain[1])
        proxy.flip_byte(offset=100, path=r"/layer$")  # one bit off in transit: caught, nothing kept
        bad = tmp_path / "bad.layer"
        with pytest.raises(DigestMismatch, match=header):
            download_layer(client, "alice/app", chain[1].id, bad, endpoints=[proxy.url])
        assert not bad.exists() and not Path(f"{bad}.partial").exists()


@pytest.mark.parametrize("style", ["python", "rfc"])
def test_v1_resume_reads_the_python_registry_ranges(style: str, tmp_path: Path) -> None:
    """4: a drop, then ``Range: bytes=700-`` answered ``700-<size>/<size>`` with one byte less
    than announced (Python registry) or ``bytes 700-<size-1>/<size>`` (RFC): both complete the
    layer with no further request."""
    chain = _chain()
    with V1Server(standalone=True, drop_layer_after=700, content_range=style) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        got = download_layer(V1Client.connect(srv.index_url, auth=False), "alice/app", chain[1].id, tmp_path)
        assert got.path.read_bytes() == chain[1].layer and got.verified
        assert (got.resumes, got.restarts) == (1, 0)
        assert layer_requests(srv) == [(None, 200), ("bytes=700-", 206)]


def test_v1_416_at_the_end_means_the_layer_is_complete(tmp_path: Path) -> None:
    """4: a whole ``.partial`` whose size the registry did not say: ``bytes=<size>-`` gets the
    Python registry's 416, and the file is checked and kept."""
    chain = _chain()
    with V1Server(standalone=True) as srv, FaultProxy(srv.registry_url) as proxy:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        proxy.add_headers({"X-Docker-Size": None}, path=r"/json$", replace=True)
        target = tmp_path / "layer.tar"
        Path(f"{target}.partial").write_bytes(chain[2].layer)
        got = download_layer(V1Client.connect(srv.index_url, auth=False),
            "alice/app", chain[2].id, target, endpoints=[proxy.url])
        assert target.read_bytes() == chain[2].layer and got.verified and got.size == len(chain[2].layer)
        assert layer_requests(srv) == [(f"bytes={len(chain[2].layer)}-", 416)]


def test_v1_bytes_that_cannot_be_placed_are_refused(tmp_path: Path) -> None:
    """4: a 206 for another start than asked is an error; the good prefix stays for a resume."""
    chain = _chain()
    size = len(chain[1].layer)
    with V1Server(standalone=True, content_range="rfc") as srv, FaultProxy(srv.registry_url) as proxy:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        proxy.drop(after_bytes=700, path=r"/layer$")
        proxy.add_headers({"Content-Range": f"bytes 600-{size - 1}/{size}"}, path=r"/layer$", replace=True)
        target = tmp_path / "layer.tar"
        with pytest.raises(RegistryError, match="asked for bytes 700-"):
            download_layer(V1Client.connect(srv.index_url, auth=False),
                "alice/app", chain[1].id, target, endpoints=[proxy.url])
        assert not target.exists() and Path(f"{target}.partial").read_bytes() == chain[1].layer[:700]


def test_v1_layer_from_an_expired_storage_url_is_resumed(tmp_path: Path) -> None:
    """6: the Python registry's ``storage_redirect`` (302 to a signed URL); the body is cut and the
    resume's URL has expired: asked again at the registry, resumed from the bytes on disk."""
    chain = _chain()
    with V1Server(standalone=True) as srv, FaultProxy(srv.registry_url) as proxy:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        store = proxy.redirect_blobs(path=r"/v1/images/[0-9a-f]+/layer$", status=302)
        store.drop(700)
        store.expire(after=1, times=1)
        got = download_layer(V1Client.connect(srv.index_url, auth=False),
            "alice/app", chain[1].id, tmp_path, endpoints=[proxy.url])
        assert got.path.read_bytes() == chain[1].layer and got.verified and got.resumes == 1
        assert store_gets(store) == [(200, None), (403, "bytes=700-"), (206, "bytes=700-")]
        assert not any(r["authorization"] for r in store.requests)


def test_v1_empty_layer_416_gives_an_empty_verified_file(tmp_path: Path) -> None:
    """16: the Python registry answers 416 to any GET of an empty layer; without ``X-Docker-Size``
    the client asks, and the 416 means an empty, checked file."""
    empty = V1Image.build(layer=b"", cmd=["/bin/sh", "-c", "#(nop) ENV A=1"], seed="robust-empty")
    with V1Server(standalone=True) as srv, FaultProxy(srv.registry_url) as proxy:
        srv.preload("alice/empty", [empty], tags={"latest": empty.id})
        proxy.add_headers({"X-Docker-Size": None}, path=r"/json$", replace=True)
        got = download_layer(V1Client.connect(srv.index_url, auth=False),
            "alice/empty", empty.id, tmp_path, endpoints=[proxy.url])
        assert got.size == 0 and got.path.read_bytes() == b"" and got.verified
        assert got.checksum == payload_checksum(empty)
        assert layer_requests(srv) == [(None, 416)]
        assert not list(tmp_path.glob("*.partial"))


def _put_kind(path: str) -> str:
    for kind in ("json", "layer", "checksum", "images"):
        if path.endswith("/" + kind):
            return kind
    return "tag" if "/tags/" in path else "repository"


def test_v1_push_tags_after_all_images_and_skips_existing_ones() -> None:
    """17: Docker 1.3's order: index PUT, per image json → layer → checksum (a json PUT answered
    409 "Image already exists" skips that image), then the tags, then the index validation."""
    chain = _chain()
    with V1Server(users=USERS) as srv:
        srv.preload("alice/other", chain[:1])  # the registry already has the base image
        client = V1Client.connect(srv.index_url, auth=AUTH)
        result = client.push("alice/app", chain, tags={"latest": chain[2].id, "base": chain[0].id})
        assert result.skipped == [chain[0].id] and result.pushed == [i.id for i in chain[1:]]
        puts = [(_put_kind(r["path"]), r["status"]) for r in srv.requests if r["method"] == "PUT"]
        assert puts == [("repository", 200), ("json", 409),
                        ("json", 200), ("layer", 200), ("checksum", 200),
                        ("json", 200), ("layer", 200), ("checksum", 200),
                        ("tag", 200), ("tag", 200), ("images", 204)]
        assert srv.tags("alice/app") == {"latest": chain[2].id, "base": chain[0].id}
        assert all(srv.image_complete(i.id) for i in chain)


# ================================================================ a tiny registry for what no real one sends
class Stub:
    """A loopback HTTP/1.1 server; ``handle(h, body)`` answers each request (``h`` is the
    ``BaseHTTPRequestHandler``). ``paths`` records ``(method, raw path)``."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, bytes], None]) -> None:
        stub = self
        self.paths: list[tuple[str, str]] = []

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                stub.paths.append((self.command, self.path))
                handle(self, body)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Stub:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


# ================================================================ 8. upload Location query kept verbatim
OPAQUE = "_state=ab/cd%3D%3D&flag&sig=a+b%2Fc"  # opaque signed state: any re-encoding breaks it


def upload_registry() -> Stub:
    """Accepts uploads only at ``<Location>&digest=<digest>`` with the Location's query unchanged."""
    received: dict[str, bytearray] = {}

    def handle(h: BaseHTTPRequestHandler, body: bytes) -> None:
        path = h.path
        m = re.match(r"^/v2/(.+)/blobs/uploads/(u\d+)\?(.*)$", path)
        if h.command == "GET" and path == "/v2/":
            return send(h, 200, b"{}", {"Docker-Distribution-API-Version": "registry/2.0"})
        if h.command == "HEAD" and "/blobs/" in path:
            return send(h, 404)
        if h.command == "POST" and path.endswith("/blobs/uploads/"):
            uid = f"u{len(received)}"
            received[uid] = bytearray()
            repo = path[len("/v2/"):-len("/blobs/uploads/")]
            return send(h, 202, headers={"Location": f"/v2/{repo}/blobs/uploads/{uid}?{OPAQUE}"})
        if m and h.command == "PATCH" and m.group(3) == OPAQUE:
            received[m.group(2)] += body
            return send(h, 202, headers={"Location": path, "Range": f"0-{len(received[m.group(2)]) - 1}"})
        if m and h.command == "PUT":
            data = bytes(received.get(m.group(2), b"")) + body
            if m.group(3) == f"{OPAQUE}&digest={sha(data)}":
                return send(h, 201, headers={"Docker-Content-Digest": sha(data)})
            return send(h, 400, b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"upload state altered"}]}',
                        {"Content-Type": "application/json"})
        if h.command == "PUT" and "/manifests/" in path:
            return send(h, 201, headers={"Docker-Content-Digest": sha(body)})
        send(h, 404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}', {"Content-Type": "application/json"})

    return Stub(handle)


@pytest.mark.parametrize("chunk_size", [None, 4096])
def test_upload_location_query_is_kept_verbatim(chunk_size: int | None, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    with upload_registry() as stub:
        reg = Registry(stub.url, auth=False, api="v2")
        assert reg.v2.upload_blob("demo/up", data, chunk_size=chunk_size) == sha(data)
        src = tmp_path / "file.bin"
        src.write_bytes(data)
        blobs.push(reg, [src], "demo/up:v1", chunk_size=chunk_size)
        finishes = [p for m, p in stub.paths if m == "PUT" and "/uploads/" in p]
        assert len(finishes) == 3  # upload_blob, then push's layer and config
        assert all(re.search(r"\?" + re.escape(OPAQUE) + r"&digest=sha256:[0-9a-f]{64}$", p) for p in finishes)


# ================================================================ 14. Link headers read by their <brackets>
def test_tag_pages_follow_links_with_commas() -> None:
    pages = {
        "/v2/demo/links/tags/list?n=2": (["a", "b"], '</v2/demo/links/tags/list?n=2&last=0>; rel="prev", '
                                         '</v2/demo/links/tags/list?n=2&cursor=b,c%2Cd>; title="page, two"; '
                                         'rel="next"'),
        "/v2/demo/links/tags/list?n=2&cursor=b,c%2Cd": (["c", "d"], '<https://elsewhere.example/x>; rel=previous, '
                                                        '</v2/demo/links/tags/list?n=2&cursor=d;e>; rel="next last"'),
        "/v2/demo/links/tags/list?n=2&cursor=d;e": (["e"], '</v2/demo/links/tags/list?n=2&cursor=z>; '
                                                    'title="rel=next"; rel="first"'),
    }

    def handle(h: BaseHTTPRequestHandler, body: bytes) -> None:
        if h.path == "/v2/":
            return send(h, 200, b"{}")
        if h.path not in pages:
            return send(h, 404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no such page"}]}')
        tags, link = pages[h.path]
        send(h, 200, json.dumps({"name": "demo/links", "tags": tags}).encode(),
             {"Content-Type": "application/json", "Link": link})

    with Stub(handle) as stub:
        reg = Registry(stub.url, auth=False, api="v2")
        assert reg.v2.tags("demo/links", page_size=2) == ["a", "b", "c", "d", "e"]
        assert [p for _, p in stub.paths if "/tags/" in p] == list(pages)
    from regexplore.protocol.v2 import parse_link_header

    assert parse_link_header('<a,b>; title="x, y"; rel="next", <c>; rel=prev') == [
        ("a,b", {"title": "x, y", "rel": "next"}), ("c", {"rel": "prev"})]


# ================================================================ 15. Docker-Content-Digest in another algorithm
def test_manifest_digest_header_in_sha512_is_verified(plain: tuple, proxy: FaultProxy) -> None:
    img = plain[1]
    reg = Registry(proxy.url, auth=False, api="v2")
    proxy.add_headers({"Docker-Content-Digest": sha(img.manifest, "sha512")}, path="/manifests/", method="GET",
                      times=1, replace=True)
    assert reg.v2.get_manifest("demo/rand", "v1").digest == img.digest
    proxy.add_headers({"Docker-Content-Digest": sha(b"other", "sha512")}, path="/manifests/", method="GET",
                      times=1, replace=True)
    with pytest.raises(DigestMismatch, match="sha512"):
        reg.v2.get_manifest("demo/rand", "v1")
    proxy.add_headers({"Docker-Content-Digest": "blake3:" + "ab" * 32}, path="/manifests/", method="GET",
                      times=1, replace=True)
    with pytest.raises(UnsupportedMediaType, match="cannot verify 'blake3:"):
        reg.v2.get_manifest("demo/rand", "v1")
    media_type = json.loads(img.manifest)["mediaType"]
    proxy.add_headers({"Docker-Content-Digest": sha(img.manifest, "sha512")}, path="/manifests/", method="PUT",
                      times=1, replace=True)
    assert reg.v2.put_manifest("demo/rand", "copy", img.manifest, media_type) == img.digest
    proxy.add_headers({"Docker-Content-Digest": sha(b"other", "sha512")}, path="/manifests/", method="PUT",
                      times=1, replace=True)
    with pytest.raises(DigestMismatch):
        reg.v2.put_manifest("demo/rand", "copy", img.manifest, media_type)

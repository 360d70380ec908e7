"""The v1 test server speaks the 2014 protocol (plain ``requests``, no regexplore client)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from v1server import V1Image, V1Server

from regexplore.protocol.v1.tarsum import tarsum

USERS = {"alice": "s3cret-pw"}


@pytest.fixture()
def chain() -> list[V1Image]:
    base = V1Image.build(files={"etc/os-release": b"ID=demo\n"}, seed="base")
    top = V1Image.build(parent=base, files={"usr/bin/hello": b"#!/bin/sh\necho hi\n" * 50},
                        cmd=["/bin/sh", "-c", "echo hi > /usr/bin/hello"])
    return [base, top]


@pytest.fixture()
def srv(chain: list[V1Image]) -> Iterator[V1Server]:
    with V1Server(users=USERS) as server:
        server.preload("alice/app", chain, tags={"latest": chain[1].id, "1.0": chain[0].id},
                       description="demo app")
        yield server


def _token(srv: V1Server, repo: str = "alice/app", **kw: object) -> requests.Response:
    return requests.get(f"{srv.index_url}/v1/repositories/{repo}/images",
                        headers={"X-Docker-Token": "true"}, timeout=5, **kw)  # type: ignore[arg-type]


def _raw_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, bool]:
    """GET with http.client: ``(status, headers, body, complete)``; a body shorter than its
    Content-Length (the Python registry's open ranges) is returned with ``complete`` False."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        conn.request("GET", parts.path, headers=headers or {})
        resp = conn.getresponse()
        try:
            body, complete = resp.read(), True
        except http.client.IncompleteRead as exc:
            body, complete = exc.partial, False
        return resp.status, dict(resp.getheaders()), body, complete
    finally:
        conn.close()


def test_ping_headers_and_standalone_flag() -> None:
    with V1Server() as srv:
        r = requests.get(f"{srv.registry_url}/v1/_ping", timeout=5)
        assert r.status_code == 200 and r.json() == {}
        assert r.headers["X-Docker-Registry-Standalone"] == "False"
        assert r.headers["X-Docker-Registry-Version"] == "0.9.1"
        assert r.headers["Cache-Control"] == "no-cache" and r.headers["Pragma"] == "no-cache"
        assert srv.index_url != srv.registry_url
    with V1Server(standalone=True, standalone_header="mirror") as srv:
        r = requests.get(f"{srv.registry_url}/v1/_ping", timeout=5)
        assert r.headers["X-Docker-Registry-Standalone"] == "mirror"
        assert srv.index_url == srv.registry_url


def test_index_issues_tokens_only_on_request(srv: V1Server, chain: list[V1Image]) -> None:
    plain = requests.get(f"{srv.index_url}/v1/repositories/alice/app/images", timeout=5)
    assert plain.status_code == 200 and "X-Docker-Token" not in plain.headers
    r = _token(srv)
    assert r.status_code == 200
    assert [i["id"] for i in r.json()] == [img.id for img in chain]
    token = r.headers["X-Docker-Token"]
    assert token.startswith("signature=") and 'repository="alice/app"' in token and token.endswith("access=read")
    # the mock's odd whitespace: "<host> " ; Docker trims each comma-separated entry
    assert r.headers["X-Docker-Endpoints"] == f"{srv.registry_host} "
    # bad Basic credentials are refused even for a public repository
    bad = _token(srv, auth=("alice", "wrong"))
    assert bad.status_code == 401 and "Basic" in bad.headers["WWW-Authenticate"]
    assert bad.json() == {"error": "Requires authorization"}


def test_token_is_single_use_then_the_session_cookie_works(srv: V1Server, chain: list[V1Image]) -> None:
    token = _token(srv).headers["X-Docker-Token"]
    auth = {"Authorization": f"Token {token}"}
    tags_url = f"{srv.registry_url}/v1/repositories/alice/app/tags"
    assert requests.get(tags_url, timeout=5).status_code == 401
    with requests.Session() as session:
        first = session.get(tags_url, headers=auth, timeout=5)
        assert first.status_code == 200 and "session" in session.cookies
        again = session.get(f"{srv.registry_url}/v1/images/{chain[1].id}/ancestry", headers=auth, timeout=5)
        assert again.status_code == 200 and again.json() == [chain[1].id, chain[0].id]
    reuse = requests.get(tags_url, headers=auth, timeout=5)  # no cookie: the token was used up
    assert reuse.status_code == 401 and reuse.headers["WWW-Authenticate"] == "Token"
    other_repo = _token(srv, repo="alice/app").headers["X-Docker-Token"].replace("alice/app", "bob/x")
    wrong = requests.get(f"{srv.registry_url}/v1/repositories/bob/x/tags",
                         headers={"Authorization": f"Token {other_repo}"}, timeout=5)
    assert wrong.status_code == 401


@pytest.mark.parametrize("form", ["dict", "list", "list-empty"])
def test_tags_forms(chain: list[V1Image], form: str) -> None:
    with V1Server(tags_form=form, standalone=True) as srv:
        srv.preload("redis", chain, tags={"latest": chain[1].id})
        r = requests.get(f"{srv.registry_url}/v1/repositories/redis/tags", timeout=5)
        assert r.status_code == 200
        expected = {
            "dict": {"latest": chain[1].id},
            "list": [{"layer": chain[1].id[:8], "name": "latest"}],
            "list-empty": [{"layer": "", "name": "latest"}],
        }[form]
        assert r.json() == expected
        one = requests.get(f"{srv.registry_url}/v1/repositories/library/redis/tags/latest", timeout=5)
        assert one.json() == chain[1].id
        missing = requests.get(f"{srv.registry_url}/v1/repositories/library/nope/tags", timeout=5)
        assert missing.status_code == 404 and missing.json() == {"error": "Repository not found"}


def test_layer_range_uses_python_content_range(srv: V1Server, chain: list[V1Image]) -> None:
    layer = chain[1].layer
    with requests.Session() as s:
        s.headers["Authorization"] = "Token " + _token(srv).headers["X-Docker-Token"]
        meta = s.get(f"{srv.registry_url}/v1/images/{chain[1].id}/json", timeout=5)
        assert meta.content == chain[1].json
        assert meta.headers["X-Docker-Size"] == str(len(layer))
        # images._get_image_json: the stored checksums, one header each, under this name
        assert meta.headers["X-Docker-Payload-Checksum"] == (
            "sha256:" + hashlib.sha256(chain[1].json + b"\n" + layer).hexdigest())
        assert "X-Docker-Checksum-Payload" not in meta.headers and "X-Docker-Checksum" not in meta.headers
        full = s.get(f"{srv.registry_url}/v1/images/{chain[1].id}/layer", timeout=5)
        assert full.status_code == 200 and full.content == layer
        assert full.headers["Accept-Ranges"] == "bytes"
        url = f"{srv.registry_url}/v1/images/{chain[1].id}/layer"
        auth = {"Cookie": f"session={s.cookies['session']}"}
        # images._get_image_layer: an open range ends at layer_size, Content-Length counts one byte
        # more than the file holds, no "bytes " unit
        status, headers, body, complete = _raw_get(url, {**auth, "Range": "bytes=100-"})
        assert status == 206 and body == layer[100:] and not complete
        assert headers["Content-Range"] == f"100-{len(layer)}/{len(layer)}"
        assert headers["Content-Length"] == str(len(layer) - 100 + 1)
        status, headers, body, complete = _raw_get(url, {**auth, "Range": "bytes=100-199"})
        assert (status, headers["Content-Range"], body, complete) == (
            206, f"100-199/{len(layer)}", layer[100:200], True)
        for rng in ("bytes=5-5", f"bytes={len(layer)}-", f"bytes={len(layer) + 7}-"):  # _valid_bytes_range
            assert _raw_get(url, {**auth, "Range": rng})[0] == 416, rng


def test_dropped_layer_connection_then_resume(chain: list[V1Image]) -> None:
    with V1Server(standalone=True, drop_layer_after=300) as srv:
        srv.preload("library/app", chain)
        url = f"{srv.registry_url}/v1/images/{chain[1].id}/layer"
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url, timeout=5).content  # noqa: B018
        status, _, body, _ = _raw_get(url, {"Range": "bytes=300-"})
        assert status == 206 and body == chain[1].layer[300:]


def test_older_checksum_header_and_rfc_ranges(chain: list[V1Image]) -> None:
    """The knobs for what other sources show: ``X-Docker-Checksum`` (registry_api.md 2014, the
    Python registry's 2013-14 versions) and RFC 7233 ranges (a storage server behind a redirect)."""
    with V1Server(standalone=True, checksum_header="X-Docker-Checksum", content_range="rfc") as srv:
        srv.preload("library/app", chain)
        layer = chain[1].layer
        meta = requests.get(f"{srv.registry_url}/v1/images/{chain[1].id}/json", timeout=5)
        payload = "sha256:" + hashlib.sha256(chain[1].json + b"\n" + layer).hexdigest()
        assert meta.headers["X-Docker-Checksum"] == payload
        assert "X-Docker-Payload-Checksum" not in meta.headers
        url = f"{srv.registry_url}/v1/images/{chain[1].id}/layer"
        status, headers, body, complete = _raw_get(url, {"Range": "bytes=100-"})
        assert (status, headers["Content-Range"], body, complete) == (
            206, f"bytes 100-{len(layer) - 1}/{len(layer)}", layer[100:], True)
        status, headers, _, _ = _raw_get(url, {"Range": f"bytes={len(layer)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(layer)}"
    with pytest.raises(ValueError):
        V1Server(checksum_header="X-Docker-Checksum-Payload")


def _push(srv: V1Server, image: V1Image, *, tarsum_header: str | None, payload: str | None) -> requests.Response:
    """Docker 1.3's order: index PUT (Basic) → json → layer (chunked) → checksum, via the session."""
    start = requests.put(f"{srv.index_url}/v1/repositories/alice/new/", auth=("alice", USERS["alice"]),
                         headers={"X-Docker-Token": "true"}, json=[{"id": image.id}], timeout=5)
    assert start.status_code == 200 and start.headers["X-Docker-Token"].endswith("access=write")
    assert srv.registry_host in start.headers["X-Docker-Endpoints"]
    with requests.Session() as s:
        auth = {"Authorization": "Token " + start.headers["X-Docker-Token"]}
        r = s.put(f"{srv.registry_url}/v1/images/{image.id}/json", data=image.json,
                  headers={**auth, "Content-Type": "application/json"}, timeout=5)
        assert r.status_code == 200, r.text
        chunks = (image.layer[i : i + 1000] for i in range(0, len(image.layer), 1000))
        r = s.put(f"{srv.registry_url}/v1/images/{image.id}/layer", data=chunks,
                  headers={**auth, "Content-Type": "application/octet-stream"}, timeout=5)
        assert r.status_code == 200, r.text
        headers = dict(auth)
        if tarsum_header is not None:
            headers["X-Docker-Checksum"] = tarsum_header
        if payload is not None:
            headers["X-Docker-Checksum-Payload"] = payload
        return s.put(f"{srv.registry_url}/v1/images/{image.id}/checksum", headers=headers, timeout=5)


def test_push_verifies_both_checksums(srv: V1Server) -> None:
    plain = V1Image.build(files={"data.txt": b"payload\n" * 100}, seed="push")
    image = V1Image(plain.id, plain.json, gzip.compress(plain.layer))  # Docker 1.3 uploads gzip
    good_tarsum = tarsum(plain.layer, extra=image.json)
    good_payload = "sha256:" + hashlib.sha256(image.json + b"\n" + image.layer).hexdigest()

    missing = _push(srv, image, tarsum_header=good_tarsum, payload=None)
    assert missing.status_code == 412 and "X-Docker-Checksum-Payload" in missing.json()["error"]
    wrong = _push(srv, image, tarsum_header=good_tarsum, payload="sha256:" + "0" * 64)
    assert wrong.status_code == 400 and wrong.json() == {"error": "Checksum mismatch"}
    wrong_tarsum = _push(srv, image, tarsum_header="tarsum+sha256:" + "0" * 64, payload=good_payload)
    assert wrong_tarsum.status_code == 400 and wrong_tarsum.json() == {"error": "Checksum mismatch"}
    assert not srv.image_complete(image.id)
    ok = _push(srv, image, tarsum_header=good_tarsum, payload=good_payload)
    assert ok.status_code == 200 and ok.json() is True
    assert srv.image_complete(image.id) and srv.image_layer(image.id) == image.layer
    # a finished image: its JSON cannot be re-pushed and its checksum cannot be set again
    start = requests.put(f"{srv.index_url}/v1/repositories/alice/new/", auth=("alice", USERS["alice"]),
                         headers={"X-Docker-Token": "true"}, json=[{"id": image.id}], timeout=5)
    with requests.Session() as s:
        s.headers["Authorization"] = "Token " + start.headers["X-Docker-Token"]
        again = s.put(f"{srv.registry_url}/v1/images/{image.id}/json", data=image.json, timeout=5)
        assert again.status_code == 409 and again.json() == {"error": "Image already exists"}
        again = s.put(f"{srv.registry_url}/v1/images/{image.id}/checksum",
                      headers={"X-Docker-Checksum-Payload": good_payload}, timeout=5)
        assert again.status_code == 409 and again.json() == {"error": "Cannot set this image checksum"}


def test_image_json_already_exists_and_push_validate(srv: V1Server, chain: list[V1Image]) -> None:
    start = requests.put(f"{srv.index_url}/v1/repositories/alice/app/", auth=("alice", USERS["alice"]),
                         headers={"X-Docker-Token": "true"}, json=[{"id": chain[0].id}], timeout=5)
    token = start.headers["X-Docker-Token"]
    r = requests.put(f"{srv.registry_url}/v1/images/{chain[0].id}/json", data=chain[0].json,
                     headers={"Authorization": f"Token {token}"}, timeout=5)
    assert r.status_code == 409 and r.json() == {"error": "Image already exists"}
    no_basic = requests.put(f"{srv.index_url}/v1/repositories/alice/app/images", json=[], timeout=5)
    assert no_basic.status_code == 401
    done = requests.put(f"{srv.index_url}/v1/repositories/alice/app/images", auth=("alice", USERS["alice"]),
                        headers={"X-Docker-Endpoints": srv.registry_host},
                        json=[{"id": chain[0].id, "checksum": "tarsum+sha256:" + "1" * 64}], timeout=5)
    assert done.status_code == 204 and done.content == b""
    assert srv.index_images("alice/app")[0]["checksum"] == "tarsum+sha256:" + "1" * 64


def test_search_is_the_python_registry_shape(srv: V1Server) -> None:
    r = requests.get(f"{srv.index_url}/v1/search", params={"q": "app", "n": 25, "page": 1}, timeout=5)
    assert r.json() == {"query": "app", "num_results": 1,
                        "results": [{"name": "alice/app", "description": "demo app"}]}
    assert json.loads(requests.get(f"{srv.index_url}/v1/search?q=zzz", timeout=5).content)["results"] == []


def test_repr_hides_passwords() -> None:
    server = V1Server(users=USERS)
    assert USERS["alice"] not in repr(server)


def test_push_start_redirect_is_followed_by_a_new_put() -> None:
    with V1Server(users=USERS, push_redirect=307) as srv:
        url = f"{srv.index_url}/v1/repositories/alice/moved/"
        first = requests.put(url, auth=("alice", USERS["alice"]), headers={"X-Docker-Token": "true"},
                             json=[], allow_redirects=False, timeout=5)
        assert first.status_code == 307 and "X-Docker-Token" not in first.headers
        again = requests.put(first.headers["Location"], auth=("alice", USERS["alice"]),
                             headers={"X-Docker-Token": "true"}, json=[], timeout=5)
        assert again.status_code == 200 and again.headers["X-Docker-Token"].endswith("access=write")
        assert requests.put(url, json=[], timeout=5).status_code == 401  # push start needs Basic


def test_several_tokens_joined_with_commas_are_accepted(chain: list[V1Image]) -> None:
    with V1Server(users=USERS, tokens_per_response=2, extra_endpoints=["test.example.com"]) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[1].id})
        r = _token(srv)
        tokens = r.raw.headers.get_all("X-Docker-Token")
        assert len(tokens) == 2 and tokens[0] != tokens[1]
        assert r.headers["X-Docker-Endpoints"] == f"{srv.registry_host} \t,  test.example.com "
        tags = requests.get(f"{srv.registry_url}/v1/repositories/alice/app/tags",
                            headers={"Authorization": "Token " + ",".join(tokens)}, timeout=5)
        assert tags.status_code == 200 and tags.json() == {"latest": chain[1].id}


def test_standalone_quirks_token_prefix_and_basic_on_every_request(chain: list[V1Image]) -> None:
    with V1Server(users=USERS, standalone=True) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[1].id})
        assert requests.get(f"{srv.registry_url}/v1/_ping", timeout=5).status_code == 401
        auth = ("alice", USERS["alice"])
        ping = requests.get(f"{srv.registry_url}/v1/_ping", auth=auth, timeout=5)
        assert ping.headers["X-Docker-Registry-Standalone"] == "True"
        r = requests.get(f"{srv.index_url}/v1/repositories/alice/app/images", auth=auth,
                         headers={"X-Docker-Token": "true"}, timeout=5)
        assert r.headers["X-Docker-Token"].startswith("Token signature=")
        assert r.headers["WWW-Authenticate"] == r.headers["X-Docker-Token"]
        # no token checking in standalone mode: Basic alone reaches the registry routes
        tags = requests.get(f"{srv.registry_url}/v1/repositories/alice/app/tags", auth=auth, timeout=5)
        assert tags.json() == {"latest": chain[1].id}


def test_cacheable_image_routes_and_if_modified_since(srv: V1Server, chain: list[V1Image]) -> None:
    with requests.Session() as s:
        s.headers["Authorization"] = "Token " + _token(srv).headers["X-Docker-Token"]
        r = s.get(f"{srv.registry_url}/v1/images/{chain[0].id}/ancestry", timeout=5)
        assert r.headers["Cache-Control"] == "public, max-age=31536000" and "Pragma" not in r.headers
        assert r.json() == [chain[0].id]
        cached = s.get(f"{srv.registry_url}/v1/images/{chain[0].id}/json",
                       headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, timeout=5)
        assert cached.status_code == 304 and cached.content == b""
        missing = s.get(f"{srv.registry_url}/v1/images/{'f' * 64}/json", timeout=5)
        assert missing.status_code == 404 and missing.json() == {"error": "Image not found"}


def test_request_record_redacts_credentials(srv: V1Server) -> None:
    _token(srv, auth=("alice", USERS["alice"]))
    record = srv.requests[-1]
    assert record["role"] == "index" and record["headers"]["Authorization"] == "Basic <redacted>"
    assert USERS["alice"] not in repr(srv.requests)

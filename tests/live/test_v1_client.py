"""The v1 client (``regexplore.protocol.v1.client``) against the v1 test server (``tests/support/v1server.py``).

Push a chain with regexplore, read it back with regexplore, and check the server's own view of
what arrived (``srv.image_layer``, ``srv.tags``, ``srv.requests``) so that a symmetric client bug
cannot pass unnoticed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from v1server import V1Image, V1Server

import regexplore.protocol.v1.auth as v1auth
import regexplore.protocol.v1.client as v1mod
from regexplore.content.v1layers import download_layer, pull
from regexplore.errors import AlreadyExists, DigestMismatch, NotFound, RegistryError, Unauthorized
from regexplore.http.transport import RetryPolicy
from regexplore.model.frames import make_frame
from regexplore.protocol.v1.client import V1Client
from regexplore.protocol.v1.parse import (
    normalize_repository,
    parse_content_range,
    parse_endpoints,
    parse_standalone,
    parse_tags,
)
from regexplore.protocol.v1.tarsum import tarsum

USERS = {"alice": "s3cret-pw-9f"}
AUTH = ("alice", USERS["alice"])
FAST = RetryPolicy(attempts=2, backoff=0.01, max_sleep=0.02, budget=1.0)


def _chain() -> list[V1Image]:
    base = V1Image.build(files={"etc/os-release": b"ID=demo\n" * 40}, seed="base",
                         created="2014-10-16T19:39:20.185302941Z")
    mid = V1Image.build(parent=base, files={"usr/lib/libdemo.so": bytes(range(256)) * 30},
                        cmd=["/bin/sh", "-c", "apt-get install -y demo"], created="2014-10-16T19:40:01.5Z")
    top = V1Image.build(parent=mid, files={"usr/bin/hello": b"#!/bin/sh\necho hi\n" * 90},
                        cmd=["/bin/sh", "-c", "#(nop) CMD [hello]"], created="2014-10-16T19:41:00-07:00")
    return [base, mid, top]


@pytest.fixture()
def chain() -> list[V1Image]:
    return _chain()


@pytest.fixture()
def srv(chain: list[V1Image]) -> Iterator[V1Server]:
    with V1Server(users=USERS) as server:
        server.preload("alice/app", chain, tags={"latest": chain[2].id, "base": chain[0].id},
                       description="demo app")
        yield server


def _client(url: str, auth: object = AUTH) -> V1Client:
    return V1Client.connect(url, auth=auth, retry=FAST)


def _registry_requests(srv: V1Server) -> list[dict]:
    return [r for r in srv.requests if r["role"] in ("registry", "both")]


# ---------------------------------------------------------------------------------- pure helpers
def test_standalone_header_reading_follows_docker_1_3() -> None:
    assert parse_standalone(None) is True and parse_standalone("") is True
    assert parse_standalone("true") is True and parse_standalone("True") is True and parse_standalone("1") is True
    assert parse_standalone("False") is False and parse_standalone("mirror") is False


def test_endpoints_are_trimmed_and_take_the_index_scheme() -> None:
    assert parse_endpoints("reg1.example.com \t,  reg2.example.com:5000 ", "https://idx.example.com") == [
        "https://reg1.example.com", "https://reg2.example.com:5000"]
    assert parse_endpoints(None, "http://127.0.0.1:8080") == ["http://127.0.0.1:8080"]
    assert parse_endpoints(" , ", "https://idx.example.com") == ["https://idx.example.com"]


def test_names_tags_and_content_range_parsers() -> None:
    assert normalize_repository("redis") == "library/redis"
    assert normalize_repository("/alice/app/") == "alice/app"
    assert parse_tags({"latest": "a" * 64}) == {"latest": "a" * 64}
    assert parse_tags([{"layer": "ef16032a", "name": "latest"}, {"layer": "", "name": "2.8"}]) == {
        "latest": "ef16032a", "2.8": ""}
    with pytest.raises(ValueError):
        parse_tags("latest")
    assert parse_content_range("100-199/1000") == (100, 199, 1000)  # the Python registry: no unit
    assert parse_content_range("bytes 100-199/*") == (100, 199, None)
    assert parse_content_range("items 1-2/3") is None


# ---------------------------------------------------------------------------------- push + pull
def test_push_a_chain_then_read_it_back(tmp_path: Path) -> None:
    chain = _chain()
    with V1Server(users=USERS, push_redirect=307) as srv:
        client = _client(srv.index_url)
        result = client.push("alice/demo", chain, tags={"latest": chain[2].id, "v1": chain[0].id})
        assert result.pushed == [i.id for i in chain] and result.skipped == []
        assert result.endpoints == [srv.registry_url]

        # the server's own view: complete images, exact layer bytes, tags, checksums at the index
        for img in chain:
            assert srv.image_complete(img.id) and srv.image_layer(img.id) == img.layer
        assert srv.tags("alice/demo") == {"latest": chain[2].id, "v1": chain[0].id}
        index_sums = {i["id"]: i.get("checksum") for i in srv.index_images("alice/demo")}
        for img in chain:
            assert index_sums[img.id] == tarsum(img.layer, extra=img.json) == result.checksums[img.id]

        # Docker 1.3's order: index start (redirected, then re-sent), json/layer/checksum per image
        # base first, the tags, then the index validation
        seq = [(r["role"], r["method"], r["path"].split("?")[0]) for r in srv.requests if r["method"] == "PUT"]
        expected = [("index", "PUT", "/v1/repositories/alice/demo/")] * 2
        for img in chain:
            expected += [("registry", "PUT", f"/v1/images/{img.id}/{part}") for part in ("json", "layer", "checksum")]
        expected += [("registry", "PUT", "/v1/repositories/alice/demo/tags/latest"),
                     ("registry", "PUT", "/v1/repositories/alice/demo/tags/v1"),
                     ("index", "PUT", "/v1/repositories/alice/demo/images")]
        assert seq == expected
        puts = [r for r in srv.requests if r["method"] == "PUT"]
        assert puts[0]["headers"]["Authorization"] == "Basic <redacted>"  # push start: Basic
        assert puts[1]["headers"]["Authorization"] == "Basic <redacted>"  # re-sent after the 307
        layer_put = next(r for r in puts if r["path"].endswith("/layer"))
        assert layer_put["headers"].get("Transfer-Encoding") == "chunked"
        assert layer_put["headers"]["Authorization"] == "Token <redacted>"
        assert puts[-1]["headers"]["X-Docker-Endpoints"] == srv.registry_host

        # read back: history oldest first, and the layer bytes
        rows = client.history("alice/demo", "latest")
        assert [r["id"] for r in rows] == [i.id for i in chain]
        assert [r["step"] for r in rows] == [0, 1, 2]
        assert [r["parent"] for r in rows] == [None, chain[0].id, chain[1].id]
        assert [r["created_by"] for r in rows] == ["", "/bin/sh -c apt-get install -y demo",
                                                   "/bin/sh -c #(nop) CMD [hello]"]
        assert [r["size"] for r in rows] == [len(i.layer) for i in chain]
        assert rows[2]["created"] == pd.Timestamp("2014-10-17T02:41:00Z")
        events: list = []
        got = pull(client, "alice/demo", "latest", tmp_path, progress=events.append)
        assert [d.image_id for d in got] == [i.id for i in chain]
        finals = [e for e in events if e.done]  # one verified-and-in-place event per layer, in order
        assert [(e.digest, e.bytes_done, e.label) for e in finals] == [
            (f"v1:{i.id}", len(i.layer), f"layer {n} ({i.id[:12]})") for n, i in enumerate(chain)]
        for img in chain:
            steps = [e.bytes_done for e in events if e.digest == f"v1:{img.id}" and not e.done]
            assert steps == sorted(steps) and steps[-1] == len(img.layer)
        for d, img in zip(got, chain):
            assert d.path.read_bytes() == img.layer and d.verified and d.size == len(img.layer)
            assert "X-Docker-Payload-Checksum" in (d.verified_against or "")
            assert "index checksum" in (d.verified_against or "")  # the tarsum the index now holds
        assert not list(tmp_path.glob("*.partial"))
        client.close()


def test_pushing_again_skips_images_the_registry_has(srv: V1Server, chain: list[V1Image]) -> None:
    client = _client(srv.index_url)
    extra = V1Image.build(parent=chain[2], files={"new": b"new\n"}, cmd=["touch", "/new"])
    result = client.push("alice/app", [*chain, extra], tags=["next"])
    assert result.skipped == [i.id for i in chain] and result.pushed == [extra.id]
    assert srv.image_layer(extra.id) == extra.layer and srv.tags("alice/app")["next"] == extra.id


def test_image_already_exists_raises_already_exists(srv: V1Server, chain: list[V1Image]) -> None:
    client = _client(srv.index_url)
    data = client.push_start("alice/app", [chain[0].id])
    with pytest.raises(AlreadyExists) as err:
        client.put_image_json(data.endpoints[0], "alice/app", chain[0].id, chain[0].json)
    assert err.value.status == 409 and "Image already exists" in str(err.value)


def test_gzip_layer_push_sends_the_tarsum_of_the_inner_tar(tmp_path: Path) -> None:
    plain = V1Image.build(files={"data.txt": b"payload\n" * 300}, seed="gz")
    image = V1Image(plain.id, plain.json, gzip.compress(plain.layer))
    with V1Server(users=USERS) as srv:  # verify_tarsum=True: a wrong X-Docker-Checksum is refused
        client = _client(srv.index_url)
        layer_file = tmp_path / "layer.tar.gz"
        layer_file.write_bytes(image.layer)
        pushed = V1Image(image.id, image.json, layer_file)  # a path works as the layer source
        result = client.push("alice/gz", [pushed], tags=["latest"])
        assert result.checksums[image.id] == tarsum(plain.layer, extra=image.json)
        assert srv.image_layer(image.id) == image.layer and srv.image_complete(image.id)


# ---------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("form", ["dict", "list", "list-empty"])
def test_tags_in_every_form_and_library_prefix(chain: list[V1Image], form: str) -> None:
    with V1Server(users=USERS, tags_form=form) as srv:
        srv.preload("redis", chain, tags={"latest": chain[2].id, "base": chain[0].id})
        client = _client(srv.index_url)
        tags = client.tags("redis")
        assert set(tags) == {"latest", "base"}
        expected = {"dict": chain[2].id, "list": chain[2].id[:8], "list-empty": ""}[form]
        assert tags["latest"] == expected
        # the full id is found whatever the form (index image list by prefix, or the tag call)
        assert client.resolve("redis", "latest") == chain[2].id
        assert client.resolve("redis", "base") == chain[0].id
        assert [r["id"] for r in client.history("redis", "latest")] == [i.id for i in chain]
        paths = {r["path"].split("?")[0] for r in srv.requests}
        assert "/v1/repositories/library/redis/images" in paths
        assert "/v1/repositories/library/redis/tags" in paths
        with pytest.raises(NotFound):
            client.resolve("redis", "nope")


def test_search_rows(srv: V1Server) -> None:
    client = _client(srv.index_url)
    rows, meta = client.search("app")
    assert rows == [{"name": "alice/app", "description": "demo app", "stars": None, "official": None,
                     "automated": None, "pulls": None}]
    assert meta["total"] == 1 and meta["query"] == "app"
    search = [r for r in srv.requests if r["path"].startswith("/v1/search")][-1]
    assert "q=app" in search["path"] and "n=25" in search["path"]
    df = make_frame("search", rows)
    assert df.loc[0, "name"] == "alice/app" and str(df["stars"].dtype) == "Int64"
    assert client.search("zzz")[0] == []


def test_several_tokens_and_odd_endpoint_whitespace(chain: list[V1Image]) -> None:
    with V1Server(users=USERS, tokens_per_response=3, extra_endpoints=["test.example.com"]) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        client = _client(srv.index_url)
        data = client.repository_data("alice/app")
        assert data.endpoints == [srv.registry_url, "http://test.example.com"]
        assert data.token_count == 3
        header = client.auth.headers_for(f"{srv.registry_url}/v1/repositories/alice/app/tags", "GET",
                                         "alice/app")["Authorization"]
        assert header.startswith("Token signature=") and header.count("signature=") == 3
        assert "Token Token" not in header
        assert client.tags("alice/app", endpoints=data.endpoints) == {"latest": chain[2].id}


def test_standalone_token_prefix_is_not_doubled(chain: list[V1Image]) -> None:
    with V1Server(standalone=True) as srv:  # no users: tokens ("Token signature=…") are the only auth
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        client = _client(srv.index_url, auth=False)
        client.repository_data("alice/app")
        header = client.auth.headers_for(f"{srv.registry_url}/v1/images/x/json", "GET", "alice/app")
        assert header["Authorization"].startswith("Token signature=")


def test_each_endpoint_is_tried_and_404_stops(chain: list[V1Image]) -> None:
    with V1Server(users=USERS) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        client = _client(srv.index_url)
        client.repository_data("alice/app")
        dead = "http://127.0.0.1:1"
        assert client.tags("alice/app", endpoints=[dead, srv.registry_url]) == {"latest": chain[2].id}
        assert any(r["url"].startswith(dead) for r in client.t.trace_records)
    with V1Server(standalone=True) as srv:  # 404 from the first endpoint: the next one is not asked
        client = _client(srv.index_url, auth=False)
        client.t.trace_records.clear()
        with pytest.raises(NotFound):
            client.tags("nobody/nothing", endpoints=[srv.registry_url, "http://127.0.0.1:1"])
        assert not any(r["url"].startswith("http://127.0.0.1:1") for r in client.t.trace_records)


def test_single_use_token_then_the_session_cookie(srv: V1Server, chain: list[V1Image]) -> None:
    client = _client(srv.index_url)
    rows = client.history("alice/app", "latest")
    assert len(rows) == 3
    reg = _registry_requests(srv)
    assert len(reg) >= 5  # tags, ancestry, 3 × json: one token could only pay for the first
    assert "Cookie" not in reg[0]["headers"]
    assert all(r["headers"].get("Cookie") == "session=<redacted>" for r in reg[1:])
    assert [r["role"] for r in srv.requests].count("index") == 2  # ping + one images call
    assert "session" in client.t.session.cookies


def test_reads_after_a_push_get_fresh_read_tokens(chain: list[V1Image]) -> None:
    with V1Server(users=USERS) as srv:
        client = _client(srv.index_url)
        client.push("alice/rw", chain, tags=["latest"])
        # the jar now holds a write session; tags() needs a read token, fetched from the index
        assert client.tags("alice/rw") == {"latest": chain[2].id}
        assert client.image_exists(chain[1].id, repo="alice/rw")
        assert not client.image_exists("f" * 64, repo="alice/rw")


# ---------------------------------------------------------------------------------- layers
def test_layer_resumes_with_range_after_a_dropped_connection(chain: list[V1Image], tmp_path: Path) -> None:
    with V1Server(users=USERS, drop_layer_after=700) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        client = _client(srv.index_url)
        got = download_layer(client, "alice/app", chain[1].id, tmp_path)
        assert got.path == tmp_path / f"{chain[1].id}.layer"
        assert got.path.read_bytes() == chain[1].layer
        assert got.resumes == 1 and got.restarts == 0 and got.verified
        assert got.checksum == "sha256:" + hashlib.sha256(chain[1].json + b"\n" + chain[1].layer).hexdigest()
        ranges = [r["headers"].get("Range") for r in srv.requests if r["path"].endswith("/layer")]
        assert ranges == [None, "bytes=700-"]


def test_layer_restarts_when_the_registry_has_no_ranges(chain: list[V1Image], tmp_path: Path) -> None:
    with V1Server(users=USERS, drop_layer_after=700, accept_ranges=False) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        got = download_layer(_client(srv.index_url), "alice/app", chain[1].id, tmp_path / "one.tar")
        assert got.path.read_bytes() == chain[1].layer and got.restarts == 1 and got.resumes == 0


def test_a_partial_file_is_resumed_and_a_bad_one_is_refused(srv: V1Server, chain: list[V1Image],
                                                            tmp_path: Path) -> None:
    client = _client(srv.index_url)
    target = tmp_path / "layer"
    Path(str(target) + ".partial").write_bytes(chain[2].layer[:1000])
    got = download_layer(client, "alice/app", chain[2].id, target)
    assert target.read_bytes() == chain[2].layer and got.verified
    assert [r["headers"].get("Range") for r in srv.requests if r["path"].endswith("/layer")] == ["bytes=1000-"]
    # a .partial whose bytes are not the layer's: the payload checksum catches it
    bad = tmp_path / "bad"
    Path(str(bad) + ".partial").write_bytes(b"\0" * 1000)
    with pytest.raises(DigestMismatch):
        download_layer(client, "alice/app", chain[2].id, bad)
    assert not bad.exists() and not Path(str(bad) + ".partial").exists()


def test_layer_without_any_checksum_is_reported_unverified(srv: V1Server, chain: list[V1Image],
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(srv.index_url)
    real = client.image_json

    def without_checksum(image_id: str, **kw: object):  # a registry that sends no X-Docker-Checksum-Payload
        meta = real(image_id, **kw)  # type: ignore[arg-type]
        meta.payload_checksums = []
        return meta

    monkeypatch.setattr(client, "image_json", without_checksum)
    got = download_layer(client, "alice/app", chain[0].id, tmp_path)
    assert got.path.read_bytes() == chain[0].layer
    assert got.verified is False and got.verified_against is None and "not verified" in got.note
    # the index's checksum, when given, still verifies it (payload form and tarsum form)
    payload = "sha256:" + hashlib.sha256(chain[0].json + b"\n" + chain[0].layer).hexdigest()
    ok = download_layer(client, "alice/app", chain[0].id, tmp_path / "p", checksum=payload)
    assert ok.verified and ok.verified_against == "index checksum"
    ok = download_layer(client, "alice/app", chain[0].id, tmp_path / "t",
                               checksum=tarsum(chain[0].layer, extra=chain[0].json))
    assert ok.verified
    with pytest.raises(DigestMismatch):
        download_layer(client, "alice/app", chain[0].id, tmp_path / "x", checksum="sha256:" + "0" * 64)


# ---------------------------------------------------------------------------------- auth
def test_401_from_a_plain_http_registry_explains_why(chain: list[V1Image],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with V1Server(users=USERS) as srv:
        client = _client(srv.index_url)
        # pretend the registry is not on loopback: tokens must then not travel over plain http
        monkeypatch.setattr(v1mod, "is_loopback", lambda host: False)
        monkeypatch.setattr(v1auth, "secure_for_credentials", lambda url: False)  # V1Auth's rule (http.urls)
        with pytest.raises(Unauthorized) as err:
            client.push("alice/plain", chain[:1], tags=["latest"])
        assert "not sent over plain HTTP" in str(err.value) and err.value.status == 401
        json_put = next(r for r in srv.requests if r["path"].endswith("/json"))
        assert "Authorization" not in json_put["headers"]


def test_401_on_loopback_says_the_token_was_refused(srv: V1Server, chain: list[V1Image]) -> None:
    client = _client(srv.index_url)
    data = client.push_start("alice/app", [chain[0].id])
    client.auth.set_tokens("alice/app", ["signature=WRONG,repository=\"alice/app\",access=write"])
    with pytest.raises(Unauthorized) as err:
        client.put_image_json(data.endpoints[0], "alice/app", "e" * 64, b'{"id": "' + b"e" * 64 + b'"}')
    assert "token was sent and refused" in str(err.value)


def test_standalone_registry_gets_basic_on_every_request(chain: list[V1Image], tmp_path: Path) -> None:
    with V1Server(users=USERS, standalone=True) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        client = _client(srv.index_url)
        assert client.ping()["standalone"] is True
        assert client.tags("alice/app") == {"latest": chain[2].id}
        assert len(client.history("alice/app")) == 3
        assert download_layer(client, "alice/app", chain[0].id, tmp_path).verified
        assert srv.requests and all(r["headers"].get("Authorization") == "Basic <redacted>" for r in srv.requests)
        # another port of the standalone index's host gets Basic up front too (no 401 round trip)
        with V1Server(users=USERS, standalone=True) as other:
            other.preload("alice/app", chain, tags={"latest": chain[2].id})
            assert client.tags("alice/app", endpoints=[other.registry_url]) == {"latest": chain[2].id}
            assert [r["headers"].get("Authorization") for r in other.requests] == ["Basic <redacted>"]
        with pytest.raises(Unauthorized):
            _client(srv.index_url, auth=("alice", "wrong")).tags("alice/app")
        anonymous = _client(srv.index_url, auth=False)
        assert anonymous.ping()["authenticated"] is False
        with pytest.raises(Unauthorized):
            anonymous.tags("alice/app")


def test_private_repository_needs_login(chain: list[V1Image]) -> None:
    with V1Server(users=USERS) as srv:
        srv.preload("alice/secret", chain, tags={"latest": chain[2].id}, private=True)
        with pytest.raises(Unauthorized):
            _client(srv.index_url, auth=False).tags("alice/secret")
        assert _client(srv.index_url).tags("alice/secret") == {"latest": chain[2].id}


def test_no_secret_in_repr_trace_or_errors(chain: list[V1Image]) -> None:
    with V1Server(users=USERS, push_redirect=302) as srv:
        client = _client(srv.index_url)
        client.push("alice/app", chain, tags=["latest"])
        client.history("alice/app")
        with pytest.raises(RegistryError) as err:
            client.resolve("alice/app", "missing")
        signatures = list(srv._tokens)  # every token the index issued
        assert signatures
        cookies = [c.value for c in client.t.session.cookies]
        texts = [repr(client), repr(client.auth), repr(client.repository_data("alice/app")),
                 repr(client.t.trace_records), str(err.value), repr(err.value)]
        for text in texts:
            assert USERS["alice"] not in text
            assert not any(s in text for s in signatures)
            assert not any(c in text for c in cookies)


# ---------------------------------------------------------------------------------- frames
def test_history_rows_make_a_history_frame(srv: V1Server) -> None:
    rows = _client(srv.index_url).history("alice/app")
    df = make_frame("history", rows)
    assert df["step"].tolist() == [0, 1, 2]
    assert str(df["created"].dtype) == "datetime64[ns, UTC]" and str(df["size"].dtype) == "Int64"
    assert df["layer_digest"].isna().all() and not df["empty_layer"].any()
    assert all({"id", "parent"} <= set(r) for r in rows)
    assert json.dumps([r["id"] for r in rows])  # plain strings


# ---------------------------------------------------------------------------------- the facade
# These need the registry.py / frames.py changes of issue 5 (api="v1"/"auto", frame "history_v1").
def test_facade_speaks_v1_in_the_same_frames(srv: V1Server, chain: list[V1Image], tmp_path: Path) -> None:
    import regexplore as rx

    reg = rx.Registry(srv.index_url, auth=AUTH, api="v1")
    assert reg.api == "v1" and reg.v1 is not None
    tags = reg.tags("alice/app")
    assert list(tags.columns) == ["repository", "tag"]
    assert sorted(tags["tag"]) == ["base", "latest"] and set(tags["repository"]) == {"alice/app"}
    hist = reg.history("alice/app:latest")
    assert list(hist.columns)[:8] == list(make_frame("history", []).columns)
    assert list(hist.columns)[8:] == ["id", "parent"]
    assert hist["id"].tolist() == [i.id for i in chain] and hist["step"].tolist() == [0, 1, 2]
    assert str(hist["created"].dtype) == "datetime64[ns, UTC]"
    found = reg.search("app")
    assert found["name"].tolist() == ["alice/app"] and list(found.columns) == list(make_frame("search", []).columns)
    with pytest.raises(RegistryError, match="catalog is not available"):
        reg.catalog()
    with pytest.raises(RegistryError, match="not part of the v1"):
        reg.manifest("alice/app:latest")
    paths = reg.download("alice/app:latest", str(tmp_path))
    assert [Path(p).read_bytes() for p in paths] == [i.layer for i in chain]
    assert not reg.trace.empty and USERS["alice"] not in reg.trace.to_string()
    reg.close()


def test_facade_auto_finds_a_v1_registry(chain: list[V1Image]) -> None:
    import regexplore as rx

    with V1Server(users=USERS, standalone=True) as srv:
        srv.preload("alice/app", chain, tags={"latest": chain[2].id})
        reg = rx.Registry(srv.index_url, auth=AUTH)  # api="auto"
        assert reg.api == "auto"
        assert reg.tags("alice/app")["tag"].tolist() == ["latest"]
        assert reg.api == "v1"
        paths = [r["path"] for r in srv.requests]
        assert "/v2/" in paths and "/v1/_ping" in paths
        assert paths.index("/v2/") < paths.index("/v1/_ping")
        with pytest.raises(ValueError):
            rx.Registry(srv.index_url, api="v3")
        reg.close()


def test_an_empty_layer_is_not_fetched_but_still_checked(tmp_path: Path) -> None:
    empty = V1Image.build(layer=b"", cmd=["/bin/sh", "-c", "#(nop) ENV A=1"], seed="empty")
    with V1Server(standalone=True) as srv:  # the Python registry answers 416 to a GET of an empty layer
        srv.preload("alice/empty", [empty], tags={"latest": empty.id})
        got = download_layer(V1Client.connect(srv.index_url, auth=False), "alice/empty", empty.id, tmp_path)
        assert got.size == 0 and got.path.read_bytes() == b"" and got.verified
        assert not any(r["path"].endswith("/layer") for r in srv.requests)

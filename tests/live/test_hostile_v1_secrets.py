"""Hostile registries (issue 10, items 1, 12 and 13).

1. ids, tags, names and endpoints from a v1 server are validated before they become a path or a
   URL part: a hostile v1 index + registry of this module (loopback) serves ``../../x`` and friends
   in ancestry, image JSON, tag maps, image lists, search results and ``X-Docker-Endpoints``.
12. a token server or registry that echoes what it received (Basic header, OAuth form, tokens) in
   its error messages: no password, token or encoded form of them reaches ``str``/``repr`` of the
   error, the trace, a log record or a traceback printed with its locals.
13. JSON nested 100 000 deep (``[[[…]]]``, ``{"a":{"a":…}}``) in a manifest, a config (pushed to the
   real registry), an index, a token answer, an error body, v1 JSON or Hub JSON raises a
   ``RegistryError`` naming the document, never ``RecursionError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest
import requests
from servers import serve, stop
from test_secrets_and_redirects import _raised, _shown_with_locals

from regexplore import Registry
from regexplore.errors import InvalidReference, NotFound, RegistryError, Unauthorized, UnsupportedMediaType
from regexplore.http.auth import Credentials
from regexplore.http.transport import RetryPolicy
from regexplore.protocol.hub import HubClient
from regexplore.protocol.v1.parse import normalize_repository

FAST = RetryPolicy(attempts=1, backoff=0.01, max_sleep=0.01, budget=0.1)


def _hexid(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


TOP, BASE = _hexid("top"), _hexid("base")
LAYER = b"v1 layer bytes\n" * 64
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: an image manifest (of a config "{}" and no layers) that the loopback registries serve
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
    "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}}).encode()


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to ``server.app.answer(method, path, query, headers, body)``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        status, headers, payload = self.server.app.answer(  # type: ignore[attr-defined]
            self.command, parts.path, parts.query, self.headers, body)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PUT = do_HEAD = do_GET


@pytest.fixture(scope="module")
def stage() -> Iterator[Any]:
    """One loopback server for the module; each test puts its own app on it (:func:`_use`)."""
    httpd = serve(_Handler)
    yield httpd
    stop(httpd)


def _use(stage: Any, app: Any) -> Any:
    stage.app = app
    app.url = stage.url
    return app


def _json(doc: Any, status: int = 200, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# ====================================================================== 1. v1 ids, tags, names
class HostileV1:
    """A standalone v1 index + registry whose answers the test sets. Paths are matched by suffix:
    the client resolves dot segments (``/v1/images/../../x/json`` arrives as ``/x/json``), and
    whatever segment precedes ``/json`` gets an image JSON with that id and a valid checksum, so a
    hostile id is served as willingly as a good one."""

    def __init__(self) -> None:
        self.ancestry: Any = [TOP, BASE]
        self.tags: Any = {"latest": TOP}
        self.images: Any = [{"id": TOP, "checksum": ""}, {"id": BASE, "checksum": ""}]
        self.json_docs: dict[str, Any] = {}
        self.search: Any = {"query": "x", "num_results": 1, "results": [{"name": "demo/x", "description": ""}]}
        self.endpoints: str | None = None
        self.raw: dict[str, bytes] = {}  # path suffix -> body served as is (deep JSON)
        self.url = ""

    def image_json(self, image_id: str) -> dict[str, Any]:
        if image_id in self.json_docs:
            return self.json_docs[image_id]
        doc = {"id": image_id, "created": "2014-05-01T10:00:00Z", "Size": len(LAYER),
               "container_config": {"Cmd": ["/bin/sh", "-c", f"step {image_id[:8]}"]}}
        if image_id == TOP:
            doc["parent"] = BASE
        return doc

    def answer(self, method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict, bytes]:
        for suffix, raw in self.raw.items():
            if path.endswith(suffix):
                return 200, {"Content-Type": "application/json"}, raw
        if path.startswith("/v2"):
            return 404, {"Content-Type": "text/plain"}, b"404 page not found\n"
        if path == "/v1/_ping":
            return _json({}, **{"X-Docker-Registry-Standalone": "true"})
        if path == "/v1/search":
            return _json(self.search)
        if m := re.fullmatch(r"/v1/repositories/(.+)/images", path):
            extra = {"X-Docker-Endpoints": self.endpoints} if self.endpoints is not None else {}
            return _json(self.images, **{"X-Docker-Token": "signature=abc,repository=\"demo/x\",access=read"}, **extra)
        if m := re.fullmatch(r"/v1/repositories/(.+)/tags/([^/]+)", path):
            tags = self.tags if isinstance(self.tags, dict) else {}
            return _json(tags.get(m.group(2))) if m.group(2) in tags else _json({"error": "Tag not found"}, 404)
        if path.endswith("/tags"):
            return _json(self.tags)
        if path.endswith("/ancestry"):
            return _json(self.ancestry)
        if path.endswith("/json"):
            raw = json.dumps(self.image_json(path.rsplit("/", 2)[-2])).encode()
            payload = "sha256:" + hashlib.sha256(raw + b"\n" + LAYER).hexdigest()
            return 200, {"Content-Type": "application/json", "X-Docker-Size": str(len(LAYER)),
                         "X-Docker-Payload-Checksum": payload}, raw
        if path.endswith("/layer"):
            return 200, {"Content-Type": "application/octet-stream"}, LAYER
        return _json({"error": "not found"}, 404)


@pytest.fixture
def hostile_v1(stage: Any) -> HostileV1:
    return _use(stage, HostileV1())


ESCAPING_IDS = ["../../escaped", "../../../escaped", f"{BASE[:8]}/../../../escaped", "a/../../../escaped"]
BAD_IDS = ["A" * 64, TOP[:12], TOP + "0", TOP[:63] + "g", TOP[:63] + "\x00", TOP + "\n", "%2e%2e%2fescaped",
           "..%2f..%2fescaped", "..", "", "./" + TOP[:62], TOP[:32] + "/" + TOP[33:]]


@pytest.mark.parametrize("bad", ESCAPING_IDS)
def test_a_hostile_ancestry_id_after_auto_switched_to_v1_writes_nothing_outside_dest(
        tmp_path: Path, hostile_v1: HostileV1, bad: str) -> None:
    reg = Registry(hostile_v1.url)  # api="auto": history() finds v1 and stays there
    assert len(reg.history("demo/x:latest")) == 2 and reg.api == "v1"
    hostile_v1.ancestry = [TOP, bad]
    dest = tmp_path / "w" / "x" / "dest"
    before = _files(tmp_path)
    exc = _raised(lambda: reg.download("demo/x:latest", str(dest), progress=False))
    assert isinstance(exc, RegistryError) and "not a v1 image id" in str(exc), exc
    assert {p for p in _files(tmp_path) - before if not p.startswith("w/x/dest")} == set()
    assert not list(tmp_path.rglob("*escaped*"))
    reg.close()


@pytest.mark.parametrize("bad", ESCAPING_IDS + BAD_IDS + [7, None])
def test_every_v1_ancestry_id_is_64_lowercase_hex(hostile_v1: HostileV1, bad: Any) -> None:
    hostile_v1.ancestry = [TOP, bad]
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.history("demo/x:latest"))
    assert isinstance(exc, RegistryError) and "ancestry" in str(exc), exc
    reg.close()


@pytest.mark.parametrize("field,value", [("id", "../../escaped"), ("id", TOP), ("id", "A" * 64), ("id", 5),
                                         ("parent", "../escaped"), ("parent", BASE[:8]), ("parent", ["x"])])
def test_ids_inside_v1_image_json_are_checked(hostile_v1: HostileV1, field: str, value: Any) -> None:
    hostile_v1.json_docs[BASE] = {**hostile_v1.image_json(BASE), field: value}
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.history("demo/x:latest"))
    assert isinstance(exc, RegistryError) and f"image {BASE[:12]}" in str(exc) and field in str(exc), exc
    reg.close()


@pytest.mark.parametrize("tags", [
    {"../escaped": TOP}, {"a/b": TOP}, {"x\x00": TOP}, {"": TOP}, {".hidden": TOP}, {"-x": TOP}, {"x" * 129: TOP},
    {"latest\n": TOP}, {"%2e%2e": TOP}, {"latest": "../../escaped"}, {"latest": "A" * 64}, {"latest": TOP[:8]},
    {"latest": 5}, [{"name": "../x", "layer": ""}], [{"name": "latest", "layer": "../x"}],
    [{"name": "latest", "layer": "ABCDEF12"}], [{"name": "a/b", "layer": TOP[:8]}],
])
def test_v1_tag_maps_with_bad_names_or_ids_are_refused(hostile_v1: HostileV1, tags: Any) -> None:
    hostile_v1.tags = tags
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.tags("demo/x"))
    assert isinstance(exc, RegistryError) and "tags of demo/x" in str(exc), exc
    reg.close()


def test_the_single_tag_answer_is_checked_too(hostile_v1: HostileV1) -> None:
    hostile_v1.tags = [{"name": "latest", "layer": ""}]  # the Hub's list form: the id comes from tags/latest
    hostile_v1.raw["/tags/latest"] = json.dumps("../../escaped").encode()
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.history("demo/x:latest"))
    assert isinstance(exc, RegistryError) and "not a v1 image id" in str(exc), exc
    reg.close()


@pytest.mark.parametrize("images", [
    [{"id": "../../escaped", "checksum": ""}], [{"id": "A" * 64}], [{"id": TOP[:8]}],
    [{"id": TOP, "Tag": "../x"}], [{"id": TOP, "Tag": "a/b"}],
])
def test_v1_index_image_lists_are_checked(hostile_v1: HostileV1, images: Any) -> None:
    hostile_v1.images = images
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.v1.repository_data("demo/x"))  # type: ignore[union-attr]
    assert isinstance(exc, RegistryError) and "images of demo/x" in str(exc), exc
    reg.close()


def test_a_prefix_resolved_through_a_hostile_image_list_never_becomes_a_path(tmp_path: Path,
                                                                              hostile_v1: HostileV1) -> None:
    bad = f"{TOP[:8]}/../../../escaped"
    hostile_v1.tags = [{"name": "latest", "layer": TOP[:8]}]
    hostile_v1.images = [{"id": bad, "checksum": ""}]
    hostile_v1.ancestry = [bad]
    dest = tmp_path / "w" / "x" / "dest"
    before = _files(tmp_path)
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.download("demo/x:latest", str(dest), progress=False))
    assert isinstance(exc, RegistryError), exc
    assert {p for p in _files(tmp_path) - before if not p.startswith("w/x/dest")} == set()
    reg.close()


@pytest.mark.parametrize("name", ["../../x", "demo/../../x", "a/b/c", "x\x00", "%2e%2e/x", "", "/", "demo/.."])
def test_v1_search_names_are_checked(hostile_v1: HostileV1, name: str) -> None:
    hostile_v1.search = {"query": "x", "num_results": 1, "results": [{"name": name, "description": "d"}]}
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.search("x"))
    assert isinstance(exc, RegistryError) and "search" in str(exc), exc
    reg.close()


@pytest.mark.parametrize("name", ["../../x", "demo/../../x", "a/b/c", "x\x00", "demo/%2e%2e", "demo/x?y", "demo/x#y"])
def test_repository_names_that_are_not_v1_names_never_reach_a_url(name: str) -> None:
    with pytest.raises(InvalidReference):
        normalize_repository(name)


@pytest.mark.parametrize("endpoints", ["127.0.0.1:{port}/../x", "user@127.0.0.1:{port}", "127.0.0.1:{port}?x",
                                       "127.0.0.1:{port}#x", "127.0.0.1:{port}\x00", "127.0.0.1:{port} x",
                                       "127.0.0.1:x{port}"])
def test_v1_endpoints_must_be_host_and_port(hostile_v1: HostileV1, endpoints: str) -> None:
    hostile_v1.endpoints = endpoints.format(port=urlsplit(hostile_v1.url).port)
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: reg.tags("demo/x"))
    assert isinstance(exc, RegistryError) and "X-Docker-Endpoints" in str(exc), exc
    reg.close()


def test_good_v1_answers_still_work(tmp_path: Path, hostile_v1: HostileV1) -> None:
    hostile_v1.endpoints = f" 127.0.0.1:{urlsplit(hostile_v1.url).port} , "
    reg = Registry(hostile_v1.url, api="v1")
    assert reg.tags("demo/x")["tag"].tolist() == ["latest"]
    assert reg.history("demo/x:latest")["id"].tolist() == [BASE, TOP]
    paths = reg.download("demo/x:latest", str(tmp_path / "dest"), progress=False)
    assert sorted(Path(p).name for p in paths) == sorted([f"{BASE}.layer", f"{TOP}.layer"])
    hostile_v1.tags = [{"name": "latest", "layer": TOP[:8]}, {"name": "old_1.0-x", "layer": ""}]
    assert reg.v1.resolve("demo/x", "latest") == TOP  # type: ignore[union-attr]
    reg.close()


# ====================================================================== 12. echoed secrets
PASSWORD = f'p w/+&%"\\\u00e9-{secrets.token_hex(8)}'
IDENTITY = f"idtok/+={secrets.token_hex(10)}"
TOKEN = f"tok.{secrets.token_hex(16)}.sig/+="
REFRESH = f"refresh-{secrets.token_hex(12)}"


def _lower_percent(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _forms(value: str) -> set[str]:
    """``value`` as a server might echo it: raw, URL-encoded, JSON-escaped, base64."""
    raw = value.encode()
    out = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1],
           json.dumps(value, ensure_ascii=False)[1:-1], base64.b64encode(raw).decode(),
           base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return out | {_lower_percent(f) for f in out}


SECRET_FORMS = sorted(_forms(PASSWORD) | _forms(f"alice:{PASSWORD}") | _forms(IDENTITY) | _forms(f"<token>:{IDENTITY}")
                      | _forms(TOKEN) | _forms(REFRESH), key=len)


class Echo:
    """A registry and its token server on one loopback port that echo what they receive.

    ``mode``: ``json`` (token GET → 401 ``errors[].message`` + ``detail``), ``text`` (401 text/plain),
    ``redirect`` (token GET → 307 to a URL carrying the credentials, answered by a text echo),
    ``oauth`` (token POST → 400 ``error_description`` with the raw and decoded form), ``registry``
    (a token is issued; the registry 401s echoing the Bearer header in its body and challenge),
    ``basic`` (the registry asks for Basic and echoes the header), ``challenge`` (a first manifest
    is served; for the next one the registry's challenge echoes the token and the password the
    token server saw, and the token server then refuses: the error is raised while that challenge
    is being answered)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.url = ""
        self.seen = ""  # what the token server last received, for the challenge mode

    def challenge(self, **extra: str) -> str:
        params = {"realm": f"{self.url}/token", "service": "echo", "scope": "repository:demo/x:pull", **extra}
        quoted = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in params.items()}  # RFC 9110 quoted-pair
        return "Bearer " + ",".join(f'{k}="{v}"' for k, v in quoted.items())

    def echo_text(self, auth: str, query: str, form: dict[str, str]) -> str:
        user, _, pw = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":") if auth.startswith(
            "Basic ") else ("", "", "")
        values = [auth, pw, query, urlencode_echo(form), *form.values()]
        return " | ".join(f"{v} {json.dumps(v)} {quote_plus(v)} {_lower_percent(quote(v, safe=''))}" for v in values)

    def answer(self, method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict, bytes]:
        auth = headers.get("Authorization") or ""
        form = dict(parse_qsl(body.decode())) if body else {}
        echo = self.echo_text(auth, query, form) + " | raw form: " + body.decode()
        if path.startswith("/v2"):
            if self.mode == "basic":
                if not auth:
                    return _json({"errors": [{"code": "UNAUTHORIZED", "message": "log in"}]}, 401,
                                 **{"WWW-Authenticate": 'Basic realm="echo"'})
                return _json({"errors": [{"code": "UNAUTHORIZED", "message": f"refused {echo}",
                                          "detail": {"sent": auth, "echo": echo}}]}, 401,
                             **{"WWW-Authenticate": 'Basic realm="echo"'})
            if self.mode == "challenge" and path.endswith("/1") and auth == f"Bearer {TOKEN}":
                return 200, {"Content-Type": OCI_MANIFEST}, MANIFEST
            if self.mode == "challenge" and auth:
                return _json({"errors": [{"code": "UNAUTHORIZED", "message": "expired"}]}, 401,
                             **{"WWW-Authenticate": self.challenge(error="invalid_token",
                                                                   error_description=f"{auth} {self.seen}")})
            if self.mode == "registry" and auth:
                return _json({"errors": [{"code": "UNAUTHORIZED", "message": f"token refused: {echo}"}]}, 401,
                             **{"WWW-Authenticate": self.challenge(error="invalid_token",
                                                                   error_description=f"bad {auth[7:]}")})
            return _json({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, 401,
                         **{"WWW-Authenticate": self.challenge()})
        if path == "/token" and method == "POST":
            return _json({"error": "invalid_grant", "error_description": f"bad form {echo}"}, 400)
        if path == "/token" and self.mode == "challenge" and not self.seen:
            self.seen = echo
            return _json({"token": TOKEN, "expires_in": 300})
        if path == "/token" and self.mode == "registry":
            return _json({"token": TOKEN, "access_token": TOKEN, "refresh_token": REFRESH, "expires_in": 300})
        if path == "/token" and self.mode == "redirect":
            pw = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")[2]
            target = f"/token-echo?pw={quote(pw, safe='')}&basic={quote(auth, safe='')}&raw={auth[6:]}"
            return 307, {"Location": target}, b""
        if path in ("/token", "/token-echo") and self.mode in ("text", "redirect"):
            return 401, {"Content-Type": "text/plain"}, f"denied: {echo}".encode()
        return _json({"errors": [{"code": "UNAUTHORIZED", "message": f"bad credentials {echo}",
                                  "detail": [{"Authorization": auth, "query": query}]}]}, 401)


def urlencode_echo(form: dict[str, str]) -> str:
    return "&".join(f"{k}={quote_plus(v)}" for k, v in form.items())


def _strings(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [s for k, v in doc.items() for s in (str(k), *_strings(v))]
    if isinstance(doc, (list, tuple)):
        return [s for v in doc for s in _strings(v)]
    return [str(doc)]


def _all_shown(exc: BaseException, caplog: pytest.LogCaptureFixture, reg: Registry) -> str:
    """Everything a user could see of a failure: the error's text, attributes and traceback with
    locals, every log record, the trace."""
    detail = getattr(exc, "detail", None)
    return "\n".join([
        str(exc), repr(exc), repr(exc.args), str(getattr(exc, "message", "")), repr(detail),
        json.dumps(detail, default=str), *_strings(detail), _shown_with_locals(exc),
        "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records),
        reg.trace.to_string(), repr(reg.transport.trace_records),
    ])


@pytest.mark.parametrize("mode,auth,oauth", [
    ("json", ("alice", PASSWORD), False),
    ("text", ("alice", PASSWORD), False),
    ("redirect", ("alice", PASSWORD), False),
    ("oauth", ("alice", PASSWORD), True),
    ("oauth", Credentials(None, IDENTITY, kind="identitytoken"), False),
    ("registry", ("alice", PASSWORD), False),
    ("basic", ("alice", PASSWORD), False),
    ("challenge", ("alice", PASSWORD), False),
])
def test_secrets_echoed_by_a_server_are_scrubbed_everywhere(stage: Any, caplog: pytest.LogCaptureFixture,
                                                             mode: str, auth: Any, oauth: bool) -> None:
    caplog.set_level(logging.DEBUG)
    app = Echo(mode)
    _use(stage, app)
    reg = Registry(app.url, auth=auth, oauth=oauth, api="v2")
    reg.transport.retry = FAST
    if mode == "challenge":
        assert reg.manifest("demo/x:1").digest == _digest(MANIFEST)
    exc = _raised(lambda: reg.manifest("demo/x:2"))
    assert isinstance(exc, Unauthorized), exc
    shown = _all_shown(exc, caplog, reg)
    leaked = [f for f in SECRET_FORMS if f in shown]
    assert not leaked, f"{leaked[:3]} in:\n{shown[:3000]}"
    # nor a part of one (a message cut short before its secrets were cut out)
    parts = {f[i:i + 16] for f in SECRET_FORMS for i in range(len(f) - 15)}
    leaked = [p for p in parts if p in shown]
    assert not leaked, f"{leaked[:3]} in:\n{shown[:3000]}"
    assert "<redacted>" in str(exc)  # the server's message is kept, the secrets cut out
    reg.close()


def test_the_scrubber_keeps_its_secrets_out_of_its_own_repr() -> None:
    reg = Registry("127.0.0.1:9", auth=("alice", PASSWORD))
    scrubber = reg._auth.scrubber
    assert PASSWORD not in repr(scrubber) and PASSWORD not in repr(vars(reg._auth))
    assert scrubber(f"x {PASSWORD} y {quote_plus(PASSWORD)}") == "x <redacted> y <redacted>"
    reg.close()


def test_short_passwords_are_scrubbed_only_as_whole_words() -> None:
    reg = Registry("127.0.0.1:9", auth=("bob", "pw1"))
    assert reg._auth.scrubber("password pw1 expired; pw12 ok") == "password <redacted> expired; pw12 ok"
    reg.close()


# ====================================================================== 13. deeply nested JSON
DEEP = {"arrays": b"[" * 100_000 + b"]" * 100_000, "objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push(base_url: str, repo: str, tag: str, config: bytes) -> None:
    """A one-layer image whose config blob is ``config``, pushed with plain ``requests``."""
    layer = b"\0" * 1024
    for blob in (layer, config):
        r = requests.post(f"{base_url}/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        loc = requests.compat.urljoin(base_url, r.headers["Location"])
        requests.put(loc, params={"digest": _digest(blob)}, data=blob).raise_for_status()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": _digest(config)},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                                       "size": len(layer), "digest": _digest(layer)}]}).encode()
    requests.put(f"{base_url}/v2/{repo}/manifests/{tag}", data=manifest,
                 headers={"Content-Type": DOCKER_MANIFEST}).raise_for_status()


@pytest.mark.parametrize("kind", sorted(DEEP))
def test_a_deeply_nested_config_in_the_real_registry_fails_cleanly(empty_sandbox: Any, kind: str) -> None:
    _push(empty_sandbox.url, "demo/deep", "1", DEEP[kind])
    reg = Registry(empty_sandbox.url)
    exc = _raised(lambda: reg.config("demo/deep:1"))
    assert isinstance(exc, UnsupportedMediaType), repr(exc)
    assert "nested too deeply" in str(exc) and "demo/deep" in str(exc) and "config" in str(exc)
    assert len(reg.layers("demo/deep:1")) == 1  # the frames show NA for what the config would tell
    assert reg.history("demo/deep:1")["created"].isna().all()
    reg.close()


class Deep:
    """A v2 registry (and its token server) answering ``paths`` ({path: (status, content type,
    body)}); ``/v2/`` says 200, anything else 404."""

    def __init__(self, paths: dict[str, tuple[int, str, bytes]]) -> None:
        self.paths = paths
        self.url = ""

    def answer(self, method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict, bytes]:
        if path in self.paths:
            status, ctype, payload = self.paths[path]
            return status, {"Content-Type": ctype}, payload
        if path == "/v2/":
            return _json({}, **{"Docker-Distribution-API-Version": "registry/2.0"})
        return _json({"errors": [{"code": "NOT_FOUND", "message": "no"}]}, 404)


def _schema1(v1compat: str) -> bytes:
    return json.dumps({"schemaVersion": 1, "name": "demo/x", "tag": "1", "architecture": "amd64",
                       "fsLayers": [{"blobSum": _digest(b"x")}], "history": [{"v1Compatibility": v1compat}]}).encode()


@pytest.mark.parametrize("kind", sorted(DEEP))
@pytest.mark.parametrize("ctype,wrap,call,names", [
    (OCI_MANIFEST, None, "manifest", "manifest demo/x:1"),
    ("", None, "manifest", "manifest demo/x:1"),
    ("application/vnd.oci.image.index.v1+json", None, "manifest", "manifest demo/x:1"),
    ("application/vnd.docker.distribution.manifest.v1+json", _schema1, "history", "v1Compatibility"),
    ("application/vnd.docker.distribution.manifest.v1+json", _schema1, "layers", "v1Compatibility"),
])
def test_deeply_nested_manifests_raise_a_registry_error_naming_them(stage: Any, kind: str, ctype: str, wrap: Any,
                                                                    call: str, names: str) -> None:
    body = wrap(DEEP[kind].decode()) if wrap else DEEP[kind]
    app = Deep({"/v2/demo/x/manifests/1": (200, ctype, body)})
    _use(stage, app)
    reg = Registry(app.url, api="v2")
    exc = _raised(lambda: getattr(reg, call)("demo/x:1"))
    assert isinstance(exc, RegistryError), repr(exc)
    assert "nested too deeply" in str(exc) and names in str(exc), exc
    reg.close()


@pytest.mark.parametrize("kind", sorted(DEEP))
def test_deeply_nested_error_bodies_and_listings(stage: Any, kind: str) -> None:
    app = Deep({"/v2/demo/x/manifests/1": (404, "application/json", DEEP[kind]),
                "/v2/demo/x/tags/list": (200, "application/json", DEEP[kind])})
    _use(stage, app)
    reg = Registry(app.url, api="v2")
    assert isinstance(_raised(lambda: reg.manifest("demo/x:1")), NotFound)
    exc = _raised(lambda: reg.tags("demo/x"))
    assert isinstance(exc, RegistryError) and "nested too deeply" in str(exc) and "demo/x" in str(exc), exc
    reg.close()


@pytest.mark.parametrize("kind", sorted(DEEP))
def test_deeply_nested_token_answers(stage: Any, kind: str) -> None:
    app = Deep({"/token": (200, "application/json", DEEP[kind])})

    def answer(method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict, bytes]:
        if path.startswith("/v2/demo"):
            return _json({"errors": [{"code": "UNAUTHORIZED", "message": "log in"}]}, 401,
                         **{"WWW-Authenticate": f'Bearer realm="{app.url}/token",service="deep"'})
        return Deep.answer(app, method, path, query, headers, body)

    app.answer = answer  # type: ignore[method-assign]
    _use(stage, app)
    reg = Registry(app.url, api="v2", auth=("alice", "password-1"))
    exc = _raised(lambda: reg.manifest("demo/x:1"))
    assert isinstance(exc, RegistryError) and "nested too deeply" in str(exc) and "token" in str(exc), exc
    reg.close()


def test_a_jwt_token_with_deeply_nested_claims_is_shown_without_claims(stage: Any) -> None:
    claims = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")  # fits in a header
    token = f"eyJhbGciOiJub25lIn0.{claims}.sig"
    manifest = MANIFEST
    app = Deep({"/token": (200, "application/json", json.dumps({"token": token}).encode())})

    def answer(method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict, bytes]:
        if path == "/v2/demo/x/manifests/1":
            if headers.get("Authorization") != f"Bearer {token}":
                return _json({}, 401, **{"WWW-Authenticate": f'Bearer realm="{app.url}/token",service="d"'})
            return 200, {"Content-Type": OCI_MANIFEST}, manifest
        return Deep.answer(app, method, path, query, headers, body)

    app.answer = answer  # type: ignore[method-assign]
    _use(stage, app)
    reg = Registry(app.url, api="v2", auth=("alice", "password-1"))
    assert reg.manifest("demo/x:1").digest == _digest(manifest)
    assert reg._auth.whoami()["subject"] is None
    reg.close()


@pytest.mark.parametrize("kind", sorted(DEEP))
@pytest.mark.parametrize("suffix,call,names", [
    ("/ancestry", lambda r: r.history("demo/x:latest"), "ancestry"),
    ("/json", lambda r: r.history("demo/x:latest"), "image json"),
    ("/tags", lambda r: r.tags("demo/x"), "tags"),
    ("/images", lambda r: r.tags("demo/x"), "repository images"),
    ("/v1/search", lambda r: r.search("x"), "search"),
])
def test_deeply_nested_v1_json(hostile_v1: HostileV1, kind: str, suffix: str, call: Callable[[Registry], Any],
                               names: str) -> None:
    hostile_v1.raw[suffix] = DEEP[kind]
    reg = Registry(hostile_v1.url, api="v1")
    exc = _raised(lambda: call(reg))
    assert isinstance(exc, RegistryError) and "nested too deeply" in str(exc) and names in str(exc), exc
    reg.close()


@pytest.mark.parametrize("kind", sorted(DEEP))
def test_deeply_nested_hub_json(stage: Any, kind: str) -> None:
    app = Deep({"/v2/repositories/library/x/tags/": (200, "application/json", DEEP[kind]),
                "/v2/search/repositories/": (200, "application/json", DEEP[kind])})
    _use(stage, app)
    hub = HubClient(hub_url=app.url, index_url=app.url)
    for call, names in ((lambda: hub.tags("x"), "Hub tags of library/x"), (lambda: hub.search_v2("x"), "Hub search")):
        exc = _raised(call)
        assert isinstance(exc, RegistryError) and "nested too deeply" in str(exc) and names in str(exc), exc
    hub.close()


def test_the_nesting_cap_is_configurable(stage: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = b"[" * 300 + b"]" * 300
    app = Deep({"/v2/demo/x/tags/list": (200, "application/json", b'{"name":"demo/x","tags":["a"],"x":' + doc + b"}")})
    _use(stage, app)
    reg = Registry(app.url, api="v2")
    exc = _raised(lambda: reg.tags("demo/x"))
    assert isinstance(exc, RegistryError) and "nested too deeply (over 256 levels" in str(exc), exc
    monkeypatch.setenv("REGEXPLORE_MAX_JSON_DEPTH", "400")
    assert reg.tags("demo/x")["tag"].tolist() == ["a"]
    monkeypatch.setenv("REGEXPLORE_MAX_JSON_DEPTH", "many")
    with pytest.warns(RuntimeWarning, match="REGEXPLORE_MAX_JSON_DEPTH"):
        assert isinstance(_raised(lambda: reg.tags("demo/x")), RegistryError)  # the default: 256
    reg.close()

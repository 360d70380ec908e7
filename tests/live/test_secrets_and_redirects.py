"""Secrets out of reprs, traceback locals, traces, logs and errors; token realm redirects; cookies
per origin; proxies for token requests; ``insufficient_scope``; token lifetimes.

Against the REAL registry binary trusting our token server, reached through :class:`Relay` (a
small loopback server of this module that redirects, forwards, sets cookies and records), and
:class:`servers.FaultProxy` in front of the registry.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest
from servers import FaultProxy, TinyImage, TokenServer, non_loopback_ip, push_tiny_image, serve, stop

from regexplore.errors import Denied, InsecureCredentials, NotFound, RegistryError, Unauthorized
from regexplore.http.auth import Credentials, RegistryAuth, _Token
from regexplore.http.redact import Secret, redact_url, secret_headers
from regexplore.http.transport import RetryPolicy, Transport
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.live
PASSWORD = "pw-Relay-91x!secret"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_sleep=0.05, budget=2.0)
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DENIED_BODY = b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}'
_HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


# ----------------------------------------------------------------- a small loopback server
class Relay:
    """An HTTP server on loopback (or ``bind``) for these tests.

    For each request, in order: a path in :attr:`answers` gets ``fn(relay, query) -> (status,
    headers, body)``; a path in :attr:`redirects` gets ``(status, target)`` with ``{query}`` in
    the target replaced by the request's query string; anything else is forwarded to
    ``upstream`` (404 without one). :attr:`set_cookie` is added to every answer;
    :attr:`date_offset` shifts the ``Date`` header (a server clock that is off). :attr:`requests`
    records method, path, the Authorization *scheme* and the *names* of cookies received.
    """

    def __init__(self, upstream: str | None = None, *, bind: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.redirects: dict[str, tuple[int, str]] = {}
        self.answers: dict[str, Callable[[Relay, str], tuple[int, dict[str, str], bytes]]] = {}
        self.set_cookie: str | None = None
        self.date_offset = 0.0
        self.requests: list[dict[str, Any]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(time.time() + relay.date_offset, usegmt=True)

            def do_GET(self) -> None:
                relay._handle(self)

            do_POST = do_GET

        self._httpd = serve(Handler, bind)
        self.url = self._httpd.url

    def close(self) -> None:
        stop(self._httpd)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def paths(self, method: str | None = None) -> list[str]:
        return [r["path"] for r in self.requests if method is None or r["method"] == method]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        cookies = SimpleCookie(h.headers.get("Cookie", ""))
        auth = h.headers.get("Authorization")
        self.requests.append({"method": h.command, "path": parts.path, "cookies": sorted(cookies),
                              "authorization": auth.split(" ", 1)[0] if auth else None})
        if parts.path in self.answers:
            status, headers, payload = self.answers[parts.path](self, parts.query)
        elif parts.path in self.redirects:
            status, target = self.redirects[parts.path]
            status, headers, payload = status, {"Location": target.replace("{query}", parts.query)}, b""
        elif self.upstream:
            up = urlsplit(self.upstream)
            conn = http.client.HTTPConnection(up.netloc, timeout=30)
            try:
                send = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_HEADERS}
                conn.request(h.command, h.path, body=body or None, headers=send)
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
                headers = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS}
            finally:
                conn.close()
        else:
            status, headers, payload = 404, {}, b"404 page not found\n"
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if self.set_cookie:
            h.send_header("Set-Cookie", self.set_cookie)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)


# ----------------------------------------------------------------- the environment
class Env:
    """``ts`` (token server), ``front`` (the registry's realm: ``front.url + "/realm"``, by
    default one same-origin 307 to ``/token``, forwarded to ``ts``), ``reg`` (the real registry),
    ``img`` (demo/tiny:v1; public/tiny:v1 holds the same)."""

    def __init__(self, ts: TokenServer, front: Relay, reg: LocalRegistry, img: TinyImage) -> None:
        self.ts, self.front, self.reg, self.img = ts, front, reg, img

    def reset(self) -> None:
        self.front.redirects = {"/realm": (307, "/token?{query}")}
        self.front.answers.clear()
        self.front.set_cookie = None
        self.front.requests.clear()


@pytest.fixture(scope="module")
def env_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("storage")
    with LocalRegistry(storage=folder) as plain:
        img = push_tiny_image(plain.url, "demo/tiny")
        push_tiny_image(plain.url, "public/tiny")
    users = {"alice": (PASSWORD, {"repository:demo/*": "pull,push", "repository:public/*": "pull"}),
             "bob": ("bob-pw", {"repository:public/*": "pull"})}
    with TokenServer(users=users, anonymous={"repository:public/*": "pull"}) as ts, Relay(ts.url) as front:
        token = {**ts.registry_config(), "realm": front.url + "/realm"}
        with LocalRegistry(storage=folder, token=token) as reg:
            yield Env(ts, front, reg, img)


@pytest.fixture
def env(env_module: Env) -> Iterator[Env]:
    env_module.reset()
    yield env_module
    env_module.reset()


def _client(url: str, creds: Credentials | None, **kw: Any) -> tuple[Transport, RegistryAuth]:
    auth = RegistryAuth(url.split("://", 1)[1], creds, oauth=bool(kw.pop("oauth", False)))
    return Transport(url, auth=auth, retry=FAST, **kw), auth


def _manifest(t: Transport, repo: str = "demo/tiny") -> bytes:
    return t.request("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST_V2}).content


def _raised(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except Exception as exc:  # the traceback starts here: this frame's locals hold no secret
        return exc
    raise AssertionError("no exception")


def _shown_with_locals(exc: BaseException) -> str:
    """The traceback as ``traceback`` (capture_locals) and ``pytest --showlocals`` print it."""
    plain = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    shown = str(pytest.ExceptionInfo.from_exception(exc).getrepr(showlocals=True, style="long"))
    return plain + shown


# ----------------------------------------------------------------- 1. reprs and traceback locals
def test_secret_strings_hide_their_repr_only() -> None:
    s = Secret("Bearer abc.def-VALUE")
    assert repr(s) == "'<redacted>'" and f"{s!r}" == "'<redacted>'" and "VALUE" not in repr({"a": s})
    assert str(s) == s == "Bearer abc.def-VALUE" and s.encode() == b"Bearer abc.def-VALUE"
    assert repr(s[:9]) == "'<redacted>'"  # rich cuts a long string before its repr
    hidden = secret_headers({"Authorization": "Basic x", "Cookie": "a=b", "Accept": "x/y"})
    assert repr(hidden) == "{'Authorization': '<redacted>', 'Cookie': '<redacted>', 'Accept': 'x/y'}"
    tok = _Token("SECRET-TOKEN-VALUE", 0.0, ("repository:a:pull",))
    assert "SECRET-TOKEN-VALUE" not in repr(tok) and "repository:a:pull" in repr(tok)


@pytest.mark.parametrize("oauth", [False, True])
def test_traceback_locals_hide_credentials_sent_to_the_token_server(env: Env, oauth: bool) -> None:
    wrong = "wrong-Kq9-password"
    t, _ = _client(env.reg.url, Credentials("alice", wrong), oauth=oauth)
    exc = _raised(lambda: _manifest(t))
    assert isinstance(exc, Unauthorized)
    assert env.ts.requests[-1]["method"] == ("POST" if oauth else "GET")  # the form / the Basic header
    text = _shown_with_locals(exc)
    assert "_oauth_post" in text if oauth else "_basic_get" in text  # the frames holding them are shown
    assert wrong not in text and base64.b64encode(f"alice:{wrong}".encode()).decode() not in text
    assert "'<redacted>'" in text


def test_traceback_locals_hide_the_bearer_token(env: Env) -> None:
    t, auth = _client(env.reg.url, Credentials("alice", PASSWORD))
    _manifest(t)
    exc = _raised(lambda: t.request("GET", "/v2/demo/tiny/manifests/missing"))
    assert isinstance(exc, NotFound)
    [token] = [tok.value for tok in auth._tokens.values()]
    text = _shown_with_locals(exc)
    assert "send_headers" in text and token not in text and PASSWORD not in text


# ----------------------------------------------------------------- 2. redacted URLs
def test_redact_url_hides_signature_params_and_keeps_their_names() -> None:
    cases = {
        "https://swift/v1/AUTH_x/c/o?temp_url_sig=S1&temp_url_expires=1": ["temp_url_sig"],
        "https://oss/o?OSSAccessKeyId=S1&Signature=S2&Expires=1": ["OSSAccessKeyId", "Signature"],
        "https://s3/o?AWSAccessKeyId=S1&Signature=S2&x-amz-security-token=S3": ["AWSAccessKeyId"],
        "https://cdn/o?hdnts=exp%3D1~hmac%3DS1&__token__=S2": ["hdnts", "__token__"],
        "https://cdn/o?X-Amz-Signature=S1&x-signature=S2&auth=S3&sign=S4": ["X-Amz-Signature", "sign"],
        "https://cf/o?Policy=S1&Signature=S2&Key-Pair-Id=S3": ["Policy", "Key-Pair-Id"],
        "https://g/o?X-Goog-Credential=S1&session_id=S2&HMAC=S3&client_secret=S4&passwd=S5": ["HMAC"],
    }
    for url, names in cases.items():
        red = redact_url(url)
        assert "S1" not in red and "S2" not in red and "S3" not in red and "S4" not in red, red
        assert all(f"{name}=REDACTED" in red for name in names), red
    keep = redact_url("https://r/v2/a/tags/list?n=2&last=b&digest=sha256:00&X-Amz-Algorithm=AWS4")
    assert keep == "https://r/v2/a/tags/list?n=2&last=b&digest=sha256:00&X-Amz-Algorithm=AWS4"
    assert redact_url("https://s/o?a=1&b=2", all_values=True) == "https://s/o?a=REDACTED&b=REDACTED"


def test_storage_redirect_query_values_redacted_in_trace_logs_and_errors(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FaultProxy(env.reg.url) as proxy:
        store = proxy.redirect_blobs()
        t, _ = _client(proxy.url, Credentials("alice", PASSWORD))
        assert t.request("GET", f"/v2/demo/tiny/blobs/{env.img.layer_digest}").content == env.img.layer
        t.request("GET", "/v2/demo/tiny/tags/list?n=7")
        store.expire()
        err = _raised(lambda: t.request("GET", f"/v2/demo/tiny/blobs/{env.img.layer_digest}"))
        store_url = store.url
    assert isinstance(err, Denied) and err.status == 403
    store_urls = [r["url"] for r in t.trace_records if r["url"].startswith(store_url)]
    assert len(store_urls) == 2
    for text in (*store_urls, str(err), repr(err)):  # every value off the registry's origin
        assert "X-Amz-Algorithm=REDACTED&X-Amz-Expires=REDACTED&X-Amz-Signature=REDACTED" in text, text
    assert any(r["url"].endswith("/tags/list?n=7") for r in t.trace_records)  # the registry's own: kept
    logged = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("X-Amz-Expires=REDACTED" in m for m in logged) and any("tags/list?n=7" in m for m in logged)
    assert any("/token?service=regexplore-test-registry&scope=repository" in m for m in logged)
    haystack = "\n".join([*logged, repr(t.trace_records), str(err)])
    assert store.signature not in haystack and "AWS4-HMAC-SHA256" not in haystack and "=1200" not in haystack


# ----------------------------------------------------------------- 5. token realm redirects
def test_token_realm_redirects_on_the_same_origin_keep_credentials(env: Env) -> None:
    env.front.redirects = {"/realm": (301, "/hop1?{query}"), "/hop1": (302, "/hop2?{query}"),
                           "/hop2": (308, "/token?{query}")}
    t, auth = _client(env.reg.url, Credentials("alice", PASSWORD))
    assert _manifest(t) == env.img.manifest
    assert env.front.paths() == ["/realm", "/hop1", "/hop2", "/token"]
    assert {r["authorization"] for r in env.front.requests} == {"Basic"}
    assert env.ts.requests[-1]["user"] == "alice" and auth.whoami()["subject"] == "alice"
    notes = [r["note"] for r in t.trace_records if r["note"].startswith("token")]
    assert notes == ["token redirect"] * 3 + ["token"]


def test_token_realm_redirect_to_another_origin_drops_credentials(env: Env) -> None:
    with Relay(env.ts.url) as other:
        env.front.redirects = {"/realm": (307, other.url + "/token?{query}")}
        t, auth = _client(env.reg.url, Credentials("alice", PASSWORD))
        assert json.loads(_manifest(t, "public/tiny"))["schemaVersion"] == 2  # anonymous may pull it
        assert [r["authorization"] for r in env.front.requests] == ["Basic"]
        assert [(r["path"], r["authorization"]) for r in other.requests] == [("/token", None)]
        assert env.ts.requests[-1]["user"] is None
        with pytest.raises(Denied):  # alice's repository: her password never reached `other`
            _manifest(t, "demo/tiny")
        assert all(r["authorization"] is None for r in other.requests)


def test_oauth_post_follows_only_same_origin_307_and_308(env: Env) -> None:
    env.front.redirects = {"/realm": (307, "/token")}
    t, _ = _client(env.reg.url, Credentials("alice", PASSWORD), oauth=True)
    _manifest(t)
    assert [(r["method"], r["path"]) for r in env.front.requests] == [("POST", "/realm"), ("POST", "/token")]
    assert env.ts.requests[-1]["grant"] == "password"
    with Relay(env.ts.url) as other:  # the form holds the password: it does not go to another origin
        env.front.redirects = {"/realm": (307, other.url + "/token?{query}")}
        env.front.requests.clear()
        t, _ = _client(env.reg.url, Credentials("alice", PASSWORD), oauth=True)
        _manifest(t, "public/tiny")
        sent = [(r["method"], r["path"]) for r in env.front.requests]
        assert sent == [("POST", "/realm"), ("GET", "/realm")]
        assert [(r["method"], r["authorization"]) for r in other.requests] == [("GET", None)]


def test_token_realm_redirect_loop_stops_after_five_hops(env: Env) -> None:
    env.front.redirects = {"/realm": (307, "/realm?{query}")}
    before = env.ts.count()
    t, _ = _client(env.reg.url, Credentials("alice", PASSWORD))
    with pytest.raises(RegistryError, match="redirected more than 5 times"):
        _manifest(t)
    assert env.front.paths() == ["/realm"] * 6 and env.ts.count() == before


def test_token_realm_redirect_to_plain_http_on_a_remote_host_is_refused(env: Env) -> None:
    ip = non_loopback_ip()
    assert ip, "this machine needs a non-loopback IPv4 address for this test"
    with Relay(env.ts.url, bind=ip) as remote:
        env.front.redirects = {"/realm": (302, remote.url + "/token?{query}")}
        t, _ = _client(env.reg.url, Credentials("alice", PASSWORD))
        with pytest.raises(InsecureCredentials) as info:
            _manifest(t)
        assert remote.requests == [] and PASSWORD not in str(info.value)


# ----------------------------------------------------------------- 9. cookies per origin
def test_cookies_go_only_to_the_origin_that_set_them(env: Env) -> None:
    env.front.set_cookie = "tokensess=TOKEN-SIDE-COOKIE; Path=/"
    with FaultProxy(env.reg.url) as proxy:
        proxy.add_headers({"Set-Cookie": "regsess=REGISTRY-SIDE-COOKIE; Path=/"})
        store = proxy.redirect_blobs()
        t, _ = _client(proxy.url, Credentials("alice", PASSWORD))
        _manifest(t)
        assert t.request("GET", f"/v2/demo/tiny/blobs/{env.img.layer_digest}").content == env.img.layer
        _manifest(t, "public/tiny")  # a second scope: the token side is asked again
        registry_cookies = [r["headers"].get("Cookie") for r in proxy.requests]
    assert store.requests and all("Cookie" not in r["headers"] for r in store.requests)
    assert "regsess=REGISTRY-SIDE-COOKIE" in registry_cookies  # each origin gets its own back
    assert not any("tokensess" in (c or "") for c in registry_cookies)
    assert all("regsess" not in r["cookies"] for r in env.front.requests)
    assert env.front.requests[-1]["cookies"] == ["tokensess"]


# ----------------------------------------------------------------- 10. proxies for token requests
def test_token_requests_go_through_the_configured_proxy(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy("http://unused.invalid") as proxy:
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        t, _ = _client(env.reg.url, Credentials("alice", PASSWORD))
        assert _manifest(t) == env.img.manifest
        via = [r["path"] for r in proxy.requests if r["proxied"]]
    assert "/realm" in via and "/token" in via and "/v2/demo/tiny/manifests/v1" in via


# ----------------------------------------------------------------- 13. insufficient_scope
def _challenge(env: Env, scope: str, error: str | None = "insufficient_scope") -> dict[str, str]:
    value = f'Bearer realm="{env.front.url}/realm",service="{env.ts.service}",scope="{scope}"'
    return {"WWW-Authenticate": value + (f',error="{error}"' if error else "")}


def test_403_insufficient_scope_on_a_cached_token_fetches_one_new_token(env: Env) -> None:
    with FaultProxy(env.reg.url) as proxy:
        t, _ = _client(proxy.url, Credentials("alice", PASSWORD))
        _manifest(t)
        before = env.ts.count()
        proxy.fail(403, times=1, path="/manifests/", headers=_challenge(env, "repository:demo/tiny:pull"),
                   body=DENIED_BODY)
        assert _manifest(t) == env.img.manifest
        assert env.ts.count() == before + 1
        proxy.fail(403, times=None, path="/manifests/", headers=_challenge(env, "repository:demo/tiny:pull"),
                   body=DENIED_BODY)
        with pytest.raises(Denied):  # refused again on the new token: one refetch, then not allowed
            _manifest(t)
        assert env.ts.count() == before + 2


def test_insufficient_scope_naming_more_scopes_after_a_fresh_token_is_answered_once(env: Env) -> None:
    both = "repository:demo/tiny:pull repository:public/tiny:pull"
    with FaultProxy(env.reg.url) as proxy:
        plain = _challenge(env, "repository:demo/tiny:pull", error=None)  # what the registry says first
        proxy.fail(401, times=1, path="/manifests/", headers=plain)
        proxy.fail(401, times=1, path="/manifests/", headers=_challenge(env, both))
        t, _ = _client(proxy.url, Credentials("alice", PASSWORD))
        assert _manifest(t) == env.img.manifest
    assert [r["scopes"] for r in env.ts.requests[-2:]] == [["repository:demo/tiny:pull"], both.split()]


def test_insufficient_scope_on_a_token_just_fetched_for_it_is_denied_at_once(env: Env) -> None:
    before = env.ts.count()
    t, _ = _client(env.reg.url, Credentials("bob", "bob-pw"))
    with pytest.raises(Denied) as info:
        _manifest(t, "demo/tiny")
    assert info.value.status == 401 and env.ts.count() == before + 1  # asked once, not twice


# ----------------------------------------------------------------- 12. token lifetime
def _token_answer(issued_ago: float | None, expires_in: int | None) -> Callable[[Relay, str], Any]:
    def answer(relay: Relay, query: str) -> tuple[int, dict[str, str], bytes]:
        doc: dict[str, Any] = {"token": "opaque-token-value"}
        if expires_in is not None:
            doc["expires_in"] = expires_in
        if issued_ago is not None:  # by the server's clock, which may be off from ours
            server_now = time.time() + relay.date_offset
            doc["issued_at"] = datetime.datetime.fromtimestamp(server_now - issued_ago, datetime.UTC
                                                               ).isoformat().replace("+00:00", "Z")
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()
    return answer


@pytest.mark.parametrize("issued_ago, expires_in, clock_off, low, high", [
    (50, 60, 0, 2, 5),          # 10 s left of 60, renewed 6 s early
    (50, 60, 3600, 2, 5),       # the server's clock an hour ahead: the same
    (50, 60, -3600, 2, 5),      # ... and an hour behind
    (None, None, 0, 50, 54),    # neither: 60 s from now, renewed 6 s early
    (0, 300, -7200, 265, 270),  # fresh, by a clock two hours behind ours
])
def test_token_lifetime_counts_from_issued_at_by_the_servers_clock(
        issued_ago: float | None, expires_in: int | None, clock_off: float, low: float, high: float) -> None:
    with Relay() as server:
        server.answers["/token"] = _token_answer(issued_ago, expires_in)
        server.date_offset = clock_off
        t, auth = _client("http://127.0.0.1:9", None)
        url = "http://127.0.0.1:9/v2/a/manifests/1"
        assert auth.handle_challenge(f'Bearer realm="{server.url}/token",service="s"', url, "GET", None, t)
        assert low <= auth.whoami()["expires_in"] <= high


def test_token_near_its_end_is_renewed_before_the_next_request() -> None:
    with Relay() as server:
        server.answers["/token"] = _token_answer(58, 60)  # 2 s left: used for 1 s
        t, auth = _client("http://127.0.0.1:9", None)
        url = "http://127.0.0.1:9/v2/a/manifests/1"
        auth.handle_challenge(f'Bearer realm="{server.url}/token",service="s"', url, "GET", None, t)
        assert auth.headers_for(url, "GET", None) == {"Authorization": "Bearer opaque-token-value"}
        assert server.paths() == ["/token"]
        time.sleep(1.1)
        auth.headers_for(url, "GET", None)
        assert server.paths() == ["/token", "/token"]

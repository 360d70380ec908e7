"""The transport's rules (credentials on redirects, challenges, retries, bounded redirects), tested with
:class:`regexplore.http.testing.FakeAdapter`: no registry, and no socket (every test runs with
``socket.socket``, ``socket.create_connection`` and ``socket.getaddrinfo`` patched to fail and count)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from regexplore.errors import InsecureCredentials, NotFound, RegistryError
from regexplore.http.auth import Credentials, RegistryAuth
from regexplore.http.retry import Attempts, RetryPolicy
from regexplore.http.testing import FakeAdapter, Reply
from regexplore.http.transport import Transport
from regexplore.http.urls import may_send_credentials, secure_for_credentials

FAST = RetryPolicy(attempts=3, backoff=0.001, max_sleep=0.001, budget=1.0)
REG = "https://registry.example"
MANIFEST = "/v2/team/app/manifests/latest"


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple]]:
    """Every way to a network fails and is counted; a test that reached for one fails at teardown."""
    tried: list[tuple] = []

    def refuse(*args: object, **kw: object) -> None:
        tried.append(args)
        raise OSError("the unit tier opens no socket")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse)
    yield tried
    assert tried == [], "a unit test reached for the network"


def _transport(base: str = REG, credentials: Credentials | None = None, replies: object = ()) -> tuple[
        Transport, FakeAdapter]:
    auth = RegistryAuth(urlsplit(base).netloc, credentials) if credentials is not None else None
    t = Transport(base, auth=auth, retry=FAST)
    return t, FakeAdapter(replies).mount(t)  # type: ignore[arg-type]


def _token(value: str = "REGISTRY-TOKEN") -> Credentials:
    return Credentials(None, value, kind="token")


# ------------------------------------------------------------------------------------- the seam itself
def test_without_the_fake_adapter_a_request_reaches_for_a_socket_and_the_guard_sees_it(
        no_sockets: list[tuple]) -> None:
    t = Transport(REG, retry=RetryPolicy(attempts=1))
    with pytest.raises(RegistryError, match="cannot reach"):
        t.request("GET", "/v2/")
    assert no_sockets  # the guard is what stopped it
    no_sockets.clear()


def test_fake_adapter_answers_from_a_function_and_records_what_was_sent() -> None:
    t, fake = _transport(replies=lambda req: Reply(200, {"X-Seen": req.method or ""}, {"path": req.path_url}))
    resp = t.request("GET", "/v2/_catalog", params={"n": 2})
    assert resp.json() == {"path": "/v2/_catalog?n=2"} and resp.headers["X-Seen"] == "GET"
    assert [r.url for r in fake.sent] == [f"{REG}/v2/_catalog?n=2"]


def test_fake_adapter_refuses_a_request_beyond_its_replies() -> None:
    t, _ = _transport(replies=[Reply(200)])
    t.request("GET", "/v2/")
    with pytest.raises(AssertionError, match="no reply left"):
        t.request("GET", "/v2/")


# ------------------------------------------------------------------------------------- credentials
def test_a_cross_origin_redirect_drops_authorization() -> None:
    storage = "https://storage.example/blobs/abc?X-Amz-Signature=s3cr3t"
    t, fake = _transport(credentials=_token(), replies=[Reply(307, {"Location": storage}), Reply(200, body=b"x")])
    assert t.request("GET", "/v2/team/app/blobs/sha256:abc").content == b"x"
    first, second = fake.sent
    assert first.headers["Authorization"] == "Bearer REGISTRY-TOKEN"
    assert second.url == storage and "Authorization" not in second.headers
    assert "s3cr3t" not in str(t.trace_records)  # the signature is redacted in the trace


def test_a_same_origin_redirect_keeps_authorization() -> None:
    t, fake = _transport(credentials=_token(), replies=[
        Reply(302, {"Location": "/v2/team/app/manifests/sha256:abc"}), Reply(200, body=b"{}")])
    t.request("GET", MANIFEST)
    assert [r.headers.get("Authorization") for r in fake.sent] == ["Bearer REGISTRY-TOKEN"] * 2
    assert fake.sent[1].url == f"{REG}/v2/team/app/manifests/sha256:abc"


def test_a_redirect_to_another_port_or_scheme_is_another_origin() -> None:
    assert may_send_credentials("https://r.example/v2/", "https://R.example:443/v2/x")
    assert not may_send_credentials("https://r.example/v2/", "https://r.example:5000/v2/")
    assert not may_send_credentials("http://r.example/v2/", "https://r.example/v2/")
    assert not may_send_credentials("https://r.example/v2/", "https://storage.r.example/v2/")
    assert secure_for_credentials("https://r.example/") and secure_for_credentials("http://127.0.0.1:5000/")
    assert not secure_for_credentials("http://r.example/") and not secure_for_credentials("ftp://localhost/")


def test_credentials_over_plain_http_to_a_remote_host_are_refused_before_sending() -> None:
    t, fake = _transport("http://registry.example", credentials=_token(), replies=[Reply(200)])
    with pytest.raises(InsecureCredentials):
        t.request("GET", MANIFEST)
    assert fake.sent == []


def test_credentials_over_plain_http_to_loopback_are_sent() -> None:
    t, fake = _transport("http://127.0.0.1:5000", credentials=_token(), replies=[Reply(200)])
    t.request("GET", MANIFEST)
    assert fake.sent[0].headers["Authorization"] == "Bearer REGISTRY-TOKEN"


# ------------------------------------------------------------------------------------- challenges
def _registry_with_token_server(token_hops: dict[str, Reply]) -> tuple[Transport, FakeAdapter]:
    """A registry that wants a Bearer token from https://auth.example/token (``token_hops``: answers
    by URL prefix, checked before the token server's own answer)."""
    challenge = 'Bearer realm="https://auth.example/token",service="reg",scope="repository:team/app:pull"'

    def answer(req: requests.PreparedRequest) -> Reply:
        url = req.url or ""
        for prefix, reply in token_hops.items():
            if url.startswith(prefix):
                return reply
        if url.startswith("https://auth.example/token"):
            return Reply(200, body={"token": "FRESH-TOKEN", "expires_in": 300})
        if req.headers.get("Authorization") == "Bearer FRESH-TOKEN":
            return Reply(200, body={"schemaVersion": 2})
        return Reply(401, {"WWW-Authenticate": challenge}, {"errors": [{"code": "UNAUTHORIZED", "message": "no"}]})

    return _transport(credentials=Credentials("alice", "pw-Kq9"), replies=answer)


def test_a_401_challenge_fetches_a_token_and_the_request_is_sent_again_with_it() -> None:
    t, fake = _registry_with_token_server({})
    assert t.request("GET", MANIFEST).json() == {"schemaVersion": 2}
    first, token_request, retried = fake.sent
    assert "Authorization" not in first.headers
    assert urlsplit(token_request.url or "").netloc == "auth.example"
    query = parse_qs(urlsplit(token_request.url or "").query)
    assert query["service"] == ["reg"] and query["scope"] == ["repository:team/app:pull"]
    assert query["account"] == ["alice"]
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:pw-Kq9").decode()
    assert retried.headers["Authorization"] == "Bearer FRESH-TOKEN"
    assert [r["note"] for r in t.trace_records] == ["challenge", "token", ""]


def test_a_token_realm_redirected_to_another_origin_gets_no_credentials() -> None:
    moved = "https://elsewhere.example/token?service=reg"
    t, fake = _registry_with_token_server({"https://auth.example/token": Reply(302, {"Location": moved}),
                                           moved: Reply(200, body={"token": "FRESH-TOKEN"})})
    t.request("GET", MANIFEST)
    hop = next(r for r in fake.sent if (r.url or "").startswith("https://elsewhere.example/"))
    assert "Authorization" not in hop.headers
    asked = next(r for r in fake.sent if (r.url or "").startswith("https://auth.example/"))
    assert asked.headers["Authorization"].startswith("Basic ")


# ------------------------------------------------------------------------------------- retries
def test_a_429_with_retry_after_is_retried_then_succeeds() -> None:
    t, fake = _transport(replies=[Reply(429, {"Retry-After": "0"}), Reply(200, body=b"done")])
    assert t.request("GET", MANIFEST).content == b"done"
    assert len(fake.sent) == 2
    assert [(r["status"], r["note"]) for r in t.trace_records] == [(429, "retry"), (200, "")]


def test_a_dropped_connection_is_retried_for_a_get() -> None:
    t, fake = _transport(replies=[requests.ConnectionError("reset"), Reply(200, body=b"ok")])
    assert t.request("GET", MANIFEST).content == b"ok"
    assert len(fake.sent) == 2 and t.trace_records[0]["status"] == "error"


def test_a_post_with_a_streamed_body_is_not_retried() -> None:
    t, fake = _transport(replies=[Reply(503), Reply(202)])
    with pytest.raises(RegistryError) as err:
        t.request("POST", "/v2/team/app/blobs/uploads/", data=iter([b"chunk"]), ok=(202,))
    assert err.value.status == 503 and len(fake.sent) == 1


def test_5xx_until_the_tries_run_out_raises_with_status_code_and_message() -> None:
    down = Reply(503, body={"errors": [{"code": "UNAVAILABLE", "message": "down for maintenance"}]})
    t, fake = _transport(replies=[down] * FAST.attempts)
    with pytest.raises(RegistryError) as err:
        t.request("GET", MANIFEST, what="manifest")
    assert (err.value.status, err.value.code) == (503, "UNAVAILABLE")
    assert "down for maintenance" in err.value.message and err.value.message.startswith("manifest")
    assert len(fake.sent) == FAST.attempts


def test_a_404_is_not_retried() -> None:
    t, fake = _transport(replies=[Reply(404, body={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "x"}]})])
    with pytest.raises(NotFound):
        t.request("GET", MANIFEST)
    assert len(fake.sent) == 1


def test_attempts_stop_at_the_policy_s_count_and_honour_retry_after() -> None:
    tries = Attempts(RetryPolicy(attempts=2, backoff=0.0, budget=1.0))
    assert tries.left() and tries.again(0.0)
    assert not tries.left() and not tries.again(0.0)
    assert not Attempts(RetryPolicy(attempts=5, budget=0.5)).again(retry_after=2.0)  # over the sleep budget


# ------------------------------------------------------------------------------------- redirects
def test_a_redirect_loop_is_bounded() -> None:
    t, fake = _transport(replies=lambda req: Reply(302, {"Location": req.url or "/"}))
    with pytest.raises(RegistryError, match="too many redirects"):
        t.request("GET", MANIFEST)
    assert len(fake.sent) == 11  # the first request and ten hops


def test_a_303_turns_a_put_into_a_get_without_its_body() -> None:
    t, fake = _transport(replies=[Reply(303, {"Location": "/v2/done"}), Reply(200)])
    t.request("PUT", MANIFEST, data=b"{}", retry_body=True)
    assert [(r.method, r.body) for r in fake.sent] == [("PUT", b"{}"), ("GET", None)]

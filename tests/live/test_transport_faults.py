"""The transport under faults, with the real registry behind a fault-injecting proxy."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from servers import FaultProxy, TinyImage, TokenServer, push_tiny_image
from servers.faultproxy import S3_ONE_AUTH_MESSAGE

from regexplore.errors import RegistryError, TooManyRequests, Unauthorized
from regexplore.http.auth import Credentials, RegistryAuth
from regexplore.http.transport import RetryPolicy, Transport
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.live
PASSWORD = "pw-Faults-7c1e!secret"
FAST = RetryPolicy(attempts=4, backoff=0.01, max_sleep=0.05, budget=5.0)
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
HUB_RATELIMIT = {  # dockerhub_head_manifest_ratelimit_2025_hub-feedback-2464.txt
    "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600",
    "docker-ratelimit-source": "2001:41d0:801:2000::",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TokenServer, LocalRegistry, TinyImage]]:
    folder = tmp_path_factory.mktemp("storage")
    with LocalRegistry(storage=folder) as plain:
        img = push_tiny_image(plain.url, "demo/tiny")
    users = {"alice": (PASSWORD, {"repository:demo/*": "pull,push"})}
    with TokenServer(users=users) as ts, LocalRegistry(storage=folder, token=ts.registry_config()) as reg:
        yield ts, reg, img


@pytest.fixture
def proxy(env: tuple[TokenServer, LocalRegistry, TinyImage]) -> Iterator[FaultProxy]:
    with FaultProxy(env[1].url) as p:
        yield p


def _transport(proxy: FaultProxy, creds: Credentials | None = None, **kw: object) -> Transport:
    auth = RegistryAuth(proxy.host, creds or Credentials("alice", PASSWORD))
    return Transport(proxy.url, auth=auth, retry=kw.pop("retry", FAST), **kw)  # type: ignore[arg-type]


def _get_manifest(t: Transport) -> requests.Response:
    return t.request("GET", "/v2/demo/tiny/manifests/v1", headers={"Accept": MANIFEST_V2})


def test_429_with_retry_after_is_retried(proxy: FaultProxy, env: tuple) -> None:
    proxy.fail(429, times=1, path="/manifests/", headers={"Retry-After": "1"})
    t = _transport(proxy)
    started = time.monotonic()
    assert _get_manifest(t).content == env[2].manifest
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert [r["status"] for r in proxy.requests if "/manifests/" in r["path"]] == [429, 401, 200]


def test_429_for_good_carries_retry_after(proxy: FaultProxy) -> None:
    proxy.fail(429, times=None, path="/manifests/", headers={"Retry-After": "0"})
    t = _transport(proxy, retry=RetryPolicy(attempts=2, backoff=0.01, budget=1.0))
    with pytest.raises(TooManyRequests) as info:
        _get_manifest(t)
    assert info.value.retry_after == 0 and "pull rate limit" in str(info.value)


def test_503s_then_success(proxy: FaultProxy, env: tuple) -> None:
    proxy.fail(503, times=2, path="/manifests/")
    assert _get_manifest(_transport(proxy)).content == env[2].manifest
    assert proxy.hits("/manifests/") == 2 + 2  # challenge, 503, 503, 200


def test_500s_are_retried_then_raised(proxy: FaultProxy) -> None:
    proxy.fail(500, times=None, path="/tags/list")
    t = _transport(proxy)
    with pytest.raises(RegistryError) as info:
        t.request("GET", "/v2/demo/tiny/tags/list")
    assert info.value.status == 500
    assert proxy.hits("/tags/list") == FAST.attempts


@pytest.mark.parametrize("after", [None, 7])
def test_dropped_connection_is_retried_for_get(proxy: FaultProxy, env: tuple, after: int | None) -> None:
    t = _transport(proxy)
    _get_manifest(t)  # token in hand
    proxy.drop(after_bytes=after, times=1, path="/manifests/")
    assert _get_manifest(t).content == env[2].manifest
    assert [r["fault"] for r in proxy.requests if "/manifests/" in r["path"]][-2:] == ["drop", None]


def test_post_with_a_body_is_not_replayed(proxy: FaultProxy, env: tuple) -> None:
    t = _transport(proxy)
    t.request("GET", "/v2/demo/tiny/tags/list")
    t.request("POST", "/v2/demo/tiny/blobs/uploads/", ok=(202,))  # a push token in hand
    proxy.drop(after_bytes=None, times=1, method="POST")
    n = proxy.hits("/blobs/uploads/", "POST")
    with pytest.raises(RegistryError, match="cannot reach"):
        t.request("POST", "/v2/demo/tiny/blobs/uploads/", params={"digest": env[2].config_digest},
                  data=env[2].config, headers={"Content-Type": "application/octet-stream"}, ok=(201,))
    assert proxy.hits("/blobs/uploads/", "POST") == n + 1  # sent once, never again


def test_trace_records_params_in_the_url_redacting_secret_ones(proxy: FaultProxy) -> None:
    """``params=`` (a mount's ``?mount=&from=``) are shown in the trace with the URL; a
    credential-looking value is redacted there, as in any URL."""
    t = _transport(proxy)
    r = t.request("GET", "/v2/demo/tiny/tags/list", params={"n": 5, "last": "a/b", "signature": "sg-9Q"})
    assert r.json()["tags"] == ["v1"] and r.url.endswith("?n=5&last=a%2Fb&signature=sg-9Q")
    sent = [x for x in t.trace_records if "/tags/list" in x["url"]]
    assert [x["status"] for x in sent] == [401, 200]  # the challenged first try, then with a token
    assert all(x["url"].endswith("/v2/demo/tiny/tags/list?n=5&last=a/b&signature=REDACTED") for x in sent)
    assert "sg-9Q" not in repr(t.trace_records)


def test_blob_redirect_to_storage_that_rejects_authorization(proxy: FaultProxy, env: tuple) -> None:
    store = proxy.redirect_blobs()
    t = _transport(proxy)
    r = t.request("GET", f"/v2/demo/tiny/blobs/{env[2].layer_digest}")
    assert r.content == env[2].layer
    assert [x["authorization"] for x in store.requests] == [False]
    assert any(x["authorization"] and "/blobs/" in x["path"] for x in proxy.requests)  # the registry got it
    # and the store really is that strict: the same URL with Authorization is S3's 400
    location = [x for x in t.trace_records if x["note"] == "redirect"][-1]
    assert "REDACTED" in location["url"] or "X-Amz-Signature" not in location["url"]
    bad = requests.get(store.put(b"x"), headers={"Authorization": "Bearer abc"})
    assert bad.status_code == 400 and S3_ONE_AUTH_MESSAGE in bad.text


def test_token_refused_mid_session_is_renewed(proxy: FaultProxy, env: tuple) -> None:
    ts = env[0]
    t = _transport(proxy)
    _get_manifest(t)
    before = ts.count()
    proxy.expire_token(times=1, path="/manifests/")
    assert _get_manifest(t).content == env[2].manifest
    assert ts.count() == before + 1
    refused = [r for r in proxy.requests if r["fault"] == "expire_token"]
    assert len(refused) == 1 and refused[0]["status"] == 401


def test_docker_hub_ratelimit_headers(proxy: FaultProxy) -> None:
    proxy.add_headers(HUB_RATELIMIT, path="/manifests/")
    t = _transport(proxy)
    _get_manifest(t)
    rl = t.rate_limit
    assert (rl.limit, rl.remaining, rl.window_s, rl.source) == (100, 0, 21600, "2001:41d0:801:2000::")


def test_proxy_faults_for_downloads_work(proxy: FaultProxy, env: tuple) -> None:
    """The flip-byte and ignore-Range faults the download code is tested with do what they say."""
    t = _transport(proxy)
    path = f"/v2/demo/tiny/blobs/{env[2].layer_digest}"
    _get_manifest(t)  # the token first, so the faults below hit blob answers
    proxy.flip_byte(offset=3, path="/blobs/")
    flipped = t.request("GET", path).content
    assert len(flipped) == len(env[2].layer) and flipped != env[2].layer
    assert [i for i, (a, b) in enumerate(zip(flipped, env[2].layer)) if a != b] == [3]
    proxy.ignore_range(path="/blobs/")
    whole = t.request("GET", path, headers={"Range": "bytes=10-"}, ok=(200, 206))
    assert whole.status_code == 200 and whole.content == env[2].layer
    part = t.request("GET", path, headers={"Range": "bytes=10-"}, ok=(206,))
    assert part.content == env[2].layer[10:]


def test_secrets_never_leak(proxy: FaultProxy, env: tuple, caplog: pytest.LogCaptureFixture,
                            tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    store = proxy.redirect_blobs()
    auth = RegistryAuth(proxy.host, Credentials("alice", PASSWORD))
    t = Transport(proxy.url, auth=auth, retry=FAST)
    proxy.fail(503, times=1, path="/manifests/")
    _get_manifest(t)
    t.request("GET", f"/v2/demo/tiny/blobs/{env[2].layer_digest}")
    errors = []
    bad = Transport(proxy.url, auth=RegistryAuth(proxy.host, Credentials("alice", PASSWORD + "-wrong")), retry=FAST)
    try:
        _get_manifest(bad)
    except Unauthorized as exc:
        errors.append(exc)
    fixed = Transport(proxy.url, auth=RegistryAuth(proxy.host, Credentials(None, "fixed-registry-token-9f2",
                                                                             kind="token")), retry=FAST)
    try:
        _get_manifest(fixed)
    except Unauthorized as exc:
        errors.append(exc)
    assert len(errors) == 2
    tokens = [tok.value for tok in auth._tokens.values()]
    assert tokens
    secrets = [PASSWORD, PASSWORD + "-wrong", "fixed-registry-token-9f2", store.signature, *tokens]
    haystack = "\n".join([
        caplog.text, *(r.getMessage() for r in caplog.records), repr(t.trace_records), repr(bad.trace_records),
        repr(fixed.trace_records), repr(auth), str(auth.whoami()), repr(t), repr(auth.credentials),
        *(str(e) + repr(e) + repr(e.__dict__) for e in errors),
    ])
    for secret in secrets:
        assert secret not in haystack
    assert "/blobs/" in haystack  # the haystack is the real thing, not empty

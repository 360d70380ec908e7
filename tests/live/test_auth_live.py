"""Auth against the REAL registry binary: htpasswd Basic, token auth trusting our token server,
TLS with a generated CA, mutual TLS, proxies from the environment."""

from __future__ import annotations

import json
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FaultProxy, TinyImage, TokenServer, make_client_ca, non_loopback_ip, push_tiny_image

from regexplore.errors import Denied, InsecureCredentials, RegistryError, Unauthorized
from regexplore.http.auth import Credentials, RegistryAuth, resolve_credentials
from regexplore.http.transport import RetryPolicy, Transport
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.live
PASSWORD = "pw-Zq81!live-secret"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_sleep=0.05, budget=2.0)
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyImage]:
    """A registry storage folder holding demo/tiny:v1 and public/tiny:v1, shared by every registry here."""
    folder = tmp_path_factory.mktemp("storage")
    with LocalRegistry(storage=folder) as reg:
        img = push_tiny_image(reg.url, "demo/tiny")
        push_tiny_image(reg.url, "public/tiny")
        push_tiny_image(reg.url, "other/tiny")
    return folder, img


@pytest.fixture(scope="module")
def basic_registry(storage: tuple[Path, TinyImage]) -> Iterator[LocalRegistry]:
    with LocalRegistry(storage=storage[0], auth=("alice", PASSWORD)) as reg:
        yield reg


def _client(url: str, creds: Credentials | None, **kw: object) -> tuple[Transport, RegistryAuth]:
    host = url.split("://", 1)[1]
    auth = RegistryAuth(host, creds, oauth=bool(kw.pop("oauth", False)))
    return Transport(url, auth=auth, retry=FAST, **kw), auth  # type: ignore[arg-type]


def _manifest(t: Transport, repo: str = "demo/tiny", ref: str = "v1") -> bytes:
    return t.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_V2}).content


# ----------------------------------------------------------------- htpasswd (Basic)
def test_basic_auth_on_every_request(basic_registry: LocalRegistry, storage: tuple[Path, TinyImage]) -> None:
    t, auth = _client(basic_registry.url, resolve_credentials(basic_registry.host, ("alice", PASSWORD)))
    assert _manifest(t) == storage[1].manifest
    assert t.request("GET", "/v2/demo/tiny/tags/list").json()["tags"] == ["v1"]
    challenges = [r for r in t.trace_records if r["note"] == "challenge"]
    assert len(challenges) == 1  # asked once, then Basic went with every request
    assert auth.scheme == "basic" and auth.whoami()["username"] == "alice"


def test_basic_first_requests_at_once_each_get_their_retry(basic_registry: LocalRegistry,
                                                          storage: tuple[Path, TinyImage]) -> None:
    """Requests that a fresh client sends together all meet the 401 before Basic is known: each
    retries with the credentials (a 401 means "refused" only for a request that carried them)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    t, auth = _client(basic_registry.url, resolve_credentials(basic_registry.host, ("alice", PASSWORD)))
    start = threading.Barrier(6)

    def one(_: int) -> bytes:
        start.wait()
        return _manifest(t)

    with ThreadPoolExecutor(6) as ex:
        assert list(ex.map(one, range(6))) == [storage[1].manifest] * 6
    assert auth.scheme == "basic"


def test_push_with_a_fresh_client_to_a_basic_registry(tmp_path: Path) -> None:
    """A push's blob HEADs go out in parallel as the client's first requests (a registry of its own:
    the module's storage stays as the catalog tests expect it)."""
    import regexplore as rx

    for name, data in (("a.txt", b"alpha\n"), ("b.bin", bytes(range(256)) * 40)):
        (tmp_path / name).write_bytes(data)
    with LocalRegistry(auth=("alice", PASSWORD)) as basic:
        reg = rx.Registry(basic.url, auth=("alice", PASSWORD))
        digest = reg.push([tmp_path / "a.txt", tmp_path / "b.bin"], "pushed/basic:v1", parallel=4)
        assert reg.manifest("pushed/basic:v1").digest == digest
        assert sorted(reg.files("pushed/basic:v1")["path"]) == ["a.txt", "b.bin"]
        reg.close()


def test_basic_wrong_password_is_unauthorized_with_registry_message(basic_registry: LocalRegistry) -> None:
    t, _ = _client(basic_registry.url, Credentials("alice", "wrong-Kq9"))
    with pytest.raises(Unauthorized) as info:
        _manifest(t)
    assert info.value.status == 401 and "authentication required" in str(info.value)
    assert "wrong-Kq9" not in str(info.value) + repr(info.value)
    anon, _ = _client(basic_registry.url, None)
    with pytest.raises(Unauthorized):
        _manifest(anon)


def test_basic_over_plain_http_to_a_remote_host_is_refused(basic_registry: LocalRegistry) -> None:
    ip = non_loopback_ip()
    assert ip, "this machine needs a non-loopback IPv4 address for this test"
    with FaultProxy(basic_registry.url, bind=ip) as proxy:
        t, _ = _client(proxy.url, Credentials("alice", PASSWORD))
        with pytest.raises(InsecureCredentials) as info:
            _manifest(t)
        assert PASSWORD not in str(info.value)
        assert proxy.requests and not any(r["authorization"] for r in proxy.requests)


# ----------------------------------------------------------------- token auth
def _token_server(**kw: object) -> TokenServer:
    users = {"alice": (PASSWORD, {"repository:demo/*": "pull,push", "registry:catalog": "*"}),
             "bob": ("bob-pw", {"repository:public/*": "pull"})}
    return TokenServer(users=users, anonymous={"repository:public/*": "pull"}, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def token_env(storage: tuple[Path, TinyImage]) -> Iterator[tuple[TokenServer, LocalRegistry]]:
    with _token_server() as ts, LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        yield ts, reg


def test_token_auth_fetches_once_per_scope(token_env: tuple[TokenServer, LocalRegistry],
                                           storage: tuple[Path, TinyImage]) -> None:
    ts, reg = token_env
    before = ts.count()
    t, auth = _client(reg.url, Credentials("alice", PASSWORD))
    assert _manifest(t) == storage[1].manifest
    _manifest(t)
    t.request("GET", f"/v2/demo/tiny/blobs/{storage[1].layer_digest}")
    assert ts.count() - before == 1  # one token for repository:demo/tiny:pull, reused
    last = ts.requests[-1]
    assert last["user"] == "alice" and last["scopes"] == ["repository:demo/tiny:pull"]
    assert t.request("GET", "/v2/_catalog").json()["repositories"] == ["demo/tiny", "other/tiny", "public/tiny"]
    assert ts.count() - before == 2
    who = auth.whoami()
    assert who["subject"] == "alice" and who["scheme"] == "bearer" and who["realm"] == ts.realm
    assert "registry:catalog:*" in who["scopes"]


def test_anonymous_token_for_public_repo(token_env: tuple[TokenServer, LocalRegistry]) -> None:
    ts, reg = token_env
    t, auth = _client(reg.url, None)
    assert json.loads(_manifest(t, "public/tiny"))["schemaVersion"] == 2
    assert ts.requests[-1]["user"] is None and auth.whoami()["subject"] == ""


def test_insufficient_scope_is_denied(token_env: tuple[TokenServer, LocalRegistry]) -> None:
    ts, reg = token_env
    t, _ = _client(reg.url, Credentials("bob", "bob-pw"))
    with pytest.raises(Denied) as info:
        _manifest(t, "demo/tiny")
    assert info.value.status == 401
    assert ts.requests[-1]["access"] == [{"type": "repository", "name": "demo/tiny", "actions": []}]
    anon, _ = _client(reg.url, None)
    with pytest.raises(Denied):
        anon.request("PUT", "/v2/public/tiny/manifests/x", data=b"{}", headers={"Content-Type": MANIFEST_V2})


def test_wrong_password_at_token_server_is_unauthorized(token_env: tuple[TokenServer, LocalRegistry]) -> None:
    _, reg = token_env
    t, _ = _client(reg.url, Credentials("alice", "not-it-Vx2"))
    with pytest.raises(Unauthorized) as info:
        _manifest(t)
    assert "authentication required" in str(info.value)
    assert "not-it-Vx2" not in str(info.value) + repr(info.value)


def test_push_scope_token(token_env: tuple[TokenServer, LocalRegistry], storage: tuple[Path, TinyImage]) -> None:
    ts, reg = token_env
    t, _ = _client(reg.url, Credentials("alice", PASSWORD))
    before = ts.count()
    r = t.request("PUT", "/v2/demo/tiny/manifests/v9", data=storage[1].manifest,
                  headers={"Content-Type": MANIFEST_V2}, ok=(201,))
    assert r.headers["Docker-Content-Digest"] == storage[1].digest
    assert ts.requests[-1]["scopes"][-1] == "repository:demo/tiny:pull,push"
    _manifest(t, "demo/tiny", "v9")  # a pull,push token also covers the pull: no new token
    assert ts.count() == before + 1


@pytest.mark.parametrize("field", ["access_token", "both"])
def test_token_field_variants_and_missing_expires_in(storage: tuple[Path, TinyImage], field: str) -> None:
    with _token_server(token_field=field, expires_in=None) as ts, \
            LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        t, auth = _client(reg.url, Credentials("alice", PASSWORD))
        assert _manifest(t) == storage[1].manifest
        assert 50 <= auth.whoami()["expires_in"] <= 60  # the spec's 60 s default, renewed early


def test_client_side_expiry_renews_without_a_401(storage: tuple[Path, TinyImage]) -> None:
    with _token_server(expires_in=1) as ts, LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        t, _ = _client(reg.url, Credentials("alice", PASSWORD))
        _manifest(t)
        time.sleep(1.1)
        _manifest(t)
        assert ts.count() == 2
        # only the very first request was refused: the expired token was renewed ahead of time
        assert sum(r["note"] == "challenge" for r in t.trace_records) == 1


def test_token_expired_at_the_registry_mid_session_is_renewed(storage: tuple[Path, TinyImage]) -> None:
    # the JWT's exp is 58 s in the past: with distribution's 60 s leeway the registry accepts it
    # for ~2 s, while the client was told expires_in=300
    with _token_server(expires_in=300, jwt_lifetime=-58) as ts, \
            LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        t, _ = _client(reg.url, Credentials("alice", PASSWORD))
        _manifest(t)
        assert ts.count() == 1
        time.sleep(2.2)
        ts.jwt_lifetime = 300
        assert json.loads(_manifest(t))["schemaVersion"] == 2
        assert ts.count() == 2
        assert [r["status"] for r in t.trace_records if r["note"] == "challenge"] == [401, 401]


def test_oauth_password_grant_then_refresh_token(storage: tuple[Path, TinyImage]) -> None:
    with _token_server() as ts, LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        t, auth = _client(reg.url, Credentials("alice", PASSWORD), oauth=True)
        _manifest(t)
        t.request("GET", "/v2/demo/tiny/tags/list")  # same scope: cached
        t.request("GET", "/v2/_catalog")  # new scope: the refresh token from the first answer
        assert [(r["method"], r.get("grant")) for r in ts.requests] == [("POST", "password"), ("POST", "refresh_token")]
        assert "password" in ts.requests[0]["form"] and "access_type" in ts.requests[0]["form"]
        assert auth._refresh_token and auth._refresh_token not in repr(auth.whoami())


def test_oauth_404_falls_back_to_get(storage: tuple[Path, TinyImage]) -> None:
    with _token_server(oauth=False) as ts, LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        t, _ = _client(reg.url, Credentials("alice", PASSWORD), oauth=True)
        _manifest(t)
        assert [(r["method"], r["status"]) for r in ts.requests] == [("POST", 404), ("GET", 200)]


def test_registry_oauth_keyword_uses_the_password_grant(storage: tuple[Path, TinyImage]) -> None:
    import regexplore as rx

    with _token_server() as ts, LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        with rx.Registry(reg.url, auth=("alice", PASSWORD), oauth=True) as r:
            with_post = list(r.tags("demo/tiny")["tag"])
        with rx.Registry(reg.url, auth=("alice", PASSWORD)) as r:  # the default, as in Docker: GET + Basic
            assert list(r.tags("demo/tiny")["tag"]) == with_post and storage[1].tag in with_post
        assert [(q["method"], q.get("grant")) for q in ts.requests] == [("POST", "password"), ("GET", None)]


def test_identity_token_uses_refresh_grant(storage: tuple[Path, TinyImage]) -> None:
    import requests

    with _token_server() as ts, LocalRegistry(storage=storage[0], token=ts.registry_config()) as reg:
        # what `docker login` does to get an identity token: offline_token=true
        refresh = requests.get(ts.realm, params={"service": ts.service, "offline_token": "true"},
                               auth=("alice", PASSWORD)).json()["refresh_token"]
        t, _ = _client(reg.url, Credentials(None, refresh, kind="identitytoken", source="test"))
        _manifest(t)
        assert ts.requests[-1]["grant"] == "refresh_token" and ts.requests[-1]["user"] == "alice"


# ----------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def tls_registry(storage: tuple[Path, TinyImage]) -> Iterator[LocalRegistry]:
    with LocalRegistry(storage=storage[0], tls=True) as reg:
        yield reg


def test_tls_with_ca_bundle(tls_registry: LocalRegistry, storage: tuple[Path, TinyImage]) -> None:
    assert tls_registry.url.startswith("https://")
    t, _ = _client(tls_registry.url, None, verify=tls_registry.ca_file)
    assert _manifest(t) == storage[1].manifest


def test_tls_untrusted_certificate_fails_fast_with_a_clear_error(tls_registry: LocalRegistry) -> None:
    t, _ = _client(tls_registry.url, None)  # system CAs only
    started = time.monotonic()
    with pytest.raises(RegistryError, match="TLS handshake"):
        _manifest(t)
    assert time.monotonic() - started < 2 and len(t.trace_records) == 1  # not retried


def test_tls_private_ca_from_the_environment(tls_registry: LocalRegistry, storage: tuple[Path, TinyImage],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook trusts a private CA without code: OpenSSL's SSL_CERT_FILE (or requests' variables)."""
    from regexplore import Registry

    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    with Registry(tls_registry.url, auth=False) as reg:
        assert reg.manifest("demo/tiny:v1").raw == storage[1].manifest
    monkeypatch.delenv("SSL_CERT_FILE")
    with Registry(tls_registry.url, auth=False) as reg, pytest.raises(RegistryError, match="SSL_CERT_FILE"):
        reg.manifest("demo/tiny:v1")


def test_a_tls_registry_named_without_https_says_so(tls_registry: LocalRegistry) -> None:
    from regexplore import Registry

    with Registry(tls_registry.host, auth=False) as reg, pytest.raises(RegistryError, match="https://host:port"):
        reg.tags("demo/tiny")


def test_tls_insecure_warns_and_works(tls_registry: LocalRegistry) -> None:
    from regexplore import Registry

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = Registry(tls_registry.url, insecure=True, auth=False)
        assert reg.ping()["status"] == 200
    assert any("TLS verification is off" in str(w.message) for w in caught)


class _MutualTLSRegistry(LocalRegistry):
    """The sandbox's readiness probe has no client certificate; the registry answering it with a
    TLS alert (instead of refusing the connection) proves it is up."""

    def _launch(self) -> bool:
        try:
            return super()._launch()
        except ssl.SSLError as exc:
            assert "CERTIFICATE" in str(exc).upper()
            return True


def test_mutual_tls(tmp_path: Path, storage: tuple[Path, TinyImage]) -> None:
    client = make_client_ca(tmp_path)
    extra = {"http": {"tls": {"clientcas": [client["ca"]]}}}
    with _MutualTLSRegistry(storage=storage[0], tls=True, extra_config=extra) as reg:
        good, _ = _client(reg.url, None, verify=reg.ca_file, cert=(client["cert"], client["key"]))
        assert _manifest(good) == storage[1].manifest
        without, _ = _client(reg.url, None, verify=reg.ca_file)
        with pytest.raises(RegistryError):
            _manifest(without)
        wrong, _ = _client(reg.url, None, verify=reg.ca_file, cert=(client["other_cert"], client["other_key"]))
        with pytest.raises(RegistryError):
            _manifest(wrong)


# ----------------------------------------------------------------- proxies from the environment
def test_proxy_from_env_and_no_proxy(basic_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy("http://unused.invalid") as proxy:
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        t, _ = _client(basic_registry.url, Credentials("alice", PASSWORD))
        _manifest(t)
        via = [r for r in proxy.requests if r["proxied"]]
        assert via and all(r["path"] == "/v2/demo/tiny/manifests/v1" for r in via)
        n = len(proxy.requests)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        _manifest(t)
        assert len(proxy.requests) == n  # went direct

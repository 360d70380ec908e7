"""Auth and transport against servers written apart from tests/servers: a JWT token server the real
registry trusts (distribution's token spec: RS256/ES256, ``x5c`` chain or libtrust ``kid``), and
small stubs (registry, token endpoint, object store) for the faults found while probing:

- an OAuth2 error answer (RFC 6749 §5.2 ``error`` + ``error_description``) must reach the exception;
- a token endpoint that answers 503 / 429 is retried like the registry, within the retry policy;
- an object store's XML error (an expired signed URL, protocol.md §5) gives its ``Code``/``Message``;
- the signed storage URL of a redirect is not in a traceback's locals.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from digests import sha256_digest
from servers import serve, stop

import regexplore as rx
from regexplore.errors import Denied, RegistryError, TooManyRequests, Unauthorized
from regexplore.http.transport import RetryPolicy
from regexplore.sandbox import LocalRegistry, RegistryBinaryMissing

PASSWORD = "pw-Indep3ndent-S3cret"
TOKEN = "stub-token-" + uuid.uuid4().hex
SIGNATURE = "deadbeef" + uuid.uuid4().hex
BLOB = b"independent blob bytes"
DIGEST = sha256_digest(BLOB)


# ----------------------------------------------------------------------------- tiny HTTP stubs
def _reply(h: BaseHTTPRequestHandler, status: int, body: Any = b"", headers: Any = (),
           ctype: str | None = None) -> None:
    if isinstance(body, (dict, list)):
        body, ctype = json.dumps(body).encode(), "application/json"
    h.send_response(status)
    if ctype:
        h.send_header("Content-Type", ctype)
    for k, v in headers:
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


class Stub:
    """A loopback HTTP server calling ``fn(handler)``; ``hits`` counts requests by path."""

    def __init__(self, fn: Callable[[BaseHTTPRequestHandler], None], host: str = "127.0.0.1") -> None:
        owner = self
        self.hits: dict[str, int] = {}
        self.auth_seen: list[str | None] = []

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                owner.hits[path] = owner.hits.get(path, 0) + 1
                owner.auth_seen.append(self.headers.get("Authorization"))
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fn(self)

            do_HEAD = do_POST = do_GET

        self.srv = serve(H)
        self.url = f"http://{host}:{self.srv.server_address[1]}"

    def close(self) -> None:
        stop(self.srv)


@pytest.fixture
def stubs() -> Iterator[dict[str, Any]]:
    """``token`` (behaviour: ``state["token"]``), ``storage`` (on ``localhost``: another origin) and
    ``registry`` (Bearer ``TOKEN`` or a challenge; tags of demo/app; blob GET → 307 to storage)."""
    state: dict[str, Any] = {"token": lambda h: _reply(h, 200, {"token": TOKEN, "expires_in": 300}),
                             "expired": True}
    token = Stub(lambda h: state["token"](h))

    def storage_fn(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization"):
            return _reply(h, 400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
                          b"allowed</Message></Error>", ctype="application/xml")
        if state["expired"]:
            return _reply(h, 403, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                          b"<Message>Request has expired</Message><Expires>2020-01-01T00:00:00Z</Expires>"
                          b"<RequestId>4442587FB7D0A2F9</RequestId></Error>", ctype="application/xml")
        _reply(h, 200, BLOB, ctype="application/octet-stream")

    storage = Stub(storage_fn, host="localhost")

    def registry_fn(h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            scope = "registry:catalog:*" if path.startswith("/v2/_catalog") else "repository:demo/app:pull"
            www = f'Bearer realm="{token.url}/token",service="stub",scope="{scope}"'
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            return _reply(h, 401, body, headers=[("WWW-Authenticate", www)])
        if path == "/v2/demo/app/tags/list":
            return _reply(h, 200, {"name": "demo/app", "tags": ["v1"]})
        if path.startswith("/v2/demo/app/blobs/"):
            loc = (f"{storage.url}/bucket/data?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=300"
                   f"&X-Amz-Signature={SIGNATURE}")
            return _reply(h, 307, headers=[("Location", loc)])
        _reply(h, 404, {"errors": [{"code": "NAME_UNKNOWN", "message": "no such repository"}]})

    registry = Stub(registry_fn)
    yield {"state": state, "token": token, "storage": storage, "registry": registry}
    for s in (token, storage, registry):
        s.close()


def _reg(stubs: dict[str, Any], **kw: Any) -> rx.Registry:
    reg = rx.Registry(stubs["registry"].url, auth=("alice", PASSWORD), timeout=5, **kw)
    reg.transport.retry = RetryPolicy(attempts=3, backoff=0.01, max_sleep=0.05, budget=5)
    return reg


def _everything_shown(exc: BaseException) -> str:
    te = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc)) + "".join(te.format())


# ----------------------------------------------------------------------------- token endpoint errors
def test_oauth_error_description_reaches_the_exception(stubs: dict[str, Any]) -> None:
    stubs["state"]["token"] = lambda h: _reply(
        h, 401, {"error": "invalid_grant", "error_description": "stub: the refresh token has expired"})
    reg = _reg(stubs, oauth=True)
    with pytest.raises(Unauthorized) as info:
        reg.tags("demo/app")
    err = info.value
    assert "the refresh token has expired" in str(err)
    assert err.code == "invalid_grant" and err.status == 401
    assert PASSWORD not in _everything_shown(err)


def test_token_endpoint_503_once_is_retried(stubs: dict[str, Any]) -> None:
    calls = []

    def flaky(h: BaseHTTPRequestHandler) -> None:
        calls.append(h.command)
        if len(calls) == 1:
            return _reply(h, 503, b"busy", ctype="text/plain")
        _reply(h, 200, {"access_token": TOKEN})

    stubs["state"]["token"] = flaky
    reg = _reg(stubs)
    assert reg.tags("demo/app").tag.tolist() == ["v1"]
    assert calls == ["GET", "GET"]
    notes = [r["note"] for r in reg.transport.trace_records if r["note"].startswith("token")]
    assert notes == ["token retry", "token"]


def test_token_endpoint_429_for_good_is_bounded_and_reported(stubs: dict[str, Any]) -> None:
    stubs["state"]["token"] = lambda h: _reply(h, 429, {"details": "stub: token rate limit"},
                                               headers=[("Retry-After", "0")])
    reg = _reg(stubs)
    started = time.monotonic()
    with pytest.raises(TooManyRequests, match="stub: token rate limit"):
        reg.tags("demo/app")
    assert stubs["token"].hits["/token"] == 3  # the policy's attempts, no more
    assert time.monotonic() - started < 5


def test_token_post_is_not_replayed_on_503(stubs: dict[str, Any]) -> None:
    stubs["state"]["token"] = lambda h: _reply(h, 503, b"busy", ctype="text/plain")
    reg = _reg(stubs, oauth=True)
    with pytest.raises(RegistryError) as info:
        reg.tags("demo/app")
    assert info.value.status == 503 and stubs["token"].hits["/token"] == 1


# ----------------------------------------------------------------------------- signed storage URLs
def test_expired_signed_url_gives_the_stores_code_and_message(stubs: dict[str, Any]) -> None:
    reg = _reg(stubs)
    with pytest.raises(Denied) as info:
        reg.transport.request("GET", f"/v2/demo/app/blobs/{DIGEST}", what="blob")
    err = info.value
    assert err.status == 403 and err.code == "AccessDenied"
    assert "Request has expired" in str(err)
    assert err.url and err.url.startswith(stubs["storage"].url)
    shown = _everything_shown(err)  # locals included: the signature stays out
    assert SIGNATURE not in shown and TOKEN not in shown and PASSWORD not in shown
    assert not any(stubs["storage"].auth_seen)


def test_redirect_to_storage_still_downloads(stubs: dict[str, Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEXPLORE_CACHE", "off")
    stubs["state"]["expired"] = False
    reg = _reg(stubs)
    resp = reg.transport.request("GET", f"/v2/demo/app/blobs/{DIGEST}")
    assert resp.content == BLOB
    assert stubs["storage"].auth_seen == [None]
    assert SIGNATURE not in repr(list(reg.transport.trace_records))


# ------------------------------------------------------------------- the real registry, our own JWTs
def _signer(tmp: Path) -> tuple[Path, Callable[[dict, str, str], str]]:
    import jwt  # a test dependency (pyproject "test" extra): missing is a failure, not a skip
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def cert(key: Any, signer: Any, cn: str, issuer: str, ca: bool) -> Any:
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = cert(ca_key, ca_key, "indep CA", "indep CA", True)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = cert(leaf_key, ca_key, "indep signer", "indep CA", False)
    kid_key = ec.generate_private_key(ec.SECP256R1())
    kid_cert = cert(kid_key, kid_key, "indep kid", "indep kid", False)
    bundle = tmp / "bundle.pem"
    bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ca, kid_cert)))
    der = kid_key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()  # libtrust key ID
    kid = ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))

    def sign(claims: dict, alg: str, mode: str) -> str:
        if mode == "x5c":
            x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in (leaf, ca)]
            return jwt.encode(claims, leaf_key, algorithm="RS256", headers={"x5c": x5c})
        return jwt.encode(claims, kid_key, algorithm="ES256", headers={"kid": kid})

    return bundle, sign


@pytest.mark.parametrize("alg,mode,field", [("RS256", "x5c", "token"), ("ES256", "kid", "access_token")])
def test_real_registry_with_an_independent_token_server(tmp_path: Path, alg: str, mode: str,
                                                        field: str) -> None:
    bundle, sign = _signer(tmp_path)
    asked: list[list[str]] = []

    def token(h: BaseHTTPRequestHandler) -> None:
        q = parse_qs(urlsplit(h.path).query)
        basic = (h.headers.get("Authorization") or "Basic Og==")[6:]
        user, _, pw = base64.b64decode(basic).decode().partition(":")
        if (user, pw) != ("alice", PASSWORD):
            return _reply(h, 401, {"details": "stub: incorrect username or password"})
        if q.get("tenant") != ["t1"]:  # the realm's own query string must be kept
            return _reply(h, 400, {"details": "stub: tenant lost"})
        scopes = q.get("scope", [])
        asked.append(scopes)
        access = []
        for s in scopes:
            typ, _, rest = s.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": typ, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": "indep-issuer", "sub": user, "aud": "indep-service", "exp": now + 60, "nbf": now - 1,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        _reply(h, 200, {field: sign(claims, alg, mode)})  # no expires_in: 60 s by the spec

    ts = Stub(token)
    try:
        try:
            sandbox = LocalRegistry(token={"realm": f"{ts.url}/token?tenant=t1", "service": "indep-service",
                                           "issuer": "indep-issuer", "rootcertbundle": str(bundle)})
        except RegistryBinaryMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        with sandbox:
            reg = rx.Registry(sandbox.url, auth=("alice", PASSWORD))
            f = tmp_path / "hello.txt"
            f.write_text("hello")
            digest = reg.push([str(f)], "indep/app:v1")
            assert reg.catalog().repository.tolist() == ["indep/app"]
            assert reg.tags("indep/app").tag.tolist() == ["v1"]
            assert reg.manifest("indep/app:v1").digest == digest
            flat = [s for scopes in asked for s in scopes]
            assert "repository:indep/app:pull,push" in flat and "registry:catalog:*" in flat
            assert len(asked) <= 4  # one token per scope, reused
            bad = rx.Registry(sandbox.url, auth=("alice", "wrong"))
            with pytest.raises(Unauthorized, match="incorrect username or password"):
                bad.tags("indep/app")
    finally:
        ts.close()

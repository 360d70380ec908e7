"""A small Docker/distribution token server for tests: signs RS256 JWTs the real registry trusts.

It follows distribution's token spec and its reference server (``contrib/token-server``):

- ``GET /token?service=..&scope=..[&scope=..][&offline_token=true]`` with optional HTTP Basic
  credentials (none = anonymous, like Docker Hub);
- ``POST /token`` (OAuth2 form: ``grant_type=password|refresh_token``, ``service``, ``client_id``,
  ``scope`` space-separated, ``access_type=offline``), or 404 when ``oauth=False`` so clients must
  fall back to GET;
- errors in distribution's errcode JSON shape (``{"errors":[{"code":"UNAUTHORIZED",...}]}``).

The JWT header carries ``x5c`` = [the self-signed certificate]; point the registry's
``auth.token.rootcertbundle`` at :attr:`TokenServer.cert_path` (``registry_config()`` gives the
whole block for ``LocalRegistry(token=...)``). Like Docker Hub, a token is issued even for scopes
the user may not have: its ``access`` list is reduced, and the registry answers
``insufficient_scope``.

Usage::

    with TokenServer(users={"alice": ("pw", {"repository:demo/*": "pull,push"})}) as ts:
        with LocalRegistry(token=ts.registry_config()) as reg:
            ...
        ts.count("GET")   # token requests served

Every request is recorded in :attr:`TokenServer.requests` (method, path, query, basic user, form
field *names*, granted access) — never a password or token value.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .loopback import LoopbackServer

__all__ = ["TokenServer", "Grant"]

Grant = dict[str, str]  # "repository:<glob>" | "registry:catalog" -> "pull,push" | "*"


def _errcode(code: str, message: str, detail: Any) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()


@dataclass
class _Refresh:
    subject: str
    service: str


@dataclass
class TokenServer(LoopbackServer):
    """Token server on ``127.0.0.1:<free port>``.

    users: ``{name: (password, grants)}``; grants map ``"repository:<fnmatch glob>"`` or
        ``"registry:catalog"`` to an action list (``"pull,push"``, ``"*"`` = all asked).
    anonymous: grants for requests without credentials (``None``: anonymous requests get 401).
    expires_in: the ``expires_in`` reported (``None``: field omitted, clients must assume 60 s).
    jwt_lifetime: seconds from now to the JWT ``exp`` (default: ``expires_in`` or 60). The registry
        allows 60 s of leeway past ``exp``, so ``-58`` makes a token the registry accepts for ~2 s
        while the client was told ``expires_in``.
    token_field: ``"token"``, ``"access_token"`` or ``"both"`` for GET answers (POST always
        ``access_token``, as OAuth2 requires).
    oauth: False → ``POST`` answers 404 (``"404 page not found"``, Go's default mux body).
    """

    users: dict[str, tuple[str, Grant]] = field(default_factory=dict)
    anonymous: Grant | None = field(default_factory=dict)
    service: str = "regexplore-test-registry"
    issuer: str = "regexplore-test-token-server"
    expires_in: int | None = 300
    jwt_lifetime: int | None = None
    token_field: Literal["token", "access_token", "both"] = "token"
    oauth: bool = True

    def __post_init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._refresh: dict[str, _Refresh] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="regexplore-tokenserver-")
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert = self._self_signed(self._key)
        self.cert_path = str(Path(self._tmp.name) / "token-signer.pem")
        Path(self.cert_path).write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]

    def __repr__(self) -> str:
        return f"<TokenServer {self.url if self._httpd else 'stopped'} users={sorted(self.users)}>"

    # ------------------------------------------------------------------ lifecycle
    @staticmethod
    def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regexplore test token signer")])
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        return (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )

    def handler(self) -> type:
        server = self

        class Handler(_Handler):
            ts = server

        return Handler

    def stopped(self) -> None:
        """Remove the certificate folder."""
        self._tmp.cleanup()

    @property
    def realm(self) -> str:
        return self.url + "/token"

    def registry_config(self) -> dict[str, str]:
        """The registry's ``auth.token`` block trusting this server."""
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "rootcertbundle": self.cert_path}

    def count(self, method: str | None = None) -> int:
        """How many token requests (optionally of one method) were served."""
        with self._lock:
            return sum(1 for r in self.requests if method is None or r["method"] == method)

    # ------------------------------------------------------------------ tokens
    def _grants_for(self, user: str | None) -> Grant | None:
        return self.anonymous if user is None else self.users[user][1]

    def granted(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        """The ``access`` claim for ``scopes``: each asked resource with the actions granted."""
        grants = self._grants_for(user) or {}
        access: list[dict[str, Any]] = []
        for scope in scopes:
            rtype, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not rtype or not name:
                continue
            asked = [a for a in actions.split(",") if a]
            allowed: set[str] = set()
            for pattern, acts in grants.items():
                gtype, _, glob = pattern.partition(":")
                if gtype == rtype and fnmatch.fnmatchcase(name, glob):
                    allowed |= set(asked) if acts == "*" else set(acts.split(","))
            access.append({"type": rtype, "name": name, "actions": [a for a in asked if a in allowed]})
        return access

    def _jwt(self, subject: str, service: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        lifetime = self.jwt_lifetime if self.jwt_lifetime is not None else (self.expires_in or 60)
        claims = {"iss": self.issuer, "sub": subject, "aud": service, "exp": now + lifetime,
                  "nbf": now - 1, "iat": now, "jti": secrets.token_hex(8), "access": access}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": self._x5c})

    def _check(self, user: str, password: str) -> bool:
        entry = self.users.get(user)
        return entry is not None and secrets.compare_digest(entry[0].encode(), password.encode())


class _Handler(BaseHTTPRequestHandler):
    ts: TokenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _record(self, **kw: Any) -> None:
        with self.ts._lock:
            self.ts.requests.append({"method": self.command, "path": urlsplit(self.path).path, **kw})

    def _unauthorized(self, detail: str) -> None:
        self._send(401, _errcode("UNAUTHORIZED", "authentication required", detail),
                   headers={"WWW-Authenticate": f'Basic realm="{self.ts.realm}"'})

    def do_GET(self) -> None:
        ts = self.ts
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path != "/token":
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        user: str | None = None
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if not ts._check(user, password):
                self._record(query=sorted(query), user=user, status=401)
                self._unauthorized("invalid authorization credential")
                return
        elif ts.anonymous is None:
            self._record(query=sorted(query), user=None, status=401)
            self._unauthorized("authentication required")
            return
        scopes = query.get("scope", [])
        access = ts.granted(user, scopes)
        service = (query.get("service") or [""])[0]
        token = ts._jwt(user or "", service, access)
        doc: dict[str, Any] = {}
        if ts.token_field in ("token", "both"):
            doc["token"] = token
        if ts.token_field in ("access_token", "both"):
            doc["access_token"] = token
        if ts.expires_in is not None:
            doc["expires_in"] = ts.expires_in
        doc["issued_at"] = datetime.datetime.now(datetime.UTC).isoformat()
        if (query.get("offline_token") or [""])[0] == "true" and user:
            rt = secrets.token_urlsafe(16)
            ts._refresh[rt] = _Refresh(user, service)
            doc["refresh_token"] = rt
        self._record(query=sorted(query), scopes=scopes, user=user, access=access, status=200)
        self._send(200, json.dumps(doc).encode())

    def do_POST(self) -> None:
        ts = self.ts
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        if urlsplit(self.path).path != "/token" or not ts.oauth:
            self._record(form=sorted(form), status=404)
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        for required in ("grant_type", "service", "client_id"):
            if not form.get(required):
                self._record(form=sorted(form), status=400)
                self._send(400, _errcode("UNSUPPORTED", "The operation is unsupported.",
                                         f"missing {required} value"))
                return
        grant = form["grant_type"]
        subject: str | None = None
        refresh: str | None = None
        if grant == "refresh_token":
            refresh = form.get("refresh_token", "")
            known = ts._refresh.get(refresh)
            if known is None or known.service != form["service"]:
                self._record(form=sorted(form), grant=grant, status=401)
                self._send(401, _errcode("UNAUTHORIZED", "authentication required", "invalid refresh token"))
                return
            subject = known.subject
        elif grant == "password":
            subject = form.get("username", "")
            if not ts._check(subject, form.get("password", "")):
                self._record(form=sorted(form), grant=grant, user=subject, status=401)
                self._send(401, _errcode("UNAUTHORIZED", "authentication required", "invalid credentials"))
                return
        else:
            self._record(form=sorted(form), grant=grant, status=400)
            self._send(400, _errcode("UNSUPPORTED", "The operation is unsupported.", "unknown grant_type value"))
            return
        if form.get("access_type") == "offline":
            refresh = secrets.token_urlsafe(16)
            ts._refresh[refresh] = _Refresh(subject, form["service"])
        scopes = [s for s in form.get("scope", "").split(" ") if s]
        access = ts.granted(subject, scopes)
        doc: dict[str, Any] = {"access_token": ts._jwt(subject, form["service"], access),
                               "scope": " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}"
                                                 for a in access if a["actions"])}
        if ts.expires_in is not None:
            doc["expires_in"] = ts.expires_in
        doc["issued_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if refresh:
            doc["refresh_token"] = refresh
        self._record(form=sorted(form), grant=grant, scopes=scopes, user=subject, access=access, status=200)
        self._send(200, json.dumps(doc).encode())

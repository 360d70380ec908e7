"""Registry authentication: challenges, Bearer tokens cached per scope, Basic, credential sources.

The flow (distribution's token spec, docs/protocol.md §3):

1. A request goes out with whatever we already hold for its scope (a cached Bearer token, or
   Basic credentials once the registry has asked for Basic).
2. A 401 carries ``WWW-Authenticate``. :func:`parse_challenges` reads it (quoted and unquoted
   values, several challenges, ``error=``); :meth:`RegistryAuth.handle_challenge` fetches a
   token from the realm (GET with Basic credentials, or the OAuth2 POST flow for identity /
   refresh tokens, falling back to GET on 404/405) and the transport retries once.
3. Tokens are cached per scope until ``expires_in`` (60 s when absent) runs out.

Where credentials come from, in order: ``auth=`` given to ``Registry``; the Docker config file
(``DOCKER_CONFIG`` or ``~/.docker/config.json``: ``auths``, ``credHelpers``, ``credsStore``);
anonymous. :attr:`Credentials.source` says which was used; no secret is ever in a repr.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import InsecureCredentials, RegistryError, Unauthorized, error_from_response

__all__ = [
    "Challenge",
    "Credentials",
    "RegistryAuth",
    "parse_challenges",
    "scope_for",
    "resolve_credentials",
]

DEFAULT_TOKEN_LIFETIME = 60.0
_HUB_CONFIG_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


_TOKEN68 = re.compile(r"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*")
_PARAM = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_challenges(value: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header value into challenges (RFC 7235 / RFC 6750).

    >>> parse_challenges('Bearer realm="https://auth.docker.io/token",service=registry.docker.io')[0].params
    {'realm': 'https://auth.docker.io/token', 'service': 'registry.docker.io'}
    """
    out: list[Challenge] = []
    s = value or ""
    pos = 0
    current: Challenge | None = None
    while pos < len(s):
        while pos < len(s) and s[pos] in " ,\t":
            pos += 1
        if pos >= len(s):
            break
        m = _PARAM.match(s, pos)
        if m and current is not None:
            key, raw = m.group(1).lower(), m.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            current.params[key] = raw
            pos = m.end()
            continue
        m = _TOKEN68.match(s, pos)
        if not m:
            break
        current = Challenge(m.group(1).lower(), {})
        out.append(current)
        pos = m.end()
    return out


_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")


def scope_for(url: str, method: str) -> str | None:
    """The token scope a request needs, derived from its path.

    ``/v2/<name>/manifests|blobs|tags|referrers/…`` → ``repository:<name>:pull`` (``pull,push``
    for writes, ``delete`` for DELETE); ``/v2/_catalog`` → ``registry:catalog:*``.
    """
    path = urlsplit(url).path
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    m = _REPO_PATH.match(path)
    if not m:
        return None
    name = m.group("name")
    if method in ("POST", "PUT", "PATCH"):
        actions = "pull,push"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull"
    return f"repository:{name}:{actions}"


class Credentials:
    """A username with a password, or a bare token / identity token, and where it came from.

    ``repr`` and ``str`` show the source and the username only.
    """

    __slots__ = ("username", "_secret", "kind", "source")

    def __init__(self, username: str | None, secret: str | None, *, kind: str = "password",
                 source: str = "explicit") -> None:
        self.username = username
        self._secret = secret
        self.kind = kind  # "password" | "token" (a bearer token to send as is) | "identitytoken"
        self.source = source

    @property
    def secret(self) -> str | None:
        return self._secret

    def basic_header(self) -> str:
        raw = f"{self.username or ''}:{self._secret or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:
        who = f" user={self.username!r}" if self.username else ""
        return f"<Credentials {self.kind} from {self.source}{who}>"

    __str__ = __repr__


def _docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _config_keys(host: str) -> list[str]:
    if host in ("registry-1.docker.io", "docker.io", "index.docker.io"):
        return [_HUB_CONFIG_KEY, "index.docker.io", "docker.io", "registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def _from_helper(helper: str, server: str) -> Credentials | None:
    exe = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([exe, "get"], input=server.encode(), capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return None
    user, secret = doc.get("Username"), doc.get("Secret")
    if not secret:
        return None
    if user == "<token>":
        return Credentials(None, secret, kind="identitytoken", source=f"credential helper {helper}")
    return Credentials(user, secret, source=f"credential helper {helper}")


def _from_docker_config(host: str) -> Credentials | None:
    path = _docker_config_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = _config_keys(host)
    helpers = doc.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _from_helper(helpers[key], key)
    auths = doc.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials(entry.get("username"), entry["identitytoken"], kind="identitytoken",
                               source=f"docker config {path}")
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return Credentials(user, pw, source=f"docker config {path}")
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"], source=f"docker config {path}")
    store = doc.get("credsStore")
    if store:
        for key in keys[:2]:
            creds = _from_helper(store, key)
            if creds:
                return creds
    return None


def resolve_credentials(host: str, auth: Any) -> Credentials | None:
    """Credentials for ``host``: ``auth=(user, password)``, ``auth="token"``, a ``Credentials``,
    else the Docker config file, else None (anonymous)."""
    if isinstance(auth, Credentials):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2:
        return Credentials(str(auth[0]), str(auth[1]), source="explicit")
    if isinstance(auth, str):
        return Credentials(None, auth, kind="token", source="explicit")
    if auth is False:
        return None
    return _from_docker_config(host)


@dataclass
class _Token:
    value: str
    expires: float
    scopes: tuple[str, ...] = ()


class RegistryAuth:
    """Authentication state for one registry (thread-safe).

    ``headers_for(url, method, scope)`` gives the Authorization header to send (if any);
    ``handle_challenge(www_authenticate, url, method, scope, transport)`` reacts to a 401 and
    says whether a retry makes sense.
    """

    def __init__(self, host: str, credentials: Credentials | None) -> None:
        self.host = host
        self.credentials = credentials
        self._tokens: dict[str, _Token] = {}
        self._basic = False
        self._bearer: Challenge | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RegistryAuth {self.host} {self.credentials or 'anonymous'}>"

    @property
    def source(self) -> str:
        return self.credentials.source if self.credentials else "anonymous"

    def headers_for(self, url: str, method: str, scope: str | None) -> dict[str, str]:
        scope = scope or scope_for(url, method)
        if self._basic and self.credentials and self.credentials.kind == "password":
            return {"Authorization": self.credentials.basic_header()}
        if self.credentials and self.credentials.kind == "token" and self._bearer is None:
            return {"Authorization": f"Bearer {self.credentials.secret}"}
        tok = self._tokens.get(scope or "")
        if tok is None and scope and scope.endswith(":pull"):
            # a push/pull token also covers pulls
            tok = self._tokens.get(scope[: -len(":pull")] + ":pull,push")
        if tok and tok.expires > time.time():
            return {"Authorization": f"Bearer {tok.value}"}
        return {}

    def handle_challenge(self, www: str, url: str, method: str, scope: str | None, transport: Any) -> bool:
        challenges = parse_challenges(www)
        scope = scope or scope_for(url, method)
        for ch in challenges:
            if ch.scheme == "bearer" and ch.realm:
                self._bearer = ch
                wanted: list[str] = []
                if ch.params.get("scope"):
                    wanted.extend(ch.params["scope"].split(" "))
                if scope and scope not in wanted:
                    wanted.append(scope)
                token = self._fetch_token(ch, wanted, transport)
                with self._lock:
                    self._tokens[scope or ""] = token
                return True
        for ch in challenges:
            if ch.scheme == "basic":
                if not self.credentials or self.credentials.kind != "password":
                    return False
                if self._basic:
                    return False  # we already sent Basic and it was refused
                self._basic = True
                return True
        return False

    # ----------------------------------------------------------------- token fetching
    def _fetch_token(self, ch: Challenge, scopes: list[str], transport: Any) -> _Token:
        realm = ch.realm or ""
        rp = urlsplit(realm)
        from .transport import is_loopback

        if rp.scheme not in ("http", "https"):
            raise RegistryError(f"token realm has an unsupported scheme: {rp.scheme!r}")
        creds = self.credentials
        if rp.scheme == "http" and not is_loopback(rp.netloc):
            raise InsecureCredentials(
                "the registry's token realm is plain http on a non-loopback host; refusing to "
                "ask it for a token", url=realm)
        params: list[tuple[str, str]] = []
        if ch.params.get("service"):
            params.append(("service", ch.params["service"]))
        for s in scopes:
            params.append(("scope", s))
        session = transport.session
        started = time.perf_counter()
        headers = {}
        if creds and creds.kind == "identitytoken":
            resp = self._oauth_post(session, realm, ch, scopes, transport)
            if resp is not None:
                return self._token_from(resp, scopes, realm)
        if creds and creds.kind == "password":
            headers["Authorization"] = creds.basic_header()
            params.append(("account", creds.username or ""))
        try:
            resp = session.get(realm, params=params, headers=headers, timeout=transport.timeout,
                               allow_redirects=False)
        except Exception as exc:
            raise RegistryError(f"token server unreachable: {type(exc).__name__}", url=realm) from None
        transport._record("GET", resp.url, resp.status_code, len(resp.content), started, "token")
        if resp.status_code != 200:
            err = error_from_response(resp, "token request")
            if resp.status_code in (401, 403) and not isinstance(err, Unauthorized):
                raise Unauthorized(err.message, status=err.status, code=err.code, url=realm)
            raise err
        return self._token_from(resp, scopes, realm)

    def _oauth_post(self, session: Any, realm: str, ch: Challenge, scopes: list[str], transport: Any) -> Any:
        creds = self.credentials
        assert creds is not None
        form = {
            "grant_type": "refresh_token",
            "refresh_token": creds.secret or "",
            "service": ch.params.get("service", ""),
            "client_id": "regexplore",
            "scope": " ".join(scopes),
        }
        started = time.perf_counter()
        try:
            resp = session.post(realm, data=form, timeout=transport.timeout, allow_redirects=False)
        except Exception as exc:
            raise RegistryError(f"token server unreachable: {type(exc).__name__}", url=realm) from None
        transport._record("POST", realm, resp.status_code, len(resp.content), started, "token")
        if resp.status_code in (404, 405):
            return None
        if resp.status_code != 200:
            raise error_from_response(resp, "token request")
        return resp

    @staticmethod
    def _token_from(resp: Any, scopes: list[str], realm: str) -> _Token:
        try:
            doc = resp.json()
        except ValueError:
            raise RegistryError("token server answered with something that is not JSON", url=realm) from None
        value = doc.get("token") or doc.get("access_token")
        if not value:
            raise RegistryError("token server answered without a token", url=realm)
        try:
            lifetime = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        # renew a little early so a token does not expire in flight
        return _Token(value, time.time() + max(lifetime - 5.0, 1.0), tuple(scopes))

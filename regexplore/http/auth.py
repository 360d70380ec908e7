"""Registry authentication: challenges, Bearer tokens cached per scope, Basic, credential sources.

The flow (distribution's token spec, docs/protocol.md §3):

1. A request goes out with what we already hold for its scope: a cached Bearer token, Basic
   credentials once the registry has asked for Basic, or a registry token given as ``auth="…"``.
2. A 401 carries ``WWW-Authenticate``. :func:`parse_challenges` reads it (quoted and unquoted
   values, several challenges, ``error=``); :meth:`RegistryAuth.handle_challenge` fetches a
   token from the realm and the transport retries once:

   - ``GET realm?service=…&scope=…`` with HTTP Basic credentials (or none: anonymous);
   - the OAuth2 ``POST`` (``grant_type=refresh_token`` for an identity token, and
     ``grant_type=password`` when ``RegistryAuth(oauth=True)``), falling back to the GET on 404/405.
   The token server may redirect (301/302/303/307/308, up to 5 hops, followed by hand):
   ``Authorization`` never follows a hop to another origin, no hop may be plain http to a
   non-loopback host (``InsecureCredentials``), each hop gets its own origin's cookies and the
   configured proxy.
3. Tokens are cached per scope until ``issued_at + expires_in`` (60 s when absent; ``issued_at``
   read against the answer's ``Date``, so our clock's skew does not matter), renewed a little
   early; a 401 on a token we still believed in (it expired or was revoked server-side) fetches a
   new one, the challenge's scopes first (some registries read only the first ``scope``).
4. A 401 or 403 with ``error="insufficient_scope"`` on a cached token fetches one token for the
   challenge's scopes; on a token just fetched for those very scopes it means "not allowed":
   ``Denied``.

Where credentials come from (:func:`resolve_credentials`): ``auth=(user, password)``;
``auth="<registry token>"`` (sent as ``Bearer`` as is); a :class:`Credentials`; else the Docker
config file (``DOCKER_CONFIG`` or ``~/.docker/config.json``: ``credHelpers``, then ``credsStore``,
then ``auths`` with ``auth`` / ``identitytoken`` / ``registrytoken``; Docker Hub's key is
``https://index.docker.io/v1/``); else anonymous. :attr:`Credentials.source` says which; no secret
ever appears in a repr, a log record, the trace or an exception; the values we hold are
:class:`~regexplore.http.redact.Secret` strings, so a traceback's locals show ``'<redacted>'``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit

from .. import _env
from ..errors import InsecureCredentials, RegistryError, Unauthorized, load_json
from .challenges import Challenge, parse_challenges
from .redact import Scrubber, Secret, ServerText, url_origin
from .responses import error_from_response, parse_retry_after

__all__ = [
    "Challenge",
    "Credentials",
    "RegistryAuth",
    "parse_challenges",
    "scope_for",
    "resolve_credentials",
    "docker_config_path",
    "DEFAULT_TOKEN_LIFETIME",
]

log = logging.getLogger("regexplore.http.auth")

DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default when expires_in is absent
_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"registry-1.docker.io", "docker.io", "index.docker.io", "registry.hub.docker.com"}
_CLIENT_ID = "regexplore"
MAX_TOKEN_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}


_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")


def scope_for(url: str, method: str) -> str | None:
    """The token scope a request needs, derived from its path; None for ``/v2/`` and the like.

    ``/v2/<name>/manifests|blobs|tags|referrers/…`` → ``repository:<name>:pull`` (``pull,push``
    for POST/PUT/PATCH, ``delete`` for DELETE); ``/v2/_catalog`` → ``registry:catalog:*``.

    >>> scope_for("https://r.example/v2/library/ubuntu/manifests/latest", "GET")
    'repository:library/ubuntu:pull'
    """
    path = urlsplit(url).path
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    m = _REPO_PATH.match(path)
    if not m:
        return None
    method = method.upper()
    if method in ("POST", "PUT", "PATCH"):
        actions = "pull,push"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull"
    return f"repository:{m.group('name')}:{actions}"


# --------------------------------------------------------------------------- credentials
class Credentials:
    """A secret and where it came from. ``kind`` is one of

    - ``"password"``: username + password (Basic, or the token server's Basic / password grant);
    - ``"identitytoken"``: an OAuth2 refresh token (``docker login`` to ACR & co. stores one);
    - ``"token"``: a registry bearer token sent as is on every request.

    ``repr``/``str`` show the kind, the source and the username, never the secret.
    """

    __slots__ = ("username", "_secret", "kind", "source")

    def __init__(self, username: str | None, secret: str | None, *, kind: str = "password",
                 source: str = "explicit") -> None:
        if kind not in ("password", "identitytoken", "token"):
            raise ValueError(f"unknown credential kind {kind!r}")
        self.username = username
        self._secret = Secret(secret) if secret is not None else None
        self.kind = kind
        self.source = source

    @property
    def secret(self) -> str | None:
        """The secret, as a :class:`~regexplore.http.redact.Secret` (its repr is ``'<redacted>'``)."""
        return self._secret

    def basic_header(self) -> str:
        """``Basic base64(user:secret)`` (an identity token goes with user ``<token>`` if none)."""
        user = self.username or ("<token>" if self.kind == "identitytoken" else "")
        return Secret("Basic " + base64.b64encode(f"{user}:{self._secret or ''}".encode()).decode())

    def held_by(self, scrubber: Scrubber) -> None:
        """Have ``scrubber`` cut the secret out of server text, alone and as the ``user:secret``
        pair that :meth:`basic_header` encodes."""
        user = self.username or ("<token>" if self.kind == "identitytoken" else "")
        scrubber.hold("credentials", self._secret, f"{user}:{self._secret}" if self._secret else None)

    def describe(self) -> str:
        """``"password for alice from docker config /…/config.json"`` — safe to show."""
        who = f" for {self.username}" if self.username and self.username != "<token>" else ""
        return f"{self.kind}{who} from {self.source}"

    def __repr__(self) -> str:
        who = f" user={self.username!r}" if self.username else ""
        return f"<Credentials {self.kind} from {self.source}{who}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling a secret into a notebook checkpoint by accident
        raise TypeError("Credentials cannot be pickled")


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    base = _env.text("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _norm_host(key: str) -> str:
    """A Docker config key (``https://index.docker.io/v1/``, ``host:5000``…) → lowercase host[:port]."""
    k = key.strip().lower()
    if "://" in k:
        k = k.split("://", 1)[1]
    k = k.split("/", 1)[0]
    return "index.docker.io" if k in _HUB_HOSTS else k


_CONFIG_SECRET_KEYS = {"auth", "password", "identitytoken", "registrytoken", "Secret"}


def _hide_secrets(obj: dict[str, Any]) -> dict[str, Any]:
    """``json.loads`` object hook: credential values of a Docker config or a credential helper's
    answer become :class:`Secret`, so a traceback's locals (``doc``, ``entry``) show ``'<redacted>'``."""
    return {k: Secret(v) if k in _CONFIG_SECRET_KEYS and isinstance(v, str) else v for k, v in obj.items()}


def _run_helper(path: str, server: str) -> tuple[int, Secret, bool]:
    """``<path> get`` with ``server`` on stdin: (exit status, stdout as a :class:`Secret`, whether it
    said "credentials not found"). Its output stays out of every frame that may raise."""
    proc = subprocess.run([path, "get"], input=server.encode(), capture_output=True, timeout=30)
    not_found = b"credentials not found" in proc.stdout.lower() + proc.stderr.lower()
    return proc.returncode, Secret(proc.stdout.decode("utf-8", "replace")), not_found


def _helper_answer(out: str) -> dict[str, Any] | None:
    """A credential helper's JSON object with its ``Secret`` hidden; None if it is not one."""
    try:
        doc = json.loads(out, object_hook=_hide_secrets)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _helper_get(helper: str, server: str) -> Credentials | None:
    """Run ``docker-credential-<helper> get`` with ``server`` on stdin; None if it has nothing.

    Raises ``RegistryError`` if the helper is configured but missing or fails unexpectedly
    (its output is not echoed: it may hold a secret).
    """
    exe = f"docker-credential-{helper}"
    path = shutil.which(exe)
    if path is None:
        raise RegistryError(f"the Docker config names credential helper {helper!r}, but {exe} is not on PATH")
    try:
        status, out, not_found = _run_helper(path, server)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper {exe} did not answer within 30 s") from None
    if status != 0:
        if not_found:
            return None
        raise RegistryError(f"credential helper {exe} failed (exit status {status})")
    doc = _helper_answer(out)
    if doc is None:
        raise RegistryError(f"credential helper {exe} answered something that is not a JSON object")
    user, secret = doc.get("Username"), doc.get("Secret")
    if not secret:
        return None
    source = f"credential helper {helper}"
    if user == "<token>":
        return Credentials(None, secret, kind="identitytoken", source=source)
    return Credentials(user, secret, source=source)


def _from_docker_config(host: str) -> Credentials | None:
    """Credentials for ``host`` from the Docker config file, in Docker's order: ``credHelpers``,
    ``credsStore``, then ``auths``. None when the file or an entry is missing."""
    path = docker_config_path()
    try:
        doc = json.loads(path.read_text(), object_hook=_hide_secrets)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable Docker config %s (%s)", path, type(exc).__name__)
        return None
    if not isinstance(doc, dict):
        return None
    want = _norm_host(host)
    hub = want == "index.docker.io"
    helpers = doc.get("credHelpers") or {}
    for key, helper in helpers.items():
        if _norm_host(key) == want:
            return _helper_get(helper, _HUB_CONFIG_KEY if hub else key)
    auths = doc.get("auths") or {}
    if doc.get("credsStore"):
        found = _helper_get(doc["credsStore"], _HUB_CONFIG_KEY if hub else host)
        if found:
            return found
    keys = sorted((k for k in auths if _norm_host(k) == want), key=lambda k: k != (_HUB_CONFIG_KEY if hub else host))
    for key in keys:
        entry = auths[key]
        if not isinstance(entry, dict):
            continue
        source = f"docker config {path}"
        user = entry.get("username")
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                pw = Secret(pw)
            except (binascii.Error, ValueError, UnicodeDecodeError):
                log.warning("ignoring a malformed 'auth' value for %s in %s", key, path)
                continue
        else:
            pw = entry.get("password") or ""
        if entry.get("identitytoken"):
            return Credentials(user or None, entry["identitytoken"], kind="identitytoken", source=source)
        if entry.get("registrytoken"):
            return Credentials(user or None, entry["registrytoken"], kind="token", source=source)
        if user and pw:
            return Credentials(user, pw, source=source)
    return None


def resolve_credentials(host: str, auth: Any) -> Credentials | None:
    """Credentials for ``host`` (``host[:port]``).

    ``auth`` may be ``(user, password)``, a registry token string, a :class:`Credentials`,
    ``False`` (anonymous, do not read the Docker config) or None (the Docker config, else
    anonymous). Returns None for anonymous. Raises ``RegistryError`` if a configured credential
    helper is missing or fails, ``TypeError`` for an unsupported ``auth``.
    """
    if isinstance(auth, Credentials):
        return auth
    if isinstance(auth, (tuple, list)) and len(auth) == 2:
        return Credentials(str(auth[0]), str(auth[1]), source="explicit")
    if isinstance(auth, str):
        return Credentials(None, auth, kind="token", source="explicit")
    if auth is False:
        return None
    if auth is None:
        return _from_docker_config(host)
    raise TypeError("auth must be (user, password), a token string, Credentials, False or None")


# --------------------------------------------------------------------------- tokens
@dataclass
class _Token:
    """A Bearer token: ``value`` (never in the repr), when we stop using it (``expires``, epoch
    seconds, a little before it really runs out), the ``scopes`` it was asked for, when it came."""

    value: str = field(repr=False)
    expires: float
    scopes: tuple[str, ...] = ()
    fetched: float = 0.0

    def valid(self) -> bool:
        return self.expires > time.time()


def _covers(have: Iterable[str], want: Iterable[str]) -> bool:
    """True if scopes ``have`` (``type:name:actions``) include every action of every ``want``."""
    granted: dict[str, set[str]] = {}
    for s in have:
        resource, _, actions = s.rpartition(":")
        granted.setdefault(resource, set()).update(actions.split(","))
    return all(set(actions.split(",")) <= granted.get(resource, set())
               for resource, _, actions in (w.rpartition(":") for w in want))


def _token_age(issued_at: Any, date_header: str | None) -> float:
    """How old a token already was when its answer left the server, in seconds (>= 0): the
    answer's ``Date`` minus ``issued_at``, both the server's clock (our clock's skew does not
    enter). 0 when either is missing or unreadable (the token counts as issued now)."""
    if not isinstance(issued_at, str) or not date_header:
        return 0.0
    try:
        issued = datetime.fromisoformat(issued_at.strip())
        sent = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if issued.tzinfo is None:
        issued = issued.replace(tzinfo=timezone.utc)
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=timezone.utc)
    return max(0.0, (sent - issued).total_seconds())


_SECRET_FIELDS = {"token", "access_token", "refresh_token", "id_token"}


def _check_token_url(url: str, what: str) -> None:
    """Refuse a token URL that is not http(s) (``RegistryError``) or that is plain http to a
    non-loopback host (``InsecureCredentials``: credentials and tokens would cross in clear)."""
    from .transport import is_loopback

    p = urlsplit(url)
    if p.scheme not in ("http", "https") or not p.netloc:
        raise RegistryError(f"{what} is not an http(s) URL: {p.scheme or '?'}://…")
    if p.scheme == "http" and not is_loopback(p.netloc):
        raise InsecureCredentials(
            f"{what} is plain http on a non-loopback host; refusing to ask it for a token (use https)",
            url=url)


def _jwt_claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT, for display only ({} if it is not one)."""
    try:
        part = token.split(".")[1]
        claims = load_json(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)), "token claims")
    except (IndexError, ValueError, binascii.Error, RegistryError):
        return {}
    return claims if isinstance(claims, dict) else {}


class RegistryAuth:
    """Authentication state for one registry; thread-safe, shared by the transport's workers.

    ``headers_for(url, method, scope)`` gives the ``Authorization`` header to send (if any);
    ``handle_challenge(www_authenticate, url, method, scope, transport)`` reacts to a 401 and
    says whether a retry makes sense. ``oauth=True`` asks the token server with the OAuth2
    password grant first (and keeps the refresh token it returns), falling back to GET.
    """

    def __init__(self, host: str, credentials: Credentials | None, *, oauth: bool = False,
                 client_id: str = _CLIENT_ID) -> None:
        self.host = host
        self.credentials = credentials
        self.oauth = oauth
        self.client_id = client_id
        self._tokens: dict[str, _Token] = {}
        self._basic = False
        self._bearer: Challenge | None = None
        self._refresh_token: str | None = None
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        #: cuts the credentials and every token this object was given out of server text
        self.scrubber = Scrubber()
        if credentials is not None:
            credentials.held_by(self.scrubber)
        self._local = threading.local()
        self._transport: Any = None  # set by the first Bearer challenge; used to renew ahead of time

    def __repr__(self) -> str:
        return f"<RegistryAuth {self.host} {self.scheme} {self.credentials or 'anonymous'}>"

    @property
    def source(self) -> str:
        """Where the credentials came from (``"anonymous"`` without any)."""
        return self.credentials.source if self.credentials else "anonymous"

    @property
    def scheme(self) -> str:
        """``"bearer"``, ``"basic"`` or ``"none"`` (what the registry asked for so far)."""
        if self._bearer is not None:
            return "bearer"
        if self._basic:
            return "basic"
        if self.credentials is not None and self.credentials.kind == "token":
            return "bearer"
        return "none"

    def whoami(self) -> dict[str, Any]:
        """A description safe to show: ``source``, ``kind``, ``username``, ``scheme``, ``realm``,
        ``service``, ``subject`` (the ``sub`` claim of the newest token, if it is a JWT),
        ``scopes`` (cached token scopes) and ``expires_in`` (seconds left on the newest token)."""
        creds = self.credentials
        with self._lock:
            tokens = sorted(self._tokens.values(), key=lambda t: t.fetched)
        newest = tokens[-1] if tokens else None
        ch = self._bearer
        return {
            "source": self.source,
            "kind": creds.kind if creds else None,
            "username": creds.username if creds else None,
            "scheme": self.scheme,
            "realm": ch.realm if ch else None,
            "service": ch.service if ch else None,
            "subject": _jwt_claims(newest.value).get("sub") if newest else None,
            "scopes": sorted({s for t in tokens if t.valid() for s in t.scopes}),
            "expires_in": max(0.0, newest.expires - time.time()) if newest else None,
        }

    # ----------------------------------------------------------------- per request
    def _cached(self, scope: str | None) -> _Token | None:
        key = scope or ""
        tok = self._tokens.get(key)
        if (tok is None or not tok.valid()) and key.endswith(":pull"):
            tok = self._tokens.get(key[: -len("pull")] + "pull,push")  # a push token covers pulls
        return tok if tok is not None and tok.valid() else None

    def headers_for(self, url: str, method: str, scope: str | None) -> dict[str, str]:
        """The ``Authorization`` header for this request, or ``{}``."""
        # what this thread sends, for handle_challenge: the token, and whether it was fetched for
        # this very request (just now, or by the challenge that this request is the retry of)
        just_fetched, self._local.just_fetched = getattr(self._local, "just_fetched", None), None
        self._local.sent = None
        self._local.sent_fresh = False
        self._local.sent_basic = False
        creds = self.credentials
        if self._basic and creds is not None and creds.kind == "password":
            self._local.sent_basic = True
            return {"Authorization": creds.basic_header()}
        if creds is not None and creds.kind == "token":
            return {"Authorization": Secret(f"Bearer {creds.secret}")}
        scope = scope or scope_for(url, method)
        tok = self._cached(scope)
        if tok is None and self._bearer is not None and self._transport is not None:
            # we know the realm already: get the token now instead of sending a request bound to
            # be refused (a new repository, or a token that ran out)
            with self._fetch_lock:
                tok = self._cached(scope)
                if tok is None:
                    tok = self._fetch_token(self._bearer, [scope] if scope else [], self._transport)
                    just_fetched = tok
                    with self._lock:
                        self._tokens[scope or ""] = tok
        if tok is None:
            return {}
        self._local.sent = tok
        self._local.sent_fresh = tok is just_fetched
        return {"Authorization": Secret(f"Bearer {tok.value}")}

    def handle_challenge(self, www: str, url: str, method: str, scope: str | None, transport: Any) -> bool:
        """React to a 401 (or a 403 ``insufficient_scope``): fetch a token (Bearer) or switch to
        Basic. True if a retry makes sense; False for ``insufficient_scope`` on a token fetched
        for this request that already asked for every scope the challenge names (not allowed).

        Raises ``InsecureCredentials`` (realm on plain http to a non-loopback host),
        ``Unauthorized`` (the token server refused the credentials) or ``RegistryError``.
        """
        challenges = parse_challenges(www)
        scope = scope or scope_for(url, method)
        creds = self.credentials
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        if bearer is not None:
            self._bearer = bearer
            self._transport = transport
            if creds is not None and creds.kind == "token":
                return False  # a fixed registry token was refused: nothing to renew
            sent: _Token | None = getattr(self._local, "sent", None)
            wanted = [s for s in bearer.scopes]  # the challenge's (new) scopes first
            if scope and scope not in wanted:
                wanted.append(scope)
            if (bearer.error == "insufficient_scope" and sent is not None
                    and getattr(self._local, "sent_fresh", False) and _covers(sent.scopes, wanted)):
                return False  # the token server was just asked for exactly this and said no
            with self._fetch_lock:
                cached = self._cached(scope)
                if cached is not None and cached is not sent:
                    return True  # another worker renewed it while we were refused
                token = self._fetch_token(bearer, wanted, transport)
                with self._lock:
                    self._tokens[scope or ""] = token
            self._local.just_fetched = token
            return True
        if any(c.scheme == "basic" for c in challenges):
            if creds is None or creds.kind != "password" or getattr(self._local, "sent_basic", False):
                return False  # nothing to send, or this request's Basic credentials were refused
            self._basic = True  # (requests sent at once before the first 401 each get their retry)
            return True
        return False

    # ----------------------------------------------------------------- token fetching
    def _fetch_token(self, ch: Challenge, scopes: list[str], transport: Any) -> _Token:
        realm = ch.realm or ""
        rp = urlsplit(realm)
        _check_token_url(realm, "the registry's token realm")
        creds = self.credentials
        resp = None
        if creds is not None and (creds.kind == "identitytoken" or (self.oauth and creds.kind == "password")
                                  or self._refresh_token):
            resp = self._oauth_post(realm, ch, scopes, transport)
        if resp is None:
            resp = self._basic_get(realm, ch, scopes, transport)
        token = self._token_from(resp, scopes, realm)
        log.debug("token for %s from %s (valid %.0f s)", " ".join(scopes) or "(no scope)",
                  rp.netloc, token.expires - time.time())
        return token

    def _send(self, transport: Any, method: str, realm: str, *, headers: dict[str, str] | None = None,
              params: Any = None, data: Any = None) -> Any:
        """One token request through ``transport.send_once`` (its proxy, TLS settings, per-origin
        cookies), following up to :data:`MAX_TOKEN_REDIRECTS` redirects by hand.

        ``Authorization`` is dropped at the first hop to another origin and stays dropped; a POST
        (its form holds the credentials) follows only a 307/308 on the same origin, any other
        redirect of it is returned to the caller. Raises ``InsecureCredentials`` before a hop to
        plain http on a non-loopback host, ``RegistryError`` when unreachable or past 5 hops.
        """
        from .transport import show_query_in_logs

        show_query_in_logs(realm)  # the realm's service/scope/account are no secret; its hops' may be
        url = realm
        headers = dict(headers or {})
        for _hop in range(MAX_TOKEN_REDIRECTS + 1):
            resp, started = self._send_retrying(transport, method, url, realm, headers=headers, params=params,
                                                data=data)
            location = ServerText(resp.headers.get("Location") or "")
            redirect = resp.status_code in _REDIRECTS and bool(location)
            transport._record(method, resp.url, resp.status_code, len(resp.content or b""), started,
                              "token redirect" if redirect else "token", origin=realm)
            if not redirect:
                return resp
            target = ServerText(urljoin(resp.url, location))
            _check_token_url(target, "the token server redirected to a URL that")
            moved = url_origin(target) != url_origin(url)
            if method != "GET" and (moved or resp.status_code not in (307, 308)):
                return resp
            if moved:
                headers.pop("Authorization", None)
            url, params = target, None  # the Location carries its own query
        raise RegistryError(f"the token server redirected more than {MAX_TOKEN_REDIRECTS} times", url=realm)

    @staticmethod
    def _send_retrying(transport: Any, method: str, url: str, realm: str, **kw: Any) -> tuple[Any, float]:
        """One hop of a token request: ``transport.send_once``, sent again under the transport's
        :class:`~regexplore.http.transport.RetryPolicy` (GET only: a POST carries the credentials form) on
        the answers it retries or a dropped connection. Returns the response and when its attempt
        started; raises ``RegistryError`` when unreachable."""
        import requests

        policy = transport.retry
        attempt, slept = 0, 0.0
        while True:
            started = time.perf_counter()
            try:
                resp = transport.send_once(method, url, **kw)
            except Exception as exc:  # requests' messages may carry the URL: keep only the type
                transport._record(method, url, "error", None, started, "token", origin=realm)
                error = RegistryError(f"token server unreachable: {type(exc).__name__}", url=realm)
                if not isinstance(exc, (requests.ConnectionError, requests.Timeout)) \
                        or isinstance(exc, requests.exceptions.SSLError):
                    raise error from None
                retry_after = None
            else:
                if resp.status_code not in policy.statuses:
                    return resp, started
                error, retry_after = None, parse_retry_after(resp.headers.get("Retry-After"))
            waited = policy.pause(attempt, slept, retry_after) if method == "GET" else None
            if waited is None:
                if error is not None:
                    raise error from None
                return resp, started
            if error is None:
                transport._record(method, resp.url, resp.status_code, len(resp.content or b""), started,
                                  "token retry", origin=realm)
            attempt, slept = attempt + 1, waited

    def _basic_get(self, realm: str, ch: Challenge, scopes: list[str], transport: Any) -> Any:
        creds = self.credentials
        params: list[tuple[str, str]] = []
        if ch.service:
            params.append(("service", ch.service))
        params.extend(("scope", s) for s in scopes)
        headers: dict[str, str] = {}
        if creds is not None and creds.kind in ("password", "identitytoken"):
            headers["Authorization"] = creds.basic_header()
            if creds.username:
                params.append(("account", creds.username))
        resp = self._send(transport, "GET", realm, params=params, headers=headers)
        if resp.status_code != 200:
            raise self._token_error(resp, realm)
        return resp

    def _oauth_post(self, realm: str, ch: Challenge, scopes: list[str], transport: Any) -> Any:
        """The OAuth2 POST; None when the server does not do it (404/405, or a redirect a POST
        does not follow) so the caller uses GET."""
        creds = self.credentials
        assert creds is not None
        form = {"service": ch.service or "", "client_id": self.client_id, "scope": " ".join(scopes)}
        refresh = self._refresh_token or (creds.secret if creds.kind == "identitytoken" else None)
        if refresh:
            form.update(grant_type="refresh_token", refresh_token=Secret(refresh))
        else:
            form.update(grant_type="password", username=creds.username or "",
                        password=Secret(creds.secret or ""), access_type="offline")
        resp = self._send(transport, "POST", realm, data=form)
        if resp.status_code in (404, 405) or resp.status_code in _REDIRECTS:
            log.debug("token server at %s has no OAuth2 POST (%s): using GET", urlsplit(realm).netloc,
                      resp.status_code)
            return None
        if resp.status_code != 200:
            if resp.status_code in (400, 401) and self._refresh_token and refresh == self._refresh_token:
                self._refresh_token = None  # a refresh token we were given expired: log in again next time
            raise self._token_error(resp, realm)
        return resp

    @staticmethod
    def _token_error(resp: Any, realm: str) -> RegistryError:
        err = error_from_response(resp, "token request")
        if resp.status_code in (400, 401, 403) and not isinstance(err, Unauthorized):
            return Unauthorized(err.message, status=err.status, code=err.code, url=realm)
        return err

    def _token_from(self, resp: Any, scopes: list[str], realm: str) -> _Token:
        """The token of a 200 answer, valid until ``issued_at + expires_in`` (60 s when absent),
        less a renewal margin. Raises ``RegistryError`` for an answer without a token."""
        try:
            doc = load_json(resp.content, f"the token answer of {urlsplit(realm).netloc}", url=realm)
        except ValueError:
            raise RegistryError("the token server answered with something that is not JSON", url=realm) from None
        if not isinstance(doc, dict):
            raise RegistryError("the token server answered with JSON that is not an object", url=realm)
        doc = {k: Secret(v) if k in _SECRET_FIELDS and isinstance(v, str) else v for k, v in doc.items()}
        self.scrubber.hold(f"token {' '.join(scopes)}", *(doc[k] for k in sorted(_SECRET_FIELDS & set(doc))
                                                            if isinstance(doc[k], str)))
        value = doc.get("token") or doc.get("access_token")
        if not value or not isinstance(value, str):
            raise RegistryError("the token server answered without a token", url=realm)
        if isinstance(doc.get("refresh_token"), str) and doc["refresh_token"]:
            self._refresh_token = doc["refresh_token"]
            self.scrubber.hold("refresh_token", self._refresh_token)
        try:
            lifetime = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        # the part of its life the token had already spent when it arrived (issued_at against the
        # answer's Date: one clock), then renewed early so it does not expire in flight: 10% of
        # its life, at most 30 s; and at least 1 s of use, so a stale token cannot loop us
        age = _token_age(doc.get("issued_at"), (getattr(resp, "headers", None) or {}).get("Date"))
        now = time.time()
        margin = min(30.0, lifetime * 0.1)
        return _Token(value, now + max(lifetime - age - margin, 1.0), tuple(scopes), now)

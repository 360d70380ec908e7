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

Where credentials come from, and how they stay out of sight: :mod:`regexplore.http.credentials`
(:class:`Credentials` and :func:`resolve_credentials` are importable from here too).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..errors import RegistryError, Unauthorized, load_json
from .challenges import Challenge, parse_challenges
from .credentials import Credentials, docker_config_path, resolve_credentials
from .logs import show_query_in_logs
from .redact import Scrubber, Secret, ServerText
from .responses import error_from_response, parse_retry_after
from .retry import Attempts
from .urls import REDIRECT_STATUSES, may_send_credentials, refuse_plain_http

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "Challenge",
    "Credentials",
    "RegistryAuth",
    "docker_config_path",
    "parse_challenges",
    "resolve_credentials",
    "scope_for",
]

log = logging.getLogger("regexplore.http.auth")

DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default when expires_in is absent
_CLIENT_ID = "regexplore"
MAX_TOKEN_REDIRECTS = 5
MAX_TOKEN_ANSWER = 1024 * 1024  #: bytes read of any token server answer (a token, a redirect, an error)


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
        issued = issued.replace(tzinfo=UTC)
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    return max(0.0, (sent - issued).total_seconds())


_SECRET_FIELDS = {"token", "access_token", "refresh_token", "id_token"}


def _check_token_url(url: str, what: str) -> None:
    """Refuse a token URL that is not http(s) (``RegistryError``) or that is plain http to a
    non-loopback host (``InsecureCredentials``: credentials and tokens would cross in clear)."""
    p = urlsplit(url)
    if p.scheme not in ("http", "https") or not p.netloc:
        raise RegistryError(f"{what} is not an http(s) URL: {p.scheme or '?'}://…")
    refuse_plain_http(url, f"{what} is plain http on a non-loopback host; refusing to ask it for a token "
                      "(use https)")


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
        show_query_in_logs(realm)  # the realm's service/scope/account are no secret; its hops' may be
        url = realm
        headers = dict(headers or {})
        for _hop in range(MAX_TOKEN_REDIRECTS + 1):
            resp, started = self._send_retrying(transport, method, url, realm, headers=headers, params=params,
                                                data=data)
            location = ServerText(resp.headers.get("Location") or "")
            redirect = resp.status_code in REDIRECT_STATUSES and bool(location)
            transport._record(method, resp.url, resp.status_code, len(resp.content or b""), started,
                              "token redirect" if redirect else "token", origin=realm)
            if not redirect:
                return resp
            target = ServerText(urljoin(resp.url, location))
            _check_token_url(target, "the token server redirected to a URL that")
            moved = not may_send_credentials(url, target)
            if method != "GET" and (moved or resp.status_code not in (307, 308)):
                return resp
            if moved:  # and stays dropped, like requests' should_strip_auth
                headers.pop("Authorization", None)
            url, params = target, None  # the Location carries its own query
        raise RegistryError(f"the token server redirected more than {MAX_TOKEN_REDIRECTS} times", url=realm)

    @staticmethod
    def _send_retrying(transport: Any, method: str, url: str, realm: str, **kw: Any) -> tuple[Any, float]:
        """One hop of a token request: ``transport.send_once``, sent again under the transport's
        :class:`~regexplore.http.retry.RetryPolicy` (GET only: a POST carries the credentials form) on
        the answers it retries or a dropped connection. Every answer's body is read, at most
        :data:`MAX_TOKEN_ANSWER` bytes, under the call's deadline. Returns the response and when its
        attempt started; raises ``RegistryError`` when unreachable or the body breaks,
        ``ResponseTooLarge`` past the cap, ``DeadlineExceeded``."""
        import requests

        tries = Attempts(transport.retry)
        while True:
            started = time.perf_counter()
            try:
                resp = transport.send_once(method, url, stream=True, **kw)
            except Exception as exc:  # noqa: BLE001 - requests' messages may carry the URL: keep only the type
                transport._record(method, url, "error", None, started, "token", origin=realm)
                error = RegistryError(f"token server unreachable: {type(exc).__name__}", url=realm)
                if not isinstance(exc, (requests.ConnectionError, requests.Timeout)) \
                        or isinstance(exc, requests.exceptions.SSLError):
                    raise error from None
                retry_after = None
            else:
                what = f"the answer of token server {urlsplit(realm).netloc}"
                transport.read_capped(resp, MAX_TOKEN_ANSWER, url, what)
                if resp.status_code not in tries.policy.statuses:
                    return resp, started
                error, retry_after = None, parse_retry_after(resp.headers.get("Retry-After"))
            if method != "GET" or not tries.again(retry_after):
                if error is not None:
                    raise error from None
                return resp, started
            if error is None:
                transport._record(method, resp.url, resp.status_code, len(resp.content or b""), started,
                                  "token retry", origin=realm)

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
        if resp.status_code in (404, 405) or resp.status_code in REDIRECT_STATUSES:
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

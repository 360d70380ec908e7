"""The v1 auth hook (protocol.md §1.4): HTTP Basic for the index, ``Token <t1>,<t2>`` for registries.

- the index gets HTTP Basic when you have a username + password (Docker sends it whenever it
  is logged in); ``GET …/images`` / ``PUT …/`` with ``X-Docker-Token: true`` return tokens in
  every ``X-Docker-Token`` response header;
- registries get ``Authorization: Token <t1>,<t2>`` (all tokens of the repository, joined by
  ``,``) unless another Authorization is already set (Basic for a standalone registry, or after
  a ``Basic`` challenge); a leading ``Token `` in a token value (the Python standalone quirk) is
  dropped, so the header never reads ``Token Token …``;
- tokens are never sent over plain http to a non-loopback host.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ...http.auth import Credentials, parse_challenges
from ...http.redact import Scrubber, Secret
from ...http.urls import secure_for_credentials

__all__ = ["V1Auth"]

_SIGNATURE = re.compile(r"signature=([^,\s]+)")


class V1Auth:
    """The v1 auth hook for :class:`~regexplore.http.transport.Transport` (same interface as
    :class:`regexplore.http.auth.RegistryAuth`): Basic for the index, ``Token`` for registries.

    ``scope`` (passed by :class:`V1Client` to every request) is the repository whose tokens
    apply. One instance serves the index and every registry endpoint of a client. Thread-safe.
    ``repr`` shows no secret.
    """

    def __init__(self, credentials: Credentials | None, index_url: str) -> None:
        self.credentials = credentials
        p = urlsplit(index_url)
        self.index_origin = (p.scheme, p.netloc.lower())
        self.index_host = (p.hostname or "").lower()
        self.standalone: bool | None = None  # set by V1Client.ping
        self._basic_origins: set[tuple[str, str]] = set()
        self._token_origins: set[tuple[str, str]] = set()  # registries that refused Basic for Token
        self._tokens: dict[str, list[str]] = {}
        self._refreshers: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        #: cuts the credentials and every token this object holds out of server text
        self.scrubber = Scrubber()
        if credentials is not None:
            credentials.held_by(self.scrubber)

    def __repr__(self) -> str:
        return (f"<V1Auth index={self.index_origin[1]} {self.credentials or 'anonymous'} "
                f"repositories_with_tokens={len(self._tokens)}>")

    @property
    def source(self) -> str:
        """Where the credentials came from (``"anonymous"`` without any)."""
        return self.credentials.source if self.credentials else "anonymous"

    @property
    def _password(self) -> bool:
        return self.credentials is not None and self.credentials.kind == "password"

    # ----------------------------------------------------------------- state
    def set_tokens(self, scope: str, tokens: Sequence[str]) -> None:
        """Replace the tokens of repository ``scope`` (empty: forget them)."""
        with self._lock:
            if tokens:
                self._tokens[scope] = [Secret(t) for t in tokens]  # repr '<redacted>': vars(), locals
            else:
                self._tokens.pop(scope, None)
        # a registry may echo a token whole, or only its signature ("signature=…,repository=…")
        signatures = [m.group(1) for t in tokens for m in _SIGNATURE.finditer(t)]
        self.scrubber.hold(f"tokens {scope}", *tokens, *signatures)

    def token_count(self, scope: str) -> int:
        """How many tokens are held for ``scope`` (the tokens themselves are not exposed)."""
        with self._lock:
            return len(self._tokens.get(scope, ()))

    def set_refresher(self, scope: str, fn: Callable[[], None]) -> None:
        """``fn`` fetches fresh read tokens for ``scope`` (used once per request on a ``Token``
        challenge to a GET, e.g. when a push replaced the read session cookie)."""
        with self._lock:
            self._refreshers[scope] = fn

    def _origin(self, url: str) -> tuple[str, str]:
        p = urlsplit(url)
        return p.scheme, p.netloc.lower()

    def _may_send(self, url: str) -> bool:
        return secure_for_credentials(url)

    def _basic_for(self, url: str) -> bool:
        if not self._password:
            return False
        origin = self._origin(url)
        if origin in self._basic_origins:
            return True  # asked for by a challenge (the transport refuses plain http off loopback)
        if origin in self._token_origins:
            return False
        if not self._may_send(url):
            return False
        if origin == self.index_origin:
            return True  # Docker sends Basic to the index whenever it is logged in
        # Docker 1.3: a standalone private registry over https gets Basic on every request; we keep
        # it to the index's own host (and loopback / https, like the transport's policy)
        return bool(self.standalone) and (urlsplit(url).hostname or "").lower() == self.index_host

    # ----------------------------------------------------------------- the hook
    def headers_for(self, url: str, method: str, scope: str | None) -> dict[str, str]:
        """``Authorization`` for this request: Basic where it applies, else ``Token a,b`` for the
        repository ``scope`` (never over plain http to a non-loopback host), else ``{}``."""
        if self._basic_for(url):
            assert self.credentials is not None
            return {"Authorization": self.credentials.basic_header()}
        if scope and self._may_send(url):
            with self._lock:
                tokens = list(self._tokens.get(scope, ()))
            if tokens:
                return {"Authorization": Secret("Token " + ",".join(tokens))}
        return {}

    def handle_challenge(self, www: str, url: str, method: str, scope: str | None, transport: Any) -> bool:
        """React to a 401: switch this origin to Basic when asked and we hold a password, or (GET
        on a registry) fetch fresh read tokens for ``scope``. True if a retry makes sense."""
        challenges = parse_challenges(www)
        schemes = {c.scheme for c in challenges}
        origin = self._origin(url)
        if "basic" in schemes and self._password and origin not in self._basic_origins \
                and not self._basic_for(url):
            with self._lock:
                self._basic_origins.add(origin)
            return True
        if ("token" in schemes or not schemes) and origin != self.index_origin \
                and origin not in self._basic_origins and self._basic_for(url):
            # Basic went to a registry only by the standalone rule (Docker 1.3 applies it to https
            # indexes only); this one wants the repository's tokens instead
            with self._lock:
                self._token_origins.add(origin)
            if scope and self.token_count(scope) > 0:
                return True
        if ("token" in schemes or not schemes) and scope and origin != self.index_origin \
                and method.upper() in ("GET", "HEAD"):
            with self._lock:
                refresh = self._refreshers.get(scope)
            if refresh is not None:
                refresh()
                return self.token_count(scope) > 0
        return False

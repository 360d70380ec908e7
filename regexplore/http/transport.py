"""One HTTP transport per registry: pooled connections, timeouts, retries, redirects, the trace.

Everything regexplore sends to a registry goes through :meth:`Transport.request`, which

- resolves a path against the registry's base URL;
- adds ``Authorization`` (through :class:`regexplore.http.auth.RegistryAuth`) **only** when the request
  goes to the registry's own origin, and reacts to a 401 challenge once;
- follows redirects itself (never with ``requests``' automatic redirects), so a blob redirected
  to object storage is fetched without the registry's credentials;
- keeps cookies per origin (scheme, host, port): a cookie goes back only to the origin that set
  it, never to a storage redirect on the same host (``requests``' jar matches on the host alone);
- retries 429 / 502 / 503 / 504 and dropped connections for requests without a body, with
  exponential backoff and jitter, honouring ``Retry-After``, bounded in count and total time;
- holds every exchange to the call's deadline and the minimum-progress rule
  (:mod:`regexplore.http.deadline`: a watchdog cuts a server that trickles), raising
  :class:`~regexplore.errors.DeadlineExceeded` instead of retrying past them;
- records every exchange (redacted) in :attr:`Transport.trace_records` for ``Registry.trace``:
  credential-looking query values always, every query value off the registry's origin;
- parses Docker Hub's ``ratelimit-*`` headers into :attr:`Transport.rate_limit`;
- turns error answers into the :mod:`regexplore.errors` tree.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict

from .. import _env
from .._version import __version__
from ..errors import RegistryError, ResponseTooLarge, TooManyRequests
from . import deadline as _deadline
from . import logs
from .deadline import Exchange, WatchedAdapter, limits_from_env
from .logs import show_query_in_logs
from .redact import Secret, ServerText, redact_url, scrub, secret_headers, url_origin
from .responses import error_from_response, parse_retry_after
from .retry import Attempts, RetryPolicy
from .urls import REDIRECT_STATUSES, is_loopback, may_send_credentials, refuse_plain_http, without_userinfo

log = logging.getLogger("regexplore")
logs.install()  # every urllib3 / requests / regexplore log record is cleaned of secrets

__all__ = ["MiB", "RetryPolicy", "Transport", "base_url_for", "is_loopback"]

MiB = 1024 * 1024
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
MAX_REDIRECTS = 10
_IDEMPOTENT = {"GET", "HEAD", "OPTIONS"}
_INSUFFICIENT_SCOPE = re.compile(r'\berror\s*=\s*"?insufficient_scope\b', re.IGNORECASE)
_PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
               "no_proxy", "NO_PROXY")


def base_url_for(host_or_url: str) -> str:
    """The base URL (``scheme://host[:port]``, no trailing slash) for a registry name.

    https by default; http for an explicit ``http://`` URL or a loopback host; Docker Hub's
    names (``docker.io``, ``index.docker.io``) map to ``https://registry-1.docker.io``.
    """
    if "@" in host_or_url:  # before any local holds a copy of the password
        raise ValueError("put credentials in auth=, not in the registry URL")
    text = host_or_url.strip().rstrip("/")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {redact_url(text)!r}")
        host = parts.netloc
        scheme = parts.scheme
    else:
        host = text.split("/", 1)[0]
        scheme = "http" if is_loopback(host) else "https"
    if host.lower() in _HUB_NAMES:
        host, scheme = DOCKER_HUB_API, "https"
    return f"{scheme}://{host}"


@dataclass
class _RateLimit:
    limit: int | None = None
    remaining: int | None = None
    window_s: int | None = None
    source: str | None = None


def _parse_ratelimit(value: str | None) -> tuple[int | None, int | None]:
    """``"100;w=21600"`` → ``(100, 21600)``."""
    if not value:
        return None, None
    parts = [p.strip() for p in value.split(";")]
    try:
        n = int(parts[0])
    except ValueError:
        return None, None
    window = None
    for p in parts[1:]:
        if p.startswith("w="):
            try:
                window = int(p[2:])
            except ValueError:
                pass
    return n, window


class _CookieJar(RequestsCookieJar):
    """A cookie jar whose ``repr`` names its cookies but never shows their values (a session
    cookie is a credential: ``vars(transport)`` and a traceback's locals must not print it)."""

    def __repr__(self) -> str:
        return f"<cookies {sorted({c.name for c in self})}>"


#: where a CA bundle (file) or folder may be named, in this order, when ``ca_bundle=`` is not given
_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def _with_params(url: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str:
    """``url`` with ``params`` appended to its query, encoded exactly as ``requests`` sends them."""
    prepared = requests.models.PreparedRequest()
    prepared.prepare_url(url, params)
    return prepared.url or url


@dataclass
class _Flight:
    """One logical request on its way: where it goes now, what it carries, what it has used up.
    Its ``url`` is a :class:`Secret` once a redirect left the registry's origin, its credential
    headers are, so a traceback that shows locals prints neither."""

    method: str
    url: str
    headers: dict[str, Any]
    data: Any
    scope: str | None
    what: str | None
    retry_body: bool
    tries: Attempts
    challenges: int = 0  # answered by the auth layer (at most 2, see Transport._is_challenge)
    hops: int = 0  # redirects followed
    can_retry: bool = field(init=False)

    def __post_init__(self) -> None:
        self.can_retry = self.method in _IDEMPOTENT or self.retry_body or self.data is None


class _Session(requests.Session):
    """A session that never looks at a redirect: :class:`Transport` follows them by hand, and
    ``requests`` (even with ``allow_redirects=False``, to prepare ``Response.next``) would first read
    a redirect's whole body, uncapped (a hostile server's endless body would fill the memory)."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


class Transport:
    """HTTP to one registry. Thread-safe: a pooled ``requests.Session`` shared by worker threads.

    Parameters
    ----------
    base_url : ``scheme://host[:port]`` (see :func:`base_url_for`).
    auth : a :class:`regexplore.http.auth.RegistryAuth` or None.
    verify : True, False (``insecure=True``) or a CA bundle path.
    cert : client certificate for mTLS (path, or ``(cert, key)``).
    timeout : seconds for connect and for each read.
    pool_size : connections kept per host (the metadata concurrency).

    ``limits`` (:class:`regexplore.http.deadline.Limits`, from the environment) holds the deadlines and
    the minimum-progress rule its exchanges are watched with.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Any = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        timeout: float = 30.0,
        pool_size: int = 16,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.scheme = parts.scheme
        self.host = parts.netloc
        self.origin = url_origin(self.base_url)
        show_query_in_logs(self.base_url)
        logs.install()
        self.auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.limits = limits_from_env()
        self.session = _Session()
        if verify is True:  # requests' own variables (its trust_env reads them per request), then OpenSSL's
            verify = next((_env.text(v) for v in _CA_VARIABLES if _env.text(v)), True)
        self.session.verify = verify
        if cert is not None:
            self.session.cert = cert
        self.session.headers["User-Agent"] = f"regexplore/{__version__} (+python-requests)"
        self.session.cookies = _CookieJar()  # never sent (see send_once); its repr hides values
        # HTTP(S)_PROXY / NO_PROXY are honoured through _proxies_for (cached per origin and proxy settings):
        # requests' own trust_env re-reads the environment and ~/.netrc on every request (~1/3 of our CPU)
        self.session.trust_env = False
        self._env_proxies: dict[tuple[str | None, ...], dict[str, str]] = {}
        adapter = WatchedAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4) + 4, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._jars: dict[tuple[str, str, int | None], RequestsCookieJar] = {}
        self._jars_lock = threading.Lock()
        self.trace_records: list[dict[str, Any]] = []
        self._trace_lock = threading.Lock()
        self.rate_limit = _RateLimit()
        self.insecure_ok = is_loopback(self.host) or self.scheme == "https"

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r})"

    # ----------------------------------------------------------------- helpers
    def url(self, path_or_url: str) -> str:
        """Resolve a path (``/v2/...``) or a relative/absolute URL against the registry."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return urljoin(self.base_url + "/", path_or_url)

    def _proxies_for(self, url: str) -> dict[str, str]:
        """``HTTP(S)_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` for ``url``, recomputed only when they change."""
        p = urlsplit(url)
        key = (p.scheme, p.netloc.lower(), *(_env.text(v) for v in _PROXY_VARS))
        proxies = self._env_proxies.get(key)
        if proxies is None:
            proxies = self._env_proxies[key] = requests.utils.get_environ_proxies(url)
        return proxies

    def same_origin(self, url: str) -> bool:
        """True if ``url`` is on the registry's origin (scheme, host and port)."""
        return url_origin(url) == self.origin

    def redact(self, url: str, origin: str | None = None) -> str:
        """``url`` redacted for a trace, a log or an error: credential-looking query values, and
        every query value when ``url`` is not on ``origin`` (default: the registry's)."""
        home = url_origin(origin) if origin else self.origin
        return redact_url(url, all_values=url_origin(url) != home)

    def cookies_for(self, url: str) -> RequestsCookieJar:
        """The cookie jar of ``url``'s origin: what that origin set, and all it will be sent."""
        key = url_origin(url)
        with self._jars_lock:
            jar = self._jars.get(key)
            if jar is None:
                jar = self._jars[key] = _CookieJar()
            return jar

    def send_once(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                  params: Any = None, data: Any = None, stream: bool = False,
                  exchange: Exchange | None = None) -> requests.Response:
        """One HTTP exchange, no redirects followed, no retries: the session's pool, TLS settings
        and ``User-Agent``, the proxy for ``url`` (``HTTP(S)_PROXY`` / ``NO_PROXY``) and the cookies
        of ``url``'s origin only (cookies it answers with go back to that origin's jar).

        The exchange is watched as ``exchange`` (default: under the running call's deadline and
        :attr:`limits`), which the response keeps (:func:`regexplore.http.deadline.exchange_of`).
        User-info in ``url`` (``user:pw@``) is dropped, never turned into ``Authorization``.
        Raises ``requests.RequestException`` as ``requests`` does."""
        url = without_userinfo(url)
        jar = self.cookies_for(url)
        prepared = requests.Request(
            method, url, params=params, data=data, cookies=jar,
            headers=merge_setting(headers, self.session.headers, dict_class=CaseInsensitiveDict),
        ).prepare()
        exchange = exchange or Exchange(_deadline.current(), self.limits)
        with _deadline.sending(exchange):  # verify per request: REQUESTS_CA_BUNDLE would override it
            resp = self.session.send(prepared, stream=stream, allow_redirects=False, timeout=self.timeout,
                                     proxies=self._proxies_for(url), cert=self.session.cert,
                                     verify=self.session.verify)
        resp.regexplore_exchange = exchange
        extract_cookies_to_jar(jar, prepared, resp.raw)
        return resp

    def _record(self, method: str, url: str, status: int | str, nbytes: int | None, started: float,
                note: str = "", *, origin: str | None = None) -> None:
        """Add one exchange to the trace; ``url`` is redacted with :meth:`redact` (``origin``: the
        origin whose query values may be shown, the registry's by default)."""
        rec = {
            "time": time.time(),
            "method": method,
            "url": scrub(self.redact(scrub(url), origin)),  # a redirect's URL is the server's text
            "status": status,
            "bytes": nbytes,
            "elapsed_ms": (time.perf_counter() - started) * 1000.0,
            "note": scrub(note),
        }
        with self._trace_lock:
            self.trace_records.append(rec)

    def _note_rate_limit(self, resp: requests.Response) -> None:
        h = resp.headers
        if "ratelimit-limit" in h or "ratelimit-remaining" in h:
            lim, w1 = _parse_ratelimit(h.get("ratelimit-limit"))
            rem, w2 = _parse_ratelimit(h.get("ratelimit-remaining"))
            self.rate_limit = _RateLimit(lim, rem, w1 or w2, h.get("docker-ratelimit-source"))

    # ----------------------------------------------------------------- the one entry point
    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        data: Any = None,
        stream: bool = False,
        ok: Iterable[int] = (200,),
        scope: str | None = None,
        what: str | None = None,
        max_bytes: int | None = None,
        follow_redirects: bool = True,
        retry_body: bool = False,
    ) -> requests.Response:
        """Send one logical request; return the final response whose status is in ``ok``.

        ``scope`` is the token scope the request needs (``repository:x:pull``); the auth layer
        derives it from the path when None. With ``stream=False`` the body is read (refusing
        more than ``max_bytes``: :class:`ResponseTooLarge`); with ``stream=True`` the caller
        must close the response. ``retry_body=True`` allows replaying a request with a body
        (only for bodies that are bytes and idempotent, e.g. a manifest PUT).

        The request runs under the running call's deadline (:mod:`regexplore.http.deadline`); outside
        any call, one that is not streamed gets :attr:`limits`' metadata deadline of its own.

        Raises the matching :class:`RegistryError` subclass for any other status,
        :class:`DeadlineExceeded` once the deadline has passed or when the server stayed under the
        minimum progress through the retries, and :class:`RegistryError` for connection failures
        after the retries.
        """
        url = self.url(path_or_url)
        if "@" in url and "@" in urlsplit(url).netloc:
            path_or_url = url = redact_url(url)  # keep the password out of this frame's locals
            raise ValueError(f"put credentials in auth=, not in the URL ({url})")
        with _deadline.within(None if stream else self.limits.deadline, what or f"{method.upper()} request"):
            try:
                return self._request(method, path_or_url, headers=headers, params=params, data=data,
                                     stream=stream, ok=ok, scope=scope, what=what, max_bytes=max_bytes,
                                     follow_redirects=follow_redirects, retry_body=retry_body)
            except RegistryError as exc:  # a connection-level failure after the deadline is the deadline's
                call = _deadline.current()
                if type(exc) is RegistryError and exc.status is None and call is not None and call.expired():
                    raise call.error(exc.url) from exc
                raise
            except requests.RequestException as exc:  # a body read outside the retry loop (a token) broke
                call = _deadline.current()
                url = self.redact(url)
                if call is not None and call.expired():
                    raise call.error(url) from None
                raise RegistryError(f"connection broke: {type(exc).__name__}", url=url) from None

    def _request(self, method: str, path_or_url: str, *, headers: Mapping[str, str] | None,
                 params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None, data: Any, stream: bool,
                 ok: Iterable[int], scope: str | None, what: str | None, max_bytes: int | None,
                 follow_redirects: bool, retry_body: bool) -> requests.Response:
        """:meth:`request` once the URL is checked and the deadline set up: send once, follow a
        redirect, answer a challenge, try again, until an answer in ``ok`` (or an error) comes."""
        method = method.upper()
        ok = tuple(ok)
        url = self.url(path_or_url)
        if params:  # into the URL once (as requests would encode them), so the trace shows the query
            url = _with_params(url, params)
        f = _Flight(method, url, secret_headers(headers), data, scope, what, retry_body, Attempts(self.retry))
        call = _deadline.current()
        while True:
            if call is not None and call.expired():
                raise call.error(self.redact(f.url))
            exchange = Exchange(call, self.limits)
            started = time.perf_counter()
            send_headers = self._headers_for(f)  # its credentials are '<redacted>' in a traceback's locals
            resp = self._send(f, send_headers, exchange, started)
            if resp is None or (follow_redirects and self._follow_redirect(f, resp, started)):
                continue
            if self._is_challenge(f, resp):
                if self._answer_challenge(f, resp, exchange, started, ok):
                    continue
                return resp
            if self._retry_status(f, resp, exchange, started):
                continue
            if resp.status_code not in ok:
                raise self._refused(f, resp, exchange, started)
            if stream:
                cl = resp.headers.get("Content-Length")
                self._record(f.method, f.url, resp.status_code, int(cl) if cl and cl.isdigit() else None,
                             started, "stream")
                return resp
            if self._read_body(f, resp, exchange, started, max_bytes):
                return resp

    # ----------------------------------------------------------------- send once
    def _headers_for(self, f: _Flight) -> dict[str, Any]:
        """The headers to send ``f`` with now: its own, plus the auth layer's credentials only where
        :func:`~regexplore.http.urls.may_send_credentials` allows (the registry's origin). Raises
        :class:`InsecureCredentials` rather than send credentials over plain http off loopback."""
        send_headers = dict(f.headers)
        if self.auth is not None and may_send_credentials(self.base_url, f.url):
            auth_headers = secret_headers(self.auth.headers_for(f.url, f.method, f.scope))
            if auth_headers:
                refuse_plain_http(f.url, "refusing to send credentials over plain http to a non-loopback host; "
                                  "use https (or a loopback address)", shown=self.redact(f.url))
            send_headers.update(auth_headers)
        return send_headers

    def _send(self, f: _Flight, send_headers: dict[str, Any], exchange: Exchange,
              started: float) -> requests.Response | None:
        """Send ``f`` once where it goes now, with ``send_headers``. Returns the response (body not
        read), or None after a dropped connection when ``f`` is to be sent again (slept already).
        Raises :class:`DeadlineExceeded` or :class:`RegistryError`."""
        try:
            resp = self.send_once(f.method, f.url, headers=send_headers, data=f.data, stream=True,
                                  exchange=exchange)
        except requests.RequestException as exc:
            self._connection_failed(f, exc, exchange, started)
            return None
        self._note_rate_limit(resp)
        return resp

    def _connection_failed(self, f: _Flight, exc: requests.RequestException, exchange: Exchange,
                           started: float) -> None:
        """Trace an exchange ``exc`` broke; return (after the retry policy's sleep) when ``f`` is to
        be sent again, else raise :class:`DeadlineExceeded` (late or cut), or :class:`RegistryError`
        (TLS, another failure, or the connection kept dropping)."""
        self._record(f.method, f.url, "error", None, started, _cut_note(exchange) or type(exc).__name__)
        url = self.redact(f.url)
        if exchange.late():
            raise exchange.error(url) from None
        if isinstance(exc, requests.exceptions.SSLError) and exchange.cut is None:
            raise RegistryError(f"TLS handshake with {urlsplit(f.url).netloc} failed (certificate not "
                                "trusted, or a client certificate is required; a private CA: "
                                f"ca_bundle= or one of {', '.join(_CA_VARIABLES)})", url=url) from None
        if not isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            raise RegistryError(f"request failed: {type(exc).__name__}", url=url) from None
        if f.can_retry and f.tries.again():
            return
        raise exchange.error(url) or RegistryError(
            f"cannot reach {self.host}: {type(exc).__name__}", url=url) from None

    # ----------------------------------------------------------------- follow redirects
    def _follow_redirect(self, f: _Flight, resp: requests.Response, started: float) -> bool:
        """When ``resp`` is a redirect with a ``Location``: point ``f`` at it (a 303 turns into a
        GET without a body) and return True; False for any other answer. Redirects are followed
        here, by hand, so credentials go only where :meth:`_send` allows. Raises
        :class:`RegistryError` past :data:`MAX_REDIRECTS` hops."""
        status = resp.status_code
        if status not in REDIRECT_STATUSES or "Location" not in resp.headers:
            return False
        self._record(f.method, f.url, status, 0, started, "redirect")
        self._discard(resp)
        f.hops += 1
        if f.hops > MAX_REDIRECTS:
            raise RegistryError("too many redirects", status=status, url=self.redact(f.url))
        url = ServerText(without_userinfo(urljoin(f.url, resp.headers["Location"])))
        # a signed storage URL: its signature stays out of tracebacks that show locals
        f.url = url if self.same_origin(url) else Secret(url)
        if status == 303:
            f.method, f.data = "GET", None
        return True

    # ----------------------------------------------------------------- answer challenges
    def _is_challenge(self, f: _Flight, resp: requests.Response) -> bool:
        """Whether to hand this answer to the auth layer: an answer from where credentials may go,
        the first 401 of a request, and one ``insufficient_scope`` challenge (401 or 403) after
        that, so a token that does not cover the scope the registry now names is fetched again
        once before giving up."""
        if self.auth is None or not may_send_credentials(self.base_url, f.url):
            return False
        insufficient = _INSUFFICIENT_SCOPE.search(resp.headers.get("WWW-Authenticate", "")) is not None
        if resp.status_code == 401 and f.challenges == 0:
            return True
        return resp.status_code in (401, 403) and insufficient and f.challenges < 2

    def _answer_challenge(self, f: _Flight, resp: requests.Response, exchange: Exchange, started: float,
                          ok: tuple[int, ...]) -> bool:
        """Let the auth layer answer the challenge in ``resp`` (a token, Basic). True when ``f`` is
        to be sent again; False when the auth layer has nothing to add but the status is in
        ``ok`` (``resp`` is the answer). Raises the status' :class:`RegistryError` otherwise, or
        when a body that cannot be replayed would have to be sent again."""
        # drained so the connection goes back to the pool; the body (it may echo secrets) stays in resp,
        # and the challenge is '<redacted>' in tracebacks' locals (parsed Challenge objects show their
        # parameters scrubbed)
        self._record(f.method, f.url, resp.status_code, len(self._drain(resp, exchange, f.url)), started,
                     "challenge")
        www = Secret(resp.headers.get("WWW-Authenticate", ""))
        if self.auth.handle_challenge(www, f.url, f.method, f.scope, self):
            f.challenges += 1
            if f.data is not None and not (f.retry_body or isinstance(f.data, (bytes, str))):
                raise self._error(resp, f.what)
            return True
        if resp.status_code in ok:
            return False
        raise self._error(resp, f.what)

    # ----------------------------------------------------------------- try again, or give up
    def _retry_status(self, f: _Flight, resp: requests.Response, exchange: Exchange, started: float) -> bool:
        """True (after the retry policy's sleep) when ``resp``'s status is worth another try and
        one is left; False when it is not. Raises the status' error when the sleeping budget or
        the deadline leaves no time for the try."""
        if resp.status_code not in self.retry.statuses or not f.can_retry or not f.tries.left():
            return False
        self._record(f.method, f.url, resp.status_code, len(self._drain(resp, exchange, f.url)), started, "retry")
        if not f.tries.again(parse_retry_after(resp.headers.get("Retry-After"))):
            raise self._error(resp, f.what)
        return True

    def _refused(self, f: _Flight, resp: requests.Response, exchange: Exchange, started: float) -> RegistryError:
        """The error for an answer outside ``ok`` (traced; a 429 names the rate limit left)."""
        # the body (it may echo secrets) stays in resp, not in a local a traceback would show
        self._record(f.method, f.url, resp.status_code, len(self._drain(resp, exchange, f.url)), started)
        err = self._error(resp, f.what)
        if isinstance(err, TooManyRequests) and self.rate_limit.remaining is not None:
            err.message += f" (rate limit remaining: {self.rate_limit.remaining})"
            err.args = (err._text(),)
        return err

    def _read_body(self, f: _Flight, resp: requests.Response, exchange: Exchange, started: float,
                   max_bytes: int | None) -> bool:
        """Read the body of the final answer into ``resp``: True when read; False (after the retry
        policy's sleep) when the connection broke mid-body and ``f`` is to be sent again. Raises
        :class:`ResponseTooLarge`, :class:`DeadlineExceeded` or the :class:`RegistryError` of the
        break once no try is left."""
        try:
            body = self.read_capped(resp, max_bytes, f.url)
        except ResponseTooLarge:
            raise
        except RegistryError as exc:  # the connection broke mid-body: retry like a dropped connection
            self._record(f.method, f.url, "error", None, started, _cut_note(exchange) or "body cut")
            if exchange.late():
                raise exchange.error(self.redact(f.url)) from None
            if f.can_retry and f.tries.again():
                return False
            cut = exchange.error(self.redact(f.url))
            if cut is None:
                raise
            raise cut from exc
        self._record(f.method, f.url, resp.status_code, len(body), started)
        return True

    def _error(self, resp: requests.Response, what: str | None) -> RegistryError:
        """``error_from_response`` with the URL redacted by :meth:`redact`."""
        return error_from_response(resp, what, url=self.redact(resp.url))

    @staticmethod
    def _discard(resp: requests.Response) -> None:
        """Finish with a response whose body we do not need: a small body is read so the
        connection goes back to the pool; a large or unknown-length one closes the connection."""
        cl = resp.headers.get("Content-Length")
        if resp.request.method == "HEAD" or (cl is not None and cl.isdigit() and int(cl) <= 64 * 1024):
            try:
                _ = resp.content
                return
            except requests.RequestException:
                pass
        resp.close()

    def _drain(self, resp: requests.Response, exchange: Exchange, url: str) -> bytes:
        """The body of an answer read only for its status (an error, a challenge, a retry), up to
        1 MiB; one that is too large, cut or too slow counts as empty (the status still tells).
        Raises :class:`DeadlineExceeded` when the deadline passed meanwhile."""
        try:
            return self.read_capped(resp, MiB, url)
        except RegistryError:
            if exchange.late():
                raise exchange.error(self.redact(url)) from None
            resp._content = b""
            resp._content_consumed = True
            return b""

    def read_capped(self, resp: requests.Response, cap: int | None, url: str, what: str = "response") -> bytes:
        """The body of ``resp`` (sent with ``stream=True``), kept in it as ``resp.content``; ``what``
        names it in errors. Raises :class:`ResponseTooLarge` past ``cap`` bytes,
        :class:`RegistryError` when the connection breaks, :class:`DeadlineExceeded` when the
        watchdog cut it (a body without a length would otherwise just end early)."""
        if resp.request.method == "HEAD":
            return resp.content  # empty; reading it hands the connection back to the pool
        cl = resp.headers.get("Content-Length")
        if cap is not None and cl and cl.isdigit() and int(cl) > cap:
            resp.close()
            raise ResponseTooLarge(f"{what} of {int(cl)} bytes is over the {cap}-byte cap",
                                   url=self.redact(url))
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in resp.iter_content(256 * 1024):
                total += len(chunk)
                if cap is not None and total > cap:
                    resp.close()
                    raise ResponseTooLarge(f"{what} is over the {cap}-byte cap", url=self.redact(url))
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise RegistryError(f"connection broke while reading: {type(exc).__name__}",
                                url=self.redact(url)) from None
        exchange = _deadline.exchange_of(resp)
        cut = exchange.error(self.redact(url)) if exchange is not None and exchange.cut else None
        if cut is not None:
            resp.close()
            raise cut
        body = b"".join(chunks)
        resp._content = body
        resp._content_consumed = True
        return body

    def close(self) -> None:
        self.session.close()


def _cut_note(exchange: Exchange) -> str | None:
    """The trace note for an exchange the watchdog cut (None when it did not)."""
    return {"deadline": "deadline passed", "slow": "too slow"}.get(exchange.cut or "")

"""regexplore's exceptions: one small tree.

::

    RegistryError                 any failure talking to a registry (status, code, message, redacted url)
     ├── NotFound                 404, or MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN
     ├── Unauthorized             401: no or wrong credentials (the registry's message is kept)
     ├── Denied                   403 / DENIED / insufficient scope
     ├── TooManyRequests          429 (``retry_after`` in seconds when the server said)
     ├── DigestMismatch           content does not hash to the digest it was asked for
     ├── UnsupportedMediaType     a manifest / layer type regexplore cannot read
     ├── ResponseTooLarge         a body over a sane cap (manifests 8 MiB, listings 64 MiB)
     ├── AlreadyExists            v1 push: "Image already exists"
     ├── InsecureCredentials      credentials would go over plain http to a non-loopback host
     ├── UnsafeLayer              a layer entry that would escape the extraction folder
     └── DeadlineExceeded         a call ran past its deadline, or a server sent too slowly
    InvalidReference (ValueError) an image reference that does not parse

Every message is built from redacted parts: no password, token or signed-URL signature ever
appears in ``str(error)`` or ``repr(error)``; text a server sent (which may echo what it was sent)
passes through :func:`scrub` first, which cuts out every secret a live :class:`Scrubber` holds.

JSON from a server is parsed by :func:`load_json`, which refuses a document nested deeper than
``REGEXPLORE_MAX_JSON_DEPTH`` levels (default 256) with an error naming it.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import threading
import warnings
import weakref
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

__all__ = [
    "RegistryError",
    "NotFound",
    "Unauthorized",
    "Denied",
    "TooManyRequests",
    "DigestMismatch",
    "UnsupportedMediaType",
    "ResponseTooLarge",
    "AlreadyExists",
    "InsecureCredentials",
    "UnsafeLayer",
    "DeadlineExceeded",
    "InvalidReference",
    "redact_url",
    "Secret",
    "secret_headers",
    "Scrubber",
    "scrub",
    "shown",
    "ServerText",
    "load_json",
    "url_origin",
    "error_from_response",
]

# Query parameters that carry credentials in signed URLs: any name containing one of these words
# (S3 / GCS / Azure / OSS / Swift / CloudFront / Akamai / Docker Hub's CDN), plus short names that
# cannot be guessed from a word (Azure SAS fields, Akamai's hdnts, Docker Hub's verify, OAuth's code).
_SECRET_WORDS = re.compile(r"sig|token|key|cred|auth|secret|pass|hmac|policy|session", re.IGNORECASE)
_SECRET_NAMES = {"verify", "code", "hdnts", "se", "sp", "sv", "skoid", "sktid", "skt", "ske", "sks", "skv",
                 "expires", "x-amz-date"}
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-registry-auth"}


def _is_secret_param(name: str) -> bool:
    return bool(_SECRET_WORDS.search(name)) or name.lower() in _SECRET_NAMES


class Secret(str):
    """A string whose ``repr`` is ``'<redacted>'``: hold ``Authorization`` values, passwords and
    tokens in one, so tracebacks that show locals (pytest ``--showlocals``, rich, IPython) do not
    print them. Everything else (``str()``, sending it, comparing it) sees the real value; a slice
    of a secret is still a secret (rich cuts long strings before taking their repr)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"

    def __getitem__(self, key: Any) -> "Secret":
        return Secret(str.__getitem__(self, key))


def secret_headers(headers: Any) -> dict[str, Any]:
    """A copy of ``headers`` with credential-bearing values (``Authorization``,
    ``Proxy-Authorization``, ``Cookie``, ``X-Registry-Auth``) wrapped in :class:`Secret`."""
    return {k: Secret(v) if isinstance(v, str) and k.lower() in _SECRET_HEADERS else v
            for k, v in dict(headers or {}).items()}


REDACTED = "<redacted>"
_WHOLE_WORD_BELOW = 8  #: shorter secret forms are cut only as whole words ("pw1", not the "pw" of "password")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


#: the characters left unencoded by a query value, a path, :func:`redact_url`, ``requests.requote_uri``
_URL_SAFE_SETS = ("", "/", "/:,", "!#$%&'()*+,/:;=?@[]~")


def secret_forms(value: str) -> set[str]:
    """``value`` and the forms a server may echo it in, or that we turn it into when showing it:
    URL-encoded (``quote`` / ``quote_plus`` with the safe sets of a query, a path,
    :func:`redact_url` and ``requests``' ``requote_uri``; and once more, as a form echoed inside a
    query), JSON-escaped (ASCII or not, ``/`` escaped or not), ``repr``/``ascii``, HTML-escaped,
    and base64 (standard and URL-safe, without padding so the padded form matches too)."""
    forms = {value, html.escape(value), repr(value)[1:-1], ascii(value)[1:-1],
             json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    encoded = {enc(value, safe=safe) for enc in (quote, quote_plus) for safe in _URL_SAFE_SETS}
    forms |= encoded | {enc(f, safe="") for enc in (quote, quote_plus) for f in encoded}
    forms |= {f.replace("/", "\\/") for f in forms if "/" in f}
    raw = value.encode("utf-8", "surrogatepass")
    forms |= {base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return {f for f in forms if f}


def _form_pattern(form: str) -> str:
    """A regex for ``form``: its percent-escapes in either case; a short form only as a whole word."""
    pos, out = 0, []
    for m in _PERCENT.finditer(form):
        out.append(re.escape(form[pos:m.start()]))
        out.append("%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in m.group()[1:]))
        pos = m.end()
    out.append(re.escape(form[pos:]))
    pattern = "".join(out)
    if len(form) < _WHOLE_WORD_BELOW:
        pattern = rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])"
    return pattern


_NOTHING = re.compile(r"(?!)")
_SCRUBBERS: "weakref.WeakSet[Scrubber]" = weakref.WeakSet()
_SCRUBBERS_LOCK = threading.Lock()


class Scrubber:
    """The secrets one client holds (its credentials, the tokens it was given), cut out of text
    that came from a server: ``scrubber(text)`` replaces each of them, in every form of
    :func:`secret_forms`, with ``<redacted>``.

    ``hold(key, *values)`` sets the values kept under ``key`` (a renewed token replaces the one it
    renews; no values forget the key). Every live scrubber also serves :func:`scrub`, which
    :class:`RegistryError`, the transport's trace and regexplore's log filter apply to whatever
    they show. Its ``repr`` shows only how many secrets it holds. Thread-safe.
    """

    __slots__ = ("_held", "_pattern", "_lock", "__weakref__")

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, ...]] = {}
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        with _SCRUBBERS_LOCK:
            _SCRUBBERS.add(self)

    def __repr__(self) -> str:
        return f"<Scrubber: secrets held under {len(self._held)} keys>"

    def __reduce__(self) -> Any:
        raise TypeError("a Scrubber cannot be pickled")

    def hold(self, key: str, *values: str | None) -> None:
        """Scrub ``values`` (None and "" ignored) from now on, instead of what ``key`` held."""
        kept = tuple(Secret(v) for v in values if v)
        with self._lock:
            if kept:
                self._held[key] = kept
            else:
                self._held.pop(key, None)
            forms = {f for vs in self._held.values() for v in vs for f in secret_forms(v)}
            self._pattern = (re.compile("|".join(_form_pattern(f) for f in sorted(forms, key=len, reverse=True)))
                             if forms else None)

    def __call__(self, text: str) -> str:
        """``text`` with every held secret replaced by ``<redacted>``."""
        # no local holds the pattern: its repr would spell out every secret in a traceback
        return (self._pattern or _NOTHING).sub(REDACTED, text) if text else text


def scrub(text: Any) -> Any:
    """``text`` with the secrets of every live :class:`Scrubber` cut out (any other value as is)."""
    if not isinstance(text, str) or not text:
        return text
    with _SCRUBBERS_LOCK:
        live = list(_SCRUBBERS)
    for scrubber in live:
        text = scrubber(text)
    return str(text)


class ServerText(str):
    """A string a server sent (a challenge, a redirect's ``Location``) held in a local variable:
    its ``repr``, which tracebacks that show locals print, has held secrets cut out
    (:func:`scrub`). Everything else sees the text as sent."""

    __slots__ = ()

    def __repr__(self) -> str:  # scrubbed before repr escapes it (and so changes its secrets' forms)
        return repr(scrub(str(self)))


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message (a value a server sent: a string, or JSON), its strings'
    secrets cut out (:func:`scrub`) before ``repr`` escapes them and before it is shortened to
    ``limit`` characters (a cut first would leave a secret's beginning uncut)."""
    return repr(_scrub_detail(value))[:limit]


def _scrub_detail(detail: Any, depth: int = 0) -> Any:
    """An error's ``detail`` (any JSON) with held secrets cut out of its strings and keys; what
    lies deeper than :data:`DEFAULT_JSON_DEPTH` levels is dropped."""
    if isinstance(detail, str):
        return scrub(detail)
    if depth > DEFAULT_JSON_DEPTH and isinstance(detail, (dict, list, tuple)):
        return None
    if isinstance(detail, dict):
        return {scrub(k): _scrub_detail(v, depth + 1) for k, v in detail.items()}
    if isinstance(detail, (list, tuple)):
        return [_scrub_detail(v, depth + 1) for v in detail]
    return detail


def url_origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, lowercase, with the scheme's default port filled in:
    ``https://R.example`` and ``https://r.example:443`` are one origin."""
    try:
        p = urlsplit(url)
        port = p.port
    except ValueError:
        return ("", "", None)
    scheme = p.scheme.lower()
    return scheme, (p.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def redact_url(url: str, *, all_values: bool = False) -> str:
    """Return ``url`` with user-info and credential-bearing query values replaced by ``REDACTED``.

    A query value is redacted when its name looks like a credential (it contains ``sig``,
    ``token``, ``key``, ``cred``, ``auth``, ``secret``, ``pass``, ``hmac``, ``policy`` or
    ``session``, any case, or is one of a few known short names such as ``hdnts`` or ``se``);
    with ``all_values=True`` every value is (for URLs off the registry's origin: a storage or CDN
    redirect whose parameters we cannot judge). Names stay, so a trace still shows what was sent.

    >>> redact_url("https://s.example/o?temp_url_sig=abc&temp_url_expires=9")
    'https://s.example/o?temp_url_sig=REDACTED&temp_url_expires=9'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "REDACTED" if all_values or _is_secret_param(k) else v) for k, v in pairs], safe="/:,"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class RegistryError(Exception):
    """A registry answered with an error, or could not be talked to.

    Attributes: ``status`` (HTTP status or None), ``code`` (OCI error code such as
    ``MANIFEST_UNKNOWN``, or None), ``message`` (the registry's message), ``url`` (redacted),
    ``detail`` (the error's ``detail`` value, any JSON).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        url: str | None = None,
        detail: Any = None,
    ) -> None:
        self.message = scrub(message)  # a server's words may echo what it was sent
        self.status = status
        self.code = scrub(code)
        self.url = scrub(redact_url(scrub(url))) if url else None  # as sent and as re-encoded
        self.detail = _scrub_detail(detail)
        super().__init__(self._text())

    def _text(self) -> str:
        head = []
        if self.status is not None:
            head.append(str(self.status))
        if self.code:
            head.append(self.code)
        text = f"{' '.join(head)}: {self.message}" if head else self.message
        if self.url:
            text += f" ({self.url})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text()!r})"


class NotFound(RegistryError):
    """The repository, tag, manifest or blob does not exist (404 / *_UNKNOWN)."""


class Unauthorized(RegistryError):
    """401: the registry wants credentials, or the ones given were wrong."""


class Denied(RegistryError):
    """403 / DENIED: authenticated, but not allowed (insufficient scope)."""


class TooManyRequests(RegistryError):
    """429: rate limited. ``retry_after`` is the server's hint in seconds, or None."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class DigestMismatch(RegistryError):
    """Content did not hash to the expected digest. ``expected`` and ``actual`` are ``alg:hex``."""

    def __init__(self, expected: str, actual: str, *, url: str | None = None, what: str = "content") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what} digest mismatch: expected {expected}, got {actual}", url=url)


class UnsupportedMediaType(RegistryError):
    """A manifest, config or layer media type that regexplore cannot read."""


class Unsupported(RegistryError):
    """The registry does not support the operation (``UNSUPPORTED``, 405), e.g. a delete on a
    registry whose storage has deletes disabled."""


class ResponseTooLarge(RegistryError):
    """A response body larger than the cap for its kind; nothing of it is kept."""


class AlreadyExists(RegistryError):
    """v1 push: the registry already has this image ("Image already exists")."""


class InsecureCredentials(RegistryError):
    """Credentials would be sent over plain http to a host that is not loopback."""


class UnsafeLayer(RegistryError):
    """A layer holds an entry that is not safe to extract (absolute path, ``..``, escaping link,
    device node) or decompresses beyond the configured cap. ``entry`` names it."""

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        self.entry = entry
        super().__init__(message)


class DeadlineExceeded(RegistryError):
    """A call ran past its deadline (``REGEXPLORE_DEADLINE``, ``REGEXPLORE_TRANSFER_DEADLINE``), or
    a server sent slower than the minimum progress (``REGEXPLORE_LOW_SPEED_LIMIT`` bytes/s over
    ``REGEXPLORE_LOW_SPEED_TIME`` s); see :mod:`regexplore.deadline`. ``seconds`` is the limit hit."""

    def __init__(self, message: str, *, seconds: float | None = None, **kw: Any) -> None:
        self.seconds = seconds
        super().__init__(message, **kw)


class InvalidReference(ValueError):
    """An image reference that does not follow the distribution/reference grammar."""


_BY_CODE: dict[str, type[RegistryError]] = {
    "MANIFEST_UNKNOWN": NotFound,
    "BLOB_UNKNOWN": NotFound,
    "NAME_UNKNOWN": NotFound,
    "BLOB_UPLOAD_UNKNOWN": NotFound,
    "UNAUTHORIZED": Unauthorized,
    "DENIED": Denied,
    "TOOMANYREQUESTS": TooManyRequests,
    "UNSUPPORTED": Unsupported,
}
_BY_STATUS: dict[int, type[RegistryError]] = {
    401: Unauthorized,
    403: Denied,
    404: NotFound,
    429: TooManyRequests,
    405: Unsupported,
    415: UnsupportedMediaType,
}


MAX_JSON_DEPTH_ENV = "REGEXPLORE_MAX_JSON_DEPTH"
DEFAULT_JSON_DEPTH = 256  #: levels of arrays/objects in one JSON document (OCI documents use fewer than 10)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _json_depth_cap() -> int:
    """``REGEXPLORE_MAX_JSON_DEPTH``, else :data:`DEFAULT_JSON_DEPTH`. A value that is not a positive
    whole number is reported with a ``RuntimeWarning`` and the default is used (an exception here
    would be taken for "not JSON" by the callers of :func:`load_json`)."""
    raw = os.environ.get(MAX_JSON_DEPTH_ENV, "").strip()
    if not raw:
        return DEFAULT_JSON_DEPTH
    value = int(raw) if raw.isdigit() else 0
    if value <= 0:
        warnings.warn(f"{MAX_JSON_DEPTH_ENV} must be a positive whole number of levels, not {raw!r:.40}; "
                      f"using {DEFAULT_JSON_DEPTH}", RuntimeWarning, stacklevel=3)
        return DEFAULT_JSON_DEPTH
    return value


def _nested_deeper_than(data: bytes | str, cap: int) -> bool:
    """True when JSON text ``data`` opens more than ``cap`` arrays/objects inside each other
    (brackets inside strings do not count). Counting brackets first keeps the common case fast."""
    opening = ("[", "{") if isinstance(data, str) else (b"[", b"{")
    if data.count(opening[0]) + data.count(opening[1]) <= cap:  # type: ignore[arg-type]
        return False
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth = 0
    for byte in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > cap:
            return True
    return False


def load_json(data: bytes | str, what: str, *, url: str | None = None,
              error: type[RegistryError] = RegistryError) -> Any:
    """``json.loads(data)`` for a document from a server (or from a file someone else wrote).

    Python's parser recurses once per level: ``[[[[…`` 100 000 deep would raise a bare
    ``RecursionError`` (or, under a raised recursion limit, overflow the C stack). A document nested
    deeper than ``REGEXPLORE_MAX_JSON_DEPTH`` levels (default :data:`DEFAULT_JSON_DEPTH`) raises
    ``error`` (a :class:`RegistryError` class) whose message names ``what``, e.g. ``"manifest
    demo/x:1 is nested too deeply (…)"``. Text that is not JSON raises ``ValueError``, as
    ``json.loads`` does."""
    cap = _json_depth_cap()
    if _nested_deeper_than(data, cap):
        raise error(f"{what} is nested too deeply (over {cap} levels of arrays and objects; "
                    f"{MAX_JSON_DEPTH_ENV} sets the limit)", url=url)
    try:
        return json.loads(data)
    except RecursionError:  # a deep document under a low recursion limit, or a deep call stack
        raise error(f"{what} is nested too deeply for Python's JSON parser", url=url) from None


_XML_ERROR = re.compile(r"<Error>.*?<Code>([^<]*)</Code>(?:.*?<Message>([^<]*)</Message>)?", re.DOTALL)


def parse_error_body(body: bytes, content_type: str = "") -> tuple[str | None, str | None, Any]:
    """Parse an OCI / Docker / v1 error body into ``(code, message, detail)``.

    Accepts ``{"errors": [{"code", "message", "detail"}]}`` with ``detail`` as list, object,
    string or null; an OAuth2 token error ``{"error", "error_description"}`` (RFC 6749 §5.2);
    the v1 shape ``{"error": "..."}``; an object store's XML ``<Error><Code>…</Code>
    <Message>…</Message></Error>`` (S3 / GCS / Azure, e.g. an expired signed URL); and any other
    non-JSON or text/plain body (its first line becomes the message).
    """
    # secrets are cut out before anything is cut short (a cut would leave a secret's beginning)
    text = scrub(body[:65536].decode("utf-8", "replace")).strip()[:4096]
    if not text:
        return None, None, None
    try:
        doc = load_json(text, "error body")
    except (ValueError, RegistryError):  # not JSON, or nested too deeply: read as text
        doc = None
    xml = _XML_ERROR.search(text) if doc is None else None
    if xml is not None:
        code = html.unescape(xml.group(1)).strip()
        return code or None, html.unescape(xml.group(2) or "").strip() or code or None, None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc.get("error_description"):
        return doc["error"], str(doc["error_description"]), None
    if isinstance(doc, dict):
        errs = doc.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            first = errs[0]
            msgs = [str(e.get("message") or e.get("code") or "") for e in errs if isinstance(e, dict)]
            code = first.get("code")
            return (str(code) if code else None), "; ".join(m for m in msgs if m) or None, first.get("detail")
        if "error" in doc:
            return None, str(doc["error"]), doc.get("detail")
        if "message" in doc:
            return doc.get("code"), str(doc["message"]), doc.get("detail")
        if "details" in doc:  # some token servers
            return None, str(doc["details"]), None
    if isinstance(doc, str):
        return None, doc, None
    return None, text.splitlines()[0][:300], None


def _challenge_error(www: str) -> tuple[str | None, str | None]:
    """``(code, message)`` from a challenge's ``error=`` (RFC 6750 §3.1), or ``(None, None)``.

    distribution answers a request without a response body (a blob ``HEAD``) that its token does
    not cover with only ``Bearer realm=…,service=…,scope="repository:x:pull",error="insufficient_scope"``
    (a GET or POST also gets the JSON body ``UNAUTHORIZED``): the error becomes the code,
    upper-cased like the registry's codes (``INSUFFICIENT_SCOPE``, ``INVALID_TOKEN``), and the
    message is ``error_description`` or the error in words, naming the scope asked for. realm and
    service are left out (a realm URL may carry a query)."""
    from .auth import parse_challenges  # auth imports this module

    challenge = next((c for c in parse_challenges(www) if c.error), None)
    if challenge is None:
        return None, None
    error = challenge.error.strip()
    message = scrub(challenge.params.get("error_description", "")).strip()[:300] or error.replace("_", " ")
    if challenge.params.get("scope"):
        message += f" (needs {scrub(challenge.params['scope'])[:300]})"
    return error.upper(), message


def error_from_response(resp: Any, what: str | None = None, *, url: str | None = None) -> RegistryError:
    """Build the right ``RegistryError`` subclass from a ``requests.Response``-like object.

    ``url`` replaces ``resp.url`` in the error (the transport passes it redacted with what it
    knows: every query value of a URL off the registry's origin). A 401 / 403 whose body names no
    code takes code and message from the challenge's ``error=`` (:func:`_challenge_error`)."""
    status = getattr(resp, "status_code", None)
    try:
        body = resp.content if not getattr(resp, "_content_consumed", False) or resp._content else b""
    except Exception:  # a streamed body that was cut: the status still tells
        body = b""
    code, message, detail = parse_error_body(body or b"", resp.headers.get("Content-Type", ""))
    www_code, www_message = (_challenge_error(resp.headers.get("WWW-Authenticate") or "")
                             if status in (401, 403) else (None, None))
    if code is None:  # no code in a body (a HEAD has none): the challenge's
        code, message = www_code, message or www_message
    cls = _BY_CODE.get(code or "", None) or _BY_STATUS.get(status or 0, RegistryError)
    if status == 401 and www_code == "INSUFFICIENT_SCOPE":
        cls = Denied  # authenticated, token issued, but it does not grant this (RFC 6750 §3.1)
    if message is None:
        message = getattr(resp, "reason", None) or "request failed"
    if what:
        message = f"{what}: {message}"
    url = url or getattr(resp, "url", None)
    if status == 400 and "HTTP request to an HTTPS server" in message and str(url or "").startswith("http:"):
        # Go's net/http answers so: a loopback host:port is spoken to over http unless named https://
        message += "; the registry speaks https: name it https://host:port"
    if cls is TooManyRequests:
        return TooManyRequests(
            message, retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            status=status, code=code, url=url, detail=detail,
        )
    return cls(message, status=status, code=code, url=url, detail=detail)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    from datetime import datetime, timezone

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())

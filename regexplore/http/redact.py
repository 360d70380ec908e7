"""Redaction: what keeps secrets out of reprs, the trace, logs and exceptions.

:class:`Secret` strings hide themselves in a repr; :func:`redact_url` cuts credentials out of URLs
(user-info, signed-URL query values); a :class:`Scrubber` holds the secrets a client uses (passwords,
tokens, and their encoded forms) and :func:`scrub` cuts every live one out of server text before it
enters an exception, a log record or the trace. A leaf: it imports nothing of regexplore.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import weakref
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

__all__ = ["Secret", "secret_headers", "redact_url", "url_origin", "Scrubber", "scrub", "shown", "ServerText",
           "secret_forms", "scrub_detail", "REDACTED"]

_MAX_DEPTH = 256  #: deeper parts of an error detail are dropped (errors.DEFAULT_JSON_DEPTH)


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

    def __getitem__(self, key: Any) -> Secret:
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
_SCRUBBERS: weakref.WeakSet[Scrubber] = weakref.WeakSet()
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
    return repr(scrub_detail(value))[:limit]


def scrub_detail(detail: Any, depth: int = 0) -> Any:
    """An error's ``detail`` (any JSON) with held secrets cut out of its strings and keys; what
    lies deeper than ``_MAX_DEPTH`` levels (as deep as :func:`~regexplore.errors.load_json` reads) is dropped."""
    if isinstance(detail, str):
        return scrub(detail)
    if depth > _MAX_DEPTH and isinstance(detail, (dict, list, tuple)):
        return None
    if isinstance(detail, dict):
        return {scrub(k): scrub_detail(v, depth + 1) for k, v in detail.items()}
    if isinstance(detail, (list, tuple)):
        return [scrub_detail(v, depth + 1) for v in detail]
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

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

import json
import re
from typing import Any

from . import _env
from .http.redact import redact_url, scrub, scrub_detail  # a leaf: the redaction every message goes through

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
    "load_json",
]

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
        self.detail = scrub_detail(detail)
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
    ``REGEXPLORE_LOW_SPEED_TIME`` s); see :mod:`regexplore.http.deadline`. ``seconds`` is the limit hit."""

    def __init__(self, message: str, *, seconds: float | None = None, **kw: Any) -> None:
        self.seconds = seconds
        super().__init__(message, **kw)


class InvalidReference(ValueError):
    """An image reference that does not follow the distribution/reference grammar."""


MAX_JSON_DEPTH_ENV = "REGEXPLORE_MAX_JSON_DEPTH"
DEFAULT_JSON_DEPTH = 256  #: levels of arrays/objects in one JSON document (OCI documents use fewer than 10)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _json_depth_cap() -> int:
    """``REGEXPLORE_MAX_JSON_DEPTH``, else :data:`DEFAULT_JSON_DEPTH`. A value that is not a positive
    whole number is reported with a ``RuntimeWarning`` and the default is used (an exception here
    would be taken for "not JSON" by the callers of :func:`load_json`)."""
    return _env.whole(MAX_JSON_DEPTH_ENV, DEFAULT_JSON_DEPTH, warn=True)


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



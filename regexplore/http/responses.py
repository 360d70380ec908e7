"""What a registry's error answer says: the body's error code and message (OCI ``errors[]``, OAuth2,
object-store XML, plain text), a body-less 401's challenge, ``Retry-After``; and the
:class:`~regexplore.errors.RegistryError` subclass that fits.
"""

from __future__ import annotations

import html
import re
from datetime import UTC
from typing import Any

from ..errors import (
    Denied,
    NotFound,
    RegistryError,
    TooManyRequests,
    Unauthorized,
    Unsupported,
    UnsupportedMediaType,
    load_json,
)
from .challenges import parse_challenges
from .redact import scrub

__all__ = ["parse_error_body", "error_from_response", "parse_retry_after"]

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
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

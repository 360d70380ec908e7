"""Log redaction: no record of ``urllib3``, ``requests`` or ``regexplore`` carries a secret.

urllib3 logs what it sends and what it cannot parse: request lines with their query string at
DEBUG (a presigned blob URL's signature), and at WARNING ``Failed to parse headers (url=…)``
with the full URL and the server's raw header text (which may echo our ``Authorization``).
Every such record is cleaned when it is created:

- query values of URLs are redacted (:func:`~regexplore.http.redact.redact_url`): every value
  unless the URL is on a registry's or token realm's own origin (:func:`show_query_in_logs`),
  credential-looking ones always;
- every secret a live client holds is cut out (:func:`~regexplore.http.redact.scrub`);
- the message is formatted with its arguments first (an exception argument's text is cleaned
  too), and a traceback (``exc_info``) is kept only as cleaned text (``exc_text``).

Why a log-record factory (:func:`logging.setLogRecordFactory`) and not logger filters: a filter
on a logger runs only for records logged on that very logger, not its children
(``urllib3.connection`` escapes a filter on ``urllib3``), and loggers can be created after us;
handler filters would run for every child, but the handlers are the user's. The factory sees
every record of every logger, present or future, before any filter or handler. It wraps the
factory that was installed before it; a factory installed later must wrap the one it replaces
(as the :mod:`logging` documentation asks), or the next client made puts ours in front again.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from .redact import redact_url, scrub, url_origin

__all__ = ["clean_record", "install", "show_query_in_logs"]

#: records of loggers with these names, or below them, are cleaned
CLEANED_LOGGERS = ("urllib3", "requests", "regexplore")

# Origins of the registries our transports talk to and of their token servers: records redact
# every query value of a URL for any other origin (object storage, CDNs).
_KNOWN_ORIGINS: set[tuple[str, str, int | None]] = set()
_URL_WITH_QUERY = re.compile(r"https?://[^\s'\"<>()]*\?[^\s'\"<>()]*", re.IGNORECASE)
_INSTALL_LOCK = threading.Lock()


def show_query_in_logs(url: str) -> None:
    """Let log records for ``url``'s origin keep their non-secret query values (a registry, its
    token realm); other origins' records have every query value redacted."""
    _KNOWN_ORIGINS.add(url_origin(url))


def _logged_origin(args: tuple[Any, ...]) -> tuple[str, str, int | None] | None:
    """The origin of urllib3's request line ``'%s://%s:%s "%s %s %s" %s %s'`` (scheme, host, port,
    method, url, ...); the url is absolute when sent through a proxy. None for other shapes."""
    if len(args) < 5 or args[0] not in ("http", "https") or not isinstance(args[4], str):
        return None
    if "://" in args[4]:
        return url_origin(args[4])
    host = str(args[1])
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return url_origin(f"{args[0]}://{host}:{args[2]}/")


def _redact_for(url: str, origin: tuple[str, str, int | None] | None) -> str:
    """``url`` with credential-looking query values redacted, every value unless ``origin`` is known."""
    return redact_url(url, all_values=origin not in _KNOWN_ORIGINS)


def _clean_text(text: str) -> str:
    """``text`` with the query values of the absolute URLs in it redacted, then held secrets cut out."""
    return scrub(_URL_WITH_QUERY.sub(lambda m: _redact_for(m.group(), url_origin(m.group())), text))


def _message(record: logging.LogRecord) -> str:
    """The record's message, its string arguments that hold a query redacted first (a relative
    URL's origin is read from the request line's shape); its raw text if it cannot be formatted."""
    args = record.args
    if isinstance(args, tuple):
        origin = _logged_origin(args)
        record.args = tuple(_redact_for(a, origin) if isinstance(a, str) and "?" in a else a for a in args)
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):
        return f"{record.msg} {record.args!r}"


def clean_record(record: logging.LogRecord) -> logging.LogRecord:
    """Clean ``record`` in place (see the module docstring): its message formatted and cleaned
    (``args`` emptied), its traceback turned into cleaned ``exc_text`` (``exc_info`` dropped),
    its ``stack_info`` cleaned. Returns ``record``."""
    record.msg, record.args = _clean_text(_message(record)), ()
    if record.exc_info:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        record.exc_text, record.exc_info = _clean_text(text), None
    if record.stack_info:
        record.stack_info = _clean_text(record.stack_info)
    return record


def _is_cleaned(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in CLEANED_LOGGERS)


def _cleaning(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """A log-record factory: ``factory``'s record, cleaned when its logger is one of :data:`CLEANED_LOGGERS`."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        return clean_record(record) if _is_cleaned(record.name) else record

    make.regexplore_cleaning = True  # type: ignore[attr-defined]  # what install() looks for
    return make


def install() -> None:
    """Put the cleaning factory in front of the current log-record factory, unless it is there
    already (each new :class:`~regexplore.http.transport.Transport` calls this again, so a factory
    installed later without wrapping ours is wrapped in turn)."""
    with _INSTALL_LOCK:
        current = logging.getLogRecordFactory()
        if not getattr(current, "regexplore_cleaning", False):
            logging.setLogRecordFactory(_cleaning(current))

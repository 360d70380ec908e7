"""Where credentials may go: the one rule every redirect path and every auth hook asks.

- :func:`may_send_credentials` (``should_strip_auth`` in ``requests``' sense, stricter): credentials
  meant for one origin go only to that very origin (scheme, host and port). The transport asks it for
  every hop of a request (credentials go back on when a redirect returns to the registry), the token
  request asks it per hop and drops ``Authorization`` for good at the first move.
- :func:`secure_for_credentials` / :func:`refuse_plain_http`: no credential crosses plain http to a
  host that is not loopback (:class:`~regexplore.errors.InsecureCredentials`).

Imports only the leaves (:mod:`regexplore.errors`, :mod:`regexplore.http.redact`).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ..errors import InsecureCredentials
from .redact import url_origin

__all__ = [
    "REDIRECT_STATUSES",
    "is_loopback",
    "may_send_credentials",
    "refuse_plain_http",
    "secure_for_credentials",
    "without_userinfo",
]

#: the answers whose ``Location`` a request follows (by hand: see :func:`may_send_credentials`)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (``host`` may carry a port or brackets)."""
    h = host.strip()
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    if h.lower() == "localhost" or h.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def may_send_credentials(from_url: str, to_url: str) -> bool:
    """Whether credentials that belong to ``from_url``'s origin may go with a request to ``to_url``.

    Returns True only for the same origin (scheme, host and port, default ports filled in):
    unlike ``requests``' ``should_strip_auth``, an http → https upgrade on the same host is another
    origin too. Whether the scheme is safe enough is :func:`secure_for_credentials`' question.
    """
    return url_origin(from_url) == url_origin(to_url)


def secure_for_credentials(url: str) -> bool:
    """True when credentials may cross the wire to ``url`` at all: https, or http to a loopback host."""
    p = urlsplit(url)
    return p.scheme == "https" or (p.scheme == "http" and is_loopback(p.netloc))


def refuse_plain_http(url: str, message: str, *, shown: str | None = None) -> None:
    """Raise :class:`~regexplore.errors.InsecureCredentials` (``message``, carrying ``shown``, default
    ``url``) when ``url`` is plain http to a non-loopback host; return None otherwise."""
    p = urlsplit(url)
    if p.scheme == "http" and not is_loopback(p.netloc):
        raise InsecureCredentials(message, url=url if shown is None else shown)


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: ``requests`` would turn it into an ``Authorization``
    header for whatever host the URL names, over plain http too."""
    if "@" not in url:
        return url
    p = urlsplit(url)
    if "@" not in p.netloc:
        return url
    return p._replace(netloc=p.netloc.rsplit("@", 1)[1]).geturl()

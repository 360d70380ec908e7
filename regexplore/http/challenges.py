"""``WWW-Authenticate`` challenges (RFC 7235 §4.1, RFC 6750 §3): what a 401 asks for.

A leaf: :mod:`regexplore.errors` reads a challenge's ``error=`` for the error it raises, and
:mod:`regexplore.http.auth` answers the challenge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .redact import scrub

__all__ = ["Challenge", "parse_challenges"]


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` (lowercase) and its parameters (keys lowercase)."""

    scheme: str
    params: dict[str, str]

    def __repr__(self) -> str:  # a server's words: a traceback's locals show them scrubbed
        params = {k: scrub(v) for k, v in self.params.items()}
        return f"Challenge(scheme={scrub(self.scheme)!r}, params={params!r})"

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        """The ``scope`` parameter split on spaces (RFC 6750: a space-separated list)."""
        return [s for s in self.params.get("scope", "").split(" ") if s]

    @property
    def error(self) -> str | None:
        """``invalid_token``, ``insufficient_scope``, … or None."""
        return self.params.get("error")


_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_SCHEME = re.compile(rf"\s*({_TOKEN})(?=\s|,|$)")
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s"]*)\s*(?:,|$)')
_TOKEN68 = re.compile(r"\s*([A-Za-z0-9._~+/-]+=*)\s*(?:,|$)")


def parse_challenges(value: str | None) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges (RFC 7235 §4.1, RFC 6750 §3).

    Values may be quoted (with ``\\`` escapes) or bare tokens (gcr.io sends ``service=gcr.io``);
    one header may hold several challenges; unknown schemes are kept. Returns ``[]`` for an empty
    or unparseable value.

    >>> parse_challenges('Bearer realm="https://auth.docker.io/token",service=registry.docker.io')[0].params
    {'realm': 'https://auth.docker.io/token', 'service': 'registry.docker.io'}
    """
    out: list[Challenge] = []
    s = value or ""
    pos = 0
    current: Challenge | None = None
    while pos < len(s):
        while pos < len(s) and s[pos] in " ,\t":
            pos += 1
        if pos >= len(s):
            break
        m = _PARAM.match(s, pos)
        if m and current is not None and not current.params and (m.group(2) == "" or m.group(2).startswith("=")):
            m = None  # "Negotiate abc==": a token68, not a parameter
        if m and current is not None:
            key, raw = m.group(1).lower(), m.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            current.params[key] = raw
            pos = m.end()
            continue
        if current is not None and not current.params:
            t = _TOKEN68.match(s, pos)  # "Negotiate abc==" style: keep it as the token68 parameter
            if t:
                current.params["token68"] = t.group(1)
                pos = t.end()
                continue
        m = _SCHEME.match(s, pos)
        if not m:
            break
        current = Challenge(m.group(1).lower(), {})
        out.append(current)
        pos = m.end()
    return out

"""Every environment variable regexplore reads, in one place: its name, default and meaning.

The table :data:`VARIABLES` is the README's "Environment variables" table (:func:`markdown`; a test holds
the two together), and the readers below are the only code that looks at ``os.environ`` for them. Values are
read at each call, so a notebook can change one between two calls.

Readers: :func:`text` (a string or None), :func:`whole` (a positive whole number, e.g. a byte cap),
:func:`number` (a positive number with ``0``/``off`` for "none", e.g. seconds), :func:`switched_off`
(``0``/``off``/``no``/``false``). A value that does not parse raises ``ValueError`` naming the variable.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

__all__ = ["Variable", "VARIABLES", "is_set", "text", "whole", "number", "switched_off", "markdown"]

GiB = 1024**3


@dataclass(frozen=True)
class Variable:
    """One environment variable (or a group read together): ``names`` and what it does."""

    names: tuple[str, ...]
    meaning: str


def _v(names: str, meaning: str) -> Variable:
    return Variable(tuple(n.strip() for n in names.split(",")), meaning)


#: every variable, in the README's order
VARIABLES: list[Variable] = [
    _v("REGEXPLORE_REGISTRY", "the registry the notebooks (and binder) use; unset: each starts a seeded sandbox"),
    _v("REGEXPLORE_REPOSITORIES", "comma-separated repositories for the notebooks where the catalog is closed"),
    _v("REGEXPLORE_DOWNLOADS", "where the tour notebook downloads (default: a temporary folder it removes)"),
    _v("REGEXPLORE_CACHE", "the blob cache folder (default: the user's cache folder); `0`, `off`, `no`, `false` "
                           "or empty: no cache"),
    _v("REGEXPLORE_PROGRESS", "`0` (or `off`, `no`, `false`) turns progress bars off"),
    _v("REGEXPLORE_REGISTRY_BIN", "the registry binary the sandbox runs (default `docker-registry`, else "
                                  "`registry` on PATH)"),
    _v("REGEXPLORE_NOTEBOOKS", "where `regexplore demo` finds the notebooks (default: the ones shipped in the "
                               "package)"),
    _v("DOCKER_CONFIG", "the Docker config folder for credentials (default `~/.docker`)"),
    _v("REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE, SSL_CERT_DIR",
       "a CA bundle or folder to trust (the first set wins)"),
    _v("HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY", "proxies, also for token requests (lowercase names too)"),
    _v("REGEXPLORE_MAX_LAYER_BYTES", "cap on decompressed bytes per layer listing (default 8 GiB)"),
    _v("REGEXPLORE_MAX_IMAGE_BYTES", "cap on the decompressed bytes of one image's layers in one call "
                                     "(default 32 GiB)"),
    _v("REGEXPLORE_MAX_FILE_BYTES", "cap on the size of a file `read_file` returns (default 64 MiB)"),
    _v("REGEXPLORE_MAX_BLOB_BYTES", "cap on a blob download whose size neither a descriptor nor the registry "
                                    "gives (default 8 GiB)"),
    _v("REGEXPLORE_MAX_INDEX_ENTRIES", "cap on the entries one index resolution reads, nested indexes included "
                                       "(default 10,000)"),
    _v("REGEXPLORE_MAX_LIST_PAGES", "cap on the pages one paged listing follows (default 10,000)"),
    _v("REGEXPLORE_MAX_LIST_ENTRIES", "cap on the names one paged listing collects (default 1,000,000)"),
    _v("REGEXPLORE_MAX_REFERRERS", "cap on the descriptors one `referrers` listing reads, pages and levels "
                                   "together (default 10,000; past it: `ResponseTooLarge`)"),
    _v("REGEXPLORE_MAX_SBOM_BYTES", "cap on one SBOM or attestation document read into memory by `sbom` / "
                                    "`provenance` (default 128 MiB)"),
    _v("REGEXPLORE_MAX_JSON_DEPTH", "cap on nested arrays/objects in one JSON document from a server "
                                    "(default 256)"),
    _v("REGEXPLORE_DEADLINE", "seconds a metadata call may take in all (default 900; `0`/`off`: none)"),
    _v("REGEXPLORE_TRANSFER_DEADLINE", "seconds a call that moves blobs may take in all (default 21600, 6 h; "
                                       "`0`/`off`: none)"),
    _v("REGEXPLORE_LOW_SPEED_LIMIT, REGEXPLORE_LOW_SPEED_TIME", "minimum progress: bytes/s (default 1024; `0`: "
                                                                "off) averaged over seconds (default 30)"),
]
_KNOWN = {name for v in VARIABLES for name in v.names}
_KNOWN |= {n.lower() for n in _KNOWN if n.endswith("_PROXY")} | {"XDG_CACHE_HOME"}
_OFF = ("0", "off", "no", "false", "none")


def _raw(name: str) -> str:
    if name not in _KNOWN:  # a reader for a variable the table does not document is a bug
        raise KeyError(f"{name} is not in regexplore._env.VARIABLES")
    return os.environ.get(name, "").strip()


def is_set(name: str) -> bool:
    """True when ``name`` is in the environment, even empty (for variables where empty means something)."""
    _raw(name)
    return name in os.environ


def text(name: str) -> str | None:
    """The value of ``name`` with surrounding blanks removed, or None when it is unset or empty."""
    return _raw(name) or None


def switched_off(name: str) -> bool:
    """True when ``name`` says ``0``, ``off``, ``no``, ``false`` or ``none`` (any case)."""
    return _raw(name).lower() in _OFF


def whole(name: str, default: int, *, warn: bool = False) -> int:
    """The positive whole number in ``name``, or ``default`` when it is unset or empty.

    Raises ``ValueError`` naming the variable for anything else; with ``warn=True`` a bad value gives a
    ``RuntimeWarning`` and ``default`` instead (for readers whose callers take ``ValueError`` for something else).
    """
    raw = _raw(name)
    if not raw:
        return default
    value = int(raw) if raw.lstrip("-").isdigit() else None
    if value is not None and value > 0:
        return value
    message = f"{name} must be a positive whole number, got {raw!r:.40}"
    if warn:
        warnings.warn(f"{message}; using {default}", RuntimeWarning, stacklevel=3)
        return default
    raise ValueError(message)


def number(name: str, default: float, *, off: float) -> float:
    """A positive number from ``name``: ``default`` when unset or empty, ``off`` for ``0`` / ``off`` / ``no``.
    Raises ``ValueError`` naming the variable for anything else."""
    raw = _raw(name)
    if not raw:
        return default
    if raw.lower() in _OFF:
        return off
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, or 0 / off, got {raw!r:.40}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive (or 0 / off), got {raw!r:.40}")
    return value


def markdown() -> str:
    """The README's table of environment variables."""
    lines = ["| variable | what it does |", "|---|---|"]
    lines += [f"| {', '.join(f'`{n}`' for n in v.names)} | {v.meaning} |" for v in VARIABLES]
    return "\n".join(lines)

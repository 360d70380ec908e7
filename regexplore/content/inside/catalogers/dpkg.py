"""dpkg: the status database (``**/lib/dpkg/status``, distroless ``**/lib/dpkg/status.d/*``) and the
licenses of ``usr/share/doc/NAME/copyright`` (syft's dpkg-db-cataloger rules: ../shared/docs/inside.md A.1).

Only stanzas whose ``Status`` is ``install ok installed`` are packages: dpkg keeps removed-but-configured
(``deinstall ok config-files``) and half-installed packages in the same file, and syft 1.18.1 lists them too
(syft ≥ 1.37 drops ``deinstall``). A distroless ``status.d/NAME`` stanza has no ``Status`` field at all
(dpkg never wrote it: the image builder did), so a stanza without ``Status`` counts, as syft counts it.
"""

from __future__ import annotations

import re

from ..model import Cataloger, Evidence, Package, Want

__all__ = ["CATALOGERS", "parse_copyright", "parse_status"]

#: the most stanzas one status file may hold (Debian with everything installed has ~60k packages)
MAX_STANZAS = 200_000
INSTALLED = ("install", "ok", "installed")
_SOURCE = re.compile(r"(\S+)( \((.*)\))?")
_LICENSE = re.compile(r"^License: (\S*)")
_COMMON = re.compile(r"/usr/share/common-licenses/([0-9A-Za-z_.\-]+)")
UNKNOWN = "UNKNOWN"


def _wants_db(path: str, mode: int, size: int) -> Want | None:
    if path == "lib/dpkg/status" or path.endswith("/lib/dpkg/status"):
        return "whole"
    head, _, base = path.rpartition("/")
    if (head == "lib/dpkg/status.d" or head.endswith("/lib/dpkg/status.d")) and not base.endswith(".md5sums"):
        return "whole"
    return None


def _wants_copyright(path: str, mode: int, size: int) -> Want | None:
    parts = path.split("/")
    return "whole" if len(parts) == 5 and parts[:3] == ["usr", "share", "doc"] and parts[4] == "copyright" else None


def _stanzas(text: str) -> list[dict[str, str]]:
    """Split a status file into stanzas of ``{key without '-': value}`` (continuation lines joined with
    ``"\\n "``). Raises ValueError on a duplicate key or a continuation line before any key, as syft does."""
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = ""
    for line in text.split("\n"):
        if not line:
            if fields:
                stanzas.append(fields)
                if len(stanzas) > MAX_STANZAS:
                    raise ValueError(f"more than {MAX_STANZAS} stanzas")
            fields, key = {}, ""
        elif line.startswith(" "):
            if not key:
                raise ValueError(f"continuation line before any field: {line[:60]!r}")
            fields[key] += "\n " + line.strip()
        elif line.find(":") > 0:
            name, _, value = line.partition(":")
            key = name.strip().replace("-", "")
            if key in fields:
                raise ValueError(f"duplicate field {key!r} in a stanza")
            fields[key] = value.strip()
    if fields:
        stanzas.append(fields)
    return stanzas


def _package(fields: dict[str, str], path: str) -> Package:
    source, source_version = fields.get("Source", ""), fields.get("SourceVersion", "")
    match = _SOURCE.match(source)
    if match and match.group(3):
        source, source_version = match.group(1), match.group(3)
    version = fields.get("Version", "")
    return Package(
        name=fields["Package"], version=version or UNKNOWN, type="deb", path=path,
        arch=fields.get("Architecture") or None, source=source or None, source_version=source_version or None,
        purl_parts=() if version else (("version", ""),))


def parse_status(path: str, data: bytes) -> Evidence:
    """The installed packages of one dpkg status file (or status.d stanza file) as :class:`Evidence`.

    Stanzas without ``Package`` are dropped; a missing ``Version`` becomes ``UNKNOWN`` (syft's stub).
    Raises ValueError on a duplicate key or an orphan continuation line (syft rejects the file too),
    UnicodeDecodeError never (bytes are decoded leniently)."""
    packages = []
    for fields in _stanzas(data.decode("utf-8", "replace")):
        status = tuple(fields.get("Status", " ".join(INSTALLED)).split())
        if fields.get("Package") and status == INSTALLED:
            packages.append(_package(fields, path))
    return Evidence(packages=tuple(packages))


def parse_copyright(path: str, data: bytes) -> Evidence:
    """The licenses named in a ``usr/share/doc/NAME/copyright`` file: every ``License: X`` line and every
    ``/usr/share/common-licenses/X`` mention, without ``... or ...``/``... and ...`` summaries, ``none`` and
    a trailing dot; sorted, unique. Returns ``Evidence(facts=(("copyright_of", NAME), ("licenses", (...))))``."""
    found: set[str] = set()
    for line in data.decode("utf-8", "replace").splitlines():
        for pattern in (_LICENSE, _COMMON):
            match = pattern.search(line) if pattern is _COMMON else pattern.match(line)
            if match and (value := _single_license(match.group(1))):
                found.add(value)
    return Evidence(facts=(("copyright_of", path.split("/")[3]), ("licenses", tuple(sorted(found)))))


def _single_license(candidate: str) -> str:
    candidate = candidate.strip()
    if " or " in candidate or " and " in candidate or not candidate or candidate.lower() == "none":
        return ""
    return candidate.removesuffix(".")


CATALOGERS = (
    Cataloger("dpkg-db", "deb", _wants_db, parse_status),
    Cataloger("dpkg-copyright", "deb", _wants_copyright, parse_copyright, cap=4 * 1024 * 1024),
)

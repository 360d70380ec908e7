"""apk: Alpine's database ``**/lib/apk/db/installed`` and the release named in ``etc/apk/repositories``
(syft's apk-db-cataloger rules: ../shared/docs/inside.md A.2).

A record is ``K:value`` lines ended by a blank line: ``P`` name, ``V`` version, ``A`` arch, ``o`` origin
(the source package), ``L`` license. The repositories file gives ``("alpine_release", VERSION)`` for the purl's
distro when the image has no os-release.
"""

from __future__ import annotations

import re

from ..model import Cataloger, Evidence, Package, Want

__all__ = ["CATALOGERS", "parse_installed", "parse_repositories"]

MAX_RECORDS = 200_000
_REPOSITORY = re.compile(r"^https://.*\.alpinelinux\.org/alpine/v([^/]+)/([a-zA-Z0-9_]+)$")
UNKNOWN = "UNKNOWN"


def _wants_db(path: str, mode: int, size: int) -> Want | None:
    return "whole" if path == "lib/apk/db/installed" or path.endswith("/lib/apk/db/installed") else None


def _wants_repositories(path: str, mode: int, size: int) -> Want | None:
    return "whole" if path == "etc/apk/repositories" else None


def _records(text: str) -> list[dict[str, str]]:
    """Split the database into records of ``K:value`` (the last value of a key wins; the repeated ``R``/``F``
    file lines are not needed here). Only an empty line ends a record; empty values are skipped, as syft does."""
    records: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            if fields:
                records.append(fields)
                if len(records) > MAX_RECORDS:
                    raise ValueError(f"more than {MAX_RECORDS} records")
            fields = {}
            continue
        key, sep, value = line.partition(":")
        if sep and key and value:
            fields[key] = value
    if fields:
        records.append(fields)
    return records


def _licenses(value: str | None) -> tuple[str, ...]:
    """``L:`` as syft keeps it: one expression when it is an SPDX-looking expression with operators, else the
    space-separated names."""
    if not value:
        return ()
    if any(op in value.split() for op in ("AND", "OR", "WITH")) or "(" in value:
        return (value,)
    return tuple(value.split())


def parse_installed(path: str, data: bytes) -> Evidence:
    """The packages of one apk ``installed`` database. Records without ``P`` are dropped; a record without
    ``V`` gets version ``UNKNOWN`` (syft's stub). Returns :class:`Evidence`; raises ValueError past
    :data:`MAX_RECORDS`."""
    packages = []
    for fields in _records(data.decode("utf-8", "replace")):
        name = fields.get("P")
        if not name:
            continue
        version = fields.get("V", "")
        packages.append(Package(
            name=name, version=version or UNKNOWN, type="apk", path=path, arch=fields.get("A"),
            source=fields.get("o"), licenses=_licenses(fields.get("L")),
            purl_parts=() if version else (("version", ""),)))
    return Evidence(packages=tuple(packages))


def parse_repositories(path: str, data: bytes) -> Evidence:
    """``("alpine_release", VERSION)`` from the first repository line of the form
    ``https://….alpinelinux.org/alpine/vVERSION/REPO``; no facts when none matches."""
    for line in data.decode("utf-8", "replace").splitlines():
        match = _REPOSITORY.match(line.strip())
        if match:
            return Evidence(facts=(("alpine_release", match.group(1)),))
    return Evidence()


CATALOGERS = (
    Cataloger("apk-db", "apk", _wants_db, parse_installed),
    Cataloger("apk-repositories", "apk", _wants_repositories, parse_repositories, cap=1024 * 1024),
)

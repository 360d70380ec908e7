"""Python: installed distributions, ``**/*.dist-info/METADATA``, ``**/*.egg-info/PKG-INFO`` and egg-info
files (syft's python-installed-package-cataloger rules: ../shared/docs/inside.md A.4).

Only the header block is read (up to the first blank line: the long description is not needed). Names are
normalised as PEP 503 says (lower case, runs of ``-_.`` become ``-``); a distribution named ``Python`` (the
interpreter's own egg-info) is not a package.
"""

from __future__ import annotations

import re

from ..model import Cataloger, Evidence, Package, Want

__all__ = ["CATALOGERS", "normalize", "parse_metadata"]

_RUNS = re.compile(r"[-_.]+")
UNKNOWN = "UNKNOWN"


def normalize(name: str) -> str:
    """The PEP 503 form of a distribution name: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return _RUNS.sub("-", name).lower()


def _wants(path: str, mode: int, size: int) -> Want | None:
    head, _, base = path.rpartition("/")
    folder = head.rpartition("/")[2]
    if base == "METADATA" and folder.lower().endswith("dist-info"):
        return "whole"
    if base == "PKG-INFO" and folder.lower().endswith("egg-info"):
        return "whole"
    return "whole" if base.endswith(".egg-info") else None


def _headers(text: str) -> dict[str, str]:
    """The RFC 5322 header block as ``{key without '-': value}`` (continuation lines joined by newlines; a
    repeated key keeps its last value). Lines that are not ``key: value`` are ignored."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            if fields:
                break
            continue
        if line.startswith(" "):
            if key:
                fields[key] += "\n" + line.strip()
            continue
        index = line.find(":")
        if index > 0:
            key = line[:index].strip().replace("-", "")
            fields[key] = line[index + 1:].strip()
    return fields


def parse_metadata(path: str, data: bytes) -> Evidence:
    """The distribution described by one METADATA / PKG-INFO / egg-info file, or none (no ``Name``, or
    ``Python``). A missing version becomes ``UNKNOWN`` (syft's stub). Licenses: ``License-Expression``, else
    ``License``. Returns :class:`Evidence`; never raises on text (bytes are decoded leniently)."""
    fields = _headers(data.decode("utf-8", "replace"))
    name = fields.get("Name", "")
    if not name or name == "Python":
        return Evidence()
    version = fields.get("Version", "")
    license_ = fields.get("LicenseExpression") or fields.get("License")
    return Evidence(packages=(Package(
        name=normalize(name), version=version or UNKNOWN, type="python", path=path,
        licenses=(license_,) if license_ else (), purl_parts=() if version else (("version", ""),)),))


CATALOGERS = (Cataloger("python-installed", "python", _wants, parse_metadata, cap=8 * 1024 * 1024),)

"""npm: every ``package.json`` in the image (syft's javascript-package-cataloger rules:
../shared/docs/inside.md A.5), not only those under ``node_modules``. A package.json without a name is no
package; one without a version gets ``UNKNOWN`` (syft's stub; its purl has no version).
"""

from __future__ import annotations

import json
from typing import Any

from ..model import Cataloger, Evidence, Package, Want

__all__ = ["CATALOGERS", "parse_package_json"]

UNKNOWN = "UNKNOWN"


def _wants(path: str, mode: int, size: int) -> Want | None:
    return "whole" if path == "package.json" or path.endswith("/package.json") else None


def _license_names(value: Any) -> list[str]:
    """The license names of a ``license``/``licenses`` value: a string, ``{"type": …}``, or a list of
    either."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        return _license_names(value.get("type"))
    if isinstance(value, list):
        return [name for item in value[:100] for name in _license_names(item)]
    return []


def parse_package_json(path: str, data: bytes) -> Evidence:
    """The package one package.json declares, or none (no ``name``). Raises ValueError when the file is not
    a JSON object (syft rejects it too); a name or version that is not a string counts as missing."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError(f"package.json holds a {type(doc).__name__}, not an object")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not name.strip():
        return Evidence()
    version = version if isinstance(version, str) and version.strip() else ""
    licenses = _license_names(doc.get("license")) + _license_names(doc.get("licenses"))
    return Evidence(packages=(Package(
        name=name, version=version or UNKNOWN, type="npm", path=path, licenses=tuple(dict.fromkeys(licenses)),
        purl_parts=() if version else (("version", ""),)),))


CATALOGERS = (Cataloger("npm-package-json", "npm", _wants, parse_package_json, cap=4 * 1024 * 1024),)

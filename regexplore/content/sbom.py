"""SBOM documents (SPDX 2.x JSON, CycloneDX JSON) → rows of the ``packages`` frame.

Pure data, no I/O. An SBOM describes one thing (the image) and lists what is in it; the described thing
itself (SPDX's ``DESCRIBES`` target / ``documentDescribes``, CycloneDX's ``metadata.component``) is not a
package row. The columns an SBOM fills are ``name``, ``version``, ``purl``, ``arch`` and ``source`` (the
purl's ``arch`` and ``upstream`` qualifiers, as syft writes them), ``licenses`` and ``type``: syft's type
name for the purl's type (:data:`PURL_TYPES`); ``layer`` and ``path`` stay <NA>: SPDX and CycloneDX do not
carry the layer a package came from.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedMediaType

__all__ = ["MAX_SBOM_PACKAGES", "PURL_TYPES", "sbom_format", "sbom_rows"]

#: packages (and nested CycloneDX components) one document may list; more is hostile, not an image
MAX_SBOM_PACKAGES = 1_000_000
_NO_VALUE = {"NOASSERTION", "NONE", ""}
#: purl type -> syft's package type, as syft 1.18.1 reads an SBOM back (``pkg.TypeByName(purl.Type)`` in
#: syft/format/common/spdxhelpers/to_syft_model.go; syft/pkg/type.go), for the seven types the ``packages``
#: frame knows; a purl of another type leaves ``type`` <NA>
PURL_TYPES = {"deb": "deb", "apk": "apk", "alpine": "apk", "rpm": "rpm", "pypi": "python", "npm": "npm",
              "golang": "go-module", "maven": "java-archive"}


def sbom_format(doc: Any) -> str | None:
    """``"SPDX-2.3"``-like for an SPDX document, ``"CycloneDX-1.5"``-like for CycloneDX, else None."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("spdxVersion"), str):
        return doc["spdxVersion"]
    if doc.get("bomFormat") == "CycloneDX":
        return f"CycloneDX-{doc.get('specVersion', '?')}"
    return None


def sbom_rows(doc: Any, what: str = "SBOM") -> list[dict]:
    """The ``packages`` rows of an SPDX or CycloneDX JSON document (see the module docstring).

    Raises :class:`UnsupportedMediaType` naming ``what`` for a document of neither format, or with more
    than :data:`MAX_SBOM_PACKAGES` packages."""
    fmt = sbom_format(doc)
    if fmt is None:
        raise UnsupportedMediaType(f"{what} is neither an SPDX nor a CycloneDX JSON document")
    return _spdx_rows(doc, what) if fmt.startswith("SPDX") else _cyclonedx_rows(doc, what)


def _purl_facts(purl: Any) -> dict:
    """``purl`` (when it parses): its type as syft's ``type`` (:data:`PURL_TYPES`), its ``arch`` / ``upstream``
    qualifiers as ``arch`` / ``source``."""
    from packageurl import PackageURL

    if not isinstance(purl, str) or not purl:
        return {}
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return {"purl": purl}
    qualifiers = parsed.qualifiers if isinstance(parsed.qualifiers, dict) else {}
    return {"purl": purl, "type": PURL_TYPES.get(parsed.type), "arch": qualifiers.get("arch"),
            "source": qualifiers.get("upstream")}


def _list(value: Any) -> list:
    """``value`` when it is a list, else ``[]`` (a hostile document's number or string where a list belongs)."""
    return value if isinstance(value, list) else []


def _listed(doc: dict, key: str, what: str) -> list:
    items = doc.get(key) or []
    if not isinstance(items, list):
        raise UnsupportedMediaType(f"{what}: {key!r} is not a list")
    if len(items) > MAX_SBOM_PACKAGES:
        raise UnsupportedMediaType(f"{what} lists {len(items)} {key}, over {MAX_SBOM_PACKAGES}")
    return items


def _spdx_rows(doc: dict, what: str) -> list[dict]:
    """SPDX 2.x: every package but the document's described root(s); the purl from ``externalRefs``."""
    roots = {r for r in _list(doc.get("documentDescribes")) if isinstance(r, str)}
    for rel in _listed(doc, "relationships", what):
        if isinstance(rel, dict) and rel.get("relationshipType") == "DESCRIBES" \
                and rel.get("spdxElementId") == doc.get("SPDXID", "SPDXRef-DOCUMENT") \
                and isinstance(rel.get("relatedSpdxElement"), str):
            roots.add(rel["relatedSpdxElement"])
    rows = []
    for p in _listed(doc, "packages", what):
        if not isinstance(p, dict) or (isinstance(p.get("SPDXID"), str) and p["SPDXID"] in roots):
            continue
        refs = [r for r in _list(p.get("externalRefs")) if isinstance(r, dict)]
        purl = next((r.get("referenceLocator") for r in refs if r.get("referenceType") == "purl"), None)
        licenses = [p.get(k) for k in ("licenseDeclared", "licenseConcluded")]
        licenses = [x for x in licenses if isinstance(x, str) and x not in _NO_VALUE]
        rows.append({"name": p.get("name"), "version": p.get("versionInfo"), **_purl_facts(purl),
                     "licenses": list(dict.fromkeys(licenses))})
    return rows


def _cyclonedx_licenses(component: dict) -> list[str]:
    out = []
    for entry in _list(component.get("licenses")):
        if not isinstance(entry, dict):
            continue
        lic = entry.get("license") if isinstance(entry.get("license"), dict) else {}
        value = entry.get("expression") or lic.get("id") or lic.get("name")
        if isinstance(value, str) and value:
            out.append(value)
    return out


def _cyclonedx_rows(doc: dict, what: str) -> list[dict]:
    """CycloneDX: every component, nested ones included (walked without recursion, bounded)."""
    rows: list[dict] = []
    stack = list(reversed(_listed(doc, "components", what)))
    while stack:
        c = stack.pop()
        if not isinstance(c, dict):
            continue
        rows.append({"name": c.get("name"), "version": c.get("version"), **_purl_facts(c.get("purl")),
                     "licenses": _cyclonedx_licenses(c)})
        stack.extend(reversed(_listed(c, "components", what)))
        if len(rows) + len(stack) > MAX_SBOM_PACKAGES:
            raise UnsupportedMediaType(f"{what} lists more than {MAX_SBOM_PACKAGES} components")
    return rows

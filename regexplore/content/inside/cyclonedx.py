"""``to_cyclonedx``: a ``packages`` frame as a CycloneDX 1.5 JSON document, built with cyclonedx-python-lib.

Each row becomes one ``library`` component (an ``application`` for a Go binary's main module is still a
library here: the frame does not say which is which) with its name, version, purl, licences and, as
properties in the ``regexplore:`` namespace, the package type, the layer that introduced it, the file it was
read from, its architecture and its source package. The image itself is the metadata component (a
``container``), which depends on every package, so the document says what the image contains.

The model and the serialiser are cyclonedx-python-lib's (the ``sbom`` extra), imported only when a document
is made; nothing here writes CycloneDX JSON by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["to_cyclonedx"]

#: the frame columns a document is made from (the ``packages`` frame of model/frames.py)
COLUMNS = ("name", "version", "type", "purl", "arch", "source", "licenses", "layer", "path")
#: row column -> property name (CycloneDX property taxonomy: a namespace of the tool's own)
PROPERTIES = {"type": "regexplore:package:type", "layer": "regexplore:layer", "path": "regexplore:path",
              "arch": "regexplore:arch", "source": "regexplore:source"}


def _require_cyclonedx() -> None:
    """Raises ``ImportError`` naming the extra that installs cyclonedx-python-lib when it is missing."""
    try:
        import cyclonedx.output.json  # noqa: F401
    except ImportError as exc:
        raise ImportError("to_cyclonedx needs cyclonedx-python-lib: pip install 'regexplore[sbom]'") from exc


def _text(value: Any) -> str | None:
    """A frame cell as text: a non-empty ``str``, else None (``<NA>``, None, "")."""
    return value if isinstance(value, str) and value else None


def _licenses(values: Any) -> list[Any]:
    """CycloneDX licences of one row's ``licenses`` list. One licence may be an SPDX id, an SPDX expression
    or free text (a name); several are listed one by one (CycloneDX 1.5 allows a list of licences or one
    expression, not both), each as an SPDX id where it is one and by name otherwise, so none is lost."""
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.spdx import fixup_id, is_expression

    names = list(dict.fromkeys(t for t in (values if isinstance(values, list | tuple) else ()) if _text(t)))
    out: list[Any] = []
    for name in names:
        spdx_id = fixup_id(name)
        if spdx_id is not None:
            out.append(DisjunctiveLicense(id=spdx_id))
        elif len(names) == 1 and is_expression(name):
            out.append(LicenseExpression(name))
        else:
            out.append(DisjunctiveLicense(name=name))
    return out


def _component(row: dict[str, Any], bom_ref: str) -> Any:
    """One package row as a CycloneDX library component; raises ``ValueError`` for a purl that does not parse."""
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    purl = _text(row["purl"])
    properties = [Property(name=prop, value=_text(row[col])) for col, prop in PROPERTIES.items() if _text(row[col])]
    return Component(type=ComponentType.LIBRARY, name=_text(row["name"]) or "(unnamed)",
                     version=_text(row["version"]), bom_ref=bom_ref,
                     purl=PackageURL.from_string(purl) if purl else None,
                     licenses=_licenses(row["licenses"]), properties=properties)


def _bom_refs(rows: Iterable[dict[str, Any]]) -> list[str]:
    """A unique ``bom-ref`` per row: its purl (else ``type:name@version``), with ``#2``, ``#3`` … for the
    second and later rows of the same package (one package found at two paths)."""
    seen: dict[str, int] = {}
    refs = []
    for row in rows:
        key = _text(row["purl"]) or f"{row['type']}:{row['name']}@{_text(row['version']) or ''}"
        seen[key] = seen.get(key, 0) + 1
        refs.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return refs


def to_cyclonedx(packages: Any, *, name: str | None = None, version: str | None = None,
                 digest: str | None = None) -> dict[str, Any]:
    """The CycloneDX 1.5 JSON document (a dict) of a ``packages`` frame (``reg.packages(ref)``).

    ``name`` / ``version`` name the image (the document's metadata component, e.g. ``"library/webapp"`` and
    ``"latest"``; default ``"image"``); ``digest`` (its manifest digest) is kept as a hash of that component.
    Every row is a component with its purl, licences (SPDX ids where they are ones) and the properties
    ``regexplore:layer`` (the layer that introduced it), ``regexplore:path``, ``regexplore:package:type``,
    ``regexplore:arch``, ``regexplore:source``.

    Raises ``ValueError`` for a frame without the ``packages`` columns or with a purl that does not parse,
    ``ImportError`` (naming the ``sbom`` extra) when cyclonedx-python-lib is not installed.
    """
    _require_cyclonedx()
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot5

    from ..._version import __version__

    missing = [c for c in COLUMNS if c not in getattr(packages, "columns", ())]
    if missing:
        raise ValueError(f"to_cyclonedx needs a packages frame (reg.packages(ref)); missing columns {missing}")
    rows = packages.to_dict("records")
    hashes = []
    if digest:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64:
            raise ValueError(f"digest must be sha256:<64 hex digits>, not {digest!r}")
        hashes = [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)]
    image = Component(type=ComponentType.CONTAINER, name=name or "image", version=version, hashes=hashes,
                      bom_ref="image")
    bom = Bom()
    bom.metadata.component = image
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="regexplore",
                                                version=__version__))
    try:
        components = [_component(row, ref) for row, ref in zip(rows, _bom_refs(rows))]
    except ValueError as exc:
        raise ValueError(f"to_cyclonedx: a purl of the frame does not parse: {exc}") from None
    bom.components.update(components)
    bom.register_dependency(image, components)
    return json.loads(JsonV1Dot5(bom).output_as_string())

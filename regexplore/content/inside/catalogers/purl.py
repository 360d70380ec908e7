"""Package URLs as syft 1.18.1 forms them, for the seven types regexplore catalogs (../shared/docs/inside.md
A.1-A.8, E.3), built with ``packageurl-python``: qualifiers sorted by key with ``distro`` last-added (so
``arch``, ``distro``, ``epoch``, ``upstream`` come out alphabetically), ``+`` as ``%2B``, ``@`` as ``%40``.

``distro`` is the image's os-release as a dict (``ID``, ``VERSION_ID``, ``BUILD_ID``, ``ID_LIKE``), or None.
"""

from __future__ import annotations

from packageurl import PackageURL

from ..model import Package

__all__ = ["distro_qualifier", "purl_of"]


def distro_qualifier(distro: dict | None) -> str | None:
    """``ID-VERSION_ID``, else ``ID-BUILD_ID``, else ``ID`` (syft's ``distro`` qualifier); None without a
    distro."""
    if distro is None:
        return None
    parts = [distro.get("ID") or "", distro.get("VERSION_ID") or distro.get("BUILD_ID") or ""]
    return "-".join(p for p in parts if p) or None


def _qualifiers(values: dict[str, str | None], distro: dict | None) -> dict[str, str]:
    out = {k: v for k, v in values.items() if v}
    if (d := distro_qualifier(distro)) is not None:
        out["distro"] = d
    return out


def _is_debian_like(distro: dict | None) -> bool:
    return bool(distro) and (distro.get("ID") == "debian" or "debian" in (distro.get("ID_LIKE") or "").split())


def _deb(pkg: Package, version: str, distro: dict | None) -> PackageURL | None:
    if not _is_debian_like(distro):
        return None
    upstream = pkg.source and (f"{pkg.source}@{pkg.source_version}" if pkg.source_version else pkg.source)
    return PackageURL("deb", distro["ID"], pkg.name, version or None,
                      _qualifiers({"arch": pkg.arch, "upstream": upstream}, distro))


def _apk(pkg: Package, version: str, distro: dict | None) -> PackageURL | None:
    if distro is None:
        return None
    upstream = pkg.source if pkg.source != pkg.name else None
    return PackageURL("apk", (distro.get("ID") or "").lower() or None, pkg.name, version or None,
                      _qualifiers({"arch": pkg.arch, "upstream": upstream}, distro))


def _rpm(pkg: Package, version: str, distro: dict | None) -> PackageURL:
    parts = dict(pkg.purl_parts)
    namespace = (distro or {}).get("ID") or None
    namespace = "redhat" if namespace == "rhel" else namespace
    return PackageURL("rpm", namespace, pkg.name, parts.get("vr", version) or None,
                      _qualifiers({"arch": pkg.arch, "epoch": parts.get("epoch"), "upstream": pkg.source}, distro))


def _golang(pkg: Package, version: str, distro: dict | None) -> PackageURL:
    fields = pkg.name.split("/")
    if len(fields) == 1:
        return PackageURL("golang", None, fields[0], version or None)
    if len(fields) == 2:
        return PackageURL("golang", fields[0], fields[1], version or None)
    return PackageURL("golang", "/".join(fields[:2]), fields[2], version or None, subpath="/".join(fields[3:]) or None)


def _maven(pkg: Package, version: str, distro: dict | None) -> PackageURL:
    return PackageURL("maven", dict(pkg.purl_parts).get("group") or pkg.name, pkg.name, version or None)


def _npm(pkg: Package, version: str, distro: dict | None) -> PackageURL:
    scope, name = (pkg.name.split("/", 1)) if "/" in pkg.name else (None, pkg.name)
    return PackageURL("npm", scope, name, version or None)


def _pypi(pkg: Package, version: str, distro: dict | None) -> PackageURL:
    return PackageURL("pypi", None, pkg.name, version or None)


_BUILDERS = {"deb": _deb, "apk": _apk, "rpm": _rpm, "go-module": _golang, "java-archive": _maven,
             "npm": _npm, "python": _pypi}


def purl_of(pkg: Package, distro: dict | None) -> str | None:
    """The package URL syft 1.18.1 gives ``pkg`` in an image whose os-release is ``distro``, or None where
    syft gives none (deb outside a Debian-like distro, apk without a distro, an unknown type).

    ``pkg.purl_parts`` may override the version (``("version", "")`` for syft's ``UNKNOWN`` stubs, whose purl
    keeps the empty version; ``("vr", "V-R")`` for rpm) and carry rpm's ``epoch`` and a Maven ``group``."""
    builder = _BUILDERS.get(pkg.type)
    if builder is None:
        return None
    version = dict(pkg.purl_parts).get("version", pkg.version)
    url = builder(pkg, version, distro)
    return url.to_string() if url is not None else None

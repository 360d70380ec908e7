"""Java archives (jar, war, ear and syft's other suffixes): packages from ``META-INF/MANIFEST.MF``,
``pom.properties`` and nested archives (../shared/docs/inside.md A.7; syft ``java/archive_parser.go``).

Per archive: the main package exists only with a manifest (more than one → the archive is skipped). Its
name, version and group come from the one ``pom.properties`` whose ``artifactId`` matches the file name,
else from the manifest and the file name (A.7's orders). Each other ``pom.properties`` gives an auxiliary
package (path ``archive:groupId:artifactId``, syft's virtual path). Nested archives are read recursively
(path ``outer.war:WEB-INF/lib/x.jar``).

Caps against zip bombs: the archive is kept whole up to :data:`CAP`; a member is refused when its declared
size is over its cap, and read with a bound that also catches a size that lies; all inflated bytes of one
top-level archive share :data:`INFLATE_BUDGET`; nesting stops at :data:`MAX_DEPTH`. Each refusal is a
skipped entry with its path; the rest of the archive is still read.

As syft 1.18.1: a ``pom.properties`` without ``artifactId`` or ``version`` is ignored (neither the main
package's source nor an aux package); a main package without a version gets syft's compliance default
``UNKNOWN``, its purl keeping no version. Not done: ``pom.xml`` (syft 1.18.1 was seen not to take a name or
version from one, even with no usable ``pom.properties``; it would add only a group when ``pom.properties``
lacks ``groupId``, and licenses), the known-artifact group table, the Maven bundle plugin's manifest fields.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field

from ..model import Cataloger, Evidence, Package, Skipped, Want
from .bounds import need

__all__ = ["CATALOGERS", "SUFFIXES", "read", "wants", "parse_manifest", "parse_properties"]

SUFFIXES = (".jar", ".war", ".ear", ".par", ".sar", ".nar", ".jpi", ".hpi", ".kar", ".lpkg")
CAP = 64 * 1024 * 1024
INFLATE_BUDGET = 256 * 1024 * 1024
MAX_DEPTH = 8
MAX_SKIPPED = 100  # skipped entries kept per top-level archive; the rest are counted in one last entry
#: a manifest or pom.properties bigger than this is not metadata
TEXT_CAP = 1024 * 1024
MANIFEST = "META-INF/MANIFEST.MF"
_MANIFEST_NAMES = ("Name", "Bundle-Name", "Short-Name", "Extension-Name", "Implementation-Title")
_MANIFEST_VERSIONS = ("Implementation-Version", "Specification-Version", "Plugin-Version", "Bundle-Version")


def wants(path: str, mode: int, size: int) -> Want | None:
    """``"whole"`` for a file named like a Java archive (syft's globs), else None; never for a whiteout
    marker (``.wh.x.jar``, which the layer pass lists as a regular empty file)."""
    return "whole" if path.lower().endswith(SUFFIXES) and not path.rpartition("/")[2].startswith(".wh.") else None


def parse_manifest(text: str) -> dict[str, str]:
    """The main section of a manifest: ``Key: value`` lines up to the first blank line, a line starting
    with a space continuing the one before (its first space dropped)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            if fields:
                break
            continue
        if line.startswith(" ") and key is not None:
            fields[key] += line[1:]
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    return fields


def parse_properties(text: str) -> dict[str, str]:
    """``key=value`` (or ``key: value``) lines of a ``.properties`` file, ``#``/``!`` comments skipped."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]?\s*(.*)", line)
        if match:
            out[match[1]] = match[2]
    return out


@dataclass
class _Budget:
    """Inflated bytes left for one top-level archive, shared by everything nested in it."""

    left: int = INFLATE_BUDGET
    skipped: list[Skipped] = field(default_factory=list)
    more: int = 0  # skipped entries past MAX_SKIPPED

    def skip(self, where: str, reason: str) -> None:
        """Record a skipped nested archive (the first :data:`MAX_SKIPPED`, then only counted)."""
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(Skipped(where, reason))
        else:
            self.more += 1

    def take(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, where: str) -> bytes:
        """The member's bytes; :class:`Malformed` when its declared or actual size passes ``cap`` or
        the budget."""
        limit = min(cap, self.left)
        need(info.file_size <= limit, f"{where}: declared size {info.file_size} over the {limit}-byte cap")
        with zf.open(info) as member:
            data = member.read(limit + 1)
        need(len(data) <= limit, f"{where}: inflates past the {limit}-byte cap")
        self.left -= len(data)
        return data


def read(path: str, data: bytes) -> Evidence:
    """Every package of the archive ``data`` and the archives nested in it. Raises :class:`Malformed`
    (or ``zipfile.BadZipFile``) when the outer archive cannot be opened; a nested one that cannot is
    a skipped entry."""
    budget = _Budget()
    packages = _archive(path, data, 0, budget)
    more = [Skipped(path, f"java archive: and {budget.more} more nested archives skipped")] if budget.more else []
    return Evidence(packages=tuple(packages), skipped=(*budget.skipped, *more))


def _archive(path: str, data: bytes, depth: int, budget: _Budget) -> list[Package]:
    """The packages of one archive (its main package, the aux ones, then its nested archives')."""
    need(depth <= MAX_DEPTH, f"archives nested deeper than {MAX_DEPTH}")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        manifests = [i for i in infos if i.filename.lstrip("/") == MANIFEST]
        need(len(manifests) <= 1, f"{len(manifests)} manifests")
        manifest = parse_manifest(_text(zf, manifests[0], path, budget)) if manifests else None
        if manifest is not None and "Weave-Classes" in manifest:
            return []
        poms = [parse_properties(_text(zf, i, path, budget)) for i in infos
                if i.filename.endswith("pom.properties")]
        out = _packages(path, manifest, [p for p in poms if p.get("artifactId") and p.get("version")])
        for info in infos:
            if info.filename.lower().endswith(SUFFIXES):
                out += _nested(zf, info, f"{path}:{info.filename}", depth, budget)
    return out


def _nested(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, depth: int, budget: _Budget) -> list[Package]:
    """A nested archive's packages; its failure (any error: zipfile also raises RuntimeError for an
    encrypted member, ValueError, ...) is a skipped entry, not the outer archive's."""
    try:
        return _archive(where, budget.take(zf, info, CAP, where), depth + 1, budget)
    except MemoryError:
        raise
    except Exception as exc:  # hostile content: whatever the zip reader raises
        budget.skip(where, f"java archive: {exc}")
        return []


def _text(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, budget: _Budget) -> str:
    return budget.take(zf, info, TEXT_CAP, f"{path}:{info.filename}").decode("utf-8", "replace")


def split_file_name(stem: str) -> tuple[str, str]:
    """``(name, version)`` of an archive's file stem as syft's ``^(?P<name>.+?)(?:-(?P<version>\\d[^-]*(?:-[^-]+)*))?$``
    splits it, read by hand (that regex backtracked quadratically on ``a-1a-1...--``): the version starts at
    the first ``-<digit>`` after which no ``--`` follows, in a stem not ending with ``-``; else no version.
    A stem holding a newline (``.`` stops there) is returned whole."""
    if not stem.endswith("-") and "\n" not in stem:
        last_double = stem.rfind("--")
        for at in range(max(1, last_double + 1), len(stem) - 1):
            if stem[at] == "-" and stem[at + 1].isdecimal():
                return stem[:at], stem[at + 1:]
    return stem, ""


def _packages(path: str, manifest: dict[str, str] | None, poms: list[dict[str, str]]) -> list[Package]:
    """The main package (with a manifest only) and one aux package per other pom.properties."""
    stem = path.rsplit(":", 1)[-1].rsplit("/", 1)[-1].rsplit(".", 1)[0]
    file_name, file_version = split_file_name(stem)
    out, mine = [], None
    if manifest is not None:
        mine = next((p for p in poms if _matches(p["artifactId"], file_name)), None)
        if mine is not None:
            out.append(_package(path, mine["artifactId"], mine["version"], mine.get("groupId")))
        else:
            name = file_name or _first(manifest, _MANIFEST_NAMES)
            version = file_version or _first(manifest, _MANIFEST_VERSIONS)
            out.append(_package(path, name, version, None))
    for pom in poms:
        if pom is not mine:
            aux_path = f"{path}:{pom.get('groupId', '')}:{pom['artifactId']}"  # syft's virtual path
            out.append(_package(aux_path, pom["artifactId"], pom["version"], pom.get("groupId")))
    return [p for p in out if p.name]


def _matches(artifact: str, file_name: str) -> bool:
    """syft's ``artifactIDMatchesFilename``: the artifactId starts with the file's name or the name
    ends with the artifactId."""
    return bool(artifact and file_name) and (artifact.startswith(file_name) or file_name.endswith(artifact))


def _first(fields: dict[str, str], keys: tuple[str, ...]) -> str:
    return next((fields[k] for k in keys if fields.get(k)), "")


#: syft's compliance default for a package without a version (``syft/cataloging/compliance.go``)
UNKNOWN = "UNKNOWN"


def _package(path: str, name: str, version: str, group: str | None) -> Package:
    """A java-archive package; no version → :data:`UNKNOWN`, the purl without a version."""
    group = group.split(";")[0].strip() if group else None
    parts = (("group", group),) if group else ()
    if not version:
        version, parts = UNKNOWN, (*parts, ("version", ""))
    return Package(name=name, version=version, type="java-archive", path=path, purl_parts=parts)


CATALOGERS = (Cataloger(name="java-archive-cataloger", type="java-archive", wants=wants, read=read, cap=CAP,
                         suffixes=frozenset(SUFFIXES)),)

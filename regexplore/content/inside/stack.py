"""An image from its layers' scans (oldest first): the final filesystem, the evidence visible in it, the
operating system, and the packages with the layer that introduced each (inside.md A.9)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...errors import UnsafeLayer
from ..layers import canonical_path, merge
from ..layers.names import _whiteout_target
from ..layers.resolve import ResolveError, resolve
from .model import Evidence, LayerScan, Package
from .osrelease import os_release

__all__ = ["ImageStack", "purl_function"]

PurlOf = Callable[[Package, "dict | None"], "str | None"]


class _Layer:
    """What one layer does to paths, for the introducing-layer walk: the paths it writes (canonical ->
    type) and the paths its whiteouts delete below it (``.wh.x`` targets, opaque folders)."""

    def __init__(self, scan: LayerScan) -> None:
        self.written: dict[str, str] = {}
        self.removed: set[str] = set()
        self.opaque: set[str] = set()
        for e in scan.entries:
            cpath = canonical_path(e.path)
            if e.whiteout == "opaque":
                self.opaque.add(cpath.rpartition("/")[0])
            elif e.whiteout == "file":
                try:
                    self.removed.add(_whiteout_target(cpath, e.path))
                except UnsafeLayer:  # an invalid whiteout name (.wh..) removes nothing here
                    continue
            else:
                self.written[cpath] = e.type

    def hides_below(self, path: str) -> bool:
        """True when this layer removes the lower layers' ``path``: a whiteout of it or of a folder above
        it, an opaque folder above it, or a non-folder written over a folder above it."""
        if path in self.removed:
            return True
        parts = path.split("/")
        for n in range(1, len(parts)):
            above = "/".join(parts[:n])
            if above in self.removed or above in self.opaque or self.written.get(above, "dir") != "dir":
                return True
        return "" in self.opaque


class ImageStack:
    """The scans of one image's layers, oldest first (a layer listed twice appears twice)."""

    def __init__(self, scans: Sequence[LayerScan]) -> None:
        self.scans = list(scans)
        self.final = {canonical_path(e.path): e for e in merge([s.entries for s in self.scans])}
        self._top = {s.digest: i for i, s in enumerate(self.scans)}  # a digest's last position
        self._layers: dict[int, _Layer] = {}
        self._unnamed: dict[tuple, dict] = {}  # skipped entries of packages whose purl could not be formed

    def resolve(self, path: str) -> str:
        """``path`` with its symlinks followed inside the final filesystem (the path itself on a loop)."""
        def step(prefix: str, name: str) -> tuple[str, str | None]:
            child = f"{prefix}/{name}" if prefix else name
            e = self.final.get(child)
            return child, e.linkname if e is not None and e.type == "symlink" else None

        try:
            return "/".join(resolve(path.split("/"), "", step, follow_last=True))
        except ResolveError:
            return path

    def evidence_at(self, path: str) -> list[Evidence]:
        """The evidence kept of the final filesystem's regular file at ``path`` (as written, no link followed)."""
        e = self.final.get(path)
        if e is None or e.type != "file" or e.layer not in self._top:
            return []
        return self.scans[self._top[e.layer]].evidence.get(path, [])

    def facts_at(self, path: str) -> dict[str, Any]:
        """The facts of the evidence of the file ``path`` leads to (symlinks followed)."""
        return {k: v for ev in self.evidence_at(self.resolve(path)) for k, v in ev.facts}

    def os_release(self) -> dict[str, str] | None:
        """The final filesystem's os-release dict (:func:`.osrelease.os_release`), or None."""
        return os_release(self.facts_at)

    def visible(self) -> Iterable[tuple[str, int, list[Evidence]]]:
        """(path, index of the layer that wrote it, evidence) of each final-filesystem file with evidence."""
        for path, e in self.final.items():
            if e.type == "file" and e.layer in self._top:
                top = self._top[e.layer]
                if evs := self.scans[top].evidence.get(path):
                    yield path, top, evs

    def skipped(self) -> list[dict]:
        """Every file a layer's pass (or a cataloger) skipped, then each package :meth:`packages` gave no
        purl because its fields cannot form one: ``{"path", "reason", "layer"}``."""
        out = []
        for s in {s.digest: s for s in self.scans}.values():
            found = [*s.skipped, *(k for evs in s.evidence.values() for ev in evs for k in ev.skipped)]
            out.extend({"path": k.path, "reason": k.reason, "layer": s.digest} for k in found)
        return out + list(self._unnamed.values())

    def _layer(self, i: int) -> _Layer:
        if i not in self._layers:
            self._layers[i] = _Layer(self.scans[i])
        return self._layers[i]

    def _introducer(self, path: str, top: int) -> Callable[[Package], str]:
        """For a file at ``path`` whose visible version layer ``top`` wrote: a function giving a package's
        introducing layer digest (the lowest layer from which every written version of ``path`` up to
        ``top`` lists the package, the path never deleted in between)."""
        below: list[tuple[int, set]] = []  # (layer, package keys of its version of path), downwards
        i = top
        while i > 0 and not self._layer(i).hides_below(path):
            i -= 1
            kind = self._layer(i).written.get(path)
            if kind is None:
                continue
            if kind != "file":
                break
            below.append((i, {_key(p) for ev in self.scans[i].evidence.get(path, []) for p in ev.packages}))

        def introduced(pkg: Package) -> str:
            k, key = top, _key(pkg)
            for i, keys in below:
                if key not in keys:
                    break
                k = i
            return self.scans[k].digest

        return introduced

    def packages(self, purl_of: PurlOf, types: Iterable[str] | None = None) -> list[dict]:
        """The ``packages`` frame's rows: every package of the visible evidence (of ``types``, if given),
        deb licenses completed from the copyright files, purls from ``purl_of(pkg, distro)``: None where that
        raises ValueError (a hostile name, ``@scope/``), the package then also listed by :meth:`skipped`."""
        wanted = set(types) if types is not None else None
        visible = list(self.visible())
        facts = [dict(ev.facts) for _, _, evs in visible for ev in evs]
        licenses = {f["copyright_of"]: tuple(f.get("licenses", ())) for f in facts if "copyright_of" in f}
        distro = self.os_release()
        alpine = next((f["alpine_release"] for f in facts if f.get("alpine_release")), None)
        rows = []
        for path, top, evs in visible:
            introduced = self._introducer(path, top)
            for pkg in (p for ev in evs for p in ev.packages if wanted is None or p.type in wanted):
                lic = pkg.licenses or (licenses.get(pkg.name, ()) if pkg.type == "deb" else ())
                pkg_distro = distro
                if distro is None and pkg.type == "apk" and alpine:
                    pkg_distro = {"NAME": "Alpine Linux", "ID": "alpine", "VERSION_ID": alpine}
                rows.append({"name": pkg.name, "version": pkg.version, "type": pkg.type,
                             "purl": self._purl(purl_of, pkg, pkg_distro, introduced), "arch": pkg.arch,
                             "source": pkg.source,
                             "licenses": list(lic), "layer": introduced(pkg), "path": pkg.path})
        return rows

    def _purl(self, purl_of: PurlOf, pkg: Package, distro: dict | None,
              introduced: Callable[[Package], str]) -> str | None:
        """``purl_of(pkg, distro)``, or None (and a :meth:`skipped` entry) when the package's fields form no
        valid purl (packageurl raises ValueError, e.g. for an empty name)."""
        try:
            return purl_of(pkg, distro)
        except ValueError as exc:
            entry = {"path": pkg.path, "reason": f"{pkg.type} package {pkg.name!r}: no package URL ({exc})",
                     "layer": introduced(pkg)}
            self._unnamed[tuple(entry.values())] = entry
            return None


def _key(pkg: Package) -> tuple[str, str, str]:
    return pkg.type, pkg.name, pkg.version


def purl_function() -> PurlOf:
    """:func:`.catalogers.purl.purl_of` (imported on first use: packageurl is only needed for packages)."""
    from .catalogers.purl import purl_of

    return purl_of

"""What one census unit does: list a repository's tags, name each tag's digest with a HEAD, and read each
manifest digest new to the census once (GET, config, nested index entries), writing its parts.

Digest-keyed parts (``manifests``, ``index_entries``, ``layers``, ``history``, ``packages``, ``files``) carry
the digest's name and hold only what that digest determines, so they do not depend on which unit came first.
The ``manifests`` part is written after the digest's other metadata parts, so its presence means they are
stored, and any unit, thread or Dask worker that meets the digest again makes no further request for it (HEAD is
enough; on Docker Hub a HEAD is not a pull). Only an image's ``packages`` / ``files`` parts come after it: if
their scan failed, a unit that meets the stored digest again scans it again. Failures become ``errors`` rows
of the unit; the unit then stays unfinished, so a resumed census tries it again, and its error part is removed
once it succeeds.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import RegistryError, UnsupportedMediaType
from ..model.oci import MAX_INDEX_DEPTH, Manifest, compression_of, history_rows, image_summary, platform_rows
from ..reference import ImageRef, is_repository_name
from .ledger import Ledger
from .parts import has_part, remove_part, write_part
from .plan import Unit, digest_name, pages_of

__all__ = ["Claims", "Crawl", "error_row"]


def _descriptors(m: Manifest) -> list[dict]:
    """The layer descriptors of image manifest ``m``. Raises :class:`~regexplore.UnsupportedMediaType` if one
    is not an object with a digest string (a hostile or broken manifest: an ``errors`` row, not a crash)."""
    descs = m.layer_descriptors
    for i, d in enumerate(descs):
        if not (isinstance(d, dict) and isinstance(d.get("digest"), str)):
            raise UnsupportedMediaType(f"manifest {m.digest}: layer {i} is not a descriptor with a digest")
    return descs


def _named(repository: Any) -> bool:
    """True if ``repository`` is a repository name of the distribution grammar (lowercase components, at most
    255 characters): a catalog may list anything, and a name becomes a URL path (``..``, ``?``, ``%``)."""
    return isinstance(repository, str) and len(repository) <= 255 and is_repository_name(repository)


def _scannable(descs: list[dict]) -> bool:
    """True if an image of layers ``descs`` can be scanned for packages and files: tar layers only."""
    return bool(descs) and all(compression_of(d.get("mediaType")) != "unknown" for d in descs)

_FAULTS = (RegistryError, ValueError)  # ValueError: a digest that is no digest, JSON that does not parse
#: what one tag's or image's work may raise and still become an ``errors`` row: a hostile registry's document
#: can raise anything (KeyboardInterrupt and SystemExit are no ``Exception`` and stop the census)
_ANY = Exception


def error_row(unit: Unit, tag: str | None, exc: BaseException) -> dict[str, Any]:
    """The ``errors`` row of ``exc`` met by ``unit`` (at ``tag``)."""
    return {"unit": unit.label, "repository": unit.repository, "tag": tag, "error": type(exc).__name__,
            "status": getattr(exc, "status", None), "message": str(exc)[:2000]}


class Claims:
    """Per-digest locks of one process: the thread holding a digest's claim reads and stores it, the others
    wait and then find it stored, so two units meeting one new digest read it once. Locks live only while
    claimed (memory stays flat). Claims nest only downwards (an index, then its entries; an image manifest,
    then its layers in sorted order), so they cannot deadlock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, list] = {}  # digest -> [lock, claimants]

    @contextlib.contextmanager
    def claim(self, digest: str) -> Iterator[None]:
        """Hold ``digest``'s claim for the ``with`` block (waiting for another thread's first)."""
        with self._lock:
            entry = self._held.setdefault(digest, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._held[digest]


class Crawl:
    """The unit work of one census into folder ``out`` through ``reg`` (a :class:`~regexplore.Registry`);
    ``files=True`` also lists each layer digest's files, ``packages=True`` each image's packages."""

    def __init__(self, reg: Any, out: Path, *, files: bool = False, packages: bool = False) -> None:
        self.reg, self.v2, self.out, self.files, self.packages = reg, reg.v2, out, files, packages
        self.claims = Claims()
        self.ledger = Ledger(out)
        self.scanned: set[str] = set()  # layer digests this process has scanned (the facade caches the scans)
        self.bucket: Any = None  # the request budget (job.make_crawl), whose count progress shows

    def run(self, unit: Unit) -> tuple[list[Unit], bool]:
        """Do ``unit``: (the page units it hands on, True if it finished without an error row)."""
        errors: list[dict[str, Any]] = []
        pages: list[Unit] = []
        tags = list(unit.tags)
        if unit.page == 0:
            if not _named(unit.repository):  # a hostile catalog's entry: no request made with it
                bad = ValueError(f"not a repository name: {str(unit.repository)[:200]!r}")
                write_part(self.out, "errors", unit.key, [error_row(unit, None, bad)])
                return [], False
            listed = self.ledger.plan(unit)  # a resumed unit: the listing its finished pages were cut from
            if listed is None:
                try:
                    listed = self.v2.tags(unit.repository)
                except _FAULTS as exc:
                    write_part(self.out, "errors", unit.key, [error_row(unit, None, exc)])
                    return [], False
                self.ledger.save_plan(unit, listed)
            tags, pages = pages_of(unit.repository, listed)
            write_part(self.out, "repositories", unit.key, [{"repository": unit.repository, "tags": len(listed)}])
        rows = [self._tag(unit, tag, errors) for tag in tags]
        write_part(self.out, "tags", unit.key, rows)
        if errors:
            write_part(self.out, "errors", unit.key, errors)
            return pages, False
        remove_part(self.out, "errors", unit.key)
        return pages, True

    def _known(self, digest: str) -> bool:
        return has_part(self.out, "manifests", digest_name(digest))

    def _tag(self, unit: Unit, tag: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``tags`` row of ``tag``: a HEAD names its digest; a digest new to the census is read (by the
        one thread of this process that claims it first; the others wait for it, then find it stored)."""
        repo = unit.repository
        row: dict[str, Any] = {"repository": repo, "tag": tag}
        try:
            head = self.v2.head_manifest(repo, tag)
            row["digest"], row["media_type"] = head["digest"], head["media_type"]
            if head["digest"] is None:  # a registry that does not name it: read by tag
                m = self.v2.get_manifest(repo, tag)
                row["digest"], row["media_type"] = m.digest, m.media_type
                with self.claims.claim(m.digest):
                    if not self._known(m.digest):
                        self._store(unit, m, 0, errors)
            else:
                self._read(unit, head["digest"], 0, errors)
        except _ANY as exc:  # one tag's fault, whatever it is, is a row: the census goes on
            errors.append(error_row(unit, tag, exc))
        return row

    def _read(self, unit: Unit, digest: str, depth: int, errors: list[dict[str, Any]]) -> None:
        """Read and store manifest ``digest`` of the unit's repository unless the census has it."""
        digest_name(digest)  # ValueError for a digest that is none
        with self.claims.claim(digest):
            if not self._known(digest):
                self._store(unit, self.v2.get_manifest(unit.repository, digest), depth, errors)
            elif self._owed(digest):  # stored, but its packages / files failed before: try them again
                self._inside(unit, digest, self._stored_layers(digest), errors)

    def _stored_layers(self, digest: str) -> list[dict]:
        """The layer descriptors of stored image ``digest``, read back from its ``layers`` part."""
        import pyarrow.parquet as pq

        rows = pq.read_table(self.out / "layers" / f"{digest_name(digest)}.parquet").to_pylist()
        return [{"digest": r["digest"], "mediaType": r["media_type"]} for r in rows]

    def _owed(self, digest: str) -> bool:
        """True if stored image ``digest`` lacks the ``packages`` / ``files`` parts this census writes."""
        name = digest_name(digest)
        if not (self.packages or self.files) or not has_part(self.out, "layers", name):
            return False
        if not self.files and has_part(self.out, "packages", name):
            return False
        descs = self._stored_layers(digest)
        return _scannable(descs) and ((self.packages and not has_part(self.out, "packages", name)) or
                                      (self.files and not all(has_part(self.out, "files", digest_name(d["digest"]))
                                                              for d in descs)))

    def _store(self, unit: Unit, m: Manifest, depth: int, errors: list[dict[str, Any]]) -> None:
        """Write the parts of manifest ``m`` (an index: its entries first, each once, then ``index_entries``),
        ``manifests`` last. Every part is a function of ``m`` alone (which index names a manifest is read
        from ``index_entries``), so the parts are the same whichever unit meets a digest first."""
        row: dict[str, Any] = {"digest": m.digest, "media_type": m.media_type, "size": m.size}
        if m.is_index:
            failed = len(errors)
            entries = self._entries(unit, m, depth, errors)
            if len(errors) > failed:
                return  # not stored: a resumed census reads the index again, and the entries it lacks
            write_part(self.out, "index_entries", digest_name(m.digest),
                       [{"index_digest": m.digest, **r} for r in platform_rows({"manifests": entries})])
            write_part(self.out, "manifests", digest_name(m.digest), [row])
            return
        row.update(self._image(unit.repository, m))
        write_part(self.out, "manifests", digest_name(m.digest), [row])
        self._inside(unit, m.digest, _descriptors(m), errors)  # a layer's fault does not hide the manifest

    def _entries(self, unit: Unit, index: Manifest, depth: int, errors: list[dict[str, Any]]) -> list[dict]:
        """Read the entries of ``index`` new to the census (nested indexes down to ``MAX_INDEX_DEPTH``);
        returns its well-formed entries (a descriptor with a digest, a platform object if any)."""
        entries = index.json.get("manifests")
        good = [e for e in entries if isinstance(e, dict) and isinstance(e.get("digest"), str)
                and isinstance(e.get("platform") or {}, dict)] if isinstance(entries, list) else []
        for e in good if depth < MAX_INDEX_DEPTH else []:
            try:
                self._read(unit, e["digest"], depth + 1, errors)
            except _FAULTS as exc:
                errors.append(error_row(unit, e["digest"], exc))
        return good

    def _image(self, repo: str, m: Manifest) -> dict[str, Any]:
        """Write the ``layers``, ``history`` (and ``files``) parts of image manifest ``m``; returns the
        ``manifests`` columns its config gives."""
        cfg = self._config(repo, m)
        name = digest_name(m.digest)
        descs = _descriptors(m)
        write_part(self.out, "layers", name, [
            {"manifest_digest": m.digest, "index": i, "digest": d.get("digest"), "size": d.get("size"),
             "media_type": d.get("mediaType")} for i, d in enumerate(descs)])
        try:
            steps = history_rows(m, cfg)
        except _FAULTS:  # an artifact's manifest has no history
            steps = []
        write_part(self.out, "history", name, [{"manifest_digest": m.digest, **s} for s in steps])
        s = image_summary(m, cfg)
        sizes = [d.get("size") for d in descs]
        return {"created": s["created"], "os": s["os"], "architecture": s["architecture"],
                "variant": (cfg or {}).get("variant"), "config_digest": (m.config_descriptor or {}).get("digest"),
                "layers": len(descs),
                "layers_size": sum(sizes) if all(isinstance(x, int) for x in sizes) else None}

    def _config(self, repo: str, m: Manifest) -> dict | None:
        """The config of ``m`` as a JSON object, or None (schema1, an artifact's non-JSON config)."""
        digest = (m.config_descriptor or {}).get("digest")
        if m.is_schema1 or not digest:
            return None
        try:
            return self.v2.get_json_blob(repo, digest)
        except UnsupportedMediaType:
            return None

    def _inside(self, unit: Unit, digest: str, descs: list[dict], errors: list[dict[str, Any]]) -> None:
        """With ``packages``: write the ``packages`` part of image ``digest`` (layers ``descs``, tar layers
        only); with ``files``: the ``files`` part of each of its layer digests the census lacks. A fault is an
        ``errors`` row of ``unit`` (tag ``packages:<digest>`` / ``files:<digest>``), so the unit is tried again
        on resume and :meth:`_owed` finds the parts missing. Both come from the facade's per-layer scans,
        cached by layer digest in this process' Registry; the layers this process has not scanned yet are
        claimed first, so images sharing a layer (read at the same time by other threads) wait for its one scan."""
        if not (self.packages or self.files) or not _scannable(descs):
            return
        what = "packages" if self.packages else "files"
        try:
            self._scan(ImageRef(self.reg.name, unit.repository, digest=digest), [d["digest"] for d in descs])
        except _ANY as exc:
            errors.append(error_row(unit, f"{what}:{digest}", exc))

    def _scan(self, ref: ImageRef, layers: list[str]) -> None:
        """Write the ``packages`` / ``files`` parts of image ``ref`` (layer digests ``layers``) it lacks."""
        with contextlib.ExitStack() as held:
            for digest in sorted(set(layers) - self.scanned):  # one order for all threads: no deadlock
                held.enter_context(self.claims.claim(digest))
            if self.packages:
                df = self.reg.packages(ref)
                write_part(self.out, "packages", digest_name(ref.digest),
                           columns={"manifest_digest": [ref.digest] * len(df), **{c: df[c] for c in df.columns}})
            if self.files and not all(has_part(self.out, "files", digest_name(x)) for x in layers):
                self._files(ref, layers)
            self.scanned.update(layers)

    def _files(self, ref: ImageRef, layers: list[str]) -> None:
        """Write the ``files`` part of each layer digest of image ``ref`` (``layers``, in order) it lacks."""
        df = self.reg.files(ref)  # every layer in order: a layer listed k times has its rows k times
        for digest, rows in df.groupby("layer", sort=False):
            if not has_part(self.out, "files", digest_name(digest)):
                once = rows.iloc[: len(rows) // layers.count(digest)]
                write_part(self.out, "files", digest_name(digest), columns={c: once[c] for c in once.columns})

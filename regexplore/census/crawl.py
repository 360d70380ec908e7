"""What one census unit does: list a repository's tags, name each tag's digest with a HEAD, and read each
manifest digest new to the census once (GET, config, nested index entries), writing its parts.

Digest-keyed parts (``manifests``, ``layers``, ``history``, ``files``) carry the digest's name: the
``manifests`` part is written last, so its presence means the digest is fully stored, and any unit, thread or
Dask worker that meets the digest again makes no further request for it (HEAD is enough; on Docker Hub a HEAD
is not a pull). Failures become ``errors`` rows of the unit; the unit then stays unfinished, so a resumed
census tries it again, and its error part is removed once it succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import RegistryError, UnsupportedMediaType
from ..model.oci import MAX_INDEX_DEPTH, Manifest, compression_of, history_rows, image_summary
from .parts import has_part, remove_part, write_part
from .plan import Unit, digest_name, pages_of

__all__ = ["Crawl", "error_row"]

_FAULTS = (RegistryError, ValueError)  # ValueError: a digest that is no digest, JSON that does not parse


def error_row(unit: Unit, tag: str | None, exc: BaseException) -> dict[str, Any]:
    """The ``errors`` row of ``exc`` met by ``unit`` (at ``tag``)."""
    return {"unit": unit.label, "repository": unit.repository, "tag": tag, "error": type(exc).__name__,
            "status": getattr(exc, "status", None), "message": str(exc)[:2000]}


class Crawl:
    """The unit work of one census into folder ``out`` through ``reg`` (a :class:`~regexplore.Registry`);
    ``files=True`` also lists each layer digest's files."""

    def __init__(self, reg: Any, out: Path, *, files: bool = False) -> None:
        self.reg, self.v2, self.out, self.files = reg, reg.v2, out, files
        self.bucket: Any = None  # the request budget (job.make_crawl), whose count progress shows

    def run(self, unit: Unit) -> tuple[list[Unit], bool]:
        """Do ``unit``: (the page units it hands on, True if it finished without an error row)."""
        errors: list[dict[str, Any]] = []
        pages: list[Unit] = []
        tags = list(unit.tags)
        if unit.page == 0:
            try:
                listed = self.v2.tags(unit.repository)
            except _FAULTS as exc:
                write_part(self.out, "errors", unit.key, [error_row(unit, None, exc)])
                return [], False
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
        """The ``tags`` row of ``tag``: a HEAD names its digest; a digest new to the census is read."""
        repo = unit.repository
        row: dict[str, Any] = {"repository": repo, "tag": tag}
        try:
            head = self.v2.head_manifest(repo, tag)
            row["digest"], row["media_type"] = head["digest"], head["media_type"]
            if head["digest"] is None or not self._known(head["digest"]):
                m = self.v2.get_manifest(repo, tag)
                row["digest"], row["media_type"] = m.digest, m.media_type
                self._store(unit, m, None, 0, errors)
        except _FAULTS as exc:
            errors.append(error_row(unit, tag, exc))
        return row

    def _store(self, unit: Unit, m: Manifest, index_digest: str | None, depth: int,
               errors: list[dict[str, Any]]) -> None:
        """Write the parts of manifest ``m`` (an index: its entries first, each once), ``manifests`` last."""
        row: dict[str, Any] = {"digest": m.digest, "media_type": m.media_type, "size": m.size,
                               "index_digest": index_digest}
        if m.is_index:
            failed = len(errors)
            self._entries(unit, m, depth, errors)
            if len(errors) > failed:
                return  # not stored: a resumed census reads the index again, and the entries it lacks
        else:
            row.update(self._image(unit.repository, m))
        write_part(self.out, "manifests", digest_name(m.digest), [row])

    def _entries(self, unit: Unit, index: Manifest, depth: int, errors: list[dict[str, Any]]) -> None:
        """Read the entries of ``index`` new to the census (nested indexes down to ``MAX_INDEX_DEPTH``)."""
        entries = index.json.get("manifests")
        for e in entries if isinstance(entries, list) else []:
            digest = e.get("digest") if isinstance(e, dict) else None
            if not isinstance(digest, str) or depth >= MAX_INDEX_DEPTH:
                continue
            try:
                if not self._known(digest):
                    self._store(unit, self.v2.get_manifest(unit.repository, digest), index.digest, depth + 1, errors)
            except _FAULTS as exc:
                errors.append(error_row(unit, digest, exc))

    def _image(self, repo: str, m: Manifest) -> dict[str, Any]:
        """Write the ``layers``, ``history`` (and ``files``) parts of image manifest ``m``; returns the
        ``manifests`` columns its config gives."""
        cfg = self._config(repo, m)
        name = digest_name(m.digest)
        descs = m.layer_descriptors
        write_part(self.out, "layers", name, [
            {"manifest_digest": m.digest, "index": i, "digest": d.get("digest"), "size": d.get("size"),
             "media_type": d.get("mediaType")} for i, d in enumerate(descs)])
        try:
            steps = history_rows(m, cfg)
        except _FAULTS:  # an artifact's manifest has no history
            steps = []
        write_part(self.out, "history", name, [{"manifest_digest": m.digest, **s} for s in steps])
        if self.files:  # tar layers only: an attestation's in-toto JSON has no files
            for d in descs:
                if compression_of(d.get("mediaType")) != "unknown":
                    self._files(repo, d.get("digest"))
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

    def _files(self, repo: str, digest: Any) -> None:
        """Write the ``files`` part of layer ``digest`` unless the census has it."""
        if not isinstance(digest, str) or has_part(self.out, "files", digest_name(digest)):
            return
        df = self.reg.files(f"{repo}@{digest}")
        write_part(self.out, "files", digest_name(digest), columns={c: df[c] for c in df.columns})

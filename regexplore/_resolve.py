"""Manifests of one registry, fetched once, and an index resolved to the image of one platform.

:class:`Resolver` is what the facade (:class:`~regexplore.registry.Registry`) and the content calls ask
for a manifest, an image config or an index's platforms: it keeps a manifest by digest for good (a
digest names fixed bytes), checks a tag seen before with a HEAD, reads each config once, and expands
nested indexes (bounded by :class:`IndexWalk`) once per index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .errors import InvalidReference, NotFound, RegistryError, ResponseTooLarge, UnsupportedMediaType
from .model.oci import INDEX_TYPES, MAX_INDEX_DEPTH, Manifest, choose_platform, image_summary, platform_rows
from .protocol.v2 import LISTING_CAP, MANIFEST_CAP, V2Client, cap_from_env
from .reference import ImageRef, parse_reference

__all__ = ["DEFAULT_MAX_INDEX_ENTRIES", "MAX_INDEX_ENTRIES_ENV", "IndexWalk", "Once", "Resolver"]

#: Environment variable capping the entries one index resolution reads, nested indexes included.
MAX_INDEX_ENTRIES_ENV = "REGEXPLORE_MAX_INDEX_ENTRIES"
DEFAULT_MAX_INDEX_ENTRIES = 10_000


class Once:
    """Compute each key once, even when several threads ask at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[Any, Future] = {}

    def get(self, key: Any, fn: Callable[[], Any]) -> Any:
        """``key``'s value: ``fn()``'s result, computed by the first caller while the others wait.
        Raises what ``fn`` raised (to every waiter; a later call computes it again)."""
        with self._lock:
            fut = self._futures.get(key)
            owner = fut is None
            if owner:
                fut = self._futures[key] = Future()
        assert fut is not None
        if owner:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 (it goes to every waiter; a later call retries)
                fut.set_exception(exc)
                with self._lock:
                    self._futures.pop(key, None)
        return fut.result()

    def has(self, key: Any) -> bool:
        """True if ``key``'s value is computed (not pending, not failed)."""
        with self._lock:
            fut = self._futures.get(key)
        return fut is not None and fut.done() and fut.exception() is None


class IndexWalk:
    """The bounds of one index resolution: the nested indexes expanded so far (each once), and the
    entries and bytes read, at most ``$REGEXPLORE_MAX_INDEX_ENTRIES`` entries (default 10,000) and
    :data:`~regexplore.protocol.v2.LISTING_CAP` bytes of indexes."""

    def __init__(self, repo: str, top: Manifest) -> None:
        self.name = f"{repo}@{top.digest}"
        self.max_entries = cap_from_env(MAX_INDEX_ENTRIES_ENV, DEFAULT_MAX_INDEX_ENTRIES)
        self.entries = 0
        self.bytes = 0
        self.expanded = {top.digest}

    def entries_of(self, index: Manifest) -> list[dict]:
        """``index``'s entries, counted. Raises :class:`ResponseTooLarge` naming the top index past a cap,
        :class:`UnsupportedMediaType` when ``manifests`` is not a list of descriptors."""
        entries = index.json.get("manifests") or []
        self.entries += len(entries) if isinstance(entries, list) else 0
        self.bytes += index.size
        if self.entries > self.max_entries:
            raise ResponseTooLarge(f"index {self.name}: more than {self.max_entries} entries in one resolution "
                                   f"(nested indexes included); raise {MAX_INDEX_ENTRIES_ENV} to read it")
        if self.bytes > LISTING_CAP:
            raise ResponseTooLarge(f"index {self.name}: its nested indexes total more than {LISTING_CAP} bytes")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UnsupportedMediaType(f"index {index.digest[:19]}… of {self.name}: 'manifests' is not a list of "
                                       "descriptors")
        return entries


class Resolver:
    """Manifests, configs and index resolutions of one registry (``v2``), each fetched once.

    Thread-safe: concurrent requests for one manifest, config or index expansion make one request.
    """

    def __init__(self, v2: V2Client) -> None:
        self.v2 = v2
        self._manifests = Once()
        self._flat = Once()  # (repo, index digest) -> the index with its nested indexes expanded
        self._tag_digests: dict[tuple[str, str], str] = {}  # (repo, tag) -> digest last seen
        self._configs = Once()
        self._local_names = Once()  # host-looking repository names checked to exist here (local_ref)

    def local_ref(self, registry: str, text: str) -> ImageRef | None:
        """``text`` (a reference whose first component reads as a host: ``a.b-c/d:1``) as a reference to
        a repository of ``registry`` (this one), if the registry has that repository (one tags request,
        remembered), so a reference to another registry is never pushed or tagged here; else None."""
        try:
            local = parse_reference(f"{registry}/{text.strip()}", default_registry=registry)
        except InvalidReference:
            return None  # e.g. a host with a port: never a name

        def exists() -> bool:
            try:
                self.v2.tags(local.repository, page_size=1, limit=1)
                return True
            except RegistryError:
                return False

        return local if self._local_names.get(local.repository, exists) else None

    def by_digest(self, repo: str, digest: str) -> Manifest:
        """The manifest ``repo@digest``, fetched (and verified) once. Raises what the registry answers."""
        return self._manifests.get((repo, digest), lambda: self.v2.get_manifest(repo, digest))

    def by_tag(self, repo: str, tag: str) -> Manifest:
        """The manifest a tag names now. A tag moves and a digest does not: for a tag seen before, a
        HEAD (not a pull on Docker Hub) says which digest it names, and the manifest is fetched
        again only if that digest is new to this client. A first sight is one GET."""
        if (repo, tag) in self._tag_digests:
            try:
                digest = self.v2.head_manifest(repo, tag)["digest"]
            except RegistryError:  # a HEAD has no body: the GET below brings the registry's words
                digest = None
            if digest and self._manifests.has((repo, digest)):
                self._tag_digests[(repo, tag)] = digest
                return self.by_digest(repo, digest)
        m = self.v2.get_manifest(repo, tag)
        self._manifests.get((repo, m.digest), lambda: m)
        self._tag_digests[(repo, tag)] = m.digest
        return m

    def manifest(self, r: ImageRef, platform: str | None = None) -> Manifest:
        """The manifest ``r`` names (by digest when it has one); with ``platform`` and an index, that
        platform's image manifest (:func:`~regexplore.model.oci.choose_platform`)."""
        m = self.by_digest(r.repository, r.digest) if r.digest else self.by_tag(r.repository, r.reference)
        if platform and m.is_index:
            return self.platform_image(r.repository, m, platform)
        return m

    def config_of(self, repo: str, m: Manifest, *, strict: bool = False) -> dict | None:
        """The parsed config of image manifest ``m``; None when there is none, or (unless ``strict``)
        when it is not a JSON object (an artifact's config: YAML, binary…), so frames show NA.
        With ``strict``, such a config raises :class:`UnsupportedMediaType`."""
        cd = m.config_descriptor
        if not cd or not cd.get("digest"):
            return None

        def fetch() -> dict | str:
            try:
                return self.v2.get_json_blob(repo, cd["digest"])
            except UnsupportedMediaType as exc:  # its message kept, so a second look downloads nothing
                return f"{exc.message} (config media type {cd.get('mediaType')})"

        cfg = self._configs.get(cd["digest"], fetch)
        if isinstance(cfg, str):
            if strict:
                raise UnsupportedMediaType(cfg)
            return None
        return cfg

    def flat_index(self, repo: str, index: Manifest) -> dict:
        """``index``'s JSON with each nested index entry replaced by that index's own entries (OCI
        image-index.md: consumers SHOULD support nested indexes), so platform tables and
        ``choose_platform`` see every image. Unnested indexes cost no request.

        Each index's entries are kept as the registry lists them (an image listed twice is two
        entries), but a nested index is expanded once, where it is first listed: listed again,
        anywhere in the tree, it adds nothing. Indexes more than :data:`~regexplore.model.oci.MAX_INDEX_DEPTH`
        levels down stay entries. Computed once per index digest. Raises :class:`ResponseTooLarge`
        naming ``index`` past the bounds of one resolution (:class:`IndexWalk`)."""
        def flatten() -> dict:
            return {**index.json, "manifests": self._expand(repo, index, IndexWalk(repo, index), 0)}

        return self._flat.get((repo, index.digest), flatten)

    def _expand(self, repo: str, index: Manifest, walk: IndexWalk, depth: int) -> list[dict]:
        """The entries of ``index`` (at ``depth`` below the top), nested indexes not yet seen by ``walk`` expanded."""
        out: list[dict] = []
        for e in walk.entries_of(index):
            digest = e.get("digest")
            if e.get("mediaType") not in INDEX_TYPES or not isinstance(digest, str) or depth >= MAX_INDEX_DEPTH:
                out.append(e)
            elif digest not in walk.expanded:
                walk.expanded.add(digest)
                out.extend(self._expand(repo, self.by_digest(repo, digest), walk, depth + 1))
        return out

    def platform_image(self, repo: str, index: Manifest, platform: str | None) -> Manifest:
        """The image manifest ``platform`` chooses in ``index`` (None: linux/amd64, else the first).
        Raises :class:`NotFound` when no entry matches."""
        entry = choose_platform(self.flat_index(repo, index), platform)
        return self.by_digest(repo, entry["digest"])

    def resolve(self, r: ImageRef, platform: str | None) -> tuple[Manifest, Manifest | None]:
        """(image manifest, index it came from or None); for an index, ``platform`` chooses."""
        top = self.manifest(r)
        if not top.is_index:
            return top, None
        return self.platform_image(r.repository, top, platform), top

    def platform_rows(self, r: ImageRef) -> list[dict]:
        """The ``platforms`` rows of ``r``: an index's entries, nested indexes expanded
        (:func:`~regexplore.model.oci.platform_rows`), or one row for a single image."""
        m = self.manifest(r)
        if m.is_index:
            return platform_rows(self.flat_index(r.repository, m))
        cfg = self.config_of(r.repository, m) if not m.is_schema1 else {}
        s = image_summary(m, cfg)
        return [{"os": s["os"], "architecture": s["architecture"], "variant": (cfg or {}).get("variant"),
                 "os_version": (cfg or {}).get("os.version"), "digest": m.digest, "media_type": m.media_type,
                 "size": m.size, "platform": f"{s['os']}/{s['architecture']}" if s["os"] else None,
                 "attestation": False}]

    def is_blob(self, r: ImageRef) -> bool:
        """True when ``repo@digest`` (no tag) names a blob (a layer) rather than a manifest."""
        if not r.digest or r.tag:
            return False
        # asked through the blob endpoint: a registry may answer a manifest HEAD for a layer
        # digest with a 500 (distribution 2.8 does), never with a clean "not a manifest"
        try:
            size = self.v2.blob_size(r.repository, r.digest)
        except NotFound:
            return False
        if size is None or size > MANIFEST_CAP:
            return True
        try:
            Manifest.from_bytes(self.v2.get_blob(r.repository, r.digest, max_bytes=MANIFEST_CAP))
        except (UnsupportedMediaType, ValueError):
            return True  # not a manifest: a layer (or another blob)
        return False

    def tag_row(self, repo: str, tag: str) -> dict:
        """One row of ``tags(details=True)``: the tag's digest, media type and platforms, and the
        default platform's summary (:func:`~regexplore.model.oci.image_summary`); an index without a
        platform (attestations only, or empty) has no summary."""
        row: dict[str, Any] = {"repository": repo, "tag": tag}
        top = self.by_tag(repo, tag)
        row["digest"] = top.digest
        row["media_type"] = top.media_type
        if top.is_index:
            flat = self.flat_index(repo, top)
            row["platforms"] = [p["platform"] for p in platform_rows(flat) if not p["attestation"]]
            try:
                entry = choose_platform(flat)
            except NotFound:  # an index of attestations only, or empty: no platform to describe
                return row
            image = self.by_digest(repo, entry["digest"])
        else:
            image = top
        cfg = self.config_of(repo, image)
        summary = image_summary(image, cfg)
        row.update(summary)
        if not top.is_index:
            plat = f"{summary['os']}/{summary['architecture']}" if summary.get("os") else None
            if plat and cfg and cfg.get("variant"):
                plat += f"/{cfg['variant']}"
            row["platforms"] = [plat] if plat else []
        return row

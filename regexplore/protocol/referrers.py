"""Referrers (OCI Distribution Spec 1.1): what points at a manifest through its ``subject``, and attaching more.

:class:`Referrers` lists the referrers of one manifest digest from three places, as the spec and cosign keep them:

- the referrers API, ``GET /v2/<name>/referrers/<digest>[?artifactType=]``: every ``Link`` page (bounded), the
  filter applied by the client itself when the answer lacks ``OCI-Filters-Applied: artifactType``;
- where that API answers 404 or something that is not an image index: the *referrers tag schema*, an index
  pushed at tag ``<alg>-<hex>`` (:func:`referrers_tag`) by the clients that pushed the referrers;
- cosign's tags ``sha256-<hex>.sig``, ``.att`` and ``.sbom`` (cosign stores signatures, attestations and SBOMs
  there, with no ``subject``).

Every row's ``artifact_type`` follows the spec's rule: the manifest's ``artifactType``, else its config's media
type. :meth:`Referrers.attach` pushes an OCI 1.1 artifact and, where the registry does not say it indexed the
``subject`` (no ``OCI-Subject`` header), keeps the tag-schema index up to date itself.

Bounds against a hostile registry: at most ``$REGEXPLORE_MAX_REFERRERS`` descriptors in one listing (default
10,000, pages and levels together: :class:`ResponseTooLarge` past it, never a silent truncation), the pages of
:class:`~regexplore.protocol.v2.PagedListing`, a ``Link`` back to a page already read (:class:`RegistryError`),
and :data:`MAX_DEPTH` levels of referrers of referrers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import (
    DeadlineExceeded,
    Denied,
    NotFound,
    RegistryError,
    ResponseTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    load_json,
)
from ..model.oci import (
    CREATED_ANNOTATION,
    EMPTY_DESCRIPTOR,
    EMPTY_JSON,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    TITLE_ANNOTATION,
    Manifest,
    parse_time,
)
from .v2 import LISTING_CAP, MANIFEST_CAP, PagedListing, V2Client, _next_page, cap_from_env, check_header_digest

__all__ = ["COSIGN_SUFFIXES", "MAX_DEPTH", "MAX_REFERRERS_ENV", "MAX_TYPE_LOOKUPS", "Referrers", "referrers_tag"]

#: Environment variable capping the descriptors one referrers listing reads (pages and levels together).
MAX_REFERRERS_ENV = "REGEXPLORE_MAX_REFERRERS"
DEFAULT_MAX_REFERRERS = 10_000
#: ``recursive=True`` walks this many levels of referrers of referrers, and warns when there are more
MAX_DEPTH = 8
#: the tags cosign pushes next to an image: signatures, attestations, SBOMs
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
#: the listed descriptors without ``artifactType`` whose manifest one listing reads for its type (the rest: <NA>)
MAX_TYPE_LOOKUPS = 100
#: how often :meth:`Referrers.attach` re-reads and rewrites the tag-schema index when another writer got between
ATTACH_TRIES = 8
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_TAG_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")

#: one manifest of a repository by digest (the facade's resolver, which fetches each once)
ManifestOf = Callable[[str, str], Manifest]
#: runs a function over items concurrently (the facade's ``_map``); the results in order
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest`` (distribution-spec "Referrers Tag Schema"): the algorithm
    truncated to 32 characters, ``-``, the encoded part truncated to 64, characters a tag cannot hold as ``-``.

    >>> referrers_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    True
    """
    alg, _, encoded = digest.partition(":")
    return _TAG_UNSAFE.sub("-", f"{alg[:32]}-{encoded[:64]}")


def artifact_type_of(m: Manifest) -> str | None:
    """The spec's ``artifactType`` of a manifest: its own ``artifactType``, else its config's media type
    (None for an index without ``artifactType``)."""
    declared = m.json.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    config = m.json.get("config")
    mt = config.get("mediaType") if isinstance(config, dict) else None
    return mt if isinstance(mt, str) else None


def _annotations(doc: dict) -> dict:
    value = doc.get("annotations")
    return dict(value) if isinstance(value, dict) else {}


def _row(subject: str, desc: dict, source: str, depth: int) -> dict:
    """One ``referrers`` row from a descriptor (its ``artifactType`` may still be None: :meth:`Referrers._typed`)."""
    ann = _annotations(desc)
    size = desc.get("size")
    return {"subject": subject, "digest": desc["digest"], "media_type": _text(desc.get("mediaType")),
            "artifact_type": _text(desc.get("artifactType")),
            "size": size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            "annotations": ann, "created": parse_time(ann.get(CREATED_ANNOTATION)), "source": source, "depth": depth}


def _text(value: Any) -> str | None:
    """A descriptor's string field, or None for anything else (absent, empty, a hostile list)."""
    return value if isinstance(value, str) and value else None


def _descriptors(doc: Any, what: str, url: str | None) -> list[dict]:
    """The ``manifests`` of a referrers index, each a descriptor with a digest. Raises
    :class:`UnsupportedMediaType` naming ``what`` for anything else."""
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    entries = [] if entries is None else entries
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("digest"), str)
                                                and _DIGEST.fullmatch(e["digest"]) for e in entries):
        raise UnsupportedMediaType(f"{what}: 'manifests' is not a list of descriptors with digests", url=url)
    return entries


class _Walk:
    """The state of one listing: what the registry showed so far, and the descriptors it may still send
    (``$REGEXPLORE_MAX_REFERRERS``).

    ``api`` is None until the referrers API answered, then whether the registry has it (a registry with the API
    never answers it with 404, so one 404 settles it for the whole listing). ``tags`` is the repository's tags
    when listed (a recursive walk lists them once, so tags that do not exist are not asked for), else None."""

    def __init__(self, what: str, artifact_type: str | None) -> None:
        self.what = what
        self.artifact_type = artifact_type
        self.cap = cap_from_env(MAX_REFERRERS_ENV, DEFAULT_MAX_REFERRERS)
        self.left = self.cap
        self.api: bool | None = None
        self.tags: set[str] | None = None
        self.lookups_left = MAX_TYPE_LOOKUPS

    def take(self, n: int, url: str | None = None) -> None:
        """Count ``n`` descriptors; raises :class:`ResponseTooLarge` past the cap."""
        self.left -= n
        if self.left < 0:
            raise ResponseTooLarge(f"referrers of {self.what}: more than {self.cap} descriptors; raise "
                                   f"{MAX_REFERRERS_ENV} to list more", url=url)

    def may_exist(self, tag: str) -> bool:
        """False only for a tag the listed tags lack."""
        return self.tags is None or tag in self.tags

    def jobs(self, subject: str) -> list[tuple[str, str]]:
        """The requests ``subject``'s referrers need: the API (or straight the tag schema once the registry
        showed it has no API), and the cosign tags that may exist."""
        first = "api" if self.api is not False else "tag-schema"
        tagged = [k for k in (first, *COSIGN_SUFFIXES) if k == "api" or self.may_exist(_tag_of(subject, k))]
        return [(subject, k) for k in tagged]


def _tag_of(subject: str, kind: str) -> str:
    """The tag a kind of lookup reads: the referrers tag, or a cosign tag (``kind`` is its suffix)."""
    return referrers_tag(subject) + ("" if kind == "tag-schema" else kind)


class Referrers:
    """The referrers calls of one registry: ``v2`` for requests, ``manifest_of`` for manifests by digest (each
    fetched once), ``map_`` to run the requests of one level concurrently."""

    def __init__(self, v2: V2Client, manifest_of: ManifestOf, map_: MapFn) -> None:
        self.v2 = v2
        self.manifest_of = manifest_of
        self.map = map_

    # ----------------------------------------------------------------- listing
    def list(self, repo: str, digest: str, artifact_type: str | None = None, *, recursive: bool = False) -> list[dict]:
        """The ``referrers`` rows of manifest ``repo@digest`` (depth 1), and with ``recursive`` the referrers of
        those, level by level (each level's requests concurrent), each manifest listed once, at most
        :data:`MAX_DEPTH` levels (a ``RuntimeWarning`` says when more were left). ``artifact_type`` keeps the
        rows of that type at every level.

        Raises :class:`ResponseTooLarge` past ``$REGEXPLORE_MAX_REFERRERS`` descriptors or the pages cap,
        :class:`RegistryError` for a ``Link`` loop, :class:`UnsupportedMediaType` for a referrers index that
        is not a list of descriptors, and what the registry answers otherwise."""
        walk = _Walk(f"{repo}@{digest}", artifact_type)
        seen = {digest}
        rows: list[dict] = []
        level = [digest]
        for depth in range(1, MAX_DEPTH + 1):
            found = self._level(repo, level, walk, depth, list_tags=recursive and depth == 1)
            fresh = list({r["digest"]: r for r in reversed(found) if r["digest"] not in seen}.values())[::-1]
            seen.update(r["digest"] for r in fresh)  # (the first of twins is kept)
            rows.extend(fresh)
            level = [r["digest"] for r in fresh]
            if not recursive or not level:
                return rows
        warnings.warn(f"referrers of {repo}@{digest}: stopped after {MAX_DEPTH} levels; deeper referrers are "
                      "not listed", RuntimeWarning, stacklevel=3)
        return rows

    def _level(self, repo: str, subjects: list[str], walk: _Walk, depth: int, *, list_tags: bool) -> list[dict]:
        """The rows of the referrers of every digest in ``subjects``: the requests of :meth:`_Walk.jobs` (and with
        ``list_tags`` the repository's tags) all sent together, then one manifest request per descriptor that
        lacks ``artifactType`` while the listing's :data:`MAX_TYPE_LOOKUPS` last, all together (one flat batch
        each: no pool task waits on another)."""
        def run(job: tuple[str, str]) -> list[dict]:
            subject, kind = job
            if kind == "tags":
                walk.tags = self._tags(repo)
                return []
            if kind in COSIGN_SUFFIXES:
                return self._cosign(repo, subject, kind, depth)
            rows = self._api(repo, subject, walk, depth) if kind == "api" else None
            return self._tag_schema(repo, subject, depth, walk) if rows is None else rows

        jobs = [job for s in subjects for job in walk.jobs(s)] + ([("", "tags")] if list_tags else [])
        rows = [r for batch in self.map(run, jobs) for r in batch]
        untyped = [r for r in rows if r["artifact_type"] is None][:walk.lookups_left]
        walk.lookups_left -= len(untyped)
        self.map(lambda r: self._typed(repo, r), untyped)
        return [r for r in rows if walk.artifact_type is None or r["artifact_type"] == walk.artifact_type]

    def _tags(self, repo: str) -> set[str] | None:
        """The repository's tags (bounded pages), or None when the registry will not list them."""
        try:
            return set(self.v2.tags(repo))
        except (NotFound, Unauthorized, Denied):
            return None

    def _api(self, repo: str, digest: str, walk: _Walk, depth: int) -> list[dict] | None:
        """Rows from every page of the referrers API; None when the registry has no such API (404, or an
        answer that is not an image index: the spec's cue to read the tag schema)."""
        path, artifact_type = f"/v2/{repo}/referrers/{digest}", walk.artifact_type
        url: str | None = self.v2.t.url(path + (f"?artifactType={quote(artifact_type, safe='')}"
                                                if artifact_type else ""))
        rows: list[dict] = []
        visited: set[str] = set()
        pages = PagedListing(f"referrers of {repo}@{digest}")
        while url:
            try:
                resp = self.v2.t.request("GET", url, headers={"Accept": OCI_INDEX}, max_bytes=LISTING_CAP,
                                         what=f"referrers of {repo}@{digest[:19]}")
            except NotFound:
                if rows:
                    raise
                walk.api = False
                return None
            ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != OCI_INDEX:
                if rows:
                    raise UnsupportedMediaType(f"referrers of {repo}@{digest}: page {pages.pages + 1} is "
                                               f"{ctype or 'untyped'}, not an image index", url=resp.url)
                walk.api = False
                return None
            doc = load_json(resp.content, f"referrers of {repo}@{digest}", url=resp.url, error=UnsupportedMediaType)
            entries = _descriptors(doc, f"referrers of {repo}@{digest}", resp.url)
            walk.api = True
            walk.take(len(entries), resp.url)
            pages.page([e["digest"] for e in entries], resp.url)
            rows.extend(_row(digest, e, "api", depth) for e in entries)
            url = _next_page(resp, visited, f"referrers of {repo}@{digest}", pages)
        return rows

    def _tag_schema(self, repo: str, digest: str, depth: int, walk: _Walk) -> list[dict]:
        """Rows from the index at the referrers tag of ``digest`` (none when that tag does not exist or does not
        hold an image index, as the spec says)."""
        try:
            index, _ = self._fallback_index(repo, digest)
        except UnsupportedMediaType:
            return []
        if index is None or index.media_type != OCI_INDEX:
            return []
        entries = _descriptors(index.json, f"referrers tag {referrers_tag(digest)} of {repo}", None)
        walk.take(len(entries))
        return [_row(digest, e, "tag-schema", depth) for e in entries]

    def _cosign(self, repo: str, digest: str, suffix: str, depth: int) -> list[dict]:
        """The row of cosign's ``sha256-<hex><suffix>`` manifest, if that tag exists."""
        tag = _tag_of(digest, suffix)
        try:
            m = self.v2.get_manifest(repo, tag)
        except NotFound:
            return []
        desc = {"mediaType": m.media_type, "digest": m.digest, "size": m.size,
                "artifactType": artifact_type_of(m), "annotations": _annotations(m.json)}
        return [_row(digest, desc, "cosign-tag", depth)]

    def _typed(self, repo: str, row: dict) -> None:
        """Set ``row``'s ``artifact_type`` from its manifest; left <NA> when the registry cannot give that manifest
        (gone after a delete, a blob listed as a manifest, any error answer): one odd entry never stops the
        listing. A call past its deadline (:class:`DeadlineExceeded`) still stops it."""
        try:
            row["artifact_type"] = artifact_type_of(self.manifest_of(repo, row["digest"]))
        except DeadlineExceeded:
            raise
        except RegistryError:
            pass

    def _fallback_index(self, repo: str, digest: str) -> tuple[Manifest | None, str | None]:
        """(the manifest at the referrers tag of ``digest``, None when that tag does not exist; the response's
        ``ETag`` or None). Any manifest type is asked for, so a tag that holds something else than an image index
        shows as such. Raises :class:`UnsupportedMediaType` for a body that is no manifest."""
        tag = referrers_tag(digest)
        try:
            resp = self.v2.t.request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT},
                                     max_bytes=MANIFEST_CAP, what=f"referrers tag {repo}:{tag}")
        except NotFound:
            return None, None
        m = Manifest.from_bytes(resp.content, resp.headers.get("Content-Type"), url=resp.url,
                                what=f"referrers tag {repo}:{tag}")
        if resp.headers.get("Docker-Content-Digest"):
            check_header_digest(resp.headers["Docker-Content-Digest"], m, url=resp.url)
        return m, resp.headers.get("ETag")

    # ----------------------------------------------------------------- attach
    def attach(self, repo: str, subject: Manifest, files: Sequence[Any], *, artifact_type: str,
               annotations: dict[str, str] | None = None) -> str:
        """Push an OCI 1.1 artifact whose ``subject`` is ``subject`` and return its digest.

        ``files``: paths, or ``(path, media_type)`` pairs (default media type ``application/octet-stream``);
        each becomes a layer titled with its file name. The config is the empty descriptor; with no files the
        one layer is the empty descriptor too (image-spec's guidance). ``org.opencontainers.image.created`` is
        set to now unless ``annotations`` give it.

        When the manifest PUT's answer lacks ``OCI-Subject`` the registry did not index the subject, and the
        artifact's descriptor is added to the referrers tag schema index (:meth:`_add_to_fallback`).
        Raises :class:`RegistryError` from the registry, ``OSError`` for a file that cannot be read."""
        layers = [self._upload_file(repo, item) for item in files]
        if not self.v2.blob_exists(repo, EMPTY_DESCRIPTOR["digest"]):
            self.v2.upload_blob(repo, EMPTY_JSON, EMPTY_DESCRIPTOR["digest"])
        ann = {CREATED_ANNOTATION: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **(annotations or {})}
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
               "config": EMPTY_DESCRIPTOR, "layers": layers or [EMPTY_DESCRIPTOR],
               "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
               "annotations": ann}
        raw = _json_bytes(doc)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        resp = self._push_artifact(repo, digest, raw)
        if not resp.headers.get("OCI-Subject"):
            self._add_to_fallback(repo, subject.digest, {"mediaType": OCI_MANIFEST, "digest": digest,
                                                         "size": len(raw), "artifactType": artifact_type,
                                                         "annotations": ann})
        return digest

    def _push_artifact(self, repo: str, digest: str, raw: bytes) -> Any:
        """PUT the artifact manifest; a 400 is tried once more after a pause, because distribution 2.8 rewrites a
        blob's link file in place when two clients upload the same blob (the empty config) at once, and a
        manifest PUT in that instant reads it as unknown."""
        try:
            return self.v2.push_manifest(repo, digest, raw, OCI_MANIFEST)
        except RegistryError as exc:
            if exc.status != 400:
                raise
        time.sleep(0.2)
        return self.v2.push_manifest(repo, digest, raw, OCI_MANIFEST)

    def _upload_file(self, repo: str, item: Any) -> dict:
        """Upload one file (streamed, hashed first); returns its layer descriptor."""
        path, media_type = (item if isinstance(item, tuple) else (item, "application/octet-stream"))
        path = Path(os.fspath(path))
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest, size = "sha256:" + h.hexdigest(), path.stat().st_size
        if not self.v2.blob_exists(repo, digest):
            self.v2.upload_stream(repo, digest, size, lambda: path.open("rb"))
        return {"mediaType": media_type, "digest": digest, "size": size,
                "annotations": {TITLE_ANNOTATION: path.name}}

    def _add_to_fallback(self, repo: str, subject: str, desc: dict) -> None:
        """Add ``desc`` to the referrers tag schema index of ``subject``, keeping every other entry verbatim.

        Each try reads the index, writes it with ``desc`` added (``If-Match`` the ETag read, or
        ``If-None-Match: *`` for a new tag, which a registry with conditional PUTs enforces: 412), then reads
        it again: an index that lost ``desc`` (another writer got between), or a 412, means another try, up to
        :data:`ATTACH_TRIES`. On a registry that ignores the conditions (distribution 2.8 does), this
        compare-and-retry narrows the race but cannot close it: a writer that read before this one's confirming
        read can still drop ``desc`` afterwards. Raises :class:`UnsupportedMediaType` when the tag holds
        something else than an image index (never overwritten), :class:`RegistryError` when the tries run out."""
        tag = referrers_tag(subject)
        for attempt in range(ATTACH_TRIES + 1):
            index, etag = self._fallback_index(repo, subject)
            entries = _index_entries(index, f"referrers tag {repo}:{tag}", desc["digest"])
            if attempt and any(_is_entry(e, desc["digest"]) for e in entries):
                return
            if attempt == ATTACH_TRIES:
                break
            raw = _json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": [e for e in entries if not _is_entry(e, desc["digest"])] + [desc]})
            try:
                self.v2.push_manifest(repo, tag, raw, OCI_INDEX,
                                      headers={"If-Match": etag} if etag else {"If-None-Match": "*"})
            except RegistryError as exc:
                if exc.status != 412:
                    raise
            time.sleep(random.uniform(0.05, 0.15) * (attempt + 1))  # a racing writer lands before the re-read
        raise RegistryError(f"referrers tag {repo}:{tag}: other writers kept changing it; {desc['digest']} was "
                            f"not kept after {ATTACH_TRIES} tries")


def _index_entries(index: Manifest | None, what: str, pushed: str) -> list[Any]:
    """The ``manifests`` of the referrers tag's ``index`` (none when the tag does not exist), verbatim: entries
    this client cannot read are another client's, and kept. Raises :class:`UnsupportedMediaType` when the tag
    holds something else than an image index (it is not overwritten; ``pushed``, the artifact, stays unlisted)."""
    if index is None:
        return []
    entries = index.json.get("manifests")
    if index.media_type != OCI_INDEX or not isinstance(entries, list):
        raise UnsupportedMediaType(f"{what} holds a {index.media_type}, not an image index with a 'manifests' "
                                   f"list: not overwritten, so the artifact {pushed} (pushed) is not listed there")
    return entries


def _is_entry(entry: Any, digest: str) -> bool:
    """True when the index entry ``entry`` is the descriptor of ``digest``."""
    return isinstance(entry, dict) and entry.get("digest") == digest


def _json_bytes(doc: dict) -> bytes:
    """``doc`` as compact JSON bytes."""
    return json.dumps(doc, separators=(",", ":")).encode()

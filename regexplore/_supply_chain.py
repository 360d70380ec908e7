"""The facade's supply-chain plumbing: where an image's attestations, SBOM, provenance and signatures are,
for :meth:`Registry.attestations`, :meth:`~Registry.sbom`, :meth:`~Registry.provenance` and
:meth:`~Registry.verify`. The parsing is in :mod:`regexplore.content.attestations`, ``.sbom`` and
``.signatures``; this module only finds the manifests (through the registry's resolver, so each is fetched
once) and asks those modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ._resolve import Resolver
from .content.attestations import (
    DOCUMENT_TYPES,
    Document,
    attestation_for,
    attestation_rows,
    documents_in,
    predicate_of,
    read_document,
)
from .content.signatures import SIG_ARTIFACT_TYPE, PublicKey, cosign_tag, signature_rows
from .errors import NotFound
from .model.oci import Manifest
from .protocol.referrers import Referrers
from .reference import ImageRef

__all__ = ["SupplyChain"]


class SupplyChain:
    """Supply-chain lookups through one registry's ``resolver`` (manifests fetched once), fetching several
    manifests at once with ``map_fn`` (the registry's pool)."""

    def __init__(self, resolver: Resolver, map_fn: Callable[[Callable[[Any], Any], Any], list]) -> None:
        self.resolver = resolver
        self.v2 = resolver.v2
        self.map = map_fn

    def attestation_rows(self, r: ImageRef) -> list[dict]:
        """The ``attestations`` rows of ``r``: none unless it names an index with buildkit attestations."""
        top = self.resolver.manifest(r)
        if not top.is_index:
            return []
        flat = self.resolver.flat_index(r.repository, top)
        return attestation_rows(flat, lambda d: self.resolver.by_digest(r.repository, d), self.map)

    def _cosign_manifest(self, repo: str, digest: str, suffix: str) -> Manifest | None:
        try:
            return self.resolver.by_tag(repo, cosign_tag(digest, suffix))
        except NotFound:
            return None

    def documents(self, r: ImageRef, platform: str | None) -> Iterator[Document]:
        """Every attached document of ``r`` (for an index: of ``platform``'s image), in the order they are
        looked for: buildkit's attestation, then for the image and then the index their OCI referrers of a
        document artifact type (API or ``sha256-<hex>`` tag) and cosign's ``.att`` and ``.sbom`` tags.
        Manifests are fetched only as far as the caller iterates."""
        image, index = self.resolver.resolve(r, platform)
        if index is not None:
            entry = attestation_for(self.resolver.flat_index(r.repository, index), image.digest)
            if entry is not None:
                att = self.resolver.by_digest(r.repository, entry["digest"])
                yield from documents_in(att, "buildkit attestation")
        for digest in [image.digest] + ([index.digest] if index is not None else []):
            for row in Referrers(self.v2, self.resolver.by_digest, self.map).list(r.repository, digest):
                if row["source"] != "cosign-tag" and row["artifact_type"] in DOCUMENT_TYPES:
                    yield from documents_in(self.resolver.by_digest(r.repository, row["digest"]), "referrer")
            for suffix in ("att", "sbom"):
                m = self._cosign_manifest(r.repository, digest, suffix)
                if m is not None:
                    yield from documents_in(m, f"cosign .{suffix}")

    def find(self, r: ImageRef, platform: str | None, wanted: Callable[[str | None], bool],
             what: str) -> tuple[Document, str | None, Any]:
        """The first document of ``r`` whose predicate type ``wanted`` accepts: (document, predicate type,
        predicate). Raises :class:`NotFound` saying where it looked."""
        for doc in self.documents(r, platform):
            if doc.predicate_type is not None and not wanted(doc.predicate_type):
                continue  # announced as something else: not fetched
            predicate_type, predicate = predicate_of(doc, read_document(self.v2, r.repository, doc))
            if wanted(predicate_type):
                return doc, predicate_type, predicate
        where = f"{r}" + (f" ({platform})" if platform else "")
        raise NotFound(f"no {what} found for {where}: looked at buildkit attestations, OCI referrers "
                       "and cosign's .att / .sbom tags")

    def signature_manifests(self, r: ImageRef) -> tuple[list[tuple[Manifest, str]], str]:
        """(the cosign signature manifests of ``r`` with where each was found, ``r``'s digest): its
        ``sha256-<hex>.sig`` tag (``cosign .sig``), then its OCI 1.1 referrers of artifact type
        :data:`SIG_ARTIFACT_TYPE` (``referrer``; API or ``sha256-<hex>`` tag), all of them (cosign 2.x
        verifies only the last one listed)."""
        digest = self.resolver.manifest(r).digest
        tagged = self._cosign_manifest(r.repository, digest, "sig")
        found = [(tagged, "cosign .sig")] if tagged is not None else []
        rows = Referrers(self.v2, self.resolver.by_digest, self.map).list(r.repository, digest, SIG_ARTIFACT_TYPE)
        digests = [row["digest"] for row in rows if row["source"] != "cosign-tag"]
        found += [(m, "referrer") for m in self.map(lambda d: self.resolver.by_digest(r.repository, d), digests)]
        return found, digest

    def signature_rows(self, r: ImageRef, key: Any) -> tuple[list[dict], str]:
        """(``signatures`` rows of every signature manifest of ``r``, the digest they are checked against);
        ``key`` None: each found, not verified."""
        public = key if isinstance(key, PublicKey) or key is None else PublicKey(key)
        manifests, digest = self.signature_manifests(r)
        rows = [row for m, source in manifests
                for row in signature_rows(self.v2, r.repository, m, digest, public, source)]
        return rows, digest

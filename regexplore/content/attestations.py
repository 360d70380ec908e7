"""In-toto attestations attached to images: buildkit's attestation manifests, cosign's ``.att`` / ``.sbom``
tags, and the documents they carry (SBOMs, SLSA provenance).

Where they are (all read from the registry, nothing executed):

- buildkit: an index entry annotated ``vnd.docker.reference.type: attestation-manifest`` whose
  ``vnd.docker.reference.digest`` is the platform manifest it attests; its layers are in-toto statements
  (``application/vnd.in-toto+json``) annotated ``in-toto.io/predicate-type``.
- cosign ``sha256-<hex>.att``: layers ``application/vnd.dsse.envelope.v1+json`` (annotation
  ``predicateType``), a DSSE envelope whose ``payload`` is the base64 statement.
- cosign ``sha256-<hex>.sbom`` (``cosign attach sbom``) or an OCI referrer: the SBOM itself as a layer
  (``application/spdx+json``, ``application/vnd.cyclonedx+json``).

Every document is read whole into memory, so its size is capped (``REGEXPLORE_MAX_SBOM_BYTES``, default
128 MiB): over it :class:`ResponseTooLarge`, before any byte is fetched when the descriptor says so.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import _env
from ..errors import ResponseTooLarge, UnsupportedMediaType, load_json
from ..model.oci import Manifest, platform_rows
from ..protocol.v2 import V2Client

__all__ = [
    "MAX_SBOM_BYTES_ENV", "Document", "attestation_for", "attestation_rows", "documents_in", "is_provenance",
    "is_sbom", "predicate_of", "provenance_summary", "read_document",
]

MAX_SBOM_BYTES_ENV = "REGEXPLORE_MAX_SBOM_BYTES"
DEFAULT_MAX_SBOM_BYTES = 128 * 1024**2

IN_TOTO = "application/vnd.in-toto+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
SBOM_MEDIA_TYPES = {"application/spdx+json": "https://spdx.dev/Document",
                    "application/vnd.cyclonedx+json": "https://cyclonedx.org/bom"}
_REFERENCE_TYPE = "vnd.docker.reference.type"
_REFERENCE_DIGEST = "vnd.docker.reference.digest"


def is_sbom(predicate_type: str | None) -> bool:
    """True for SPDX and CycloneDX predicate types (any version suffix)."""
    return bool(predicate_type) and predicate_type.startswith(("https://spdx.dev/Document",
                                                               "https://cyclonedx.org/bom"))


def is_provenance(predicate_type: str | None) -> bool:
    """True for SLSA provenance predicate types (v0.1, v0.2, v1)."""
    return bool(predicate_type) and predicate_type.startswith("https://slsa.dev/provenance/")


# ---------------------------------------------------------------------------------- buildkit attestations
def _attestation_entries(index: dict) -> list[tuple[dict, str | None]]:
    """(attestation entry, platform of the manifest it attests or None) for each buildkit attestation."""
    listed = index.get("manifests")
    entries = [e for e in listed if isinstance(e, dict) and isinstance(e.get("digest"), str)] \
        if isinstance(listed, list) else []
    platform_of = {r["digest"]: r["platform"] for r in platform_rows({"manifests": entries}) if not r["attestation"]}
    out = []
    for e in entries:
        ann = e.get("annotations") if isinstance(e.get("annotations"), dict) else {}
        if ann.get(_REFERENCE_TYPE) == "attestation-manifest":
            out.append((e, platform_of.get(_attested(e))))
    return out


def _attested(entry: dict) -> str | None:
    """The digest an attestation ``entry`` attests (its ``vnd.docker.reference.digest``), None unless a string."""
    ann = entry.get("annotations") if isinstance(entry.get("annotations"), dict) else {}
    value = ann.get(_REFERENCE_DIGEST)
    return value if isinstance(value, str) else None


def attestation_for(index: dict, image_digest: str) -> dict | None:
    """The buildkit attestation entry of ``index`` that attests ``image_digest``, or None."""
    for e, _ in _attestation_entries(index):
        if _attested(e) == image_digest:
            return e
    return None


def attestation_rows(index: dict, manifest_of: Callable[[str], Manifest],
                     map_fn: Callable[[Callable[[Any], Any], Iterable[Any]], list] = lambda f, xs: [f(x) for x in xs],
                     ) -> list[dict]:
    """The ``attestations`` rows of an index's JSON: one per in-toto layer of each attestation manifest
    (fetched with ``manifest_of(digest)``, through ``map_fn`` so a caller can fetch them concurrently)."""
    found = _attestation_entries(index)
    manifests = map_fn(lambda pair: manifest_of(pair[0]["digest"]), found)
    rows = []
    for (entry, platform), m in zip(found, manifests):
        for layer in m.layer_descriptors:
            ann = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
            rows.append({"platform": platform, "digest": m.digest,
                         "image_digest": _attested(entry),
                         "predicate_type": ann.get("in-toto.io/predicate-type"),
                         "layer_digest": layer.get("digest"), "size": layer.get("size"),
                         "media_type": layer.get("mediaType")})
    return rows


# ---------------------------------------------------------------------------------- documents
@dataclass(frozen=True)
class Document:
    """One attached document: the layer ``descriptor`` holding it, how it is wrapped (``kind``:
    ``statement``, ``dsse`` or ``sbom``), its ``predicate_type`` as the manifest announces it, where it
    was found (``source``) and the ``manifest`` digest that lists it."""

    descriptor: dict
    kind: str
    predicate_type: str | None
    source: str
    manifest: str


#: artifact types (of a referrer) whose layers may be documents
DOCUMENT_TYPES = frozenset({IN_TOTO, DSSE, *SBOM_MEDIA_TYPES})


def documents_in(m: Manifest, source: str) -> list[Document]:
    """The attestation / SBOM layers of manifest ``m`` (other layers are not documents). A layer of another
    type (``application/octet-stream`` as pushed by a generic client) counts as what ``m``'s
    ``artifactType`` says, when that is a document type."""
    artifact_type = m.json.get("artifactType")
    out = []
    for layer in m.layer_descriptors:
        mt = layer.get("mediaType")
        if mt not in DOCUMENT_TYPES and artifact_type in DOCUMENT_TYPES:
            mt = artifact_type
        ann = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        if mt == IN_TOTO:
            out.append(Document(layer, "statement", ann.get("in-toto.io/predicate-type"), source, m.digest))
        elif mt == DSSE:
            out.append(Document(layer, "dsse", ann.get("predicateType"), source, m.digest))
        elif mt in SBOM_MEDIA_TYPES:
            out.append(Document(layer, "sbom", SBOM_MEDIA_TYPES[mt], source, m.digest))
    return out


def read_document(v2: V2Client, repo: str, doc: Document) -> Any:
    """The JSON of ``doc``'s blob, verified against its digest and capped (module docstring). Raises
    :class:`ResponseTooLarge` naming the cap, :class:`UnsupportedMediaType` for a blob that is not JSON."""
    cap = _env.whole(MAX_SBOM_BYTES_ENV, DEFAULT_MAX_SBOM_BYTES)
    digest, size = doc.descriptor.get("digest"), doc.descriptor.get("size")
    what = f"{doc.source} document {str(digest)[:19]} of {repo}"
    too_big = f"{what} is over {MAX_SBOM_BYTES_ENV}={cap} bytes; raise it to read this document"
    if isinstance(size, int) and size > cap:
        raise ResponseTooLarge(f"{too_big} (its descriptor says {size} bytes)")
    try:
        raw = v2.get_blob(repo, str(digest), max_bytes=cap)
    except ResponseTooLarge:
        raise ResponseTooLarge(too_big) from None
    try:
        return load_json(raw, what, error=UnsupportedMediaType)
    except ValueError:
        raise UnsupportedMediaType(f"{what} is not JSON ({doc.descriptor.get('mediaType')})") from None


def predicate_of(doc: Document, content: Any) -> tuple[str | None, Any]:
    """(predicate type, predicate) of a read document: an in-toto statement's, a DSSE envelope's
    statement's, or (``sbom`` kind) the document itself. Raises :class:`UnsupportedMediaType`."""
    what = f"{doc.source} document {str(doc.descriptor.get('digest'))[:19]}"
    if doc.kind == "sbom":
        return doc.predicate_type, content
    if doc.kind == "dsse":
        content = _dsse_statement(content, what)
    if not isinstance(content, dict) or "predicate" not in content:
        raise UnsupportedMediaType(f"{what} is not an in-toto statement (no predicate)")
    return content.get("predicateType"), content["predicate"]


def _dsse_statement(envelope: Any, what: str) -> Any:
    """The statement inside a DSSE envelope (``payload``: base64). Raises :class:`UnsupportedMediaType`."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise UnsupportedMediaType(f"{what} is not a DSSE envelope (no payload)")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        return load_json(payload, f"{what} payload", error=UnsupportedMediaType)
    except (binascii.Error, ValueError):
        raise UnsupportedMediaType(f"{what}: the DSSE payload is not base64 JSON") from None


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def provenance_summary(predicate_type: str | None, predicate: Any) -> dict:
    """A SLSA provenance predicate as ``{predicate_type, builder_id, build_type, parameters, materials,
    predicate}``: v0.1/v0.2 (``builder.id``, ``buildType``, ``invocation.parameters``, ``materials``) and
    v1 (``runDetails.builder.id``, ``buildDefinition.buildType``, ``.externalParameters``,
    ``.resolvedDependencies``) in the same keys; ``predicate`` is the whole predicate as found."""
    if not isinstance(predicate, dict):
        raise UnsupportedMediaType(f"the {predicate_type} predicate is not a JSON object")
    if "buildDefinition" in predicate or "runDetails" in predicate:
        parts = ("runDetails", "builder", "id"), ("buildDefinition", "buildType"), \
            ("buildDefinition", "externalParameters"), ("buildDefinition", "resolvedDependencies")
    else:
        parts = ("builder", "id"), ("buildType",), ("invocation", "parameters"), ("materials",)
    builder_id, build_type, parameters, materials = (_get(predicate, *p) for p in parts)
    return {"predicate_type": predicate_type, "builder_id": builder_id, "build_type": build_type,
            "parameters": parameters, "materials": materials if isinstance(materials, list) else [],
            "predicate": predicate}

"""cosign-shaped signatures and buildkit-shaped attestations for tests, built with ``cryptography`` and plain JSON,
independent of regexplore's own code.

Shapes come from recorded data (../shared/fixtures/real, see its README): the simple-signing payload of
``cosign_signature_valid_containers-image.sigstore`` (cosign's own field order), the ``.sig`` manifest of
``cosign_sig_manifest_dockerhub_chihjenhuang_cosign1_2023.json`` (OCI manifest, config, one
``application/vnd.dev.cosign.simplesigning.v1+json`` layer per signature with the signature annotation), and
the alpine 3.23.2 index and attestation manifests of ``buildkit_attestations_alpine_3.23.2_dockerhub_2025``.
The OCI 1.1 form of a signature is cosign 2.x's ``--registry-referrers-mode=oci-1-1`` (sigstore/cosign
pkg/oci/remote/write.go ``WriteSignaturesExperimentalOCI``: the ``.sig`` manifest with its config media type
and ``artifactType`` set to ``application/vnd.dev.cosign.artifact.sig.v1+json`` and the image as ``subject``,
pushed by digest), with the referrers tag go-containerregistry keeps where the registry has no referrers API
(pkg/v1/remote/write.go ``commitSubjectReferrers``: an OCI index at ``sha256-<hex>``, one descriptor per
referrer with ``artifactType`` = its config media type, sorted by digest).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
ALPINE = "buildkit_attestations_alpine_3.23.2_dockerhub_2025"


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (cosign's default)."""
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The PEM ``cosign.pub`` of ``key``."""
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def payload(digest: str, reference: str) -> bytes:
    """cosign's simple-signing payload for ``digest`` named ``reference`` (compact, cosign's key order)."""
    doc = {"critical": {"identity": {"docker-reference": reference}, "image": {"docker-manifest-digest": digest},
                        "type": "cosign container image signature"}, "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    """The base64 DER ECDSA-SHA256 signature of ``data``, as cosign puts it in the annotation."""
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def recorded_signatures(shared: Path) -> list[tuple[bytes, str]]:
    """(payload bytes, base64 signature) of the three recorded containers/image ``.sigstore`` files: valid,
    valid by skopeo with a tag, and signed by an unknown key (in that order)."""
    out = []
    for name in ("cosign_signature_valid_containers-image.sigstore",
                 "cosign_signature_valid_by_skopeo_with_tag_containers-image.sigstore",
                 "cosign_signature_unknown_key_containers-image.sigstore"):
        raw = (shared / "fixtures" / "real" / name).read_bytes()
        doc = json.loads(raw.split(b"\n", 1)[1])  # after the "\x00sigstore-json\n" prefix
        out.append((base64.b64decode(doc["payload"]), doc["annotations"][SIGNATURE]))
    return out


def sig_manifest(config: dict[str, Any], layers: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``.sig`` manifest in the recorded Docker Hub shape: OCI manifest, ``config``, the signature layers."""
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}


def referrer_sig_manifest(config: dict[str, Any], layers: list[dict[str, Any]], subject: dict[str, Any]) -> dict:
    """The ``.sig`` manifest as cosign's OCI 1.1 mode writes it: config media type and ``artifactType`` the
    signature artifact type, ``subject`` the signed image's descriptor (mediaType, digest, size)."""
    return {**sig_manifest({**config, "mediaType": SIG_ARTIFACT}, layers),
            "subject": {k: subject[k] for k in ("mediaType", "digest", "size")}, "artifactType": SIG_ARTIFACT}


def fallback_index(referrers: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """go-containerregistry's referrers tag index for (manifest, its pushed descriptor) pairs."""
    entries = [{"mediaType": m["mediaType"], "size": d["size"], "digest": d["digest"],
                "artifactType": m["config"]["mediaType"]} for m, d in referrers]
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": sorted(entries, key=lambda e: e["digest"])}


def signature_layer(descriptor: dict[str, Any], signature: str) -> dict[str, Any]:
    """A simple-signing layer descriptor (``descriptor``: the payload blob's digest and size) with ``signature``."""
    return {"mediaType": SIMPLE_SIGNING, "size": descriptor["size"], "digest": descriptor["digest"],
            "annotations": {SIGNATURE: signature}}


def alpine_dir(shared: Path) -> Path:
    """The recorded alpine 3.23.2 folder (index + blobs/sha256/<hex>)."""
    return shared / "fixtures" / "real" / ALPINE


def alpine_blob(shared: Path, digest: str) -> bytes:
    """One recorded alpine blob by digest."""
    return (alpine_dir(shared) / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def alpine_index(shared: Path) -> dict[str, Any]:
    """The recorded alpine 3.23.2 index (re-serialised by its source: parse it, do not hash it)."""
    return json.loads((alpine_dir(shared) / "index_alpine_3.23.2_reformatted.json").read_text())


def statement_predicate(shared: Path, digest: str) -> dict[str, Any]:
    """The predicate of a recorded in-toto statement."""
    return json.loads(alpine_blob(shared, digest))["predicate"]

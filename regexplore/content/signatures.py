"""cosign signatures: find them, verify them offline with a public key.

cosign keeps the signatures of ``repo@sha256:<hex>`` in the manifest tagged ``sha256-<hex>.sig``, or, with
``--registry-referrers-mode=oci-1-1`` (cosign 2.x), in the same manifest pushed untagged as an OCI 1.1
referrer: ``subject`` the image, ``artifactType`` and config media type :data:`SIG_ARTIFACT_TYPE`
(``WriteSignaturesExperimentalOCI`` in cosign's pkg/oci/remote/write.go). Each
layer ``application/vnd.dev.cosign.simplesigning.v1+json`` is a *simple-signing payload*
(``{"critical": {"identity": {"docker-reference"}, "image": {"docker-manifest-digest"}, "type"},
"optional"}``) and its annotation ``dev.cosignproject.cosign/signature`` the base64 ECDSA signature of the
payload's bytes (SHA-256). A signature verifies when it checks with the key over those exact bytes **and**
the payload's ``docker-manifest-digest`` is the digest asked about; like cosign, the name in
``docker-reference`` is reported, not required to match.

Keyless signatures (a Fulcio certificate in ``dev.sigstore.cosign/certificate``, a Rekor bundle) are found
but not verified: that needs the Sigstore trust root, out of scope here. Key material never appears in a
row, a message or a repr: a key is named by its path, or by the SHA-256 of its public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

from ..errors import RegistryError, load_json
from ..model.oci import Manifest
from ..protocol.v2 import V2Client

__all__ = ["SIGNATURE_ANNOTATION", "SIG_ARTIFACT_TYPE", "SIMPLE_SIGNING", "PublicKey", "cosign_tag", "signature_rows",
           "verify_payload"]

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
#: the artifact type of a cosign signature stored as an OCI 1.1 referrer (cosign's ``ArtifactType("sig")``)
SIG_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
PAYLOAD_TYPE = "cosign container image signature"
#: a simple-signing payload is a few hundred bytes; a bigger one is not read
MAX_PAYLOAD_BYTES = 1024 * 1024


def cosign_tag(digest: str, suffix: str = "sig") -> str:
    """cosign's tag for ``digest``'s ``suffix`` (``sig``, ``att``, ``sbom``): ``sha256-<hex>.sig``."""
    return f"{digest.replace(':', '-', 1)}.{suffix}"


def _is_pem_text(key: str) -> bool:
    """True when ``key`` is PEM text rather than a path (so it is never used, nor echoed, as a file name)."""
    return key.lstrip().startswith("-----BEGIN") or "\n" in key


class PublicKey:
    """An ECDSA public key to verify cosign signatures with (``cosign.pub``).

    ``key``: a path to a PEM file, PEM text (``str`` or bytes), or a ``cryptography`` public key. ``name``
    is what tables show: the path, else ``sha256:<12 hex>`` of the public key (never the key itself). Raises
    ``ValueError`` for a private key, text that is not a PEM public key, or a key that is not ECDSA.
    """

    def __init__(self, key: Any) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        name = None
        if isinstance(key, str) and _is_pem_text(key):
            key = key.encode()
        if isinstance(key, (str, os.PathLike)):
            name = os.fspath(key)
            with open(name, "rb") as f:
                key = f.read()
        if isinstance(key, bytes):
            if b"PRIVATE KEY" in key:
                raise ValueError("this is a private key: verify with the public key (cosign.pub)")
            try:
                key = serialization.load_pem_public_key(key)
            except ValueError:
                raise ValueError(f"{name or 'key'} is not a PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError(f"cosign keys here are ECDSA public keys, not {type(key).__name__}")
        self._key = key
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.name = name or f"sha256:{hashlib.sha256(spki).hexdigest()[:12]}"

    def __repr__(self) -> str:
        return f"PublicKey({self.name!r})"

    def verifies(self, signature: bytes, payload: bytes) -> bool:
        """True when ``signature`` (DER ECDSA) signs ``payload`` with SHA-256 under this key."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self._key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def verify_payload(payload: bytes, annotations: dict, digest: str, key: PublicKey | None) -> dict:
    """Check one simple-signing layer: ``payload`` (its bytes) and its ``annotations`` against
    ``digest`` (what must be signed) with ``key``. Returns ``{verified, docker_reference, error}``;
    ``error`` says why not (None when verified). Without a key (None) a signature is found, not verified."""
    try:
        doc = load_json(payload, "signature payload")
    except (ValueError, RegistryError):
        doc = None
    critical = doc.get("critical") if isinstance(doc, dict) else None
    reference = _at(critical, "identity", "docker-reference")
    row: dict[str, Any] = {"verified": False, "docker_reference": reference, "error": None}
    if CERTIFICATE_ANNOTATION in annotations:
        row["error"] = "keyless signature (Fulcio certificate): found, not verified (keyless is out of scope)"
    elif not isinstance(annotations.get(SIGNATURE_ANNOTATION), str):
        row["error"] = f"no {SIGNATURE_ANNOTATION} annotation"
    elif key is None:
        row["error"] = "found, not verified: no key given"
    elif not key.verifies(_b64(annotations[SIGNATURE_ANNOTATION]), payload):
        row["error"] = f"the signature does not verify with key {key.name} over the payload"
    elif not isinstance(critical, dict) or critical.get("type") != PAYLOAD_TYPE:
        row["error"] = f"the signed payload is not a {PAYLOAD_TYPE!r} simple-signing payload"
    elif _at(critical, "image", "docker-manifest-digest") != digest:
        signed = _at(critical, "image", "docker-manifest-digest")
        row["error"] = f"the payload signs {str(signed)[:80]}, not {digest}"
    else:
        row["verified"] = True
    return row


def _at(doc: Any, *path: str) -> Any:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _b64(text: str) -> bytes:
    """Base64 text as bytes; text that is not base64 gives ``b""`` (which verifies nothing)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def signature_rows(v2: V2Client, repo: str, sig: Manifest, digest: str, key: PublicKey | None,
                   source: str) -> list[dict]:
    """The ``signatures`` rows of the signature manifest ``sig`` (one per simple-signing layer; ``source``
    says where it was found) for the image ``digest``: each payload fetched (verified against its layer digest, at most
    :data:`MAX_PAYLOAD_BYTES`) and checked with :func:`verify_payload`. A payload that cannot be fetched
    is a row with the reason."""
    rows = []
    for layer in sig.layer_descriptors:
        if layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        row = {"digest": sig.digest, "key": key and key.name, "layer_digest": layer.get("digest"), "source": source}
        try:
            payload = v2.get_blob(repo, str(layer.get("digest")), max_bytes=MAX_PAYLOAD_BYTES)
        except RegistryError as exc:
            rows.append({**row, "verified": False, "error": f"payload not read: {exc}"})
            continue
        rows.append({**row, **verify_payload(payload, annotations, digest, key)})
    return rows

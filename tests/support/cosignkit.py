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

import pushing
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from servers import push_tiny_image

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
ALPINE = "buildkit_attestations_alpine_3.23.2_dockerhub_2025"
#: the recorded alpine 3.23.2 in-toto statements: SPDX SBOMs and SLSA v0.2 provenance per platform
SBOM = {"linux/amd64": "sha256:5c1f58ba4e0de0c5a3d414623520605bbfcf811e450d0dc2e2483e22562bafb2",
        "linux/arm64/v8": "sha256:0d38fd5b319494c7f0fdcc2c23fe9358909a9d14e82a7982e20f83a2b860edba"}
PROVENANCE = {"linux/amd64": "sha256:644afed44dca2b34dcec62eac3f2cbfafa45adfaa22355c33a26bce6eb7e939b",
              "linux/arm64/v8": "sha256:4fbdf2544c910b27f420924db0b8295dbf1fedcfe30c7a7a71386852418dbac6",
              "linux/arm/v6": "sha256:c29e4c1977b4ca5bc317f8a0c00b379f7a1d9e0b905cbf75076c5ca8d38b7ff6"}
SPDX, PROV = "https://spdx.dev/Document", "https://slsa.dev/provenance/v0.2"


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


def push_attested_index(url: str, shared: Path, repo: str, tag: str = "3.23.2") -> dict[str, str]:
    """Three platform images and, per platform, an attestation manifest whose layers are the recorded in-toto
    statements with the recorded annotations (the alpine index's shape), the index at ``tag``; returns
    platform -> image digest."""
    images: dict[str, str] = {}
    entries = []
    with pushing.Pusher(url) as p:
        for platform in PROVENANCE:
            os_, arch, *variant = platform.split("/")
            img = push_tiny_image(url, repo, None, payload=platform.encode() * 50)
            images[platform] = img.digest
            plat = {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}
            entries.append({**img.descriptor, "platform": plat})
            layers = []
            for digest, kind in ((SBOM.get(platform), SPDX), (PROVENANCE[platform], PROV)):
                if digest:
                    layers.append(p.blob(repo, alpine_blob(shared, digest), "application/vnd.in-toto+json",
                                         annotations={"in-toto.io/predicate-type": kind}))
            config = p.blob(repo, b'{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers"}}', OCI_CONFIG)
            att = p.manifest(repo, None, {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                                          "layers": layers})
            entries.append({**att, "annotations": {"vnd.docker.reference.digest": img.digest,
                                                   "vnd.docker.reference.type": "attestation-manifest"},
                            "platform": {"architecture": "unknown", "os": "unknown"}})
        p.manifest(repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return images


def push_signatures(url: str, repo: str, digest: str, signatures: list[tuple[bytes, str]]) -> None:
    """Push cosign's ``sha256-<hex>.sig`` for ``digest``: one simple-signing layer per (payload, signature)."""
    with pushing.Pusher(url) as p:
        layers = [signature_layer(p.blob(repo, data, SIMPLE_SIGNING), sig) for data, sig in signatures]
        config = {"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]}}
        cfg = p.blob(repo, json.dumps(config).encode(), OCI_CONFIG)
        p.manifest(repo, f"sha256-{digest[7:]}.sig", sig_manifest(cfg, layers))

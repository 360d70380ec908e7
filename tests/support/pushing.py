"""Put content into a registry with plain ``requests``, independent of regexplore (the one image pusher).

``push_image`` pushes an image of given layers (monolithic blob uploads, then the manifest); ``Pusher``
is the session underneath, for tests that build unusual manifests, indexes or artifacts themselves.
Every call raises ``requests.HTTPError`` if the registry refuses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from digests import sha256_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_CONFIG_TYPES = {OCI_MANIFEST: OCI_CONFIG, DOCKER_MANIFEST: DOCKER_CONFIG}


class Pusher:
    """A ``requests`` session on ``base_url`` that uploads blobs (POST + PUT) and PUTs manifests.

    ``auth`` and ``verify`` are what ``requests`` accepts. Use it as a context manager or ``close()`` it.
    """

    def __init__(self, base_url: str, *, auth: Any = None, verify: bool | str = True) -> None:
        self.base = base_url
        self.s = requests.Session()
        self.s.auth, self.s.verify = auth, verify

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session."""
        self.s.close()

    def blob(self, repo: str, data: bytes, media_type: str | None = None, **extra: Any) -> dict[str, Any]:
        """Upload ``data`` in one PUT; returns its descriptor (``mediaType`` only if given, plus ``extra``)."""
        r = self.s.post(f"{self.base}/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        self.s.put(requests.compat.urljoin(self.base, r.headers["Location"]), params={"digest": sha256_digest(data)},
                   data=data, headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        desc = {"mediaType": media_type} if media_type else {}
        return {**desc, "digest": sha256_digest(data), "size": len(data), **extra}

    def manifest(self, repo: str, ref: str | None, doc: dict | bytes, media_type: str | None = None) -> dict[str, Any]:
        """PUT ``doc`` (a dict, or raw bytes) by ``ref`` (a tag), or by its own digest when ``ref`` is None.

        The content type is ``media_type``, else the document's ``mediaType``. Returns its descriptor.
        """
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        media_type = media_type or json.loads(raw)["mediaType"]
        self.s.put(f"{self.base}/v2/{repo}/manifests/{ref or sha256_digest(raw)}", data=raw,
                   headers={"Content-Type": media_type}).raise_for_status()
        return {"mediaType": media_type, "digest": sha256_digest(raw), "size": len(raw)}


@dataclass
class PushedImage:
    """What :func:`push_image` pushed: the ``manifest`` bytes and their ``digest``, the ``config`` bytes
    and ``config_digest``, the ``layers`` blobs with their ``layer_digests``; ``layer``/``layer_digest``
    are the first layer's (the only one of a one-layer image)."""

    repo: str
    tag: str | None
    manifest: bytes
    digest: str
    config: bytes
    config_digest: str
    layers: list[bytes] = field(default_factory=list)
    layer_digests: list[str] = field(default_factory=list)

    @property
    def layer(self) -> bytes:
        """The first layer's bytes."""
        return self.layers[0]

    @property
    def layer_digest(self) -> str:
        """The first layer's digest."""
        return self.layer_digests[0]

    @property
    def ref(self) -> str:
        """``repo:tag``, or ``repo@digest`` when pushed without a tag."""
        return f"{self.repo}:{self.tag}" if self.tag else f"{self.repo}@{self.digest}"

    @property
    def descriptor(self) -> dict[str, Any]:
        """The manifest's descriptor (for an index that lists it)."""
        media_type = json.loads(self.manifest)["mediaType"]
        return {"mediaType": media_type, "digest": self.digest, "size": len(self.manifest)}


def default_config(diff_ids: Sequence[str], arch: str = "amd64") -> dict[str, Any]:
    """An image config for linux/``arch`` with ``diff_ids`` and one history step per layer."""
    return {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created_by": f"step {i}"} for i in range(len(diff_ids))]}


def push_image(base_url: str, repo: str, tag: str | None, layers: Sequence[tuple[bytes, str]], *,
               config: bytes | dict | None = None, diff_ids: Sequence[str] | None = None,
               manifest_media_type: str = OCI_MANIFEST, indent: int | None = None, auth: Any = None,
               verify: bool | str = True) -> PushedImage:
    """Push an image whose manifest lists ``layers`` [(blob, media type)] in order (repeats allowed).

    ``config`` is raw bytes, a dict (JSON-encoded), or None for :func:`default_config` of ``diff_ids``
    (default: the layers' own digests). Its media type follows ``manifest_media_type`` (OCI or Docker
    schema 2). The manifest is JSON with ``indent``; ``tag`` None pushes it by digest only.
    Returns a :class:`PushedImage`; raises ``requests.HTTPError`` if the registry refuses.
    """
    digests = [sha256_digest(blob) for blob, _ in layers]
    if config is None:
        config = default_config(digests if diff_ids is None else diff_ids)
    raw_config = config if isinstance(config, bytes) else json.dumps(config, sort_keys=True).encode()
    with Pusher(base_url, auth=auth, verify=verify) as p:
        descs = {blob: p.blob(repo, blob, mt) for blob, mt in dict(layers).items()}
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": manifest_media_type,
            "config": p.blob(repo, raw_config, _CONFIG_TYPES[manifest_media_type]),
            "layers": [descs[blob] for blob, _ in layers]}, indent=indent).encode()
        p.manifest(repo, tag, manifest, manifest_media_type)
    return PushedImage(repo=repo, tag=tag, manifest=manifest, digest=sha256_digest(manifest), config=raw_config,
                       config_digest=sha256_digest(raw_config), layers=[b for b, _ in layers], layer_digests=digests)


def put_blob(base_url: str, repo: str, data: bytes) -> dict[str, Any]:
    """Upload one blob (monolithic); returns its descriptor."""
    with Pusher(base_url) as p:
        return p.blob(repo, data)


def put_manifest(base_url: str, repo: str, ref: str | None, doc: dict) -> dict[str, Any]:
    """PUT ``doc`` by ``ref`` (a tag), or by its own digest; returns its descriptor."""
    with Pusher(base_url) as p:
        return p.manifest(repo, ref, doc)

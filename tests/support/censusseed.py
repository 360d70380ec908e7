"""A registry of many repositories for the census tests and benchmark, seeded fast with plain ``requests``.

A few images are pushed once (blobs and manifests) into ``base/images``; every other repository gets their
blobs by cross-repository mount and its tags by manifest PUT, so images are shared across repositories as on a
real registry. Besides the small repositories (a few tags each): ``big`` repositories with hundreds of tags,
an index of two platforms, and a name Docker's reference grammar reads as a host (``x.y_z/005-tool``).
"""

from __future__ import annotations

import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from digests import sha256_digest
from inside_images import DEBIAN_12, build_image, dist_infos, dpkg_stanzas
from pushing import OCI_MANIFEST, PushedImage, Pusher, default_config

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class _Bound:
    """A seeder's images with another session (for a worker thread)."""

    p: Pusher
    seeder: _Seeder

    @property
    def blobs(self) -> list[str]:
        return self.seeder.blobs

    @property
    def base(self) -> str:
        return self.seeder.base


@dataclass
class Seeded:
    """What was pushed: ``tags`` maps each repository to its {tag: digest}."""

    tags: dict[str, dict[str, str]] = field(default_factory=dict)


class _Seeder:
    def __init__(self, p: Pusher, images: int) -> None:
        self.p = p
        self.blobs: list[str] = []
        self.manifests: list[bytes] = []
        base = self.base = "base/images"
        for i in range(images):
            layer = _tar(f"etc/image-{i}", f"image {i}\n".encode())
            desc = p.blob(base, layer, OCI_LAYER)
            cfg = default_config([desc["digest"]], "arm64" if i % 4 == 3 else "amd64")
            cfg["created"] = f"2024-0{1 + i % 9}-01T00:00:00Z"
            raw_cfg = json.dumps(cfg, sort_keys=True).encode()
            cdesc = p.blob(base, raw_cfg, "application/vnd.oci.image.config.v1+json")
            self.blobs += [desc["digest"], cdesc["digest"]]
            self.manifests.append(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                                              "layers": [desc]}).encode())

    def repo(self, repo: str, tags: dict[str, bytes], seeded: Seeded, untagged: tuple[bytes, ...] = ()) -> None:
        """Mount the blobs of the images into ``repo``, PUT the ``untagged`` manifests by digest, then each of
        ``tags`` by its tag."""
        docs = [json.loads(raw) for raw in [*tags.values(), *untagged]]
        used = {d["digest"] for doc in docs for d in [*doc.get("layers", []), doc.get("config") or {}] if d}
        for digest in [b for b in self.blobs if b in used]:
            r = self.p.s.post(f"{self.p.base}/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": self.base})
            r.raise_for_status()
        for raw in untagged:
            self.p.manifest(repo, None, raw)
        for tag, raw in tags.items():
            media_type = json.loads(raw)["mediaType"]
            self.p.manifest(repo, tag, raw, media_type)
        seeded.tags[repo] = {tag: sha256_digest(raw) for tag, raw in tags.items()}


def seed_census(base_url: str, *, small: int = 300, big: int = 2, big_tags: int = 250, images: int = 8) -> Seeded:
    """Seed ``base_url``: ``small`` repositories of 1–3 tags, ``big`` of ``big_tags`` tags, one index, one
    host-looking name; images chosen round-robin from ``images`` shared ones. Returns what was pushed."""
    seeded = Seeded()
    with Pusher(base_url) as p:
        s = _Seeder(p, images)
        ms = s.manifests[:-2]  # shared by the tags; the last two in the index, ``a`` also tagged in solo/arch
        a, b = s.manifests[-2:]
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256_digest(a), "size": len(a),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b), "size": len(b),
             "platform": {"os": "linux", "architecture": "arm64"}}]}).encode()
        s.repo("multi/arch", {"latest": index}, seeded, untagged=(a, b))  # children by digest
        s.repo("solo/arch", {"amd64": a}, seeded)
        s.repo(s.base, {"base": ms[0]}, seeded)
        s.repo("x.y_z/005-tool", {"1.0": ms[1]}, seeded)
        for i in range(big):
            s.repo(f"big/many-{i}", {f"v{t:04d}": ms[t % len(ms)] for t in range(big_tags)}, seeded)
        smalls = {f"team{i % 10}/app-{i:04d}": {f"t{k}": ms[(i + k) % len(ms)] for k in range(1 + i % 3)}
                  for i in range(small)}
    with ThreadPoolExecutor(8) as pool:  # a session per thread: requests' Session is not meant to be shared
        list(pool.map(lambda item: _push_one(base_url, s, item, seeded), smalls.items()))
    return seeded


def _push_one(base_url: str, s: _Seeder, item: tuple[str, dict[str, bytes]], seeded: Seeded) -> None:
    with Pusher(base_url) as p:
        _Seeder.repo(_Bound(p, s), *item, seeded)


@dataclass
class Inside:
    """The images of :func:`seed_inside`: ``deb`` (one layer: os-release and this machine's dpkg status) and
    ``py`` (that layer, then the venv's wheel METADATA), each pushed to two repositories."""

    deb: PushedImage
    py: PushedImage
    repositories: tuple[str, ...]


def seed_inside(base_url: str) -> Inside:
    """Push the two images of :class:`Inside` (``inside/deb:12``, ``inside/py:1``) and tag both again in
    ``inside/copy`` (same digests: each image is listed by two repositories)."""
    base = {"etc/os-release": DEBIAN_12, "var/lib/dpkg/status": b"".join(dpkg_stanzas())}
    deb = build_image(base_url, "inside/deb", "12", [base])
    py = build_image(base_url, "inside/py", "1", [base, dist_infos()])
    with Pusher(base_url) as p:
        for image, tag in ((deb, "deb"), (py, "py")):
            for digest in (image.config_digest, *image.layer_digests):
                p.s.post(f"{p.base}/v2/inside/copy/blobs/uploads/",
                         params={"mount": digest, "from": image.repo}).raise_for_status()
            p.manifest("inside/copy", tag, image.manifest)
    return Inside(deb, py, ("inside/deb", "inside/py", "inside/copy"))

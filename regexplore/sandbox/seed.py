"""Deterministic demo content that regexplore builds itself: layers, configs, manifests, indexes.

No network and no docker: layers are tar files made in memory (sorted entries, fixed mtimes, uid/gid 0),
compressed with gzip (header mtime 0) or zstd; configs carry a realistic history (classic ``docker build``
``/bin/sh -c #(nop)`` steps and buildkit ``# buildkit`` steps, ``empty_layer`` entries, nanosecond times);
manifests are OCI or Docker schema2; ``demo/multiarch`` is an OCI index for linux/amd64 and linux/arm64/v8
with buildkit-style attestation manifests (platform ``unknown/unknown``), plus a Docker manifest list.

The same call always yields the same bytes, hence the same digests (on a given zlib/zstd build)::

    content = demo_content()
    content.repositories()            # ['demo/big', 'demo/busybox', ...]
    content.digest_of("demo/busybox", "latest")
    push(content, regexplore.Registry(url))     # or write_oci_layout(content, folder)

``Content`` is plain data: ``blobs`` (digest → bytes) and ``manifests`` (``ManifestEntry(repo, tag, raw,
media_type)``, index children — tag ``None``, pushed by digest — before their index).

This module never imports pandas, ipywidgets or tqdm.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from ..content.layout import layout_entry, write_blob, write_index
from ..model.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_V2,
    IN_TOTO,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
)

__all__ = [
    "Content",
    "ManifestEntry",
    "PushReport",
    "demo_content",
    "scale_content",
    "resolve_content",
    "push",
    "push_with_skopeo",
    "write_oci_layout",
    "write_skopeo_dir",
    "OCI_MANIFEST",
    "OCI_INDEX",
    "DOCKER_MANIFEST",
    "DOCKER_LIST",
]

DOCKER_MANIFEST = DOCKER_V2  # the seed's name for it
_INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

# 2024-01-15T10:00:00Z: every tar mtime and the base of every "created" time.
EPOCH = 1705312800
BIG_LAYER_SIZE = 6 * 1024 * 1024
_CHUNKED_UPLOAD_OVER = 4 * 1024 * 1024
_CHUNK_SIZE = 2 * 1024 * 1024


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _noise(label: str, size: int) -> bytes:
    """``size`` incompressible bytes, the same for the same label (SHAKE-256 of the label)."""
    return hashlib.shake_256(label.encode()).digest(size)


def _created(seconds: float) -> str:
    """An RFC 3339 time ``seconds`` after EPOCH, with nanoseconds like Go writes them."""
    whole = int(seconds)
    nanos = int(round((seconds - whole) * 1e9))
    import datetime

    stamp = datetime.datetime.fromtimestamp(EPOCH + whole, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{nanos:09d}".rstrip("0") if nanos else "") + "Z"


# -- plain data --------------------------------------------------------------------------------------------
class ManifestEntry(NamedTuple):
    """One manifest to push: ``tag`` None means push by digest (an index child)."""

    repo: str
    tag: str | None
    raw: bytes
    media_type: str

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of ``raw``."""
        return sha256(self.raw)


@dataclass(frozen=True)
class Content:
    """Blobs and manifests, immutable. ``manifests`` is in push order (children before their index)."""

    blobs: Mapping[str, bytes]
    manifests: tuple[ManifestEntry, ...]

    def repositories(self) -> list[str]:
        """Sorted repository names."""
        return sorted({m.repo for m in self.manifests})

    def tags(self, repo: str) -> list[str]:
        """Sorted tags of ``repo`` (the order the registry's tags/list uses)."""
        return sorted({m.tag for m in self.manifests if m.repo == repo and m.tag is not None})

    def manifest(self, repo: str, reference: str) -> ManifestEntry:
        """The entry for ``repo`` at a tag or digest; raises ``KeyError``."""
        for m in self.manifests:
            if m.repo == repo and reference in (m.tag, m.digest):
                return m
        raise KeyError(f"{repo}:{reference}")

    def digest_of(self, repo: str, reference: str) -> str:
        """The manifest digest of ``repo:reference``; raises ``KeyError``."""
        return self.manifest(repo, reference).digest

    def only(self, *repos: str) -> Content:
        """The part of this content that belongs to ``repos`` (manifests and the blobs they reach)."""
        manifests = tuple(m for m in self.manifests if m.repo in repos)
        needed = {d for m in manifests for d in self.referenced_blobs(m)}
        return Content(MappingProxyType({d: self.blobs[d] for d in sorted(needed)}), manifests)

    def referenced_blobs(self, entry: ManifestEntry) -> list[str]:
        """The config and layer digests a manifest names (none for an index)."""
        if entry.media_type in _INDEX_TYPES:
            return []
        doc = json.loads(entry.raw)
        return [doc["config"]["digest"], *(layer["digest"] for layer in doc.get("layers", []))]


class _Layer(NamedTuple):
    data: bytes  # compressed
    media_type: str
    diff_id: str


@dataclass
class _Builder:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[ManifestEntry] = field(default_factory=list)

    def blob(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = sha256(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def add(self, repo: str, tags: Iterable[str | None], raw: bytes, media_type: str) -> dict[str, Any]:
        for tag in tags:
            self.manifests.append(ManifestEntry(repo, tag, raw, media_type))
        return {"mediaType": media_type, "digest": sha256(raw), "size": len(raw)}

    def content(self) -> Content:
        return Content(MappingProxyType(dict(self.blobs)), tuple(self.manifests))


# -- layers ------------------------------------------------------------------------------------------------
def make_tar(entries: Iterable[tuple[Any, ...]], mtime: int = EPOCH) -> bytes:
    """A deterministic tar: entries sorted by path, fixed mtime, uid/gid 0, PAX format.

    Entries: ``("d", path, mode)``, ``("f", path, data, mode)``, ``("l", path, target)`` (symlink),
    ``("h", path, target)`` (hard link). Paths are relative (``etc/passwd``), as in image layers.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e[1]):
            kind, path = entry[0], entry[1]
            info = tarfile.TarInfo(path)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            data = None
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, entry[2]
            elif kind == "f":
                data, info.mode = entry[2], entry[3]
                info.size = len(data)
            elif kind == "l":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry[2], 0o777
            elif kind == "h":
                info.type, info.linkname, info.mode = tarfile.LNKTYPE, entry[2], 0o755
            else:
                raise ValueError(f"unknown tar entry kind {kind!r}")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _gzip(data: bytes, level: int = 6) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=3, write_content_size=True, threads=0).compress(data)


def _layer(entries: Iterable[tuple[Any, ...]], media_type: str = OCI_LAYER_GZIP, level: int = 6) -> _Layer:
    tar = make_tar(entries)
    data = _zstd(tar) if media_type == OCI_LAYER_ZSTD else _gzip(tar, level)
    return _Layer(data, media_type, sha256(tar))


def _docker(layer: _Layer) -> _Layer:
    """The same layer with the Docker media type (same bytes, same digest)."""
    return layer._replace(media_type=DOCKER_LAYER)


def _busybox_rootfs(version: str, arch: str = "amd64") -> list[tuple[Any, ...]]:
    binary = b"\x7fELF" + _noise(f"busybox-{version}-{arch}", 96 * 1024)
    entries: list[tuple[Any, ...]] = [
        ("d", "bin", 0o755), ("d", "etc", 0o755), ("d", "root", 0o700), ("d", "tmp", 0o1777),
        ("d", "usr", 0o755), ("d", "usr/sbin", 0o755), ("d", "var", 0o755), ("d", "var/spool", 0o755),
        ("f", "bin/busybox", binary, 0o755),
        ("f", "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n", 0o644),
        ("f", "etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("f", "etc/os-release", f'NAME="Demo BusyBox"\nVERSION_ID="{version}"\n'.encode(), 0o644),
        ("l", "var/spool/mail", "../mail"),
    ]
    for tool in ("sh", "ls", "cat", "echo", "wget"):
        entries.append(("h", f"bin/{tool}", "bin/busybox"))
    entries.append(("l", "usr/sbin/chroot", "../../bin/busybox"))
    return entries


def _debian_rootfs() -> list[tuple[Any, ...]]:
    entries: list[tuple[Any, ...]] = [
        ("d", d, 0o755) for d in ("bin", "etc", "etc/apt", "usr", "usr/bin", "usr/lib", "var", "var/lib",
                                  "var/lib/dpkg", "var/cache", "var/cache/apt")
    ]
    entries += [
        ("f", "etc/os-release", b'PRETTY_NAME="Demo GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n', 0o644),
        ("f", "etc/apt/sources.list", b"deb http://deb.debian.org/debian bookworm main\n", 0o644),
        ("f", "usr/bin/bash", b"\x7fELF" + _noise("bash", 48 * 1024), 0o755),
        ("f", "usr/bin/dpkg", b"\x7fELF" + _noise("dpkg", 24 * 1024), 0o755),
        ("f", "var/lib/dpkg/status", b"Package: base-files\nStatus: install ok installed\n" * 40, 0o644),
        ("f", "var/cache/apt/pkgcache.bin", _noise("pkgcache", 16 * 1024), 0o644),
        ("l", "bin/bash", "../usr/bin/bash"),
        ("l", "bin/sh", "../usr/bin/bash"),
    ]
    return entries


# -- images ------------------------------------------------------------------------------------------------
def _classic(step: str) -> str:
    """``created_by`` as the classic builder wrote it (metadata steps get ``#(nop)`` and two spaces)."""
    return f"/bin/sh -c #(nop)  {step}"


def _image(
    b: _Builder,
    layers: list[_Layer],
    history: list[dict[str, Any]] | None,
    *,
    docker: bool = False,
    arch: str = "amd64",
    variant: str | None = None,
    config: dict[str, Any] | None = None,
    created: str | None = None,
    annotations: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """Add an image's config and layers to ``b``; return ``(manifest bytes, media type)``."""
    cfg: dict[str, Any] = {"architecture": arch}
    if variant:
        cfg["variant"] = variant
    cfg["config"] = config or {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if created or history:
        cfg["created"] = created or history[-1]["created"]  # type: ignore[index]
    if docker:
        cfg["docker_version"] = "24.0.7"
    if history is not None:
        cfg["history"] = history
    cfg["os"] = "linux"
    cfg["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    config_raw = json.dumps(cfg, separators=(",", ":")).encode()
    config_desc = b.blob(config_raw, DOCKER_CONFIG if docker else OCI_CONFIG)
    layer_descs = [b.blob(layer.data, DOCKER_LAYER if docker else layer.media_type) for layer in layers]
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "config": config_desc,
                                "layers": layer_descs}
    if annotations:
        manifest["annotations"] = annotations
    if docker:  # dockerd writes schema2 indented by three spaces
        return json.dumps(manifest, indent=3).encode(), media_type
    return json.dumps(manifest, separators=(",", ":")).encode(), media_type


def _attestation(b: _Builder, repo: str, tag: str, image_digest: str, platform: str, t: float) -> bytes:
    """A buildkit-style provenance attestation manifest for one platform image."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": f"pkg:docker/{repo}@{tag}?platform={platform.replace('/', '%2F')}",
                     "digest": {"sha256": image_digest.split(":", 1)[1]}}],
        "predicate": {
            "builder": {"id": ""},
            "buildType": "https://mobyproject.org/buildkit@v1",
            "metadata": {"buildStartedOn": _created(t - 30), "buildFinishedOn": _created(t),
                         "completeness": {"parameters": False, "environment": True, "materials": False},
                         "reproducible": False},
        },
    }
    raw = json.dumps(statement, separators=(",", ":")).encode()
    layer = b.blob(raw, IN_TOTO, annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"})
    cfg = {"architecture": "unknown", "os": "unknown", "config": {},
           "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]}}
    config = b.blob(json.dumps(cfg, separators=(",", ":")).encode(), OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    return json.dumps(manifest, separators=(",", ":")).encode()


def _busybox_history(version: str, t: float, file_hex: str) -> list[dict[str, Any]]:
    return [
        {"created": _created(t), "created_by": f"/bin/sh -c #(nop) ADD file:{file_hex} in / "},
        {"created": _created(t + 0.41), "created_by": _classic('CMD ["sh"]'), "empty_layer": True},
    ]


def _add_busybox(b: _Builder) -> None:
    repo = "demo/busybox"
    v10 = _layer(_busybox_rootfs("1.0"))
    raw, mt = _image(b, [v10], _busybox_history("1.0", 0, hashlib.sha256(b"bb1.0").hexdigest()),
                     docker=True, config={"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]})
    b.add(repo, ["1.0"], raw, mt)
    v11 = _layer(_busybox_rootfs("1.1"))
    raw, mt = _image(b, [v11], _busybox_history("1.1", 86400 * 30, hashlib.sha256(b"bb1.1").hexdigest()),
                     config={"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]})
    b.add(repo, ["1.1", "latest"], raw, mt)


def _add_multiarch(b: _Builder) -> None:
    repo, t = "demo/multiarch", 86400 * 40
    entries = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        platform = f"linux/{arch}" + (f"/{variant}" if variant else "")
        base = _layer(_busybox_rootfs("1.1", arch))
        app = _layer([("d", "srv", 0o755), ("f", "srv/hello.txt", f"hello from {platform}\n".encode(), 0o644)])
        history = _busybox_history("1.1", t, hashlib.sha256(arch.encode()).hexdigest()) + [
            {"created": _created(t + 60), "created_by": 'COPY hello.txt /srv/ # buildkit',
             "comment": "buildkit.dockerfile.v0"},
            {"created": _created(t + 60), "created_by": 'CMD ["cat" "/srv/hello.txt"]',
             "comment": "buildkit.dockerfile.v0", "empty_layer": True},
        ]
        raw, mt = _image(b, [base, app], history, arch=arch, variant=variant,
                         config={"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["cat", "/srv/hello.txt"]})
        desc = b.add(repo, [None], raw, mt)
        platform_obj = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
        att = _attestation(b, repo, "latest", desc["digest"], platform, t + 61)
        att_desc = b.add(repo, [None], att, OCI_MANIFEST)
        entries.append(({**desc, "platform": platform_obj}, att_desc))
    manifests = [image for image, _ in entries] + [
        {**att, "annotations": {"vnd.docker.reference.digest": image["digest"],
                                "vnd.docker.reference.type": "attestation-manifest"},
         "platform": {"architecture": "unknown", "os": "unknown"}}
        for image, att in entries
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    b.add(repo, ["latest", "2.0"], json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)

    # A Docker manifest list (schema2 children), as docker buildx --output=oci-mediatypes=false makes.
    children = []
    for arch, variant in (("amd64", None), ("arm", "v7")):
        layer = _docker(_layer(_busybox_rootfs("1.0", arch)))
        raw, mt = _image(b, [layer], _busybox_history("1.0", t - 86400, hashlib.sha256(arch.encode()).hexdigest()),
                         docker=True, arch=arch, variant=variant, config={"Cmd": ["sh"]})
        desc = b.add(repo, [None], raw, mt)
        children.append({**desc, "platform": {"architecture": arch, "os": "linux",
                                              **({"variant": variant} if variant else {})}})
    listing = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": children}
    b.add(repo, ["docker-list"], json.dumps(listing, indent=3).encode(), DOCKER_LIST)


def _many_tags() -> list[str]:
    tags = [f"1.{minor}.{patch}" for minor in range(13) for patch in range(10)]
    return tags + ["latest", "stable", "1.12", "1", "edge-20240115", "rc_1.13.0-beta"]


def _add_many_tags(b: _Builder) -> None:
    base = _layer(_busybox_rootfs("1.1"))
    for i, tag in enumerate(_many_tags()):
        t = 86400 * 50 + 3600 * i
        history = _busybox_history("1.1", 86400 * 30, hashlib.sha256(b"bb1.1").hexdigest()) + [
            {"created": _created(t), "created_by": f'LABEL org.opencontainers.image.version={tag}',
             "comment": "buildkit.dockerfile.v0", "empty_layer": True},
        ]
        raw, mt = _image(b, [base], history, config={"Cmd": ["sh"], "Labels": {
            "org.opencontainers.image.version": tag}})
        b.add("demo/many-tags", [tag], raw, mt)


def _add_zstd(b: _Builder) -> None:
    base = _layer(_busybox_rootfs("1.1"))
    data = _layer([("d", "opt", 0o755), ("d", "opt/data", 0o755),
                   ("f", "opt/data/README", b"zstd-compressed layer\n" * 50, 0o644),
                   ("f", "opt/data/table.csv", b"".join(b"%d,%d\n" % (i, i * i) for i in range(4000)), 0o644)],
                  OCI_LAYER_ZSTD)
    t = 86400 * 60
    history = _busybox_history("1.1", 86400 * 30, hashlib.sha256(b"bb1.1").hexdigest()) + [
        {"created": _created(t), "created_by": "COPY data/ /opt/data/ # buildkit", "comment": "buildkit.dockerfile.v0"},
    ]
    raw, mt = _image(b, [base, data], history, config={"Cmd": ["sh"]})
    b.add("demo/zstd", ["latest"], raw, mt)


def _add_big(b: _Builder) -> None:
    base = _layer(_busybox_rootfs("1.1"))
    big = _layer([("d", "data", 0o755), ("f", "data/blob.bin", _noise("big-layer", BIG_LAYER_SIZE), 0o644)],
                 level=1)
    t = 86400 * 70
    history = _busybox_history("1.1", 86400 * 30, hashlib.sha256(b"bb1.1").hexdigest()) + [
        {"created": _created(t), "created_by": "COPY blob.bin /data/ # buildkit", "comment": "buildkit.dockerfile.v0"},
    ]
    raw, mt = _image(b, [base, big], history, config={"Cmd": ["sh"]})
    b.add("demo/big", ["latest"], raw, mt)


def _add_webapp(b: _Builder) -> None:
    """A library/-like Python web app: a Debian base built classically, then a buildkit Dockerfile."""
    t0, t1 = 86400 * 5, 86400 * 80
    base = _docker(_layer(_debian_rootfs()))
    apt = _docker(_layer([
        ("d", "usr/lib/python3.12", 0o755),
        ("f", "usr/lib/python3.12/os.py", b"# os module\n" + b"import sys\n" * 300, 0o644),
        ("f", "usr/bin/python3.12", b"\x7fELF" + _noise("python", 64 * 1024), 0o755),
        ("l", "usr/bin/python3", "python3.12"),
        ("d", "var/lib/apt", 0o755), ("d", "var/lib/apt/lists", 0o755),
        ("f", "var/lib/apt/lists/.wh..wh..opq", b"", 0o644),  # rm -rf /var/lib/apt/lists/*
        ("f", "var/cache/apt/.wh.pkgcache.bin", b"", 0o644),
    ]))
    workdir = _docker(_layer([("d", "app", 0o755)]))
    requirements = b"flask==3.0.0\ngunicorn==21.2.0\n"
    reqs = _docker(_layer([("d", "app", 0o755), ("f", "app/requirements.txt", requirements, 0o644)]))
    pip = _docker(_layer([
        ("d", "usr/local", 0o755), ("d", "usr/local/lib", 0o755),
        ("d", "usr/local/lib/python3.12", 0o755), ("d", "usr/local/lib/python3.12/site-packages", 0o755),
        ("d", "usr/local/lib/python3.12/site-packages/flask", 0o755),
        ("f", "usr/local/lib/python3.12/site-packages/flask/__init__.py", b"__version__ = '3.0.0'\n" * 20, 0o644),
        ("f", "usr/local/lib/python3.12/site-packages/flask/app.py", _noise("flask-app", 20 * 1024), 0o644),
        ("d", "usr/local/bin", 0o755),
        ("f", "usr/local/bin/gunicorn", b"#!/usr/bin/python3\nfrom gunicorn.app.wsgiapp import run\nrun()\n", 0o755),
    ]))
    src = _docker(_layer([
        ("d", "app", 0o755), ("d", "app/static", 0o755), ("d", "app/templates", 0o755),
        ("f", "app/app.py", b"from flask import Flask\napp = Flask(__name__)\n\n@app.get('/')\ndef index():\n"
                            b"    return 'hello'\n", 0o644),
        ("f", "app/static/logo.png", b"\x89PNG\r\n\x1a\n" + _noise("logo", 8 * 1024), 0o644),
        ("f", "app/templates/index.html", b"<!doctype html><h1>{{ title }}</h1>\n", 0o644),
    ]))
    bk = "buildkit.dockerfile.v0"
    history: list[dict[str, Any]] = [
        {"created": _created(t0), "created_by": "/bin/sh -c #(nop) ADD file:"
                                                 f"{hashlib.sha256(b'debian').hexdigest()} in / "},
        {"created": _created(t0 + 0.35), "created_by": _classic('CMD ["bash"]'), "empty_layer": True},
        {"created": _created(t1), "created_by": "ENV PYTHONDONTWRITEBYTECODE=1", "comment": bk, "empty_layer": True},
        {"created": _created(t1), "created_by": "ENV PYTHONUNBUFFERED=1", "comment": bk, "empty_layer": True},
        {"created": _created(t1 + 41.5), "created_by": "RUN /bin/sh -c apt-get update && apt-get install -y "
         "--no-install-recommends python3.12 && rm -rf /var/lib/apt/lists/* /var/cache/apt/pkgcache.bin "
         "# buildkit", "comment": bk},
        {"created": _created(t1 + 41.6), "created_by": "WORKDIR /app", "comment": bk},
        {"created": _created(t1 + 41.7), "created_by": "COPY requirements.txt . # buildkit", "comment": bk},
        {"created": _created(t1 + 55.25), "created_by": "RUN /bin/sh -c pip install --no-cache-dir "
         "-r requirements.txt # buildkit", "comment": bk},
        {"created": _created(t1 + 55.3), "created_by": "COPY . . # buildkit", "comment": bk},
        {"created": _created(t1 + 55.3), "created_by": "USER 10001", "comment": bk, "empty_layer": True},
        {"created": _created(t1 + 55.3), "created_by": "EXPOSE map[8000/tcp:{}]", "comment": bk, "empty_layer": True},
        {"created": _created(t1 + 55.3), "created_by": 'CMD ["gunicorn" "-b" "0.0.0.0:8000" "app:app"]',
         "comment": bk, "empty_layer": True},
    ]
    config = {
        "User": "10001",
        "ExposedPorts": {"8000/tcp": {}},
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"],
        "Cmd": ["gunicorn", "-b", "0.0.0.0:8000", "app:app"],
        "WorkingDir": "/app",
        "Labels": {"org.opencontainers.image.source": "https://example.invalid/webapp"},
    }
    raw, mt = _image(b, [base, apt, workdir, reqs, pip, src], history, docker=True, config=config)
    b.add("library/webapp", ["1.0", "latest"], raw, mt)


def _add_minimal(b: _Builder) -> None:
    """An image whose config has no history and no created time (some builders omit both)."""
    layer = _layer([("f", "hello", b"\x7fELF" + _noise("hello", 2048), 0o755)])
    raw, mt = _image(b, [layer], None, config={"Cmd": ["/hello"]},
                     annotations={"org.opencontainers.image.title": "minimal"})
    b.add("demo/minimal", ["latest"], raw, mt)


def _machine_files(pattern: str, prefix: str, limit: int, cap: int = 64 * 1024) -> list[tuple[Any, ...]]:
    """Regular files of this machine matching ``/pattern`` (sorted; at most ``limit``, each under ``cap``
    bytes), as tar entries under ``prefix`` + their path below ``/``: real content for the inside demo."""
    out: list[tuple[Any, ...]] = []
    for path in sorted(Path("/").glob(pattern)):
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= cap and len(out) < limit:
            out.append(("f", prefix + str(path.relative_to("/")), path.read_bytes(), 0o644))
    return out


def _pip_layer(names: Iterable[str]) -> list[tuple[Any, ...]]:
    """The METADATA of the distributions ``names`` this interpreter has, as pip installs them into an
    image's ``usr/local/lib/python3.11/site-packages``."""
    from importlib import metadata

    site, out = "usr/local/lib/python3.11/site-packages/", []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        folder = f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}.dist-info"
        out.append(("f", f"{site}{folder}/METADATA", (dist.read_text("METADATA") or "").encode(), 0o644))
    return out


def _add_inside(b: _Builder) -> None:
    """Images of this machine's real packages (for ``os_release``, ``packages``, ``efficiency``; notebook 04):
    ``demo/debian:12`` = its os-release, dpkg database and 80 copyright files, then Debian's own Python
    packages (``usr/lib/python3/dist-packages``); ``demo/pyapp:1.0`` = the same base, the pip-installed
    versions of some of them (newer), and a step that rewrites the dpkg database (wasted space). Left out
    on a machine without a dpkg database."""
    if not Path("/var/lib/dpkg/status").is_file():
        return
    os_release = [("f", "usr/lib/os-release", Path("/usr/lib/os-release").read_bytes(), 0o644),
                  ("l", "etc/os-release", "../usr/lib/os-release")] if Path("/usr/lib/os-release").is_file() else []
    status = ("f", "var/lib/dpkg/status", Path("/var/lib/dpkg/status").read_bytes(), 0o644)
    base = _layer([*os_release, status, *_machine_files("usr/share/doc/*/copyright", "", 80)])
    system_python = _layer(_machine_files("usr/lib/python3/dist-packages/*.dist-info/METADATA", "", 40)
                           + _machine_files("usr/lib/python3/dist-packages/*.egg-info", "", 40))
    pip = _layer(_pip_layer(("requests", "urllib3", "idna", "certifi", "six", "pyparsing", "cryptography", "pip")))
    rewrite = _layer([status])
    t = 86400 * 90
    add = {"created": _created(t), "created_by": "/bin/sh -c #(nop) ADD file:"
                                                 f"{hashlib.sha256(status[2]).hexdigest()} in / "}
    step = "RUN /bin/sh -c apt-get install -y --no-install-recommends python3-six python3-pyparsing # buildkit"
    raw, mt = _image(b, [base, system_python], [add, {"created": _created(t + 60), "created_by": step,
                                                      "comment": "buildkit.dockerfile.v0"}])
    b.add("demo/debian", ["12"], raw, mt)
    steps = ["RUN /bin/sh -c pip install requests six pyparsing cryptography # buildkit",
             "RUN /bin/sh -c apt-get update && apt-get clean # buildkit"]
    history = [add] + [{"created": _created(t + 120 + i), "created_by": s, "comment": "buildkit.dockerfile.v0"}
                       for i, s in enumerate(steps)]
    raw, mt = _image(b, [base, pip, rewrite], history)
    b.add("demo/pyapp", ["1.0"], raw, mt)


@lru_cache(maxsize=1)
def demo_content() -> Content:
    """The demo repositories, built deterministically (cached; ``Content`` is immutable).

    ``demo/busybox`` (1.0 Docker schema2, 1.1 = latest OCI), ``demo/multiarch`` (``latest`` / ``2.0``: OCI
    index amd64 + arm64/v8 + two attestation manifests; ``docker-list``: Docker manifest list amd64 + arm/v7),
    ``demo/many-tags`` (136 tags), ``demo/zstd`` (a tar+zstd layer), ``demo/big`` (a 6 MiB incompressible
    layer), ``library/webapp`` (six layers, twelve history steps, whiteouts), ``demo/minimal`` (no history)
    and, from this machine's real packages, ``demo/debian:12`` and ``demo/pyapp:1.0`` (see :func:`_add_inside`).
    """
    b = _Builder()
    _add_busybox(b)
    _add_multiarch(b)
    _add_many_tags(b)
    _add_zstd(b)
    _add_big(b)
    _add_webapp(b)
    _add_minimal(b)
    _add_inside(b)
    return b.content()


@lru_cache(maxsize=4)
def scale_content(repositories: int = 150, tags: int = 300) -> Content:
    """Content that makes every pagination path run: ``scale/tags`` with ``tags`` tags (``t0000`` …) and
    ``repositories`` one-tag repositories ``scale/r0000`` …, all sharing one layer (pushed once, then mounted).
    """
    b = _Builder()
    layer = _layer([("f", "etc/scale", b"scale\n", 0o644)])
    history = [{"created": _created(0), "created_by": "COPY scale /etc/scale # buildkit",
                "comment": "buildkit.dockerfile.v0"}]
    raw, mt = _image(b, [layer], history, config={"Cmd": ["sh"]})
    for i in range(tags):
        b.add("scale/tags", [f"t{i:04d}"], raw, mt)
    for i in range(repositories):
        b.add(f"scale/r{i:04d}", ["latest"], raw, mt)
    return b.content()


def resolve_content(seed: Any) -> Content:
    """``True``/``"demo"`` → demo content, ``"test-scale"`` → test-scale content, a ``Content`` → itself.

    Raises ``ValueError`` for anything else.
    """
    if seed is True or seed == "demo":
        return demo_content()
    if seed == "test-scale":
        return scale_content()
    if isinstance(seed, Content):
        return seed
    raise ValueError(f"seed must be True, 'demo', 'test-scale' or a Content, not {seed!r}")


# -- pushing -----------------------------------------------------------------------------------------------
@dataclass
class PushReport:
    """What ``push`` did: counts of blobs uploaded / mounted / already present, and manifests put."""

    uploaded: int = 0
    mounted: int = 0
    skipped: int = 0
    manifests: int = 0


def push(content: Content, registry: Any) -> PushReport:
    """Upload ``content`` with regexplore's v2 client. ``registry`` is a ``regexplore.Registry`` (its ``.v2``
    is used) or the v2 client itself.

    Each blob is uploaded once: a blob already in the repository (HEAD) is skipped, one pushed to another
    repository is cross-repo mounted (uploaded if the mount is refused); blobs over 4 MiB go up in 2 MiB
    PATCH chunks. Manifests are put in ``content.manifests`` order (index children by digest first).
    Returns a ``PushReport``; raises whatever the client raises (``RegistryError`` and children).
    """
    v2 = getattr(registry, "v2", registry)
    report = PushReport()
    home: dict[str, str] = {}  # digest -> a repository that has it
    done: set[tuple[str, str]] = set()
    for entry in content.manifests:
        for digest in content.referenced_blobs(entry):
            if (entry.repo, digest) in done:
                continue
            done.add((entry.repo, digest))
            if v2.blob_exists(entry.repo, digest):
                report.skipped += 1
                home.setdefault(digest, entry.repo)
                continue
            if digest in home and v2.mount_blob(entry.repo, digest, home[digest]):
                report.mounted += 1
                continue
            data = content.blobs[digest]
            chunk = _CHUNK_SIZE if len(data) > _CHUNKED_UPLOAD_OVER else None
            v2.upload_blob(entry.repo, data, digest, chunk_size=chunk)
            report.uploaded += 1
            home.setdefault(digest, entry.repo)
        v2.put_manifest(entry.repo, entry.tag or entry.digest, entry.raw, entry.media_type)
        report.manifests += 1
    return report


def write_oci_layout(content: Content, path: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``content`` as OCI image layouts, one per repository, at ``path/<repository>``.

    Each layout has ``oci-layout``, ``index.json`` (one descriptor per tag, named by the
    ``org.opencontainers.image.ref.name`` annotation) and ``blobs/sha256/…`` holding everything its
    manifests reach (index children included), written by the one layout writer
    (:func:`regexplore.content.layout.write_index`, the one ``Registry.save`` uses). Readable by
    ``skopeo copy oci:<dir>:<tag> …``. Returns ``{repository: layout folder}``.
    """
    root = Path(path)
    out: dict[str, Path] = {}
    by_repo: dict[str, list[ManifestEntry]] = {}
    for entry in content.manifests:
        by_repo.setdefault(entry.repo, []).append(entry)
    for repo, entries in by_repo.items():
        folder = root / repo
        for entry in entries:
            write_blob(folder, entry.digest, entry.raw)
            for digest in content.referenced_blobs(entry):
                write_blob(folder, digest, content.blobs[digest])
        write_index(folder, [layout_entry(e.media_type, e.digest, len(e.raw), e.tag) for e in entries
                             if e.tag is not None])
        out[repo] = folder
    return out


def write_skopeo_dir(content: Content, repo: str, tag: str, path: str | os.PathLike[str]) -> Path:
    """Write ``repo:tag`` in skopeo's ``dir:`` format (``version``, ``manifest.json``, one file per blob named
    by its hex digest, ``<hex>.manifest.json`` per index child). Unlike ``oci:`` in skopeo 1.9, ``dir:``
    carries Docker schema2 manifests and manifest lists too. Returns the folder.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "version").write_text("Directory Transport Version: 1.1\n")
    top = content.manifest(repo, tag)
    (folder / "manifest.json").write_bytes(top.raw)
    entries = [top]
    if top.media_type in _INDEX_TYPES:
        for child in json.loads(top.raw)["manifests"]:
            entry = content.manifest(repo, child["digest"])
            (folder / f"{entry.digest.split(':', 1)[1]}.manifest.json").write_bytes(entry.raw)
            entries.append(entry)
    for entry in entries:
        for digest in content.referenced_blobs(entry):
            target = folder / digest.split(":", 1)[1]
            if not target.exists():
                target.write_bytes(content.blobs[digest])
    return folder


def push_with_skopeo(content: Content, sandbox: Any, *, workers: int = 8) -> int:
    """Push ``content`` to a running ``LocalRegistry`` (anything with ``.host`` and ``.credentials``) with
    ``skopeo copy --all --preserve-digests`` from ``dir:`` folders: an independent client, the test suite's
    cross-check path. Credentials go through a temporary auth file, never the command line; TLS is not
    verified (loopback). Returns the number of tags copied.

    Raises ``FileNotFoundError`` if skopeo is not installed, ``RuntimeError`` (with skopeo's stderr) if a
    copy fails.
    """
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise FileNotFoundError("skopeo is not installed: apt-get install skopeo")
    jobs = [(e.repo, e.tag) for e in content.manifests if e.tag is not None]
    with tempfile.TemporaryDirectory(prefix="regexplore-seed-") as tmp:
        authfile = Path(tmp) / "auth.json"
        auths = {}
        if getattr(sandbox, "credentials", None):
            user, password = sandbox.credentials
            auths[sandbox.host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        authfile.write_text(json.dumps({"auths": auths}))
        authfile.chmod(0o600)

        def copy(job: tuple[str, str]) -> None:
            repo, tag = job
            folder = write_skopeo_dir(content, repo, tag, Path(tmp) / repo / tag)
            cmd = [skopeo, "copy", "--all", "--preserve-digests", "--retry-times", "2", "--quiet",
                   "--dest-authfile", str(authfile), "--dest-tls-verify=false",
                   f"dir:{folder}", f"docker://{sandbox.host}/{repo}:{tag}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "HOME": tmp})
            shutil.rmtree(folder, ignore_errors=True)
            if proc.returncode != 0:
                raise RuntimeError(f"skopeo copy of {repo}:{tag} failed: {proc.stderr.strip()}")

        # The first tag of each repository goes first, so the other tags find their blobs in place.
        first: dict[str, tuple[str, str]] = {}
        for job in jobs:
            first.setdefault(job[0], job)  # type: ignore[arg-type]
        rest = [job for job in jobs if job not in first.values()]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(copy, first.values()))
            list(pool.map(copy, rest))  # type: ignore[arg-type]
    return len(jobs)

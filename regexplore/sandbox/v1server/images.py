"""v1 images as Docker 1.3 pushed them (:class:`V1Image`), and the content ``seed=True`` preloads."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SEED_DESCRIPTION", "SEED_REPOSITORY", "V1Image", "seed_content", "tar_of"]


def tar_of(files: Mapping[str, bytes], mtime: int) -> bytes:
    """A plain ustar tar of ``files`` (mode 0644, ``mtime``), in insertion order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class V1Image:
    """One v1 image: its 64-hex id, its JSON exactly as stored and served, and its layer bytes.

    ``json`` is served byte for byte and enters the payload checksum, so keep it as bytes.
    """

    id: str
    json: bytes
    layer: bytes

    @property
    def parent(self) -> str | None:
        """The parent image id from the JSON, or ``None`` for a base image."""
        return json.loads(self.json).get("parent") or None

    @classmethod
    def build(
        cls,
        *,
        parent: V1Image | None = None,
        files: Mapping[str, bytes] | None = None,
        cmd: Sequence[str] | None = None,
        created: str = "2014-10-16T19:39:20.185302941Z",
        seed: str = "",
        layer: bytes | None = None,
    ) -> V1Image:
        """Build an image whose JSON has the shape Docker 1.3 pushed (compact Go encoding).

        Parameters
        ----------
        parent
            The parent image, or ``None`` for a base image (then the JSON has no ``parent``).
        files
            Files of the layer (a plain ustar tar is generated); ignored when ``layer`` is given.
        cmd
            ``container_config.Cmd`` (``null`` when omitted, as for imported images).
        created
            RFC 3339 creation time.
        seed
            Mixed into the id so that equal content can still give distinct images.
        layer
            Raw layer bytes to use as is (e.g. gzip-compressed, or deliberately not a tar).

        Returns
        -------
        V1Image
        """
        if layer is None:
            layer = tar_of(files or {}, mtime=1413488360)
        digest = hashlib.sha256()
        for part in (parent.id if parent else "", seed, created, json.dumps(list(cmd or []))):
            digest.update(part.encode() + b"\0")
        digest.update(layer)
        image_id = digest.hexdigest()
        container_config: dict[str, Any] = {
            "Hostname": "", "Domainname": "", "User": "", "Memory": 0, "MemorySwap": 0,
            "CpuShares": 0, "Cpuset": "", "AttachStdin": False, "AttachStdout": False,
            "AttachStderr": False, "PortSpecs": None, "ExposedPorts": None, "Tty": False,
            "OpenStdin": False, "StdinOnce": False,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": list(cmd) if cmd is not None else None, "Image": parent.id if parent else "",
            "Volumes": None, "WorkingDir": "", "Entrypoint": None, "NetworkDisabled": False,
            "OnBuild": None,
        }
        doc: dict[str, Any] = {"id": image_id}
        if parent is not None:
            doc["parent"] = parent.id
        doc.update({
            "created": created,
            "container": hashlib.sha256(image_id.encode()).hexdigest(),
            "container_config": container_config,
            "docker_version": "1.3.0",
            "config": dict(container_config, Cmd=None),
            "architecture": "amd64",
            "os": "linux",
            "Size": len(layer),
        })
        return cls(image_id, json.dumps(doc, separators=(",", ":")).encode(), layer)


SEED_REPOSITORY = "demo/busybox"  #: what ``seed=True`` preloads
SEED_DESCRIPTION = "busybox-like demo image (regexplore's local v1 registry)"


def seed_content() -> tuple[list[V1Image], dict[str, str]]:
    """The images and tags ``seed=True`` stores in :data:`SEED_REPOSITORY`; the same every call.

    Three images, base first, as ``docker build`` on Docker 1.3 made them (one image per step):

    0. the root filesystem (``#(nop) ADD file:… in /``): ``bin/busybox``, ``etc/os-release``,
       ``etc/passwd``;
    1. ``#(nop) CMD [/bin/sh]``: changes no file, yet is an image of its own (its layer is an
       empty tar) — tagged ``1.0``;
    2. a ``RUN`` step writing ``usr/local/bin/app`` — tagged ``latest``.

    Returns
    -------
    (images, tags)
        ``[V1Image, V1Image, V1Image]`` (base first) and ``{"1.0": <id of 1>, "latest": <id of 2>}``.
    """
    rootfs = {
        "bin/busybox": b"\x7fELF" + hashlib.sha256(b"busybox").digest() * 256,
        "etc/os-release": b'NAME="Demo BusyBox"\nID=busybox\nVERSION_ID=1.0\n',
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
    }
    added = hashlib.sha256(tar_of(rootfs, mtime=1413488360)).hexdigest()
    base = V1Image.build(files=rootfs, cmd=["/bin/sh", "-c", f"#(nop) ADD file:{added} in /"],
                         created="2014-10-01T20:46:07.263351912Z")
    cmd = V1Image.build(parent=base, cmd=["/bin/sh", "-c", "#(nop) CMD [/bin/sh]"],
                        created="2014-10-01T20:46:08.914288461Z")
    app = V1Image.build(
        parent=cmd,
        files={"usr/local/bin/app": b"#!/bin/sh\necho hello from the v1 protocol\n"},
        cmd=["/bin/sh", "-c", "printf '#!/bin/sh\\necho hello from the v1 protocol\\n' > /usr/local/bin/app"],
        created="2014-10-16T19:39:20.185302941Z",
    )
    return [base, cmd, app], {"1.0": cmd.id, "latest": app.id}

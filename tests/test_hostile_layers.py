"""Hostile images against the real registry (and a tampering proxy in front of it): read_file returns
nothing unverified and nothing unbounded, sparse maps are capped in both tar readers, extract leaves no
link that leads outside, and file names that are not UTF-8 never break a table (issue 10: 2, 3, 5, 6, 11).
"""

from __future__ import annotations

import json
import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence

import pytest

import regexplore as rx
from regexplore import oci
from layerkit import compress, info, raw_tar
from servers import FaultProxy
from servers.bounded import run_bounded

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every blob comes from the registry (or the proxy), never from a cache of verified bytes."""
    monkeypatch.setenv("REGEXPLORE_CACHE", "off")
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")


def push_image(reg: rx.Registry, repo: str, tag: str, layers: Sequence[tuple[bytes, str]]) -> str:
    """Push an image of ``layers`` [(blob, media type)] with regexplore's v2 client; returns ``repo:tag``."""
    descs = [{"mediaType": mt, "digest": reg.v2.upload_blob(repo, blob), "size": len(blob)} for blob, mt in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
                      "history": [{"created_by": f"step {i}"} for i in range(len(descs))]}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                      "config": {"mediaType": oci.OCI_CONFIG, "digest": reg.v2.upload_blob(repo, cfg),
                                 "size": len(cfg)}, "layers": descs}).encode()
    reg.v2.put_manifest(repo, tag, man, oci.OCI_MANIFEST)
    return f"{repo}:{tag}"


def push_tars(reg: rx.Registry, repo: str, tag: str, *tars: bytes) -> str:
    """Push an image whose layers are ``tars`` (gzip-compressed); returns ``repo:tag``."""
    return push_image(reg, repo, tag, [(compress(t, "gzip"), GZIP) for t in tars])


# ------------------------------------------------------------------ 2. read_file verifies the blob
@pytest.mark.parametrize("where", ["file-content", "after-end-of-archive"])
def test_read_file_never_returns_bytes_of_a_blob_that_fails_its_digest(empty_sandbox, where: str) -> None:
    """A proxy (or a registry) serves other bytes than the digest names: inside the file read, or after
    the tar's end-of-archive marker. read_file must raise DigestMismatch, as files() and extract do,
    for a tag and for an image pinned by digest."""
    payload = b"127.0.0.1 localhost\n" * 10
    tar = raw_tar([info("etc/", "dir"), (info("etc/hosts"), payload)])  # padded to a 10 KiB record
    assert len(tar) == 10240
    offset = {"file-content": tar.index(payload) + 5, "after-end-of-archive": len(tar) - 1}[where]
    reg = rx.Registry(empty_sandbox.url)
    ref = push_image(reg, "tamper/read", "v", [(tar, TAR)])
    pinned = f"tamper/read@{reg.manifest(ref).digest}"
    assert reg.read_file(ref, "etc/hosts") == payload
    with FaultProxy(empty_sandbox.url) as proxy:
        proxy.flip_byte(offset=offset, path="/blobs/sha256:", times=None)
        through = rx.Registry(proxy.url)
        for r in (ref, pinned):
            with pytest.raises(rx.DigestMismatch):
                through.read_file(r, "etc/hosts")
        with pytest.raises(rx.DigestMismatch):
            through.files(pinned)

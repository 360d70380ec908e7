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


# ------------------------------------------------------------------- 5. read_file is bounded
def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _checksummed(header: bytearray) -> bytes:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def gnu_sparse(name: str, realsize: int, entries: Sequence[tuple[int, int]], *, extension_blocks: int = 0,
               data: bytes | None = None) -> Iterator[bytes]:
    """An old-GNU sparse member (type ``S``): ``entries`` (offset, length) of data, the first 4 in the
    header and the rest in extension blocks of 21, then ``extension_blocks`` more blocks of empty entries
    (each saying "another block follows"); yields the pieces of the member, data included."""
    stored = sum(n for _, n in entries)
    data = data if data is not None else bytes(range(256)) * (stored // 256) + bytes(stored % 256)
    header = bytearray(512)
    header[:len(name)] = name.encode()
    header[100:108], header[108:116], header[116:124] = _octal(0o644, 8), _octal(0, 8), _octal(0, 8)
    header[124:136], header[136:148] = _octal(stored, 12), _octal(1_700_000_000, 12)
    header[156:157], header[257:265] = b"S", b"ustar  \0"
    head, rest = list(entries[:4]), list(entries[4:])
    for i, (off, n) in enumerate(head):
        header[386 + 24 * i:410 + 24 * i] = _octal(off, 12) + _octal(n, 12)
    header[482] = 1 if rest or extension_blocks else 0
    header[483:495] = _octal(realsize, 12)
    yield _checksummed(header)
    while rest:
        block = bytearray(512)
        chunk, rest = rest[:21], rest[21:]
        for i, (off, n) in enumerate(chunk):
            block[24 * i:24 * i + 24] = _octal(off, 12) + _octal(n, 12)
        block[504] = 1 if rest or extension_blocks else 0
        yield bytes(block)
    empty = bytearray(512)
    empty[504] = 1
    for i in range(extension_blocks):
        yield bytes(empty) if i < extension_blocks - 1 else bytes(512)
    yield data + bytes(-len(data) % 512)


def gzip_pieces(pieces: Iterator[bytes]) -> bytes:
    """gzip a stream of pieces (big repetitive tars never held in memory)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    return b"".join(comp.compress(p) for p in pieces) + comp.flush()


def _read_in_child(url: str, ref: str, path: str, *, env: dict[str, str] | None = None, memory_mb: int = 1024,
                   extra: str = ""):
    return run_bounded(f"""
        import os, resource, regexplore as rx
        reg = rx.Registry(os.environ["URL"])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        data = reg.read_file(os.environ["REF"], os.environ["PATH_IN_IMAGE"]{extra})
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        result = [len(data), grew]
    """, env={"URL": url, "REF": ref, "PATH_IN_IMAGE": path, **(env or {})}, timeout=60, memory_mb=memory_mb)


def test_read_file_refuses_a_gzip_bomb_file_over_the_default_cap(empty_sandbox) -> None:
    """A 0.5 MB blob holding a 512 MiB file: ResponseTooLarge naming the path and the cap, before any of
    it is read (not gigabytes of memory, not MemoryError)."""
    from layerkit import gzip_bomb

    reg = rx.Registry(empty_sandbox.url)
    ref = push_image(reg, "bomb/file", "v", [(gzip_bomb(512 * 1024**2, "var/big"), GZIP)])
    res = _read_in_child(empty_sandbox.url, ref, "var/big")
    assert res.raised("ResponseTooLarge"), res.output
    assert "var/big" in res.message and str(64 * 1024**2) in res.message
    assert "REGEXPLORE_MAX_FILE_BYTES" in res.message
    assert res.elapsed < 30


def test_read_file_refuses_a_huge_sparse_file(empty_sandbox) -> None:
    """A GNU sparse member declaring 3 GiB of holes around 512 stored bytes: a blob of a few hundred bytes."""
    tar = b"".join(gnu_sparse("var/log/lastlog", 3 * 1024**3, [(3 * 1024**3 - 512, 512)])) + bytes(1024)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "bomb/sparse", "v", tar)
    res = _read_in_child(empty_sandbox.url, ref, "var/log/lastlog")
    assert res.raised("ResponseTooLarge"), res.output
    assert "var/log/lastlog" in res.message


def test_read_file_cap_comes_from_the_argument_or_the_environment(empty_sandbox, monkeypatch) -> None:
    body = os.urandom(100_000)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "cap/file", "v", raw_tar([(info("f"), body)]))
    assert reg.read_file(ref, "f") == body
    with pytest.raises(rx.ResponseTooLarge, match="f: 100000 bytes.*99999"):
        reg.read_file(ref, "f", max_bytes=99_999)
    assert reg.read_file(ref, "f", max_bytes=100_000) == body
    monkeypatch.setenv("REGEXPLORE_MAX_FILE_BYTES", "1000")
    with pytest.raises(rx.ResponseTooLarge, match="REGEXPLORE_MAX_FILE_BYTES"):
        reg.read_file(ref, "f")
    assert reg.read_file(ref, "f", max_bytes=200_000) == body
    monkeypatch.setenv("REGEXPLORE_MAX_FILE_BYTES", "lots")
    with pytest.raises(ValueError, match="REGEXPLORE_MAX_FILE_BYTES"):
        reg.read_file(ref, "f")


def test_read_file_memory_stays_near_the_file_size(empty_sandbox) -> None:
    """A 48 MiB file (under the cap) costs about its own size in memory, not two or three copies."""
    from layerkit import gzip_bomb

    reg = rx.Registry(empty_sandbox.url)
    ref = push_image(reg, "big/file", "v", [(gzip_bomb(48 * 1024**2, "opt/blob"), GZIP)])
    res = _read_in_child(empty_sandbox.url, ref, "opt/blob")
    assert res.ok, res.output
    size, grew = res.value
    assert size == 48 * 1024**2
    assert grew < 1.5 * 48, res.value

"""Hostile tar metadata against the real registry: global pax headers that add up, and chains of extended
headers (pax x/g, GNU long names/links) that tarfile reads with one recursion level each. Every view
(files, files(merged=True), diff, read_file, extract) answers UnsafeLayer quickly and within a memory
limit; honest layers with global headers and long names still read back exactly (issue 10 review).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from layerkit import compress, info
from servers.bounded import run_bounded

import regexplore as rx
from regexplore.model import oci

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MiB = 1024**2


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every blob comes from the registry, never from a cache of verified bytes."""
    monkeypatch.setenv("REGEXPLORE_CACHE", "off")
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")


def push_blob(reg: rx.Registry, repo: str, blob: bytes) -> str:
    """Push an image whose one layer is the gzip'd ``blob``; returns ``repo:v``."""
    layer = {"mediaType": GZIP, "digest": reg.v2.upload_blob(repo, blob), "size": len(blob)}
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
                      "history": [{"created_by": "step 0"}]}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                      "config": {"mediaType": oci.OCI_CONFIG, "digest": reg.v2.upload_blob(repo, cfg),
                                 "size": len(cfg)}, "layers": [layer]}).encode()
    reg.v2.put_manifest(repo, "v", man, oci.OCI_MANIFEST)
    return f"{repo}:v"


def record(key: str, value: str | bytes) -> bytes:
    """One pax record ``"<len> key=value\\n"``."""
    body = b" " + key.encode() + b"=" + (value if isinstance(value, bytes) else value.encode()) + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def extended(kind: bytes, payload: bytes, name: str = "PaxHeaders/x") -> bytes:
    """An extended header of type ``kind`` (pax x/g, GNU L/K) holding ``payload``, padded to blocks."""
    head = tarfile.TarInfo(name)
    head.type, head.size = kind, len(payload)
    fmt = tarfile.GNU_FORMAT if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) else tarfile.USTAR_FORMAT
    return head.tobuf(fmt) + payload + bytes(-len(payload) % 512)


def member(name: str, data: bytes = b"") -> bytes:
    """A plain ustar regular file."""
    ti = info(name, size=len(data))
    return ti.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def every_view(reg: rx.Registry, ref: str, path: str, dest: Path) -> list[Callable[[], object]]:
    """files, files(merged=True), diff (hashes contents through tarfile), read_file and extract."""
    return [lambda: reg.files(ref), lambda: reg.files(ref, merged=True), lambda: reg.diff(ref, ref),
            lambda: reg.read_file(ref, path), lambda: reg.extract(ref, str(dest))]


@functools.cache
def global_headers(count: int, value_bytes: int) -> bytes:
    """A gzip'd tar of ``count`` global pax headers of one ``value_bytes`` record each (distinct keys, so
    tarfile keeps all of them), each followed by a file ``f<i>``. The big value is compressed once: the
    blob is gzip members end to end (a valid gzip stream)."""
    value = gzip.compress(b"A" * value_bytes, 6, mtime=0)
    pieces = []
    for i in range(count):
        head = extended(tarfile.XGLTYPE, record(f"k{i:04}", b"A" * value_bytes), "pax_global_header")
        start = head.index(b" k%04d=" % i) + 7
        pieces += [gzip.compress(head[:start], mtime=0), value,
                   gzip.compress(head[start + value_bytes:] + member(f"f{i}", b"x"), mtime=0)]
    return b"".join(pieces) + gzip.compress(bytes(1024), mtime=0)


# --------------------------------------------------------------------- 1. global headers add up
def test_global_headers_that_add_up_are_refused_by_every_view(empty_sandbox, tmp_path) -> None:
    """Three global headers of 15 MiB, each under the 16 MiB per-header cap, are 45 MiB that tarfile keeps
    for the whole layer: UnsafeLayer naming the global header, from both tar readers."""
    reg = rx.Registry(empty_sandbox.url)
    ref = push_blob(reg, "pax/global", global_headers(3, 15 * MiB))
    for call in every_view(reg, ref, "f2", tmp_path / "root"):
        with pytest.raises(rx.UnsafeLayer, match="metadata") as err:
            call()
        assert err.value.entry == "pax_global_header"
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("view", ["files", "read_file", "extract"])
def test_a_global_header_bomb_is_bounded_in_memory_and_time(empty_sandbox, view: str) -> None:
    """A ~3 MB blob of 200 global headers of 15 MiB (3 GB of pax records): UnsafeLayer within 512 MB of
    address space and in seconds (it was 630 MiB for a 617 KB blob, MemoryError for 2.9 MB)."""
    reg = rx.Registry(empty_sandbox.url)
    ref = push_blob(reg, "pax/bomb", global_headers(200, 15 * MiB))
    call = {"files": "reg.files(ref)", "read_file": "reg.read_file(ref, 'f199')",
            "extract": "reg.extract(ref, tempfile.mkdtemp() + '/root')"}[view]
    res = run_bounded(f"""
        import os, tempfile, regexplore as rx
        reg, ref = rx.Registry(os.environ["URL"]), os.environ["REF"]
        result = repr({call})
    """, env={"URL": empty_sandbox.url, "REF": ref}, timeout=60, memory_mb=1024)
    assert res.raised("UnsafeLayer"), res.output
    assert res.elapsed < 30


# ------------------------------------------------------------ 2. chains of extended headers are bounded
CHAINS = {
    "pax": lambda: extended(tarfile.XHDTYPE, record("comment", "a")),
    "global": lambda: extended(tarfile.XGLTYPE, record("comment", "a"), "pax_global_header"),
    "longname": lambda: extended(tarfile.GNUTYPE_LONGNAME, b"n" * 200 + b"\0", "././@LongLink"),
    "longlink": lambda: extended(tarfile.GNUTYPE_LONGLINK, b"l" * 200 + b"\0", "././@LongLink"),
}


@pytest.mark.parametrize("kind", [*CHAINS, "mixed"])
def test_a_chain_of_extended_headers_is_refused_not_a_recursion_error(empty_sandbox, tmp_path, kind: str) -> None:
    """3,000 extended headers in a row before one member: tarfile recursed once per header (a bare
    RecursionError); now UnsafeLayer from every view, the fast lister included."""
    links = [CHAINS[k]() for k in CHAINS] * 750 if kind == "mixed" else [CHAINS[kind]()] * 3000
    tar = b"".join(links) + member("f", b"hi") + bytes(1024)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_blob(reg, f"pax/chain-{kind}", compress(tar, "gzip"))
    for call in every_view(reg, ref, "f", tmp_path / "root"):
        with pytest.raises(rx.UnsafeLayer, match="extended headers in a row") as err:
            call()
        assert err.value.entry
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("first", ["global", "longname"])
def test_the_headers_before_one_member_count_their_bytes_together(empty_sandbox, tmp_path, first: str) -> None:
    """A short chain (a global header or a GNU long name, then three pax headers of 5 MiB, each under the
    per-header cap) holds 15 MiB + 5 MiB at once: over the 16 MiB budget."""
    head = {"global": extended(tarfile.XGLTYPE, record("k", "g" * 5 * MiB), "pax_global_header"),
            "longname": extended(tarfile.GNUTYPE_LONGNAME, b"n" * 5 * MiB + b"\0", "././@LongLink")}[first]
    pax = [extended(tarfile.XHDTYPE, record(f"k{i}", "p" * 5 * MiB)) for i in range(3)]
    tar = head + b"".join(pax) + member("f", b"hi") + bytes(1024)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_blob(reg, f"pax/sum-{first}", compress(tar, "gzip"))
    for call in every_view(reg, ref, "f", tmp_path / "root"):
        with pytest.raises(rx.UnsafeLayer, match="metadata") as err:
            call()
        assert err.value.entry
    assert not (tmp_path / "root").exists()


# -------------------------------------------------------------- honest layers still read exactly
def honest_tar() -> tuple[bytes, dict[str, bytes]]:
    """A pax archive opening with a global header (as ``git archive`` writes), long names and a long link
    target (pax ``path`` / ``linkpath``), then a second global header mid-stream and GNU long names (L/K),
    and 24 members each with its own 1 MiB pax header: 24 MiB of pax headers in the layer, never held
    at once. Returns the tar and the regular files' contents by path."""
    deep = "d/" + "/".join(["segment-of-a-long-path"] * 8)
    files = {f"{deep}/file.txt": b"deep\n", "short": b"s\n", f"{deep}/gnu-long-name.txt": b"gnu\n"}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "0123456789abcdef0123456789abcdef01234567"}) as tf:
        tf.addfile(info(deep + "/", "dir"))
        for path in (f"{deep}/file.txt", "short"):
            tf.addfile(info(path, size=len(files[path])), io.BytesIO(files[path]))
        tf.addfile(info("link-to-deep", "symlink", linkname=f"{deep}/file.txt"))
        for i in range(24):
            ti = info(f"big-pax/{i}", size=1)
            ti.pax_headers = {"comment": "c" * MiB}
            files[ti.name] = b"%d" % (i % 10)
            tf.addfile(ti, io.BytesIO(files[ti.name]))
    pax = out.getvalue().rstrip(b"\0")
    pax += bytes(-len(pax) % 512)
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tf:
        path = f"{deep}/gnu-long-name.txt"
        tf.addfile(info(path, size=len(files[path])), io.BytesIO(files[path]))
        tf.addfile(info(f"{deep}/gnu-long-link", "symlink", linkname=f"{deep}/gnu-long-name.txt"))
    second = extended(tarfile.XGLTYPE, record("comment", "second global header"), "pax_global_header")
    return pax + second + gnu.getvalue(), files


def _gnu_tar_listing(tar: bytes) -> list[str]:
    """``tar -tv`` by GNU tar: an independent reader's names and link targets."""
    out = subprocess.run(["tar", "-tvf", "-"], input=tar, capture_output=True, check=True).stdout.decode()
    rows = []
    for line in out.splitlines():
        name = line.split(None, 5)[5]
        rows.append(name.rstrip("/"))
    return rows


def test_honest_global_headers_and_long_names_still_read_back_exactly(empty_sandbox, tmp_path) -> None:
    tar, files = honest_tar()
    reg = rx.Registry(empty_sandbox.url)
    ref = push_blob(reg, "pax/honest", compress(tar, "gzip"))
    df = reg.files(ref)
    shown = [f"{p} -> {t}" if k == "symlink" else p for p, k, t in zip(df["path"], df["type"], df["linkname"])]
    assert shown == _gnu_tar_listing(tar)
    assert len(df) == 30
    merged = reg.files(ref, merged=True)
    assert sorted(merged["path"]) == sorted(df["path"])
    for path, data in files.items():
        assert reg.read_file(ref, path) == data
    reg.extract(ref, str(tmp_path / "root"))
    for path, data in files.items():
        assert (tmp_path / "root" / path).read_bytes() == data
    deep = next(p for p in files if p.endswith("/file.txt"))
    assert os.readlink(tmp_path / "root" / "link-to-deep") == deep
    assert reg.diff(ref, ref).empty


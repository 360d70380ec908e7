"""Build deterministic layer tarballs for tests (shared by the whole team).

``build_layer`` is the everyday helper::

    blob, diff_id = build_layer({"etc/hostname": b"box\\n"}, dirs=["etc"], symlinks={"bin": "usr/bin"},
                                whiteouts=["var/cache"], opaque=["opt"], compression="gzip")

The same arguments always give the same bytes (fixed mtime, uid/gid 0, gzip header mtime 0, fixed zstd
level), so digests can be asserted. ``raw_tar`` builds arbitrary (also hostile) archives from TarInfo specs;
``compress`` and ``sha256_digest`` are the building blocks; ``gzip_bomb``/``zstd_bomb`` make small blobs that
decompress to a lot of zeros without ever holding them in memory.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

import zstandard
from digests import sha256_digest  # noqa: F401  (re-exported: layerkit.sha256_digest)

Compression = Literal["gzip", "zstd", "none"]
MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z


def compress(tar: bytes, compression: Compression) -> bytes:
    """Compress ``tar`` deterministically: gzip (header mtime 0, level 6), zstd (level 3) or none."""
    if compression == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(tar)
    if compression == "none":
        return tar
    raise ValueError(f"unknown compression {compression!r}")


def info(
    name: str,
    kind: str = "file",
    *,
    size: int = 0,
    linkname: str = "",
    mode: int | None = None,
    mtime: float = MTIME,
    uid: int = 0,
    gid: int = 0,
) -> tarfile.TarInfo:
    """A TarInfo with deterministic metadata. ``kind``: file, dir, symlink, hardlink, char, block, fifo."""
    types = {
        "file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    ti = tarfile.TarInfo(name)
    ti.type = types[kind]
    ti.size = size if kind == "file" else 0
    ti.linkname = linkname
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o777 if kind == "symlink" else 0o644)
    ti.mtime = mtime
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = "root" if uid == 0 else ""
    if kind in ("char", "block"):
        ti.devmajor, ti.devminor = 1, 3
    return ti


def raw_tar(
    members: Sequence[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]],
    *,
    format: int = tarfile.PAX_FORMAT,
) -> bytes:
    """Return an uncompressed tar holding ``members`` in order, names written exactly as given
    (absolute paths and ``..`` included). A ``(TarInfo, data)`` pair sets the file's content."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as tf:
        for m in members:
            ti, data = (m if isinstance(m, tuple) else (m, b""))
            if ti.isreg():
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return out.getvalue()


def build_layer(
    files: Mapping[str, bytes] | None = None,
    *,
    dirs: Iterable[str] = (),
    symlinks: Mapping[str, str] | None = None,
    hardlinks: Mapping[str, str] | None = None,
    whiteouts: Iterable[str] = (),
    opaque: Iterable[str] = (),
    compression: Compression = "gzip",
    mtime: float = MTIME,
    modes: Mapping[str, int] | None = None,
    format: int = tarfile.PAX_FORMAT,
) -> tuple[bytes, str]:
    """Build one layer and return ``(compressed_bytes, diff_id)``; diff_id is the sha256 of the tar.

    Members are written in this order, each group in the order given: ``dirs``, ``files`` (path ->
    content), ``symlinks`` (path -> target), ``hardlinks`` (path -> existing path in the archive),
    ``whiteouts`` (a path ``d/x`` becomes the marker ``d/.wh.x``), ``opaque`` (a dir ``d`` becomes
    ``d/.wh..wh..opq``; ``""`` for the root). ``modes`` overrides the mode of any path.
    """
    modes = dict(modes or {})
    members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]] = []
    for d in dirs:
        members.append(info(d.rstrip("/") + "/", "dir", mode=modes.get(d), mtime=mtime))
    for path, data in (files or {}).items():
        members.append((info(path, "file", size=len(data), mode=modes.get(path), mtime=mtime), data))
    for path, target in (symlinks or {}).items():
        members.append(info(path, "symlink", linkname=target, mode=modes.get(path), mtime=mtime))
    for path, target in (hardlinks or {}).items():
        members.append(info(path, "hardlink", linkname=target, mode=modes.get(path), mtime=mtime))
    for path in whiteouts:
        head, _, base = path.rstrip("/").rpartition("/")
        members.append(info(f"{head}/.wh.{base}" if head else f".wh.{base}", mtime=mtime, mode=0o600))
    for d in opaque:
        d = d.strip("/")
        members.append(info(f"{d}/.wh..wh..opq" if d else ".wh..wh..opq", mtime=mtime, mode=0o600))
    tar = raw_tar(members, format=format)
    return compress(tar, compression), sha256_digest(tar)


def _bomb_tar_pieces(size: int, name: str) -> Iterator[bytes]:
    header = info(name, "file", size=size).tobuf(format=tarfile.USTAR_FORMAT)
    yield header
    zeros = bytes(1024 * 1024)
    left = size
    while left:
        n = min(left, len(zeros))
        yield zeros[:n]
        left -= n
    yield bytes((-size) % 512 + 1024)  # pad the member, then the two end-of-archive blocks


def gzip_bomb(size: int, name: str = "bomb") -> bytes:
    """A gzip'd tar with one ``size``-byte file of zeros (about ``size/1000`` bytes compressed)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join(comp.compress(p) for p in _bomb_tar_pieces(size, name)) + comp.flush()


def zstd_bomb(size: int, name: str = "bomb") -> bytes:
    """A zstd tar with one ``size``-byte file of zeros."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as w:
        for piece in _bomb_tar_pieces(size, name):
            w.write(piece)
    return out.getvalue()


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """Yield ``data`` in ``size``-byte chunks, like ``Response.iter_content(size)``."""
    for i in range(0, len(data), size):
        yield data[i:i + size]

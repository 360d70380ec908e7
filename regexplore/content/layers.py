"""Layer contents without temp files: decompress, list, merge, diff, read and safely extract.

Everything here works on a *stream of compressed bytes*: an iterable of ``bytes`` chunks (for example a
``requests`` response's ``iter_content``, hashed by the caller in the same pass) or a readable binary
file-like object. Nothing seeks and nothing is spooled to disk; memory stays constant in the size of the
layer (``tarfile`` stream mode, ``r|``).

Public surface::

    open_layer_stream(source, media_type=None, *, max_bytes=None) -> LayerStream   # decompressed tar
    iter_entries(source, layer=None, ...)                         -> Iterator[Entry]
    merge(layers_rows)                                            -> list[Entry]   # final filesystem
    diff(rows_a, rows_b, *, compare=DIFF_FIELDS)                  -> list[DiffRow]
    read_file(layers_newest_first, path, ...)                     -> bytes
    extract(layers_in_order, dest, ...)                           -> ExtractSummary

Paths
-----
``Entry.path`` is the member name exactly as ``tar -t`` prints it (pax and GNU long names resolved), with a
leading ``./`` removed (repeatedly) and trailing ``/`` removed; the archive root ``./`` becomes ``"."``.
Nothing else is changed, so ``/abs`` or ``a/../b`` stay visible in a listing. :func:`merge`, :func:`diff` and
:func:`read_file` key on :func:`canonical_path` (empty and ``.`` components dropped, so no leading ``/``).

Errors: :class:`~regexplore.errors.UnsafeLayer` (escaping entries, device nodes, decompression bombs
(a sparse file's holes count as decompressed bytes), oversized tar metadata or sparse maps),
:class:`~regexplore.errors.UnsupportedMediaType` (not gzip/zstd/tar, encrypted layers),
:class:`~regexplore.errors.RegistryError` (a corrupt or truncated compressed stream).
This module never imports pandas, ipywidgets or tqdm.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import os
import posixpath
import queue
import re
import shutil
import stat
import struct
import tarfile
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any, Literal, Union

import zstandard

from .. import _env
from ..errors import RegistryError, ResponseTooLarge, UnsafeLayer, UnsupportedMediaType

try:  # ISA-L gzip: 2-3x faster than zlib for streaming gunzip
    from isal import igzip as _gzip_impl
    from isal.isal_zlib import error as _IsalError

    _GzipFile: Any = _gzip_impl.IGzipFile
    GZIP_BACKEND = "isal"
    _GZIP_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _IsalError)  # "invalid deflate block"...
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip_impl

    _GzipFile = _gzip_impl.GzipFile
    GZIP_BACKEND = "zlib"
    _GZIP_ERRORS = (zlib.error,)

__all__ = [
    "DEFAULT_CAP",
    "MAX_LAYER_BYTES_ENV",
    "DEFAULT_FILE_CAP",
    "MAX_FILE_BYTES_ENV",
    "DIFF_FIELDS",
    "Entry",
    "DiffRow",
    "ExtractSummary",
    "LayerStream",
    "LayerSource",
    "open_layer_stream",
    "iter_entries",
    "canonical_path",
    "shown_name",
    "raw_path",
    "merge",
    "diff",
    "read_file",
    "extract",
]

#: Default cap on decompressed bytes per layer (8 GiB); override per call or with the env var below.
DEFAULT_CAP = 8 * 1024**3
#: Environment variable holding the default decompressed-bytes cap, in bytes.
MAX_LAYER_BYTES_ENV = "REGEXPLORE_MAX_LAYER_BYTES"
#: Default cap on the size of one file returned by :func:`read_file` (64 MiB): it is held in memory.
DEFAULT_FILE_CAP = 64 * 1024**2
#: Environment variable holding the default cap of :func:`read_file`, in bytes.
MAX_FILE_BYTES_ENV = "REGEXPLORE_MAX_FILE_BYTES"
#: Largest pax / GNU long-name metadata member we agree to read into memory; also the most bytes of
#: old-GNU sparse extension blocks read for one member.
MAX_METADATA_MEMBER = 16 * 1024**2
#: Most data extents one sparse file's map may list (each costs about 100 bytes of memory).
MAX_SPARSE_ENTRIES = 65536

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHER_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x04\x22\x4d\x18": "lz4"}
_CHUNK = 256 * 1024
_MAX_SYMLINK_HOPS = 40

_WH_PREFIX = ".wh."
_WH_OPAQUE = ".wh..wh..opq"
_WH_META_PREFIX = ".wh..wh."  # AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): skipped by merge/extract

#: A layer to read: compressed byte chunks, a binary file-like object, or a zero-argument callable
#: returning either (opened lazily, only if the layer is needed).
LayerSource = Union[Iterable[bytes], IO[bytes], Callable[[], Union[Iterable[bytes], IO[bytes]]]]

EntryType = Literal["file", "dir", "symlink", "hardlink", "other"]


# --------------------------------------------------------------------------------------------- rows
@dataclass(frozen=True, slots=True)
class Entry:
    """One tar member of one layer.

    ``path`` as ``tar -t`` prints it minus a leading ``./`` and a trailing ``/`` (see module doc).
    ``type`` is ``file`` | ``dir`` | ``symlink`` | ``hardlink`` | ``other`` (devices, fifos).
    ``size`` is the header size (0 for hardlinks, links and dirs). ``mode`` the permission bits including
    setuid/setgid/sticky (``0o7777`` part). ``mtime`` is **seconds since the epoch, UTC, as a float**
    (pax headers can carry sub-second times). ``linkname`` is the link target ("" if not a link; for
    hardlinks a path inside the archive). ``whiteout`` is ``None``, ``"file"`` for ``.wh.<name>`` or
    ``"opaque"`` for ``.wh..wh..opq``; ``path`` of a whiteout row is the marker's own path.
    """

    layer: str | None
    path: str
    type: EntryType
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    whiteout: Literal["file", "opaque"] | None
    #: ``sha256:<hex>`` of a regular file's content when listed with ``hash_files=True``, else None
    content: str | None = None


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One difference between two file lists: ``change`` is ``added`` | ``removed`` | ``modified``;
    ``size_a``/``size_b`` are None on the side where the path is absent; ``fields`` names the compared
    attributes that differ, comma-separated (``""`` for added/removed)."""

    path: str
    change: Literal["added", "removed", "modified"]
    size_a: int | None
    size_b: int | None
    fields: str


@dataclass(slots=True)
class ExtractSummary:
    """What :func:`extract` did: counts per kind, whiteouts applied, and file bytes written."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    whiteouts: int = 0
    bytes_written: int = 0
    skipped: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ decompression
def _cap_from_env(name: str = MAX_LAYER_BYTES_ENV, default: int = DEFAULT_CAP) -> int:
    """The byte cap in environment variable ``name`` (``default`` when unset or empty).
    Raises ``ValueError`` for a value that is not a positive whole number."""
    return _env.whole(name, default)


class _Source(io.RawIOBase):
    """Compressed input as a raw, read-only, non-seekable file; counts bytes and supports ``peek``."""

    def __init__(self, source: Iterable[bytes] | IO[bytes]) -> None:
        super().__init__()
        self._fileobj: IO[bytes] | None = None
        self._chunks: Iterator[bytes] | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._fileobj = io.BytesIO(bytes(source))
        elif hasattr(source, "read"):
            self._fileobj = source  # type: ignore[assignment]
        else:
            self._chunks = iter(source)
        self._pending = b""
        self._pos = 0  # read position in _pending
        self.bytes_in = 0
        self.error: BaseException | None = None  # an error raised by the caller's input, kept as is

    def readable(self) -> bool:
        return True

    def _pull(self) -> bytes:
        try:
            return self._pull_unguarded()
        except BaseException as exc:
            self.error = exc
            raise

    def _pull_unguarded(self) -> bytes:
        if self._fileobj is not None:
            data = self._fileobj.read(_CHUNK)
            return bytes(data) if data else b""
        assert self._chunks is not None
        for chunk in self._chunks:
            if chunk:
                return bytes(chunk)
        return b""

    def peek(self, n: int) -> bytes:
        """Return up to ``n`` leading bytes without consuming them (fewer only at end of input)."""
        self._pending, self._pos = self._pending[self._pos:], 0
        while len(self._pending) < n:
            data = self._pull()
            if not data:
                break
            self._pending += data
        return self._pending[:n]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= len(self._pending):
            self._pending, self._pos = self._pull(), 0
        n = min(len(view), len(self._pending) - self._pos)
        view[:n] = memoryview(self._pending)[self._pos:self._pos + n]
        self._pos += n
        self.bytes_in += n
        return n


class _ZstdReader(io.RawIOBase):
    """zstd frames (concatenated, skippable ones included) decoded from a raw source.

    ``zstandard``'s ``stream_reader`` returns a short read, not an error, when the input ends inside a
    frame, so frames are decoded here with ``decompressobj``: input is fed in small slices (2 KiB can
    expand to at most ~64 MiB, which bounds memory for bombs) and a frame left open at the end of the
    input raises ``EOFError``.
    """

    _FEED = 2048

    def __init__(self, source: _Source) -> None:
        super().__init__()
        self._source = source
        self._dctx = zstandard.ZstdDecompressor()
        self._obj: Any = None  # decoder of the current frame, None between frames
        self._input = b""
        self._output = b""
        self._pos = 0  # read position in _output (slicing a 64 MiB buffer per read would be quadratic)

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Decode more output into ``self._output``; False at a clean end of input."""
        while self._pos >= len(self._output):
            if not self._input:
                self._input = self._source.read(_CHUNK) or b""
                if not self._input:
                    if self._obj is not None:
                        raise EOFError("zstd stream ends inside a frame")
                    return False
            if self._obj is None:
                self._obj = self._dctx.decompressobj(write_size=_CHUNK)
            piece, self._input = self._input[: self._FEED], self._input[self._FEED:]
            self._output, self._pos = self._obj.decompress(piece), 0
            if self._obj.eof:
                self._input = self._obj.unused_data + self._input
                self._obj = None
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= len(self._output) and not self._fill():
            return 0
        n = min(len(view), len(self._output) - self._pos)
        view[:n] = memoryview(self._output)[self._pos:self._pos + n]
        self._pos += n
        return n


class LayerStream(io.RawIOBase):
    """The decompressed tar of a layer, as a readable, non-seekable raw file.

    Attributes: ``compression`` (``"gzip"``, ``"zstd"`` or ``"none"``), ``bytes_in`` (compressed bytes
    consumed so far), ``bytes_out`` (decompressed bytes produced), ``max_bytes`` (the cap).
    ``read``/``readinto`` raise :class:`UnsafeLayer` once more than ``max_bytes`` would be produced and
    :class:`RegistryError` if the compressed data is corrupt or truncated.
    """

    def __init__(self, source: _Source, compression: str, max_bytes: int) -> None:
        super().__init__()
        self._source = source
        self.compression = compression
        self.max_bytes = max_bytes
        self.bytes_out = 0
        #: None, or a budget shared with other streams: its ``charge(n)`` is told of every decompressed byte
        #: and raises to stop them all (the per-call image budget of :class:`regexplore.Registry`)
        self.budget: Any = None
        self._inner: Any
        if compression == "gzip":
            self._inner = _GzipFile(fileobj=source, mode="rb")
        elif compression == "zstd":
            self._inner = _ZstdReader(source)
        else:
            self._inner = source

    @property
    def bytes_in(self) -> int:
        return self._source.bytes_in

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        # Never ask for more than cap+1 bytes: a bomb is stopped after at most one extra byte.
        room = self.max_bytes - self.bytes_out + 1
        if len(view) > room:
            view = view[:room]
        try:
            n = self._inner.readinto(view)
        except (EOFError, OSError, *_GZIP_ERRORS, zstandard.ZstdError) as exc:
            if self._source.error is not None:  # the input failed (network...): not a corrupt layer
                raise self._source.error
            raise RegistryError(f"corrupt or truncated {self.compression} layer stream: {exc}") from exc
        self.charge(n or 0)
        return n or 0

    def charge(self, n: int, entry: str | None = None) -> None:
        """Count ``n`` more bytes of output (read ones, or a sparse file's holes, named ``entry``).
        Raises :class:`UnsafeLayer` once the total is over ``max_bytes``."""
        self.bytes_out += n
        if self.bytes_out > self.max_bytes:
            what = f" (with the holes of sparse file {entry!r})" if entry else ""
            raise UnsafeLayer(
                f"layer decompresses to more than {self.max_bytes} bytes{what} (the cap; a decompression "
                f"bomb?). Raise it with max_bytes= or {MAX_LAYER_BYTES_ENV}.", entry=entry
            )
        if self.budget is not None and n:
            self.budget.charge(n)

    def drain(self) -> int:
        """Read (and discard) the rest of the stream, so the compressed input is consumed to its end
        (for a hash computed in the same pass, and for the gzip CRC check). Returns bytes discarded."""
        buf = bytearray(_CHUNK)
        total = 0
        while n := self.readinto(buf):
            total += n
        return total


def _detect(head: bytes, media_type: str | None) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC) or (
        len(head) >= 4 and 0x50 <= head[0] <= 0x5F and head[1:4] == b"\x2a\x4d\x18"  # zstd skippable frame
    ):
        return "zstd"
    for magic, name in _OTHER_MAGIC.items():
        if head.startswith(magic):
            raise UnsupportedMediaType(f"layer is {name}-compressed; only gzip, zstd and plain tar are read")
    if media_type and "+encrypted" in media_type:
        raise UnsupportedMediaType(f"encrypted layer ({media_type}) cannot be read")
    return "none"


def open_layer_stream(
    source: Iterable[bytes] | IO[bytes] | bytes,
    media_type: str | None = None,
    *,
    max_bytes: int | None = None,
) -> LayerStream:
    """Open compressed layer bytes as a readable stream of the decompressed tar.

    The compression is detected from magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd`` or a skippable
    frame, anything else is read as plain tar); ``media_type`` is only a hint (used to refuse
    ``+encrypted`` layers). gzip goes through ISA-L (``isal.igzip``) when installed, zlib otherwise;
    zstd through ``zstandard`` streaming. An already-decompressed :class:`LayerStream` passes through.

    ``max_bytes`` caps the decompressed size (None: ``$REGEXPLORE_MAX_LAYER_BYTES`` or :data:`DEFAULT_CAP`).

    Returns a :class:`LayerStream`. Raises :class:`UnsupportedMediaType` for bzip2/xz/lz4 or encrypted
    layers, ``ValueError`` for a bad cap; reading raises :class:`UnsafeLayer` past the cap.
    """
    if isinstance(source, LayerStream):
        return source
    cap = _cap_from_env() if max_bytes is None else int(max_bytes)
    if cap <= 0:
        raise ValueError(f"max_bytes must be positive, got {cap}")
    src = _Source(source)
    compression = _detect(src.peek(6), media_type)
    return LayerStream(src, compression, cap)


# ------------------------------------------------------------------------------------------ listing
class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses pax / GNU long-name members big enough to exhaust memory before tarfile reads them, and
    a corrupt header after the first member (TarFile.next() would take it for the end of the archive and
    list the layer short; GNU tar and Go's archive/tar, which Docker and containerd use, report an error)."""

    @classmethod
    def fromtarfile(cls, tarfile_: Any) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().fromtarfile(tarfile_)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:
            if tarfile_.offset:  # only zero blocks or the end of the data end an archive
                raise tarfile.SubsequentHeaderError(f"bad tar header at offset {tarfile_.offset}: {exc}") from None
            raise

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if (
            self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
            or self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        ) and self.size > MAX_METADATA_MEMBER:
            raise UnsafeLayer(
                f"tar metadata member of {self.size} bytes (over {MAX_METADATA_MEMBER})", entry=self.name
            )
        try:
            return super()._proc_member(tarfile_)  # type: ignore[misc]
        except tarfile.SubsequentHeaderError as exc:
            # A pax global header (type g) describes the members after it and may be followed by the
            # end-of-archive marker (an empty pax archive, `git archive` of an empty tree): that is the
            # end of the archive, not a broken one (POSIX pax; GNU tar and bsdtar read it so).
            if self.type == tarfile.XGLTYPE and isinstance(exc.__context__, tarfile.EOFHeaderError):
                raise exc.__context__ from None
            raise

    # GNU sparse maps, in tarfile's four encodings, capped before they are built (tarfile reads any number
    # of extension blocks or map lines into a list of tuples: gigabytes from a small gzip'd layer).
    def _proc_sparse(self, tarfile_: Any) -> tarfile.TarInfo:  # type: ignore[override]
        """Old GNU format (type ``S``): up to 4 extents in the header, 21 per extension block."""
        structs, isextended, origsize = self._sparse_structs  # type: ignore[attr-defined]
        del self._sparse_structs  # type: ignore[attr-defined]
        blocks = 0
        while isextended:
            blocks += 1
            if blocks * tarfile.BLOCKSIZE > MAX_METADATA_MEMBER:
                raise UnsafeLayer(f"sparse file {self.name!r}: extension headers over {MAX_METADATA_MEMBER} "
                                  "bytes", entry=self.name)
            buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
            if len(buf) < tarfile.BLOCKSIZE:
                raise tarfile.ReadError("unexpected end of data in a sparse header")
            for pos in range(0, 21 * 24, 24):
                try:
                    offset, numbytes = tarfile.nti(buf[pos:pos + 12]), tarfile.nti(buf[pos + 12:pos + 24])
                except ValueError:
                    break
                if offset and numbytes:
                    structs.append((offset, numbytes))
            _check_sparse_count(len(structs), self.name)
            isextended = bool(buf[504])
        self.sparse = structs
        self.offset_data = tarfile_.fileobj.tell()
        tarfile_.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
        self.size = origsize
        return self

    def _proc_gnusparse_00(self, next: tarfile.TarInfo, pax_headers: dict, buf: bytes) -> None:
        """pax 0.0: ``GNU.sparse.offset`` / ``GNU.sparse.numbytes`` records (inside the capped pax header)."""
        _check_sparse_count(buf.count(b" GNU.sparse.offset="), next.name)
        with _bad_sparse_map(next):
            super()._proc_gnusparse_00(next, pax_headers, buf)  # type: ignore[misc]

    def _proc_gnusparse_01(self, next: tarfile.TarInfo, pax_headers: dict) -> None:
        """pax 0.1: ``GNU.sparse.map`` = ``offset,size,...`` (inside the capped pax header)."""
        _check_sparse_count((pax_headers["GNU.sparse.map"].count(",") + 1) // 2, next.name)
        with _bad_sparse_map(next):
            super()._proc_gnusparse_01(next, pax_headers)  # type: ignore[misc]

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: dict, tarfile_: Any) -> None:
        """pax 1.0: the map is at the start of the member's data: a count, then offset and size, one
        decimal number per line, padded to a block (so at most 2 * MAX_SPARSE_ENTRIES + 1 short lines)."""
        numbers: list[int] = []
        count: int | None = None
        buf = b""
        while count is None or len(numbers) < 2 * count:
            line, newline, rest = buf.partition(b"\n")
            if not newline:
                if len(buf) > 32:  # a number longer than any offset
                    raise tarfile.ReadError(f"invalid sparse map of {next.name!r}")
                block = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
                if len(block) < tarfile.BLOCKSIZE:
                    raise tarfile.ReadError("unexpected end of data in a sparse map")
                buf += block
                continue
            if not line.isdigit():
                raise tarfile.ReadError(f"invalid sparse map of {next.name!r}")
            buf = rest
            if count is None:
                count = int(line)
                _check_sparse_count(count, next.name)
            else:
                numbers.append(int(line))
        next.offset_data = tarfile_.fileobj.tell()
        next.sparse = list(zip(numbers[::2], numbers[1::2]))


def _check_sparse_count(count: int, name: str) -> None:
    """Raise :class:`UnsafeLayer` when a sparse map lists more than :data:`MAX_SPARSE_ENTRIES` extents."""
    if count > MAX_SPARSE_ENTRIES:
        raise UnsafeLayer(f"sparse file {name!r}: a map of more than {MAX_SPARSE_ENTRIES} extents",
                          entry=name)


@contextlib.contextmanager
def _bad_sparse_map(ti: tarfile.TarInfo) -> Iterator[None]:
    """tarfile's ``int()`` of a map value that is not a number: a corrupt header, not a crash."""
    try:
        yield
    except ValueError:
        raise tarfile.ReadError(f"invalid sparse map of {ti.name!r}") from None


def _entry_type(ti: tarfile.TarInfo) -> EntryType:
    if ti.isreg():
        return "file"
    if ti.isdir():
        return "dir"
    if ti.issym():
        return "symlink"
    if ti.islnk():
        return "hardlink"
    return "other"


def _tar_path(name: str) -> str:
    """``tar -t`` name minus leading ``./`` (repeated) and trailing ``/``; ``./`` itself becomes ``.``."""
    while name.startswith("./"):
        name = name[2:]
    stripped = name.rstrip("/")
    if stripped:
        return stripped
    if name.startswith("/"):
        return "/"
    return "."


def canonical_path(path: str) -> str:
    """Return ``path`` with empty and ``.`` components dropped (so no leading/trailing ``/``); ``..`` is
    kept as a name. The root is ``""``. Used as the key by :func:`merge`, :func:`diff`, :func:`read_file`."""
    return "/".join(p for p in path.split("/") if p not in ("", "."))


# Names in tables. tar names are bytes; they are decoded as UTF-8 with surrogateescape (tarfile's way), so a
# byte that is not UTF-8 becomes a lone surrogate: exact, but not text (pyarrow, print, JSON refuse it).
_SHOW = re.compile(r"[\udc80-\udcff]|\\(?=\\|x[89a-fA-F][0-9a-fA-F]|[\udc80-\udcff])")
_UNSHOW = re.compile(r"\\(\\|x[89a-fA-F][0-9a-fA-F])")


def shown_name(name: str) -> str:
    r"""``name`` (a tar name decoded with surrogateescape) as valid text: the form the tables show.

    Each byte that is not UTF-8 becomes ``\xNN`` (``80``-``ff``), and a backslash is doubled where it
    would otherwise read as such an escape or as the first of ``\\``; everything else is unchanged (a
    systemd ``dev-sda\x2d1.device`` stays as is). :func:`raw_path` gives the exact bytes back.
    """
    if "\\" not in name and name.isascii():
        return name
    return _SHOW.sub(lambda m: "\\\\" if m[0] == "\\" else f"\\x{ord(m[0]) - 0xDC00:02x}", name)


def raw_path(shown: str) -> bytes:
    r"""The exact bytes of a name as a ``files`` or ``diff`` table shows it (:func:`shown_name`); pass
    them to ``read_file``. ``raw_path(r"caf\xe9")`` is ``b"caf\xe9"`` (a Latin-1 name)."""
    out: list[bytes] = []
    pos = 0
    for m in _UNSHOW.finditer(shown):
        out.append(shown[pos:m.start()].encode("utf-8", "surrogateescape"))
        out.append(b"\\" if m[1] == "\\" else bytes([int(m[1][1:], 16)]))
        pos = m.end()
    out.append(shown[pos:].encode("utf-8", "surrogateescape"))
    return b"".join(out)


def _whiteout_kind(path: str) -> Literal["file", "opaque"] | None:
    base = path.rsplit("/", 1)[-1]
    if base == _WH_OPAQUE:
        return "opaque"
    if base.startswith(_WH_PREFIX) and not base.startswith(_WH_META_PREFIX):
        return "file"
    return None


def _whiteout_target(cpath: str, entry: str) -> str:
    """The path a ``.wh.<name>`` whiteout at ``cpath`` removes. Raises :class:`UnsafeLayer` when the name
    is empty, ``.`` or ``..`` (``.wh.``, ``.wh..``, ``.wh...``): they would remove the folder itself or its
    parent (containerd refuses them as an invalid archive)."""
    head, _, base = cpath.rpartition("/")
    name = base[len(_WH_PREFIX):]
    if name in ("", ".", ".."):
        raise UnsafeLayer(f"invalid whiteout name {entry!r}", entry=entry)
    return f"{head}/{name}" if head else name


def _member_chunks(ti: tarfile.TarInfo, tf: _LayerTarFile) -> Iterator[bytes]:
    """The content of regular file ``ti`` (the member ``tf`` is at), in chunks of at most :data:`_CHUNK`
    bytes; a sparse file's holes count against the layer's cap (a few bytes can declare terabytes).
    Raises ``tarfile.ReadError`` when the data ends early, :class:`UnsafeLayer` over the cap."""
    if ti.sparse is not None:
        tf.layer.charge(max(0, ti.size - sum(numbytes for _, numbytes in ti.sparse)), ti.name)
    fobj = tf.extractfile(ti)
    assert fobj is not None
    while chunk := fobj.read(_CHUNK):
        yield chunk


def _content_digest(ti: tarfile.TarInfo, tf: _LayerTarFile) -> str | None:
    if not ti.isreg():
        return None
    h = hashlib.sha256()
    for chunk in _member_chunks(ti, tf):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def _to_entry(ti: tarfile.TarInfo, layer: str | None, content: str | None = None) -> Entry:
    path = _tar_path(ti.name)
    return Entry(
        layer=layer,
        path=path,
        type=_entry_type(ti),
        size=int(ti.size),
        mode=int(ti.mode) & 0o7777,
        uid=int(ti.uid),
        gid=int(ti.gid),
        mtime=float(ti.mtime),
        linkname=ti.linkname or "",
        whiteout=_whiteout_kind(path),
        content=content,
    )


@contextlib.contextmanager
def _tar_errors() -> Iterator[None]:
    """Map tarfile's errors while a member's data is read (a tar cut inside a file) to RegistryError."""
    try:
        yield
    except (tarfile.ReadError, tarfile.StreamError) as exc:
        raise RegistryError(f"corrupt or truncated tar in layer: {exc}") from exc


class _LayerTarFile(tarfile.TarFile):
    """A stream-mode TarFile over a :class:`LayerStream`, kept as ``layer`` (its cap, its counters)."""

    layer: LayerStream


def _members(stream: LayerStream, *, drain: bool) -> Iterator[tuple[tarfile.TarInfo, _LayerTarFile]]:
    """Yield ``(TarInfo, TarFile)`` in archive order (the TarFile serves the current member's data).

    Keeps memory constant (tarfile's member list is cleared as we go). At the end, drains the stream
    when ``drain`` is true. Raises UnsupportedMediaType if the data is not a tar archive.
    """
    try:
        tf: _LayerTarFile = _LayerTarFile.open(fileobj=stream, mode="r|", tarinfo=_GuardedTarInfo)
    except tarfile.ReadError as exc:
        if stream.bytes_out == 0:
            return  # an empty blob (or compressed nothing): an empty layer
        raise UnsupportedMediaType(f"layer is not a tar archive ({stream.compression}): {exc}") from exc
    tf.layer = stream
    with tf:
        while True:
            try:
                ti = tf.next()
            except tarfile.ReadError as exc:
                raise RegistryError(f"corrupt or truncated tar in layer: {exc}") from exc
            if ti is None:
                break
            tf.members.clear()  # stream mode never needs them; keeps memory flat for huge layers
            yield ti, tf
    if drain:
        stream.drain()


# ------------------------------------------------------------------------------------- fast listing
# Listing needs only the headers, so iter_entries does not go through TarFile: the decompression runs in
# a worker thread (isal, zstandard and hashlib release the GIL, so it overlaps with the parsing), and the
# headers are read straight out of the decompressed chunks. The hot path parses plain ustar/GNU headers
# itself; every other header (pax, GNU long names, sparse files, anything malformed, and every member
# once a global pax header was seen) goes through tarfile's own TarInfo code, and the end-of-archive and
# error rules are TarFile.next()'s, so the result is exactly what tarfile stream mode lists.
# tests/test_layers_pure.py checks that on the test layers and on mutated headers.

_BLOCK = tarfile.BLOCKSIZE
#: name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s")
_FAST_TYPES = frozenset([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE,
                         tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE])
_GNU_LONG = frozenset([tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
_DATA_TYPES = frozenset(tarfile.REGULAR_TYPES)  # members whose data follows the header (of _FAST_TYPES)
_KINDS: dict[bytes, EntryType] = {
    **{t: "file" for t in tarfile.REGULAR_TYPES}, tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}
_PREFETCH_CHUNK = 1024 * 1024
_PREFETCH_DEPTH = 8  # chunks between the decompressing thread and the parser (8 MiB)
_PREFETCH_READ = 64 * 1024  # per read: what a read that fails loses (the bytes before an error are listed)

#: (name, type, size, mode, uid, gid, mtime, linkname) of one member, as TarInfo has them
_RawMember = tuple[str, bytes, int, int, int, int, Union[int, float], str]


class _Prefetch:
    """Read a :class:`LayerStream` to its end in a worker thread, into a bounded queue of chunks.

    Decompression and the caller's input (a streaming download hashing as it goes) run in the worker;
    iterating yields the decompressed chunks in order (``bytearray`` s of :data:`_PREFETCH_CHUNK` bytes, the
    last one shorter), and an error of the stream is raised in the consumer where it happened. A consumer
    done with a chunk may hand it back with ``release`` to be filled again: fresh megabyte buffers cost
    page faults, reused ones do not. ``close()`` stops the worker (the input is not read further).
    """

    _EOF = object()

    def __init__(self, stream: LayerStream) -> None:
        self._stream = stream
        self._q: queue.Queue[Any] = queue.Queue(_PREFETCH_DEPTH)
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._stop = threading.Event()
        # run in the caller's context: its call deadline (regexplore.http.deadline) holds resumes made here
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name="regexplore-layer", daemon=True)
        self._thread.start()

    def release(self, chunk: bytes | bytearray) -> None:
        if type(chunk) is bytearray and len(chunk) == _PREFETCH_CHUNK and self._free.qsize() < _PREFETCH_DEPTH:
            self._free.put(chunk)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._put(self._fill() or self._EOF)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)

    def _fill(self) -> BaseException | None:
        """Queue the stream's chunks; return the stream's error (after the bytes before it), or None."""
        while not self._stop.is_set():
            try:
                chunk = self._free.get_nowait()
            except queue.Empty:
                chunk = bytearray(_PREFETCH_CHUNK)
            filled, error = 0, None
            with memoryview(chunk) as view:
                try:
                    while filled < _PREFETCH_CHUNK and (n := self._stream.readinto(view[filled:filled + _PREFETCH_READ])):
                        filled += n
                except BaseException as exc:  # noqa: BLE001
                    error = exc
            if filled < _PREFETCH_CHUNK:
                chunk = chunk[:filled]  # a copy: the error's traceback may still hold a view of the buffer
            if filled and not self._put(chunk):
                return None
            if error is not None or filled < _PREFETCH_CHUNK:
                return error
        return None

    def __iter__(self) -> Iterator[bytearray]:
        while True:
            item = self._q.get()
            if item is self._EOF:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)


class _TarBytes:
    """Decompressed tar bytes from a chunk iterator, as a forward-only file.

    ``read``/``tell`` serve tarfile's header code; ``skip_to`` skips member data without copying it;
    the hot path reads ``buf`` at ``pos`` directly (``buf[pos:]`` are the unread bytes at ``base + pos``).
    A chunk that is no longer needed goes to ``release`` (so a reference to ``buf`` is only good until
    the next ``ensure``, ``read``, ``skip_to`` or ``drain``).
    """

    def __init__(self, chunks: Iterable[bytes | bytearray],
                 release: Callable[[bytes | bytearray], None] | None = None) -> None:
        self._chunks = iter(chunks)
        self._release = release or (lambda chunk: None)
        self.buf: bytes | bytearray = b""
        self.pos = 0
        self.base = 0  # offset of buf[0] in the tar
        self.eof = False

    def _pull(self) -> bool:
        """Append the next non-empty chunk to the unread bytes; False at the end of the data."""
        if not self.eof:
            for chunk in self._chunks:
                if chunk:
                    old, self.base = self.buf, self.base + self.pos
                    if self.pos < len(old):
                        self.buf = old[self.pos:] + chunk
                        self._release(chunk)
                    else:
                        self.buf = chunk
                    self._release(old)
                    self.pos = 0
                    return True
            self.eof = True
        return False

    def ensure(self, n: int) -> bool:
        """True when at least ``n`` unread bytes are in ``buf`` (pulling chunks as needed)."""
        while len(self.buf) - self.pos < n:
            if not self._pull():
                return False
        return True

    def read(self, n: int) -> bytes:
        if n < 0:  # a negative size in a pax / long-name header (tarfile's own stream would misbehave)
            raise tarfile.ReadError("negative member size")
        self.ensure(n)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += len(out)
        return out

    def tell(self) -> int:
        return self.base + self.pos

    def skip_to(self, offset: int) -> bool:
        """Move to ``offset`` (not before the current position); False if the data ends before it."""
        if offset < self.tell():
            raise tarfile.StreamError("seeking backwards is not allowed")
        while self.base + len(self.buf) < offset:
            self.base += len(self.buf)
            self._release(self.buf)
            self.buf, self.pos = b"", 0
            if not self._pull():
                return False
        self.pos = offset - self.base
        return True

    def drain(self) -> None:
        """Read the rest of the chunks (to the end of the input)."""
        self.skip_to(self.base + len(self.buf))
        while self._pull():
            self.skip_to(self.base + len(self.buf))


class _TarShim:
    """What TarInfo.fromtarfile() uses of a TarFile: the file, the next header's offset, the encoding
    and the global pax headers."""

    def __init__(self, fileobj: _TarBytes) -> None:
        self.fileobj = fileobj
        self.offset = 0
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}


def _tarfile_member(shim: _TarShim, chained: bool = False) -> _RawMember | None:
    """One member read by tarfile's own code, with TarFile.next()'s rules: None at the end of the archive,
    ``tarfile.ReadError`` where TarFile.next() raises it (a bad first header, a broken pax/long-name chain).
    ``chained``: the header follows GNU long-name members, so any header error is a ReadError."""
    first = shim.offset == 0
    try:
        ti = _GuardedTarInfo.fromtarfile(shim)  # type: ignore[arg-type]
    except tarfile.HeaderError as exc:
        if chained or isinstance(exc, tarfile.SubsequentHeaderError):
            raise tarfile.ReadError(str(exc)) from None
        if first and not isinstance(exc, tarfile.EOFHeaderError):
            raise tarfile.ReadError("empty file" if isinstance(exc, tarfile.EmptyHeaderError) else str(exc)) from None
        return None
    return ti.name, ti.type, ti.size, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname


def _with_long_names(m: _RawMember, long_name: str | None, long_link: str | None) -> _RawMember:
    """``m`` with the names of the GNU long-name / long-link members before it (TarInfo._proc_gnulong)."""
    name, kind, size, mode, uid, gid, mtime, link = m
    if long_name is not None:
        name = long_name.removesuffix("/") if kind == tarfile.DIRTYPE else long_name
    return name, kind, size, mode, uid, gid, mtime, link if long_link is None else long_link


def _scan_tar(data: _TarBytes) -> Iterator[_RawMember]:
    """The members of a tar, in order, as tarfile stream mode reads them (see the section comment).

    Raises ``tarfile.ReadError`` / ``tarfile.StreamError`` where ``TarFile.next()`` does, and
    :class:`UnsafeLayer` for an oversized pax / long-name member.
    """
    shim = _TarShim(data)
    unpack = _HEADER.unpack_from
    adler32 = zlib.adler32
    encoding, errors = shim.encoding, shim.errors
    chained = False  # inside a chain of GNU long-name/long-link members (the next header completes it)
    long_name: str | None = None
    long_link: str | None = None
    while True:
        if not chained:
            offset = shim.offset
            if offset != data.tell() and not data.skip_to(offset):
                raise tarfile.ReadError("unexpected end of data")
        buf, p = data.buf, data.pos
        if len(buf) - p < _BLOCK and data.ensure(_BLOCK):
            buf, p = data.buf, data.pos
        if len(buf) - p >= _BLOCK and not shim.pax_headers:
            (name, mode, uid, gid, size, mtime, chksum, kind, link, _magic, _version, _uname, _gname,
             devmajor, devminor, prefix) = unpack(buf, p)
            if kind in _FAST_TYPES or kind in _GNU_LONG:
                try:  # as nti(): "644\0", "644 \0", "644\0 " and "" are fine; anything else goes to tarfile below
                    n_chksum = int(chksum.rstrip(b"\0 ") or b"0", 8)
                    n_mode = int(mode.rstrip(b"\0 ") or b"0", 8)
                    n_uid = int(uid.rstrip(b"\0 ") or b"0", 8)
                    n_gid = int(gid.rstrip(b"\0 ") or b"0", 8)
                    n_size = int(size.rstrip(b"\0 ") or b"0", 8)
                    n_mtime = int(mtime.rstrip(b"\0 ") or b"0", 8)
                    int(devmajor.rstrip(b"\0 ") or b"0", 8)
                    int(devminor.rstrip(b"\0 ") or b"0", 8)
                except ValueError:
                    n_chksum = -1
                # The unsigned checksum: the byte sum with the checksum field counted as spaces. Each half
                # of the block sums to at most 256 * 255 < 65521, so adler32's low word is 1 + that sum.
                total = (adler32(buf[p:p + 256]) & 0xFFFF) + (adler32(buf[p + 256:p + _BLOCK]) & 0xFFFF) - 2
                if n_chksum == total - sum(chksum) + 256 and n_size >= 0:
                    data.pos = p + _BLOCK
                    if kind in _GNU_LONG:  # TarInfo._proc_gnulong: the outermost long name/link wins
                        if n_size > MAX_METADATA_MEMBER:
                            raise UnsafeLayer(f"tar metadata member of {n_size} bytes (over {MAX_METADATA_MEMBER})",
                                              entry=name.partition(b"\0")[0].decode(encoding, errors))
                        text = data.read(-(-n_size // _BLOCK) * _BLOCK).partition(b"\0")[0].decode(encoding, errors)
                        if kind == tarfile.GNUTYPE_LONGNAME:
                            long_name = text if long_name is None else long_name
                        else:
                            long_link = text if long_link is None else long_link
                        chained = True
                        continue
                    n = name.partition(b"\0")[0].decode(encoding, errors)
                    if kind == tarfile.AREGTYPE and n.endswith("/"):
                        kind = tarfile.DIRTYPE
                    if kind == tarfile.DIRTYPE:
                        n = n.rstrip("/")
                    pre = prefix.partition(b"\0")[0]
                    if pre:
                        n = pre.decode(encoding, errors) + "/" + n
                        if kind == tarfile.DIRTYPE:
                            n = n.rstrip("/")
                    shim.offset = data.tell()
                    if kind in _DATA_TYPES:
                        shim.offset += -(-n_size // _BLOCK) * _BLOCK
                    member: _RawMember | None = (n, kind, n_size, n_mode, n_uid, n_gid, n_mtime,
                                                 link.partition(b"\0")[0].decode(encoding, errors))
                    if chained:
                        member = _with_long_names(member, long_name, long_link)
                        chained, long_name, long_link = False, None, None
                    yield member
                    continue
        member = _tarfile_member(shim, chained)
        if member is None:
            return
        if chained:
            member = _with_long_names(member, long_name, long_link)
            chained, long_name, long_link = False, None, None
        yield member


def _entry_of(m: _RawMember, layer: str | None) -> Entry:
    path = _tar_path(m[0])
    return Entry(layer, path, _KINDS.get(m[1], "other"), int(m[2]), int(m[3]) & 0o7777, int(m[4]), int(m[5]),
                 float(m[6]), m[7] or "", _whiteout_kind(path))


def _list_members(stream: LayerStream, *, drain: bool, threaded: bool) -> Iterator[_RawMember]:
    """Members of the tar in ``stream`` (see :func:`_scan_tar`), with :func:`_members`' error mapping;
    with ``threaded`` the stream is decompressed (and its input read) in a worker thread."""
    prefetch = _Prefetch(stream) if threaded else None
    if prefetch is not None:
        data = _TarBytes(prefetch, prefetch.release)
    else:
        data = _TarBytes(iter(lambda: stream.read(_PREFETCH_CHUNK), b""))
    try:
        members = _scan_tar(data)
        try:
            first = next(members, None)
        except tarfile.ReadError as exc:
            if data.eof and data.base + len(data.buf) == 0:
                return  # an empty blob (or compressed nothing): an empty layer
            raise UnsupportedMediaType(f"layer is not a tar archive ({stream.compression}): {exc}") from exc
        if first is not None:
            yield first
            try:
                yield from members
            except (tarfile.ReadError, tarfile.StreamError) as exc:
                raise RegistryError(f"corrupt or truncated tar in layer: {exc}") from exc
        if drain:
            data.drain()
    finally:
        if prefetch is not None:
            prefetch.close()


def iter_entries(
    source: Iterable[bytes] | IO[bytes] | bytes,
    layer: str | None = None,
    *,
    media_type: str | None = None,
    max_bytes: int | None = None,
    drain: bool = True,
    hash_files: bool = False,
) -> Iterator[Entry]:
    """List a layer: yield one :class:`Entry` per tar member, in archive order.

    ``source`` is anything :func:`open_layer_stream` takes (or a :class:`LayerStream`); ``layer`` is copied
    into every row (usually the layer digest). When the archive's end marker is reached and ``drain`` is
    true, the rest of the input is read too, so a hash computed while streaming covers the whole blob.
    Never seeks, no temp file, constant memory. Without ``hash_files`` the input is read and decompressed
    in a worker thread while the headers are parsed (an in-memory ``bytes`` source is read inline).

    Raises :class:`UnsafeLayer` (cap exceeded, oversized pax header), :class:`UnsupportedMediaType`
    (not a tar / unsupported compression), :class:`RegistryError` (corrupt or truncated data).
    """
    stream = open_layer_stream(source, media_type, max_bytes=max_bytes)
    if hash_files:
        for ti, tf in _members(stream, drain=drain):
            with _tar_errors():
                digest = _content_digest(ti, tf)
            yield _to_entry(ti, layer, digest)
        return
    threaded = not isinstance(source, (bytes, bytearray, memoryview, io.BytesIO))
    for m in _list_members(stream, drain=drain, threaded=threaded):
        yield _entry_of(m, layer)


# -------------------------------------------------------------------------------------------- merge
class _Node:
    __slots__ = ("entry", "children")

    def __init__(self) -> None:
        self.entry: Entry | None = None
        self.children: dict[str, _Node] = {}


def _group_layers(layers_rows: Iterable[Any]) -> list[list[Entry]]:
    groups: list[list[Entry]] = []
    last_layer: object = object()
    for item in layers_rows:
        if isinstance(item, Entry):
            if not groups or item.layer != last_layer:
                groups.append([])
                last_layer = item.layer
            groups[-1].append(item)
        else:
            groups.append(list(item))
            last_layer = object()
    return groups


def _is_aufs_meta(cpath: str) -> bool:
    return cpath.split("/", 1)[0].startswith(_WH_META_PREFIX) and cpath != _WH_OPAQUE


def merge(layers_rows: Iterable[Iterable[Entry]] | Iterable[Entry]) -> list[Entry]:
    """Apply layers in order (base first) and return the final filesystem, sorted by path.

    ``layers_rows`` is either one iterable of rows per layer, or one flat iterable of rows where
    consecutive rows with the same ``layer`` form a layer. Rules (OCI image spec, "Whiteouts"):

    * whiteouts apply only to *lower* layers: in each layer, whiteouts are applied first, then entries;
    * ``d/.wh.x`` removes ``d/x`` and everything under it; ``d/.wh..wh..opq`` removes everything under ``d``
      (``d`` itself stays);
    * a later entry replaces an earlier one at the same path; a non-directory replacing a directory also
      removes what was under it; a directory over a directory keeps the children;
    * a parent directory that is a symlink in the tree so far is followed, inside the image root (as
      tar extraction and :func:`extract` do): ``a -> b`` then ``a/x`` lands at ``b/x``, and that row's
      ``path`` is the resolved one (a layer's whiteouts see the tree before that layer's own entries,
      while :func:`extract` goes in archive order: they differ only for a tar that makes a link and
      whites out through it in the same layer);
    * a hardlink row takes the ``content`` digest of the file its target was when it was applied;
    * whiteout markers and AUFS metadata (``.wh..wh.plnk`` ...) never appear in the result.

    Paths are compared by :func:`canonical_path` (rows keep their own ``path`` unless a symlinked parent
    moved them). Returns a list of :class:`Entry` whose ``layer`` tells which layer provided each path.
    Raises :class:`UnsafeLayer` for a whiteout name that names no file (``.wh..``).
    """
    root = _Node()

    def resolve(parts: list[str], follow_last: bool = False) -> list[str]:
        """``parts`` with every symlinked parent (and the last component with ``follow_last``) followed;
        unchanged on a loop."""
        todo, hops, node, done = list(parts), 0, root, []
        while len(todo) > (0 if follow_last else 1):
            part = todo.pop(0)
            child = node.children.get(part)
            if child is not None and child.entry is not None and child.entry.type == "symlink":
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    return parts
                target = _join_link("/".join(done), child.entry.linkname, "/".join(todo))
                todo, node, done = target.split("/") if target else [], root, []
                if not todo and not follow_last:
                    return parts  # the link leads to the root itself: nothing to name
                continue
            done.append(part)
            node = child if child is not None else _Node()
        return done + todo

    def find(parts: list[str], create: bool) -> _Node | None:
        node = root
        for part in parts:
            nxt = node.children.get(part)
            if nxt is None:
                if not create:
                    return None
                nxt = node.children[part] = _Node()
            node = nxt
        return node

    for rows in _group_layers(layers_rows):
        keyed = [(canonical_path(r.path), r) for r in rows]
        for cpath, row in keyed:
            if row.whiteout is None:
                continue
            parts = cpath.split("/") if cpath else []
            if row.whiteout == "opaque":
                node = find(resolve(parts[:-1], follow_last=True), create=False)
                if node is not None:
                    node.children.clear()
            else:
                target = resolve(_whiteout_target(cpath, row.path).split("/"))
                parent = find(target[:-1], create=False)
                if parent is not None:
                    parent.children.pop(target[-1], None)
        for cpath, row in keyed:
            if row.whiteout is not None or not cpath or _is_aufs_meta(cpath):
                continue
            parts = resolve(cpath.split("/"))
            if parts != cpath.split("/"):
                row = replace(row, path="/".join(parts))
            if row.type == "hardlink" and row.content is None:
                source = find(resolve(canonical_path(row.linkname).split("/")), create=False)
                if source is not None and source.entry is not None and source.entry.content:
                    row = replace(row, content=source.entry.content)
            node = find(parts, create=True)
            assert node is not None
            if row.type != "dir":
                node.children.clear()
            node.entry = row

    out: list[Entry] = []

    def walk(node: _Node) -> None:
        for name in sorted(node.children):
            child = node.children[name]
            if child.entry is not None:
                out.append(child.entry)
            walk(child)

    walk(root)
    out.sort(key=lambda e: canonical_path(e.path))
    return out


# --------------------------------------------------------------------------------------------- diff
#: Attributes compared by :func:`diff` to call a path ``modified``.
DIFF_FIELDS: tuple[str, ...] = ("type", "size", "mode", "uid", "gid", "linkname", "mtime")


def diff(
    rows_a: Iterable[Entry], rows_b: Iterable[Entry], *, compare: Collection[str] = DIFF_FIELDS
) -> list[DiffRow]:
    """Compare two file lists (usually two :func:`merge` results) and return what changed, by path.

    A path only in ``rows_b`` is ``added``, only in ``rows_a`` ``removed``; present in both, it is
    ``modified`` when any attribute in ``compare`` differs (default: type, size, mode, uid, gid, linkname,
    mtime), or when both sides carry a content digest (``hash_files=True``) and they differ; pass ``compare=DIFF_FIELDS[:-1]`` to ignore mtimes of rebuilt images). Paths are matched by
    :func:`canonical_path`; if a side lists a path twice, its last row counts. Returns rows sorted by path.
    Raises ``ValueError`` for an unknown attribute name in ``compare``.
    """
    unknown = set(compare) - set(Entry.__dataclass_fields__) - {"path", "layer"}
    if unknown:
        raise ValueError(f"unknown Entry attributes in compare: {sorted(unknown)}")
    a = {canonical_path(r.path): r for r in rows_a}
    b = {canonical_path(r.path): r for r in rows_b}
    out: list[DiffRow] = []
    for path in sorted(a.keys() | b.keys()):
        ra, rb = a.get(path), b.get(path)
        if ra is None:
            assert rb is not None
            out.append(DiffRow(path, "added", None, rb.size, ""))
        elif rb is None:
            out.append(DiffRow(path, "removed", ra.size, None, ""))
        else:
            changed = [f for f in compare if getattr(ra, f) != getattr(rb, f)]
            if ra.content and rb.content and ra.content != rb.content:
                changed.append("content")  # listed with hash_files=True: same metadata, other bytes
            if changed:
                out.append(DiffRow(path, "modified", ra.size, rb.size, ",".join(changed)))
    return out


# ---------------------------------------------------------------------------------------- read_file
def _open_source(source: LayerSource, max_bytes: int | None) -> LayerStream:
    if callable(source) and not hasattr(source, "read"):
        source = source()
    return open_layer_stream(source, max_bytes=max_bytes)  # type: ignore[arg-type]


@dataclass
class _LayerIndex:
    """What one layer says about paths (canonical keys): entries, whiteouts, opaque dirs."""

    #: every entry of a path as ``(position in the tar, entry)``, in tar order (the last one wins)
    versions: dict[str, list[tuple[int, Entry]]] = field(default_factory=dict)
    whiteouts: set[str] = field(default_factory=set)  # paths removed from lower layers
    opaque: set[str] = field(default_factory=set)  # dirs whose lower contents are hidden
    captured: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # (position, file bytes) read

    def entry(self, path: str, before: int | None = None) -> tuple[int, Entry] | None:
        """``(position, entry)`` of the last entry for ``path`` (written before ``before`` if given)."""
        for position, entry in reversed(self.versions.get(path, ())):
            if before is None or position < before:
                return position, entry
        return None


def _read_capped(ti: tarfile.TarInfo, tf: _LayerTarFile, path: str, cap: int) -> bytes:
    """The content of regular file ``ti`` if its size (a sparse file's full size) is at most ``cap``.
    Memory stays at about the file's size (``BytesIO.getvalue`` hands over its buffer, no second copy).
    Raises :class:`ResponseTooLarge` naming ``path``."""
    if ti.size > cap:
        raise ResponseTooLarge(f"{path}: {ti.size} bytes, over the {cap}-byte cap on a file read "
                               f"(raise it with max_bytes= or {MAX_FILE_BYTES_ENV})")
    out = io.BytesIO()
    with _tar_errors():
        for chunk in _member_chunks(ti, tf):
            out.write(chunk)
    return out.getvalue()


def _scan_layer(stream: LayerStream, want: str, file_cap: int, before: int | None = None) -> _LayerIndex:
    """Index one layer, capturing the bytes of the last regular file ``want`` (before position ``before``).

    The layer is read to the end of its input (drained), so a digest checked while it streams is checked
    before anything read from it is used: :class:`~regexplore.errors.DigestMismatch` is raised here."""
    index = _LayerIndex()
    for position, (ti, tf) in enumerate(_members(stream, drain=True)):
        entry = _to_entry(ti, None)
        cpath = canonical_path(entry.path)
        if entry.whiteout == "opaque":
            index.opaque.add(cpath.rpartition("/")[0])
        elif entry.whiteout == "file":
            index.whiteouts.add(_whiteout_target(cpath, entry.path))
        else:
            index.versions.setdefault(cpath, []).append((position, entry))
            if cpath == want and ti.isreg() and (before is None or position < before):
                index.captured[cpath] = (position, _read_capped(ti, tf, want, file_cap))
    return index


def read_file(
    layers_newest_first: Sequence[LayerSource],
    path: str | bytes,
    *,
    follow_symlinks: bool = True,
    max_bytes: int | None = None,
    max_file_bytes: int | None = None,
) -> bytes:
    """Return the bytes of ``path`` in the image's final filesystem, opening as few layers as possible.

    ``layers_newest_first`` holds one :data:`LayerSource` per layer, **top layer first**; pass callables
    (``lambda: blobs.stream(digest)``) so a layer is only opened when it is needed. Layers are scanned from
    the top; the search stops at the first layer that has the path, whites it (or a parent) out, or makes
    a parent opaque. Symlinks (also in parent directories) are resolved inside the image root, like a
    chroot. A hardlink reads the file its target was when the hardlink's layer was applied (the tar
    extraction of layer.md's "Applying Changesets": the link shares that inode, so later layers that
    replace or white out the target path do not change it). Each layer is opened at most once per lookup,
    plus one re-open when a link leads to a file in a layer already scanned. Every layer opened is read to
    the end of its blob, so its digest is verified before any of its bytes are returned. Not seen here: what a layer does *through* a directory symlink of a lower layer (``a -> b``
    below; ``a/x``, ``a/.wh.x`` or ``a/.wh..wh..opq`` above: hand-made tars only, image builders write
    real paths) — :func:`merge` and :func:`extract`, which read every layer, apply it to ``b``.

    ``path`` is text, or the name's exact bytes (:func:`raw_path` of a name a table shows escaped).
    ``max_file_bytes`` caps the size of the file returned (it is held in memory; a sparse file counts
    with its holes); None: ``$REGEXPLORE_MAX_FILE_BYTES`` or :data:`DEFAULT_FILE_CAP` (64 MiB).
    ``max_bytes`` caps each layer's decompressed bytes, as in :func:`open_layer_stream`.

    Returns the file's bytes. Raises ``FileNotFoundError`` (absent or whited out), ``IsADirectoryError``,
    ``NotADirectoryError``, ``OSError`` (too many symlinks, special file), :class:`ResponseTooLarge`
    (over ``max_file_bytes``, before any of it is read), ``ValueError`` (a bad cap), plus what
    :func:`iter_entries` raises.
    """
    file_cap = max_file_bytes
    if file_cap is None:
        file_cap = _cap_from_env(MAX_FILE_BYTES_ENV, DEFAULT_FILE_CAP)
    if file_cap <= 0:
        raise ValueError(f"max_file_bytes must be positive, got {file_cap}")
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")  # as tar names are decoded
    sources = list(layers_newest_first)
    indexes: list[_LayerIndex | None] = [None] * len(sources)
    want = canonical_path(path)
    hops = 0
    # Where the lookup starts: the top layer, or after a hardlink the hardlink's own layer, seeing only
    # the entries written before the hardlink (``before``, a position in that layer's tar).
    start, before = 0, None

    def index_of(i: int, target: str) -> _LayerIndex:
        idx = indexes[i]
        if idx is None:
            idx = indexes[i] = _scan_layer(_open_source(sources[i], max_bytes), target, file_cap)
        return idx

    while True:
        parts = want.split("/") if want else []
        if not parts:
            raise IsADirectoryError(f"{path}: is the root directory")
        ancestors = ["/".join(parts[:k]) for k in range(1, len(parts))]
        redirect: str | None = None
        found: tuple[int, int, Entry] | None = None  # (layer, position in its tar, entry)
        for i in range(start, len(sources)):
            idx = index_of(i, want)
            limit = before if i == start else None  # in a hardlink's layer: what was there before it
            # A parent replaced by a non-directory in this layer (a symlink redirects the lookup).
            for k, anc in enumerate(ancestors):
                anc_hit = idx.entry(anc, limit)
                anc_entry = anc_hit[1] if anc_hit is not None else None
                if anc_entry is not None and anc_entry.type != "dir":
                    if anc_entry.type == "symlink":
                        redirect = _join_link(
                            anc.rpartition("/")[0], anc_entry.linkname, "/".join(parts[k + 1:])
                        )
                        break
                    raise NotADirectoryError(f"{path}: {anc} is not a directory in the image")
            if redirect is not None:
                break
            hit = idx.entry(want, limit)
            if hit is not None:
                found = (i, *hit)
                break
            hidden = want in idx.whiteouts or any(a in idx.whiteouts for a in ancestors)
            if hidden or any(a in idx.opaque for a in ["", *ancestors]):
                raise FileNotFoundError(f"{path}: removed by a whiteout in layer {i} (0 = top)")
        if redirect is None and found is None:
            raise FileNotFoundError(f"{path}: not in any layer")
        start, before = 0, None  # a symlink resolves in the final filesystem
        if found is not None:
            i, position, entry = found
            if entry.type == "file":
                idx = index_of(i, want)
                if idx.captured.get(want, (None,))[0] != position:  # scanned for another path: open once more
                    idx = _scan_layer(_open_source(sources[i], max_bytes), want, file_cap, position + 1)
                    indexes[i] = idx
                return idx.captured[want][1]
            if entry.type == "dir":
                raise IsADirectoryError(f"{path}: is a directory")
            if entry.type == "hardlink":
                redirect = canonical_path(entry.linkname)
                start, before = i, position
            elif entry.type == "symlink":
                if not follow_symlinks:
                    raise OSError(f"{path}: is a symlink to {entry.linkname!r} (follow_symlinks=False)")
                redirect = _join_link(want.rpartition("/")[0] if "/" in want else "", entry.linkname, "")
            else:
                raise OSError(f"{path}: is a special file (device or fifo)")
        hops += 1
        if hops > _MAX_SYMLINK_HOPS:
            raise OSError(f"{path}: too many levels of symbolic links")
        assert redirect is not None
        want = redirect


def _join_link(link_dir: str, target: str, rest: str) -> str:
    """Resolve ``target`` (a symlink found at ``link_dir/<name>``) plus ``rest`` lexically inside the image
    root: absolute targets start at the root, ``..`` stops at the root (chroot semantics)."""
    base = "/" if target.startswith("/") else "/" + link_dir
    joined = posixpath.normpath(posixpath.join(base, target, rest) if rest else posixpath.join(base, target))
    return canonical_path(joined)


# ------------------------------------------------------------------------------------------ extract
_FILE_KINDS = {"file", "dir", "symlink", "hardlink"}


class _Extractor:
    """Writes layers into ``root`` (a real, absolute directory), never outside it."""

    def __init__(
        self,
        root: str,
        *,
        absolute_links: str,
        devices: str,
        keep_mode_bits: int,
        on_entry: Callable[[Entry], None] | None,
    ) -> None:
        self.root = root
        self.absolute_links = absolute_links
        self.devices = devices
        self.keep_mode_bits = keep_mode_bits
        self.on_entry = on_entry
        self.summary = ExtractSummary()
        self.dir_meta: dict[str, tuple[int, float]] = {}  # real path -> (mode, mtime), applied at the end
        self.symlinks: dict[str, str] = {}  # real path of each symlink we created -> its target in the tar
        self.touched: set[str] = set()  # canonical paths written by the current layer
        self.touched_parents: set[str] = set()

    # -- path resolution ------------------------------------------------------------------------
    def resolve(self, parts: list[str], *, follow_last: bool, entry: str) -> str:
        """Real path for ``parts`` under root, following symlinks already on disk (absolute targets
        start at root). Raises UnsafeLayer if a ``..`` would climb above root or links loop."""
        todo = list(reversed(parts))
        cur: list[str] = []
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not cur:
                    raise UnsafeLayer(f"{entry}: path resolves outside the extraction folder", entry=entry)
                cur.pop()
                continue
            candidate = os.path.join(self.root, *cur, part)
            try:
                st = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                cur.append(part)
                continue
            if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise UnsafeLayer(f"{entry}: too many levels of symbolic links", entry=entry)
                target = os.readlink(candidate)
                if target.startswith("/"):
                    cur = []
                todo.extend(reversed(target.split("/")))
                continue
            cur.append(part)
        return os.path.join(self.root, *cur)

    def parent_dir(self, cparts: list[str], entry: str) -> str:
        """Resolve (and create) the parent directory of ``cparts``; returns its real path."""
        parent = self.resolve(cparts[:-1], follow_last=True, entry=entry)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        return parent

    # -- removal ----------------------------------------------------------------------------------
    @staticmethod
    def _remove(real: str) -> None:
        st = os.lstat(real)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(real, st.st_mode | 0o700)
            shutil.rmtree(real, onerror=_rmtree_fix_perms)
        else:
            os.unlink(real)

    def _prune(self, real: str, cpath: str) -> None:
        """Remove what is under directory ``real`` except what the current layer wrote."""
        for name in os.listdir(real):
            child_c = f"{cpath}/{name}" if cpath else name
            child = os.path.join(real, name)
            if child_c in self.touched or child_c in self.touched_parents:
                if os.path.isdir(child) and not os.path.islink(child):
                    self._prune(child, child_c)
            else:
                self._remove(child)

    def whiteout(self, cpath: str, kind: str, entry: str) -> None:
        parts = cpath.split("/")
        if kind == "opaque":
            dir_parts = parts[:-1]
            real = self.resolve(dir_parts, follow_last=True, entry=entry)  # "a/.wh..wh..opq", a -> b: clears b
            if os.path.isdir(real) and not os.path.islink(real):
                self._prune(real, "/".join(dir_parts))
        else:
            target_c = _whiteout_target(cpath, entry)
            target_parts = target_c.split("/")
            real = self.resolve(target_parts, follow_last=False, entry=entry)
            if os.path.lexists(real):
                if target_c in self.touched or target_c in self.touched_parents:
                    if os.path.isdir(real) and not os.path.islink(real):
                        self._prune(real, target_c)
                else:
                    self._remove(real)
        self.summary.whiteouts += 1

    # -- one member -------------------------------------------------------------------------------
    def member(self, ti: tarfile.TarInfo, tf: _LayerTarFile, layer: str | None) -> None:
        entry = _to_entry(ti, layer)
        name = ti.name
        if name.startswith("/"):
            raise UnsafeLayer(f"absolute path in layer: {name!r}", entry=name)
        raw_parts = name.split("/")
        if ".." in raw_parts:
            raise UnsafeLayer(f"'..' in layer path: {name!r}", entry=name)
        cpath = canonical_path(name)
        if not cpath:
            return  # the root itself ("./"): nothing to create
        if self.on_entry is not None:
            self.on_entry(entry)
        if _is_aufs_meta(cpath):
            self.summary.skipped.append(cpath)
            return
        if entry.whiteout is not None:
            self.whiteout(cpath, entry.whiteout, name)
            return
        if entry.type == "other":
            if self.devices == "skip":
                self.summary.skipped.append(cpath)
                return
            raise UnsafeLayer(f"device node or fifo in layer: {name!r}", entry=name)
        parts = cpath.split("/")
        parent = self.parent_dir(parts, name)
        real = os.path.join(parent, parts[-1])
        # What exists at the final component is replaced, never written through (it may be a symlink).
        if os.path.lexists(real):
            if not (entry.type == "dir" and os.path.isdir(real) and not os.path.islink(real)):
                self._remove(real)
        self.touched.add(cpath)
        for k in range(1, len(parts)):
            self.touched_parents.add("/".join(parts[:k]))

        if entry.type == "dir":
            os.makedirs(real, exist_ok=True)
            os.chmod(real, 0o700 | (entry.mode & self.keep_mode_bits))
            self.dir_meta[real] = (entry.mode & self.keep_mode_bits, entry.mtime)
            self.summary.dirs += 1
        elif entry.type == "file":
            self._write_file(real, tf, ti, entry)
        elif entry.type == "symlink":
            self._symlink(real, parts, entry.linkname, name)
            self.summary.symlinks += 1
        elif entry.type == "hardlink":
            self._hardlink(real, parts, entry.linkname, name)
            self.summary.hardlinks += 1

    def _write_file(self, real: str, tf: _LayerTarFile, ti: tarfile.TarInfo, entry: Entry) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(real, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in _member_chunks(ti, tf):
                out.write(chunk)
                self.summary.bytes_written += len(chunk)
        os.chmod(real, entry.mode & self.keep_mode_bits)
        os.utime(real, (entry.mtime, entry.mtime))
        self.summary.files += 1

    def _symlink(self, real: str, parts: list[str], target: str, name: str) -> None:
        """Make symlink ``real`` (archive path ``parts``) to ``target`` as the tar has it, rewritten or
        refused by ``absolute_links``. Raises UnsafeLayer when it would resolve outside root from there."""
        archived, link_dir = target, "/".join(parts[:-1])
        if target.startswith("/"):
            if self.absolute_links == "refuse":
                raise UnsafeLayer(f"absolute symlink {name!r} -> {target!r}", entry=name)
            if self.absolute_links == "relativize":
                inside = posixpath.normpath("/" + target.lstrip("/"))
                target = posixpath.relpath(inside, "/" + link_dir) if link_dir else inside.lstrip("/") or "."
        # The target, resolved from the link's folder over what is on disk, must stay inside root.
        check = target.split("/") if target.startswith("/") else [*parts[:-1], *target.split("/")]
        self.resolve(check, follow_last=True, entry=name)
        os.symlink(target, real)
        self.symlinks[real] = archived

    def _hardlink(self, real: str, parts: list[str], linkname: str, name: str) -> None:
        """Hard-link ``real`` to the existing non-directory ``linkname``. A hard link to a symlink shares
        its text, which may resolve elsewhere from another folder: it is made as a symlink with the same
        target as in the archive, checked (and rewritten) at its own place."""
        if linkname.startswith("/") or ".." in linkname.split("/"):
            raise UnsafeLayer(f"hardlink {name!r} points outside the layer: {linkname!r}", entry=name)
        target_parts = canonical_path(linkname).split("/")
        if target_parts == [""]:
            raise UnsafeLayer(f"hardlink {name!r} to the root", entry=name)
        source = self.resolve(target_parts, follow_last=False, entry=name)
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise UnsafeLayer(f"hardlink {name!r} to missing {linkname!r}", entry=name) from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"hardlink {name!r} to a directory {linkname!r}", entry=name)
        if stat.S_ISLNK(st.st_mode):
            self._symlink(real, parts, self.symlinks.get(source) or os.readlink(source), name)
            return
        os.link(source, real, follow_symlinks=False)

    def new_layer(self) -> None:
        self.touched = set()
        self.touched_parents = set()

    def finish(self) -> None:
        """Check every symlink still resolves inside root from where it lies (later layers may have changed
        what its target passes through), then apply directory modes and mtimes."""
        for real in self.symlinks:
            if not os.path.islink(real):
                continue  # removed by a later layer
            where = os.path.relpath(real, self.root).replace(os.sep, "/")
            try:
                self.resolve(where.split("/"), follow_last=True, entry=where)
            except UnsafeLayer:
                os.unlink(real)
                raise
        for real in sorted(self.dir_meta, key=len, reverse=True):
            mode, mtime = self.dir_meta[real]
            # a later layer may have turned a parent into a symlink: chmod/utime would follow it
            if os.path.realpath(real) == real and os.path.isdir(real):
                os.utime(real, (mtime, mtime))
                os.chmod(real, mode)


def _rmtree_fix_perms(func: Any, path: str, _exc: Any) -> None:
    parent = os.path.dirname(path)
    os.chmod(parent, os.lstat(parent).st_mode | 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, os.lstat(path).st_mode | 0o700)
    func(path)


def extract(
    layers_in_order: Iterable[LayerSource | tuple[str, LayerSource]],
    dest: str | os.PathLike[str],
    *,
    absolute_links: Literal["relativize", "refuse", "keep"] = "relativize",
    devices: Literal["refuse", "skip"] = "refuse",
    keep_mode_bits: int = 0o777,
    max_bytes: int | None = None,
    on_entry: Callable[[Entry], None] | None = None,
) -> ExtractSummary:
    """Extract an image's layers (base first) into ``dest``, applying whiteouts; nothing is written outside.

    Each item is a :data:`LayerSource` or a ``(layer_name, source)`` pair (the name is passed to
    ``on_entry`` rows). Every member is checked by this function, not by tarfile's filters:

    * absolute names and names with a ``..`` component → :class:`UnsafeLayer`;
    * parent directories are resolved over what is already on disk, following earlier symlinks; a
      resolution that climbs above ``dest`` → :class:`UnsafeLayer`;
    * whatever sits at the final path is removed first and files are created with ``O_EXCL|O_NOFOLLOW``,
      so nothing is written through a symlink or into a hardlinked inode;
    * symlinks whose target resolves outside ``dest`` → :class:`UnsafeLayer`; absolute targets are
      rewritten relative to the link (``"relativize"``, default; the tree stays self-contained),
      refused (``"refuse"``) or kept verbatim (``"keep"``: safe for this function, but the link points
      outside ``dest`` for other tools); all links are re-checked after the last layer;
    * hardlinks must name an existing non-directory inside ``dest`` → else :class:`UnsafeLayer`; a hard
      link to a symlink is made as a symlink with the archive's target, checked at its own place (the
      same text can lead elsewhere from another folder); every symlink is re-checked where it lies;
    * device nodes and fifos → :class:`UnsafeLayer` (or skipped with ``devices="skip"``);
    * ownership is not changed; modes are masked with ``keep_mode_bits`` (setuid/setgid/sticky dropped
      by default); directory modes and mtimes are set at the end.

    Returns an :class:`ExtractSummary`. Raises :class:`UnsafeLayer` naming the entry (``.entry``), plus
    what :func:`iter_entries` raises. On error, what was extracted so far stays in ``dest``.
    """
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    ex = _Extractor(
        root, absolute_links=absolute_links, devices=devices, keep_mode_bits=keep_mode_bits, on_entry=on_entry
    )
    for item in layers_in_order:
        layer_name: str | None = None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (str, type(None))):
            layer_name, item = item
        stream = _open_source(item, max_bytes)
        ex.new_layer()
        for ti, tf in _members(stream, drain=True):
            with _tar_errors():
                ex.member(ti, tf, layer_name)
    ex.finish()
    return ex.summary

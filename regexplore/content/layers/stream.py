"""Decompression: compressed layer bytes (gzip, zstd or plain tar) as a capped stream of the tar.

Nothing seeks and nothing is spooled to disk. Raises :class:`~regexplore.errors.UnsafeLayer` past the
decompressed-bytes cap, :class:`~regexplore.errors.UnsupportedMediaType` for other compressions and
encrypted layers, :class:`~regexplore.errors.RegistryError` for corrupt or truncated compressed data.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import zstandard

from ... import _env
from ...errors import RegistryError, UnsafeLayer, UnsupportedMediaType

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

#: Default cap on decompressed bytes per layer (8 GiB); override per call or with the env var below.
DEFAULT_CAP = 8 * 1024**3
#: Environment variable holding the default decompressed-bytes cap, in bytes.
MAX_LAYER_BYTES_ENV = "REGEXPLORE_MAX_LAYER_BYTES"
#: Default cap on the size of one file returned by :func:`read_file` (64 MiB): it is held in memory.
DEFAULT_FILE_CAP = 64 * 1024**2
#: Environment variable holding the default cap of :func:`read_file`, in bytes.
MAX_FILE_BYTES_ENV = "REGEXPLORE_MAX_FILE_BYTES"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHER_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x04\x22\x4d\x18": "lz4"}
_CHUNK = 256 * 1024
#: compressed bytes per read of a file-like input (fewer, larger reads: ISA-L inflates big blocks fastest)
_INPUT_READ = 1024 * 1024

#: A layer to read: compressed byte chunks, a binary file-like object, or a zero-argument callable
#: returning either (opened lazily, only if the layer is needed).
LayerSource = Iterable[bytes] | IO[bytes] | Callable[[], Iterable[bytes] | IO[bytes]]

__all__ = [
    "DEFAULT_CAP",
    "DEFAULT_FILE_CAP",
    "GZIP_BACKEND",
    "MAX_FILE_BYTES_ENV",
    "MAX_LAYER_BYTES_ENV",
    "LayerSource",
    "LayerStream",
    "open_layer_stream",
]


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

    def wrap_chunks(self, wrap: Callable[[Iterator[bytes]], Iterator[bytes]]) -> None:
        """Read the input chunks through ``wrap(chunks)`` from now on (a file-like input is left as is)."""
        if self._chunks is not None:
            self._chunks = wrap(self._chunks)

    def _pull(self) -> bytes:
        try:
            return self._pull_unguarded()
        except BaseException as exc:
            self.error = exc
            raise

    def _pull_unguarded(self) -> bytes:
        if self._fileobj is not None:
            data = self._fileobj.read(_INPUT_READ)
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

    def wrap_input(self, wrap: Callable[[Iterator[bytes]], Iterator[bytes]]) -> None:
        """Read the compressed input through ``wrap(chunks)`` when it is an iterator of chunks (a streaming
        download): how :mod:`.listing` reads it in a thread of its own."""
        self._source.wrap_chunks(wrap)

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
                raise self._source.error from None
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
        buf = bytearray(_INPUT_READ)
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


def _open_source(source: LayerSource, max_bytes: int | None) -> LayerStream:
    """Open ``source`` (calling it first when it is a zero-argument callable) with :func:`open_layer_stream`;
    returns the :class:`LayerStream` and raises what that raises."""
    if callable(source) and not hasattr(source, "read"):
        source = source()
    return open_layer_stream(source, max_bytes=max_bytes)  # type: ignore[arg-type]



"""Listing a layer: :func:`iter_entries`, a fast tar header scanner fed by a decompressing worker thread."""

from __future__ import annotations

import contextvars
import io
import queue
import struct
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from ...errors import UnsupportedMediaType
from .rows import Entry
from .stream import LayerStream, open_layer_stream
from .tarinfo import (
    _content_digest,
    _entry_of,
    _GuardedTarInfo,
    _members,
    _MetadataBudget,
    _RawMember,
    _tar_errors,
    _to_entry,
)

# ------------------------------------------------------------------------------------- fast listing
# Listing needs only the headers, so iter_entries does not go through TarFile: the decompression runs in
# a worker thread and a download's chunks (network, sha256) are read in another (isal, zstandard and hashlib
# release the GIL, so the three overlap with the parsing), and the headers are read straight out of the
# decompressed chunks. The hot path parses plain ustar/GNU headers itself; every other header (pax, GNU
# long names, sparse files, anything malformed, and every member once a global pax header was seen) goes
# through tarfile's own TarInfo code, and the end-of-archive and error rules are TarFile.next()'s, so the
# result is exactly what tarfile stream mode lists.
# tests/test_layers_pure.py checks that on the test layers and on mutated headers.

_BLOCK = tarfile.BLOCKSIZE
#: name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s")
_FAST_TYPES = frozenset([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE,
                         tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE])
_GNU_LONG = frozenset([tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
_DATA_TYPES = frozenset(tarfile.REGULAR_TYPES)  # members whose data follows the header (of _FAST_TYPES)
_PREFETCH_CHUNK = 1024 * 1024
_PREFETCH_DEPTH = 8  # chunks between the decompressing thread and the parser (8 MiB)
# Per read: ISA-L inflates into a large buffer much faster than into small ones, and each read is a return
# to Python that waits for the parser to hand over the GIL; but a read that fails loses what it had decoded
# (the bytes before an error are listed up to the last whole read).
_PREFETCH_READ = 256 * 1024
_CAPTURE_TYPES = frozenset([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE])  # plain file data follows



class _Producer:
    """A producer thread feeding a bounded queue (:data:`_PREFETCH_DEPTH` items) that the caller iterates:
    items in order, the producer's error raised where it happened, end at ``_EOF``. ``_start`` runs
    ``self._run`` in the caller's context (its call deadline, regexplore.http.deadline, holds there too);
    ``close()`` stops the thread and waits for it."""

    _EOF = object()

    def _start(self, name: str) -> None:
        self._q: queue.Queue[Any] = queue.Queue(_PREFETCH_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), name=name,
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the producer is told to stop."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._q.get()
            if item is self._EOF:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # a producer blocked on a full queue: empty it until it sees the stop
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)


class _InputAhead(_Producer):
    """The compressed input chunks (a streaming download, hashed as it goes) read in a thread of their own into
    a bounded queue (:data:`_PREFETCH_DEPTH` chunks), so the network and the hash overlap with the
    decompression instead of adding to it. Iterating yields the chunks in order and raises the input's
    error where it happened; ``close()`` stops the thread and closes the input."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._start("regexplore-layer-input")

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put(chunk):
                    return
            self._put(self._EOF)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            self._put(exc)
        finally:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()  # a download stopped early hands its connection back now


class _Prefetch(_Producer):
    """Read a :class:`LayerStream` to its end in a worker thread, into a bounded queue of chunks.

    Decompression runs in the worker, and an input given as chunks (a streaming download hashing as it goes)
    is read in a thread of its own (:class:`_InputAhead`); iterating yields the decompressed chunks in order
    (``bytearray`` s of :data:`_PREFETCH_CHUNK` bytes, the last one shorter), and an error of the stream is
    raised in the consumer where it happened. A consumer done with a chunk may hand it back with ``release``
    to be filled again: fresh megabyte buffers cost page faults, reused ones do not. ``close()`` stops the
    worker and the input thread (the input is not read further).
    """

    def __init__(self, stream: LayerStream) -> None:
        self._stream = stream
        self._input: _InputAhead | None = None
        stream.wrap_input(self._read_ahead)
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._start("regexplore-layer")  # resumes made in it keep the caller's call deadline

    def _read_ahead(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        self._input = _InputAhead(chunks)
        return iter(self._input)

    def release(self, chunk: bytes | bytearray) -> None:
        if type(chunk) is bytearray and len(chunk) == _PREFETCH_CHUNK and self._free.qsize() < _PREFETCH_DEPTH:
            self._free.put(chunk)

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
                    read = self._stream.readinto
                    while filled < _PREFETCH_CHUNK and (n := read(view[filled:filled + _PREFETCH_READ])):
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

    def close(self) -> None:
        super().close()
        if self._input is not None:
            self._input.close()


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


class MemberData:
    """The data of the regular file the scanner is positioned at, for a capture hook (:func:`_scan_tar`):
    forward-only reads bounded to the member's ``size``; whatever the hook leaves unread is skipped.
    Reads raise ``tarfile.ReadError`` when the tar ends inside the file."""

    __slots__ = ("_data", "_end", "_start", "size")

    def __init__(self, data: _TarBytes, size: int) -> None:
        self._data, self.size = data, size
        self._start = data.tell()
        self._end = self._start + size

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes from the current position, not consumed (fewer at the end of the file)."""
        d = self._data
        n = min(n, self._end - d.tell())
        d.ensure(n)
        return bytes(d.buf[d.pos:d.pos + n])

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes of the file (fewer at its end), gathered chunk by chunk (no regrowing copy)."""
        d = self._data
        n = min(n, self._end - d.tell())
        parts = []
        while n > 0:
            if d.pos >= len(d.buf) and not d.ensure(1):
                raise tarfile.ReadError("unexpected end of data")
            piece = d.buf[d.pos:d.pos + n]
            d.pos += len(piece)
            n -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def seek(self, offset: int) -> None:
        """Move forward to ``offset`` bytes into the file (at most its end); backwards raises ValueError."""
        target = self._start + min(offset, self.size)
        if target < self._data.tell():
            raise ValueError("member data is read forward only")
        if not self._data.skip_to(target):
            raise tarfile.ReadError("unexpected end of data")


#: a capture hook: called with each regular file's member while the scanner is at its data
Capture = Callable[[_RawMember, MemberData], None]


class _TarShim:
    """What TarInfo.fromtarfile() uses of a TarFile: the file, the next header's offset, the encoding,
    the global pax headers, and what :class:`_GuardedTarInfo` uses: the layer's metadata budget."""

    def __init__(self, fileobj: _TarBytes) -> None:
        self.fileobj = fileobj
        self.offset = 0
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}
        self.metadata = _MetadataBudget()


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


def _offer(capture: Capture, member: _RawMember, data: _TarBytes, shim: _TarShim) -> None:
    """Call ``capture`` for a regular file whose plain data (its size, padded, up to the next header) is
    next; a sparse member's stored data is not its content and is not offered."""
    if member[1] in _CAPTURE_TYPES and shim.offset == data.tell() + -(-member[2] // _BLOCK) * _BLOCK:
        capture(member, MemberData(data, member[2]))


def _scan_tar(data: _TarBytes, capture: Capture | None = None) -> Iterator[_RawMember]:
    """The members of a tar, in order, as tarfile stream mode reads them (see the section comment); each
    is offered to ``capture`` first (:func:`_offer`: how the inside-an-image pass reads file contents).

    Raises ``tarfile.ReadError`` / ``tarfile.StreamError`` where ``TarFile.next()`` does, and
    :class:`UnsafeLayer` for tar metadata over the layer's budget (:class:`_MetadataBudget`).
    """
    shim = _TarShim(data)
    unpack, adler32 = _HEADER.unpack_from, zlib.adler32
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
                    int(devmajor.rstrip(b"\0 ") or b"0", 8), int(devminor.rstrip(b"\0 ") or b"0", 8)
                except ValueError:
                    n_chksum = -1
                # the byte sum, checksum field as spaces; each half sums to < 65521: adler32's low word - 1
                total = (adler32(buf[p:p + 256]) & 0xFFFF) + (adler32(buf[p + 256:p + _BLOCK]) & 0xFFFF) - 2
                if n_chksum == total - sum(chksum) + 256 and n_size >= 0:
                    data.pos = p + _BLOCK
                    if kind in _GNU_LONG:  # TarInfo._proc_gnulong: the outermost long name/link wins
                        shim.metadata.header(kind, n_size, name.partition(b"\0")[0].decode(encoding, errors))
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
                        shim.metadata.member()
                    if capture is not None:
                        _offer(capture, member, data, shim)
                    yield member
                    continue
        member = _tarfile_member(shim, chained)
        if member is None:
            return
        if chained:
            member = _with_long_names(member, long_name, long_link)
            chained, long_name, long_link = False, None, None
        if capture is not None:
            _offer(capture, member, data, shim)
        yield member


def _list_members(stream: LayerStream, *, drain: bool, threaded: bool,
                  capture: Capture | None = None) -> Iterator[_RawMember]:
    """Members of the tar in ``stream`` (see :func:`_scan_tar`, which calls ``capture``), with
    :func:`_members`' error mapping; with ``threaded`` the stream is decompressed (and its input read)
    in a worker thread."""
    prefetch = _Prefetch(stream) if threaded else None
    if prefetch is not None:
        data = _TarBytes(prefetch, prefetch.release)
    else:
        data = _TarBytes(iter(lambda: stream.read(_PREFETCH_CHUNK), b""))
    try:
        members = _scan_tar(data, capture)
        try:
            first = next(members, None)
        except tarfile.ReadError as exc:
            if data.eof and data.base + len(data.buf) == 0:
                return  # an empty blob (or compressed nothing): an empty layer
            raise UnsupportedMediaType(f"layer is not a tar archive ({stream.compression}): {exc}") from exc
        if first is not None:
            yield first
            with _tar_errors():
                yield from members
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



"""Reading members with ``tarfile`` (stream mode), guarded: tar metadata held at once is capped (pax / GNU
long-name members, global pax headers, chains of extended headers), so are sparse maps, and a corrupt
header after the first member is an error. Used where member data is read (extract,
read_file, ``hash_files``); the listing has its own fast header scanner (:mod:`.listing`)."""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Iterator
from typing import Any

from ...errors import RegistryError, UnsafeLayer, UnsupportedMediaType
from .names import _tar_path, _whiteout_kind
from .rows import Entry, EntryType
from .stream import _CHUNK, LayerStream

__all__ = ["MAX_METADATA_CHAIN", "MAX_METADATA_MEMBER", "MAX_SPARSE_ENTRIES"]

#: Most tar metadata bytes a layer's reader holds at once (see :class:`_MetadataBudget`): one pax /
#: GNU long-name member, or all global pax headers plus the extended headers before one member.
MAX_METADATA_MEMBER = 16 * 1024**2
#: Most extended headers (pax x/g, GNU long name/link) in a row before a member: tarfile reads each one
#: a recursion level deeper. Honest archives have a few (a global header, a pax header, two long names).
MAX_METADATA_CHAIN = 16
#: Most data extents one sparse file's map may list (each costs about 100 bytes of memory).
MAX_SPARSE_ENTRIES = 65536

_EXTENDED = frozenset([tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                       tarfile.SOLARIS_XHDTYPE])


class _MetadataBudget:
    """The tar metadata one layer's reader holds in memory, counted before it is read.

    Global pax headers stay for the rest of the layer (tarfile keeps them all in one dict); the chain of
    extended headers before a member (pax, GNU long names, old-GNU sparse extension blocks) stays until
    that member is read. Together they may hold :data:`MAX_METADATA_MEMBER` bytes, and a chain may have
    :data:`MAX_METADATA_CHAIN` headers. Both tar readers (tarfile's and the fast lister) count here.
    """

    def __init__(self) -> None:
        self.kept = 0  # bytes of all global pax headers so far
        self.chain = 0  # bytes of the extended headers before the next member
        self.links = 0  # extended headers before the next member

    def header(self, kind: bytes, size: int, name: str) -> None:
        """Count extended header ``name`` of tar type ``kind`` holding ``size`` bytes.

        Raises :class:`UnsafeLayer` (naming it) when it alone is over :data:`MAX_METADATA_MEMBER`, when
        it makes the chain longer than :data:`MAX_METADATA_CHAIN` or the held bytes more than the cap.
        """
        if size > MAX_METADATA_MEMBER:
            raise UnsafeLayer(f"tar metadata member of {size} bytes (over {MAX_METADATA_MEMBER})", entry=name)
        self.links += 1
        if self.links > MAX_METADATA_CHAIN:
            raise UnsafeLayer(f"more than {MAX_METADATA_CHAIN} tar extended headers in a row (a chain that "
                              "tarfile would follow one recursion level each)", entry=name)
        if kind == tarfile.XGLTYPE:
            self.kept += size
        else:
            self.chain += size
        self._check("tar metadata", name)

    def sparse_block(self, name: str) -> None:
        """Count one old-GNU sparse extension block of member ``name``; raises like :meth:`header`."""
        self.chain += tarfile.BLOCKSIZE
        self._check(f"sparse file {name!r}: extension headers", name)

    def member(self) -> None:
        """The chain ended in a member: its headers are no longer held."""
        self.chain = self.links = 0

    def _check(self, what: str, name: str) -> None:
        if self.kept + self.chain > MAX_METADATA_MEMBER:
            raise UnsafeLayer(f"{what} over {MAX_METADATA_MEMBER} bytes (global pax headers and the extended "
                              "headers before one member count together)", entry=name)


def _budget_of(reader: Any) -> _MetadataBudget:
    """The :class:`_MetadataBudget` of ``reader`` (a TarFile, or the lister's shim), as its ``metadata``
    attribute, made on first use (so one per layer)."""
    budget = getattr(reader, "metadata", None)
    if budget is None:
        budget = reader.metadata = _MetadataBudget()
    return budget


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses tar metadata over the reader's :class:`_MetadataBudget` before tarfile reads it, and
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

    def _proc_member(self, tarfile_: Any) -> tarfile.TarInfo:  # type: ignore[override]
        """Count an extended header in the reader's :class:`_MetadataBudget` before tarfile reads it and
        the rest of its chain; a member ends the chain."""
        budget = _budget_of(tarfile_)
        if self.type in _EXTENDED:
            budget.header(self.type, self.size, self.name)
        try:
            ti = super()._proc_member(tarfile_)  # type: ignore[misc]
        except tarfile.SubsequentHeaderError as exc:
            # A pax global header (type g) describes the members after it and may be followed by the
            # end-of-archive marker (an empty pax archive, `git archive` of an empty tree): that is the
            # end of the archive, not a broken one (POSIX pax; GNU tar and bsdtar read it so).
            if self.type == tarfile.XGLTYPE and isinstance(exc.__context__, tarfile.EOFHeaderError):
                raise exc.__context__ from None
            raise
        if self.type not in _EXTENDED:
            budget.member()
        return ti

    # GNU sparse maps, in tarfile's four encodings, capped before they are built (tarfile reads any number
    # of extension blocks or map lines into a list of tuples: gigabytes from a small gzip'd layer).
    def _proc_sparse(self, tarfile_: Any) -> tarfile.TarInfo:  # type: ignore[override]
        """Old GNU format (type ``S``): up to 4 extents in the header, 21 per extension block."""
        structs, isextended, origsize = self._sparse_structs  # type: ignore[attr-defined]
        del self._sparse_structs  # type: ignore[attr-defined]
        while isextended:
            _budget_of(tarfile_).sparse_block(self.name)
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


#: the kind of an :class:`Entry` by tar type (anything else is ``other``: devices, fifos)
_KINDS: dict[bytes, EntryType] = {
    **{t: "file" for t in tarfile.REGULAR_TYPES}, tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}
#: (name, type, size, mode, uid, gid, mtime, linkname) of one member, as TarInfo has them
_RawMember = tuple[str, bytes, int, int, int, int, int | float, str]


def _entry_of(m: _RawMember, layer: str | None, content: str | None = None) -> Entry:
    """The :class:`Entry` of member ``m`` of ``layer`` (the one place a tar member becomes a row)."""
    path = _tar_path(m[0])
    return Entry(layer, path, _KINDS.get(m[1], "other"), int(m[2]), int(m[3]) & 0o7777, int(m[4]), int(m[5]),
                 float(m[6]), m[7] or "", _whiteout_kind(path), content)


def _to_entry(ti: tarfile.TarInfo, layer: str | None, content: str | None = None) -> Entry:
    """The :class:`Entry` of ``ti`` (see :func:`_entry_of`)."""
    return _entry_of((ti.name, ti.type, ti.size, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname), layer, content)


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
            with _tar_errors():
                ti = tf.next()
            if ti is None:
                break
            tf.members.clear()  # stream mode never needs them; keeps memory flat for huge layers
            yield ti, tf
    if drain:
        stream.drain()



"""The three rpm database formats, each read from its bytes into header blobs (../shared/docs/inside.md
A.3, A.3.2; go-rpmdb ``pkg/rpmdb.go`` picks the format by magic in the same order): sqlite
(``rpmdb.sqlite``), NDB (``Packages.db``, SUSE) and BerkeleyDB hash (``Packages``).

Every walk over on-disk structures is bounded by the file: pages by ``last_pgno`` and the file size, an
overflow chain by one visited set for the whole file (an overflow page belongs to one value) and the item's
declared length, slots by the slot pages and one owner per blob block. So each byte is read once, however
many items or slots name it (sharing would make the work quadratic in the file). A lie raises
:class:`~.bounds.Malformed`.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator

from .bounds import Malformed, need

__all__ = ["blobs", "sqlite_blobs", "ndb_blobs", "bdb_blobs"]

SQLITE_MAGIC = b"SQLite format 3\0"
NDB_MAGIC = b"RpmP"


def blobs(data: bytes) -> Iterator[bytes]:
    """The header blobs of an rpm database in any of the three formats, chosen by magic.

    Raises :class:`Malformed` for an unknown format or a broken file."""
    if data.startswith(SQLITE_MAGIC):
        return sqlite_blobs(data)
    if data.startswith(NDB_MAGIC):
        return ndb_blobs(data)
    return bdb_blobs(data)


def sqlite_blobs(data: bytes) -> Iterator[bytes]:
    """``SELECT blob FROM Packages`` on the database deserialized in memory (no temp file, read-only).

    rpm leaves its database in WAL mode, which an in-memory database cannot open: the header's two
    journal-mode bytes are set back to the rollback journal (the ``-wal`` file, not kept, is ignored, as
    syft ignores it too). sqlite's own corruption checks raise ``sqlite3.DatabaseError``."""
    image = bytearray(data)
    if len(image) >= 20 and image[18:20] == b"\x02\x02":
        image[18:20] = b"\x01\x01"
    con = sqlite3.connect(":memory:")
    con.text_factory = bytes  # a TEXT-typed blob must not fail to decode
    try:
        con.deserialize(bytes(image))
        con.execute("PRAGMA query_only = ON")
        rows = con.execute("SELECT blob FROM Packages").fetchall()
    except UnicodeDecodeError as exc:
        raise Malformed(f"rpmdb.sqlite: undecodable text in its schema ({exc.reason})") from None
    finally:
        con.close()
    for (blob,) in rows:
        need(isinstance(blob, bytes), f"rpmdb.sqlite: a Packages blob is {type(blob).__name__}, not bytes")
        yield blob


_NDB_HEAD = struct.Struct("<4sIII")
_NDB_SLOT = struct.Struct("<4sIII")
_NDB_BLOB = struct.Struct("<4sIII")
_NDB_PAGE = 4096
_NDB_BLOCK = 16


def ndb_blobs(data: bytes) -> Iterator[bytes]:
    """The blobs of an NDB ``Packages.db``: slot pages after the 32-byte header (two slots' room), each
    used slot ``{'Slot', pkgIndex, blkOffset, blkCount}`` pointing at a blob ``{'BlbS', pkgIndex, checksum,
    len}`` at ``blkOffset * 16``, which must fit in the slot's blocks and in the file, in blocks no other
    slot's blob uses (raises :class:`Malformed` on an overlap)."""
    need(len(data) >= 32, "NDB Packages.db shorter than its 32-byte header")
    magic, version, _generation, slot_pages = _NDB_HEAD.unpack_from(data)
    need(version == 0, f"NDB version {version} (only 0 exists)")
    need(0 < slot_pages and slot_pages * _NDB_PAGE <= len(data),
         f"NDB header: {slot_pages} slot pages do not fit in {len(data)} bytes")
    owned = bytearray(len(data) // _NDB_BLOCK + 1)  # 1 per block holding a blob already yielded
    for offset in range(32, slot_pages * _NDB_PAGE, _NDB_SLOT.size):
        slot_magic, index, block, blocks = _NDB_SLOT.unpack_from(data, offset)
        need(slot_magic == b"Slot", f"NDB slot at {offset}: magic {slot_magic!r}")
        if index == 0:
            continue
        start, end = block * _NDB_BLOCK, (block + blocks) * _NDB_BLOCK
        need(_NDB_BLOB.size <= end - start and end <= len(data),
             f"NDB package {index}: blocks {block}+{blocks} outside the {len(data)}-byte file")
        blob_magic, blob_index, _checksum, length = _NDB_BLOB.unpack_from(data, start)
        need(blob_magic == b"BlbS" and blob_index == index,
             f"NDB package {index}: blob at {start} has magic {blob_magic!r}, index {blob_index}")
        need(start + _NDB_BLOB.size + length <= end, f"NDB package {index}: blob of {length} bytes overruns its blocks")
        first, last = block, (start + _NDB_BLOB.size + length + _NDB_BLOCK - 1) // _NDB_BLOCK
        need(owned.find(1, first, last) < 0, f"NDB package {index}: blob at {start} overlaps another package's")
        owned[first:last] = b"\1" * (last - first)
        yield data[start + _NDB_BLOB.size:start + _NDB_BLOB.size + length]


_BDB_HASH_MAGIC = 0x00061561
_BDB_HASH_META, _BDB_HASH, _BDB_HASH_UNSORTED, _BDB_OVERFLOW = 8, 13, 2, 7
_BDB_OFFPAGE = 3
_PAGE_HEAD = 26


def bdb_blobs(data: bytes) -> Iterator[bytes]:
    """The blobs of a BerkeleyDB hash ``Packages``: every hash page from 1 to ``last_pgno`` (bounded by
    the file), every second item (the values), off-page items only (as go-rpmdb: on-page values are not
    rpm headers), each overflow chain followed with the file's visited set and the declared length as bounds."""
    need(len(data) >= 512, f"BerkeleyDB file of {len(data)} bytes: shorter than a metadata page")
    order = _bdb_order(data)
    page_size, page_type = struct.unpack_from(order + "I", data, 20)[0], data[25]
    need(page_size in {1 << n for n in range(9, 17)}, f"BerkeleyDB page size {page_size}: not a power of 2 in 512..64K")
    need(data[24] == 0, "BerkeleyDB file is encrypted")
    need(page_type == _BDB_HASH_META, f"BerkeleyDB page 0 has type {page_type}: not a hash database")
    last = struct.unpack_from(order + "I", data, 32)[0]
    pages = min(last + 1, len(data) // page_size)
    seen: set[int] = set()  # overflow pages already read, by any chain
    for pgno in range(1, pages):
        page = data[pgno * page_size:(pgno + 1) * page_size]
        if page[25] not in (_BDB_HASH, _BDB_HASH_UNSORTED):
            continue
        for pointer in _offpage_values(page, order, pgno):
            yield _overflow_chain(data, page_size, pages, order, *pointer, seen)


def _bdb_order(data: bytes) -> str:
    """``"<"`` or ``">"``: the byte order the metadata page's magic reads right in."""
    for order in "<>":
        if struct.unpack_from(order + "I", data, 12)[0] == _BDB_HASH_MAGIC:
            return order
    raise Malformed("not an rpm database: no sqlite, NDB or BerkeleyDB hash magic")


def _offpage_values(page: bytes, order: str, pgno: int) -> Iterator[tuple[int, int]]:
    """``(first overflow page, total length)`` of each off-page value item on a hash page."""
    entries = struct.unpack_from(order + "H", page, 20)[0]
    need(_PAGE_HEAD + 2 * entries <= len(page), f"BerkeleyDB page {pgno}: {entries} entries overrun the page")
    offsets = struct.unpack_from(f"{order}{entries}H", page, _PAGE_HEAD)
    for item in offsets[1::2]:
        need(item + 12 <= len(page), f"BerkeleyDB page {pgno}: item at {item} overruns the page")
        if page[item] == _BDB_OFFPAGE:
            yield struct.unpack_from(order + "II", page, item + 4)


def _overflow_chain(data: bytes, page_size: int, pages: int, order: str, pgno: int, length: int,
                    seen: set[int]) -> bytes:
    """The value stored across the overflow pages from ``pgno``, adding them to ``seen`` (the pages every
    chain read so far used); a chain that loops, reaches a page in ``seen`` (shared with another value),
    leaves the file or outgrows the item's declared ``length`` raises :class:`Malformed`."""
    out = bytearray()
    while pgno != 0:
        need(0 < pgno < pages, f"BerkeleyDB overflow chain reaches page {pgno} outside 1..{pages - 1}")
        need(pgno not in seen, f"BerkeleyDB overflow chain loops back to page {pgno} (or shares it with another value)")
        seen.add(pgno)
        page = data[pgno * page_size:(pgno + 1) * page_size]
        need(page[25] == _BDB_OVERFLOW, f"BerkeleyDB overflow chain reaches page {pgno} of type {page[25]}")
        next_pgno = struct.unpack_from(order + "I", page, 16)[0]
        used = struct.unpack_from(order + "H", page, 22)[0] if next_pgno == 0 else page_size - _PAGE_HEAD
        need(_PAGE_HEAD + used <= page_size, f"BerkeleyDB overflow page {pgno}: {used} bytes overrun the page")
        out += page[_PAGE_HEAD:_PAGE_HEAD + used]
        need(len(out) <= length, f"BerkeleyDB overflow chain from page {pgno} outgrows its {length} bytes")
        pgno = next_pgno
    return bytes(out)

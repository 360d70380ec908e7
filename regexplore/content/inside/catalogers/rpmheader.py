"""The RPM header blob: the record every rpm database (sqlite, BerkeleyDB, NDB) stores per package
(../shared/docs/inside.md A.3.1, go-rpmdb ``pkg/entry.go``).

Layout (all big-endian): ``il`` (index entries), ``dl`` (data store size), ``il`` 16-byte entries
``{tag, type, offset, count}``, then ``dl`` bytes of data. Everything is bounds-checked against the blob:
``il``/``dl`` limits, every value inside the store, counts capped by what the store can hold, strings
NUL-terminated inside the store, and the region trailer of entry 0. Values are decoded on demand, only for
the tags a package needs.
"""

from __future__ import annotations

import struct

from .bounds import need

__all__ = ["Header", "NAME", "VERSION", "RELEASE", "EPOCH", "LICENSE", "ARCH", "SOURCERPM", "SIZE", "VENDOR"]

NAME, VERSION, RELEASE, EPOCH, SIZE, VENDOR, LICENSE, ARCH, SOURCERPM = (
    1000, 1001, 1002, 1003, 1009, 1011, 1014, 1022, 1044)
#: rpm's own limits (lib/header_internal.h: HEADER_TAGS_MAX, HEADER_DATA_MAX)
MAX_ENTRIES = 0xFFFF
MAX_DATA = 256 * 1024 * 1024
REGION_TAGS = (61, 62, 63)
_STRING, _BIN, _STRING_ARRAY, _I18NSTRING = 6, 7, 8, 9
_INT_SIZES = {2: 1, 3: 2, 4: 4, 5: 8}  # INT8, INT16, INT32, INT64
_ENTRY = struct.Struct(">iIiI")


class Header:
    """One parsed header blob. ``Header(blob)`` raises :class:`Malformed` when the index or the region
    trailer lies; ``string``/``strings``/``int`` raise it when one value does."""

    def __init__(self, blob: bytes) -> None:
        need(len(blob) >= 8, f"rpm header of {len(blob)} bytes: shorter than its 8-byte preamble")
        il, dl = struct.unpack_from(">ii", blob)
        need(0 < il <= MAX_ENTRIES, f"rpm header index count {il} outside 1..{MAX_ENTRIES}")
        need(0 <= dl <= MAX_DATA, f"rpm header data size {dl} outside 0..{MAX_DATA}")
        start = 8 + 16 * il
        need(start + dl <= len(blob),
             f"rpm header truncated: il={il}, dl={dl} need {start + dl} bytes, the blob has {len(blob)}")
        self._store = bytes(blob[start:start + dl])
        self._index: dict[int, tuple[int, int, int]] = {}
        for i in range(il):
            tag, typ, offset, count = _ENTRY.unpack_from(blob, 8 + 16 * i)
            if i == 0 and tag in REGION_TAGS:
                self._check_region(il, tag, typ, offset, count)
                continue
            need(0 <= offset < dl or (offset == dl and count == 0),
                 f"rpm tag {tag}: offset {offset} outside the {dl}-byte data store")
            self._index[tag] = (typ, offset, count)  # a later (dribble) entry replaces an earlier one

    def _check_region(self, il: int, tag: int, typ: int, offset: int, count: int) -> None:
        """Entry 0 is a region tag: its 16-byte trailer must sit in the store and count 1..il entries."""
        need(typ == _BIN and count == 16, f"rpm region tag {tag}: type {typ}, count {count} (want BIN, 16)")
        need(0 <= offset <= len(self._store) - 16, f"rpm region trailer at {offset} outside the data store")
        t_tag, _, t_offset, _ = _ENTRY.unpack_from(self._store, offset)
        need(t_tag == tag, f"rpm region trailer tag {t_tag} does not repeat region tag {tag}")
        need(t_offset < 0 and -t_offset % 16 == 0 and 1 <= -t_offset // 16 <= il,
             f"rpm region trailer offset {t_offset}: not -16 x 1..{il}")

    def _slot(self, tag: int, types: tuple[int, ...]) -> tuple[int, int, int] | None:
        entry = self._index.get(tag)
        if entry is None:
            return None
        need(entry[0] in types, f"rpm tag {tag} has type {entry[0]}, expected one of {types}")
        return entry

    def _cstrings(self, offset: int, count: int, tag: int) -> list[str]:
        """``count`` NUL-terminated strings from ``offset``, each ending inside the store."""
        store = self._store
        need(0 <= count <= len(store) - offset, f"rpm tag {tag}: {count} strings cannot fit in the store")
        out = []
        for _ in range(count):
            end = store.find(b"\0", offset)
            need(end >= 0, f"rpm tag {tag}: string at {offset} is not NUL-terminated inside the store")
            out.append(store[offset:end].decode("utf-8", "replace"))
            offset = end + 1
        return out

    def string(self, tag: int) -> str | None:
        """The STRING (or first I18N string) value of ``tag``, or None when the header lacks it."""
        slot = self._slot(tag, (_STRING, _I18NSTRING, _STRING_ARRAY))
        if slot is None:
            return None
        typ, offset, count = slot
        need(count >= 1, f"rpm tag {tag}: string with count {count}")
        return self._cstrings(offset, 1, tag)[0]

    def strings(self, tag: int) -> list[str]:
        """The STRING_ARRAY value of ``tag`` (empty when the header lacks it)."""
        slot = self._slot(tag, (_STRING_ARRAY, _I18NSTRING, _STRING))
        return [] if slot is None else self._cstrings(slot[1], slot[2], tag)

    def integer(self, tag: int) -> int | None:
        """The first integer of ``tag`` (INT8/16/32/64, big-endian, unsigned), or None when absent."""
        slot = self._slot(tag, tuple(_INT_SIZES))
        if slot is None:
            return None
        typ, offset, count = slot
        size = _INT_SIZES[typ]
        need(count >= 1 and offset + size <= len(self._store), f"rpm tag {tag}: integer outside the store")
        return int.from_bytes(self._store[offset:offset + size], "big")

"""rpm databases whose items share one overflow chain (BerkeleyDB) or one blob (NDB) are read in time linear
in the file (review H3, H4): before, every item re-read the shared bytes (x2 file -> x4 time, hours at the
256 MiB cap). Each attack runs in a bounded child: a regression fails, never hangs."""

from __future__ import annotations

import struct
from pathlib import Path

from regexplore.content.inside.catalogers import rpmdb
from tests.support.servers.bounded import run_bounded

_BDB_PAGE = 512


def shared_chain_bdb(hash_pages: int, overflow_pages: int) -> bytes:
    """A little-endian BerkeleyDB hash file whose every value slot, on every hash page, is one off-page
    item naming the same overflow chain of ``overflow_pages`` pages."""
    pages = 1 + hash_pages + overflow_pages
    data = bytearray(_BDB_PAGE * pages)
    struct.pack_into("<I", data, 12, 0x00061561)
    struct.pack_into("<I", data, 20, _BDB_PAGE)
    data[25] = 8  # hash metadata
    struct.pack_into("<I", data, 32, pages - 1)
    entries = (_BDB_PAGE - 26 - 12) // 2 // 2 * 2
    item = 26 + 2 * entries
    for pgno in range(1, 1 + hash_pages):
        at = pgno * _BDB_PAGE
        data[at + 25] = 13  # hash page
        struct.pack_into("<H", data, at + 20, entries)
        struct.pack_into(f"<{entries}H", data, at + 26, *[item] * entries)
        data[at + item] = 3  # off-page item
        struct.pack_into("<II", data, at + item + 4, 1 + hash_pages, 1 << 31)
    for i in range(overflow_pages):
        pgno = 1 + hash_pages + i
        data[pgno * _BDB_PAGE + 25] = 7  # overflow page
        struct.pack_into("<I", data, pgno * _BDB_PAGE + 16, pgno + 1 if i < overflow_pages - 1 else 0)
        struct.pack_into("<H", data, pgno * _BDB_PAGE + 22, 100)
    return bytes(data)


def shared_blob_ndb(slot_pages: int, blob_len: int) -> bytes:
    """An NDB ``Packages.db`` whose every slot names the same blob of ``blob_len`` bytes."""
    start = slot_pages * 4096
    total = start + 16 + blob_len + (-(start + 16 + blob_len)) % 16
    data = bytearray(total)
    struct.pack_into("<4sIII", data, 0, b"RpmP", 0, 0, slot_pages)
    struct.pack_into("<4sIII", data, start, b"BlbS", 1, 0, blob_len)
    for offset in range(32, start, 16):
        struct.pack_into("<4sIII", data, offset, b"Slot", 1, start // 16, (total - start) // 16)
    return bytes(data)


def _read_bounded(tmp_path: Path, name: str, data: bytes) -> dict:
    """rpm.read of ``data`` as the file ``name`` in a bounded child: seconds, packages, skipped reasons."""
    (tmp_path / "db").write_bytes(data)
    res = run_bounded(f"""
        import time
        from regexplore.content.inside.catalogers import rpm
        data = open({str(tmp_path / "db")!r}, "rb").read()
        start = time.perf_counter()
        ev = rpm.read({name!r}, data)
        result = {{"seconds": time.perf_counter() - start, "packages": len(ev.packages),
                   "skipped": [s.reason for s in ev.skipped]}}
    """, timeout=30, memory_mb=1500)
    assert res.ok, res.output
    return res.value


def test_shared_overflow_chain_is_read_once(tmp_path: Path) -> None:
    """1 MiB of hash pages all naming one chain (the O(file^2) walk took ~3 min at this size)."""
    data = shared_chain_bdb(1024, 1024)
    got = _read_bounded(tmp_path, "var/lib/rpm/Packages", data)
    assert len(data) >= 1 << 20 and got["seconds"] < 1, got
    assert got["packages"] == 0 and len(got["skipped"]) <= 2, got
    assert "or shares it with another value" in got["skipped"][-1], got


def test_shared_ndb_blob_is_read_once(tmp_path: Path) -> None:
    """A 16 MiB Packages.db whose 4,350 slots name one 16 MiB blob (x4 time per x2 size: 1.6 s at 9 MiB before)."""
    got = _read_bounded(tmp_path, "var/lib/rpm/Packages.db", shared_blob_ndb(17, 16 << 20))
    assert got["seconds"] < 1, got
    assert got["packages"] == 0 and len(got["skipped"]) <= 2, got
    assert "overlaps another package's" in got["skipped"][-1], got


def test_ndb_blobs_in_their_own_blocks_are_all_read() -> None:
    """Non-overlapping blobs, back to back, are all yielded (the ownership check refuses only sharing)."""
    start = 4096
    data = bytearray(start + 3 * 32)
    struct.pack_into("<4sIII", data, 0, b"RpmP", 0, 0, 1)
    for offset in range(32, start, 16):
        struct.pack_into("<4sIII", data, offset, b"Slot", 0, 0, 0)
    for i in range(3):
        struct.pack_into("<4sIII", data, 32 + 16 * i, b"Slot", i + 1, start // 16 + 2 * i, 2)
        struct.pack_into("<4sIII", data, start + 32 * i, b"BlbS", i + 1, 0, 16)
        data[start + 32 * i + 16:start + 32 * i + 32] = bytes([i + 65]) * 16
    assert list(rpmdb.ndb_blobs(bytes(data))) == [b"A" * 16, b"B" * 16, b"C" * 16]

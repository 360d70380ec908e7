"""The one pass per layer (content/inside/scan.py): the listing equals iter_entries, catalogers get the
bytes they asked for (whole, sniffed, located region), and bad files are skipped with a reason, never
raised out of the pass."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import struct
import tarfile
from pathlib import Path

import inside_images
import pytest
from inside_binary import DIVE_BINARY, build_rpmdb, debian_jars
from layerkit import build_layer, compress, gzip_bomb, info, raw_tar
from servers.bounded import run_bounded

from regexplore.content.inside.catalogers import golang
from regexplore.content.inside.model import Cataloger, Evidence, Package
from regexplore.content.inside.scan import default_catalogers, scan_layer
from regexplore.content.layers import iter_entries, open_layer_stream
from regexplore.errors import UnsafeLayer

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def scan(blob, catalogers, **kw):
    return scan_layer(open_layer_stream(iter([blob]), GZ, **kw), "sha256:l", catalogers)


def echo(name, wants, **kw):
    """A cataloger recording the bytes it was given as one package's version."""
    def read(path, data):
        return Evidence(packages=(Package(name, data.hex(), "deb", path),))
    return Cataloger(name, "deb", wants, read, **kw)


def test_entries_equal_iter_entries_and_whole_files_are_read():
    blob, _ = build_layer({"var/lib/dpkg/status": b"status", "a/b": b"x" * 5000}, dirs=["a"],
                          symlinks={"l": "a/b"}, whiteouts=["gone"])
    s = scan(blob, [echo("dpkg", lambda p, m, n: "whole" if p == "var/lib/dpkg/status" else None)])
    assert s.entries == list(iter_entries(iter([blob]), "sha256:l", media_type=GZ))
    [ev] = s.evidence["var/lib/dpkg/status"]
    assert ev.packages[0].version == b"status".hex()
    assert set(s.evidence) == {"var/lib/dpkg/status"} and s.skipped == []


def test_sniff_and_region_read_only_the_located_bytes():
    elf = b"\x7fELF" + bytes(range(256)) * 40
    blob, _ = build_layer({"bin/go": elf, "bin/script": b"#!/bin/sh\n" + bytes(20000)})
    seen = []

    def wants(p, m, n):
        seen.append(p)
        return "region"

    go = echo("go", wants, sniff=b"\x7fELF", locate=lambda head: (head.index(b"\x10\x11"), 4))
    s = scan(blob, [go])
    assert seen == ["bin/go"]  # the sniff is checked before wants
    assert s.evidence["bin/go"][0].packages[0].version == b"\x10\x11\x12\x13".hex()


def test_a_raising_cataloger_and_a_file_over_cap_are_skipped_with_reasons(caplog):
    blob, _ = build_layer({"x/bad": b"boom", "x/huge": b"h" * 2000, "x/good": b"ok"})

    def read(path, data):
        if path == "x/bad":
            raise ValueError("malformed stanza")
        return Evidence(packages=(Package(path, "1", "deb", path),))

    c = Cataloger("t", "deb", lambda p, m, n: "whole" if p.startswith("x/") else None, read, cap=1000)
    with caplog.at_level(logging.INFO, logger="regexplore.inside"):
        s = scan(blob, [c])
    reasons = {k.path: k.reason for k in s.skipped}
    assert "malformed stanza" in reasons["x/bad"] and "ValueError" in reasons["x/bad"]
    assert "2000 bytes, over the 1000-byte cap" in reasons["x/huge"]
    assert list(s.evidence) == ["x/good"]
    assert "x/bad" in caplog.text and "x/huge" in caplog.text


def test_a_gzip_bomb_layer_still_hits_the_layer_cap():
    c = Cataloger("all", "deb", lambda p, m, n: "whole", lambda p, d: Evidence(), cap=1 << 40)
    with pytest.raises(UnsafeLayer):
        scan(gzip_bomb(64 * 1024 * 1024), [c], max_bytes=16 * 1024 * 1024)


# ----------------------------------------------------------------- the real catalogers' dispatch (hints)
def unhinted(c: Cataloger) -> Cataloger:
    """``c`` asked about every file: no name/folder/suffix hints, no minimum size."""
    return dataclasses.replace(c, names=frozenset(), folders=frozenset(), suffixes=frozenset(), min_size=0)


def recording(c: Cataloger, asked: list) -> Cataloger:
    """``c`` with its ``wants`` calls appended to ``asked`` as ``(cataloger, path)``."""
    def wants(path, mode, size):
        asked.append((c.name, path))
        return c.wants(path, mode, size)
    return dataclasses.replace(c, wants=wants)


JUNK = [f"srv/junk/f{i}.txt" for i in range(300)]


@pytest.fixture(scope="module")
def real_layer(tmp_path_factory) -> bytes:
    """A layer of this machine's real content for every cataloger, at the paths (and odd spellings: upper-case
    and bare ``.jar``, a ``status.d`` stanza, an ``.egg-info`` file) their rules name, plus files nothing wants
    and a small ELF."""
    jar = next(iter(debian_jars().values()))
    root = build_rpmdb(tmp_path_factory.mktemp("rpm") / "build")
    stanza = inside_images.dpkg_stanzas()[0]
    metadata = next(iter(inside_images.dist_infos().values()))
    files = {
        "var/lib/dpkg/status": inside_images.DPKG_STATUS.read_bytes(),
        "var/lib/dpkg/status.d/one": stanza,
        **inside_images.copyright_files(["libc6", "bash", "coreutils", "gzip"]),
        **inside_images.dist_infos(),
        "usr/lib/python3.11/site-packages/old_thing.egg-info": metadata,
        **inside_images.npm_package_jsons(),
        **{f"opt/app/{name}": data for name, data in debian_jars().items()},
        "opt/app/SHOUT.JAR": jar, "opt/app/.jar": jar,
        "var/lib/rpm/rpmdb.sqlite": (root / "var/lib/rpm/rpmdb.sqlite").read_bytes(),
        "usr/bin/dive": DIVE_BINARY.read_bytes(), "usr/bin/true": Path("/usr/bin/true").read_bytes(),
        "usr/lib/os-release": inside_images.DEBIAN_12,
        **{path: b"nothing to see\n" for path in JUNK},
    }
    return build_layer(files)[0]


def test_the_hints_hide_no_file_a_real_cataloger_wants(real_layer):
    asked: list = []
    hinted = scan(real_layer, [recording(c, asked) for c in default_catalogers()])
    everything = scan(real_layer, [unhinted(c) for c in default_catalogers()])
    assert hinted.evidence == everything.evidence and hinted.skipped == everything.skipped
    found = {p.type for evs in hinted.evidence.values() for ev in evs for p in ev.packages}
    assert found == {"deb", "python", "npm", "java-archive", "rpm", "go-module"}
    facts = {k for evs in hinted.evidence.values() for ev in evs for k, _ in ev.facts}
    assert {"copyright_of", "release_file"} <= facts
    assert {"opt/app/SHOUT.JAR", "opt/app/.jar", "var/lib/dpkg/status.d/one",
            "usr/lib/python3.11/site-packages/old_thing.egg-info"} <= set(hinted.evidence)
    # a file no hint names costs no wants() call; nor does an ELF under golang's MIN_SIZE
    assert not {path for _, path in asked} & {*JUNK, "usr/bin/true"}


def test_a_suffix_hint_must_be_one_lower_case_extension():
    for bad in ("jar", ".JAR", ".tar.gz"):
        with pytest.raises(ValueError, match="lower-case '.ext'"):
            Cataloger("x", "deb", lambda p, m, n: None, lambda p, d: Evidence(), suffixes=frozenset({bad}))


# ------------------------------------------------------------------------------- a 1 GiB layer, flat memory
MiB = 1024 * 1024


def zero_layer(out: Path, files: list[tuple[str, int, dict[int, bytes]]]) -> int:
    """Write a gzip layer to ``out`` whose tar holds ``files`` ``(name, size, {offset: bytes})``: zeros but
    for the given bytes. Concatenated gzip members, a MiB of zeros compressed once and repeated, so a GiB
    costs a MB and no time. Returns the tar's size."""
    zero_mib = gzip.compress(bytes(MiB), 9, mtime=0)
    total = 0
    with open(out, "wb") as f:
        def put(data: bytes) -> None:
            f.write(gzip.compress(data, 6, mtime=0))

        def zeros(n: int) -> None:
            f.write(zero_mib * (n // MiB))
            put(bytes(n % MiB))

        for name, size, patches in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = size, 0o755
            put(ti.tobuf(tarfile.USTAR_FORMAT))
            pos = 0
            for offset, data in sorted(patches.items()):
                zeros(offset - pos)
                put(data)
                pos = offset + len(data)
            zeros(size - pos + -size % 512)
            total += 512 + size + -size % 512
        zeros(1024)
    return total + 1024


def elf_with_a_data_segment(offset: int, filesz: int) -> bytes:
    """An ELF64 header and one writable, non-executable PT_LOAD segment at ``offset`` (golang locates it)."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    return header + struct.pack("<IIQQQQQQ", 1, 6, offset, 0, 0, filesz, filesz, 4096)


def test_a_1_gib_layer_is_scanned_in_flat_memory(tmp_path):
    """About 1 GiB decompressed: big files nothing wants, files over their cataloger's cap (a 100 MiB jar,
    a 20 MiB METADATA), files read whole under it (a 7 MiB METADATA, a 3 MiB copyright) and a 100 MiB ELF
    whose data segment, 64 MiB in, holds dive's real Go build info. In a child under a 1 GiB address-space
    limit: the layer is read once, its peak RSS grows by less than 100 MB, the caps hold, the region is found."""
    dive = DIVE_BINARY.read_bytes()
    where = golang.locate(dive[:4096])
    assert where is not None
    region = dive[where[0]:where[0] + where[1]]
    metadata = b"Metadata-Version: 2.1\nName: big\nVersion: 1.0\n\n"
    files = [(f"opt/zeros/{i}.bin", 64 * MiB, {}) for i in range(13)] + [
        ("opt/app/huge.jar", 100 * MiB, {0: b"PK\x03\x04"}),
        ("usr/lib/python3/dist-packages/huge-2.0.dist-info/METADATA", 20 * MiB, {0: metadata}),
        ("usr/lib/python3/dist-packages/big-1.0.dist-info/METADATA", 7 * MiB, {0: metadata}),
        ("usr/share/doc/big/copyright", 3 * MiB, {0: b"License: MIT\n"}),
        ("usr/bin/big", 100 * MiB, {0: elf_with_a_data_segment(64 * MiB, len(region)), 64 * MiB: region}),
    ]
    layer = tmp_path / "big.tar.gz"
    tar_size = zero_layer(layer, files)
    assert tar_size > 1024 * MiB and layer.stat().st_size < 4 * MiB
    res = run_bounded("""
        import os
        from regexplore.content.layers import open_layer_stream
        from regexplore.content.inside.scan import default_catalogers, scan_layer

        catalogers = default_catalogers()
        before = int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmRSS:")).split()[1]) / 1024
        with open(os.environ["LAYER"], "rb") as f:
            s = scan_layer(open_layer_stream(f, "application/vnd.oci.image.layer.v1.tar+gzip"), "sha256:x",
                           catalogers)
        result = {"before": before, "bytes_out": s.bytes_out, "entries": len(s.entries),
                  "skipped": {k.path: k.reason for k in s.skipped},
                  "packages": sorted({(p.type, p.name, p.version, p.path) for evs in s.evidence.values()
                                      for ev in evs for p in ev.packages}),
                  "facts": {path: [dict(ev.facts) for ev in evs] for path, evs in s.evidence.items()}}
    """, env={"LAYER": str(layer)}, timeout=90, memory_mb=1024)
    assert res.ok, res.output
    got = res.value
    assert got["bytes_out"] == tar_size and got["entries"] == len(files)
    assert res.peak_rss_mb - got["before"] < 100, (res.peak_rss_mb, got["before"])
    assert set(got["skipped"]) == {"opt/app/huge.jar", "usr/lib/python3/dist-packages/huge-2.0.dist-info/METADATA"}
    assert all("over the" in reason for reason in got["skipped"].values())
    packages = {tuple(p) for p in got["packages"]}
    go = {(name, version) for kind, name, version, path in packages if kind == "go-module"}
    assert ("github.com/wagoodman/dive", "v0.13.1+dirty") in go and len(go) > 10
    assert ("python", "big", "1.0", "usr/lib/python3/dist-packages/big-1.0.dist-info/METADATA") in packages
    assert got["facts"]["usr/share/doc/big/copyright"] == [{"copyright_of": "big", "licenses": ["MIT"]}]


def test_a_path_listed_twice_keeps_the_evidence_of_its_last_version():
    status = [info("var/lib/dpkg/status", size=2) for _ in range(3)]
    tar = raw_tar([(status[0], b"v1"), (info("usr/bin/go", size=70000), b"\x7fELF" + bytes(69996)),
                   (status[1], b"v2"), (info("usr/bin/go", size=3), b"tiny"[:3]), (status[2], b"v3")])
    blob = compress(tar, "gzip")
    elf = echo("elf", lambda p, m, n: "whole", sniff=b"\x7fELF", min_size=65536)
    s = scan(blob, [echo("dpkg", lambda p, m, n: "whole" if p == "var/lib/dpkg/status" else None), elf])
    assert [p.version for ev in s.evidence["var/lib/dpkg/status"] for p in ev.packages] == [b"v3".hex()]
    assert "usr/bin/go" not in s.evidence  # its last version is not an ELF anymore

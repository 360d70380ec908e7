"""The one pass per layer (content/inside/scan.py): the listing equals iter_entries, catalogers get the
bytes they asked for (whole, sniffed, located region), and bad files are skipped with a reason, never
raised out of the pass."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import inside_images
import pytest
from inside_binary import DIVE_BINARY, build_rpmdb, debian_jars
from layerkit import build_layer, gzip_bomb

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

"""The one pass per layer (content/inside/scan.py): the listing equals iter_entries, catalogers get the
bytes they asked for (whole, sniffed, located region), and bad files are skipped with a reason, never
raised out of the pass."""

from __future__ import annotations

import logging

import pytest
from layerkit import build_layer, gzip_bomb

from regexplore.content.inside.model import Cataloger, Evidence, Package
from regexplore.content.inside.scan import scan_layer
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

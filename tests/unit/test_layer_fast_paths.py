"""The shortcuts of the layer pass give what the plain definitions give: ``canonical_path`` and the whiteout
kind on seeded random names, and the ``files`` frame built column-wise (typed columns) equals the one
``make_frame`` builds from row dicts, on entries with odd names, numbers and times."""

from __future__ import annotations

import math
import random

import pandas as pd
import pandas.testing as pdt

from regexplore._image_layers import files_columns
from regexplore.content.layers import Entry, canonical_path, shown_name
from regexplore.content.layers.names import _whiteout_kind
from regexplore.model.frames import make_frame

ALPHABET = ["/", ".", "..", "a", "b", ".wh.", ".wh..wh..opq", ".wh..wh.plnk", "é", "\udce9"]


def _names(seed: int, n: int) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 7))) for _ in range(n)]


def test_canonical_path_equals_its_definition() -> None:
    for name in [*_names(1, 50_000), "", ".", "/", "./", "a/./b", "a//b", "/a/", "a/.", "..", "a/../b"]:
        assert canonical_path(name) == "/".join(p for p in name.split("/") if p not in ("", ".")), name


def test_whiteout_kind_equals_its_definition() -> None:
    def kind(path: str) -> str | None:
        base = path.rsplit("/", 1)[-1]
        if base == ".wh..wh..opq":
            return "opaque"
        return "file" if base.startswith(".wh.") and not base.startswith(".wh..wh.") else None

    for name in _names(2, 50_000):
        assert _whiteout_kind(name) == kind(name), name


def _time(seconds: float) -> pd.Timestamp | None:
    """UTC, to the microsecond; None outside pandas' range (or NaN)."""
    return pd.Timestamp(round(seconds * 1e6), unit="us", tz="UTC") if abs(seconds) < 9.2e9 else None


def test_files_columns_equal_the_row_wise_frame() -> None:
    entries = [
        Entry("sha256:" + "a" * 64, "usr/bin/x", "file", 10, 0o755, 0, 0, 1_700_000_000.25, "", None),
        Entry(None, "caf\udce9/na\\x80me", "symlink", 0, 0o777, 2**40, 7, -1.5, "t\\\udcff", None),
        Entry("l", "a/.wh.b", "file", 2**62, 0o4755, 65534, 65534, math.nan, "", "file"),
        Entry("l", "d/.wh..wh..opq", "file", 0, 0, 0, 0, 1e12, "", "opaque"),
        Entry("l", "dir", "dir", 0, 0o1777, 0, 0, 0.0, "", None),
        Entry("l", "h", "hardlink", 0, 0o644, 1, 2, 3.0, "usr/bin/x", None),
    ]
    rows = [{"layer": e.layer, "path": shown_name(e.path), "type": e.type, "size": e.size, "mode": e.mode,
             "uid": e.uid, "gid": e.gid, "mtime": _time(e.mtime),
             "linkname": shown_name(e.linkname) if e.linkname else None, "whiteout": e.whiteout} for e in entries]
    by_rows = make_frame("files", rows)
    pdt.assert_frame_equal(make_frame("files", columns=files_columns(entries)), by_rows)
    pdt.assert_frame_equal(make_frame("files", columns=files_columns([])), make_frame("files", []))

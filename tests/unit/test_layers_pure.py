"""regexplore.content.layers: streaming listing, merge, diff, read_file and safe extraction (no network)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from layerkit import (
    build_layer,
    chunked,
    compress,
    gzip_bomb,
    info,
    raw_tar,
    sha256_digest,
    zstd_bomb,
)

from regexplore.content import layers as L
from regexplore.errors import RegistryError, UnsafeLayer, UnsupportedMediaType

FIXTURE_LAYER = Path(__file__).resolve().parents[3] / "shared/fixtures/tarsum" / (
    "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457/layer.tar"
)
COMPRESSIONS = ["gzip", "zstd", "none"]


# ------------------------------------------------------------------------------ tar -tv as an oracle
_TV = re.compile(
    r"^(?P<perm>\S{10}) (?P<uid>\d+)/(?P<gid>\d+)\s+(?P<size>[\d,]+) "
    r"(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (?P<rest>.*)$"
)
_KIND = {"-": "file", "d": "dir", "l": "symlink", "h": "hardlink", "c": "other", "b": "other", "p": "other"}


def _perm_bits(perm: str) -> int:
    bits = 0
    for ch, bit in zip(perm[1:], (0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 4, 2, 1)):
        if ch in "rwxst":
            bits |= bit
    special = {3: 0o4000, 6: 0o2000, 9: 0o1000}
    for pos, bit in special.items():
        if perm[pos] in "sStT":
            bits |= bit
    return bits


def tar_tv(path: Path) -> list[tuple]:
    """The member list according to GNU tar, normalised by layers' documented path rule."""
    out = subprocess.run(
        ["tar", "--numeric-owner", "--full-time", "--utc", "--quoting-style=literal", "-tvf", str(path)],
        check=True, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"},
    ).stdout.decode("utf-8")
    rows = []
    for line in out.splitlines():
        m = _TV.match(line)
        assert m, line
        kind = _KIND[m["perm"][0]]
        rest, link = m["rest"], ""
        if kind == "symlink":
            rest, link = rest.split(" -> ", 1)
        elif kind == "hardlink":
            rest, link = rest.split(" link to ", 1)
        when = datetime.fromisoformat(m["date"]).replace(tzinfo=UTC).timestamp()
        size = 0 if kind == "other" else int(m["size"])
        rows.append((L._tar_path(rest), kind, size, _perm_bits(m["perm"]), int(m["uid"]), int(m["gid"]),
                     int(when), link))
    return rows


def ours(rows: list[L.Entry]) -> list[tuple]:
    return [(r.path, r.type, 0 if r.type == "other" else r.size, r.mode, r.uid, r.gid, int(r.mtime), r.linkname)
            for r in rows]


def _kit_layer(compression: str, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    long_dir = "deep/" + "d" * 120
    blob, _ = build_layer(
        {"etc/hostname": b"box\n", f"{long_dir}/{'f' * 130}.txt": b"long name", "café/naïve": b"utf8",
         "bin/su": b"\x7fELF"},
        dirs=["etc", "deep", long_dir, "café", "bin"],
        symlinks={"etc/localtime": "/usr/share/zoneinfo/UTC", f"{long_dir}/ln": "../" + "t" * 110},
        hardlinks={"etc/hostname.bak": "etc/hostname"},
        whiteouts=["var/cache"], opaque=["opt"], modes={"bin/su": 0o4755, "etc": 0o1777},
        compression=compression, format=fmt,  # type: ignore[arg-type]
    )
    return blob


def _cli_layer(tmp_path: Path, compression: str) -> Path:
    """A layer written by GNU tar from a real directory (GNU long names), compressed by the CLIs."""
    tree = tmp_path / "tree"
    (tree / ("x" * 140)).mkdir(parents=True)
    (tree / ("x" * 140) / ("y" * 120)).write_bytes(b"deep")
    (tree / "etc").mkdir()
    (tree / "etc" / "passwd").write_text("root:x:0:0\n")
    os.chmod(tree / "etc" / "passwd", 0o640)
    os.symlink("passwd", tree / "etc" / "pw")
    os.link(tree / "etc" / "passwd", tree / "etc" / "passwd.hard")
    tar = tmp_path / "layer.tar"
    subprocess.run(["tar", "--format=gnu", "--numeric-owner", "-cf", str(tar), "-C", str(tree), "."], check=True)
    if compression == "gzip":
        subprocess.run(["gzip", "-n", str(tar)], check=True)
        return tmp_path / "layer.tar.gz"
    if compression == "zstd":
        subprocess.run(["zstd", "-q", "--rm", str(tar)], check=True)
        return tmp_path / "layer.tar.zst"
    return tar


# -------------------------------------------------------------------------------------------- listing
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_listing_of_built_layer_equals_tar_tv(tmp_path: Path, compression: str, fmt: int) -> None:
    blob = _kit_layer(compression, fmt)
    f = tmp_path / "layer"
    f.write_bytes(blob)
    rows = list(L.iter_entries(chunked(blob, 97), layer="sha256:x"))
    assert ours(rows) == tar_tv(f)
    assert {r.layer for r in rows} == {"sha256:x"}
    assert any(len(r.path) > 250 for r in rows)  # long names came through
    by_path = {r.path: r for r in rows}
    assert by_path["bin/su"].mode == 0o4755 and by_path["etc"].mode == 0o1777
    assert by_path["var/.wh.cache"].whiteout == "file"
    assert by_path["opt/.wh..wh..opq"].whiteout == "opaque"
    assert by_path["etc/hostname"].whiteout is None


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_listing_of_cli_made_layer_equals_tar_tv(tmp_path: Path, compression: str) -> None:
    path = _cli_layer(tmp_path, compression)
    with open(path, "rb") as fh:
        stream = L.open_layer_stream(fh, "application/vnd.oci.image.layer.v1.tar")  # hint is wrong on purpose
        rows = list(L.iter_entries(stream))
        assert stream.compression == compression
        assert stream.bytes_in == path.stat().st_size  # drained to the end of the blob
    assert ours(rows) == tar_tv(path)
    assert rows[0].path == "."  # GNU tar wrote "./"
    assert {r.type for r in rows} == {"dir", "file", "symlink", "hardlink"}


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_listing_of_real_docker_layer_equals_tar_tv(tmp_path: Path, compression: str) -> None:
    blob = compress(FIXTURE_LAYER.read_bytes(), compression)  # type: ignore[arg-type]
    f = tmp_path / "layer"
    f.write_bytes(blob)
    rows = list(L.iter_entries(io.BytesIO(blob)))
    assert ours(rows) == tar_tv(f)
    assert len(rows) == 9 and {"dev/core", "etc/sudoers"} <= {r.path for r in rows}


def test_input_is_consumed_to_the_end_so_a_streaming_hash_covers_the_blob() -> None:
    blob, _ = build_layer({"a": b"x" * 5000}, compression="gzip")
    seen = hashlib.sha256()

    def response() -> Iterator[bytes]:
        for chunk in chunked(blob, 64):
            seen.update(chunk)
            yield chunk

    assert [r.path for r in L.iter_entries(response())] == ["a"]
    assert "sha256:" + seen.hexdigest() == sha256_digest(blob)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_trailing_padding_after_the_tar_end_is_consumed_too(compression: str) -> None:
    tar = raw_tar([(info("a"), b"x")]) + bytes(1024 * 1024)  # tar -b 2048 style record padding
    blob = compress(tar, compression)  # type: ignore[arg-type]
    fed = 0

    def response() -> Iterator[bytes]:
        nonlocal fed
        for chunk in chunked(blob, 1024):
            fed += len(chunk)
            yield chunk

    stream = L.open_layer_stream(response())
    assert [r.path for r in L.iter_entries(stream)] == ["a"]
    assert fed == len(blob) == stream.bytes_in
    assert stream.bytes_out == len(tar)


def test_zstd_multi_frame_and_skippable_frame() -> None:
    tar = raw_tar([(info("a"), b"1" * 3000), (info("b"), b"2")])
    cut = 1024
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    blob = skippable + compress(tar[:cut], "zstd") + compress(tar[cut:], "zstd")
    stream = L.open_layer_stream(blob)
    assert stream.compression == "zstd"
    assert [r.path for r in L.iter_entries(stream)] == ["a", "b"]


def test_multi_member_gzip() -> None:
    tar = raw_tar([(info("a"), b"1" * 3000), (info("b"), b"2")])
    blob = compress(tar[:700], "gzip") + compress(tar[700:], "gzip")
    assert [r.path for r in L.iter_entries(blob)] == ["a", "b"]


def test_empty_blob_is_an_empty_layer_and_empty_tar_too() -> None:
    assert list(L.iter_entries(b"")) == []
    assert list(L.iter_entries(compress(raw_tar([]), "gzip"))) == []


def test_unsupported_and_corrupt_inputs() -> None:
    import bz2

    with pytest.raises(UnsupportedMediaType, match="bzip2"):
        L.open_layer_stream(bz2.compress(raw_tar([info("a")])))
    with pytest.raises(UnsupportedMediaType, match="not a tar"):
        list(L.iter_entries(b"this is certainly not a tar archive" * 40))
    with pytest.raises(UnsupportedMediaType, match="encrypted"):
        L.open_layer_stream(b"\x00" * 1024, "application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
    blob, _ = build_layer({"a": os.urandom(20000)}, compression="gzip")
    with pytest.raises(RegistryError, match="corrupt or truncated gzip"):
        list(L.iter_entries(blob[: len(blob) // 2]))
    zblob, _ = build_layer({"a": os.urandom(20000)}, compression="zstd")
    with pytest.raises(RegistryError, match="corrupt or truncated"):
        list(L.iter_entries(zblob[: len(zblob) // 2]))


def test_an_error_of_the_input_itself_propagates_unchanged() -> None:
    blob, _ = build_layer({"a": os.urandom(50000)}, compression="gzip")

    def flaky() -> Iterator[bytes]:
        yield blob[:1000]
        raise ConnectionResetError("peer went away")

    with pytest.raises(ConnectionResetError, match="peer went away"):
        list(L.iter_entries(flaky()))


@pytest.mark.parametrize("make", [gzip_bomb, zstd_bomb], ids=["gzip", "zstd"])
def test_decompression_bomb_is_stopped_at_the_cap(make: Callable[[int], bytes]) -> None:
    blob = make(64 * 1024 * 1024)
    assert len(blob) < 2 * 1024 * 1024
    stream = L.open_layer_stream(blob, max_bytes=1024 * 1024)
    with pytest.raises(UnsafeLayer, match="more than 1048576 bytes"):
        list(L.iter_entries(stream))
    assert stream.bytes_out == 1024 * 1024 + 1  # never more than one byte past the cap


def test_cap_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = gzip_bomb(8 * 1024 * 1024)
    monkeypatch.setenv(L.MAX_LAYER_BYTES_ENV, str(4 * 1024 * 1024))
    with pytest.raises(UnsafeLayer):
        list(L.iter_entries(blob))
    monkeypatch.setenv(L.MAX_LAYER_BYTES_ENV, str(64 * 1024 * 1024))
    assert [r.size for r in L.iter_entries(blob)] == [8 * 1024 * 1024]
    monkeypatch.setenv(L.MAX_LAYER_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=L.MAX_LAYER_BYTES_ENV):
        L.open_layer_stream(blob)


def test_huge_pax_header_is_refused_before_it_is_read() -> None:
    pax = info("././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = L.MAX_METADATA_MEMBER + 1
    header = pax.tobuf(format=tarfile.USTAR_FORMAT)
    with pytest.raises(UnsafeLayer, match="metadata member"):
        list(L.iter_entries(iter([header, b"\0" * 4096])))


# ---------------------------------------------------------------------------------------------- merge
def _rows(blob: bytes, layer: str) -> list[L.Entry]:
    return list(L.iter_entries(blob, layer=layer))


BASE = build_layer(
    {"etc/os-release": b"base\n", "etc/keep": b"k", "var/cache/a": b"a", "var/cache/sub/b": b"b",
     "opt/app/old": b"old", "usr/lib/os-release": b"ID=test\n", "srv": b"file-then-dir"},
    dirs=["etc", "var", "var/cache", "var/cache/sub", "opt", "opt/app", "usr", "usr/lib", "data"],
    symlinks={"lib": "usr/lib"},
    compression="gzip",
)[0]
MIDDLE = build_layer(
    {"etc/os-release": b"middle\n", "opt/app/new": b"new", "data": b"dir-then-file", "srv/x": b"x",
     "var/cache/fresh": b"same-layer"},
    dirs=["opt", "opt/app", "srv", "var", "var/cache"],
    whiteouts=["var/cache", "etc/keep"], opaque=["opt/app"],
    compression="zstd",
)[0]
TOP = build_layer(
    {"etc/motd": b"hi"},
    symlinks={"etc/os-release": "/usr/lib/os-release"},
    hardlinks={"etc/motd.link": "etc/motd"},
    compression="none",
)[0]
IMAGE = [("base", BASE), ("middle", MIDDLE), ("top", TOP)]
EXPECTED_FINAL = {
    "data": ("file", "middle"), "etc": ("dir", "base"), "etc/motd": ("file", "top"),
    "etc/motd.link": ("hardlink", "top"), "etc/os-release": ("symlink", "top"), "lib": ("symlink", "base"),
    "opt": ("dir", "middle"), "opt/app": ("dir", "middle"), "opt/app/new": ("file", "middle"),
    "srv": ("dir", "middle"), "srv/x": ("file", "middle"), "usr": ("dir", "base"), "usr/lib": ("dir", "base"),
    "usr/lib/os-release": ("file", "base"), "var": ("dir", "middle"), "var/cache": ("dir", "middle"),
    "var/cache/fresh": ("file", "middle"),
}


def test_merge_applies_whiteouts_opaque_dirs_and_replacements() -> None:
    final = L.merge([_rows(blob, name) for name, blob in IMAGE])
    assert {e.path: (e.type, e.layer) for e in final} == EXPECTED_FINAL
    assert [e.path for e in final] == sorted(e.path for e in final)
    assert not any(e.whiteout for e in final)


def test_merge_accepts_one_flat_list_of_rows() -> None:
    flat = [row for name, blob in IMAGE for row in _rows(blob, name)]
    assert L.merge(flat) == L.merge([_rows(blob, name) for name, blob in IMAGE])


def test_whiteouts_do_not_hide_entries_of_their_own_layer_and_root_opaque() -> None:
    lower = _rows(build_layer({"a": b"1", "d/x": b"2"}, dirs=["d"])[0], "l")
    upper = _rows(build_layer({"a": b"3", "d/y": b"4"}, opaque=["d", ""], whiteouts=["a"])[0], "u")
    final = L.merge([lower, upper])
    assert {(e.path, e.layer) for e in final} == {("a", "u"), ("d/y", "u")}


def test_merge_skips_aufs_metadata() -> None:
    rows = _rows(raw_tar([info(".wh..wh.plnk/", "dir"), info(".wh..wh.plnk/123.456"), info("x")]), "l")
    assert [e.path for e in L.merge([rows])] == ["x"]


# ----------------------------------------------------------------------------------------------- diff
def test_diff_reports_added_removed_and_modified_with_reasons() -> None:
    a = _rows(build_layer({"same": b"s", "gone": b"g", "grow": b"1", "perm": b"p", "ts": b"t"})[0], "a")
    b_blob = raw_tar([
        (info("same"), b"s"), (info("grow"), b"12"), (info("perm", mode=0o755), b"p"),
        (info("ts", mtime=1), b"t"), (info("new"), b"n"),
    ])
    b = _rows(b_blob, "b")
    rows = L.diff(a, b)
    assert [(r.path, r.change, r.size_a, r.size_b, r.fields) for r in rows] == [
        ("gone", "removed", 1, None, ""),
        ("grow", "modified", 1, 2, "size"),
        ("new", "added", None, 1, ""),
        ("perm", "modified", 1, 1, "mode"),
        ("ts", "modified", 1, 1, "mtime"),
    ]
    no_mtime = L.diff(a, b, compare=[f for f in L.DIFF_FIELDS if f != "mtime"])
    assert "ts" not in {r.path for r in no_mtime}
    with pytest.raises(ValueError, match="colour"):
        L.diff(a, b, compare=["colour"])


def test_diff_of_merged_images() -> None:
    before = L.merge([_rows(BASE, "base")])
    after = L.merge([_rows(blob, name) for name, blob in IMAGE])
    changes = {r.path: r.change for r in L.diff(before, after)}
    assert changes["var/cache/a"] == "removed" and changes["etc/keep"] == "removed"
    assert changes["etc/motd"] == "added" and changes["opt/app/old"] == "removed"
    assert changes["etc/os-release"] == "modified" and changes["srv"] == "modified"
    assert "usr/lib/os-release" not in changes


# ------------------------------------------------------------------------------------------ read_file
class Opener:
    """Lazy layer sources that count how often each layer is opened."""

    def __init__(self, blobs: list[tuple[str, bytes]]) -> None:
        self.blobs = blobs
        self.opens: list[str] = []

    def sources(self) -> list[Callable[[], Iterator[bytes]]]:
        def make(name: str, blob: bytes) -> Callable[[], Iterator[bytes]]:
            def open_() -> Iterator[bytes]:
                self.opens.append(name)
                return chunked(blob, 4096)
            return open_
        return [make(n, b) for n, b in reversed(self.blobs)]  # newest first


def test_read_file_opens_only_the_layers_it_needs() -> None:
    op = Opener(IMAGE)
    assert L.read_file(op.sources(), "etc/motd") == b"hi"
    assert op.opens == ["top"]
    op.opens.clear()
    assert L.read_file(op.sources(), "/opt/app/new") == b"new"
    assert op.opens == ["top", "middle"]
    op.opens.clear()
    assert L.read_file(op.sources(), "usr/lib/os-release") == b"ID=test\n"
    assert op.opens == ["top", "middle", "base"]


def test_read_file_stops_at_whiteouts_and_opaque_dirs() -> None:
    for path in ("var/cache/a", "var/cache/sub/b", "etc/keep", "opt/app/old"):
        op = Opener(IMAGE)
        with pytest.raises(FileNotFoundError, match="whiteout"):
            L.read_file(op.sources(), path)
        assert op.opens == ["top", "middle"], path  # base never opened
    op = Opener(IMAGE)
    with pytest.raises(FileNotFoundError, match="not in any layer"):
        L.read_file(op.sources(), "nope")
    assert op.opens == ["top", "middle", "base"]


def test_read_file_follows_symlinks_hardlinks_and_parent_symlinks() -> None:
    op = Opener(IMAGE)
    # etc/os-release (top) -> /usr/lib/os-release (base): each layer opened once
    assert L.read_file(op.sources(), "etc/os-release") == b"ID=test\n"
    assert op.opens == ["top", "middle", "base"]
    op.opens.clear()
    assert L.read_file(op.sources(), "lib/os-release") == b"ID=test\n"  # lib -> usr/lib
    op.opens.clear()
    assert L.read_file(op.sources(), "etc/motd.link") == b"hi"
    assert op.opens == ["top", "top"]  # the hardlink target is in a layer already scanned: one re-open
    with pytest.raises(OSError, match="symlink"):
        L.read_file(Opener(IMAGE).sources(), "etc/os-release", follow_symlinks=False)
    with pytest.raises(IsADirectoryError):
        L.read_file(Opener(IMAGE).sources(), "usr/lib")
    with pytest.raises(NotADirectoryError):
        L.read_file(Opener(IMAGE).sources(), "data/x")


def test_read_file_symlink_loop() -> None:
    blob = raw_tar([info("a", "symlink", linkname="b"), info("b", "symlink", linkname="/a")])
    with pytest.raises(OSError, match="too many levels"):
        L.read_file([lambda: blob], "a")


# -------------------------------------------------------------------------------------------- extract
def _snapshot(top: Path, skip: Path) -> dict[str, bytes | str]:
    """Every path under ``top`` except ``skip``'s subtree, with file contents / link targets."""
    snap: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p == skip or skip in p.parents:
                continue
            if p.is_symlink():
                snap[str(p)] = "->" + os.readlink(p)
            elif p.is_file():
                snap[str(p)] = p.read_bytes()
            else:
                snap[str(p)] = "dir"
    return snap


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(dest, outside): dest is empty; outside holds a secret that must never change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"untouched")
    dest = tmp_path / "box" / "dest"
    dest.parent.mkdir()
    before = _snapshot(tmp_path, dest)
    yield dest, outside
    assert _snapshot(tmp_path, dest) == before, "something was written outside dest"
    for p in dest.rglob("*"):  # read-only dirs would stop pytest's cleanup
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)


def test_extract_builds_the_merged_filesystem(jail: tuple[Path, Path]) -> None:
    dest, _ = jail
    seen: list[str] = []
    summary = L.extract(IMAGE, dest, on_entry=lambda e: seen.append(f"{e.layer}:{e.path}"))
    on_disk = {str(p.relative_to(dest)) for p in dest.rglob("*")}
    assert on_disk == set(EXPECTED_FINAL)  # extraction and merge agree
    assert (dest / "etc/os-release").is_symlink()
    assert os.readlink(dest / "etc/os-release") == "../usr/lib/os-release"  # absolute target relativized
    assert (dest / "etc/os-release").read_bytes() == b"ID=test\n"
    assert (dest / "lib/os-release").read_bytes() == b"ID=test\n"
    assert (dest / "var/cache/fresh").read_bytes() == b"same-layer"
    assert (dest / "data").read_bytes() == b"dir-then-file"
    assert os.stat(dest / "etc/motd").st_ino == os.stat(dest / "etc/motd.link").st_ino
    assert (dest / "etc/motd").stat().st_mtime == 1_700_000_000
    assert summary.files == 7 + 5 + 1 and summary.hardlinks == 1 and summary.whiteouts == 3
    assert "top:etc/motd" in seen and "middle:var/.wh.cache" in seen


def test_extract_modes_and_setuid_dropped(jail: tuple[Path, Path]) -> None:
    dest, _ = jail
    blob, _ = build_layer({"bin/su": b"x", "ro/f": b"y"}, dirs=["bin", "ro"], modes={"bin/su": 0o4755, "ro": 0o555})
    L.extract([blob], dest)
    assert (dest / "bin/su").stat().st_mode & 0o7777 == 0o755
    assert (dest / "ro").stat().st_mode & 0o7777 == 0o555
    assert (dest / "ro/f").read_bytes() == b"y"


def test_extract_replaces_a_symlink_instead_of_writing_through_it(jail: tuple[Path, Path]) -> None:
    dest, outside = jail
    first = raw_tar([info("f", "symlink", linkname=str(outside / "secret")), info("g", "symlink", linkname="h"),
                     (info("h"), b"inside")])
    second = raw_tar([(info("f"), b"replaced"), (info("g"), b"also replaced")])
    L.extract([first, second], dest, absolute_links="keep")
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"replaced"
    assert (dest / "h").read_bytes() == b"inside"


def test_absolute_symlink_dir_then_file_through_it_stays_inside(jail: tuple[Path, Path]) -> None:
    dest, outside = jail
    layer = raw_tar([info("link", "symlink", linkname=str(outside)), (info("link/evil"), b"pwned")])
    L.extract([layer], dest, absolute_links="keep")  # chroot semantics: lands under dest
    assert (dest / str(outside).lstrip("/") / "evil").read_bytes() == b"pwned"
    with pytest.raises(UnsafeLayer) as err:
        L.extract([layer], dest / "second", absolute_links="refuse")
    assert err.value.entry == "link"


HOSTILE = {
    "dotdot": ([(info("../evil"), b"x")], "../evil"),
    "dotdot-inner": ([(info("a/../../evil"), b"x")], "a/../../evil"),
    "dotdot-staying-inside": ([info("a", "dir"), (info("a/../b"), b"x")], "a/../b"),
    "absolute": ([(info("/tmp/regexplore-evil"), b"x")], "/tmp/regexplore-evil"),
    "symlink-escape": ([info("link", "symlink", linkname="../../outside")], "link"),
    "symlink-then-file": (
        [info("d", "dir"), info("d/up", "symlink", linkname="../../outside"), (info("d/up/evil"), b"x")], "d/up"),
    "symlink-chain": ([info("here", "symlink", linkname="."), info("esc", "symlink", linkname="here/../outside")],
                      "esc"),
    "hardlink-escape": ([info("h", "hardlink", linkname="../outside/secret")], "h"),
    "hardlink-absolute": ([(info("etc/passwd"), b"inner"), info("h", "hardlink", linkname="/etc/passwd")], "h"),
    "char-device": ([info("dev/null", "char")], "dev/null"),
    "fifo": ([info("pipe", "fifo")], "pipe"),
    "whiteout-escape": ([info("../.wh.outside")], "../.wh.outside"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_hostile_layers_raise_unsafe_layer(jail: tuple[Path, Path], case: str, compression: str) -> None:
    dest, _ = jail
    members, bad = HOSTILE[case]
    blob = compress(raw_tar(members), compression)  # type: ignore[arg-type]
    with pytest.raises(UnsafeLayer) as err:
        L.extract([blob], dest)
    assert err.value.entry == bad


def test_symlink_made_to_escape_by_a_later_layer_is_removed(jail: tuple[Path, Path]) -> None:
    dest, _ = jail
    first = raw_tar([info("a/b/c", "dir"), info("l", "symlink", linkname="a/b/c/../../..")])
    second = raw_tar([info("a/b/c", "symlink", linkname=".")])  # now l climbs above dest
    with pytest.raises(UnsafeLayer) as err:
        L.extract([first, second], dest)
    assert err.value.entry == "l"
    assert not os.path.lexists(dest / "l")


def test_extract_devices_can_be_skipped(jail: tuple[Path, Path]) -> None:
    dest, _ = jail
    summary = L.extract([raw_tar([info("dev/null", "char"), (info("ok"), b"1")])], dest, devices="skip")
    assert summary.skipped == ["dev/null"] and (dest / "ok").read_bytes() == b"1"
    assert not (dest / "dev/null").exists()


def test_extract_stops_a_gzip_bomb(jail: tuple[Path, Path]) -> None:
    dest, _ = jail
    with pytest.raises(UnsafeLayer, match="more than"):
        L.extract([gzip_bomb(32 * 1024 * 1024)], dest, max_bytes=2 * 1024 * 1024)
    assert (dest / "bomb").stat().st_size <= 2 * 1024 * 1024


def test_extract_matches_gnu_tar_for_a_plain_layer(tmp_path: Path) -> None:
    blob = _kit_layer("none")
    members = [m for m in tarfile.open(fileobj=io.BytesIO(blob)) if ".wh." not in m.name]  # GNU tar keeps markers
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf, tarfile.open(fileobj=io.BytesIO(blob)) as src:
        for m in members:
            tf.addfile(m, src.extractfile(m) if m.isreg() else None)
    blob = out.getvalue()
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    theirs.mkdir()
    (tmp_path / "l.tar").write_bytes(blob)
    subprocess.run(["tar", "-xf", str(tmp_path / "l.tar"), "-C", str(theirs)], check=True)
    L.extract([blob], mine, absolute_links="keep")

    def tree(root: Path) -> dict[str, object]:
        return {str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file()
                                           else "dir") for p in root.rglob("*")}

    assert tree(mine) == tree(theirs)
    assert len(tree(mine)) == len(members)

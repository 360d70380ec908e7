"""layers' fast listing path (its own header parser + a decompressing worker thread) lists exactly what
tarfile stream mode lists: same members, same fields, same end-of-archive and error behaviour.

The reference is ``tarfile.open(mode="r|", tarinfo=_GuardedTarInfo)`` read with ``next()``, which is what
``layers._members`` (extract, read_file, hash_files) still uses. No network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
from layerkit import build_layer, chunked, info, raw_tar

from regexplore.content import layers as L
from regexplore.errors import RegistryError, UnsafeLayer

FIXTURE_LAYER = Path(__file__).resolve().parents[3] / "shared/fixtures/tarsum" / (
    "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457/layer.tar"
)


def reference(tar: bytes) -> tuple[list[tuple], str | None]:
    """(members, name of the exception that ended the listing or None) according to tarfile."""
    rows: list[tuple] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r|", tarinfo=L._GuardedTarInfo) as tf:
            while (ti := tf.next()) is not None:
                rows.append((ti.name, ti.type, ti.size, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname))
                tf.members.clear()
    except Exception as exc:  # noqa: BLE001 - compared by class
        return rows, type(exc).__name__
    return rows, None


def fast(tar: bytes, chunk: int | None = None) -> tuple[list[tuple], str | None]:
    rows: list[tuple] = []
    pieces = [tar] if chunk is None else list(chunked(tar, chunk))
    try:
        for m in L._scan_tar(L._TarBytes(pieces)):
            rows.append(m)
    except Exception as exc:  # noqa: BLE001
        return rows, type(exc).__name__
    return rows, None


def assert_same(tar: bytes) -> tuple[list[tuple], str | None]:
    want = reference(tar)
    assert fast(tar) == want
    assert fast(tar, 512) == want  # headers and long names across chunk boundaries
    assert fast(tar, 333) == want
    return want


def _gnu_tree_tar(tmp_path: Path, *extra: str) -> bytes:
    tree = tmp_path / "tree"
    (tree / ("x" * 140)).mkdir(parents=True)
    (tree / ("x" * 140) / ("y" * 120)).write_bytes(b"deep")
    os.symlink("z" * 150, tree / ("x" * 140) / "long-link")
    os.link(tree / ("x" * 140) / ("y" * 120), tree / ("h" * 130))
    (tree / "etc").mkdir()
    (tree / "etc" / "passwd").write_text("root:x:0:0\n")
    (tree / "café").write_bytes(b"utf8 name")
    with open(tree / "sparse", "wb") as f:
        f.seek(3 * 1024 * 1024)
        f.write(b"end")
    out = subprocess.run(["tar", *extra, "--numeric-owner", "-cf", "-", "-C", str(tree), "."], check=True,
                         capture_output=True).stdout
    return out


KIT_FILES = {"etc/hostname": b"box\n", f"deep/{'d' * 120}/{'f' * 130}.txt": b"long name", "café/naïve": b"utf8",
             "bin/su": b"\x7fELF"}


def _kit(fmt: int) -> bytes:
    blob, _ = build_layer(KIT_FILES, dirs=["etc", "deep", "bin"], symlinks={"ln": "../" + "t" * 110},
                          hardlinks={"etc/hostname.bak": "etc/hostname"}, whiteouts=["var/cache"],
                          opaque=["opt"], compression="none", format=fmt)
    return blob


# ----------------------------------------------------------------------------------------- corpus
@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])
def test_python_written_layers(fmt: int) -> None:
    if fmt == tarfile.USTAR_FORMAT:  # ustar: names must fit name + prefix, links 100 bytes
        tar = raw_tar([(info("a/" + "p" * 120 + "/file"), b"prefixed"), info("d" * 90 + "/", "dir"),
                       info("s", "symlink", linkname="t"), info("dev/null", "char"), info("pipe", "fifo")],
                      format=fmt)
    else:
        tar = _kit(fmt)
    rows, err = assert_same(tar)
    assert err is None and len(rows) > 4


@pytest.mark.parametrize("extra", [[], ["--format=gnu", "--sparse"], ["--format=posix"],
                                   ["--format=posix", "--sparse"], ["--format=ustar"], ["--format=v7"]],
                         ids=["gnu", "gnu-sparse", "pax", "pax-sparse", "ustar", "v7"])
def test_gnu_tar_written_layers(tmp_path: Path, extra: list[str]) -> None:
    if "--format=ustar" in extra or "--format=v7" in extra:  # names too long for these formats: short tree
        tree = tmp_path / "short"
        (tree / "d").mkdir(parents=True)
        (tree / "d" / "f").write_bytes(b"x" * 1000)
        os.symlink("f", tree / "d" / "l")
        tar = subprocess.run(["tar", *extra, "-cf", "-", "-C", str(tree), "."], check=True,
                             capture_output=True).stdout
    else:
        tar = _gnu_tree_tar(tmp_path, *extra)
    rows, err = assert_same(tar)
    assert err is None and rows


def test_real_docker_layer() -> None:
    if not FIXTURE_LAYER.exists():
        pytest.skip("shared fixture missing")
    rows, err = assert_same(FIXTURE_LAYER.read_bytes())
    assert err is None and rows


def test_global_pax_header_applies_to_the_following_members() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"uid": "4242", "comment": "global"}) as tf:
        for name in ("a", "b"):
            ti = info(name, size=3)
            tf.addfile(ti, io.BytesIO(b"abc"))
    rows, err = assert_same(out.getvalue())
    assert err is None and [r[4] for r in rows] == [4242, 4242]


def test_odd_headers() -> None:
    """Old-style dirs (AREGTYPE + slash), spaces instead of NULs, an unknown type with data, dir sizes."""
    dir_v7 = info("olddir/")
    dir_v7.type = tarfile.AREGTYPE
    unknown = info("volume", size=3)
    unknown.type = b"V"
    unknown.size = 3
    block = bytearray(info("spaced", size=5).tobuf(format=tarfile.USTAR_FORMAT))
    block[100:108] = b" 644   \0"  # leading spaces
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    tar = (raw_tar([dir_v7], format=tarfile.USTAR_FORMAT)[:512] + unknown.tobuf(format=tarfile.USTAR_FORMAT)
           + b"abc".ljust(512, b"\0") + bytes(block) + b"hello".ljust(512, b"\0") + bytes(1024))
    rows, err = assert_same(tar)
    assert [r[0] for r in rows] == ["olddir", "volume", "spaced"] and err is None


@pytest.mark.parametrize("cut", [0, 100, 512, 700, 1024, 1536, 2048])
def test_truncated_archives(cut: int) -> None:
    tar = _kit(tarfile.GNU_FORMAT)
    assert_same(tar[:cut])
    assert_same(tar[:len(tar) - cut])


def test_mutated_headers_behave_like_tarfile() -> None:
    """Random byte changes in header blocks (half of them with a fixed-up checksum) of several archives:
    the fast path must list the same members and fail (or stop) the same way as tarfile."""
    rnd = random.Random(20261126)
    alphabet = b"0123456789 \0\x80\xff/7xL K5gS"  # not "-": a negative metadata size is a known difference
    bases = [_kit(tarfile.GNU_FORMAT), _kit(tarfile.PAX_FORMAT),
             raw_tar([(info("a"), b"1"), info("b/", "dir")], format=tarfile.USTAR_FORMAT)]
    checked = 0
    for base in bases:
        headers = [off for off in range(0, len(base), 512) if reference(base[:off + 512])[0] or off == 0]
        for _ in range(300):
            tar = bytearray(base)
            off = rnd.choice(headers)
            for _ in range(rnd.randint(1, 3)):
                tar[off + rnd.randrange(500)] = rnd.choice(alphabet)
            if rnd.random() < 0.5:
                tar[off + 148:off + 156] = b"        "
                tar[off + 148:off + 156] = b"%06o\0 " % sum(tar[off:off + 512])
            assert fast(bytes(tar)) == reference(bytes(tar)), (off, bytes(tar[off:off + 512]))
            checked += 1
    assert checked == 900


def test_negative_size_of_a_long_name_member_is_an_error() -> None:
    """The one deliberate difference: tarfile's stream would read garbage; the fast path stops."""
    long = bytearray(info("././@LongLink").tobuf(format=tarfile.USTAR_FORMAT))
    long[156:157] = tarfile.GNUTYPE_LONGNAME
    long[124:136] = b"-0000000100\0"
    long[148:156] = b"        "
    long[148:156] = b"%06o\0 " % sum(long)
    tar = _kit(tarfile.GNU_FORMAT)[:512] + bytes(long) + bytes(2048)
    rows, err = fast(tar)
    assert err == "ReadError" and len(rows) == 1
    with pytest.raises(RegistryError):
        list(L.iter_entries(iter([tar])))


# ------------------------------------------------------------------------------------ threaded path
def _big_gzip_layer(n: int = 3000) -> bytes:
    files = {f"dir{i % 17}/{'n' * (i % 140)}{i}.txt": os.urandom(i % 3000) for i in range(n)}
    blob, _ = build_layer(files, dirs=[f"dir{i}" for i in range(17)], compression="gzip", format=tarfile.GNU_FORMAT)
    return blob


def test_threaded_listing_equals_inline_listing_and_tarfile() -> None:
    blob = _big_gzip_layer()
    threaded = list(L.iter_entries(chunked(blob, 65536), "sha256:x"))  # an iterable: worker thread
    inline = list(L.iter_entries(blob, "sha256:x"))  # bytes: inline
    with io.BytesIO(blob) as f:
        stream = L.open_layer_stream(f)
        old = [L._to_entry(ti, "sha256:x") for ti, _ in L._members(stream, drain=True)]
    assert threaded == inline == old and len(threaded) == 3017


def test_threaded_listing_reads_the_input_to_its_end() -> None:
    blob = _big_gzip_layer(500) + bytes(4096)  # zero padding after the gzip member
    h = hashlib.sha256()

    def hashing():
        for piece in chunked(blob, 10000):
            h.update(piece)
            yield piece

    assert len(list(L.iter_entries(hashing()))) == 517
    assert h.hexdigest() == hashlib.sha256(blob).hexdigest()


def test_abandoned_listing_stops_its_worker() -> None:
    blob = _big_gzip_layer()
    before = threading.active_count()
    it = L.iter_entries(chunked(blob, 4096))
    next(it)
    it.close()
    assert threading.active_count() == before


def test_chunked_input_is_read_beside_the_decompression() -> None:
    """A download's chunks (hashed as they come) are pulled by a thread of their own, not by the thread that
    decompresses, so hashing overlaps with decompression; an abandoned listing closes that input at once."""
    blob = _big_gzip_layer(500)
    readers: list[str] = []
    closed: list[bool] = []

    def download():
        try:
            for piece in chunked(blob, 10000):
                readers.append(threading.current_thread().name)
                yield piece
        finally:
            closed.append(True)

    assert len(list(L.iter_entries(download()))) == 517
    # the first chunk is read by the caller (its magic bytes name the compression), the rest by the input thread
    assert readers[0] == "MainThread" and set(readers[1:]) == {"regexplore-layer-input"} and closed == [True]
    before = threading.active_count()
    it = L.iter_entries(download())
    next(it)
    it.close()
    assert closed == [True, True] and threading.active_count() == before


def test_errors_reach_the_consumer_in_order() -> None:
    blob = _big_gzip_layer(800)
    corrupt = blob[:len(blob) // 2] + bytes(b ^ 0x55 for b in blob[len(blob) // 2:])
    rows = []
    with pytest.raises(RegistryError, match="corrupt or truncated"):
        for row in L.iter_entries(chunked(corrupt, 8192)):
            rows.append(row)
    assert rows  # what came before the damage was listed

    def failing():
        yield blob[:20000]
        raise ConnectionError("dropped")

    with pytest.raises(ConnectionError, match="dropped"):
        list(L.iter_entries(failing()))
    with pytest.raises(UnsafeLayer):
        list(L.iter_entries(chunked(blob, 8192), max_bytes=100_000))


def test_empty_and_non_tar_inputs_in_threaded_mode() -> None:
    assert list(L.iter_entries(iter([gzip.compress(b"")]))) == []
    assert list(L.iter_entries(iter([]))) == []
    with pytest.raises(Exception, match="not a tar"):
        list(L.iter_entries(iter([gzip.compress(b"hello, not a tar" * 100)])))

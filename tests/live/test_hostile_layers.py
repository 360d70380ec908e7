"""Hostile images against the real registry (and a tampering proxy in front of it): read_file returns
nothing unverified and nothing unbounded, sparse maps are capped in both tar readers, extract leaves no
link that leads outside, and file names that are not UTF-8 never break a table (issue 10: 2, 3, 5, 6, 11).
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence

import pushing
import pytest
from digests import sha256_digest
from layerkit import compress, info, raw_tar
from servers import FaultProxy
from servers.bounded import run_bounded

import regexplore as rx

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every blob comes from the registry (or the proxy), never from a cache of verified bytes."""
    monkeypatch.setenv("REGEXPLORE_CACHE", "off")
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")


def push_image(reg: rx.Registry, repo: str, tag: str, layers: Sequence[tuple[bytes, str]]) -> str:
    """Push an image of ``layers`` [(blob, media type)] with plain requests; returns ``repo:tag``."""
    return pushing.push_image(reg.base_url, repo, tag, layers).ref


def push_tars(reg: rx.Registry, repo: str, tag: str, *tars: bytes) -> str:
    """Push an image whose layers are ``tars`` (gzip-compressed); returns ``repo:tag``."""
    return push_image(reg, repo, tag, [(compress(t, "gzip"), GZIP) for t in tars])


# ------------------------------------------------------------------ 2. read_file verifies the blob
@pytest.mark.parametrize("where", ["file-content", "after-end-of-archive"])
def test_read_file_never_returns_bytes_of_a_blob_that_fails_its_digest(empty_sandbox, where: str) -> None:
    """A proxy (or a registry) serves other bytes than the digest names: inside the file read, or after
    the tar's end-of-archive marker. read_file must raise DigestMismatch, as files() and extract do,
    for a tag and for an image pinned by digest."""
    payload = b"127.0.0.1 localhost\n" * 10
    tar = raw_tar([info("etc/", "dir"), (info("etc/hosts"), payload)])  # padded to a 10 KiB record
    assert len(tar) == 10240
    offset = {"file-content": tar.index(payload) + 5, "after-end-of-archive": len(tar) - 1}[where]
    reg = rx.Registry(empty_sandbox.url)
    ref = push_image(reg, "tamper/read", "v", [(tar, TAR)])
    pinned = f"tamper/read@{reg.manifest(ref).digest}"
    assert reg.read_file(ref, "etc/hosts") == payload
    with FaultProxy(empty_sandbox.url) as proxy:
        proxy.flip_byte(offset=offset, path="/blobs/sha256:", times=None)
        through = rx.Registry(proxy.url)
        for r in (ref, pinned):
            with pytest.raises(rx.DigestMismatch):
                through.read_file(r, "etc/hosts")
        with pytest.raises(rx.DigestMismatch):
            through.files(pinned)


# ------------------------------------------------------------------- 5. read_file is bounded
def _octal(value: int, width: int) -> bytes:
    """A tar number field: octal, or GNU's base-256 when it does not fit."""
    if value >= 8 ** (width - 1):
        return b"\x80" + value.to_bytes(width - 1, "big")
    return b"%0*o\0" % (width - 1, value)


def _checksummed(header: bytearray) -> bytes:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def gnu_sparse(name: str, realsize: int, entries: Sequence[tuple[int, int]], *, extension_blocks: int = 0,
               data: bytes | None = None) -> Iterator[bytes]:
    """An old-GNU sparse member (type ``S``): ``entries`` (offset, length) of data, the first 4 in the
    header and the rest in extension blocks of 21, then ``extension_blocks`` more blocks of empty entries
    (each saying "another block follows"); yields the pieces of the member, data included."""
    stored = sum(n for _, n in entries)
    data = data if data is not None else bytes(range(256)) * (stored // 256) + bytes(stored % 256)
    header = bytearray(512)
    header[:len(name)] = name.encode()
    header[100:108], header[108:116], header[116:124] = _octal(0o644, 8), _octal(0, 8), _octal(0, 8)
    header[124:136], header[136:148] = _octal(stored, 12), _octal(1_700_000_000, 12)
    header[156:157], header[257:265] = b"S", b"ustar  \0"
    head, rest = list(entries[:4]), list(entries[4:])
    for i, (off, n) in enumerate(head):
        header[386 + 24 * i:410 + 24 * i] = _octal(off, 12) + _octal(n, 12)
    header[482] = 1 if rest or extension_blocks else 0
    header[483:495] = _octal(realsize, 12)
    yield _checksummed(header)
    while rest:
        block = bytearray(512)
        chunk, rest = rest[:21], rest[21:]
        for i, (off, n) in enumerate(chunk):
            block[24 * i:24 * i + 24] = _octal(off, 12) + _octal(n, 12)
        block[504] = 1 if rest or extension_blocks else 0
        yield bytes(block)
    empty = bytearray(512)
    empty[504] = 1
    for i in range(extension_blocks):
        yield bytes(empty) if i < extension_blocks - 1 else bytes(512)
    yield data + bytes(-len(data) % 512)


def gzip_pieces(pieces: Iterator[bytes]) -> bytes:
    """gzip a stream of pieces (big repetitive tars never held in memory)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    return b"".join(comp.compress(p) for p in pieces) + comp.flush()


def _read_in_child(url: str, ref: str, path: str, *, env: dict[str, str] | None = None, memory_mb: int = 1024,
                   extra: str = ""):
    return run_bounded(f"""
        import os, resource, regexplore as rx
        reg = rx.Registry(os.environ["URL"])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        data = reg.read_file(os.environ["REF"], os.environ["PATH_IN_IMAGE"]{extra})
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        result = [len(data), grew]
    """, env={"URL": url, "REF": ref, "PATH_IN_IMAGE": path, **(env or {})}, timeout=60, memory_mb=memory_mb)


def test_read_file_refuses_a_gzip_bomb_file_over_the_default_cap(empty_sandbox) -> None:
    """A 0.5 MB blob holding a 512 MiB file: ResponseTooLarge naming the path and the cap, before any of
    it is read (not gigabytes of memory, not MemoryError)."""
    from layerkit import gzip_bomb

    reg = rx.Registry(empty_sandbox.url)
    ref = push_image(reg, "bomb/file", "v", [(gzip_bomb(512 * 1024**2, "var/big"), GZIP)])
    res = _read_in_child(empty_sandbox.url, ref, "var/big")
    assert res.raised("ResponseTooLarge"), res.output
    assert "var/big" in res.message and str(64 * 1024**2) in res.message
    assert "REGEXPLORE_MAX_FILE_BYTES" in res.message
    assert res.elapsed < 30


def test_read_file_refuses_a_huge_sparse_file(empty_sandbox) -> None:
    """A GNU sparse member declaring 3 GiB of holes around 512 stored bytes: a blob of a few hundred bytes."""
    tar = b"".join(gnu_sparse("var/log/lastlog", 3 * 1024**3, [(3 * 1024**3 - 512, 512)])) + bytes(1024)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "bomb/sparse", "v", tar)
    res = _read_in_child(empty_sandbox.url, ref, "var/log/lastlog")
    assert res.raised("ResponseTooLarge"), res.output
    assert "var/log/lastlog" in res.message


def test_read_file_cap_comes_from_the_argument_or_the_environment(empty_sandbox, monkeypatch) -> None:
    body = os.urandom(100_000)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "cap/file", "v", raw_tar([(info("f"), body)]))
    assert reg.read_file(ref, "f") == body
    with pytest.raises(rx.ResponseTooLarge, match="f: 100000 bytes.*99999"):
        reg.read_file(ref, "f", max_bytes=99_999)
    assert reg.read_file(ref, "f", max_bytes=100_000) == body
    monkeypatch.setenv("REGEXPLORE_MAX_FILE_BYTES", "1000")
    with pytest.raises(rx.ResponseTooLarge, match="REGEXPLORE_MAX_FILE_BYTES"):
        reg.read_file(ref, "f")
    assert reg.read_file(ref, "f", max_bytes=200_000) == body
    monkeypatch.setenv("REGEXPLORE_MAX_FILE_BYTES", "lots")
    with pytest.raises(ValueError, match="REGEXPLORE_MAX_FILE_BYTES"):
        reg.read_file(ref, "f")


def test_read_file_memory_stays_near_the_file_size(empty_sandbox) -> None:
    """A 48 MiB file (under the cap) costs about its own size in memory, not two or three copies."""
    from layerkit import gzip_bomb

    reg = rx.Registry(empty_sandbox.url)
    ref = push_image(reg, "big/file", "v", [(gzip_bomb(48 * 1024**2, "opt/blob"), GZIP)])
    res = _read_in_child(empty_sandbox.url, ref, "opt/blob")
    assert res.ok, res.output
    size, grew = res.value
    assert size == 48 * 1024**2
    assert grew < 1.5 * 48, res.value


# ------------------------------------------------------------------------- 6. sparse maps are capped
def _pax_member(records: bytes, header: tarfile.TarInfo, data: bytes) -> bytes:
    """A pax extended header holding ``records`` verbatim (repeated keys allowed), then ``header``
    (ustar) and its ``data``."""
    pax = tarfile.TarInfo("PaxHeaders/" + header.name)
    pax.type, pax.size = tarfile.XHDTYPE, len(records)
    header.size = len(data)
    return b"".join([pax.tobuf(tarfile.USTAR_FORMAT), records + bytes(-len(records) % 512),
                     header.tobuf(tarfile.USTAR_FORMAT), data + bytes(-len(data) % 512)])


def _record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def sparse_map_attack(kind: str, extents: int) -> bytes:
    """A tar whose one member is a sparse file of ``extents`` one-byte extents, 16 bytes apart, in one of
    GNU's four sparse encodings (old GNU headers, pax 0.0, 0.1, 1.0)."""
    entries = [(16 * i, 1) for i in range(extents)]
    realsize, data = 16 * extents, b"x" * extents
    if kind == "gnu":
        return b"".join(gnu_sparse("var/sparse", realsize, entries, data=data)) + bytes(1024)
    head = info("var/sparse")
    if kind == "pax-0.0":
        records = _record("GNU.sparse.size", str(realsize)) + b"".join(
            _record("GNU.sparse.offset", str(o)) + _record("GNU.sparse.numbytes", str(n)) for o, n in entries)
        return _pax_member(records, head, data) + bytes(1024)
    if kind == "pax-0.1":
        records = _record("GNU.sparse.size", str(realsize)) + _record(
            "GNU.sparse.map", ",".join(f"{o},{n}" for o, n in entries))
        return _pax_member(records, head, data) + bytes(1024)
    assert kind == "pax-1.0"
    records = b"".join(_record(k, v) for k, v in [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
                                                   ("GNU.sparse.name", "var/sparse"),
                                                   ("GNU.sparse.realsize", str(realsize))])
    text = f"{extents}\n".encode() + b"".join(b"%d\n%d\n" % e for e in entries)
    return _pax_member(records, info("var/GNUSparseFile.0/sparse"), text + bytes(-len(text) % 512) + data) \
        + bytes(1024)


SPARSE_KINDS = ["gnu", "pax-0.0", "pax-0.1", "pax-1.0"]


@pytest.mark.parametrize("kind", SPARSE_KINDS)
def test_a_sparse_map_over_the_cap_is_refused_by_every_view(empty_sandbox, tmp_path, kind: str) -> None:
    """70,000 extents (over the 65,536 cap): UnsafeLayer from the listing's raw scanner (files) and from
    the tarfile reader (diff's hashing, read_file, extract), naming the member."""
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "sparse/map", kind, sparse_map_attack(kind, 70_000))
    for call in (lambda: reg.files(ref), lambda: reg.files(ref, merged=True), lambda: reg.diff(ref, ref),
                 lambda: reg.read_file(ref, "var/sparse"), lambda: reg.extract(ref, str(tmp_path / "root"))):
        with pytest.raises(rx.UnsafeLayer, match="sparse") as err:
            call()
        assert err.value.entry and "sparse" in err.value.entry
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("kind", ["pax-0.1", "pax-1.0", "pax-1.0-cut"])
def test_a_sparse_map_that_is_not_numbers_is_a_corrupt_layer(empty_sandbox, kind: str) -> None:
    """tarfile's int() of a map value raised ValueError (0.1) or failed unpacking a cut map (1.0): a
    corrupt layer (RegistryError), not a crash."""
    first = raw_tar([(info("a"), b"a")])[:1024]  # a member, then no end-of-archive marker
    if kind == "pax-0.1":
        bad = _pax_member(_record("GNU.sparse.size", "10") + _record("GNU.sparse.map", "0,x"), info("s"), b"")
    else:
        records = b"".join(_record(k, v) for k, v in [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
                                                       ("GNU.sparse.realsize", "10")])
        text = b"1\n0\nten\n" if kind == "pax-1.0" else b"2\n0\n1\n" + b"7" * 500
        bad = _pax_member(records, info("s"), text)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "sparse/bad", kind, first + bad)
    for call in (lambda: reg.files(ref), lambda: reg.read_file(ref, "s")):
        with pytest.raises(rx.RegistryError, match="sparse map"):
            call()


def test_a_long_chain_of_sparse_extension_blocks_is_refused(empty_sandbox) -> None:
    """Extension blocks that list nothing but "another block follows", past the 16 MiB metadata budget."""
    tar = b"".join(gnu_sparse("var/chain", 1024, [(0, 512)], extension_blocks=40_000)) + bytes(1024)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "sparse/chain", "v", tar)
    for call in (lambda: reg.files(ref), lambda: reg.read_file(ref, "var/chain")):
        with pytest.raises(rx.UnsafeLayer, match="extension headers"):
            call()


def test_a_sparse_map_bomb_is_bounded_in_memory(empty_sandbox) -> None:
    """A ~0.5 MB blob of 600,000 extension blocks (12.6 million extents, over a gigabyte of tuples in
    tarfile): files() answers UnsafeLayer within the memory limit and in seconds."""
    block = (_octal(1000, 12) + _octal(1000, 12)) * 21 + b"\1" + bytes(7)  # 21 extents, "more follow"
    assert len(block) == 512

    def pieces() -> Iterator[bytes]:
        yield next(gnu_sparse("var/bomb", 4096, [(0, 512)], extension_blocks=1))  # the header
        for _ in range(600):
            yield block * 1000

    reg = rx.Registry(empty_sandbox.url)
    ref = push_image(reg, "sparse/bomb", "v", [(gzip_pieces(pieces()), GZIP)])
    res = run_bounded("""
        import os, regexplore as rx
        result = len(rx.Registry(os.environ["URL"]).files(os.environ["REF"]))
    """, env={"URL": empty_sandbox.url, "REF": ref}, timeout=60, memory_mb=1024)
    assert res.raised("UnsafeLayer"), res.output
    assert res.elapsed < 30


def test_a_sparse_file_of_many_extents_reads_back_exactly_and_quickly(empty_sandbox, tmp_path) -> None:
    """65,536 one-byte extents spread over 4 MiB, the most the cap allows (tarfile's reader concatenates
    extent by extent within each read, so reads stay small): read_file, diff (hashing) and extract give
    the right bytes in seconds."""
    extents = 65_536
    entries = [(64 * i, 1) for i in range(extents)]
    tar = b"".join(gnu_sparse("var/holes", 64 * extents, entries, data=b"y" * extents)) + bytes(1024)
    expected = (b"y" + bytes(63)) * extents
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "sparse/many", "v", tar)
    res = run_bounded("""
        import hashlib, os, regexplore as rx
        reg = rx.Registry(os.environ["URL"])
        data = reg.read_file(os.environ["REF"], "var/holes")
        reg.extract(os.environ["REF"], os.environ["DEST"])
        result = [hashlib.sha256(data).hexdigest(), len(reg.diff(os.environ["REF"], os.environ["REF"]))]
    """, env={"URL": empty_sandbox.url, "REF": ref, "DEST": str(tmp_path / "root")}, timeout=30,
        memory_mb=1024)
    assert res.ok, res.output
    import hashlib

    assert res.value == [hashlib.sha256(expected).hexdigest(), 0]
    assert (tmp_path / "root" / "var" / "holes").read_bytes() == expected


def test_the_holes_of_sparse_files_count_against_the_layer_cap(empty_sandbox, tmp_path) -> None:
    """A few hundred bytes declaring a 64 GiB sparse file: diff (which hashes it) and extract (which
    writes it) stop at the layer cap, like a gzip bomb, instead of hashing or writing all of it."""
    tar = b"".join(gnu_sparse("var/huge", 64 * 1024**3, [(0, 512)])) + bytes(1024)
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "sparse/huge", "v", tar)
    assert list(reg.files(ref)["size"]) == [64 * 1024**3]  # the listing says what it declares
    res = run_bounded("""
        import os, regexplore as rx
        result = len(rx.Registry(os.environ["URL"]).diff(os.environ["REF"], os.environ["REF"]))
    """, env={"URL": empty_sandbox.url, "REF": ref}, timeout=30, memory_mb=1024)
    assert res.raised("UnsafeLayer") and "var/huge" in res.message, res.output
    small = push_tars(reg, "sparse/small", "v",
                      b"".join(gnu_sparse("var/h", 64 * 1024**2, [(0, 512)])) + bytes(1024))
    with pytest.raises(rx.UnsafeLayer, match="sparse file 'var/h'") as err:
        reg.extract(small, str(tmp_path / "root"), max_bytes=16 * 1024**2)
    assert err.value.entry == "var/h" and not (tmp_path / "root").exists()
    reg.extract(small, str(tmp_path / "root"))
    assert os.path.getsize(tmp_path / "root" / "var" / "h") == 64 * 1024**2


@pytest.mark.parametrize("fmt", ["gnu", "posix:0.0", "posix:0.1", "posix:1.0"])
def test_sparse_files_written_by_gnu_tar_read_back_exactly(empty_sandbox, tmp_path, fmt: str) -> None:
    """Real sparse files (data, holes, a hole at the end) in each of GNU tar's encodings: listed with
    their full size, read and extracted byte for byte."""
    import subprocess

    tree = tmp_path / "tree"
    tree.mkdir()
    with open(tree / "disk.img", "wb") as f:
        f.write(b"start")
        f.seek(1 << 20)
        f.write(b"middle")
        f.seek(3 << 20)
        f.write(b"end")
        f.truncate(4 << 20)
    content = (tree / "disk.img").read_bytes()
    form, _, version = fmt.partition(":")
    args = ["tar", f"--format={form}", "--sparse", *([f"--sparse-version={version}"] if version else []),
            "-cf", "-", "-C", str(tree), "disk.img"]
    tar = subprocess.run(args, check=True, capture_output=True).stdout
    assert len(tar) < 64 * 1024  # stored sparse
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "sparse/real", fmt.replace(":", "-"), tar)
    files = reg.files(ref)
    assert list(files["path"]) == ["disk.img"] and list(files["size"]) == [4 << 20]
    assert reg.read_file(ref, "disk.img") == content
    reg.extract(ref, str(tmp_path / "root"))
    assert (tmp_path / "root" / "disk.img").read_bytes() == content


# ------------------------------------------------------------- 3. no link in dest leads outside it
def links_outside(root: str) -> list[str]:
    """Every symlink under ``root`` whose target, resolved where it lies, is outside ``root``."""
    real_root = os.path.realpath(root)
    out = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                resolved = os.path.realpath(path)
                if resolved != real_root and not resolved.startswith(real_root + os.sep):
                    out.append(f"{os.path.relpath(path, root)} -> {os.readlink(path)}")
    return out


def _tree(folder) -> dict[str, bytes | str]:
    """What is under ``folder``: file contents and link targets by relative path."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return out


def test_a_hardlink_to_a_symlink_cannot_move_it_to_where_it_escapes(empty_sandbox, tmp_path) -> None:
    """a/b/c/l -> ../../.. is the root itself; a hard link "etc" to it at the top would point three folders
    above dest, and writing dest/etc/hosts later would change a host file."""
    host = tmp_path / "x"
    (host / "y").mkdir(parents=True)
    (tmp_path / "hosts").write_bytes(b"host file\n")
    before = _tree(tmp_path)
    tar = raw_tar([info("a/", "dir"), info("a/b/", "dir"), info("a/b/c/", "dir"),
                   info("a/b/c/l", "symlink", linkname="../../.."),
                   info("etc", "hardlink", linkname="a/b/c/l")])
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "links/hardsym", "v", tar)
    dest = host / "y" / "root"
    with pytest.raises(rx.UnsafeLayer) as err:
        reg.extract(ref, str(dest))
    assert err.value.entry == "etc"
    assert _tree(tmp_path) == before  # no dest, no temporary folder, the host file untouched


def test_a_hardlink_to_an_absolute_symlink_points_where_the_symlink_does(empty_sandbox, tmp_path) -> None:
    """deep/er/l -> /etc/hosts is rewritten relative to deep/er ("../../etc/hosts"); a hard link to it at
    the top must lead to dest/etc/hosts too, not two folders above dest."""
    tar = raw_tar([info("etc/", "dir"), (info("etc/hosts"), b"inside\n"), info("deep/", "dir"),
                   info("deep/er/", "dir"), info("deep/er/l", "symlink", linkname="/etc/hosts"),
                   info("top", "hardlink", linkname="deep/er/l"),
                   info("deep/er/same", "hardlink", linkname="deep/er/l")])
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "links/hardabs", "v", tar)
    root = tmp_path / "root"
    summary = reg.extract(ref, str(root))
    assert links_outside(str(root)) == []
    assert os.readlink(root / "top") == "etc/hosts" and (root / "top").read_bytes() == b"inside\n"
    assert os.readlink(root / "deep/er/same") == "../../etc/hosts"
    assert (summary.symlinks, summary.hardlinks) == (1, 2)


def test_links_are_checked_again_where_they_lie_after_the_last_layer(empty_sandbox, tmp_path) -> None:
    """Layer 1 makes q -> p/D and, through it, p/D/L -> y/../.. (inside while y is a folder). Layer 2
    removes q and turns p/D/y into a link to the root: L now leads two folders above dest. The final
    check must look at L where it lies (p/D/L), not at the path it was written under (q/L)."""
    l1 = raw_tar([info("p/", "dir"), info("p/D/", "dir"), info("p/D/y/", "dir"),
                  info("q", "symlink", linkname="p/D"), info("q/L", "symlink", linkname="y/../..")])
    l2 = raw_tar([info(".wh.q"), info("p/D/.wh.y"), info("p/D/y", "symlink", linkname="../..")])
    (tmp_path / "secret").write_bytes(b"outside\n")
    reg = rx.Registry(empty_sandbox.url)
    ref = push_tars(reg, "links/moved", "v", l1, l2)
    with pytest.raises(rx.UnsafeLayer) as err:
        reg.extract(ref, str(tmp_path / "box" / "root"))
    assert err.value.entry == "p/D/L"
    assert os.listdir(tmp_path / "box") == [] and (tmp_path / "secret").read_bytes() == b"outside\n"


# ------------------------------------------------------------ 11. names that are not UTF-8, controls
# Raw names (bytes) and how the tables show them: a Latin-1 name, a systemd name with a literal "\x2d"
# (unchanged), a literal "\xe9" (its backslash doubled, so it cannot be taken for the Latin-1 one), a
# name with an escape character (valid UTF-8: kept; the terminal output escapes it).
NAMES = {
    b"etc/caf\xe9.txt": "etc/caf\\xe9.txt",
    b"etc/dev-sda\\x2d1.device": "etc/dev-sda\\x2d1.device",
    b"etc/caf\\xe9.txt": "etc/caf\\\\xe9.txt",
    b"etc/\x1b[31mred": "etc/\x1b[31mred",
}


def _latin1_layer(content: bytes) -> bytes:
    members = [info("etc/", "dir")]
    members += [(info(raw.decode("utf-8", "surrogateescape")), content + raw) for raw in NAMES]
    members.append(info("etc/link", "symlink", linkname="caf\udce9.txt"))
    return raw_tar(members, format=tarfile.GNU_FORMAT)  # names as raw bytes in the header


def test_names_that_are_not_utf8_are_escaped_in_every_table(empty_sandbox) -> None:
    reg = rx.Registry(empty_sandbox.url)
    a = push_tars(reg, "names/latin1", "a", _latin1_layer(b"one "))
    b = push_tars(reg, "names/latin1", "b", _latin1_layer(b"two "))
    for frame in (reg.files(a), reg.files(a, merged=True)):
        shown = {p for p in frame["path"] if p != "etc"} - {"etc/link"}
        assert shown == set(NAMES.values())
        assert list(frame.loc[frame["path"] == "etc/link", "linkname"]) == ["caf\\xe9.txt"]
        for column in ("path", "linkname"):  # text pyarrow, print() and JSON accept
            assert all(v.encode("utf-8") for v in frame[column].dropna())
        frame.to_string().encode("utf-8")
        frame.to_json(date_format="iso")
    changed = reg.diff(a, b)
    assert set(changed["path"]) == set(NAMES.values()) and set(changed["change"]) == {"modified"}
    changed.to_string().encode("utf-8")
    for raw, shown in NAMES.items():
        assert rx.raw_path(shown) == raw
        assert reg.read_file(b, rx.raw_path(shown)) == b"two " + raw
    assert reg.read_file(a, "etc/link") == b"one etc/caf\xe9.txt"


def test_the_demo_output_escapes_control_characters(empty_sandbox, capsys) -> None:
    """A history line (or a name) with terminal escape sequences and a bidi override is printed escaped."""
    import argparse

    from regexplore.__main__ import _show

    blob = compress(raw_tar([(info("a"), b"a")]), "gzip")
    pushing.push_image(empty_sandbox.url, "evil/term", "v1", [(blob, GZIP)], config={
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256_digest(blob)]},
        "history": [{"created_by": "RUN \x1b]0;pwned\x07\x1b[2J echo \u202eexe.txt"}]})
    _show(empty_sandbox, argparse.Namespace(content="demo", repo="evil/term", history="evil/term:v1"))
    out = capsys.readouterr().out
    assert "evil/term" in out and "pwned" in out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in out and "\\u202e" in out

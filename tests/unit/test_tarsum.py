"""tarsum and the v1 payload checksum.

Version0 is checked against Docker 1.2/1.3's own test vectors (../shared/fixtures/tarsum, see its
README). No published vector exists for tarsum.v1, so Version1 is tested by its defining
properties from ``tarsum_spec.md``: mtime is not hashed, xattrs are, and duplicates all count.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from regexplore.protocol.v1.tarsum import (
    VERSION0,
    VERSION1,
    PayloadChecksum,
    TarSum,
    TarSumError,
    payload_checksum,
    tarsum,
)


def _shared() -> Path:
    candidate = Path(__file__).resolve().parents[3] / "shared"
    if candidate.is_dir():
        return candidate
    env = os.environ.get("REGEXPLORE_SHARED")
    if env:
        return Path(env)
    raise RuntimeError("fixtures not found: set REGEXPLORE_SHARED to the shared folder")


VECTORS = _shared() / "fixtures" / "tarsum"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

DOCKER_VECTORS = [
    ("46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457",
     "tarsum+sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b"),
    ("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158",
     "tarsum+sha256:ac672ee85da9ab7f9667ae3c32841d3e42f33cc52c273c23341dabba1c8b0c8b"),
]


def _fixture(image_id: str) -> tuple[bytes, bytes]:
    folder = VECTORS / image_id
    return (folder / "layer.tar").read_bytes(), (folder / "json").read_bytes()


@pytest.mark.parametrize("image_id,expected", DOCKER_VECTORS)
def test_version0_matches_docker_vectors(image_id: str, expected: str) -> None:
    layer, image_json = _fixture(image_id)
    assert tarsum(layer, extra=image_json) == expected
    assert tarsum(io.BytesIO(layer), extra=image_json, version=VERSION0) == expected


@pytest.mark.parametrize("chunk", [1, 7, 511, 512, 513, 4096])
def test_any_chunking_gives_the_same_sum(chunk: int) -> None:
    layer, image_json = _fixture(DOCKER_VECTORS[0][0])
    ts = TarSum()
    for start in range(0, len(layer), chunk):
        ts.update(layer[start : start + chunk])
    assert ts.sum(image_json) == DOCKER_VECTORS[0][1]
    assert ts.entries == len(tarfile.open(fileobj=io.BytesIO(layer)).getmembers())


@pytest.mark.parametrize("image_id,expected", DOCKER_VECTORS)
def test_compressed_layer_with_decompress_gives_the_plain_sum(image_id: str, expected: str) -> None:
    layer, image_json = _fixture(image_id)
    assert tarsum(gzip.compress(layer), extra=image_json, decompress=True) == expected
    with pytest.raises(TarSumError):
        tarsum(gzip.compress(layer), extra=image_json)  # a plain tarsum refuses compressed input


def _go13_tar_one_zero_file() -> bytes:
    """What Go 1.3's archive/tar wrote for Header{Name: "/testdata0", Mode: 0755, Size: 1 MiB}.

    The zero ModTime (year 1) is negative, so Go wrote the mtime field in base-256 (0x80 then
    zeros, reading back as 0) and switched the magic to GNU; Typeflag stayed NUL.
    """
    def octal(width: int, value: int) -> bytes:
        return format(value, "o").rjust(width - 1, "0").encode() + b"\0"

    header = bytearray(512)
    header[0:10] = b"/testdata0"
    header[100:108] = octal(8, 0o755)
    header[108:116] = octal(8, 0)
    header[116:124] = octal(8, 0)
    header[124:136] = octal(12, 1 << 20)
    header[136:148] = b"\x80" + bytes(11)
    header[257:265] = b"ustar  \x00"
    header[148:156] = b" " * 8
    header[148:155] = octal(7, sum(header))
    return bytes(header) + bytes(1 << 20) + bytes(1024)


def test_version0_matches_docker_vector_for_go_written_tar() -> None:
    assert tarsum(_go13_tar_one_zero_file()) == (
        "tarsum+sha256:8bf12d7e67c51ee2e8306cba569398b1b9f419969521a12ffb9d8875e8836738"
    )


@pytest.mark.parametrize("version,label", [(VERSION0, "tarsum"), (VERSION1, "tarsum.v1")])
def test_empty_tar_is_sha256_of_nothing(version: int, label: str) -> None:
    assert tarsum(bytes(1024), version=version) == f"{label}+sha256:{EMPTY_SHA256}"


def _tar(entries: list[tuple[str, bytes, int, dict[str, str]]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, mtime, pax in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.pax_headers = dict(pax)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_version1_ignores_mtime_and_version0_does_not() -> None:
    old = _tar([("etc/a", b"alpha", 1_000_000, {}), ("etc/b", b"beta", 1_000_000, {})])
    new = _tar([("etc/a", b"alpha", 2_000_000, {}), ("etc/b", b"beta", 1_000_000, {})])
    assert tarsum(old, version=VERSION1) == tarsum(new, version=VERSION1)
    assert tarsum(old, version=VERSION0) != tarsum(new, version=VERSION0)


def test_version1_hashes_xattrs_and_version0_does_not() -> None:
    plain = _tar([("bin/ping", b"\x7fELF", 5, {})])
    capable = _tar([("bin/ping", b"\x7fELF", 5, {"SCHILY.xattr.security.capability": "cap_net_raw"})])
    assert tarsum(plain, version=VERSION0) == tarsum(capable, version=VERSION0)
    assert tarsum(plain, version=VERSION1) != tarsum(capable, version=VERSION1)


def test_version1_entry_digest_is_spec_layout() -> None:
    """tarsum_spec.md: key+value pairs without mtime, then sorted xattrs, then the body."""
    data = b"hello\n"
    layer = _tar([("hello.txt", data, 7, {"SCHILY.xattr.user.b": "2", "SCHILY.xattr.user.a": "1"})])
    member = tarfile.open(fileobj=io.BytesIO(layer)).getmember("hello.txt")
    fields = [
        ("name", "hello.txt"), ("mode", "420"), ("uid", "0"), ("gid", "0"), ("size", str(len(data))),
        ("typeflag", "0"), ("linkname", ""), ("uname", member.uname), ("gname", member.gname),
        ("devmajor", "0"), ("devminor", "0"), ("user.a", "1"), ("user.b", "2"),
    ]
    entry = hashlib.sha256("".join(k + v for k, v in fields).encode() + data).hexdigest()
    assert tarsum(layer, version=VERSION1) == "tarsum.v1+sha256:" + hashlib.sha256(entry.encode()).hexdigest()


def test_duplicate_names_version0_keeps_last_version1_keeps_all() -> None:
    twice = _tar([("f", b"first", 1, {}), ("./f", b"second", 1, {})])
    ts0, ts1 = TarSum(VERSION0), TarSum(VERSION1)
    ts0.update(twice)
    ts1.update(twice)
    assert len(ts0.file_sums) == 1 and len(ts1.file_sums) == 2
    # Version0 (Docker 1.3's map keyed by the trimmed name): the later entry replaces the first
    assert ts0.sum() == tarsum(_tar([("./f", b"second", 1, {})]))
    assert ts0.sum() != tarsum(_tar([("f", b"first", 1, {})]))
    # Version1 counts both entries
    both = tarsum(_tar([("f", b"first", 1, {})]), version=VERSION1), tarsum(
        _tar([("./f", b"second", 1, {})]), version=VERSION1)
    assert ts1.sum() not in both


def test_long_names_via_pax_and_gnu_are_hashed_as_the_full_name() -> None:
    long_name = "usr/share/" + "d" * 120 + "/file.txt"
    pax = _tar([(long_name, b"x", 3, {})], fmt=tarfile.PAX_FORMAT)
    gnu = _tar([(long_name, b"x", 3, {})], fmt=tarfile.GNU_FORMAT)
    ts_pax, ts_gnu = TarSum(), TarSum()
    ts_pax.update(pax)
    ts_gnu.update(gnu)
    assert ts_pax.entries == ts_gnu.entries == 1
    # both formats describe the same file; GNU magic makes uname/gname readable in both cases
    assert ts_pax.sum() == ts_gnu.sum()


@pytest.mark.parametrize("cut", [100, 512 + 3, 1000])
def test_truncated_layer_is_an_error(cut: int) -> None:
    layer, image_json = _fixture(DOCKER_VECTORS[0][0])
    ts = TarSum()
    ts.update(layer[:cut])
    with pytest.raises(TarSumError):
        ts.sum(image_json)


def test_garbage_is_rejected_on_update() -> None:
    with pytest.raises(TarSumError, match="checksum"):
        TarSum().update(b"not a tar archive at all" * 40)


def test_streaming_uses_constant_memory() -> None:
    """A 32 MiB entry fed in 64 KiB chunks must not be buffered."""
    size = 32 << 20
    header = tarfile.TarInfo("big.bin")
    header.size = size
    head = header.tobuf(format=tarfile.USTAR_FORMAT)
    chunk = b"\xab" * 65536
    ts = TarSum()
    tracemalloc.start()
    try:
        ts.update(head)
        for _ in range(size // len(chunk)):
            ts.update(chunk)
        ts.update(bytes(1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ts.entries == 1
    assert peak < 2 << 20


def test_payload_checksum_formula() -> None:
    layer, image_json = _fixture(DOCKER_VECTORS[1][0])
    expected = "sha256:" + hashlib.sha256(image_json + b"\n" + layer).hexdigest()
    assert payload_checksum(image_json, layer) == expected
    streaming = PayloadChecksum(image_json)
    for start in range(0, len(layer), 100):
        streaming.update(layer[start : start + 100])
    assert streaming.checksum == expected and streaming.bytes_in == len(layer)
    assert payload_checksum(image_json + b" ", layer) != expected


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError):
        TarSum(2)


def test_truncated_gzip_layer_is_an_error() -> None:
    layer, image_json = _fixture(DOCKER_VECTORS[0][0])
    compressed = gzip.compress(layer)
    ts = TarSum(decompress=True)
    ts.update(compressed[: len(compressed) - 4])  # the gzip trailer is missing
    with pytest.raises(TarSumError):
        ts.sum(image_json)

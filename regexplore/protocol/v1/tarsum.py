"""TarSum (Docker's layer checksum) and the v1 payload checksum, computed while streaming.

Two checksums travel with a legacy v1 push (``PUT /v1/images/<id>/checksum``):

* ``X-Docker-Checksum``: the *tarsum* of the layer, ``tarsum+sha256:<hex>`` (Docker 1.3 sends
  ``tarsum.NewTarSum(layer, false, tarsum.Version0).Sum(imageJSON)``);
* ``X-Docker-Checksum-Payload``: ``sha256:`` + sha256(image JSON + ``b"\\n"`` + layer bytes).

This module computes both from chunks, in constant memory with respect to the layer size (the
tarsum keeps one 64-character digest per archive entry, never file contents). It reads tar
headers itself, the way the Go ``archive/tar`` reader vendored by Docker 1.2/1.3 did, because
the checksum hashes the *parsed* header values.

The algorithm (``pkg/tarsum``, ``tarsum_spec.md``): for each entry, sha256 over the selected
header fields written as ``key + value`` (no separator) followed by the entry's data; the
per-entry hex digests are sorted; the final digest is sha256(extra + the sorted hex digests).

Selected header fields, in order (decimal integers as text, strings as raw bytes):
``name mode uid gid size mtime typeflag linkname uname gname devmajor devminor``.

* **Version0** (label ``tarsum``): the fields above. As in Docker 1.2/1.3, per-entry digests are
  kept in a map keyed by the entry name (leading ``./`` and trailing ``/`` trimmed), so when two
  entries share a name only the later one counts.
* **Version1** (label ``tarsum.v1``): ``mtime`` is dropped and the entry's extended attributes
  (PAX ``SCHILY.xattr.<key>`` records) are appended, sorted by key, as ``<key><value>``. Following
  the specification, entries with the same name are all kept. No published test vector exists
  for Version1; it is implemented from ``tarsum_spec.md``.

Header parsing follows the Go 1.3 reader: numeric fields are octal (or base-256 when the first
byte has its high bit set); ``uname``/``gname``/``devmajor``/``devminor``/``prefix`` are read only
for POSIX (``ustar\\0`` + ``00``) and GNU (``ustar  \\0``) magic, the device numbers only for
character/block devices; PAX extended headers (``x``) and GNU long names (``L``/``K``) apply to
the next entry; anything else, including a PAX global header (``g``), is an ordinary entry.
Differences from Go 1.3, all on malformed input only: an empty numeric field reads as 0 (Go
failed), and meta headers may be chained in any order.

Example
-------
>>> ts = TarSum()
>>> for chunk in iter(lambda: layer.read(65536), b""):   # doctest: +SKIP
...     ts.update(chunk)
>>> ts.sum(extra=image_json_bytes)                      # doctest: +SKIP
'tarsum+sha256:...'
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import zlib
from collections.abc import Iterable
from typing import BinaryIO, Protocol

__all__ = [
    "VERSION0",
    "VERSION1",
    "TarSumError",
    "TarSum",
    "PayloadChecksum",
    "tarsum",
    "payload_checksum",
    "version_label",
]

VERSION0 = 0
"""Docker 1.2/1.3 tarsum (label ``tarsum``): what a v1 push sends as ``X-Docker-Checksum``."""
VERSION1 = 1
"""tarsum.v1 per ``tarsum_spec.md`` (label ``tarsum.v1``): no mtime, adds xattrs."""

_LABELS = {VERSION0: "tarsum", VERSION1: "tarsum.v1"}
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_META_CAP = 1 << 20  # PAX / GNU long-name payloads larger than this are refused
_CHUNK = 1 << 16


class TarSumError(ValueError):
    """The stream is not a tar archive the tarsum algorithm can read (bad header, truncation)."""


def version_label(version: int) -> str:
    """Return the label of a tarsum version (``"tarsum"`` or ``"tarsum.v1"``).

    Raises
    ------
    ValueError
        For an unknown version.
    """
    try:
        return _LABELS[version]
    except KeyError:
        raise ValueError(f"unknown tarsum version {version!r} (known: 0, 1)") from None


class _Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _AutoDecompress:
    """Detects gzip / bzip2 / xz from the first bytes and decompresses chunk by chunk.

    Plain data passes through. Concatenated gzip members (``gzip a b > c``) are handled.
    """

    def __init__(self) -> None:
        self._head = b""
        self._kind: str | None = None
        self._dec: _Decompressor | None = None

    def feed(self, data: bytes) -> bytes:
        if self._kind is None:
            self._head += data
            if len(self._head) < 6:
                return b""
            data, self._head = self._head, b""
            self._choose(data)
        return self._run(data)

    def flush(self) -> bytes:
        """Return what is left; raise :class:`TarSumError` if a compressed stream is cut short."""
        out = b""
        if self._kind is None:  # fewer than 6 bytes in total
            data, self._head = self._head, b""
            self._choose(data)
            out = self._run(data)
        if self._dec is not None and not getattr(self._dec, "eof", True):
            raise TarSumError(f"{self._kind} stream ended early (truncated layer?)")
        return out

    def _choose(self, data: bytes) -> None:
        if data.startswith(b"\x1f\x8b"):
            self._kind, self._dec = "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif data.startswith(b"BZh"):
            self._kind, self._dec = "bzip2", bz2.BZ2Decompressor()
        elif data.startswith(b"\xfd7zXZ\x00"):
            self._kind, self._dec = "xz", lzma.LZMADecompressor()
        else:
            self._kind = "plain"

    def _run(self, data: bytes) -> bytes:
        if self._dec is None:
            return data
        try:
            out = [self._dec.decompress(data)]
            # another gzip member may follow the end of the first one
            while self._kind == "gzip":
                rest = getattr(self._dec, "unused_data", b"")
                if not rest.strip(b"\x00"):  # no further member (NUL padding is ignored)
                    break
                self._dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out.append(self._dec.decompress(rest))
        except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
            raise TarSumError(f"corrupt {self._kind} stream: {exc}") from None
        return b"".join(out)


def _cstring(b: bytes) -> bytes:
    """Bytes up to the first NUL (Go's ``cString``)."""
    end = b.find(b"\x00")
    return b if end < 0 else b[:end]


def _number(field: bytes) -> int:
    """Parse a numeric tar header field: octal text, or base-256 when the high bit is set.

    Raises
    ------
    TarSumError
        When the field is neither.
    """
    if field and field[0] & 0x80:
        value = field[0] & 0x7F
        for byte in field[1:]:
            value = (value << 8) | byte
        return value
    text = _cstring(field.lstrip(b" ").rstrip(b" \x00")).strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarSumError(f"invalid numeric field in tar header: {field!r}") from None


def _header_checksum_ok(block: bytes) -> bool:
    try:
        given = _number(block[148:156])
    except TarSumError:
        return False
    blanked = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blanked)
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return given in (unsigned, signed)


def _parse_pax(payload: bytes) -> dict[bytes, bytes]:
    """Parse PAX extended header records ``"<len> <key>=<value>\\n"``.

    Raises
    ------
    TarSumError
        On a malformed record.
    """
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            raise TarSumError("malformed PAX header record")
        try:
            length = int(payload[pos:space])
        except ValueError:
            raise TarSumError("malformed PAX header record length") from None
        end = pos + length
        if length <= 0 or end > len(payload) or space + 1 > end - 1:
            raise TarSumError("malformed PAX header record length")
        record = payload[space + 1 : end - 1]
        key, eq, value = record.partition(b"=")
        if not eq:
            raise TarSumError("PAX header record without '='")
        records[key] = value
        pos = end
    return records


class _Entry:
    """The parsed header values tarsum hashes (strings stay raw bytes, as Go hashes them)."""

    __slots__ = (
        "name", "mode", "uid", "gid", "size", "mtime", "typeflag", "linkname",
        "uname", "gname", "devmajor", "devminor", "xattrs",
    )

    def __init__(self, block: bytes) -> None:
        self.name = _cstring(block[0:100])
        self.mode = _number(block[100:108])
        self.uid = _number(block[108:116])
        self.gid = _number(block[116:124])
        self.size = _number(block[124:136])
        self.mtime = _number(block[136:148])
        self.typeflag = block[156:157]
        self.linkname = _cstring(block[157:257])
        self.uname = self.gname = b""
        self.devmajor = self.devminor = 0
        self.xattrs: dict[bytes, bytes] = {}
        magic = block[257:265]
        if magic == b"ustar\x0000":
            fmt = "star" if block[508:512] == b"tar\x00" else "posix"
        elif magic == b"ustar  \x00":
            fmt = "gnu"
        else:
            fmt = ""
        if fmt:
            self.uname = _cstring(block[265:297])
            self.gname = _cstring(block[297:329])
            if self.typeflag in (b"3", b"4"):
                self.devmajor = _number(block[329:337])
                self.devminor = _number(block[337:345])
            prefix = _cstring(block[345:476] if fmt == "star" else block[345:500])
            if prefix:
                self.name = prefix + b"/" + self.name

    def apply_pax(self, records: dict[bytes, bytes]) -> None:
        """Merge PAX records the way Go's ``mergePAX`` does (plus ``SCHILY.xattr.*``)."""
        for key, value in records.items():
            try:
                if key == b"path":
                    self.name = value
                elif key == b"linkpath":
                    self.linkname = value
                elif key == b"uname":
                    self.uname = value
                elif key == b"gname":
                    self.gname = value
                elif key == b"uid":
                    self.uid = int(value)
                elif key == b"gid":
                    self.gid = int(value)
                elif key == b"size":
                    self.size = int(value)
                elif key == b"mtime":
                    self.mtime = int(value.partition(b".")[0] or b"0")
                elif key.startswith(b"SCHILY.xattr."):
                    self.xattrs[key[len(b"SCHILY.xattr.") :]] = value
            except ValueError:
                raise TarSumError(f"invalid PAX value for {key.decode('latin-1')}") from None

    def selected(self, version: int) -> list[tuple[bytes, bytes]]:
        """The ordered ``(key, value)`` pairs the given tarsum version hashes."""
        fields: list[tuple[bytes, bytes]] = [
            (b"name", self.name),
            (b"mode", b"%d" % self.mode),
            (b"uid", b"%d" % self.uid),
            (b"gid", b"%d" % self.gid),
            (b"size", b"%d" % self.size),
            (b"mtime", b"%d" % self.mtime),
            (b"typeflag", self.typeflag),
            (b"linkname", self.linkname),
            (b"uname", self.uname),
            (b"gname", self.gname),
            (b"devmajor", b"%d" % self.devmajor),
            (b"devminor", b"%d" % self.devminor),
        ]
        if version == VERSION0:
            return fields
        del fields[5]  # mtime
        fields.extend(sorted(self.xattrs.items()))
        return fields


class TarSum:
    """Incremental tarsum of a tar stream fed in chunks of any size.

    Parameters
    ----------
    version
        :data:`VERSION0` (default, what Docker 1.3 pushes) or :data:`VERSION1`.
    decompress
        When true, a gzip, bzip2 or xz compressed stream is detected from its first bytes and
        decompressed on the fly (a registry receives v1 layers gzip-compressed). When false the
        input must be a plain tar.

    Raises
    ------
    ValueError
        For an unknown version.

    Notes
    -----
    :meth:`update` raises :class:`TarSumError` as soon as the stream stops being a readable tar;
    :meth:`sum` raises it if the stream ended inside a header or an entry's data.
    """

    def __init__(self, version: int = VERSION0, *, decompress: bool = False) -> None:
        self.version = version
        self.label = version_label(version)
        self._decompressor = _AutoDecompress() if decompress else None
        self._buf = bytearray()
        self._state = "header"  # header | data | pad | meta | zero | end
        self._remaining = 0  # data or padding bytes still to come
        self._entry: _Entry | None = None
        self._entry_hash: hashlib._Hash | None = None
        self._meta_kind = b""
        self._meta = bytearray()
        self._pad_after = 0
        self._pending_pax: dict[bytes, bytes] = {}
        self._pending_longname: bytes | None = None
        self._pending_longlink: bytes | None = None
        self._by_name: dict[bytes, str] = {}  # Version0: the later entry of a name wins
        self._sums: list[str] = []  # Version1: every entry counts
        self.bytes_in = 0
        """Bytes given to :meth:`update` so far (compressed bytes when ``decompress``)."""
        self.entries = 0
        """Archive entries hashed so far."""

    # -- feeding ----------------------------------------------------------------------------------
    def update(self, chunk: bytes) -> None:
        """Feed the next bytes of the stream.

        Raises
        ------
        TarSumError
            When the bytes cannot be read as a tar archive.
        """
        self.bytes_in += len(chunk)
        if self._decompressor is not None:
            chunk = self._decompressor.feed(bytes(chunk))
        self._consume(chunk)

    def _consume(self, chunk: bytes) -> None:
        if self._state == "end" or not chunk:
            return
        view = memoryview(chunk)
        while view:
            if self._state == "data":
                take = view[: self._remaining]
                assert self._entry_hash is not None
                self._entry_hash.update(take)
                view = view[len(take) :]
                self._remaining -= len(take)
                if self._remaining == 0:
                    self._finish_entry()
            elif self._state == "meta":
                take = view[: self._remaining]
                self._meta += take
                view = view[len(take) :]
                self._remaining -= len(take)
                if self._remaining == 0:
                    self._finish_meta()
            elif self._state == "pad":
                take = min(self._remaining, len(view))
                view = view[take:]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "header"
            elif self._state == "end":
                return
            else:  # header or zero: collect one whole block
                need = _BLOCK - len(self._buf)
                self._buf += view[:need]
                view = view[need:]
                if len(self._buf) == _BLOCK:
                    block = bytes(self._buf)
                    self._buf.clear()
                    self._on_block(block)

    def _on_block(self, block: bytes) -> None:
        if self._state == "zero":
            if block != _ZERO_BLOCK:
                raise TarSumError("a zero block followed by a non-zero block (corrupt archive)")
            self._state = "end"
            return
        if block == _ZERO_BLOCK:
            self._state = "zero"
            return
        if not _header_checksum_ok(block):
            raise TarSumError("tar header checksum mismatch (not a tar stream, or compressed?)")
        entry = _Entry(block)
        if entry.typeflag in (b"x", b"L", b"K"):
            if entry.size > _META_CAP:
                raise TarSumError("tar extended header too large")
            self._meta_kind = entry.typeflag
            self._meta.clear()
            self._pad_after = -entry.size % _BLOCK
            self._remaining = entry.size
            if entry.size == 0:
                self._finish_meta()
            else:
                self._state = "meta"
            return
        if self._pending_pax:
            entry.apply_pax(self._pending_pax)
        if self._pending_longname is not None:
            entry.name = self._pending_longname
        if self._pending_longlink is not None:
            entry.linkname = self._pending_longlink
        self._pending_pax, self._pending_longname, self._pending_longlink = {}, None, None
        if entry.size < 0:
            raise TarSumError("negative entry size in tar header")
        self._entry = entry
        self._entry_hash = hashlib.sha256()
        for key, value in entry.selected(self.version):
            self._entry_hash.update(key)
            self._entry_hash.update(value)
        self._remaining = entry.size
        if entry.size == 0:
            self._finish_entry()
        else:
            self._state = "data"

    def _finish_meta(self) -> None:
        payload = bytes(self._meta)
        self._meta.clear()
        if self._meta_kind == b"x":
            self._pending_pax.update(_parse_pax(payload))
        elif self._meta_kind == b"L":
            self._pending_longname = _cstring(payload)
        else:
            self._pending_longlink = _cstring(payload)
        self._remaining = self._pad_after
        self._state = "pad" if self._remaining else "header"

    def _finish_entry(self) -> None:
        assert self._entry is not None and self._entry_hash is not None
        digest = self._entry_hash.hexdigest()
        if self.version == VERSION0:
            name = self._entry.name
            if name.startswith(b"./"):
                name = name[2:]
            if name.endswith(b"/"):
                name = name[:-1]
            self._by_name[name] = digest
        else:
            self._sums.append(digest)
        self.entries += 1
        self._remaining = -self._entry.size % _BLOCK
        self._entry, self._entry_hash = None, None
        self._state = "pad" if self._remaining else "header"

    # -- results ----------------------------------------------------------------------------------
    def _check_complete(self) -> None:
        if self._decompressor is not None:
            self._consume(self._decompressor.flush())
        if self._state in ("data", "meta") or (self._state == "pad" and self._remaining) or self._buf:
            raise TarSumError("tar stream ended inside a header or an entry (truncated layer?)")

    @property
    def file_sums(self) -> list[str]:
        """The per-entry hex digests that enter the final sum, sorted."""
        sums = list(self._by_name.values()) if self.version == VERSION0 else list(self._sums)
        return sorted(sums)

    def hexdigest(self, extra: bytes | None = None) -> str:
        """Return the hex digest of the final sum (``extra`` is hashed first, e.g. image JSON).

        Raises
        ------
        TarSumError
            If the stream fed so far ends inside a header or an entry.
        """
        self._check_complete()
        final = hashlib.sha256()
        if extra:
            final.update(extra)
        for digest in self.file_sums:
            final.update(digest.encode("ascii"))
        return final.hexdigest()

    def sum(self, extra: bytes | None = None) -> str:
        """Return the checksum string, e.g. ``tarsum+sha256:<hex>`` or ``tarsum.v1+sha256:<hex>``.

        Docker 1.3 pushes ``sum(extra=<image JSON bytes>)`` as ``X-Docker-Checksum``.

        Raises
        ------
        TarSumError
            If the stream fed so far ends inside a header or an entry.
        """
        return f"{self.label}+sha256:{self.hexdigest(extra)}"

    def __repr__(self) -> str:
        return f"<TarSum {self.label} entries={self.entries} bytes_in={self.bytes_in}>"


class PayloadChecksum:
    """Streaming v1 payload checksum: ``sha256:`` + sha256(image JSON + ``b"\\n"`` + layer).

    This is ``X-Docker-Checksum-Payload`` (Docker >= 0.10; the Python registry verifies it).

    Parameters
    ----------
    image_json
        The image JSON exactly as uploaded with ``PUT /v1/images/<id>/json``.
    """

    def __init__(self, image_json: bytes) -> None:
        self._hash = hashlib.sha256(bytes(image_json) + b"\n")
        self.bytes_in = 0
        """Layer bytes fed so far."""

    def update(self, chunk: bytes) -> None:
        """Feed the next layer bytes (as uploaded, i.e. compressed if the layer is)."""
        self._hash.update(chunk)
        self.bytes_in += len(chunk)

    def hexdigest(self) -> str:
        """Return the hex digest of what was fed so far."""
        return self._hash.hexdigest()

    @property
    def checksum(self) -> str:
        """Return ``sha256:<hex>``, the header value."""
        return "sha256:" + self.hexdigest()

    def __repr__(self) -> str:
        return f"<PayloadChecksum bytes_in={self.bytes_in}>"


def _chunks(stream: BinaryIO | bytes | Iterable[bytes], chunk_size: int) -> Iterable[bytes]:
    if isinstance(stream, (bytes, bytearray, memoryview)):
        yield bytes(stream)
    elif hasattr(stream, "read"):
        read = stream.read  # type: ignore[union-attr]
        while chunk := read(chunk_size):
            yield chunk
    else:
        yield from stream  # type: ignore[misc]


def tarsum(
    stream: BinaryIO | bytes | Iterable[bytes],
    *,
    extra: bytes | None = None,
    version: int = VERSION0,
    decompress: bool = False,
    chunk_size: int = _CHUNK,
) -> str:
    """Return the tarsum of a tar given as a binary file object, bytes, or an iterable of chunks.

    Raises
    ------
    TarSumError
        When the data is not a readable (plain, unless ``decompress``) tar archive.
    ValueError
        For an unknown version.
    """
    ts = TarSum(version, decompress=decompress)
    for chunk in _chunks(stream, chunk_size):
        ts.update(chunk)
    return ts.sum(extra)


def payload_checksum(
    image_json: bytes, layer: BinaryIO | bytes | Iterable[bytes], *, chunk_size: int = _CHUNK
) -> str:
    """Return ``sha256:<hex>`` of ``image_json + b"\\n" + layer`` (``X-Docker-Checksum-Payload``)."""
    pc = PayloadChecksum(image_json)
    for chunk in _chunks(layer, chunk_size):
        pc.update(chunk)
    return pc.checksum

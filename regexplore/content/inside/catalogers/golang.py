"""Go modules from the build info Go (≥ 1.18) embeds in ELF executables (../shared/docs/inside.md A.6,
A.6.1; golang/go ``src/debug/buildinfo/buildinfo.go``, ``src/runtime/debug/mod.go``).

Which files are offered: every regular file of at least :data:`MIN_SIZE` bytes whose content starts with
``\\x7fELF`` (the pass sniffs), as syft offers every executable/shared-library MIME type; :func:`wants` asks
for the region of all of them (no name rule can tell a Go binary). Go finds its build info at the
``.go.buildinfo`` section, else in the first 64 KiB of the first loadable segment that is writable and not
executable. The section headers lie at the file's end, past what a stream pass keeps, and the section is often
further in: Debian's ``docker-registry`` keeps it 114 KiB into that segment, ``skopeo`` 92 KiB (after ``.got``
and ``.data``). So :func:`locate` reads the first 4 KiB's ELF and program headers and keeps the first
:data:`REGION` (1 MiB) of that segment, from the 16-byte boundary at or before its start, and
:func:`build_info` searches the magic at 16-byte-aligned offsets (as Go does inside the section) with
``bytes.find``. A build info placed further than 1 MiB into the segment is missed.

Packages: the main module (``mod``) and each dependency (``dep``, replaced by its ``=>`` line), as
``go version -m`` prints them, plus the ``stdlib`` package syft 1.18.1 adds per binary (type ``go-module``,
so it is in syft's set the comparison is made over: emitted to match it). A ``(devel)`` main module takes
its version from ``-ldflags -X main.version=`` in the build settings, else a pseudo-version from
``vcs.revision``/``vcs.time`` (A.6); syft's middle rule, a semver pattern searched over the whole binary's
bytes, is not done: those bytes are not kept (such a binary keeps ``(devel)`` here where syft may find a
version). The pre-1.18 pointer format is skipped with a reason.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from ..model import Cataloger, Evidence, Package, Skipped, Want
from .bounds import Malformed, need

__all__ = ["CATALOGERS", "BuildInfo", "build_info", "locate", "main_version", "modules", "read", "wants"]

MAGIC = b"\xff Go buildinf:"
#: how much of the writable segment is kept and searched (Go itself reads 64 KiB at the section's start)
REGION = 1024 * 1024
ALIGN = 16
PT_LOAD, PF_X, PF_W = 1, 1, 2
#: a program header table beyond the first 4 KiB, or with more entries, is not read
MAX_PHNUM = 256
#: smaller files are not offered (the pass does not even sniff them; syft 1.18.1 sniffs the MIME type of every
#: file). The result is the same: the gc toolchain links the Go runtime into every executable and shared
#: library it builds, several hundred KiB of code before any of the program's own (Go binaries on this
#: machine: 9.8 MB and up), and a file without the build info yields no package in syft either.
MIN_SIZE = 64 * 1024


def wants(path: str, mode: int, size: int) -> Want | None:
    """``"region"`` for every ELF file offered (the pass sniffs ``\\x7fELF``)."""
    return "region"


def locate(head: bytes) -> tuple[int, int] | None:
    """``(file offset, length)`` of the first writable, non-executable ``PT_LOAD`` segment's first
    :data:`REGION` bytes, the offset rounded down to a 16-byte boundary (so that offsets in the region
    keep the file's alignment), or None when the ELF header or program headers (which must lie in
    ``head``) do not say."""
    if len(head) < 52 or not head.startswith(b"\x7fELF") or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if wide:
        phoff, = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        entry, need_size = order + "II" + "QQQQQQ", 56
    else:
        phoff, = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
        entry, need_size = order + "IIIIIIII", 32
    if phentsize < need_size or phnum > MAX_PHNUM or phoff + phnum * phentsize > len(head):
        return None
    for i in range(phnum):
        fields = struct.unpack_from(entry, head, phoff + i * phentsize)
        if wide:
            p_type, p_flags, p_offset, _, _, p_filesz = fields[:6]
        else:
            p_type, p_offset, _, _, p_filesz, _, p_flags, _ = fields
        if p_type == PT_LOAD and p_flags & PF_W and not p_flags & PF_X:
            start = p_offset - p_offset % ALIGN
            return (start, min(p_offset + p_filesz - start, REGION)) if p_filesz else None
    return None


@dataclass
class BuildInfo:
    """What ``go version -m`` prints: the Go version, ``path``, the main module, deps and settings."""

    go_version: str
    path: str = ""
    main: tuple[str, str] | None = None
    deps: list[tuple[str, str]] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)


def build_info(region: bytes) -> BuildInfo | None:
    """The build info in ``region``, None when it has no Go build-info magic.

    Raises :class:`Malformed` for the pre-1.18 pointer format (its strings are addressed through the
    program headers, outside the region) or lengths that run past the region."""
    start = _find_magic(region)
    if start is None:
        return None
    flags = region[start + 15]
    need(bool(flags & 2), "Go build info in the pre-1.18 pointer format (not read)")
    pos = start + 32
    version, pos = _uvarint_string(region, pos)
    modinfo, _ = _uvarint_string(region, pos)
    info = BuildInfo(go_version=version.decode("utf-8", "replace"))
    if len(modinfo) >= 33 and modinfo[-17] == ord("\n"):
        _parse_modinfo(modinfo[16:-16].decode("utf-8", "replace"), info)
    return info


def _find_magic(region: bytes) -> int | None:
    """The first 16-byte-aligned offset of the magic with a whole 32-byte header after it, or None; each
    ``find`` moves to the next boundary, so the loop ends within ``len(region) / 16`` steps."""
    at = region.find(MAGIC)
    while at >= 0 and at % ALIGN:
        at = region.find(MAGIC, at + ALIGN - at % ALIGN)
    return at if at >= 0 and len(region) - at >= 32 else None


def _uvarint_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """A uvarint length then that many bytes, from ``pos``; both must lie inside ``data``."""
    length = shift = 0
    while True:
        need(pos < len(data) and shift <= 63, "Go build info: a length runs past the region")
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    need(pos + length <= len(data), f"Go build info: a {length}-byte string runs past the region")
    return data[pos:pos + length], pos + length


def _parse_modinfo(text: str, info: BuildInfo) -> None:
    """Fill ``info`` from modinfo lines (``runtime/debug.ParseBuildInfo``): ``=>`` replaces the line
    before it (the main module or the last dep)."""
    last: str | None = None
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        cols = rest.split("\t")
        if kind == "path":
            info.path = rest
        elif kind == "mod" and len(cols) >= 2:
            info.main, last = (cols[0], cols[1]), "mod"
        elif kind == "dep" and len(cols) >= 2:
            info.deps.append((cols[0], cols[1]))
            last = "dep"
        elif kind == "=>" and len(cols) >= 2 and last:
            if last == "mod":
                info.main = (cols[0], cols[1])
            else:
                info.deps[-1] = (cols[0], cols[1])
        elif kind == "build":
            key, _, value = rest.partition("=")
            info.settings[_unquote(key)] = _unquote(value)


def _unquote(text: str) -> str:
    """A build setting's key or value, which Go quotes (strconv.Quote) when it holds spaces or quotes."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
    return text


#: syft's ``knownBuildFlagPatterns`` (Go RE2, linear) are read by hand below: on Python's backtracking ``re``
#: their ``(\S+/)*`` is exponential on a hostile ``-ldflags`` (``-X main.version=a/a/a/...``)
_VERSION = re.compile(r"v?\d{1,32}.\d{1,32}.\d{1,32}[-\w]*")  # syft's version part, digits bounded
#: the two patterns' last key words, tried in syft's order (every ``...ver`` setting before any ``...tag`` one)
_VERSION_KEYS = (re.compile(r"[a-zA-Z0-9]*[vV]er(?:sion)?"), re.compile(r"[a-zA-Z0-9]*[tT]ag"))
_LDFLAGS_CAP = 16 * 1024  # characters of -ldflags read; more is not a real build
_TOKEN_CAP = 512  # characters of one ``-X`` token searched; a longer one holds no version syft would report
_VCS_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")
DEVEL = "(devel)"


def main_version(info: BuildInfo, path: str, version: str) -> str:
    """The main module's version as syft gives it: as recorded unless ``(devel)``; then ``v`` + the
    ``-X main.version=...`` (or ``<module>/...``) value of ``-ldflags``, else a pseudo-version
    ``v0.0.0-YYYYmmddHHMMSS-<12 hex>`` from ``vcs.time``/``vcs.revision``, else ``(devel)``."""
    if version != DEVEL:
        return version
    found = _ldflags_version(info.settings.get("-ldflags", "")[:_LDFLAGS_CAP], path)
    if found:
        return found if found.startswith("v") else "v" + found
    revision, when = info.settings.get("vcs.revision", ""), _VCS_TIME.fullmatch(info.settings.get("vcs.time", ""))
    if revision and when:
        return "v0.0.0-" + "".join(when.groups()) + "-" + revision[:12]
    return DEVEL


def _ldflags_version(ldflags: str, path: str) -> str | None:
    """The version an ``-X <main or path/...>.<word>ver|version=[dirs/]<version>`` setting of ``ldflags``
    gives, else a ``...tag=`` one (syft's patterns, each ``-X`` token on its own), the first one found;
    None when none."""
    tokens = [token[:_TOKEN_CAP] for token in ldflags.split()]
    for key_word in _VERSION_KEYS:
        for token in tokens:
            owner = token.find(path + "/") if path else -1
            for eq in (i for i, c in enumerate(token) if c == "="):
                key, value = token[:eq], token[eq + 1:]
                dot = key.rfind(".")
                if dot < 0 or not key_word.fullmatch(key, dot + 1):
                    continue
                if key[:dot].endswith("main") or 0 <= owner <= dot - len(path) - 1:
                    found = _after_dirs(value)
                    if found:
                        return found
    return None


def _after_dirs(value: str) -> str | None:
    """syft's ``(\\S+/)*(?P<version>...)`` on one token's value: the version after the last ``/`` that
    allows one (not a leading one), else at the start; None when none matches."""
    starts = [i + 1 for i, c in enumerate(value) if c == "/" and i > 0][::-1] + [0]
    for start in starts:
        match = _VERSION.match(value, start)
        if match:
            return match[0]
    return None


def modules(info: BuildInfo) -> list[tuple[str, str]]:
    """``(path, version)`` of the main module then the deps, as syft lists them: without a ``mod`` line
    (GOPATH builds) or with ``command-line-arguments``, the one ``(devel)`` dep becomes the main module,
    else the ``path`` line does."""
    deps, main = list(info.deps), info.main
    if (main is None and info.path) or (main and main[0] == "command-line-arguments"):
        devel = [i for i, (_, version) in enumerate(deps) if version == DEVEL]
        main = deps.pop(devel[0]) if len(devel) == 1 else (info.path, DEVEL)
    head = [(main[0], main_version(info, *main))] if main and main[0] else []
    return head + [(path, version) for path, version in deps if path]


def read(path: str, data: bytes) -> Evidence:
    """The Go modules of the build info in ``data`` (an ELF's located region) plus syft's ``stdlib``
    package (version ``go1.x.y``, purl version ``1.x.y``); an empty Evidence for an ELF that is not a Go
    binary, a skipped entry for the pre-1.18 format. Raises :class:`Malformed` when lengths lie."""
    try:
        info = build_info(data)
    except Malformed as exc:
        if "pre-1.18" in str(exc):
            return Evidence(skipped=(Skipped(path, str(exc)),))
        raise
    if info is None:
        return Evidence()
    packages = [Package(name=name, version=version, type="go-module", path=path) for name, version in modules(info)]
    go = info.go_version.split(" ")[0]  # "go1.22.1 X:boringcrypto": experiments follow a space
    if go.startswith("go"):
        packages.append(Package(name="stdlib", version=go, type="go-module", path=path,
                                purl_parts=(("version", go[2:]),)))
    return Evidence(packages=tuple(packages))


CATALOGERS = (Cataloger(name="go-module-binary-cataloger", type="go-module", wants=wants, read=read,
                        cap=REGION, sniff=b"\x7fELF", locate=locate, min_size=MIN_SIZE),)

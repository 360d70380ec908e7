"""Names of tar members: the ``tar -t`` path, the canonical key, the text shown in tables (and its exact
bytes back), and whiteout markers."""

from __future__ import annotations

import re
from typing import Literal

from ...errors import UnsafeLayer

__all__ = ["canonical_path", "raw_path", "shown_name"]

_WH_PREFIX = ".wh."
_WH_OPAQUE = ".wh..wh..opq"
_WH_META_PREFIX = ".wh..wh."  # AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): skipped by merge/extract


def _tar_path(name: str) -> str:
    """``tar -t`` name minus leading ``./`` (repeated) and trailing ``/``; ``./`` itself becomes ``.``."""
    while name.startswith("./"):
        name = name[2:]
    stripped = name.rstrip("/")
    if stripped:
        return stripped
    if name.startswith("/"):
        return "/"
    return "."


def canonical_path(path: str) -> str:
    """Return ``path`` with empty and ``.`` components dropped (so no leading/trailing ``/``); ``..`` is
    kept as a name. The root is ``""``. Used as the key by :func:`merge`, :func:`diff`, :func:`read_file`."""
    if not (path.startswith(("/", "./")) or path.endswith(("/", "/.")) or "//" in path or "/./" in path
            or path in ("", ".")):
        return path  # already canonical (most tar names): no split and join
    return "/".join(p for p in path.split("/") if p not in ("", "."))


# Names in tables. tar names are bytes; they are decoded as UTF-8 with surrogateescape (tarfile's way), so a
# byte that is not UTF-8 becomes a lone surrogate: exact, but not text (pyarrow, print, JSON refuse it).
_SHOW = re.compile(r"[\udc80-\udcff]|\\(?=\\|x[89a-fA-F][0-9a-fA-F]|[\udc80-\udcff])")
_UNSHOW = re.compile(r"\\(\\|x[89a-fA-F][0-9a-fA-F])")


def shown_name(name: str) -> str:
    r"""``name`` (a tar name decoded with surrogateescape) as valid text: the form the tables show.

    Each byte that is not UTF-8 becomes ``\xNN`` (``80``-``ff``), and a backslash is doubled where it
    would otherwise read as such an escape or as the first of ``\\``; everything else is unchanged (a
    systemd ``dev-sda\x2d1.device`` stays as is). :func:`raw_path` gives the exact bytes back.
    """
    if "\\" not in name and name.isascii():
        return name
    return _SHOW.sub(lambda m: "\\\\" if m[0] == "\\" else f"\\x{ord(m[0]) - 0xDC00:02x}", name)


def raw_path(shown: str) -> bytes:
    r"""The exact bytes of a name as a ``files`` or ``diff`` table shows it (:func:`shown_name`); pass
    them to ``read_file``. ``raw_path(r"caf\xe9")`` is ``b"caf\xe9"`` (a Latin-1 name)."""
    out: list[bytes] = []
    pos = 0
    for m in _UNSHOW.finditer(shown):
        out.append(shown[pos:m.start()].encode("utf-8", "surrogateescape"))
        out.append(b"\\" if m[1] == "\\" else bytes([int(m[1][1:], 16)]))
        pos = m.end()
    out.append(shown[pos:].encode("utf-8", "surrogateescape"))
    return b"".join(out)


def _whiteout_kind(path: str) -> Literal["file", "opaque"] | None:
    if _WH_PREFIX not in path:  # nearly every name: one substring search
        return None
    base = path.rsplit("/", 1)[-1]
    if base == _WH_OPAQUE:
        return "opaque"
    if base.startswith(_WH_PREFIX) and not base.startswith(_WH_META_PREFIX):
        return "file"
    return None


def _whiteout_target(cpath: str, entry: str) -> str:
    """The path a ``.wh.<name>`` whiteout at ``cpath`` removes. Raises :class:`UnsafeLayer` when the name
    is empty, ``.`` or ``..`` (``.wh.``, ``.wh..``, ``.wh...``): they would remove the folder itself or its
    parent (containerd refuses them as an invalid archive)."""
    head, _, base = cpath.rpartition("/")
    name = base[len(_WH_PREFIX):]
    if name in ("", ".", ".."):
        raise UnsafeLayer(f"invalid whiteout name {entry!r}", entry=entry)
    return f"{head}/{name}" if head else name


def _is_aufs_meta(cpath: str) -> bool:
    """True for AUFS metadata (``.wh..wh.plnk/...``), which merge and extract skip."""
    return cpath.split("/", 1)[0].startswith(_WH_META_PREFIX) and cpath != _WH_OPAQUE



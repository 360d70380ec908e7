"""The rows the layer functions return: :class:`Entry` (one tar member), :class:`DiffRow`,
:class:`ExtractSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DiffRow", "Entry", "EntryType", "ExtractSummary"]


EntryType = Literal["file", "dir", "symlink", "hardlink", "other"]
# --------------------------------------------------------------------------------------------- rows
@dataclass(frozen=True, slots=True)
class Entry:
    """One tar member of one layer.

    ``path`` as ``tar -t`` prints it minus a leading ``./`` and a trailing ``/`` (see module doc).
    ``type`` is ``file`` | ``dir`` | ``symlink`` | ``hardlink`` | ``other`` (devices, fifos).
    ``size`` is the header size (0 for hardlinks, links and dirs). ``mode`` the permission bits including
    setuid/setgid/sticky (``0o7777`` part). ``mtime`` is **seconds since the epoch, UTC, as a float**
    (pax headers can carry sub-second times). ``linkname`` is the link target ("" if not a link; for
    hardlinks a path inside the archive). ``whiteout`` is ``None``, ``"file"`` for ``.wh.<name>`` or
    ``"opaque"`` for ``.wh..wh..opq``; ``path`` of a whiteout row is the marker's own path.
    """

    layer: str | None
    path: str
    type: EntryType
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    whiteout: Literal["file", "opaque"] | None
    #: ``sha256:<hex>`` of a regular file's content when listed with ``hash_files=True``, else None
    content: str | None = None


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One difference between two file lists: ``change`` is ``added`` | ``removed`` | ``modified``;
    ``size_a``/``size_b`` are None on the side where the path is absent; ``fields`` names the compared
    attributes that differ, comma-separated (``""`` for added/removed)."""

    path: str
    change: Literal["added", "removed", "modified"]
    size_a: int | None
    size_b: int | None
    fields: str


@dataclass(slots=True)
class ExtractSummary:
    """What :func:`extract` did: counts per kind, whiteouts applied, and file bytes written."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    whiteouts: int = 0
    bytes_written: int = 0
    skipped: list[str] = field(default_factory=list)



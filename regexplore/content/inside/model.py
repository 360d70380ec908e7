"""The types shared by the layer pass and the catalogers: what a cataloger reads from one file
(:class:`Package`, :class:`Skipped`), how it says which files it wants (:class:`Cataloger`), and what one
layer's pass keeps (:class:`LayerScan`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Cataloger", "Evidence", "LayerScan", "Package", "Skipped", "Want"]

#: syft's type names, the ones regexplore catalogs
TYPES = ("deb", "apk", "rpm", "python", "npm", "go-module", "java-archive")


@dataclass(frozen=True, slots=True)
class Package:
    """One package as a cataloger read it from one evidence file (no distro, no layer yet).

    ``version`` is syft's version string (rpm ``[epoch:]version-release``); ``source`` the source package
    (dpkg ``Source`` name, apk origin, rpm source rpm file name); ``source_version`` dpkg's
    ``Source: name (version)``. ``purl_parts`` carries what :mod:`.purl` needs beyond these (e.g. rpm
    ``version``/``release``/``epoch``, a Maven ``group``, a Go module's path) as a small dict.
    ``path`` is the canonical path (no leading ``/``) of the file it was read from, inside the image (for
    a jar nested in a jar: ``outer.jar:inner.jar``)."""

    name: str
    version: str
    type: str
    path: str
    arch: str | None = None
    source: str | None = None
    source_version: str | None = None
    licenses: tuple[str, ...] = ()
    purl_parts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file (or a part of one) a cataloger could not read: the inventory goes on without it."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a cataloger made of one file: packages, support facts (e.g. a dpkg copyright file's licenses:
    ``{"licenses": ("GPL-2",)}``, os-release fields) and what it skipped."""

    packages: tuple[Package, ...] = ()
    facts: tuple[tuple[str, Any], ...] = ()
    skipped: tuple[Skipped, ...] = ()


#: how much of a wanted file the layer pass keeps: ``"whole"`` (the file, up to the cataloger's ``cap``) or
#: ``"region"`` (the pass reads the file's first :data:`HEAD` bytes, asks the cataloger's ``locate(head)``
#: for an ``(offset, length)`` inside the file, and keeps those bytes: an ELF's Go build info, without the
#: rest of a 50 MB binary). A file shorter than what is asked is kept as far as it goes.
Want = Literal["whole", "region"]
HEAD = 4096


@dataclass(frozen=True)
class Cataloger:
    """A cataloger: ``wants(path, mode, size)`` says whether (and how) the pass keeps a regular file
    (``path`` canonical, no leading ``/``) and ``read(path, data)`` turns the kept bytes into
    :class:`Evidence`. ``read`` may raise anything on bad input: the pass records a :class:`Skipped` with
    the reason and goes on. ``cap`` is the most bytes kept of one file (a bigger file is skipped with a
    reason). ``locate(head)`` (for ``"region"``): the ``(offset, length)`` to keep, or None for nothing.

    Which files ``wants`` is asked about (the pass runs for every file of every layer, so most files must
    be turned away by a dict lookup, not a call): with any of the hints ``names`` (file names),
    ``folders`` (names of the folder a file is directly in) or ``suffixes`` (lower-case ``.ext``
    endings, compared case-insensitively) set, only files matching one of them; with none, every file
    (slow: for tests, or a cataloger sniffing content). Then ``min_size``: smaller files are not offered;
    then ``sniff``: only files whose content starts with these bytes (e.g. ``b"\\x7fELF"``). ``wants``
    still decides: the hints only have to include every file it may want."""

    name: str
    type: str
    wants: Callable[[str, int, int], Want | None]
    read: Callable[[str, bytes], Evidence]
    cap: int = 16 * 1024 * 1024
    sniff: bytes | None = None
    locate: Callable[[bytes], tuple[int, int] | None] | None = None
    names: frozenset[str] = frozenset()
    folders: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    min_size: int = 0

    def __post_init__(self) -> None:
        """Raises ValueError for a suffix the pass cannot look up (not ``.ext`` in lower case)."""
        for suffix in self.suffixes:
            if not (suffix.startswith(".") and suffix.count(".") == 1 and suffix == suffix.lower()):
                raise ValueError(f"cataloger {self.name}: suffix {suffix!r} is not a lower-case '.ext'")


@dataclass
class LayerScan:
    """One layer's pass, cached by its digest: the listing (``entries``, exactly what ``files()`` lists)
    and, per kept path, the evidence read from it (``evidence[path]`` is a list: one per cataloger that
    wanted it). ``skipped`` collects what could not be read; ``bytes_out`` the decompressed size."""

    digest: str
    entries: list = field(default_factory=list)
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    bytes_out: int = 0

"""rpm packages from the rpm databases syft reads (../shared/docs/inside.md A.3): ``rpmdb.sqlite``,
BerkeleyDB ``Packages`` and NDB ``Packages.db`` under ``{var/lib,usr/share,usr/lib/sysimage}/rpm/`` at any
depth. One :class:`~..model.Package` per header blob, named and versioned as syft does.
"""

from __future__ import annotations

import sqlite3

from ..model import Cataloger, Evidence, Package, Skipped, Want
from . import rpmheader as tags
from .bounds import Malformed
from .rpmdb import blobs
from .rpmheader import Header

__all__ = ["CATALOGERS", "read", "wants", "package_of"]

DB_NAMES = frozenset({"Packages", "Packages.db", "rpmdb.sqlite"})
DB_DIRS = ("var/lib/rpm", "usr/share/rpm", "usr/lib/sysimage/rpm")
#: a real rpmdb.sqlite of a full distribution is tens of MB; the blobs are the bulk of it
CAP = 256 * 1024 * 1024


def wants(path: str, mode: int, size: int) -> Want | None:
    """``"whole"`` for an rpm database file (syft's glob ``**/{var/lib,usr/share,usr/lib/sysimage}/rpm/
    {Packages,Packages.db,rpmdb.sqlite}``), else None."""
    head, _, name = path.rpartition("/")
    if name not in DB_NAMES:
        return None
    return "whole" if any(head == d or head.endswith("/" + d) for d in DB_DIRS) else None


def package_of(header: Header, path: str) -> Package:
    """The package a header describes: version ``[EPOCH:]VERSION-RELEASE`` (syft's ``toELVersion``),
    source = the SOURCERPM file name (None for ``(none)``), licenses = ``(LICENSE,)``; ``purl_parts``
    carries ``vr`` = ``VERSION-RELEASE`` and ``epoch`` when the header has one.

    Raises :class:`~.bounds.Malformed` when a value lies or the header has no name."""
    name = header.string(tags.NAME)
    if not name:
        raise Malformed("rpm header without a NAME")
    vr = f"{header.string(tags.VERSION) or ''}-{header.string(tags.RELEASE) or ''}"
    epoch = header.integer(tags.EPOCH)
    parts = (("vr", vr),) if epoch is None else (("vr", vr), ("epoch", str(epoch)))
    license_ = _none(header.string(tags.LICENSE))
    return Package(name=name, version=vr if epoch is None else f"{epoch}:{vr}", type="rpm", path=path,
                   arch=_none(header.string(tags.ARCH)), source=_none(header.string(tags.SOURCERPM)),
                   licenses=(license_,) if license_ else (), purl_parts=parts)


def _none(value: str | None) -> str | None:
    """rpm prints a missing value as ``(none)``: both mean None."""
    return None if value in (None, "", "(none)") else value


def read(path: str, data: bytes) -> Evidence:
    """Every package of one rpm database file. A header that does not parse is skipped (with its number
    and reason) and the others are kept; a database that cannot be opened, or whose walk breaks (a page
    loop, a lying length), ends with a skipped entry, keeping the packages read before the break."""
    packages: list[Package] = []
    skipped: list[Skipped] = []
    try:
        for number, blob in enumerate(blobs(data)):
            try:
                packages.append(package_of(Header(blob), path))
            except Malformed as exc:
                skipped.append(Skipped(path, f"rpm header #{number}: {exc}"))
    except (Malformed, sqlite3.DatabaseError) as exc:
        skipped.append(Skipped(path, f"rpm database: {exc}"))
    return Evidence(packages=tuple(packages), skipped=tuple(skipped))


CATALOGERS = (Cataloger(name="rpm-db-cataloger", type="rpm", wants=wants, read=read, cap=CAP),)

"""The one pass over a layer: :func:`scan_layer` lists it exactly as :func:`~..layers.iter_entries` does and,
through the scanner's capture hook, reads the files the catalogers want (bounded), keeping their
:class:`~.model.Evidence` in a :class:`~.model.LayerScan`. A cataloger's failure or a file over its cap is a
:class:`~.model.Skipped` (logged on ``regexplore.inside``), never an exception out of the pass."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..layers import LayerStream, canonical_path
from ..layers.listing import MemberData, _list_members
from ..layers.tarinfo import _entry_of, _RawMember
from .model import HEAD, Cataloger, Evidence, LayerScan, Skipped

__all__ = ["default_catalogers", "scan_layer"]

log = logging.getLogger("regexplore.inside")


def default_catalogers() -> tuple[Cataloger, ...]:
    """Every package cataloger (:func:`.catalogers.all_catalogers`) plus the os-release reader. While a
    cataloger module is not in the tree yet (they arrive from their own branches) there are no package
    catalogers, with a warning; any other import error is raised."""
    from . import catalogers
    from .osrelease import CATALOGERS

    try:
        found = catalogers.all_catalogers()
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith(f"{catalogers.__name__}."):
            raise
        log.warning("no package catalogers: %s is missing", exc.name)
        found = ()
    return (*found, *CATALOGERS)


class _Pass:
    """The capture hook of one layer's pass: which catalogers want a file, and reading what they keep."""

    def __init__(self, scan: LayerScan, catalogers: Sequence[Cataloger]) -> None:
        self.scan = scan
        self.plain = [c for c in catalogers if not c.sniff]
        self.sniffing = [c for c in catalogers if c.sniff]
        self.sniff_len = max((len(c.sniff or b"") for c in self.sniffing), default=0)

    def skip(self, path: str, reason: str) -> None:
        log.info("skipped %s in layer %s: %s", path, self.scan.digest, reason)
        self.scan.skipped.append(Skipped(path, reason))

    def wanting(self, c: Cataloger, path: str, mode: int, size: int) -> str | None:
        try:
            return c.wants(path, mode, size)
        except Exception as exc:  # noqa: BLE001 - a cataloger's bug skips the file, not the layer
            self.skip(path, f"{c.name}: wants() failed: {exc!r}")
            return None

    def __call__(self, m: _RawMember, data: MemberData) -> None:
        path, size, mode = canonical_path(m[0]), m[2], m[3]
        chosen = [(c, w) for c in self.plain if (w := self.wanting(c, path, mode, size))]
        if self.sniffing and size >= self.sniff_len:
            head = data.peek(self.sniff_len)
            chosen += [(c, w) for c in self.sniffing
                       if head.startswith(c.sniff or b"") and (w := self.wanting(c, path, mode, size))]
        if chosen:
            self.keep(path, data, chosen)

    def keep(self, path: str, data: MemberData, chosen: list[tuple[Cataloger, str]]) -> None:
        """Read what the catalogers in ``chosen`` keep of the file at ``data`` and record their evidence."""
        wholes = []
        for c, how in chosen:
            if how == "whole" and data.size > c.cap:
                self.skip(path, f"{c.name}: {data.size} bytes, over the {c.cap}-byte cap")
            elif how == "whole":
                wholes.append(c)
        regions = [c for c, how in chosen if how == "region" and c.locate is not None]
        if wholes:
            content = data.read(data.size)
            for c in wholes:
                self.read(c, path, content)
            for c in regions:
                self.read_region(c, path, content)
        elif regions:
            self.read_regions(path, data, regions)

    def read_region(self, c: Cataloger, path: str, content: bytes) -> None:
        """The region ``c`` locates in the whole ``content`` of the file."""
        where = self.locate(c, path, content[:HEAD])
        if where is not None:
            self.read(c, path, content[where[0]:where[0] + where[1]])

    def read_regions(self, path: str, data: MemberData, regions: list[Cataloger]) -> None:
        """Each region cataloger's located bytes, read forward through the file (overlaps are skipped)."""
        head = data.peek(HEAD)
        spots = [(where, c) for c in regions if (where := self.locate(c, path, head)) is not None]
        for (offset, length), c in sorted(spots, key=lambda s: s[0]):
            try:
                data.seek(offset)
            except ValueError:
                self.skip(path, f"{c.name}: region at {offset} overlaps another cataloger's")
                continue
            self.read(c, path, data.read(length))

    def locate(self, c: Cataloger, path: str, head: bytes) -> tuple[int, int] | None:
        try:
            where = c.locate(head) if c.locate is not None else None
        except Exception as exc:  # noqa: BLE001
            self.skip(path, f"{c.name}: locate() failed: {exc!r}")
            return None
        if where is not None and not (0 <= where[0] and 0 <= where[1] <= c.cap):
            self.skip(path, f"{c.name}: region {where} outside 0..{c.cap}")
            return None
        return where

    def read(self, c: Cataloger, path: str, content: bytes) -> None:
        try:
            evidence = c.read(path, content)
        except Exception as exc:  # noqa: BLE001 - bad input never stops the inventory
            self.skip(path, f"{c.name}: {type(exc).__name__}: {exc}")
            return
        if not isinstance(evidence, Evidence):
            self.skip(path, f"{c.name}: read() returned {type(evidence).__name__}, not Evidence")
            return
        for s in evidence.skipped:
            log.info("skipped %s in layer %s: %s", s.path, self.scan.digest, s.reason)
        if evidence.packages or evidence.facts or evidence.skipped:
            self.scan.evidence.setdefault(path, []).append(evidence)


def scan_layer(stream: LayerStream, digest: str, catalogers: Sequence[Cataloger], *,
               threaded: bool = True) -> LayerScan:
    """One pass over the decompressed tar ``stream`` of layer ``digest``: its entries (``layer`` =
    ``digest``, as ``iter_entries`` lists them) and the evidence of ``catalogers``. The stream is read to its
    end (so a verifying source checks its digest). Raises what :func:`~..layers.iter_entries` raises for a
    broken layer (:class:`UnsafeLayer`, :class:`UnsupportedMediaType`, :class:`RegistryError`); a bad *file*
    is only recorded in ``skipped``."""
    scan = LayerScan(digest)
    hook = _Pass(scan, catalogers) if catalogers else None
    scan.entries = [_entry_of(m, digest) for m in _list_members(stream, drain=True, threaded=threaded,
                                                                 capture=hook)]
    scan.bytes_out = stream.bytes_out
    return scan

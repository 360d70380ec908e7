"""Reading an image's layers for the facade: one opener per layer (verified as it streams, counted
against the image's decompression budget, shared through a :class:`Replay` when a digest is listed
twice) and the per-layer listings :meth:`Registry.files`, ``diff`` and the inside-an-image views build on.

The inside-an-image views (``packages``, ``efficiency``, ``os_release``) and plain ``files()`` share one
pass per layer (:func:`~regexplore.content.inside.scan.scan_layer`), cached per Registry by layer digest
(:class:`ScanCache`), so images sharing layers read each of them once.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from .content.budget import ImageBudget, Replay
from .errors import UnsupportedMediaType
from .reference import ImageRef

__all__ = ["MAX_CACHED_ENTRIES", "ImageLayers", "ScanCache", "files_columns"]

#: most layer entries the scan cache of one Registry holds (a few hundred MB at most)
MAX_CACHED_ENTRIES = 1_000_000


class ScanCache:
    """Layer scans by layer digest, least recently used dropped first once the scans hold more than
    ``max_entries`` entries in all (a bigger scan is not kept). Thread-safe."""

    def __init__(self, max_entries: int = MAX_CACHED_ENTRIES) -> None:
        self.max_entries = max_entries
        self._scans: OrderedDict[str, Any] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, digest: str) -> Any:
        """The cached scan of ``digest`` (now the most recently used), or None."""
        with self._lock:
            scan = self._scans.get(digest)
            if scan is not None:
                self._scans.move_to_end(digest)
            return scan

    def put(self, scan: Any) -> None:
        """Keep ``scan`` (a :class:`~regexplore.content.inside.model.LayerScan`), dropping old ones to fit."""
        n = len(scan.entries)
        with self._lock:
            if n > self.max_entries or scan.digest in self._scans:
                return
            self._scans[scan.digest] = scan
            self._size += n
            while self._size > self.max_entries:
                _, old = self._scans.popitem(last=False)
                self._size -= len(old.entries)

    def clear(self) -> None:
        with self._lock:
            self._scans.clear()
            self._size = 0


@contextlib.contextmanager
def _naming(desc: dict) -> Iterator[None]:
    """Say which blob an :class:`UnsupportedMediaType` came from (an artifact's JSON, an SBOM...)."""
    try:
        yield
    except UnsupportedMediaType as exc:
        raise UnsupportedMediaType(f"{desc['digest'][:19]}… ({desc.get('mediaType') or 'no media type'}): "
                                   f"{exc.message}", status=exc.status, code=exc.code, url=exc.url,
                                   detail=exc.detail) from exc


class ImageLayers:
    """The layer plumbing of one :class:`~regexplore.Registry` (``reg._layers``)."""

    def __init__(self, reg: Any) -> None:  # the Registry (not imported: it imports this module)
        self._reg = reg
        #: the catalogers of the layer pass (None: :func:`~regexplore.content.inside.scan.default_catalogers`)
        self.catalogers: tuple | None = None
        self.cache = ScanCache()

    def sources(self, ref: Any, platform: str | None) -> tuple[ImageRef, list[dict]]:
        """The image's layer descriptors (oldest first) for ``ref``."""
        r = self._reg.ref(ref)
        image, _ = self._reg._resolver.resolve(r, platform)
        return r, [d for d in image.layer_descriptors if d.get("digest")]

    def open_layer(self, repo: str, desc: dict, budget: ImageBudget | None = None, max_bytes: int | None = None,
                    replay: Replay | None = None) -> Callable[[], Any]:
        """A zero-argument callable that opens ``desc``'s layer as a :class:`~regexplore.content.layers.LayerStream`
        (verified as it streams; through ``replay`` when given) whose decompressed bytes count against
        ``budget``; ``max_bytes`` caps the layer (None: ``REGEXPLORE_MAX_LAYER_BYTES``)."""
        from .content.blobs import open_verified_stream
        from .content.layers import open_layer_stream

        def fetch() -> Iterator[bytes]:
            return open_verified_stream(self._reg, repo, desc["digest"], desc.get("size"))

        def open_stream() -> Any:
            stream = open_layer_stream(replay.chunks(fetch) if replay else fetch(), desc.get("mediaType"),
                                       max_bytes=max_bytes)
            stream.budget = budget
            return stream

        return open_stream

    def openers(self, r: ImageRef, descs: list[dict], budget: ImageBudget, replays: dict[str, Replay],
                 max_bytes: int | None = None) -> list[Callable[[], Any]]:
        """One opener per layer of ``descs`` (:meth:`open_layer`); a digest listed more than once shares a
        :class:`Replay` (added to ``replays``, which the caller closes), so it is fetched once."""
        counts = Counter(d["digest"] for d in descs)
        for digest, n in counts.items():
            if n > 1 and digest not in replays:
                replays[digest] = Replay()
        return [self.open_layer(r.repository, d, budget, max_bytes, replays.get(d["digest"])) for d in descs]

    def entries(self, repo: str, desc: dict, max_bytes: int | None, hash_files: bool = False,
                       budget: ImageBudget | None = None) -> tuple[list, int]:
        """(entries, decompressed bytes) of one layer, read from the registry."""
        from .content.layers import iter_entries

        with _naming(desc):
            stream = self.open_layer(repo, desc, budget, max_bytes)()
            return list(iter_entries(stream, desc["digest"], hash_files=hash_files)), stream.bytes_out

    def scan(self, repo: str, desc: dict, budget: ImageBudget) -> Any:
        """One layer's pass (:func:`~regexplore.content.inside.scan.scan_layer`), read from the registry."""
        from .content.inside.scan import default_catalogers, scan_layer

        if self.catalogers is None:
            self.catalogers = default_catalogers()
        with _naming(desc):
            return scan_layer(self.open_layer(repo, desc, budget)(), desc["digest"], self.catalogers)

    def scans(self, r: ImageRef, descs: list[dict]) -> list:
        """The :class:`~regexplore.content.inside.model.LayerScan` of each layer of ``descs``, in order:
        from the cache, else read (each digest once, in parallel) and cached. Every listed layer, read or
        not, counts its decompressed bytes against one :class:`ImageBudget` for ``r``."""
        budget = ImageBudget(r)
        found = {d["digest"]: self.cache.get(d["digest"]) for d in descs}
        todo = {digest: d for d in descs if found[(digest := d["digest"])] is None}
        for scan in self._reg._map(lambda d: self.scan(r.repository, d, budget), todo.values()):
            found[scan.digest] = scan
            self.cache.put(scan)
        for d in descs:
            if todo.pop(d["digest"], None) is None:  # not read in this call: counted as if read again
                budget.charge(found[d["digest"]].bytes_out)
        return [found[d["digest"]] for d in descs]

    def listings(self, r: ImageRef, descs: list[dict], max_bytes: int | None, hash_files: bool,
                  memo: dict[str, tuple[list, int]]) -> list[list]:
        """The entries of each layer of ``descs``, in order. Without ``max_bytes`` and ``hash_files`` they
        come from the layer scans (:meth:`scans`, cached); else each digest is read once per call (``memo``,
        shared by the images of one call). Every listed layer, read or reused, counts its decompressed
        bytes against one :class:`ImageBudget` for ``r``."""
        if max_bytes is None and not hash_files:
            return [scan.entries for scan in self.scans(r, descs)]
        budget = ImageBudget(r)
        todo = {d["digest"]: d for d in descs if d["digest"] not in memo}
        read = self._reg._map(lambda d: self.entries(r.repository, d, max_bytes, hash_files, budget), todo.values())
        memo.update(zip(todo, read))
        out = []
        for d in descs:
            entries, size = memo[d["digest"]]
            if todo.pop(d["digest"], None) is None:  # a listing reused: counted as if read again
                budget.charge(size)
            out.append(entries)
        return out


_FILES_FIELDS = ("layer", "path", "type", "size", "mode", "uid", "gid", "mtime", "linkname", "whiteout")


def files_columns(entries: list) -> dict:
    """The ``files`` frame's columns from layer entries (column-wise: a few C-level passes instead of a
    dict per row). ``mtime`` (float seconds) becomes UTC times rounded to the microsecond, like
    ``datetime.fromtimestamp``; times outside pandas' range become NaT; ``linkname`` "" becomes <NA>;
    names that are not UTF-8 are escaped (:func:`~regexplore.content.layers.shown_name`)."""
    from operator import attrgetter

    import numpy as np
    import pandas as pd

    from .content.layers import shown_name
    from .model.frames import TIME

    cols = dict(zip(_FILES_FIELDS, zip(*map(attrgetter(*_FILES_FIELDS), entries)))) if entries else {}
    secs = np.asarray(cols.get("mtime", ()), dtype="float64")
    ok = np.abs(secs) < 9.2e9  # datetime64[ns] ends in 2262; NaN is not ok either
    micros = np.round(np.where(ok, secs, 0.0) * 1e6).astype("int64")
    mtime = pd.Series(pd.to_datetime(micros, unit="us", utc=True)).astype(TIME)
    mtime[~ok] = pd.NaT
    cols["mtime"] = mtime
    cols["path"] = [shown_name(v) for v in cols.get("path", ())]
    cols["linkname"] = [shown_name(v) if v else None for v in cols.get("linkname", ())]
    return cols


class ImageEfficiency:
    """dive 0.13.1's efficiency of one image (:meth:`Registry.efficiency`): ``score``, ``wasted_bytes``,
    ``user_wasted_percent`` (a ratio; 0.0 for a one-layer image with no waste, ``inf`` if it has some),
    ``image_size`` (sum of the layers' tar entry sizes) and ``files`` (the ``wasted`` frame, biggest first)."""

    def __init__(self, reference: str, result: Any) -> None:
        from .model.frames import make_frame

        self.reference = reference
        self.score: float = result.score
        self.wasted_bytes: int = result.wasted_bytes
        self.user_wasted_percent: float = result.user_wasted_percent
        self.image_size: int = result.image_size
        self.files = make_frame("wasted", ({"path": p, "count": n, "size": s} for p, n, s in result.wasted),
                                attrs={"reference": reference})

    def __repr__(self) -> str:
        return (f"ImageEfficiency({self.reference}: score={self.score:.4f}, wasted_bytes={self.wasted_bytes}, "
                f"user_wasted_percent={self.user_wasted_percent:.4f}, image_size={self.image_size})")

    def _repr_html_(self) -> str:
        from html import escape

        return (f"<div><b>{escape(self.reference)}</b>: efficiency {self.score:.2%}, "
                f"{self.wasted_bytes:,} bytes wasted ({self.user_wasted_percent:.2%} of the bytes above the "
                f"base layer), image {self.image_size:,} bytes</div>{self.files.head(20).to_html(index=False)}")


def inside(layers: ImageLayers, ref: Any, platform: str | None) -> tuple[ImageRef, Any]:
    """(reference, :class:`~regexplore.content.inside.stack.ImageStack`) of the image ``ref`` names."""
    from .content.inside.stack import ImageStack

    r, descs = layers.sources(ref, platform)
    return r, ImageStack(layers.scans(r, descs))


def packages_frame(layers: ImageLayers, ref: Any, platform: str | None, types: Any) -> Any:
    """The ``packages`` frame of :meth:`Registry.packages` (``attrs``: reference, os_release, skipped).
    Raises ValueError for an unknown type name."""
    from .content.inside.model import TYPES
    from .content.inside.stack import purl_function
    from .model.frames import make_frame

    if isinstance(types, str):
        types = [types]
    unknown = sorted(set(types or ()) - set(TYPES))
    if unknown:
        raise ValueError(f"unknown package types {unknown}: the types are {', '.join(TYPES)}")
    r, stack = inside(layers, ref, platform)
    rows = stack.packages(purl_function(), types)
    return make_frame("packages", rows, attrs={"reference": str(r), "os_release": stack.os_release(),
                                              "skipped": stack.skipped()})

"""Reading an image's layers for the facade: one opener per layer (verified as it streams, counted
against the image's decompression budget, shared through a :class:`Replay` when a digest is listed
twice) and the per-layer listings :meth:`Registry.files`, ``diff`` and the inside-an-image views build on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from .content.budget import ImageBudget, Replay
from .errors import UnsupportedMediaType
from .reference import ImageRef

__all__ = ["ImageLayers", "files_columns"]


class ImageLayers:
    """The layer plumbing of one :class:`~regexplore.Registry` (``reg._layers``)."""

    def __init__(self, reg: Any) -> None:  # the Registry (not imported: it imports this module)
        self._reg = reg

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

        try:
            stream = self.open_layer(repo, desc, budget, max_bytes)()
            return list(iter_entries(stream, desc["digest"], hash_files=hash_files)), stream.bytes_out
        except UnsupportedMediaType as exc:  # say which blob (an artifact's JSON, an SBOM…)
            raise UnsupportedMediaType(f"{desc['digest'][:19]}… ({desc.get('mediaType') or 'no media type'}): "
                                       f"{exc.message}", status=exc.status, code=exc.code, url=exc.url,
                                       detail=exc.detail) from exc

    def listings(self, r: ImageRef, descs: list[dict], max_bytes: int | None, hash_files: bool,
                  memo: dict[str, tuple[list, int]]) -> list[list]:
        """The entries of each layer of ``descs``, in order. Each digest is read once per call (``memo``,
        shared by the images of one call); every listed layer, read or reused, counts its decompressed
        bytes against one :class:`ImageBudget` for ``r``."""
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
_FILES_INTS = ("size", "mode", "uid", "gid")
_FILES_TEXT = ("layer", "type", "whiteout")


def files_columns(entries: list) -> dict:
    """The ``files`` frame's columns from layer entries, column-wise (a C-level pass per field instead of a
    dict per row), typed as :func:`~regexplore.model.frames.make_frame` keeps them as they are. ``mtime``
    (float seconds) becomes UTC times rounded to the microsecond, like ``datetime.fromtimestamp``; times
    outside pandas' range become NaT; ``linkname`` "" becomes <NA>; names that are not UTF-8 are escaped
    (:func:`~regexplore.content.layers.shown_name`)."""
    from operator import attrgetter

    import numpy as np
    import pandas as pd

    from .content.layers import shown_name
    from .model.frames import INT, STR, TIME

    cols: dict = {f: list(map(attrgetter(f), entries)) for f in _FILES_FIELDS}
    secs = np.asarray(cols["mtime"], dtype="float64")
    ok = np.abs(secs) < 9.2e9  # datetime64[ns] ends in 2262; NaN is not ok either
    micros = np.round(np.where(ok, secs, 0.0) * 1e6).astype("int64")
    mtime = pd.Series(pd.to_datetime(micros, unit="us", utc=True)).astype(TIME)
    mtime[~ok] = pd.NaT
    cols["mtime"] = mtime
    cols["path"] = [shown_name(v) for v in cols["path"]]
    cols["linkname"] = [shown_name(v) if v else None for v in cols["linkname"]]
    for f in ("path", "linkname", *_FILES_TEXT):  # ASCII digests and kinds, escaped names: valid text
        cols[f] = pd.Series(pd.array(cols[f], dtype=STR))
    for f in _FILES_INTS:
        try:
            cols[f] = pd.Series(pd.array(np.array(cols[f], dtype="int64"), dtype=INT))
        except OverflowError:  # a base-256 tar number past int64: make_frame's own conversion says so
            pass
    return cols

"""Download progress inside a widget: tqdm bars (``tqdm.notebook``, not displayed on their own) placed
in a ``VBox``, one per blob and one for the total, fed by :class:`regexplore.content.progress.ProgressEvent`.

:class:`DownloadProgress` is a *callable reporter* in the sense of :mod:`regexplore.content.progress` (it has no
``update``/``close`` pair on purpose, so ``resolve_progress`` hands it every event). When its ``cancel``
event is set, the next progress event raises :class:`Cancelled` in the
download's worker thread, which stops the transfer (the browser then removes the ``.partial`` files).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import ipywidgets as widgets

__all__ = ["DownloadProgress", "Cancelled"]


class Cancelled(Exception):
    """Raised inside a download's progress callback when the user pressed Cancel."""


class DownloadProgress:
    """Bars for a known list of blobs ``[(digest, size), …]``.

    ``bars``: digest → tqdm bar, plus ``"total"``; ``widget``: the ``VBox`` holding their containers;
    ``events``: how many events arrived (tests look at it). Call :meth:`finish` at the end.
    """

    def __init__(self, blobs: Iterable[tuple[str, int]], *, cancel: threading.Event | None = None,
                 labels: dict[Any, str] | None = None) -> None:
        from tqdm.notebook import tqdm

        self._tqdm = tqdm
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self.cancel = cancel or threading.Event()
        self.events = 0
        blobs = list(dict((d, s) for d, s in blobs if d).items())   # a repeated layer is fetched once
        labels = labels or {}
        total = sum(s for _, s in blobs)
        self.bars: dict[str, Any] = {"total": self._bar(total, "total")}
        for digest, size in blobs:
            if labels.get(digest) == "config":
                self.bars.setdefault(digest, self._bar(size, "config"))
        for i, (digest, size) in enumerate(b for b in blobs if labels.get(b[0]) != "config"):
            self.bars.setdefault(digest, self._bar(size, f"layer {i}"))
        self.widget = widgets.VBox([bar.container for bar in self.bars.values()])

    def _bar(self, total: int, desc: str) -> Any:
        """A bar of ``total`` bytes (0: not known yet, set by the first event that knows it)."""
        return self._tqdm(total=total or None, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                          display=False, leave=True, mininterval=0.05)

    def __call__(self, event: Any) -> None:
        """Take one :class:`~regexplore.content.progress.ProgressEvent`; raise ``Cancelled`` after Cancel."""

        if self.cancel.is_set():
            raise Cancelled("download cancelled")
        with self._lock:
            self.events += 1
            last = self._seen.get(event.digest, 0)
            done = event.bytes_done
            if event.done and event.total is not None:
                done = max(done, event.total)
            self._seen[event.digest] = done
            delta = done - last
            bar = self.bars.get(event.digest)
            if bar is None:  # a blob we did not know about (e.g. a digest download): add a bar
                bar = self.bars[event.digest] = self._bar(event.total or 0, event.label or event.digest[7:19])
                self.widget.children = [*self.widget.children, bar.container]
            elif not bar.total and event.total:   # a size the manifest did not give (schema1)
                self._grow(bar, event.total)
                self._grow(self.bars["total"], event.total)
            if delta:
                bar.update(delta)
                self.bars["total"].update(delta)
            if event.done:
                bar.refresh()

    @staticmethod
    def _grow(bar: Any, extra: int) -> None:
        """Add ``extra`` bytes to what ``bar`` expects (its widget's maximum too)."""
        bar.total = (bar.total or 0) + extra
        pbar = bar.container.children[1]
        pbar.max, pbar.bar_style = bar.total, ""
        pbar.layout.width = None

    @property
    def fraction(self) -> float:
        """Bytes done / bytes expected across all blobs (1.0 when there is nothing to fetch)."""
        total = self.bars["total"]
        return 1.0 if not total.total else total.n / total.total

    def finish(self) -> None:
        """Close every bar (final refresh: a finished bar shows 100 %)."""
        with self._lock:
            for bar in self.bars.values():
                bar.close()

"""Progress reporting for downloads and pushes: a callback protocol and its adapters.

The protocol core (:mod:`regexplore.content.blobs`) reports progress as a stream of
:class:`ProgressEvent` values handed to a *reporter* (any callable taking one event); it never
draws anything. This module turns what a user passes as ``progress=`` into such a reporter:

- ``True``: :mod:`tqdm.auto` bars (widgets in Jupyter, text in a terminal), one per blob and a
  total bar when there are several; ``tqdm`` is imported only then. The environment variable
  ``REGEXPLORE_PROGRESS=0`` (or ``false``/``no``/``off``) turns ``True`` into "off";
- ``False`` / ``None``: nothing;
- an object with ``update(n)`` and ``close()`` (pooch's convention, e.g. a ``tqdm`` bar you
  made): its ``total`` is set, it is advanced by the bytes received, and closed at the end;
- any other callable: called with every :class:`ProgressEvent` (from worker threads, serialised
  by a lock).

This module imports neither tqdm nor ipywidgets at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _env

__all__ = ["ProgressEvent", "Reporter", "resolve_progress", "progress_disabled_by_env"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of one blob's transfer.

    ``digest``: the blob; ``bytes_done``: bytes of it received (and hashed) so far — it can go
    *down* when a server ignores ``Range`` and the transfer restarts from 0; ``total``: its size
    when known; ``done``: True once, when the blob is verified and in place; ``cached``: True
    when it came from the cache (no transfer); ``label``: ``"config"``, ``"layer 2"``, ….
    """

    digest: str
    bytes_done: int
    total: int | None
    done: bool = False
    cached: bool = False
    label: str = ""


Reporter = Callable[[ProgressEvent], None]


def progress_disabled_by_env() -> bool:
    """True when ``REGEXPLORE_PROGRESS`` is ``0``, ``false``, ``no`` or ``off``."""
    return _env.switched_off("REGEXPLORE_PROGRESS")


class _Adapter:
    """Common bookkeeping: the last ``bytes_done`` per digest, so that events become deltas."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}

    def _delta(self, ev: ProgressEvent) -> int:
        last = self._seen.get(ev.digest, 0)
        self._seen[ev.digest] = ev.bytes_done
        return ev.bytes_done - last

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class _CallbackReporter(_Adapter):
    def __init__(self, fn: Callable[[ProgressEvent], Any]) -> None:
        super().__init__()
        self._fn = fn

    def __call__(self, ev: ProgressEvent) -> None:
        with self._lock:
            self._fn(ev)


class _BarObjectReporter(_Adapter):
    """pooch's convention: ``bar.total = n``; ``bar.update(delta)``; ``bar.close()``."""

    def __init__(self, bar: Any, total: int | None) -> None:
        super().__init__()
        self._bar = bar
        if total is not None:
            try:
                bar.total = total
            except AttributeError:
                pass

    def __call__(self, ev: ProgressEvent) -> None:
        with self._lock:
            delta = self._delta(ev)
            if delta:
                self._bar.update(delta)

    def close(self) -> None:
        with self._lock:
            self._bar.close()


class _TqdmReporter(_Adapter):
    """tqdm.auto bars: one per blob (removed when finished) and a total bar when ``count > 1``."""

    def __init__(self, total: int | None, count: int, desc: str | None) -> None:
        super().__init__()
        from tqdm.auto import tqdm  # lazily: the core never needs it

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}
        self._total = None
        if count > 1:
            self._total = tqdm(total=total, desc=desc or "total", unit="B", unit_scale=True,
                               unit_divisor=1024, leave=True, dynamic_ncols=True)

    def __call__(self, ev: ProgressEvent) -> None:
        with self._lock:
            delta = self._delta(ev)
            if self._total is not None and delta:
                self._total.update(delta)
            bar = self._bars.get(ev.digest)
            if bar is None and not (ev.done and self._total is not None):
                label = ev.label or ev.digest[7:19]
                bar = self._bars[ev.digest] = self._tqdm(
                    total=ev.total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                    leave=self._total is None, dynamic_ncols=True, initial=ev.bytes_done - delta)
            if bar is not None:
                if delta:
                    bar.update(delta)
                if ev.done:
                    bar.close()
                    del self._bars[ev.digest]

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            if self._total is not None:
                self._total.close()


def resolve_progress(progress: Any, *, total: int | None = None, count: int = 1,
                     desc: str | None = None) -> _Adapter | None:
    """Turn a ``progress=`` argument into a reporter (a callable taking a :class:`ProgressEvent`,
    with a ``close()``), or None for no progress.

    ``total`` is the number of bytes expected across all blobs (None if unknown), ``count`` the
    number of blobs. Raises ``TypeError`` for anything that is none of the accepted kinds.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        if progress_disabled_by_env():
            return None
        try:
            return _TqdmReporter(total, count, desc)
        except ImportError:  # tqdm not installed: progress is a nicety, not a requirement
            return None
    if hasattr(progress, "update") and hasattr(progress, "close"):
        return _BarObjectReporter(progress, total)
    if callable(progress):
        return _CallbackReporter(progress)
    raise TypeError("progress must be True, False, a callable or an object with update() and close()")

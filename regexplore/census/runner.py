"""The local engine: units on a pool of threads sharing one registry client (pooled connections).

:func:`run_units` skips finished units (the ledger), runs the others, and runs the page units a repository
unit hands on as they appear. At most a few units per thread are queued at any time, so memory stays flat
however many repositories the catalog lists. The Dask engine runs batches of units with this same function
on each worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .budget import TokenBucket, throttle
from .crawl import Crawl
from .ledger import Ledger
from .plan import Unit

__all__ = ["Tally", "make_crawl", "run_units"]


@dataclass
class Tally:
    """What a run did: ``units`` run or skipped as finished, ``failed`` (with error rows), and the page units
    handed on (``pages``, filled only when the caller runs them elsewhere)."""

    units: int = 0
    failed: int = 0
    pages: list[Unit] = field(default_factory=list)


def make_crawl(registry: str, out: Path, *, files: bool, packages: bool, rate: float | None,
               kwargs: dict[str, Any]) -> tuple[Crawl, Ledger, int]:
    """(the crawl through a new, throttled ``Registry(registry, **kwargs)``, the ledger of ``out``, threads)."""
    from ..registry import Registry

    reg = Registry(registry, **kwargs)
    reg.deadline = float("inf")  # a census takes as long as it takes; each request keeps its timeout
    bucket = TokenBucket(rate)
    throttle(reg.transport, bucket)
    crawl = Crawl(reg, out, files=files, packages=packages)
    crawl.bucket = bucket
    return crawl, Ledger(out), reg.max_workers


def one_unit(crawl: Crawl, ledger: Ledger, unit: Unit) -> tuple[list[Unit], bool]:
    """Run ``unit`` unless the ledger has it: (page units it hands on, finished). A finished repository
    unit's pages come from the ledger, with no request."""
    if ledger.done(unit):
        return (ledger.pages(unit) if unit.page == 0 else []), True
    pages, ok = crawl.run(unit)
    if ok:
        ledger.finish(unit, pages)
    return pages, ok


def run_units(crawl: Crawl, ledger: Ledger, units: Iterable[Unit], threads: int, *, follow: bool = True,
              on_done: Callable[[Unit, bool], None] | None = None) -> Tally:
    """Run ``units`` on ``threads`` threads; with ``follow`` the pages they hand on too (else they are
    returned in :attr:`Tally.pages`). ``on_done(unit, finished)`` is called as each ends (progress)."""
    tally = Tally()
    todo: Iterator[Unit] = iter(units)
    extra: list[Unit] = []
    window = max(1, threads) * 4
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="regexplore-census") as pool:
        running: dict[Future, Unit] = {}
        while True:
            while len(running) < window:
                unit = extra.pop() if extra else next(todo, None)
                if unit is None:
                    break
                running[pool.submit(one_unit, crawl, ledger, unit)] = unit
            if not running:
                return tally
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                unit = running.pop(fut)
                pages, ok = fut.result()
                tally.units += 1
                tally.failed += not ok
                (extra if follow else tally.pages).extend(pages)
                if on_done is not None:
                    on_done(unit, ok)

"""The Dask engine: batches of units as tasks on a ``dask.distributed`` cluster.

Each task runs :func:`~regexplore.census.runner.run_units` on its worker, with that worker process' own
registry client (its layer scans cached by digest: a layer shared by images is read once per worker process)
and an equal share of ``max_requests_per_second`` (:class:`~regexplore.census.budget.TokenBucket`): each task
first asks the scheduler how many workers are alive and sets its bucket to ``rate / workers``, so the shares
follow workers that leave or join. Together the workers stay under the rate, except that a worker joining
mid-census finds the older ones on their larger share until each starts its next task (one batch).
Task keys are derived from the batch's units, and every part has a
deterministic name: a task run again after its worker died (Dask's at-least-once) rewrites the same files, so
the dataset holds each row once. The workers must see ``out`` (one machine, or a shared filesystem).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .plan import Unit
from .runner import Tally

__all__ = ["BATCH", "run_on_dask"]

#: units per Dask task
BATCH = 16

_workers: dict[tuple, Any] = {}  # per worker process: (job key) -> (Crawl, Ledger, threads)
_workers_lock = threading.Lock()


def _engine(job: dict[str, Any]) -> Any:
    """This worker process' crawl for ``job`` (made once: one registry client, pooled connections)."""
    from .runner import make_crawl

    key = (job["registry"], job["out"], job["files"], job["packages"], tuple(sorted(job["kwargs"].items(), key=str)))
    with _workers_lock:
        if key not in _workers:
            _workers[key] = make_crawl(job["registry"], Path(job["out"]), files=job["files"],
                                       packages=job["packages"], rate=job["rate"], kwargs=job["kwargs"])
        return _workers[key]


def _live_workers() -> int:
    """How many workers the scheduler has now (asked from inside a task)."""
    from distributed import get_client

    return max(1, len(get_client().scheduler_info().get("workers", {})))


def census_batch(job: dict[str, Any], units: list[Unit]) -> tuple[list[Unit], int, int]:
    """A Dask task: run ``units``; returns (the page units they hand on, units run, units failed)."""
    from .runner import run_units

    crawl, ledger, threads = _engine(job)
    if job["rate"] is not None:
        crawl.bucket.set_rate(job["rate"] / _live_workers())
    tally = run_units(crawl, ledger, units, threads, follow=False)
    return tally.pages, tally.units, tally.failed


def _batches(units: Iterable[Unit]) -> Iterator[list[Unit]]:
    batch: list[Unit] = []
    for unit in units:
        batch.append(unit)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _key(job: dict[str, Any], batch: list[Unit]) -> str:
    text = "\0".join([job["out"], *(u.key for u in batch)])
    return "regexplore-census-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def run_on_dask(client: Any, job: dict[str, Any], units: Iterable[Unit], on_done: Any = None) -> Tally:
    """Run ``units`` (and the pages they hand on) as tasks on ``client``'s cluster. ``job`` describes the
    census (registry, out, files, packages, rate, kwargs); each task takes its worker's share of ``rate``."""
    from distributed import as_completed

    tally = Tally()
    futures = [client.submit(census_batch, job, b, key=_key(job, b), retries=3) for b in _batches(units)]
    queue = as_completed(futures)
    for fut in queue:
        pages, ran, failed = fut.result()
        fut.release()
        tally.units += ran
        tally.failed += failed
        if on_done is not None:
            on_done(ran, failed)
        for b in _batches(pages):
            queue.add(client.submit(census_batch, job, b, key=_key(job, b), retries=3))
    return tally

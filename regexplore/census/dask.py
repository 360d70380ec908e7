"""The Dask engine: batches of units as tasks on a ``dask.distributed`` cluster.

Each task runs :func:`~regexplore.census.runner.run_units` on its worker, with that worker process' own
registry client (its layer scans cached by digest: a layer shared by images is read once per worker process)
and an equal share of ``max_requests_per_second`` (:class:`~regexplore.census.budget.TokenBucket`): each task
first asks the scheduler how many workers are alive and sets its bucket to ``rate / workers``, so the shares
follow workers that leave or join. Together the workers stay under the rate, except that a worker joining
mid-census finds the older ones on their larger share until each starts its next task (one batch).
The registry arguments (``auth`` and the like) never travel in a task: they are published once as a
``distributed.Variable`` of a random name, which the tasks carry instead (a failed task's repr goes to the
worker's log, and the task graph is shown on the dashboard). Task keys are derived from the batch's units,
and every part has a deterministic name: a task run again after its worker died (Dask's at-least-once)
rewrites the same files, so the dataset holds each row once. The workers must see ``out`` (one machine, or a
shared filesystem).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .plan import Unit
from .runner import Tally

__all__ = ["BATCH", "run_on_dask"]

#: units per Dask task
BATCH = 16

_workers: dict[str, Any] = {}  # per worker process: the job's variable name -> (Crawl, Ledger, threads)
_workers_lock = threading.Lock()


def _engine(job: dict[str, Any]) -> Any:
    """This worker process' crawl for ``job`` (made once: one registry client, pooled connections), with the
    registry arguments read from the job's published variable."""
    from distributed import Variable, get_client

    from .runner import make_crawl

    key = job["kwargs_variable"]  # one per census run: it names the job's registry arguments
    with _workers_lock:
        if key not in _workers:
            kwargs = Variable(key, client=get_client()).get(timeout=60)
            _workers[key] = make_crawl(job["registry"], Path(job["out"]), files=job["files"],
                                       packages=job["packages"], rate=job["rate"], kwargs=kwargs)
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


def run_on_dask(client: Any, job: dict[str, Any], units: Iterable[Unit], registry_kwargs: dict[str, Any],
                on_done: Any = None) -> Tally:
    """Run ``units`` (and the pages they hand on) as tasks on ``client``'s cluster. ``job`` describes the
    census (registry, out, files, packages, rate); each task takes its worker's share of ``rate``.
    ``registry_kwargs`` (credentials) reach the workers through a ``distributed.Variable``, removed at the end."""
    from distributed import Variable

    arguments = Variable(f"regexplore-census-{secrets.token_hex(16)}", client=client)
    arguments.set(registry_kwargs)
    try:
        return _run(client, {**job, "kwargs_variable": arguments.name}, units, on_done)
    finally:
        arguments.delete()


def _run(client: Any, job: dict[str, Any], units: Iterable[Unit], on_done: Any) -> Tally:
    """:func:`run_on_dask` once the registry arguments are published (``job["kwargs_variable"]``)."""
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

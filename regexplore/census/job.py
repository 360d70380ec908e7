"""``rx.census``: a whole registry (or the repositories you name) into a Parquet dataset folder.

The catalog is listed (or ``repositories`` given), cut into units (:mod:`~regexplore.census.plan`) and run
locally on threads (:mod:`~regexplore.census.runner`) or on a Dask cluster (:mod:`~regexplore.census.dask`);
each unit writes its own parts (:mod:`~regexplore.census.parts`) and is then written into the ledger
(:mod:`~regexplore.census.ledger`), so an interrupted census resumes where it stopped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RegistryError
from .crawl import Crawl, error_row
from .parts import TABLES, remove_part, write_part
from .plan import Unit
from .result import Census
from .runner import make_crawl, run_units

__all__ = ["census"]


def _names(crawl: Crawl, repositories: Any) -> Iterator[str]:
    """The repository names to census: the catalog (all, or those ``repositories(name)`` keeps), or the list."""
    if repositories is None or callable(repositories):
        keep: Callable[[str], bool] = repositories or (lambda name: True)
        for page in crawl.v2.catalog():
            yield from (name for name in page if keep(name))
        remove_part(crawl.out, "errors", "catalog")  # an earlier run's catalog fault: listed now
    elif isinstance(repositories, str):
        raise TypeError("repositories takes a list of names or a callable filter, not a string "
                        f"({repositories!r}): write [{repositories!r}]")
    else:
        yield from repositories


class _Progress:
    """tqdm over units (tags, requests and errors in its postfix), or nothing."""

    def __init__(self, on: bool, crawl: Crawl) -> None:
        self.bar = None
        self.crawl = crawl
        if on:
            from tqdm.auto import tqdm

            self.bar = tqdm(desc="census", unit=" units")
        self.errors = 0

    def done(self, n: int = 1, failed: int = 0) -> None:
        self.errors += failed
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(requests=self.crawl.bucket.requests, failed_units=self.errors, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def census(registry: str, out: str | os.PathLike[str], *,
           repositories: Iterable[str] | Callable[[str], bool] | None = None, client: Any = None,
           files: bool = False, packages: bool = False, resume: bool = True,
           max_requests_per_second: float | None = None, progress: bool = True, **registry_kwargs: Any) -> Census:
    """Crawl ``registry`` (a host or URL, as :class:`~regexplore.Registry` takes it, with ``registry_kwargs``)
    into the Parquet dataset folder ``out``: catalog → tags → manifests (every platform of an index) →
    configs (→ each layer digest's file listing with ``files=True``, each image's packages with
    ``packages=True``: the facade's ``files`` / ``packages``, sharing one scan per layer digest per process),
    one sub-folder per table (``repositories``, ``tags``, ``manifests``, ``index_entries``, ``layers``,
    ``history``, ``errors``, ``files``, ``packages``).

    ``repositories``: a list of names, or a callable that keeps catalog names (default: the whole catalog).
    ``client``: a ``dask.distributed.Client`` to run the units on its cluster (its workers must see ``out``);
    default: threads here. ``resume=True`` skips the units the ledger in ``out`` has as finished;
    ``resume=False`` removes an earlier census in ``out`` first. ``max_requests_per_second`` caps all requests
    together (all workers). Faults become rows of ``errors``; a failed unit is tried again on resume.

    Returns a :class:`~regexplore.census.result.Census`. Raises :class:`~regexplore.RegistryError` when the
    catalog cannot be listed, ``TypeError`` / ``ValueError`` for bad arguments.
    """
    path = Path(out)
    if not resume:
        for name in (*TABLES, "_ledger"):
            shutil.rmtree(path / name, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    crawl, ledger, threads = make_crawl(registry, path, files=files, packages=packages, rate=max_requests_per_second,
                                        kwargs=registry_kwargs)
    try:
        units = (Unit(name) for name in _names(crawl, repositories))
        bar = _Progress(progress, crawl)
        try:
            if client is None:
                run_units(crawl, ledger, units, threads, on_done=lambda unit, ok: bar.done(1, not ok))
            else:
                from .dask import run_on_dask

                job = {"registry": registry, "out": str(path.resolve()), "files": files, "packages": packages,
                       "rate": max_requests_per_second}
                run_on_dask(client, job, list(units), registry_kwargs, on_done=bar.done)
        finally:
            bar.close()
    except RegistryError as exc:  # the catalog itself: recorded, then raised (nothing else can run)
        write_part(path, "errors", "catalog", [error_row(Unit("(catalog)"), None, exc)])
        raise
    finally:
        crawl.reg.close()
    return Census(path)

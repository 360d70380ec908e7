"""v1 layers for the fetch engine (:mod:`regexplore.content.fetch`): a source, a verifier, and the
v1 downloads built on them (:func:`download_layer`, :func:`pull`, :func:`download_v1`).

v1 has no content digests. A layer is opened with Docker 1.3's open range (``Range: bytes=N-``,
:meth:`~regexplore.protocol.v1.client.V1Client.open_layer`) and verified against the registry's
payload checksum / tarsum and the index's checksum (:mod:`regexplore.protocol.v1.checksum`). The
engine gives it what v2 blobs have: a ``.partial`` resumed within and across calls (a dropped
connection is resumed with a Range when the registry said ``Accept-Ranges: bytes`` and the size is
known, Docker 1.3's rule, else the transfer restarts), layers fetched in parallel, and the cache,
keyed by the layer's payload checksum (``v1:sha256:…``) when the registry or the index gives one.
Layers are not fetched in ranged parts (the open ranges of v1 registries do not allow it).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RegistryError
from ..protocol.v1.checksum import LayerChecks, check_layer, wants_tarsum
from ..protocol.v1.client import V1Client
from ..protocol.v1.parse import check_image_id, normalize_repository, parse_content_range
from ..protocol.v1.results import ImageJSON, LayerDownload
from .cache import DIGEST, V1_KEY, cache_dir
from .fetch import Fetched, Job, Opened, run_jobs
from .partials import blob_cap_from_env
from .progress import resolve_progress

__all__ = ["V1LayerSource", "V1LayerVerifier", "download_layer", "download_v1", "is_v1", "pull"]


@dataclass
class V1LayerSource:
    """``GET /v1/images/<id>/layer`` from byte N, with the Python registry's answers understood
    (``Content-Range`` without the ``bytes`` unit, ``N-size/size``, a 416 at the end or for an
    empty layer)."""

    client: V1Client
    repo: str
    meta: ImageJSON
    ranged_parts: bool = False
    ranges_ok: bool = False  #: the registry said ``Accept-Ranges: bytes``
    answered: bool = False  #: a response came already (a later open is a resume or a restart)

    def settle(self, job: Job) -> None:
        if job.size is None:
            job.max_bytes = blob_cap_from_env()

    def open(self, job: Job, start: int, end: int | None) -> Opened | None:
        """The layer from ``start`` (``end`` is ignored: v1 ranges are open). After a drop, a
        registry without ranges (or a layer of unknown size) is asked for the whole layer again."""
        if start and self.answered and not (self.ranges_ok and job.size):
            start = 0  # Docker 1.3: resume only with Accept-Ranges and a known size
        resp = self.client.open_layer(self.meta, self.repo, start)
        self.answered = True
        self.ranges_ok = self.ranges_ok or "bytes" in (resp.headers.get("Accept-Ranges") or "").lower()
        if resp.status_code == 416:
            resp.close()
            if job.size is None or start >= job.size:
                return None
            raise RegistryError(f"layer {self.meta.id[:12]}: 416 for bytes={start}- of a {job.size}-byte layer",
                                status=416, url=resp.url)
        if resp.status_code == 200:  # all of it, and one byte more to show a body longer than X-Docker-Size
            return resp, 0, None if job.size is None else job.size + 1
        return self._ranged(job, resp, start)

    def _ranged(self, job: Job, resp: Any, start: int) -> Opened:
        """Place a 206: it must start at ``start``; the Python registry ends an open range at the
        size (``N-size/size``), so the end is clipped at the total. Raises :class:`RegistryError`."""
        cr = parse_content_range(resp.headers.get("Content-Range"))
        total = cr[2] if cr else None
        ok = cr is not None and cr[0] == start and cr[1] >= start and (total is None or cr[1] <= total) \
            and (job.size is None or total is None or total == job.size)
        if not ok or cr is None:
            resp.close()
            raise RegistryError(f"asked for bytes {start}-, the registry sent Content-Range "
                                f"{resp.headers.get('Content-Range')!r}", status=206, url=resp.url)
        if job.size is None and total is not None:
            job.size = total
        return resp, start, cr[1] + 1 if total is None else min(cr[1] + 1, total)

    def total(self, resp: Any) -> int | None:
        cr = parse_content_range(resp.headers.get("Content-Range")) if resp.status_code == 206 else None
        return cr[2] if cr else None


@dataclass(frozen=True)
class _Verdict:
    against: list[str]
    notes: list[str]
    checksum: str  #: the payload checksum of the bytes


@dataclass
class V1LayerVerifier:
    """A layer's size (``X-Docker-Size``) and checksums (:func:`~regexplore.protocol.v1.checksum.check_layer`)."""

    meta: ImageJSON
    index_checksum: str | None
    cache_key: str | None = None  #: ``v1:`` + the payload checksum the layer is cached under
    digest: str | None = field(default=None, init=False)  #: none: v1 content has no address to hash a file against

    def new(self) -> LayerChecks:
        return LayerChecks(self.meta.raw, wants_tarsum(self.meta, self.index_checksum))

    def verdict(self, hasher: LayerChecks, n: int, size: int | None, label: str) -> _Verdict:
        """Raises :class:`RegistryError` for a body of another size than announced,
        :class:`~regexplore.errors.DigestMismatch` for a checksum that does not match."""
        if size is not None and n != size:
            raise RegistryError(f"layer {self.meta.id[:12]}: got {n} bytes, X-Docker-Size said {size}")
        against, notes = check_layer(self.meta, hasher, self.index_checksum)
        return _Verdict(against, notes, hasher.payload.checksum)

    def from_cache(self) -> _Verdict:
        assert self.cache_key is not None
        return _Verdict([self.meta.checksum_headers.get(self.cache_key[len(V1_KEY):], "index checksum")],
                        ["from the cache"], self.cache_key[len(V1_KEY):])

    def cacheable(self, verdict: _Verdict) -> bool:
        return self.cache_key is not None and verdict.checksum == self.cache_key[len(V1_KEY):]


def _cache_key(meta: ImageJSON, index_checksum: str | None) -> str | None:
    """``v1:`` + the payload checksum the registry (else the index) gives for the layer, or None."""
    for value in [*meta.payload_checksums, index_checksum or ""]:
        if value.startswith("sha256:") and DIGEST.match(value):
            return V1_KEY + value
    return None


def _layer_job(client: V1Client, repo: str, meta: ImageJSON, index_checksum: str | None, *,
               cached: bool, **kw: Any) -> Job:
    verifier = V1LayerVerifier(meta, index_checksum or None)
    verifier.cache_key = _cache_key(meta, index_checksum) if cached else None
    return Job(V1LayerSource(client, repo, meta), verifier, f"v1:{meta.id}", meta.size,
               cache_key=verifier.cache_key, lock_name=f"v1-{meta.id}", retry_from_zero=False, **kw)


def _result(job: Job, got: Fetched) -> LayerDownload:
    v: _Verdict = got.verdict
    return LayerDownload(job.key[3:], got.path, got.size, bool(v.against), v.checksum, ", ".join(v.against) or None,
                         "; ".join(v.notes), job.resumes, job.restarts)


def download_layer(client: V1Client, repo: str, image_id: str, dest: str | os.PathLike[str], *,
                   endpoints: Sequence[str] | None = None, checksum: str | None = None,
                   progress: Callable[[int, int | None], None] | None = None,
                   cache: bool | str | os.PathLike[str] | None = False) -> LayerDownload:
    """Download the layer of ``image_id`` to ``dest`` (a file path, or a folder: then
    ``<dest>/<id>.layer``), verified, atomic and resumable, through the fetch engine.

    The bytes go to ``<file>.partial`` (an existing one is resumed with ``Range``), then are
    checked against the size (``X-Docker-Size``) and the registry's checksums and/or ``checksum``
    (the index's value for the image: ``sha256:`` payload form or ``tarsum+sha256:``), then renamed
    into place. ``progress(done, total)`` is called per block. ``cache`` (off by default here): see
    :func:`~regexplore.content.cache.cache_dir`.

    Raises :class:`~regexplore.errors.DigestMismatch` (the ``.partial`` is removed),
    :class:`~regexplore.errors.NotFound`, or :class:`RegistryError` when the connection keeps
    breaking (the ``.partial`` is kept).
    """
    name = normalize_repository(repo)
    check_image_id(image_id, "image id")  # it names the file
    meta = client.image_json(image_id, repo=name, endpoints=endpoints)
    target = Path(dest)
    if target.is_dir():
        target = target / f"{image_id}.layer"
    cdir = cache_dir(cache)
    report = None if progress is None else (lambda ev: None if ev.done else progress(ev.bytes_done, ev.total))
    job = _layer_job(client, name, meta, checksum, cached=cdir is not None, report=report)
    [got] = run_jobs([(job, target)], cdir, 1, threading.Event())
    return _result(job, got)


def _chain(client: V1Client, name: str, ref: str) -> tuple[list[str], dict[str, str | None], list[str]]:
    """(image ids base first, the index's checksums, the registry endpoints) of ``name:ref``."""
    data = client.repository_data(name)
    top = client.resolve(name, ref, endpoints=data.endpoints)
    chain = list(reversed(client.ancestry(top, repo=name, endpoints=data.endpoints)))
    return chain, {i["id"]: i["checksum"] for i in data.images}, data.endpoints  # type: ignore[misc]


def _select(chain: list[str], layers: Sequence[int | str] | None, what: str) -> list[int]:
    """Positions in ``chain`` of the selected layers (indexes, negative allowed, or image ids)."""
    if layers is None:
        return list(range(len(chain)))
    out = []
    for sel in layers:
        if isinstance(sel, int):
            if not -len(chain) <= sel < len(chain):
                raise IndexError(f"layer {sel} out of range: {what} has {len(chain)} layers")
            out.append(sel % len(chain))
        elif sel in chain:
            out.append(chain.index(sel))
        else:
            raise ValueError(f"{sel!r} is not a layer of {what}: a v1 layer is chosen by index or by image id "
                             "(v1 has no digests)")
    return out


def pull(client: V1Client, repo: str, ref: str, dest: str | os.PathLike[str], *, progress: Any = None,
         parallel: int = 1, layers: Sequence[int | str] | None = None,
         cache: bool | str | os.PathLike[str] | None = False) -> list[LayerDownload]:
    """Download the layers of ``repo:ref``'s ancestry (base first; ``layers``: indexes or image ids
    to fetch instead) into folder ``dest`` as ``<id>.layer``, each verified as in
    :func:`download_layer` (with the index's checksum when it lists one), ``parallel`` at a time.

    ``progress`` takes what v2 downloads take (:func:`regexplore.content.progress.resolve_progress`);
    an event's ``digest`` is ``"v1:<image id>"`` and its label ``"layer <i> (<id[:12]>)"``. An
    exception raised by the callable stops the pull (the ``.partial`` stays for a resume)."""
    name = normalize_repository(repo)
    chain, sums, endpoints = _chain(client, name, ref)
    picked = _select(chain, layers, f"{name}:{ref}")
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    cdir = cache_dir(cache)
    report = resolve_progress(progress, count=len(picked), desc=f"pull {name}:{ref}")
    cancel = threading.Event()
    jobs = []
    for n in dict.fromkeys(picked):
        meta = client.image_json(chain[n], repo=name, endpoints=endpoints)
        job = _layer_job(client, name, meta, sums.get(chain[n]), cached=cdir is not None, report=report,
                         label=f"layer {n} ({chain[n][:12]})", cancel=cancel)
        jobs.append((job, folder / f"{chain[n]}.layer"))
    try:
        done = {job.key: _result(job, got) for (job, _), got in zip(jobs, run_jobs(jobs, cdir, parallel, cancel))}
    finally:
        if report is not None:
            report.close()
    return [done[f"v1:{chain[n]}"] for n in picked]


def is_v1(reg: Any) -> bool:
    """True when ``reg`` (a :class:`~regexplore.Registry`) speaks v1."""
    return getattr(reg, "api", None) == "v1"


def download_v1(reg: Any, ref_or_digest: Any, dest: str | os.PathLike[str] = ".", *, platform: str | None = None,
                progress: Any = True, parallel: int = 4, layers: Sequence[int | str] | None = None,
                cache: bool | str | os.PathLike[str] | None = None) -> list[Path]:
    """``Registry.download`` on a v1 registry: the layers of the image's ancestry (base first, or
    ``layers``: indexes or image ids) as ``<dest>/<id>.layer``, through :func:`pull`. A layer no
    checksum could verify is named in a warning.

    Raises ``ValueError`` for what cannot apply to v1: a ``platform`` (v1 images have none), a
    digest (v1 has no digests), and what :func:`pull` raises."""
    if platform is not None:
        raise ValueError(f"platform={platform!r} cannot apply to a v1 registry: v1 images have no platforms")
    if isinstance(ref_or_digest, str) and DIGEST.match(ref_or_digest.strip()):
        raise ValueError("a v1 registry has no digests: download by repository[:tag]")
    r = reg.ref(ref_or_digest)
    if r.digest:
        raise ValueError(f"{r}: a v1 registry has no digests: download by repository[:tag]")
    pulled = pull(reg.v1, r.repository, r.tag or "latest", dest, progress=progress, parallel=parallel,
                  layers=layers, cache=cache)
    unverified = [d for d in pulled if not d.verified]
    if unverified:  # v1 has no digests: say so when neither checksum could check a layer
        warnings.warn(f"{len(unverified)} of {len(pulled)} v1 layers could not be verified: "
                      + "; ".join(f"{d.path.name}: {d.note}" for d in unverified), stacklevel=3)
    return [d.path for d in pulled]

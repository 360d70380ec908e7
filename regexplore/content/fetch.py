"""The one verified, resumable fetch engine: any content into ``<dest>/<name>`` through a ``.partial``.

Data flow (docs/protocol.md §2.2, §5)::

    Job(source, verifier) → source.open(job, start, end) → hash while streaming (verifier.new())
    → <dest>/<name>.partial → verifier.verdict(…) → fsync + atomic rename → cache (cache_key)

A :class:`Source` opens byte ranges of the content (v2 blobs: :mod:`regexplore.content.v2blobs`;
v1 layers: :mod:`regexplore.content.v1layers`); a :class:`Verifier` hashes what arrives and judges
it (a digest; v1's payload checksum / tarsum). The engine itself knows neither protocol:

- **Verified**: nothing is ever named as good content unless the verifier accepted its bytes; a
  refusal (:class:`~regexplore.errors.DigestMismatch`) removes the ``.partial``.
- **Resumable**: a dropped connection is resumed within the call from the byte reached; a
  ``.partial`` left by an earlier call is hashed and resumed the same way. A server that answers
  ``200`` to a Range request is handled (the transfer restarts from byte 0, rewriting the prefix);
  a source may give back less than asked (a short 206) and the rest is asked for. The resumes spend
  a :class:`~regexplore.http.deadline.ResumeBudget`.
- **Concurrent and fast**: jobs run in parallel (:func:`run_jobs`); one thread reads the socket in
  1 MiB blocks while another hashes and writes; content of 64 MiB or more whose source offers
  ranged parts (``ranged_parts``) and whose server honours Range is fetched in 16 MiB parts over
  several connections, written in place and hashed in order as the contiguous prefix grows.
- **Bounded**: without a known size at most ``REGEXPLORE_MAX_BLOB_BYTES`` (default 8 GiB) are read
  (:class:`~regexplore.errors.ResponseTooLarge`; the ``.partial`` goes).
- **Cached and locked**: :mod:`regexplore.content.cache` (per-job lock, read-only cache entries).
- **Not fooled by a shared folder**: :mod:`regexplore.content.partials`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
import urllib3

from ..errors import RegistryError, ResponseTooLarge
from ..http.deadline import ResumeBudget, carry, check_not_cut, too_slow
from ..http.transport import MiB
from .cache import blob_lock, cached, remember, verified_file
from .partials import (
    CHUNK,
    MAX_BLOB_BYTES_ENV,
    Ident,
    datasync,
    discard,
    fsync_dir,
    hash_into,
    ident,
    open_partial,
    place,
    rename_verified,
    same_file,
)
from .progress import ProgressEvent, Reporter

__all__ = ["CHUNK", "MAX_RESUMES", "Dropped", "Fetched", "Job", "Opened", "ReadAhead", "Source", "Verifier",
           "gave_up", "over_cap", "read_limit", "run_jobs", "within_cap"]

PARTS_MIN_SIZE = 64 * MiB  #: content at least this big may be fetched in ranged parts
PART_SIZE = 16 * MiB  #: size of one ranged part
SYNC_EVERY = 32 * MiB  #: a background fdatasync starts after this many new bytes of a download
FAST_LINK = 256 * MiB  #: bytes/s: a link that streams the first part this fast gets no parallel parts
READ_AHEAD = 8  #: blocks buffered between the socket reader and the hasher/writer (8 MiB)
MAX_RESUMES = 8  #: tries without progress before giving up on a download (a :class:`ResumeBudget`)
_DROPS = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)

Opened = tuple[Any, int, "int | None"]  #: (response, first byte it holds, byte it stops before or None)


class _Cancelled(Exception):
    """The download was cancelled (another job failed, or the user interrupted)."""


class Dropped(Exception):
    """The connection ended before the bytes we were promised."""


_Dropped = Dropped


class _NoRange(Exception):
    """The server answered a Range request with the whole content (200)."""


class Source(Protocol):
    """Opens byte ranges of one piece of content (the protocol side of a :class:`Job`)."""

    ranged_parts: bool  #: True when closed ranges may be fetched as parallel parts

    def settle(self, job: Job) -> None:
        """Bound a download of unknown size before its first byte (``job.size`` / ``job.max_bytes``)."""

    def open(self, job: Job, start: int, end: int | None) -> Opened | None:
        """A response holding the content from ``start`` (to ``end`` inclusive when given), as
        ``(response, first byte, stop or None)``; None when nothing is left after ``start``."""

    def total(self, resp: Any) -> int | None:
        """The whole content's size as a response announces it, or None."""


class Verifier(Protocol):
    """Hashes the bytes of one piece of content and judges them."""

    digest: str | None  #: a content address a file can be checked against by hashing, or None

    def new(self) -> Any:
        """A fresh running hash (anything with ``update(bytes)``)."""

    def verdict(self, hasher: Any, n: int, size: int | None, label: str) -> Any:
        """The verdict on ``n`` bytes hashed into ``hasher``; raises a :class:`RegistryError`
        (:class:`DigestMismatch`) when they are not the content."""

    def from_cache(self) -> Any:
        """The verdict on content served from the cache (verified when it was stored)."""

    def cacheable(self, verdict: Any) -> bool:
        """True when content with this verdict may be stored under the job's ``cache_key``."""


@dataclass
class Job:
    """What one download needs to know."""

    source: Source
    verifier: Verifier
    key: str  #: what progress events and messages name it by (a digest, ``v1:<image id>``)
    size: int | None
    report: Reporter | None = None
    label: str = ""
    cancel: threading.Event | None = None
    parallel: int = 1
    cache_key: str | None = None  #: its entry in the cache (:func:`~regexplore.content.cache.cache_path`)
    lock_name: str = ""  #: file name of its lock (:func:`~regexplore.content.cache.blob_lock`)
    retry_from_zero: bool = True  #: a resumed ``.partial`` whose result is refused is fetched again once
    head_sized: bool = False  #: ``size`` is a HEAD's Content-Length (a bound), not a descriptor's
    max_bytes: int | None = None  #: with no ``size``: the most bytes taken (REGEXPLORE_MAX_BLOB_BYTES)
    resumes: int = 0  #: reopened from the byte reached after a dropped connection
    restarts: int = 0  #: transfers restarted from byte 0 after bytes had arrived

    def emit(self, done_bytes: int, done: bool = False, cached: bool = False) -> None:
        if self.report is not None:
            self.report(ProgressEvent(self.key, done_bytes, self.size, done, cached, self.label))

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise _Cancelled()


@dataclass(frozen=True)
class Fetched:
    """One finished job: the file, its size, the verifier's verdict, and whether it was already
    there (cache or a good file of an earlier run)."""

    path: Path
    size: int
    verdict: Any
    cached: bool


def over_cap(job: Job, what: str, url: str | None = None) -> ResponseTooLarge:
    """The error for a blob of unknown size over ``job.max_bytes``."""
    return ResponseTooLarge(f"blob {job.key[:19]} has no known size (no descriptor size, no Content-Length "
                            f"on its HEAD) and {what}, over the {job.max_bytes}-byte cap; raise it with "
                            f"{MAX_BLOB_BYTES_ENV}", url=url)


def within_cap(job: Job, total: int, url: str | None = None) -> None:
    """Raise :class:`ResponseTooLarge` when a blob of unknown size would hold ``total`` bytes, more
    than ``job.max_bytes``."""
    if job.size is None and job.max_bytes is not None and total > job.max_bytes:
        raise over_cap(job, f"its body runs past {job.max_bytes} bytes", url)


def read_limit(job: Job, offset: int, upto: int | None) -> int | None:
    """How many bytes to take from a body that starts at ``offset``: up to ``upto`` when known,
    else one past the cap of a blob of unknown size (so that a body over it shows)."""
    if upto is not None:
        return upto - offset
    return None if job.max_bytes is None else max(0, job.max_bytes + 1 - offset)


def _read(resp: Any, n: int) -> bytes:
    return resp.raw.read(n, decode_content=False)


class ReadAhead:
    """Read a response body in a thread into a bounded queue of blocks (at most ``limit`` bytes).

    Iterating yields blocks; a connection failure is re-raised in the consumer as
    :class:`Dropped`. ``close()`` stops the thread and closes the response.
    """

    _EOF = object()

    def __init__(self, resp: Any, limit: int | None, depth: int = READ_AHEAD) -> None:
        self.resp = resp
        self.limit = limit
        self.q: queue.Queue[Any] = queue.Queue(depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="regexplore-read", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        left = self.limit
        try:
            while not self.stop.is_set() and (left is None or left > 0):
                block = _read(self.resp, CHUNK if left is None else min(CHUNK, left))
                if not block:
                    check_not_cut(self.resp)  # an early end the watchdog made is a drop
                    break
                if left is not None:
                    left -= len(block)
                if not self._put(block):
                    return
            self._put(self._EOF)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self.q.get()
            if item is self._EOF:
                return
            if isinstance(item, BaseException):
                if isinstance(item, _DROPS):
                    raise _Dropped(type(item).__name__) from item
                raise item
            yield item

    def close(self, keep_response: bool = False) -> None:
        """Stop the thread; close the response unless ``keep_response`` (the thread read up to its
        limit and the rest of the body is someone else's to read)."""
        self.stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.q.get_nowait()
        self.thread.join(timeout=5)
        if not keep_response or self.thread.is_alive():
            self.resp.close()



# ====================================================================== one download into one file
class _Partial:
    """The ``.partial`` file of one blob: an open file, a hasher and how many bytes both hold.

    Opened by :func:`~regexplore.content.partials.open_partial`: an earlier call's ``.partial`` (a regular
    file of ours with one link) is hashed and resumed; a symlink or anything else planted under
    that name is removed, never written through. ``ident`` is the file's identity, checked again
    after the rename."""

    def __init__(self, path: Path, new_hasher: Callable[[], Any]) -> None:
        self.path = path
        self.new_hasher = new_hasher
        self.reused = 0
        self._synced = 0
        self._syncing: threading.Thread | None = None
        fd, resumed = open_partial(path)
        self.f = open(fd, "r+b", buffering=0)
        self.ident = ident(os.fstat(fd))
        self.hasher, self.offset = new_hasher(), 0
        if resumed:
            self.offset = self.reused = hash_into(self.f, self.hasher)

    def restart(self) -> None:
        self.f.seek(0)
        self.f.truncate(0)
        self.hasher = self.new_hasher()
        self.offset = 0
        self.reused = 0
        self._synced = 0

    def write(self, block: bytes) -> None:
        self.hasher.update(block)
        view = memoryview(block)
        while view:
            n = self.f.write(view)
            view = view[n:]
        self.offset += len(block)
        if self.offset - self._synced >= SYNC_EVERY:
            self._start_sync()

    def _start_sync(self) -> None:
        """Start writing what is on the page cache to disk in the background (one ``fdatasync``
        at a time), so that the final ``fsync`` before the rename has little left to wait for."""
        if self._syncing is not None and self._syncing.is_alive():
            return
        self._synced = self.offset
        fd = self.f.fileno()
        self._syncing = threading.Thread(target=datasync, args=(fd,), name="regexplore-sync", daemon=True)
        self._syncing.start()

    def sync(self) -> None:
        """Everything written is on disk (waits for a background sync, then ``fsync``)."""
        if self._syncing is not None:
            self._syncing.join()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        if self._syncing is not None:
            self._syncing.join()
        if not self.f.closed:
            self.f.close()


def _fetch_sequential(job: Job, part: _Partial, first: Opened | None = None,
                      until: int | None = None) -> Opened | None:
    """Stream the rest of the blob into ``part`` until ``job.size`` bytes (or a clean end of the
    body when the size is unknown), asking with a closed ``Range`` for what is missing after a
    dropped connection or a short 206. ``first`` is an already opened range (``job.source.open``).

    ``until`` stops at that byte instead (the first part of a big blob); if the response then
    holds more of the blob, it is returned still open, as an ``Opened`` that continues it.

    A blob of unknown size takes at most ``job.max_bytes`` (:class:`ResponseTooLarge` past it). The
    resumes spend a :class:`~regexplore.http.deadline.ResumeBudget`: only bytes beyond the furthest reached
    earn a try back, so a server that ignores Range and keeps cutting the body at the same place is
    given up on."""
    budget = ResumeBudget(MAX_RESUMES, part.offset)
    retrying = False
    while (job.size is None and until is None) or part.offset < (until if until is not None else job.size):
        job.check()
        if first is not None:
            opened: Opened | None = first
            first = None
        else:
            last = until if until is not None else job.size
            end = last - 1 if last is not None and (part.offset > 0 or until is not None) else None
            opened = job.source.open(job, part.offset, end)
            if opened is None:
                return None  # nothing after the bytes the .partial holds: the verifier decides
        resp, got, stop = opened
        if got != part.offset:  # a 200 to our Range: take the whole body, from byte 0
            job.restarts += part.offset > 0
            part.restart()
            job.emit(0)
        elif retrying and got > 0:
            job.resumes += 1
        if job.size is None:  # no descriptor size, no HEAD length: the first answer may tell (capped)
            job.size = job.source.total(resp)
        upto = stop if stop is not None else job.size
        if until is not None and (upto is None or upto > until):
            upto = until
        reader = ReadAhead(resp, read_limit(job, part.offset, upto))
        dropped = keep = False
        try:
            for block in reader:
                job.check()
                within_cap(job, part.offset + len(block), resp.url)
                part.write(block)
                job.emit(part.offset)
            keep = until is not None and part.offset == until and (stop is None or stop > until)
        except _Dropped:
            dropped = True
        finally:
            reader.close(keep_response=keep)
        if keep:
            return resp, part.offset, stop
        if not dropped and (job.size is None or part.offset >= (until if until is not None else job.size)):
            return None
        if not budget.spend(part.offset):
            raise gave_up(job, resp, part.offset)
        budget.pause()
        retrying = True
    return None


def gave_up(job: Job, resp: Any, offset: int) -> RegistryError:
    """The error once a blob's resume budget is spent: :class:`DeadlineExceeded` when the last
    attempt was cut for being too slow (or at the deadline), else a :class:`RegistryError`."""
    url = getattr(resp, "url", None)
    return too_slow(resp, url) or RegistryError(
        f"{job.key[:19]}: the connection kept breaking at byte {offset} (too little progress "
        f"in {MAX_RESUMES} tries)", url=url)


class _PartFetch:
    """The state :func:`_fetch_parts` shares between its connections (one part each at a time) and
    the thread that hashes: how far each part is written, the first error, the stop signal."""

    def __init__(self, job: Job, part: _Partial, probe: Opened | None, parts: list[tuple[int, int]]) -> None:
        self.job, self.part, self.parts = job, part, parts
        self.fd = part.f.fileno()
        self.written = [a for a, _ in parts]  # per part: first byte not yet written
        self.cond = threading.Condition()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.next_index = iter(range(len(parts)))
        self.take_lock = threading.Lock()
        self.first: Opened | None = probe

    def _open(self, i: int, pos: int, b: int) -> Opened:
        """Part ``i``'s range from ``pos`` (the probe's answer for part 0 the first time); raises
        :class:`_NoRange` when the server does not answer that range."""
        if i == 0 and self.first is not None:
            opened, self.first = self.first, None
        else:
            opened = self.job.source.open(self.job, pos, b - 1)
            if opened is None:
                raise _NoRange()
        if opened[1] != pos:
            opened[0].close()
            raise _NoRange()
        return opened

    def _copy(self, i: int, resp: Any, pos: int, limit: int) -> int:
        """Write ``resp``'s body at ``pos`` up to ``limit`` (or the stop signal), publishing the
        progress of part ``i``; returns the new position. Raises :class:`_Dropped` on a short body."""
        while pos < limit and not self.stop.is_set():
            block = _read(resp, min(CHUNK, limit - pos))
            if not block:
                raise _Dropped("short body")
            view = memoryview(block)
            while view:
                n = os.pwrite(self.fd, view, pos)
                view = view[n:]
                pos += n
            with self.cond:
                self.written[i] = pos
                self.cond.notify_all()
        return pos

    def run_part(self, i: int) -> None:
        """Fetch part ``i``, resuming within its own budget; raises what gives up."""
        a, b = self.parts[i]
        pos = a
        budget = ResumeBudget(MAX_RESUMES, a)
        while pos < b:
            if self.stop.is_set():
                return
            self.job.check()
            resp, _, upto = self._open(i, pos, b)
            limit = b if upto is None else min(b, upto)  # a short 206: the rest is asked for next
            try:
                pos = self._copy(i, resp, pos, limit)
            except (_Dropped, *_DROPS):
                if not budget.spend(pos):
                    raise gave_up(self.job, resp, pos) from None
            finally:
                resp.close()

    def worker(self) -> None:
        """Take parts until none is left; the first error stops every connection."""
        try:
            while not self.stop.is_set():
                with self.take_lock:
                    i = next(self.next_index, None)
                if i is None:
                    return
                self.run_part(i)
        except BaseException as exc:  # noqa: BLE001 (handed to the hashing thread, which raises it)
            with self.cond:
                self.errors.append(exc)
                self.stop.set()
                self.cond.notify_all()

    def contiguous(self) -> int:
        """The first byte not yet written counting from the start (``job.size`` when all is)."""
        for (_, b), w in zip(self.parts, self.written):
            if w < b:
                return w
        return self.job.size  # type: ignore[return-value]

    def hash_in_order(self) -> None:
        """Hash the written prefix into ``part`` as it grows, until the whole blob is; raises the
        first error of a connection."""
        job, part = self.job, self.part
        view = memoryview(bytearray(CHUNK))
        while part.offset < job.size:  # type: ignore[operator]
            with self.cond:
                while not self.errors and self.contiguous() <= part.offset:
                    self.cond.wait(0.5)
                    if job.cancel is not None and job.cancel.is_set():
                        break
                upto = self.contiguous()
                if self.errors:
                    raise self.errors[0]
            job.check()
            while part.offset < upto:
                n = os.preadv(self.fd, [view[: min(CHUNK, upto - part.offset)]], part.offset)
                if n <= 0:
                    raise RegistryError(f"could not read back {part.path.name}")
                part.hasher.update(view[:n])
                part.offset += n
            job.emit(part.offset)


def _fetch_parts(job: Job, part: _Partial, probe: Opened | None, parts: list[tuple[int, int]]) -> None:
    """Fetch ``parts`` (``[start, end)`` ranges after ``part.offset``) over several connections,
    writing in place, while this thread hashes the contiguous prefix in order. Returns None; raises
    the first error of a connection (the ``.partial`` then keeps only its hashed prefix)."""
    assert job.size is not None
    state = _PartFetch(job, part, probe, parts)
    os.ftruncate(state.fd, job.size)
    threads = [threading.Thread(target=carry(state.worker), name="regexplore-part", daemon=True)
               for _ in range(max(1, min(job.parallel, len(parts))))]
    for t in threads:
        t.start()
    try:
        state.hash_in_order()
    except BaseException:
        state.stop.set()
        for t in threads:
            t.join(timeout=30)
        # keep only the hashed prefix, so that a later call can resume from it
        with contextlib.suppress(OSError):
            os.ftruncate(state.fd, part.offset)
        raise
    for t in threads:
        t.join()


def _fetch_into(job: Job, final: Path) -> tuple[Ident, Any]:
    """Download ``job``'s content to ``final`` through ``final.partial``: verified, atomic, resumable.
    Returns the identity of the verified file now named ``final`` and the verifier's verdict.

    Raises what the verifier raises for wrong bytes (:class:`DigestMismatch`, …) and
    :class:`ResponseTooLarge` (the ``.partial`` is removed: its bytes are not to be resumed, also
    when the GET announced the wrong size), :class:`RegistryError` (the ``.partial`` is kept for a
    later resume), ``OSError`` when the ``.partial`` was swapped for another file before the rename.
    """
    partial = final.with_name(final.name + ".partial")
    retried_from_zero = not job.retry_from_zero
    while True:
        part = _Partial(partial, job.verifier.new)
        try:
            bound = job.size if job.size is not None else job.max_bytes
            if bound is not None and part.offset > bound:
                part.restart()
            if part.offset:
                job.emit(part.offset)
            if job.size is None or part.offset < job.size:
                _fetch_body(job, part)
            try:
                verdict = job.verifier.verdict(part.hasher, part.offset, job.size, job.label)
            except RegistryError:
                reused = part.reused
                part.close()
                discard(partial)
                if reused and not retried_from_zero:
                    retried_from_zero = True  # the prefix from an earlier call may be the bad part
                    continue
                raise
            part.sync()
            part.close()
            rename_verified(partial, final, part.ident)
            fsync_dir(final.parent)
            job.emit(part.offset, done=True)
            return part.ident, verdict
        except ResponseTooLarge:
            part.close()
            discard(partial)
            raise
        finally:
            part.close()


def _fetch_body(job: Job, part: _Partial) -> None:
    """Choose sequential or ranged-parts transfer for the bytes after ``part.offset``."""
    size = job.size
    remaining = None if size is None else size - part.offset
    if size is None or job.parallel <= 1 or not job.source.ranged_parts or remaining is None \
            or remaining < PARTS_MIN_SIZE:
        _fetch_sequential(job, part)
        return
    bounds = list(range(part.offset, size, PART_SIZE))
    parts = [(a, min(a + PART_SIZE, size)) for a in bounds]
    probe = job.source.open(job, parts[0][0], size - 1)
    if probe is None or probe[1] != parts[0][0] or probe[0].status_code == 200:
        # the server ignores Range: stream the whole body from this response
        _fetch_sequential(job, part, first=probe)
        return
    if job.source.total(probe[0]) != size:  # a 206 that does not tell the total ("*"): no parts, stream
        probe[0].close()
        _fetch_sequential(job, part)
        return
    # The first part streams in order from a response that holds the rest of the blob too. A
    # link that delivers it faster than FAST_LINK gains nothing from more connections (writing,
    # reading back and hashing out of order would cost more than it saves): the same response
    # goes on to the end. A slower link, where one connection is the bottleneck (a CDN, a long
    # fat pipe), gets the rest in parallel ranged parts.
    started, t0 = part.offset, time.monotonic()
    rest_of_body = _fetch_sequential(job, part, first=probe, until=parts[0][1])
    rate = (part.offset - started) / max(time.monotonic() - t0, 1e-6)
    rest = [(a, b) for a, b in parts if a >= part.offset]
    if rest and (rate >= FAST_LINK or len(rest) == 1):
        _fetch_sequential(job, part, first=rest_of_body)
        return
    if rest_of_body is not None:
        rest_of_body[0].close()
    if not rest:
        return
    try:
        _fetch_parts(job, part, None, rest)
    except _NoRange:
        part.f.seek(part.offset)
        part.f.truncate(part.offset)
        _fetch_sequential(job, part)


def _fetch_blob(job: Job, final: Path, cdir: Path | None) -> Fetched:
    """Make ``final`` hold the verified content: from the cache (``job.cache_key``), from an
    existing good file of ours when the content has a digest (a symlink or another user's file
    there is replaced, never trusted), or downloaded (a download of unknown size bounded first by
    ``job.source.settle``). Returns what was done."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with blob_lock(cdir, job.lock_name):
        job.check()
        hit = cached(cdir, job.cache_key, job.size) if job.cache_key else None
        if hit is not None:
            if not same_file(final, hit.ident):
                place(hit.path, final, hit.ident)
            job.emit(hit.size, done=True, cached=True)
            return Fetched(final, hit.size, job.verifier.from_cache(), True)
        digest = job.verifier.digest
        found = verified_file(final, digest, job.size) if digest else None  # an earlier run without the cache
        if found is not None:
            if job.cache_key:
                remember(cdir, job.cache_key, final, found[0])
            job.emit(found[1], done=True, cached=True)
            return Fetched(final, found[1], job.verifier.from_cache(), True)
        job.source.settle(job)
        got, verdict = _fetch_into(job, final)
        if job.cache_key and job.verifier.cacheable(verdict):
            remember(cdir, job.cache_key, final, got)
        return Fetched(final, os.lstat(final).st_size, verdict, False)


def run_jobs(jobs: list[tuple[Job, Path]], cdir: Path | None, parallel: int, cancel: threading.Event) -> list[Fetched]:
    """Run fetch jobs on up to ``parallel`` threads; returns their results in order, or raises the
    first failure.

    After a failure no new job starts, and those already in flight finish (verified, under
    their good names), so a failed call leaves no ``.partial`` behind except the failing job's
    own when its transfer broke (kept for a resume). An interrupt (Ctrl-C) stops them all at once.
    """
    if len(jobs) == 1:
        return [_fetch_blob(jobs[0][0], jobs[0][1], cdir)]
    with ThreadPoolExecutor(max(1, min(parallel, len(jobs))), thread_name_prefix="regexplore-blob") as ex:
        fetch = carry(_fetch_blob)  # the call's deadline goes with each job
        futures: list[Future[Fetched]] = [ex.submit(fetch, job, final, cdir) for job, final in jobs]
        try:
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                for f in pending:
                    f.cancel()  # not started yet: never will; running ones finish
                wait(futures)
                raise failed[0].exception()  # type: ignore[misc]
        except BaseException:  # KeyboardInterrupt in a notebook: stop the workers, keep .partial files
            cancel.set()
            for f in futures:
                f.cancel()
            raise
        return [f.result() for f in futures]

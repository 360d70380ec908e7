"""``open_verified_stream``: a blob's bytes as an iterator, hashed as they go, without a temp file."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import Any

from ..errors import DigestMismatch
from ..http.deadline import ResumeBudget
from .cache import Entry, cache_dir, cached, split_digest
from .fetch import MAX_RESUMES, Dropped, ReadAhead, gave_up, read_limit, within_cap
from .partials import CHUNK, blob_cap_from_env, discard, open_nofollow, same_file
from .v2blobs import blob_job

__all__ = ["open_verified_stream"]


def open_verified_stream(reg: Any, repo: str, digest: str, size: int | None = None, *,
                         cache: bool | str | os.PathLike[str] | None = None) -> Iterator[bytes]:
    """Yield the bytes of a blob in blocks of up to 1 MiB, without a temp file.

    From the cache when the blob is there (no request at all; the entry is hashed as it is read,
    and one that no longer matches is dropped); otherwise streamed from the registry, hashed as
    it goes, resumed with ``Range`` after a dropped connection (a server that answers 200
    instead has the bytes already yielded skipped). After the last block the digest (and
    ``size`` when given) is checked: :class:`DigestMismatch` is raised *at the end* if it is
    wrong, so a consumer must treat what it read as unverified until the iterator is exhausted.
    Without ``size``, a body that the registry does not size runs to ``REGEXPLORE_MAX_BLOB_BYTES``
    at most (:class:`~regexplore.errors.ResponseTooLarge`, before yielding a byte past it).
    """
    alg, _ = split_digest(digest)
    hit = cached(cache_dir(cache), digest, size)
    if hit is not None:
        yield from _streamcached(hit, digest)
        return
    job = blob_job(reg, repo, digest, size, max_bytes=None if size is not None else blob_cap_from_env())
    h = hashlib.new(alg)
    pos = 0
    budget = ResumeBudget(MAX_RESUMES)
    while size is None or pos < size:
        opened = job.source.open(job, pos, None if size is None else size - 1)
        if opened is None:
            break  # nothing after the bytes already yielded: the digest decides
        resp, got, stop = opened
        if size is None:
            size = job.size = job.source.total(resp)
        skip = pos - got
        upto = stop if stop is not None else size
        reader = ReadAhead(resp, read_limit(job, got, upto))
        try:
            for block in reader:
                if skip:
                    if len(block) <= skip:
                        skip -= len(block)
                        continue
                    block = block[skip:]
                    skip = 0
                within_cap(job, pos + len(block), resp.url)
                h.update(block)
                pos += len(block)
                yield block
            if size is None:
                break
        except Dropped:
            pass
        finally:
            reader.close()
        if size is not None and pos >= size:
            break
        if not budget.spend(pos):
            raise gave_up(job, resp, pos)
        budget.pause()
    actual = f"{alg}:{h.hexdigest()}"
    if actual != digest or (size is not None and pos != size):
        raise DigestMismatch(digest, actual, what="streamed blob")


def _streamcached(hit: Entry, digest: str) -> Iterator[bytes]:
    """Yield a cache entry's bytes (opened without following a symlink), hashing them; an entry
    that no longer hashes to ``digest`` is removed and :class:`DigestMismatch` raised at the end."""
    alg, _ = split_digest(digest)
    h = hashlib.new(alg)
    n = 0
    with open(open_nofollow(hit.path, os.O_RDONLY), "rb", buffering=0) as f:
        while block := f.read(CHUNK):
            h.update(block)
            n += len(block)
            yield block
    actual = f"{alg}:{h.hexdigest()}"
    if actual != digest or n != hit.size:
        if same_file(hit.path, hit.ident):
            with contextlib.suppress(OSError):
                discard(hit.path)
        raise DigestMismatch(digest, actual, what="cached blob")



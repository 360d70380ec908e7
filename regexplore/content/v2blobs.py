"""v2 blobs for the fetch engine (:mod:`regexplore.content.fetch`): a source and a verifier.

:class:`BlobSource` opens ``GET /v2/<repo>/blobs/<digest>`` with a closed
``Range: bytes=N-(size-1)`` (redirects followed without credentials, a refused storage hop asked
for again at the registry: the transport's); a ``206`` covering less than asked is kept and the
rest asked for, a 206 for any other range is refused. A blob whose size no descriptor gives takes
its HEAD's ``Content-Length`` as its size: a GET announcing another size is refused, and no byte
past it is read. :class:`DigestVerifier` accepts bytes that hash to the digest.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import DigestMismatch, NotFound, RegistryError, ResponseTooLarge
from ..protocol.v2 import request_blob
from .cache import blob_filename, split_digest
from .fetch import Job, Opened, over_cap
from .partials import blob_cap_from_env

__all__ = ["CONTENT_RANGE", "BlobSource", "DigestVerifier", "blob_job"]

CONTENT_RANGE = re.compile(r"^\s*(?:bytes\s+)?(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)

_EMPTY_DIGESTS = {f"{alg}:{hashlib.new(alg).hexdigest()}" for alg in ("sha256", "sha384", "sha512")}


@dataclass
class DigestVerifier:
    """Content addressed by ``digest`` (sha256/384/512): the bytes must hash to it."""

    digest: str

    def new(self) -> Any:
        return hashlib.new(split_digest(self.digest)[0])

    def verdict(self, hasher: Any, n: int, size: int | None, label: str) -> str:
        actual = f"{split_digest(self.digest)[0]}:{hasher.hexdigest()}"
        size_ok = size is None or n == size
        if actual == self.digest and size_ok:
            return actual
        raise DigestMismatch(self.digest, actual if size_ok else f"{actual} ({n} bytes, expected {size})",
                             what=f"blob {label or ''}".strip())

    def from_cache(self) -> str:
        return self.digest

    def cacheable(self, verdict: Any) -> bool:
        return True


@dataclass
class BlobSource:
    """``GET /v2/<repo>/blobs/<digest>`` with closed ranges (redirects followed without
    credentials, a refused storage hop asked for again at the registry: the transport's)."""

    reg: Any
    repo: str | None
    digest: str
    size_hint: int | None = None  #: a HEAD's Content-Length when no descriptor gave the size
    ranged_parts: bool = True

    def settle(self, job: Job) -> None:
        if self.repo is None:
            raise NotFound(f"{self.digest} is not in the cache; name its repository: 'repo@{self.digest}'")
        _settle_size(self, job)

    def open(self, job: Job, start: int, end: int | None) -> Opened | None:
        try:
            return _open_range(self, job, start, end)
        except RegistryError as exc:
            if exc.status == 416 and job.size is None and start > 0:
                return None  # nothing after the bytes a .partial holds already: the digest decides
            raise

    def total(self, resp: Any) -> int | None:
        return _size_of(resp)


def blob_job(reg: Any, repo: str | None, digest: str, size: int | None, **kw: Any) -> Job:
    """A :class:`Job` for the v2 blob ``digest`` of ``repo`` (``size_hint``: a HEAD's length;
    other keywords are :class:`Job`'s)."""
    source = BlobSource(reg, repo, digest, kw.pop("size_hint", None))
    return Job(source, DigestVerifier(digest), digest, size, cache_key=digest, lock_name=blob_filename(digest), **kw)


def _head_length(src: BlobSource) -> int | None:
    """The blob's ``Content-Length`` from a HEAD, or None when the registry gives none (or the HEAD
    fails: the GET that follows reports why)."""
    try:
        resp = request_blob(src.reg.transport, "HEAD", f"/v2/{src.repo}/blobs/{src.digest}",
                            what=f"blob {src.digest[:19]}")
    except RegistryError:
        return None
    cl = resp.headers.get("Content-Length", "")
    return int(cl) if cl.isdigit() else None


def _settle_size(src: BlobSource, job: Job) -> None:
    """Bound a blob of unknown size (a descriptor without ``size``, ``repo@digest``) before its GET.

    The ``Content-Length`` of a HEAD (the one :func:`_plan` read, else asked now) becomes its
    expected size, so a GET announcing another size is refused and no byte past it is taken (the
    digest then decides). Without one (or a HEAD of 0 bytes for a digest that is not the empty
    blob's: no answer), at most ``REGEXPLORE_MAX_BLOB_BYTES`` are read. Raises ``ValueError`` for
    a bad value of that variable."""
    if job.size is not None:
        return
    length = src.size_hint if src.size_hint is not None else _head_length(src)
    if length == 0 and src.digest not in _EMPTY_DIGESTS:
        length = None
    if length is not None:
        job.size, job.head_sized = length, True
    else:
        job.max_bytes = blob_cap_from_env()


def _refuse_announced(job: Job, resp: Any) -> None:
    """Close ``resp`` and raise when it announces (a 200's ``Content-Length``, a 206's
    ``Content-Range`` total) a blob size other than the expected one. Against a descriptor's size
    (part of the content's address) that is :class:`DigestMismatch`: those bytes cannot be the
    blob. Against a HEAD's length it is :class:`ResponseTooLarge` when larger (also over the cap
    when no size is known), :class:`RegistryError` when smaller: the registry contradicts itself."""
    announced = _size_of(resp)
    if announced is None or announced == job.size:
        return
    if job.size is not None and not job.head_sized:
        exc: RegistryError = DigestMismatch(job.key, f"a body of {announced} bytes where the descriptor says "
                                            f"{job.size}", url=resp.url, what=f"blob {job.label}".strip())
    elif job.size is not None:
        cls = ResponseTooLarge if announced > job.size else RegistryError
        exc = cls(f"blob {job.key[:19]}: the registry announces {announced} bytes where its HEAD said "
                  f"{job.size}", url=resp.url)
    elif job.max_bytes is not None and announced > job.max_bytes:
        exc = over_cap(job, f"the registry announces {announced} bytes", resp.url)
    else:
        return
    resp.close()
    raise exc


def _open_range(src: BlobSource, job: Job, start: int, end: int | None) -> Opened:
    """GET the blob from ``start`` (to ``end`` inclusive when given) through the transport; a
    storage hop that refuses the redirect (expired signed URL) is retried once from the registry.

    Returns ``(response, first, stop)``: the body holds the blob's bytes ``first`` up to ``stop``
    (exclusive; None: to the end of the blob). A 200 gives ``(resp, 0, None)`` (the server sent
    everything). A 206 may cover less than asked: it must start at ``start`` and end at or before
    ``end`` (or the blob's last byte); the caller asks again for the rest. Raises
    :class:`RegistryError` on a 206 for any other range (bytes that could not be placed), and
    what :func:`_refuse_announced` raises for an answer announcing another size.
    """
    headers = {"Accept-Encoding": "identity"}
    if start > 0 or end is not None:  # resumes and parts; a whole blob is a plain GET
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
    resp = request_blob(src.reg.transport, "GET", f"/v2/{src.repo}/blobs/{src.digest}", headers=headers,
                        stream=True, ok=(200, 206), what=f"blob {job.key[:19]}")
    _refuse_announced(job, resp)
    if resp.status_code == 200:
        return resp, 0, None
    m = CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
    limit = end if end is not None else (job.size - 1 if job.size is not None else None)
    if not m or int(m.group(1)) != start or int(m.group(2)) < start \
            or (limit is not None and int(m.group(2)) > limit):
        resp.close()
        raise RegistryError(f"asked for bytes {start}-{'' if end is None else end}, the server sent "
                            f"{resp.headers.get('Content-Range')!r}", status=206, url=resp.url)
    return resp, start, int(m.group(2)) + 1


def _size_of(resp: Any) -> int | None:
    """The whole blob's size from a 206's ``Content-Range`` total or a 200's ``Content-Length``."""
    if resp.status_code == 206:
        m = CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        return int(m.group(3)) if m and m.group(3) != "*" else None
    cl = resp.headers.get("Content-Length", "")
    return int(cl) if cl.isdigit() else None



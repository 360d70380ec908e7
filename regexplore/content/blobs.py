"""Verified, resumable, concurrent blob downloads; the content-addressed cache; OCI layouts.

Data flow of one blob (docs/protocol.md §2.2, §5)::

    descriptor → GET /v2/<repo>/blobs/<digest> (redirects followed without Authorization,
    401 challenges answered by the transport) → hash while streaming → <dest>/<name>.partial
    → size and digest match? → fsync + atomic rename → hard link (or copy) into the cache

- **Verified**: nothing is ever named as a good blob unless its bytes hashed to the digest; a
  mismatch raises :class:`~regexplore.errors.DigestMismatch` and removes the ``.partial``.
- **Resumable**: a dropped connection is resumed within the call with a closed
  ``Range: bytes=N-(size-1)``; a ``.partial`` left by an earlier call is hashed and resumed the
  same way. A server that answers ``200`` to a Range request is handled (the transfer restarts
  from byte 0, rewriting the prefix); a ``206`` covering less than asked is kept and the rest
  asked for; a 206 for any other range is refused. A redirect to storage whose signed URL is
  refused (4xx, e.g. an expired signature) is asked for again at the registry, once per request,
  which issues a fresh URL; the bytes already on disk are kept.
- **Concurrent and fast**: the blobs of an image download in parallel (``parallel``); one
  thread reads the socket in 1 MiB blocks while another hashes and writes (hashlib and file I/O
  release the GIL); a blob of 64 MiB or more whose server honours Range is fetched in 16 MiB
  ranged parts over several connections, written in place and hashed in order as the contiguous
  prefix grows. Memory stays flat whatever the blob size.
- **Bounded**: a blob whose size no descriptor gives (``repo@digest``, a descriptor without
  ``size``) takes its HEAD's ``Content-Length`` as its size: a GET announcing another size is
  refused, and no byte past it is read. Without any size, at most ``REGEXPLORE_MAX_BLOB_BYTES``
  (default 8 GiB) are read (:class:`~regexplore.errors.ResponseTooLarge`; the ``.partial`` goes).
- **Cached**: ``REGEXPLORE_CACHE`` (default ``$XDG_CACHE_HOME/regexplore`` or
  ``~/.cache/regexplore``; ``0``/``off`` disables it) holds ``blobs/<alg>/<hex>``; a verified blob
  is never downloaded twice. Per-digest file locks (``locks/``; with the cache off
  ``<tempdir>/regexplore-locks-<uid>``, which must be a private folder of the user) keep two
  threads or processes from fetching the same blob at once. Cached files are made read-only
  (they are hard links shared with your destination folders).
- **Not fooled by a shared folder**: nothing in a download folder is trusted by name. A
  ``.partial`` is opened with ``O_NOFOLLOW`` (a planted symlink or hard link is removed, never
  written through); an existing ``<dest>/sha256-<hex>`` is kept only when it is a regular file of
  the user that hashes right; only the file that was verified (same inode) is renamed or linked
  into the cache. A cache entry is served only when it is a read-only regular file of the user
  (``lstat``), and it is hashed again whenever it is read as a stream.

Public functions: :func:`download`, :func:`open_verified_stream`, :func:`save`, :func:`push`,
:func:`cache_info`, :func:`clear_cache`, :func:`cache_dir`. Progress goes to a callback
(:mod:`regexplore.content.progress`); this module imports neither pandas nor tqdm.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import hashlib
import io
import json
import os
import queue
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import threading
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urljoin

import requests
import urllib3

from .partials import (MAX_BLOB_BYTES_ENV, Ident, blob_cap_from_env, discard, ident, is_ours, my_uid, open_nofollow,
                        open_partial, private_dir, rename_verified, same_file)
from ..http.deadline import ResumeBudget, carry, check_not_cut, too_slow
from ..errors import DigestMismatch, NotFound, RegistryError, ResponseTooLarge, load_json
from ..model.oci import MAX_INDEX_DEPTH, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Manifest, choose_platform
from .progress import ProgressEvent, Reporter, resolve_progress
from ..reference import ImageRef
from ..http.retry import Attempts
from ..http.transport import MiB
from ..protocol.v2 import _with_query, request_blob

try:  # POSIX advisory locks; Windows falls back to msvcrt
    import fcntl
except ImportError:  # pragma: no cover - not exercised on Linux CI
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "download",
    "open_verified_stream",
    "save",
    "push",
    "cache_dir",
    "cache_info",
    "clear_cache",
    "blob_filename",
    "ProgressEvent",
]

CHUNK = 1 * MiB  #: read / hash / write block
PARTS_MIN_SIZE = 64 * MiB  #: blobs at least this big may be fetched in ranged parts
PART_SIZE = 16 * MiB  #: size of one ranged part
SYNC_EVERY = 32 * MiB  #: a background fdatasync starts after this many new bytes of a download
FAST_LINK = 256 * MiB  #: bytes/s: a link that streams the first part this fast gets no parallel parts
READ_AHEAD = 8  #: blocks buffered between the socket reader and the hasher/writer (8 MiB)
MAX_RESUMES = 8  #: tries without progress before giving up on a blob (a :class:`ResumeBudget`)
_DIGEST = re.compile(r"^(sha256|sha384|sha512):([0-9a-f]{64,128})$")
_CONTENT_RANGE = re.compile(r"^\s*(?:bytes\s+)?(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_DROPS = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)
_LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
_REF_NAME = "org.opencontainers.image.ref.name"


# ====================================================================== small helpers
def _split_digest(digest: str) -> tuple[str, str]:
    m = _DIGEST.match(digest or "")
    if not m:
        raise ValueError(f"not a digest this module can verify: {digest!r} (sha256/sha384/sha512 hex)")
    return m.group(1), m.group(2)


def blob_filename(digest: str) -> str:
    """The file name a blob gets in a download folder: ``sha256:ab…`` → ``sha256-ab…``."""
    alg, hexpart = _split_digest(digest)
    return f"{alg}-{hexpart}"


def _datasync(fd: int) -> None:
    """``fdatasync`` where the OS has it (it skips metadata), else ``fsync``; errors are the final
    ``fsync``'s to report."""
    with contextlib.suppress(OSError):
        (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_name(dst: Path) -> Path:
    """A fresh, unguessable name next to ``dst`` for a file that is renamed onto ``dst`` later."""
    return dst.with_name(f".{dst.name}.{secrets.token_hex(8)}.tmp")


def _create_beside(dst: Path) -> tuple[int, Path]:
    """A new, empty file next to ``dst`` (``O_CREAT|O_EXCL|O_NOFOLLOW``: a name planted there is
    never written through). Returns ``(write-only fd, path)``."""
    while True:
        tmp = _temp_name(dst)
        try:
            return open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), tmp
        except FileExistsError:
            continue


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a new temp file + fsync + rename (whatever sits at
    ``path``, a symlink included, is replaced, never written through)."""
    fd, tmp = _create_beside(path)
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _link_beside(src: Path, dst: Path) -> Path | None:
    """A hard link to ``src`` under a fresh name next to ``dst`` (``link(2)`` links a symlink
    itself, which :func:`_place` then refuses), or None where links cannot be made."""
    for _ in range(8):
        tmp = _temp_name(dst)
        try:
            os.link(src, tmp, follow_symlinks=False)
            return tmp
        except FileExistsError:
            continue
        except (OSError, NotImplementedError):
            return None
    return None


def _copy_beside(src: Path, dst: Path, expected: Ident) -> Path:
    """A copy of the regular file ``expected`` (opened at ``src`` without following a symlink)
    in a new file next to ``dst``, fsynced. Returns its path; raises ``OSError``."""
    fd_in = open_nofollow(src, os.O_RDONLY)
    with open(fd_in, "rb") as fin:
        if ident(os.fstat(fd_in)) != expected:
            raise OSError(f"{src} is no longer the file that was verified")
        fd_out, tmp = _create_beside(dst)
        try:
            with open(fd_out, "wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
                fout.flush()
                os.fsync(fout.fileno())
        except BaseException:
            discard(tmp)
            raise
    return tmp


def _place(src: Path, dst: Path, expected: Ident, *, readonly: bool = False) -> None:
    """Make ``dst`` hold the bytes of ``src``, the regular file ``expected`` (as verified through a
    descriptor): a hard link when possible, else a copy; atomic. Whatever sits at ``dst`` (a
    symlink included) is replaced, never written through; ``readonly`` drops the write bits (a
    cache entry). Raises ``OSError``, also when ``src`` is no longer ``expected``."""
    tmp = _link_beside(src, dst)
    try:
        if tmp is None:
            tmp = _copy_beside(src, dst, expected)
        elif not same_file(tmp, expected):
            raise OSError(f"{src} is no longer the file that was verified")
        if readonly:
            os.chmod(tmp, stat.S_IMODE(os.lstat(tmp).st_mode) & ~0o222)
        os.replace(tmp, dst)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                discard(tmp)
        raise


def _hash_open(f: IO[bytes], alg: str) -> tuple[Any, int]:
    """Hash ``f`` from its current position to the end; returns (hasher, bytes hashed)."""
    h = hashlib.new(alg)
    n = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        got = f.readinto(view)  # type: ignore[attr-defined]
        if not got:
            break
        h.update(view[:got])
        n += got
    return h, n


def _verified_file(path: Path, digest: str, size: int | None) -> tuple[Ident, int] | None:
    """``(identity, size)`` of ``path`` when it is a regular file of ours holding the blob (hashed
    through a descriptor opened without following a symlink). Anything else at ``path`` (a symlink,
    another user's file, other bytes) is removed, so it is neither trusted nor left under the
    blob's name. None when nothing good is there; ``OSError`` when it cannot be removed."""
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:  # a symlink (ELOOP), a socket…
        discard(path)
        return None
    alg, _ = _split_digest(digest)
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        good = is_ours(st) and (size is None or st.st_size == size) \
            and f"{alg}:{_hash_open(f, alg)[0].hexdigest()}" == digest
    if good:
        return ident(st), st.st_size
    discard(path)
    return None


# ====================================================================== the cache
def cache_dir(cache: "bool | str | os.PathLike[str] | None" = None) -> Path | None:
    """The cache folder to use, or None when caching is off.

    ``cache`` wins when given (True: the default folder; False: off; a path: that folder);
    otherwise ``REGEXPLORE_CACHE`` (``0``/``off``/``false``/``no``/empty: off; else a folder);
    otherwise ``$XDG_CACHE_HOME/regexplore`` or ``~/.cache/regexplore``.
    """
    if cache is False:
        return None
    if cache is not None and cache is not True:
        return Path(cache).expanduser()
    env = os.environ.get("REGEXPLORE_CACHE")
    if env is not None and cache is None:
        if env.strip().lower() in ("", "0", "off", "false", "no", "none"):
            return None
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "regexplore"


def _cache_path(cdir: Path, digest: str) -> Path:
    alg, hexpart = _split_digest(digest)
    return cdir / "blobs" / alg / hexpart


@dataclass(frozen=True)
class _Entry:
    """A cache entry that passed :func:`_cached`'s checks."""

    path: Path
    size: int
    ident: Ident


def _cached(cdir: Path | None, digest: str, size: int | None) -> _Entry | None:
    """The cache entry for ``digest`` when it is a read-only regular file of ours (``lstat``: never
    a symlink) with the expected size. Anything else under its name is removed (the blob will be
    fetched again): a cache never serves what it does not own, nor an entry someone made writable."""
    if cdir is None:
        return None
    p = _cache_path(cdir, digest)
    try:
        st = os.lstat(p)
    except OSError:
        return None
    if is_ours(st) and not st.st_mode & 0o222 and (size is None or st.st_size == size):
        return _Entry(p, st.st_size, ident(st))
    with contextlib.suppress(OSError):
        p.unlink()  # not what it claims to be: drop it, it will be fetched again
    return None


def _remember(cdir: Path | None, digest: str, verified: Path, expected: Ident) -> None:
    """Put ``verified`` into the cache (hard link, else copy), read-only, if it still is the regular
    file ``expected`` that was hashed (a file swapped in since, or a symlink, is never cached)."""
    if cdir is None:
        return
    target = _cache_path(cdir, digest)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if _cached(cdir, digest, None) is not None:
            return
        _place(verified, target, expected, readonly=True)
    except OSError:
        pass  # a cache that cannot be written is a slower cache, not an error


def cache_info(cache: "str | os.PathLike[str] | None" = None) -> list[dict[str, Any]]:
    """One row per cached blob: ``digest``, ``size`` (bytes), ``path`` (str) and ``modified``
    (aware UTC datetime), sorted by digest. Empty when the cache is off or empty."""
    cdir = cache_dir(cache)
    rows: list[dict[str, Any]] = []
    if cdir is None or not (cdir / "blobs").is_dir():
        return rows
    for alg_dir in sorted((cdir / "blobs").iterdir()):
        if not alg_dir.is_dir():
            continue
        for p in sorted(alg_dir.iterdir()):
            digest = f"{alg_dir.name}:{p.name}"
            if not _DIGEST.match(digest):
                continue  # partial or temp files
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                continue
            rows.append({"digest": digest, "size": st.st_size, "path": str(p),
                         "modified": datetime.fromtimestamp(st.st_mtime, timezone.utc)})
    return rows


def clear_cache(cache: "str | os.PathLike[str] | None" = None, *, digests: Iterable[str] | None = None) -> int:
    """Remove cached blobs (all, or only ``digests``); returns how many were removed. Files you
    downloaded elsewhere stay (they are separate links)."""
    cdir = cache_dir(cache)
    if cdir is None:
        return 0
    wanted = set(digests) if digests is not None else None
    n = 0
    for row in cache_info(cdir):
        if wanted is not None and row["digest"] not in wanted:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(row["path"])
            n += 1
    return n


_FALLBACK_LOCKS: list[Path] = []  #: this process's own lock folder, made when the usual one is not private
_REFUSED_LOCKS: set[Path] = set()  #: lock folders already warned about
_LOCKS_GUARD = threading.Lock()


def _lock_folder(cdir: Path | None) -> Path:
    """The folder for per-digest lock files: ``<cache>/locks``, or with the cache off
    ``<tempdir>/regexplore-locks-<uid>`` (a predictable name in a shared folder). Either must be a
    private folder of this user (:func:`~regexplore.content.partials.private_dir`); if it is not (a symlink,
    another owner, writable by others), a warning names it and this process uses a fresh private
    folder of its own instead (locks then hold between its threads, not across processes)."""
    if cdir is not None:
        folder = cdir / "locks"
    else:
        folder = Path(tempfile.gettempdir()) / f"regexplore-locks-{my_uid() if my_uid() is not None else 'u'}"
    if private_dir(folder):
        return folder
    with _LOCKS_GUARD:
        if folder not in _REFUSED_LOCKS:
            _REFUSED_LOCKS.add(folder)
            warnings.warn(f"{folder} is not a private folder of this user (a symlink, another owner, or "
                          "writable by others): not using it for download locks", RuntimeWarning, stacklevel=2)
        if not (_FALLBACK_LOCKS and private_dir(_FALLBACK_LOCKS[-1])):
            own = Path(tempfile.mkdtemp(prefix="regexplore-locks-"))
            atexit.register(shutil.rmtree, own, True)
            _FALLBACK_LOCKS.append(own)
        return _FALLBACK_LOCKS[-1]


@contextlib.contextmanager
def _blob_lock(cdir: Path | None, digest: str) -> Iterator[None]:
    """An exclusive lock per digest, across threads (one open file each) and processes; the lock
    file lives in :func:`_lock_folder` and is opened without following a symlink."""
    alg, hexpart = _split_digest(digest)
    fd = open_nofollow(_lock_folder(cdir) / f"{alg}-{hexpart}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:  # pragma: no cover - Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.05)
        yield
    finally:
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ====================================================================== one HTTP range
class _Cancelled(Exception):
    """The download was cancelled (another blob failed, or the user interrupted)."""


class _Dropped(Exception):
    """The connection ended before the bytes we were promised."""


class _NoRange(Exception):
    """The server answered a Range request with the whole blob (200)."""


@dataclass
class _Job:
    """What one blob download needs to know."""

    reg: Any
    repo: str | None
    digest: str
    size: int | None
    report: Reporter | None = None
    label: str = ""
    cancel: threading.Event | None = None
    parallel: int = 1
    size_hint: int | None = None  #: a HEAD's Content-Length when no descriptor gave the size
    head_sized: bool = False  #: ``size`` is a HEAD's Content-Length (a bound), not a descriptor's
    max_bytes: int | None = None  #: with no ``size``: the most bytes taken (REGEXPLORE_MAX_BLOB_BYTES)

    def emit(self, done_bytes: int, done: bool = False, cached: bool = False) -> None:
        if self.report is not None:
            self.report(ProgressEvent(self.digest, done_bytes, self.size, done, cached, self.label))

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise _Cancelled()


_Opened = tuple[Any, int, "int | None"]  #: (response, first byte it holds, byte it stops before or None)
_EMPTY_DIGESTS = {f"{alg}:{hashlib.new(alg).hexdigest()}" for alg in ("sha256", "sha384", "sha512")}


def _head_length(job: _Job) -> int | None:
    """The blob's ``Content-Length`` from a HEAD, or None when the registry gives none (or the HEAD
    fails: the GET that follows reports why)."""
    try:
        resp = request_blob(job.reg.transport, "HEAD", f"/v2/{job.repo}/blobs/{job.digest}",
                            what=f"blob {job.digest[:19]}")
    except RegistryError:
        return None
    cl = resp.headers.get("Content-Length", "")
    return int(cl) if cl.isdigit() else None


def _settle_size(job: _Job) -> None:
    """Bound a blob of unknown size (a descriptor without ``size``, ``repo@digest``) before its GET.

    The ``Content-Length`` of a HEAD (the one :func:`_plan` read, else asked now) becomes its
    expected size, so a GET announcing another size is refused and no byte past it is taken (the
    digest then decides). Without one (or a HEAD of 0 bytes for a digest that is not the empty
    blob's: no answer), at most ``REGEXPLORE_MAX_BLOB_BYTES`` are read. Raises ``ValueError`` for
    a bad value of that variable."""
    if job.size is not None:
        return
    length = job.size_hint if job.size_hint is not None else _head_length(job)
    if length == 0 and job.digest not in _EMPTY_DIGESTS:
        length = None
    if length is not None:
        job.size, job.head_sized = length, True
    else:
        job.max_bytes = blob_cap_from_env()


def _over_cap(job: _Job, what: str, url: str | None = None) -> ResponseTooLarge:
    """The error for a blob of unknown size over ``job.max_bytes``."""
    return ResponseTooLarge(f"blob {job.digest[:19]} has no known size (no descriptor size, no Content-Length "
                            f"on its HEAD) and {what}, over the {job.max_bytes}-byte cap; raise it with "
                            f"{MAX_BLOB_BYTES_ENV}", url=url)


def _within_cap(job: _Job, total: int, url: str | None = None) -> None:
    """Raise :class:`ResponseTooLarge` when a blob of unknown size would hold ``total`` bytes, more
    than ``job.max_bytes``."""
    if job.size is None and job.max_bytes is not None and total > job.max_bytes:
        raise _over_cap(job, f"its body runs past {job.max_bytes} bytes", url)


def _refuse_announced(job: _Job, resp: Any) -> None:
    """Close ``resp`` and raise when it announces (a 200's ``Content-Length``, a 206's
    ``Content-Range`` total) a blob size other than the expected one. Against a descriptor's size
    (part of the content's address) that is :class:`DigestMismatch`: those bytes cannot be the
    blob. Against a HEAD's length it is :class:`ResponseTooLarge` when larger (also over the cap
    when no size is known), :class:`RegistryError` when smaller: the registry contradicts itself."""
    announced = _size_of(resp)
    if announced is None or announced == job.size:
        return
    if job.size is not None and not job.head_sized:
        exc: RegistryError = DigestMismatch(job.digest, f"a body of {announced} bytes where the descriptor says "
                                            f"{job.size}", url=resp.url, what=f"blob {job.label}".strip())
    elif job.size is not None:
        cls = ResponseTooLarge if announced > job.size else RegistryError
        exc = cls(f"blob {job.digest[:19]}: the registry announces {announced} bytes where its HEAD said "
                  f"{job.size}", url=resp.url)
    elif job.max_bytes is not None and announced > job.max_bytes:
        exc = _over_cap(job, f"the registry announces {announced} bytes", resp.url)
    else:
        return
    resp.close()
    raise exc


def _open_range(job: _Job, start: int, end: int | None) -> _Opened:
    """GET the blob from ``start`` (to ``end`` inclusive when given) through the transport; a
    storage hop that refuses the redirect (expired signed URL) is retried once from the registry.

    Returns ``(response, first, stop)``: the body holds the blob's bytes ``first`` up to ``stop``
    (exclusive; None: to the end of the blob). A 200 gives ``(resp, 0, None)`` (the server sent
    everything). A 206 may cover less than asked: it must start at ``start`` and end at or before
    ``end`` (or the blob's last byte); the caller asks again for the rest. Raises
    :class:`RegistryError` on a 206 for any other range (bytes that could not be placed), and
    what :func:`_refuse_announced` raises for an answer announcing another size.
    """
    assert job.repo is not None
    headers = {"Accept-Encoding": "identity"}
    if start > 0 or end is not None:  # resumes and parts; a whole blob is a plain GET
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
    resp = request_blob(job.reg.transport, "GET", f"/v2/{job.repo}/blobs/{job.digest}", headers=headers,
                        stream=True, ok=(200, 206), what=f"blob {job.digest[:19]}")
    _refuse_announced(job, resp)
    if resp.status_code == 200:
        return resp, 0, None
    m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
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
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        return int(m.group(3)) if m and m.group(3) != "*" else None
    cl = resp.headers.get("Content-Length", "")
    return int(cl) if cl.isdigit() else None


def _read_limit(job: _Job, offset: int, upto: int | None) -> int | None:
    """How many bytes to take from a body that starts at ``offset``: up to ``upto`` when known,
    else one past the cap of a blob of unknown size (so that a body over it shows)."""
    if upto is not None:
        return upto - offset
    return None if job.max_bytes is None else max(0, job.max_bytes + 1 - offset)


def _read(resp: Any, n: int) -> bytes:
    return resp.raw.read(n, decode_content=False)


class _ReadAhead:
    """Read a response body in a thread into a bounded queue of blocks (at most ``limit`` bytes).

    Iterating yields blocks; a connection failure is re-raised in the consumer as
    :class:`_Dropped`. ``close()`` stops the thread and closes the response.
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


# ====================================================================== one blob into one file
class _Partial:
    """The ``.partial`` file of one blob: an open file, a hasher and how many bytes both hold.

    Opened by :func:`~regexplore.content.partials.open_partial`: an earlier call's ``.partial`` (a regular
    file of ours with one link) is hashed and resumed; a symlink or anything else planted under
    that name is removed, never written through. ``ident`` is the file's identity, checked again
    after the rename."""

    def __init__(self, path: Path, alg: str) -> None:
        self.path = path
        self.alg = alg
        self.reused = 0
        self._synced = 0
        self._syncing: threading.Thread | None = None
        fd, resumed = open_partial(path)
        self.f = open(fd, "r+b", buffering=0)
        self.ident = ident(os.fstat(fd))
        if resumed:
            self.hasher, self.offset = _hash_open(self.f, alg)
            self.reused = self.offset
        else:
            self.hasher, self.offset = hashlib.new(alg), 0

    def restart(self) -> None:
        self.f.seek(0)
        self.f.truncate(0)
        self.hasher = hashlib.new(self.alg)
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
        self._syncing = threading.Thread(target=_datasync, args=(fd,), name="regexplore-sync", daemon=True)
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


def _fetch_sequential(job: _Job, part: _Partial, first: _Opened | None = None,
                      until: int | None = None) -> _Opened | None:
    """Stream the rest of the blob into ``part`` until ``job.size`` bytes (or a clean end of the
    body when the size is unknown), asking with a closed ``Range`` for what is missing after a
    dropped connection or a short 206. ``first`` is an already opened :func:`_open_range` result.

    ``until`` stops at that byte instead (the first part of a big blob); if the response then
    holds more of the blob, it is returned still open, as an ``_Opened`` that continues it.

    A blob of unknown size takes at most ``job.max_bytes`` (:class:`ResponseTooLarge` past it). The
    resumes spend a :class:`~regexplore.http.deadline.ResumeBudget`: only bytes beyond the furthest reached
    earn a try back, so a server that ignores Range and keeps cutting the body at the same place is
    given up on."""
    budget = ResumeBudget(MAX_RESUMES, part.offset)
    while (job.size is None and until is None) or part.offset < (until if until is not None else job.size):
        job.check()
        if first is not None:
            resp, got, stop = first
            first = None
        else:
            last = until if until is not None else job.size
            end = last - 1 if last is not None and (part.offset > 0 or until is not None) else None
            try:
                resp, got, stop = _open_range(job, part.offset, end)
            except RegistryError as exc:
                if exc.status == 416 and job.size is None and part.offset > 0:
                    return None  # nothing after the bytes a .partial holds already: the digest decides
                raise
        if got != part.offset:  # a 200 to our Range: take the whole body, from byte 0
            part.restart()
            job.emit(0)
        if job.size is None:  # no descriptor size, no HEAD length: the first answer may tell (capped)
            job.size = _size_of(resp)
        upto = stop if stop is not None else job.size
        if until is not None and (upto is None or upto > until):
            upto = until
        reader = _ReadAhead(resp, _read_limit(job, part.offset, upto))
        dropped = keep = False
        try:
            for block in reader:
                job.check()
                _within_cap(job, part.offset + len(block), resp.url)
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
            raise _gave_up(job, resp, part.offset)
        budget.pause()
    return None


def _gave_up(job: _Job, resp: Any, offset: int) -> RegistryError:
    """The error once a blob's resume budget is spent: :class:`DeadlineExceeded` when the last
    attempt was cut for being too slow (or at the deadline), else a :class:`RegistryError`."""
    url = getattr(resp, "url", None)
    return too_slow(resp, url) or RegistryError(
        f"blob {job.digest[:19]}: the connection kept breaking at byte {offset} (too little progress "
        f"in {MAX_RESUMES} tries)", url=url)


def _fetch_parts(job: _Job, part: _Partial, probe: _Opened | None, parts: list[tuple[int, int]]) -> None:
    """Fetch ``parts`` (``[start, end)`` ranges after ``part.offset``) over several connections,
    writing in place, while this thread hashes the contiguous prefix in order."""
    assert job.size is not None
    fd = part.f.fileno()
    os.ftruncate(fd, job.size)
    written = [a for a, _ in parts]  # per part: first byte not yet written
    cond = threading.Condition()
    errors: list[BaseException] = []
    stop = threading.Event()
    next_index = iter(range(len(parts)))
    take_lock = threading.Lock()
    first: list[_Opened | None] = [probe]

    def run_part(i: int) -> None:
        a, b = parts[i]
        pos = a
        budget = ResumeBudget(MAX_RESUMES, a)
        while pos < b:
            if stop.is_set():
                return
            job.check()
            if i == 0 and first[0] is not None:
                resp, got, upto = first[0]
                first[0] = None
            else:
                resp, got, upto = _open_range(job, pos, b - 1)
            if got != pos:
                resp.close()
                raise _NoRange()
            limit = b if upto is None else min(b, upto)  # a short 206: the rest is asked for next
            try:
                while pos < limit and not stop.is_set():
                    block = _read(resp, min(CHUNK, limit - pos))
                    if not block:
                        raise _Dropped("short body")
                    view = memoryview(block)
                    while view:
                        n = os.pwrite(fd, view, pos)
                        view = view[n:]
                        pos += n
                    with cond:
                        written[i] = pos
                        cond.notify_all()
            except (_Dropped, *_DROPS):
                if not budget.spend(pos):
                    raise _gave_up(job, resp, pos) from None
            finally:
                resp.close()

    def worker() -> None:
        try:
            while not stop.is_set():
                with take_lock:
                    i = next(next_index, None)
                if i is None:
                    return
                run_part(i)
        except BaseException as exc:
            with cond:
                errors.append(exc)
                stop.set()
                cond.notify_all()

    def contiguous() -> int:
        for (a, b), w in zip(parts, written):
            if w < b:
                return w
        return job.size  # type: ignore[return-value]

    threads = [threading.Thread(target=carry(worker), name="regexplore-part", daemon=True)
               for _ in range(max(1, min(job.parallel, len(parts))))]
    for t in threads:
        t.start()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        while part.offset < job.size:
            with cond:
                while not errors and contiguous() <= part.offset:
                    cond.wait(0.5)
                    if job.cancel is not None and job.cancel.is_set():
                        break
                upto = contiguous()
                if errors:
                    raise errors[0]
            job.check()
            while part.offset < upto:
                n = os.preadv(fd, [view[: min(CHUNK, upto - part.offset)]], part.offset)
                if n <= 0:
                    raise RegistryError(f"could not read back {part.path.name}")
                part.hasher.update(view[:n])
                part.offset += n
            job.emit(part.offset)
    except BaseException:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        # keep only the hashed prefix, so that a later call can resume from it
        with contextlib.suppress(OSError):
            os.ftruncate(fd, part.offset)
        raise
    for t in threads:
        t.join()


def _fetch_into(job: _Job, final: Path) -> Ident:
    """Download ``job``'s blob to ``final`` through ``final.partial``: verified, atomic, resumable.
    Returns the identity of the verified file now named ``final``.

    Raises :class:`DigestMismatch` or :class:`ResponseTooLarge` (the ``.partial`` is removed: its
    bytes are not to be resumed, also when the GET announced the wrong size), :class:`RegistryError` (the ``.partial`` is kept for a later
    resume), ``OSError`` when the ``.partial`` was swapped for another file before the rename.
    """
    alg, hexpart = _split_digest(job.digest)
    partial = final.with_name(final.name + ".partial")
    retried_from_zero = False
    while True:
        part = _Partial(partial, alg)
        try:
            bound = job.size if job.size is not None else job.max_bytes
            if bound is not None and part.offset > bound:
                part.restart()
            if part.offset:
                job.emit(part.offset)
            if job.size is None or part.offset < job.size:
                _fetch_body(job, part)
            actual = f"{alg}:{part.hasher.hexdigest()}"
            size_ok = job.size is None or part.offset == job.size
            if actual == job.digest and size_ok:
                part.sync()
                part.close()
                rename_verified(partial, final, part.ident)
                _fsync_dir(final.parent)
                job.emit(part.offset, done=True)
                return part.ident
            reused = part.reused
            part.close()
            discard(partial)
            if reused and not retried_from_zero:
                retried_from_zero = True  # the prefix from an earlier call may be the bad part
                continue
            raise DigestMismatch(job.digest, actual if size_ok else f"{actual} ({part.offset} bytes, "
                                 f"expected {job.size})", what=f"blob {job.label or ''}".strip())
        except (DigestMismatch, ResponseTooLarge):
            part.close()
            discard(partial)
            raise
        finally:
            part.close()


def _fetch_body(job: _Job, part: _Partial) -> None:
    """Choose sequential or ranged-parts transfer for the bytes after ``part.offset``."""
    size = job.size
    remaining = None if size is None else size - part.offset
    if size is None or job.parallel <= 1 or remaining is None or remaining < PARTS_MIN_SIZE:
        _fetch_sequential(job, part)
        return
    bounds = list(range(part.offset, size, PART_SIZE))
    parts = [(a, min(a + PART_SIZE, size)) for a in bounds]
    probe = _open_range(job, parts[0][0], size - 1)
    if probe[1] != parts[0][0] or probe[0].status_code == 200:
        # the server ignores Range: stream the whole body from this response
        _fetch_sequential(job, part, first=probe)
        return
    if _size_of(probe[0]) != size:  # a 206 that does not tell the total ("*"): no parts, stream
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


def _fetch_blob(job: _Job, final: Path, cdir: Path | None) -> Path:
    """Make ``final`` hold the verified blob: from the cache, from an existing good file of ours
    (a symlink or another user's file there is replaced, never trusted), or downloaded (a blob of
    unknown size bounded first, :func:`_settle_size`). Returns ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with _blob_lock(cdir, job.digest):
        job.check()
        hit = _cached(cdir, job.digest, job.size)
        if hit is not None:
            if not same_file(final, hit.ident):
                _place(hit.path, final, hit.ident)
            job.emit(hit.size, done=True, cached=True)
            return final
        found = _verified_file(final, job.digest, job.size)  # from an earlier run without the cache
        if found is not None:
            _remember(cdir, job.digest, final, found[0])
            job.emit(found[1], done=True, cached=True)
            return final
        if job.repo is None:
            raise NotFound(f"{job.digest} is not in the cache; name its repository: 'repo@{job.digest}'")
        _settle_size(job)
        _remember(cdir, job.digest, final, _fetch_into(job, final))
        return final


# ====================================================================== download()
@dataclass
class _Target:
    repo: str | None
    digest: str
    size: int | None
    label: str
    size_hint: int | None = None


def _plan(reg: Any, ref_or_digest: Any, platform: str | None, layers: Sequence[Any] | None,
          cdir: Path | None) -> tuple[list[_Target], str]:
    """What to download: (targets in output order, a description for the progress bar)."""
    if isinstance(ref_or_digest, str) and _DIGEST.match(ref_or_digest.strip()):
        d = ref_or_digest.strip()
        hit = _cached(cdir, d, None)
        if hit is None:
            raise ValueError(f"a bare digest can only be served from the cache; name its repository: "
                             f"'repo@{d}'")
        return [_Target(None, d, hit.size, "blob")], d[:19]
    r: ImageRef = reg.ref(ref_or_digest)
    if r.digest:
        # a blob or a manifest? Ask the blob endpoint first: asking for a layer as a manifest makes
        # distribution answer 500 (retried by the transport); a manifest's digest is 404 as a blob
        # there, and elsewhere its Content-Type gives it away
        try:
            head = request_blob(reg.transport, "HEAD", f"/v2/{r.repository}/blobs/{r.digest}", what="blob")
        except NotFound:
            head = None
        ctype = (head.headers.get("Content-Type") or "").split(";")[0].strip() if head is not None else ""
        if head is not None and not ctype.startswith("application/vnd.oci.image.index") \
                and "manifest" not in ctype:
            cl = head.headers.get("Content-Length", "")
            return [_Target(r.repository, r.digest, None, "blob", int(cl) if cl.isdigit() else None)], \
                r.digest[:19]
    image, _index = reg._resolve(r, platform)  # an index's platform, nested indexes followed
    targets: list[_Target] = []
    cd = image.config_descriptor
    layer_descs = image.layer_descriptors
    if layers is None:
        if cd and cd.get("digest"):
            targets.append(_Target(r.repository, cd["digest"], cd.get("size"), "config"))
        for i, d in enumerate(layer_descs):
            targets.append(_Target(r.repository, d["digest"], d.get("size"), f"layer {i}"))
    else:
        by_digest = {d["digest"]: (i, d) for i, d in enumerate(layer_descs)}
        for sel in layers:
            if isinstance(sel, int):
                try:
                    d = layer_descs[sel]
                except IndexError:
                    raise IndexError(f"layer {sel} out of range: {r} has {len(layer_descs)} layers") from None
                targets.append(_Target(r.repository, d["digest"], d.get("size"), f"layer {sel % len(layer_descs)}"))
            elif cd and sel == cd.get("digest"):
                targets.append(_Target(r.repository, sel, cd.get("size"), "config"))
            elif sel in by_digest:
                i, d = by_digest[sel]
                targets.append(_Target(r.repository, sel, d.get("size"), f"layer {i}"))
            else:
                raise NotFound(f"{sel} is not a layer of {r}")
    return targets, r.familiar()


def _run_jobs(jobs: list[tuple[_Job, Path]], cdir: Path | None, parallel: int, cancel: threading.Event) -> None:
    """Run blob jobs on up to ``parallel`` threads; the first failure is raised.

    After a failure no new blob starts, and the blobs already in flight finish (verified, under
    their good names), so a failed call leaves no ``.partial`` behind except the failing blob's
    own when its transfer broke (kept for a resume). An interrupt (Ctrl-C) stops them all at once.
    """
    if len(jobs) == 1:
        _fetch_blob(jobs[0][0], jobs[0][1], cdir)
        return
    with ThreadPoolExecutor(max(1, min(parallel, len(jobs))), thread_name_prefix="regexplore-blob") as ex:
        fetch = carry(_fetch_blob)  # the call's deadline goes with each blob
        futures: list[Future[Path]] = [ex.submit(fetch, job, final, cdir) for job, final in jobs]
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


def download(reg: Any, ref_or_digest: "str | ImageRef", dest: "str | os.PathLike[str]" = ".", *,
             platform: str | None = None, progress: Any = True, parallel: int = 4,
             layers: Sequence["int | str"] | None = None,
             cache: "bool | str | os.PathLike[str] | None" = None) -> list[Path]:
    """Download an image's blobs (or one blob) into ``dest``, verified, atomic and resumable.

    ``ref_or_digest``: an image reference (``"demo/app:1"``; for an index the ``platform`` is
    chosen like :meth:`Registry.history` does: the given one, else linux/amd64, else the first),
    ``"repo@sha256:…"`` of a manifest (an image) or of a blob (that blob), or a bare
    ``"sha256:…"`` that is already in the cache.

    ``layers``: indexes (negative allowed) or digests to download instead of the whole image.
    ``progress``: True (tqdm bars), False, a callable taking a :class:`ProgressEvent`, or an
    object with ``update``/``close``. ``parallel``: blobs fetched at once (and ranged parts of a
    blob ≥ 64 MiB). ``cache``: see :func:`cache_dir`.

    Returns the paths (``dest/sha256-<hex>``) in order: the config first, then every layer in
    manifest order (a repeated layer repeats its path).

    Raises :class:`DigestMismatch` (no file is left under the good name),
    :class:`~regexplore.errors.NotFound`, :class:`RegistryError` for transfers that keep
    failing (the ``.partial`` stays, and the next call resumes it). After one blob fails, no
    other starts, and those already in flight finish first (so the error comes when they are
    done, and no ``.partial`` of theirs is left); Ctrl-C stops everything at once.
    """
    cdir = cache_dir(cache)
    folder = Path(dest).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    targets, desc = _plan(reg, ref_or_digest, platform, layers, cdir)
    unique: dict[str, _Target] = {}
    for t in targets:
        unique.setdefault(t.digest, t)
    sizes = [t.size for t in unique.values()]
    total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    reporter = resolve_progress(progress, total=total, count=len(unique), desc=desc)
    cancel = threading.Event()
    jobs = [(_Job(reg, t.repo, t.digest, t.size, reporter, t.label, cancel, parallel, t.size_hint),
             folder / blob_filename(t.digest)) for t in unique.values()]
    try:
        _run_jobs(jobs, cdir, parallel, cancel)
    finally:
        if reporter is not None:
            reporter.close()
    return [folder / blob_filename(t.digest) for t in targets]


# ====================================================================== streaming reader
def open_verified_stream(reg: Any, repo: str, digest: str, size: int | None = None, *,
                         cache: "bool | str | os.PathLike[str] | None" = None) -> Iterator[bytes]:
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
    alg, _ = _split_digest(digest)
    hit = _cached(cache_dir(cache), digest, size)
    if hit is not None:
        yield from _stream_cached(hit, digest)
        return
    job = _Job(reg, repo, digest, size, max_bytes=None if size is not None else blob_cap_from_env())
    h = hashlib.new(alg)
    pos = 0
    budget = ResumeBudget(MAX_RESUMES)
    while size is None or pos < size:
        resp, got, stop = _open_range(job, pos, None if size is None else size - 1)
        if size is None:
            size = job.size = _size_of(resp)
        skip = pos - got
        upto = stop if stop is not None else size
        reader = _ReadAhead(resp, _read_limit(job, got, upto))
        try:
            for block in reader:
                if skip:
                    if len(block) <= skip:
                        skip -= len(block)
                        continue
                    block = block[skip:]
                    skip = 0
                _within_cap(job, pos + len(block), resp.url)
                h.update(block)
                pos += len(block)
                yield block
            if size is None:
                break
        except _Dropped:
            pass
        finally:
            reader.close()
        if size is not None and pos >= size:
            break
        if not budget.spend(pos):
            raise _gave_up(job, resp, pos)
        budget.pause()
    actual = f"{alg}:{h.hexdigest()}"
    if actual != digest or (size is not None and pos != size):
        raise DigestMismatch(digest, actual, what="streamed blob")


def _stream_cached(hit: _Entry, digest: str) -> Iterator[bytes]:
    """Yield a cache entry's bytes (opened without following a symlink), hashing them; an entry
    that no longer hashes to ``digest`` is removed and :class:`DigestMismatch` raised at the end."""
    alg, _ = _split_digest(digest)
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


# ====================================================================== save(): OCI image layout
def _collect(reg: Any, repo: str, m: Manifest, manifests: dict[str, Manifest], blobs: dict[str, _Target],
             depth: int = 0) -> None:
    """Every manifest and blob reachable from ``m`` (index children included), each manifest visited
    once however often it is listed. An index is first resolved within the bounds of
    ``Registry._flat_index`` (:class:`ResponseTooLarge` past them); one nested more than
    ``MAX_INDEX_DEPTH`` levels down raises :class:`ResponseTooLarge` (a layout needs all of it)."""
    manifests[m.digest] = m
    if m.is_index:
        if depth == 0:
            reg._flat_index(repo, m)
        if depth > MAX_INDEX_DEPTH:
            raise ResponseTooLarge(f"index {repo}@{m.digest} is nested more than {MAX_INDEX_DEPTH} levels deep")
        for e in m.json.get("manifests") or []:
            if e["digest"] not in manifests:
                child = reg.manifest(ImageRef(reg.name, repo, None, e["digest"]))
                _collect(reg, repo, child, manifests, blobs, depth + 1)
        return
    if m.is_schema1:
        raise RegistryError("schema1 images cannot be written as an OCI layout")
    cd = m.config_descriptor
    if cd and cd.get("digest"):
        blobs.setdefault(cd["digest"], _Target(repo, cd["digest"], cd.get("size"), "config"))
    for i, d in enumerate(m.layer_descriptors):
        if d.get("urls"):  # foreign / non-distributable layers live elsewhere
            continue
        blobs.setdefault(d["digest"], _Target(repo, d["digest"], d.get("size"), f"layer {i}"))


def _layout_blob_path(root: Path, digest: str) -> Path:
    alg, hexpart = _split_digest(digest)
    return root / "blobs" / alg / hexpart


def _write_layout(reg: Any, r: ImageRef, root: Path, platform: str | None, progress: Any, parallel: int,
                  cdir: Path | None) -> None:
    top = reg.manifest(r)
    entry_extra: dict[str, Any] = {}
    if top.is_index and platform is not None:
        chosen = choose_platform(reg._flat_index(r.repository, top), platform)
        top = reg.manifest(r.with_digest(chosen["digest"]))
        if chosen.get("platform"):
            entry_extra["platform"] = chosen["platform"]
    manifests: dict[str, Manifest] = {}
    blobs: dict[str, _Target] = {}
    _collect(reg, r.repository, top, manifests, blobs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)
    sizes = [t.size for t in blobs.values()]
    total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    reporter = resolve_progress(progress, total=total, count=len(blobs), desc=f"save {r.familiar()}")
    cancel = threading.Event()
    jobs = [(_Job(reg, t.repo, t.digest, t.size, reporter, t.label, cancel, parallel),
             _layout_blob_path(root, t.digest)) for t in blobs.values()]
    try:
        if jobs:
            _run_jobs(jobs, cdir, parallel, cancel)
    finally:
        if reporter is not None:
            reporter.close()
    for m in manifests.values():
        p = _layout_blob_path(root, m.digest)
        p.parent.mkdir(parents=True, exist_ok=True)
        if _verified_file(p, m.digest, len(m.raw)) is None:  # a symlink planted there is replaced
            _atomic_write(p, m.raw)
    _atomic_write(root / "oci-layout", json.dumps(_LAYOUT_VERSION).encode())
    desc: dict[str, Any] = {"mediaType": top.media_type, "digest": top.digest, "size": top.size}
    desc.update(entry_extra)
    if r.tag:
        desc["annotations"] = {_REF_NAME: r.tag}
    index_path = root / "index.json"
    entries: list[dict[str, Any]] = []
    if index_path.exists():
        try:
            old = load_json(index_path.read_bytes(), str(index_path))
            entries = [e for e in old.get("manifests") or []
                       if not (r.tag and (e.get("annotations") or {}).get(_REF_NAME) == r.tag)
                       and not (not r.tag and e.get("digest") == top.digest and not e.get("annotations"))]
        except (ValueError, AttributeError, RegistryError):
            entries = []
    entries.append(desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    _atomic_write(index_path, json.dumps(index, indent=2).encode())
    _fsync_dir(root)


def save(reg: Any, ref: "str | ImageRef", path: "str | os.PathLike[str]", format: str = "oci",
         platform: str | None = None, *, progress: Any = True, parallel: int = 4,
         cache: "bool | str | os.PathLike[str] | None" = None) -> str:
    """Write ``ref`` as an OCI image layout that ``skopeo copy oci:PATH[:TAG] …`` accepts.

    ``path`` is a folder (created; an existing layout gets the entry added or replaced) or, when
    it ends in ``.tar``, a tar archive of the layout (``oci-archive:``). With an index and no
    ``platform`` the whole index (every platform, attestations included) is written; with a
    ``platform`` only that image. ``index.json`` names the tag in
    ``org.opencontainers.image.ref.name``. Blobs come through the verified download path (and
    the cache). Returns ``str(path)``.

    Raises ``ValueError`` for a ``format`` other than ``"oci"``, and what :func:`download` raises.
    A failure leaves no ``index.json`` (folder) or no archive (``.tar``) naming missing blobs.
    """
    if format != "oci":
        raise ValueError(f"unsupported format {format!r}: only 'oci' (an OCI image layout) is written")
    r: ImageRef = reg.ref(ref)
    cdir = cache_dir(cache)
    out = Path(path).expanduser()
    if out.suffix != ".tar":
        _write_layout(reg, r, out, platform, progress, parallel, cdir)
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp_tar = out.with_name(out.name + ".partial")
    try:
        _write_layout(reg, r, stage, platform, progress, parallel, cdir)
        with tarfile.open(tmp_tar, "w", format=tarfile.PAX_FORMAT) as tf:
            for name in ("oci-layout", "index.json"):
                tf.add(stage / name, arcname=name, recursive=False)
            for p in sorted((stage / "blobs").rglob("*")):
                if p.is_file() and not p.name.endswith(".partial"):
                    tf.add(p, arcname=str(p.relative_to(stage)), recursive=False)
        with open(tmp_tar, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_tar, out)
        _fsync_dir(out.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_tar.unlink()
        shutil.rmtree(stage, ignore_errors=True)
    return str(out)


# ====================================================================== push()
class _Source:
    """Read access to an OCI layout: a folder or a tar archive (members streamed, not extracted)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_file():
            self.tar = tarfile.open(path, "r:")
            for m in self.tar.getmembers():
                if m.isfile():
                    self.members[m.name.removeprefix("./")] = m
        elif not path.is_dir():
            raise FileNotFoundError(f"no OCI layout at {path}")

    def _rel(self, digest: str) -> str:
        alg, hexpart = _split_digest(digest)
        return f"blobs/{alg}/{hexpart}"

    def size(self, rel: str) -> int:
        if self.tar is not None:
            if rel not in self.members:
                raise FileNotFoundError(f"{rel} is not in {self.path}")
            return self.members[rel].size
        return (self.path / rel).stat().st_size

    def open(self, rel: str) -> IO[bytes]:
        if self.tar is not None:
            if rel not in self.members:
                raise FileNotFoundError(f"{rel} is not in {self.path}")
            f = self.tar.extractfile(self.members[rel])
            assert f is not None
            return f
        return open(self.path / rel, "rb")

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()

    def blob(self, digest: str) -> tuple[Callable[[], IO[bytes]], int]:
        rel = self._rel(digest)
        return (lambda: self.open(rel)), self.size(rel)

    def manifest(self, desc: dict) -> Manifest:
        raw = self.read(self._rel(desc["digest"]))
        return Manifest.from_bytes(raw, desc.get("mediaType"), expected=desc["digest"],
                                   what=f"manifest {desc['digest'][:19]} of the layout")

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


class _UploadBody:
    """A file-like body for requests: a known length, big reads, bytes counted for progress."""

    def __init__(self, f: IO[bytes], length: int, on_bytes: Callable[[int], None] | None) -> None:
        self.f = f
        self.left = length
        self.on_bytes = on_bytes

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        want = self.left if n is None or n < 0 else min(max(n, CHUNK), self.left)
        block = self.f.read(want) if want else b""
        self.left -= len(block)
        if block and self.on_bytes:
            self.on_bytes(len(block))
        return block


def _upload_stream(reg: Any, repo: str, digest: str, size: int, opener: Callable[[], IO[bytes]],
                   chunk_size: int | None, on_bytes: Callable[[int], None] | None = None) -> None:
    """Upload a blob from a file without reading it all into memory: monolithic (POST, PUT with
    the streamed body) or chunked (PATCH ``chunk_size`` blocks, honouring
    ``OCI-Chunk-Min-Length``), finished with ``PUT ?digest=``."""
    t = reg.transport
    resp = t.request("POST", f"/v2/{repo}/blobs/uploads/", ok=(202,), headers={"Content-Length": "0"},
                     retry_body=True, what="start upload")
    location = urljoin(resp.url, resp.headers["Location"])
    with opener() as f:
        if chunk_size:
            min_len = resp.headers.get("OCI-Chunk-Min-Length")
            if min_len and min_len.isdigit():
                chunk_size = max(chunk_size, int(min_len))
            pos = 0
            while pos < size:
                block = f.read(min(chunk_size, size - pos))
                if not block:
                    raise OSError(f"blob {digest[:19]} ended at byte {pos} of {size} while uploading "
                                  "(did the file change?)")
                r = t.request("PATCH", location, data=block, ok=(202,), what="upload chunk",
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Range": f"{pos}-{pos + len(block) - 1}",
                                       "Content-Length": str(len(block))})
                location = urljoin(r.url, r.headers.get("Location") or location)
                pos += len(block)
                if on_bytes:
                    on_bytes(len(block))
            t.request("PUT", _with_query(location, digest=digest), ok=(201,), what="finish upload",
                      headers={"Content-Length": "0"})
        else:
            t.request("PUT", _with_query(location, digest=digest), data=_UploadBody(f, size, on_bytes),
                      ok=(201,), what="upload blob",
                      headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})


def _ensure_blob(reg: Any, repo: str, digest: str, size: int, opener: Callable[[], IO[bytes]],
                 chunk_size: int | None, mount_from: str | None) -> None:
    """Make ``repo`` hold the blob: already there (HEAD), mounted from ``mount_from``, or uploaded."""
    if reg.v2.blob_exists(repo, digest):
        return
    if mount_from and mount_from != repo and reg.v2.mount_blob(repo, digest, mount_from):
        return
    _upload_retrying(reg, repo, digest, size, opener, chunk_size)


def _upload_retrying(reg: Any, repo: str, digest: str, size: int, opener: Callable[[], IO[bytes]],
                     chunk_size: int | None) -> None:
    """:func:`_upload_stream`, started again from a new upload session when the registry answers
    429 / 5xx or the connection breaks, as Docker's pusher retries a layer: a streamed body cannot
    be replayed inside one request, and a half-done session's state is the server's, so the whole
    upload is repeated (within the transport's :class:`~regexplore.http.retry.RetryPolicy`)."""
    tries = Attempts(reg.transport.retry)
    while True:
        try:
            return _upload_stream(reg, repo, digest, size, opener, chunk_size)
        except RegistryError as exc:
            if not (tries.policy.transient(exc) and tries.again(getattr(exc, "retry_after", None))):
                raise


def _push_tree(reg: Any, src: _Source, repo: str, desc: dict, reference: str | None, chunk_size: int | None,
               mount_from: str | None, parallel: int) -> str:
    """Push the manifest ``desc`` names (children and blobs first); returns its digest."""
    m = src.manifest(desc)
    if m.is_index:
        for child in m.json.get("manifests") or []:
            _push_tree(reg, src, repo, child, None, chunk_size, mount_from, parallel)
    else:
        descs = ([m.config_descriptor] if m.config_descriptor else []) + [
            d for d in m.layer_descriptors if not d.get("urls")]
        work = []
        for digest in dict.fromkeys(d["digest"] for d in descs):  # a layer listed twice goes once
            opener, size = src.blob(digest)
            work.append((digest, size, opener))
        if src.tar is not None or parallel <= 1 or len(work) <= 1:  # a TarFile is not thread-safe
            for digest, size, opener in work:
                _ensure_blob(reg, repo, digest, size, opener, chunk_size, mount_from)
        else:
            with ThreadPoolExecutor(min(parallel, len(work)), thread_name_prefix="regexplore-push") as ex:
                for fut in [ex.submit(_ensure_blob, reg, repo, dg, sz, op, chunk_size, mount_from)
                            for dg, sz, op in work]:
                    fut.result()
    return reg.v2.put_manifest(repo, reference or m.digest, m.raw, m.media_type)


def _files_layout(files: Sequence["str | os.PathLike[str]"], folder: Path, platform: str) -> None:
    """Write a one-layer OCI layout in ``folder`` from ``files`` (each at the top of the layer under
    its base name; folders recursively), with a small config carrying one history step."""
    paths = [Path(p).expanduser() for p in files]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"two inputs share a base name: {sorted(names)}")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(p)
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tmp_layer = blobs / "layer.tmp"
    gz_hash, tar_hash = hashlib.sha256(), hashlib.sha256()

    class _HashingWriter(io.RawIOBase):
        def __init__(self, inner: Any, h: Any) -> None:
            self.inner, self.h = inner, h

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.h.update(b)
            return self.inner.write(b)

    with open(tmp_layer, "wb") as raw:
        gz_out = _HashingWriter(raw, gz_hash)
        with gzip.GzipFile(fileobj=gz_out, mode="wb", mtime=0) as gz:  # type: ignore[arg-type]
            tar_out = _HashingWriter(gz, tar_hash)
            with tarfile.open(fileobj=tar_out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = ""
                    return ti

                for p in paths:
                    tf.add(p, arcname=p.name, filter=clean)
    layer_digest = "sha256:" + gz_hash.hexdigest()
    layer_size = tmp_layer.stat().st_size
    os.replace(tmp_layer, blobs / layer_digest[7:])
    os_, _, arch = platform.partition("/")
    arch, _, variant = arch.partition("/")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config: dict[str, Any] = {
        "created": now, "architecture": arch, "os": os_,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + tar_hash.hexdigest()]},
        "history": [{"created": now, "created_by": "regexplore push " + " ".join(names),
                     "comment": "files added by regexplore"}],
    }
    if variant:
        config["variant"] = variant
    cfg_raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cfg_digest = "sha256:" + hashlib.sha256(cfg_raw).hexdigest()
    (blobs / cfg_digest[7:]).write_bytes(cfg_raw)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(cfg_raw)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": layer_size}],
    }
    m_raw = json.dumps(manifest, separators=(",", ":")).encode()
    m_digest = "sha256:" + hashlib.sha256(m_raw).hexdigest()
    (blobs / m_digest[7:]).write_bytes(m_raw)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": m_digest, "size": len(m_raw)}]}
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text(json.dumps(_LAYOUT_VERSION))


def push(reg: Any, source: Any, ref: "str | ImageRef", *, chunk_size: int | None = None,
         mount_from: str | None = None, name: str | None = None, platform: str = "linux/amd64",
         parallel: int = 4) -> str:
    """Push to ``ref`` (``"repo:tag"`` or ``"repo"``); returns the pushed manifest's digest.

    ``source``: an OCI image layout (a folder, or a ``.tar`` of one), or a list of files (and
    folders) that become a one-layer image (gzip layer, an OCI config for ``platform`` with one
    history step). In a layout with several entries, ``name`` (else the tag of ``ref``) picks the
    one whose ``org.opencontainers.image.ref.name`` matches. Blobs the repository already has
    are skipped (HEAD); with ``mount_from`` a cross-repository mount is tried first; uploads are
    monolithic and streamed from disk by default, chunked (``PATCH``) with ``chunk_size``. Then
    the manifests: children of an index by digest, the top one by tag.

    Raises ``FileNotFoundError`` / ``ValueError`` for a bad source, :class:`DigestMismatch` for a
    layout manifest that does not hash to its name, and :class:`RegistryError` from the registry.
    """
    r: ImageRef = reg.ref(ref)
    reference = r.tag if r.tag and not r.digest else (r.digest or r.tag)
    with contextlib.ExitStack() as stack:
        if isinstance(source, (list, tuple)):
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="regexplore-push-")))
            _files_layout(source, folder, platform)
            src = _Source(folder)
        else:
            src = _Source(Path(source).expanduser())
        stack.callback(src.close)
        index = load_json(src.read("index.json"), f"index.json of the layout at {source}")
        entries = list(index.get("manifests") or [])
        if not entries:
            raise ValueError(f"the layout at {source} lists no manifests")
        chosen = entries[0] if len(entries) == 1 else None
        wanted = name or r.tag
        if chosen is None or name is not None:
            matches = [e for e in entries if (e.get("annotations") or {}).get(_REF_NAME) == wanted]
            if not matches:
                have = [(e.get("annotations") or {}).get(_REF_NAME) for e in entries]
                raise ValueError(f"the layout has {len(entries)} entries {have}; choose one with name=")
            chosen = matches[0]
        return _push_tree(reg, src, r.repository, chosen, reference, chunk_size, mount_from, parallel)

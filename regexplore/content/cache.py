"""The content-addressed cache, per-download locks and digest-named files.

``REGEXPLORE_CACHE`` (default ``$XDG_CACHE_HOME/regexplore`` or ``~/.cache/regexplore``;
``0``/``off`` disables it) holds ``blobs/<alg>/<hex>`` and, for v1 layers (which have no digest),
``v1/sha256/<hex>`` keyed by the registry's payload checksum. A verified blob is never downloaded
twice. Per-download file locks (``locks/``; with the cache off ``<tempdir>/regexplore-locks-<uid>``,
which must be a private folder of the user) keep two threads or processes from fetching the same
blob at once. Cached files are made read-only (they are hard links shared with your destination
folders); an entry is served only when it is a read-only regular file of the user (``lstat``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import _env
from .partials import Ident, discard, hash_into, ident, is_ours, my_uid, open_nofollow, place, private_dir

try:  # POSIX advisory locks; Windows falls back to msvcrt
    import fcntl
except ImportError:  # pragma: no cover - not exercised on Linux CI
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DIGEST",
    "V1_KEY",
    "Entry",
    "blob_filename",
    "blob_lock",
    "cache_dir",
    "cache_info",
    "cache_path",
    "cached",
    "clear_cache",
    "remember",
    "split_digest",
    "verified_file",
]

DIGEST = re.compile(r"^(sha256|sha384|sha512):([0-9a-f]{64,128})$")  #: a digest this package verifies

V1_KEY = "v1:"  #: prefix of a v1 layer's cache key (``v1:`` + its payload checksum)


def split_digest(digest: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a digest; ``ValueError`` for one this package cannot verify."""
    m = DIGEST.match(digest or "")
    if not m:
        raise ValueError(f"not a digest this module can verify: {digest!r} (sha256/sha384/sha512 hex)")
    return m.group(1), m.group(2)


def blob_filename(digest: str) -> str:
    """The file name a blob gets in a download folder: ``sha256:ab…`` → ``sha256-ab…``."""
    alg, hexpart = split_digest(digest)
    return f"{alg}-{hexpart}"


def verified_file(path: Path, digest: str, size: int | None) -> tuple[Ident, int] | None:
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
    alg, _ = split_digest(digest)
    h = hashlib.new(alg)
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        good = is_ours(st) and (size is None or st.st_size == size)
        if good:
            hash_into(f, h)
            good = f"{alg}:{h.hexdigest()}" == digest
    if good:
        return ident(st), st.st_size
    discard(path)
    return None


def cache_dir(cache: bool | str | os.PathLike[str] | None = None) -> Path | None:
    """The cache folder to use, or None when caching is off.

    ``cache`` wins when given (True: the default folder; False: off; a path: that folder);
    otherwise ``REGEXPLORE_CACHE`` (``0``/``off``/``false``/``no``/empty: off; else a folder);
    otherwise ``$XDG_CACHE_HOME/regexplore`` or ``~/.cache/regexplore``.
    """
    if cache is False:
        return None
    if cache is not None and cache is not True:
        return Path(cache).expanduser()
    if cache is None and _env.is_set("REGEXPLORE_CACHE"):  # set, even empty: the user's choice
        env = _env.text("REGEXPLORE_CACHE")
        return None if env is None or _env.switched_off("REGEXPLORE_CACHE") else Path(env).expanduser()
    base = _env.text("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "regexplore"


def cache_path(cdir: Path, key: str) -> Path:
    """Where the entry ``key`` lives: a digest under ``blobs/<alg>/<hex>``; a v1 layer's key
    (``v1:sha256:<hex>``, its payload checksum) under ``v1/sha256/<hex>``."""
    area, digest = ("v1", key[3:]) if key.startswith(V1_KEY) else ("blobs", key)
    alg, hexpart = split_digest(digest)
    return cdir / area / alg / hexpart


@dataclass(frozen=True)
class Entry:
    """A cache entry that passed :func:`cached`'s checks."""

    path: Path
    size: int
    ident: Ident


def cached(cdir: Path | None, digest: str, size: int | None) -> Entry | None:
    """The cache entry for ``digest`` (or a v1 key, :func:`cache_path`) when it is a read-only regular
    file of ours (``lstat``: never a symlink) with the expected size. Anything else under its name is
    removed (the blob will be fetched again): a cache never serves what it does not own, nor an entry
    someone made writable."""
    if cdir is None:
        return None
    p = cache_path(cdir, digest)
    try:
        st = os.lstat(p)
    except OSError:
        return None
    if is_ours(st) and not st.st_mode & 0o222 and (size is None or st.st_size == size):
        return Entry(p, st.st_size, ident(st))
    with contextlib.suppress(OSError):
        p.unlink()  # not what it claims to be: drop it, it will be fetched again
    return None


def remember(cdir: Path | None, digest: str, verified: Path, expected: Ident) -> None:
    """Put ``verified`` into the cache (hard link, else copy), read-only, if it still is the regular
    file ``expected`` that was hashed (a file swapped in since, or a symlink, is never cached)."""
    if cdir is None:
        return
    target = cache_path(cdir, digest)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if cached(cdir, digest, None) is not None:
            return
        place(verified, target, expected, readonly=True)
    except OSError:
        pass  # a cache that cannot be written is a slower cache, not an error


def cache_info(cache: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """One row per cached blob: ``digest`` (``v1:sha256:…`` for a v1 layer, keyed by its payload
    checksum), ``size`` (bytes), ``path`` (str) and ``modified`` (aware UTC datetime), sorted by
    digest. Empty when the cache is off or empty."""
    cdir = cache_dir(cache)
    rows: list[dict[str, Any]] = []
    if cdir is None:
        return rows
    for area, prefix in (("blobs", ""), ("v1", V1_KEY)):
        if not (cdir / area).is_dir():
            continue
        for alg_dir in sorted((cdir / area).iterdir()):
            if not alg_dir.is_dir():
                continue
            for p in sorted(alg_dir.iterdir()):
                digest = f"{alg_dir.name}:{p.name}"
                if not DIGEST.match(digest):
                    continue  # partial or temp files
                st = os.lstat(p)
                if not stat.S_ISREG(st.st_mode):
                    continue
                rows.append({"digest": prefix + digest, "size": st.st_size, "path": str(p),
                             "modified": datetime.fromtimestamp(st.st_mtime, UTC)})
    return sorted(rows, key=lambda row: row["digest"])


def clear_cache(cache: str | os.PathLike[str] | None = None, *, digests: Iterable[str] | None = None) -> int:
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
def blob_lock(cdir: Path | None, name: str) -> Iterator[None]:
    """An exclusive lock per download (``name``: a file name such as :func:`blob_filename`'s),
    across threads (one open file each) and processes; the lock file lives in :func:`_lock_folder`
    and is opened without following a symlink."""
    fd = open_nofollow(_lock_folder(cdir) / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
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

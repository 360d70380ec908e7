"""Files on disk for the fetch engine (:mod:`regexplore.content.fetch`), the cache and the layout writer.

A download folder may be shared with other local users (``/tmp``, a team folder), so nothing in it
is trusted by name:

- a ``.partial`` is opened with ``O_NOFOLLOW`` and checked through its open descriptor (a regular
  file of ours with one link); anything else under that name (a symlink, a FIFO, a hard link to
  some other file, a file of another user) is removed and a new file is created with ``O_EXCL``;
- a file is identified by ``(st_dev, st_ino)``: what was verified through a descriptor is the
  only thing renamed, linked or copied afterwards (:func:`same_file`);
- a private folder (:func:`private_dir`) is a real directory of ours that no one else can write.

Files are written atomically (a new file beside the target, fsynced, renamed: :func:`atomic_write`,
:func:`place`). It also reads the cap on a download whose size nobody announced (:func:`blob_cap_from_env`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import IO, Any

from .. import _env

__all__ = [
    "CHUNK",
    "DEFAULT_BLOB_CAP",
    "MAX_BLOB_BYTES_ENV",
    "Ident",
    "atomic_write",
    "blob_cap_from_env",
    "create_beside",
    "datasync",
    "discard",
    "fsync_dir",
    "hash_into",
    "ident",
    "is_ours",
    "my_uid",
    "open_nofollow",
    "open_partial",
    "place",
    "private_dir",
    "rename_verified",
    "same_file",
]

#: Default cap on the bytes of a download whose size neither a descriptor nor the registry announced.
DEFAULT_BLOB_CAP = 8 * 1024**3
#: Environment variable holding that cap, in bytes.
MAX_BLOB_BYTES_ENV = "REGEXPLORE_MAX_BLOB_BYTES"

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_EXTRA = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
CHUNK = 1024 * 1024  #: read / hash / copy block
_ATTEMPTS = 5  #: times a name is freed and claimed again before giving up (someone keeps planting it)

Ident = tuple[int, int]  #: (st_dev, st_ino) of a file


def blob_cap_from_env() -> int:
    """The cap on a download of unknown size: ``$REGEXPLORE_MAX_BLOB_BYTES`` or :data:`DEFAULT_BLOB_CAP`.

    Raises ``ValueError`` for a value that is not a positive whole number of bytes."""
    return _env.whole(MAX_BLOB_BYTES_ENV, DEFAULT_BLOB_CAP)


def my_uid() -> int | None:
    """This process's user id, or None where the OS has none (Windows: owners are not checked)."""
    return os.getuid() if hasattr(os, "getuid") else None


def is_ours(st: os.stat_result) -> bool:
    """True when ``st`` (from ``lstat``/``fstat``) is a regular file owned by this user."""
    uid = my_uid()
    return stat.S_ISREG(st.st_mode) and (uid is None or st.st_uid == uid)


def ident(st: os.stat_result) -> Ident:
    """The identity of a file: ``(st_dev, st_ino)``."""
    return st.st_dev, st.st_ino


def same_file(path: Path, expected: Ident) -> bool:
    """True when ``path`` itself (not a symlink's target) is the regular file ``expected``."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and ident(st) == expected


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags, mode)`` that never follows a symlink at ``path`` (``ELOOP`` instead) and
    never blocks on a FIFO planted there. Returns the descriptor; raises ``OSError``."""
    return os.open(path, flags | O_NOFOLLOW | _O_EXTRA, mode)


def discard(path: Path) -> None:
    """Remove whatever is at ``path`` (a symlink itself, never its target). Raises ``OSError`` when
    it is there and cannot be removed (e.g. another user's file in a sticky folder)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def open_partial(path: Path) -> tuple[int, bool]:
    """Open ``path`` read-write for a download without following a symlink.

    Returns ``(fd, resumed)``: an existing regular file of ours with a single link is reopened
    (``resumed``: its bytes are an earlier call's); anything else there is removed and a new,
    empty file is created with ``O_CREAT|O_EXCL|O_NOFOLLOW``. Raises ``OSError`` when the name
    cannot be freed or keeps being taken by someone else."""
    for _ in range(_ATTEMPTS):
        try:
            fd = open_nofollow(path, os.O_RDWR)
        except FileNotFoundError:
            try:
                return open_nofollow(path, os.O_RDWR | os.O_CREAT | os.O_EXCL), False
            except FileExistsError:
                continue  # planted between the two opens: look again
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EMLINK, errno.EACCES, errno.EPERM, errno.ENXIO,
                                 errno.EISDIR, errno.EWOULDBLOCK):
                raise
        else:
            st = os.fstat(fd)
            if is_ours(st) and st.st_nlink == 1:
                return fd, True
            os.close(fd)
        discard(path)  # a symlink, a FIFO, another user's file, a hard link to something else
    raise FileExistsError(errno.EEXIST, "something keeps taking this name; not writing there", str(path))


def rename_verified(src: Path, dst: Path, expected: Ident) -> None:
    """Flush the file ``expected`` to disk (opened at ``src`` without following a symlink), rename it
    to ``dst`` (whatever is there, a symlink itself, is replaced) and check that ``dst`` now is that
    file. Raises ``OSError`` when ``src`` was swapped for another file (an impostor that got renamed
    is removed first: nothing unverified stays under ``dst``)."""
    fd = open_nofollow(src, os.O_RDWR)
    try:
        if ident(os.fstat(fd)) != expected:
            raise OSError(f"{src} was replaced by another file; not renaming it")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    if not same_file(dst, expected):
        discard(dst)
        raise OSError(f"{src} was replaced by another file while being renamed; nothing kept")


def private_dir(folder: Path) -> bool:
    """Make ``folder`` (created with mode 0700 when missing) and say whether it is private: a real
    directory (not a symlink), owned by this user, that group and others cannot write. A folder of
    ours that others can only read is tightened to 0700. Returns False when it is not safe to use."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700, parents=True)
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    uid = my_uid()
    if not stat.S_ISDIR(st.st_mode) or (uid is not None and st.st_uid != uid) or st.st_mode & 0o022:
        return False
    if st.st_mode & 0o077:
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
    return True


def datasync(fd: int) -> None:
    """``fdatasync`` where the OS has it (it skips metadata), else ``fsync``; errors are the final
    ``fsync``'s to report."""
    with contextlib.suppress(OSError):
        (getattr(os, "fdatasync", None) or os.fsync)(fd)


def fsync_dir(folder: Path) -> None:
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


def create_beside(dst: Path) -> tuple[int, Path]:
    """A new, empty file next to ``dst`` (``O_CREAT|O_EXCL|O_NOFOLLOW``: a name planted there is
    never written through). Returns ``(write-only fd, path)``."""
    while True:
        tmp = _temp_name(dst)
        try:
            return open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a new temp file + fsync + rename (whatever sits at
    ``path``, a symlink included, is replaced, never written through)."""
    fd, tmp = create_beside(path)
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
    itself, which :func:`place` then refuses), or None where links cannot be made."""
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
        fd_out, tmp = create_beside(dst)
        try:
            with open(fd_out, "wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
                fout.flush()
                os.fsync(fout.fileno())
        except BaseException:
            discard(tmp)
            raise
    return tmp


def place(src: Path, dst: Path, expected: Ident, *, readonly: bool = False) -> None:
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


def hash_into(f: IO[bytes], h: Any) -> int:
    """Feed ``f`` from its current position to the end into the hasher ``h`` (anything with
    ``update``); returns the number of bytes read."""
    n = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        got = f.readinto(view)  # type: ignore[attr-defined]
        if not got:
            return n
        h.update(view[:got])
        n += got

"""What both download engines (:mod:`regexplore.content.blobs`, the v1 layer fetch) share about files on disk.

A download folder may be shared with other local users (``/tmp``, a team folder), so nothing in it
is trusted by name:

- a ``.partial`` is opened with ``O_NOFOLLOW`` and checked through its open descriptor (a regular
  file of ours with one link); anything else under that name (a symlink, a FIFO, a hard link to
  some other file, a file of another user) is removed and a new file is created with ``O_EXCL``;
- a file is identified by ``(st_dev, st_ino)``: what was verified through a descriptor is the
  only thing renamed, linked or copied afterwards (:func:`same_file`);
- a private folder (:func:`private_dir`) is a real directory of ours that no one else can write.

It also reads the cap on a download whose size nobody announced (:func:`blob_cap_from_env`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .. import _env

__all__ = ["MAX_BLOB_BYTES_ENV", "DEFAULT_BLOB_CAP", "Ident", "blob_cap_from_env", "my_uid", "is_ours", "ident",
           "open_nofollow", "open_partial", "discard", "same_file", "rename_verified", "private_dir"]

#: Default cap on the bytes of a download whose size neither a descriptor nor the registry announced.
DEFAULT_BLOB_CAP = 8 * 1024**3
#: Environment variable holding that cap, in bytes.
MAX_BLOB_BYTES_ENV = "REGEXPLORE_MAX_BLOB_BYTES"

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_EXTRA = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
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

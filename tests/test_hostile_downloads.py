"""Downloads against hostile neighbours in a shared download folder.

- a symlink (or a hard link) planted at ``dest/<blob>.partial``: never written through;
- a symlink planted at ``dest/<blob>`` whose target verifies today: never trusted, never linked into
  the cache, so a later same-size swap of its target cannot poison ``read_file`` or a download;
- with the cache off, a hostile ``$TMPDIR/regexplore-locks-<uid>`` (a symlink, another owner,
  writable by others, a planted lock-file symlink): not used.

The registry is ``plain``'s (conftest), a real one.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest

from regexplore import Registry, blobs
from regexplore.errors import DigestMismatch
from regexplore.sandbox import LocalRegistry
from regexplore.v1 import V1Client
from servers import TinyImage

# ====================================================================== planted .partial
def _plant(kind: str, at: Path, victim: Path) -> None:
    if kind == "symlink":
        victim.write_bytes(b"precious, not a blob\n")
        at.symlink_to(victim)
    elif kind == "dangling-symlink":
        at.symlink_to(victim)  # the victim does not exist yet: it must not be created
    else:
        victim.write_bytes(b"precious, not a blob\n")
        os.link(victim, at)


PLANTS = ["symlink", "dangling-symlink", "hardlink"]


def _victim_intact(kind: str, victim: Path) -> bool:
    if kind == "dangling-symlink":
        return not victim.exists()
    return victim.read_bytes() == b"precious, not a blob\n"


@pytest.mark.parametrize("kind", PLANTS)
@pytest.mark.parametrize("cache", [False, None], ids=["cache-off", "cache-on"])
def test_planted_partial_is_never_written_through(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path,
                                                  private_cache: Path, kind: str, cache: bool | None) -> None:
    """Issue 10 item 14: a symlink or hard link planted at ``dest/sha256-<hex>.partial``."""
    sandbox, img = plain
    dest = tmp_path / "shared"
    dest.mkdir()
    victim = tmp_path / "victim"
    _plant(kind, dest / f"sha256-{img.layer_digest[7:]}.partial", victim)
    reg = Registry(sandbox.url, auth=False)
    paths = reg.download(f"{img.repo}:{img.tag}", dest, progress=False, cache=cache)
    assert _victim_intact(kind, victim)
    for p, data in zip(paths, [img.config, img.layer]):
        st = os.lstat(p)
        assert stat.S_ISREG(st.st_mode) and p.read_bytes() == data
    assert not list(dest.glob("*.partial"))


@pytest.mark.parametrize("kind", PLANTS)
def test_v1_planted_partial_is_never_written_through(tmp_path: Path, kind: str) -> None:
    """Item 14 in the v1 engine (``download_layer``'s ``<target>.partial``)."""
    from v1server import V1Image, V1Server

    img = V1Image.build(files={"etc/motd": os.urandom(5000)}, seed="hostile-partial")
    with V1Server(standalone=True) as srv:
        srv.preload("alice/app", [img], tags={"latest": img.id})
        target = tmp_path / "layer.tar"
        victim = tmp_path / "victim"
        _plant(kind, Path(f"{target}.partial"), victim)
        got = V1Client.connect(srv.index_url, auth=False).download_layer("alice/app", img.id, target)
    assert _victim_intact(kind, victim)
    assert stat.S_ISREG(os.lstat(target).st_mode) and target.read_bytes() == img.layer and got.verified
    assert not Path(f"{target}.partial").exists()


# ====================================================================== cache poisoning
def _same_size_tar(payload_size: int, like: bytes) -> bytes:
    """A tar with ``hello.txt`` of other random bytes, the same size as ``like``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = payload_size, 1_600_000_000, 0o644
        tar.addfile(info, io.BytesIO(os.urandom(payload_size)))
    evil = buf.getvalue()
    assert len(evil) == len(like)
    return evil


def test_planted_final_symlink_cannot_poison_the_cache(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path,
                                                       private_cache: Path) -> None:
    """Issue 10 item 15, the exact attack: ``dest/sha256-<hex>`` is a symlink to the attacker's file
    holding the right bytes today; after the download the attacker swaps them (same size)."""
    sandbox, img = plain
    dest = tmp_path / "shared"
    dest.mkdir()
    evil_file = tmp_path / "attacker" / "layer"
    evil_file.parent.mkdir()
    evil_file.write_bytes(img.layer)
    final = dest / f"sha256-{img.layer_digest[7:]}"
    final.symlink_to(evil_file)
    reg = Registry(sandbox.url, auth=False)
    reg.download(f"{img.repo}:{img.tag}", dest, progress=False)
    assert stat.S_ISREG(os.lstat(final).st_mode) and final.read_bytes() == img.layer  # not trusted, not left
    entry = blobs._cache_path(private_cache, img.layer_digest)
    st = os.lstat(entry)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o222

    payload_size = len(reg.read_file(f"{img.repo}:{img.tag}", "hello.txt"))
    evil_file.write_bytes(_same_size_tar(payload_size, img.layer))  # the swap

    want = tarfile.open(fileobj=io.BytesIO(img.layer)).extractfile("hello.txt").read()  # type: ignore[union-attr]
    assert reg.read_file(f"{img.repo}:{img.tag}", "hello.txt") == want
    assert b"".join(blobs.open_verified_stream(reg, img.repo, img.layer_digest, len(img.layer))) == img.layer
    (again,) = reg.download(f"{img.repo}@{img.layer_digest}", tmp_path / "again", progress=False)
    assert again.read_bytes() == img.layer


def test_cache_entry_that_changed_is_not_served(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path,
                                                private_cache: Path) -> None:
    """Item 15: a cache entry made writable (and changed) is dropped and fetched again; one changed
    behind its read-only mode is caught by the hash on the read path (DigestMismatch, entry dropped)."""
    sandbox, img = plain
    reg = Registry(sandbox.url, auth=False)
    reg.download(f"{img.repo}@{img.layer_digest}", tmp_path / "a", progress=False)
    entry = blobs._cache_path(private_cache, img.layer_digest)
    evil = bytes(b ^ 0xFF for b in img.layer)
    os.chmod(entry, 0o644)
    entry.write_bytes(evil)
    assert b"".join(blobs.open_verified_stream(reg, img.repo, img.layer_digest, len(img.layer))) == img.layer
    (p,) = reg.download(f"{img.repo}@{img.layer_digest}", tmp_path / "b", progress=False)
    assert p.read_bytes() == img.layer

    entry = blobs._cache_path(private_cache, img.layer_digest)
    with open(entry, "r+b") as f:  # root (or the owner) can write through a 0444 mode
        f.write(evil)
    with pytest.raises(DigestMismatch):
        b"".join(blobs.open_verified_stream(reg, img.repo, img.layer_digest, len(img.layer)))
    assert not entry.exists()


def test_a_symlink_in_the_cache_is_never_served(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path,
                                                private_cache: Path) -> None:
    """Item 15: whatever put it there, a cache entry that is a symlink is not a hit."""
    sandbox, img = plain
    evil_file = tmp_path / "evil"
    evil_file.write_bytes(img.layer)
    entry = blobs._cache_path(private_cache, img.layer_digest)
    entry.parent.mkdir(parents=True)
    entry.symlink_to(evil_file)
    reg = Registry(sandbox.url, auth=False)
    (p,) = reg.download(f"{img.repo}@{img.layer_digest}", tmp_path / "d", progress=False)
    assert stat.S_ISREG(os.lstat(p).st_mode) and stat.S_ISREG(os.lstat(entry).st_mode)
    assert not os.path.samefile(p, evil_file)


# ====================================================================== the lock folder (cache off)
@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp folder of this test's own for ``tempfile.gettempdir()`` (as ``TMPDIR`` would be)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _lock_name(digest: str) -> str:
    return f"sha256-{digest[7:]}.lock"


@pytest.mark.parametrize("hostile", ["symlink", "world-writable", "other-owner"])
def test_hostile_lock_folder_is_not_used(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path, own_tmp: Path,
                                         hostile: str) -> None:
    """Issue 10 item 16: ``$TMPDIR/regexplore-locks-<uid>`` prepared by someone else (a symlink to
    their folder, a 0777 folder with a planted lock-file symlink, a folder of another user)."""
    sandbox, img = plain
    locks = own_tmp / f"regexplore-locks-{os.getuid()}"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    victim = tmp_path / "victim-created-through-a-lock-symlink"
    if hostile == "symlink":
        locks.symlink_to(theirs)
    else:
        locks.mkdir()
        if hostile == "world-writable":
            os.chmod(locks, 0o777)
            (locks / _lock_name(img.layer_digest)).symlink_to(victim)
        else:
            os.chmod(locks, 0o700)
            os.chown(locks, 65534, 65534)
    before = sorted(os.listdir(locks))
    reg = Registry(sandbox.url, auth=False)
    with pytest.warns(RuntimeWarning, match="regexplore-locks"):
        paths = reg.download(f"{img.repo}:{img.tag}", tmp_path / "dest", progress=False, cache=False)
    assert [p.read_bytes() for p in paths] == [img.config, img.layer]
    assert not victim.exists() and sorted(os.listdir(locks)) == before and os.listdir(theirs) == []


def test_own_lock_folder_is_private(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path, own_tmp: Path) -> None:
    """Item 16: the lock folder the cache-off path creates is a 0700 folder of ours, used quietly."""
    sandbox, img = plain
    reg = Registry(sandbox.url, auth=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.download(f"{img.repo}:{img.tag}", tmp_path / "dest", progress=False, cache=False)
    st = os.lstat(own_tmp / f"regexplore-locks-{os.getuid()}")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()

"""Downloads against hostile registries and hostile neighbours in a shared download folder.

- an unbounded body when the size is unknown (``repo@digest``, a descriptor without ``size``, no
  ``Content-Length``): bounded by the HEAD's length, else by ``REGEXPLORE_MAX_BLOB_BYTES``;
- a symlink (or a hard link) planted at ``dest/<blob>.partial``: never written through;
- a symlink planted at ``dest/<blob>`` whose target verifies today: never trusted, never linked into
  the cache, so a later same-size swap of its target cannot poison ``read_file`` or a download;
- with the cache off, a hostile ``$TMPDIR/regexplore-locks-<uid>`` (a symlink, another owner,
  writable by others, a planted lock-file symlink): not used.

The hostile servers are small stdlib HTTP servers in this file; the real registry is ``plain``'s.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from digests import sha256_digest
from servers import TinyImage, serve, stop
from servers.bounded import run_bounded

from regexplore import Registry
from regexplore.content import blobs
from regexplore.content.cache import cache_path
from regexplore.content.v1layers import download_layer
from regexplore.errors import DigestMismatch, ResponseTooLarge
from regexplore.protocol.v1.client import V1Client
from regexplore.sandbox import LocalRegistry

MiB = 1024 * 1024
HEAD_SAYS = 2 * MiB  #: what the hostile HEAD (or X-Docker-Size) announces
SENDS_UP_TO = 48 * MiB  #: where the hostile body stops at the latest (the test must not fill the disk)
SLACK = MiB
BLOB = os.urandom(HEAD_SAYS)  #: the blob the digest names (never sent by the hostile GET)
DIGEST = sha256_digest(BLOB)
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [DIGEST]}}).encode()
CONFIG_DIGEST = sha256_digest(CONFIG)
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST,
               "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": DIGEST}],  # no size
}).encode()
V1_ID = "ab" * 32


# ====================================================================== a registry that streams forever
class _Endless(BaseHTTPRequestHandler):
    """``/v2/``, a manifest by tag whose layer has no ``size``, its config, and the blob ``DIGEST``:
    a HEAD announcing ``head_length`` (None: no Content-Length) and a GET streaming junk in the
    ``body`` style (``close``: no length, until the connection closes; ``chunked``; ``announce``: a
    3 GiB Content-Length) until ``SENDS_UP_TO`` (``cut``: the HEAD's length, half of it sent, every
    Range ignored). While streaming it records the largest ``.partial``
    it sees in ``watch`` (the download folder), i.e. what landed on disk."""

    protocol_version = "HTTP/1.1"
    head_length: int | None = HEAD_SAYS
    body = "close"
    watch: Path | None = None
    biggest_partial = 0

    def log_message(self, *args: Any) -> None:
        pass

    def _small(self, data: bytes, ctype: str, send: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send:
            self.wfile.write(data)

    def _route(self, send: bool) -> None:
        path = self.path.split("?")[0]
        if path in ("/v2/", "/v1/_ping"):
            self._small(b"{}", "application/json", send)
        elif path.endswith("/manifests/1"):
            self._small(MANIFEST, "application/vnd.oci.image.manifest.v1+json", send)
        elif path.endswith(f"/blobs/{CONFIG_DIGEST}"):
            self._small(CONFIG, "application/octet-stream", send)
        elif path == f"/v1/images/{V1_ID}/json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if self.head_length is not None:
                self.send_header("X-Docker-Size", str(self.head_length))
            body = json.dumps({"id": V1_ID}).encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.endswith(f"/blobs/{DIGEST}") or path == f"/v1/images/{V1_ID}/layer":
            self._blob(send)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _blob(self, send: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if not send:
            if self.head_length is not None:
                self.send_header("Content-Length", str(self.head_length))
            self.end_headers()
            return
        if self.body == "cut":  # the announced length, Range ignored, the body cut at half of it
            self.send_header("Content-Length", str(HEAD_SAYS))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b"\xee" * (HEAD_SAYS // 2))
            self.close_connection = True
            return
        if self.body == "announce":
            self.send_header("Content-Length", str(3 * 1024**3))
        elif self.body == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        block = b"\xee" * (256 * 1024)
        sent = 0
        try:
            while sent < SENDS_UP_TO:
                if self.body == "chunked":
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                else:
                    self.wfile.write(block)
                sent += len(block)
                self._look()
        except OSError:
            pass
        self.close_connection = True

    def _look(self) -> None:
        if self.watch is None:
            return
        for p in self.watch.glob("*.partial"):
            try:
                type(self).biggest_partial = max(type(self).biggest_partial, p.stat().st_size)
            except OSError:
                pass

    def do_GET(self) -> None:
        self._route(True)

    def do_HEAD(self) -> None:
        self._route(False)


@pytest.fixture
def endless(tmp_path: Path) -> Iterator[type[_Endless]]:
    class Handler(_Endless):
        watch = tmp_path / "dest"

    httpd = serve(Handler)
    Handler.url = httpd.url  # type: ignore[attr-defined]
    try:
        yield Handler
    finally:
        stop(httpd)


def _download_in_child(url: str, ref: str, dest: Path, **env: str) -> Any:
    return run_bounded("""
        import os
        from regexplore import Registry
        reg = Registry(os.environ["URL"], auth=False)
        result = [str(p) for p in reg.download(os.environ["REF"], os.environ["DEST"], progress=False,
                                               parallel=1, cache=False)]
    """, env={"URL": url, "REF": ref, "DEST": str(dest), **env}, timeout=40, memory_mb=1500)


@pytest.mark.parametrize("ref, body, expected", [
    (f"demo/blob@{DIGEST}", "close", "DigestMismatch"),       # repo@digest: no descriptor, the HEAD bounds it
    (f"demo/blob@{DIGEST}", "chunked", "DigestMismatch"),
    (f"demo/blob@{DIGEST}", "announce", "ResponseTooLarge"),  # the GET's Content-Length disagrees with the HEAD
    ("demo/app:1", "close", "DigestMismatch"),                # a layer descriptor without size: HEAD asked first
    ("demo/app:1", "announce", "ResponseTooLarge"),
], ids=["digest-no-length", "digest-chunked", "digest-announces-3GiB", "no-size-no-length", "no-size-3GiB"])
def test_the_head_bounds_a_blob_of_unknown_size(endless: Any, tmp_path: Path, ref: str, body: str,
                                                expected: str) -> None:
    """Issue 10 item 7: a HEAD that says 2 MiB and a GET that streams junk: at most 2 MiB land on
    disk, the error is clear, and no ``.partial`` is left to be resumed."""
    endless.body = body
    res = _download_in_child(endless.url, ref, tmp_path / "dest")
    assert res.raised(expected), res.output
    assert endless.biggest_partial <= HEAD_SAYS, endless.biggest_partial
    assert not list((tmp_path / "dest").glob(f"*{DIGEST[7:]}*"))  # neither the blob nor a .partial


@pytest.mark.parametrize("body", ["close", "chunked"])
def test_no_size_anywhere_is_capped(endless: Any, tmp_path: Path, body: str) -> None:
    """Item 7: no descriptor size, no HEAD length, no Content-Length: REGEXPLORE_MAX_BLOB_BYTES."""
    endless.head_length = None
    endless.body = body
    res = _download_in_child(endless.url, f"demo/blob@{DIGEST}", tmp_path / "dest",
                             REGEXPLORE_MAX_BLOB_BYTES=str(3 * MiB))
    assert res.raised("ResponseTooLarge") and "REGEXPLORE_MAX_BLOB_BYTES" in res.message, res.output
    assert endless.biggest_partial <= 3 * MiB + 1, endless.biggest_partial
    assert not list((tmp_path / "dest").glob(f"*{DIGEST[7:]}*"))


def test_range_ignored_and_cut_at_the_same_place_gives_up(endless: Any, tmp_path: Path) -> None:
    """Item 7's loop: a server that answers every resume with the whole blob again (200) and cuts it
    at the same byte each time made no progress, yet counted each restart as progress (a hang)."""
    endless.body = "cut"
    res = _download_in_child(endless.url, f"demo/blob@{DIGEST}", tmp_path / "dest")
    assert res.raised("RegistryError") and "kept breaking" in res.message, res.output
    assert res.elapsed < 30


def test_streamed_blob_of_unknown_size_is_capped(endless: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 7, the reading path (``files``/``read_file`` of a layer without size): the stream stops at
    the cap with ResponseTooLarge instead of hashing whatever the server sends."""
    endless.head_length = None
    monkeypatch.setenv("REGEXPLORE_MAX_BLOB_BYTES", str(3 * MiB))
    reg = Registry(endless.url, auth=False)
    got = 0
    with pytest.raises(ResponseTooLarge, match="REGEXPLORE_MAX_BLOB_BYTES"):
        for block in blobs.open_verified_stream(reg, "demo/blob", DIGEST, cache=False):
            got += len(block)
    assert got <= 3 * MiB + 1


def test_v1_layer_is_bounded_by_x_docker_size(endless: Any, tmp_path: Path) -> None:
    """Item 7 in the v1 engine: ``X-Docker-Size`` 2 MiB and an endless body: one byte past it is
    enough to refuse, and no ``.partial`` stays."""
    (tmp_path / "dest").mkdir()
    res = run_bounded("""
        import os
        from regexplore.protocol.v1.client import V1Client
        from regexplore.content.v1layers import download_layer
        c = V1Client.connect(os.environ["URL"], auth=False)
        download_layer(c, "demo/app", os.environ["ID"], os.environ["DEST"], endpoints=[os.environ["URL"]])
    """, env={"URL": endless.url, "ID": V1_ID, "DEST": str(tmp_path / "dest")}, timeout=40, memory_mb=1500)
    assert res.raised("RegistryError") and "X-Docker-Size" in res.message, res.output
    assert endless.biggest_partial <= HEAD_SAYS + 1
    assert not list((tmp_path / "dest").iterdir())


def test_v1_layer_without_size_is_capped(endless: Any, tmp_path: Path) -> None:
    """Item 7 in the v1 engine without ``X-Docker-Size``: REGEXPLORE_MAX_BLOB_BYTES."""
    (tmp_path / "dest").mkdir()
    endless.head_length = None
    res = run_bounded("""
        import os
        from regexplore.protocol.v1.client import V1Client
        from regexplore.content.v1layers import download_layer
        c = V1Client.connect(os.environ["URL"], auth=False)
        download_layer(c, "demo/app", os.environ["ID"], os.environ["DEST"], endpoints=[os.environ["URL"]])
    """, env={"URL": endless.url, "ID": V1_ID, "DEST": str(tmp_path / "dest"),
              "REGEXPLORE_MAX_BLOB_BYTES": str(3 * MiB)}, timeout=40, memory_mb=1500)
    assert res.raised("ResponseTooLarge"), res.output
    assert endless.biggest_partial <= 3 * MiB + 1
    assert not list((tmp_path / "dest").iterdir())


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
        got = download_layer(V1Client.connect(srv.index_url, auth=False), "alice/app", img.id, target)
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
    entry = cache_path(private_cache, img.layer_digest)
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
    entry = cache_path(private_cache, img.layer_digest)
    evil = bytes(b ^ 0xFF for b in img.layer)
    os.chmod(entry, 0o644)
    entry.write_bytes(evil)
    assert b"".join(blobs.open_verified_stream(reg, img.repo, img.layer_digest, len(img.layer))) == img.layer
    (p,) = reg.download(f"{img.repo}@{img.layer_digest}", tmp_path / "b", progress=False)
    assert p.read_bytes() == img.layer

    entry = cache_path(private_cache, img.layer_digest)
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
    entry = cache_path(private_cache, img.layer_digest)
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

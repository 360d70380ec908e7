"""Downloads against the real registry: verified, atomic, resumable, cached, concurrent.

Faults come from ``servers.FaultProxy`` in front of the real registry (cut bodies, flipped bytes,
ignored Range, refused tokens, redirects to an S3-like store that rejects Authorization).
"""

from __future__ import annotations

import ast
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from digests import sha256_digest
from servers import FaultProxy, TinyImage, TokenServer

from regexplore import DigestMismatch, Registry
from regexplore.content import blobs, fetch
from regexplore.content.cache import cache_path
from regexplore.content.progress import ProgressEvent, resolve_progress
from regexplore.http.transport import RetryPolicy
from regexplore.sandbox import LocalRegistry

PASSWORD = "pw-Blobs-91f2!secret"
MiB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("private_cache")  # conftest: a cache folder of its own per test


@pytest.fixture
def proxy(plain: tuple[LocalRegistry, TinyImage]) -> Iterator[FaultProxy]:
    with FaultProxy(plain[0].url) as p:
        yield p


def blob_gets(reg: Registry) -> list[dict[str, Any]]:
    return [r for r in reg.transport.trace_records if r["method"] == "GET" and "/blobs/" in r["url"]]


# ---------------------------------------------------------------------------------- plain downloads
def test_image_download_is_config_then_layers_verified(registry_sandbox: LocalRegistry, tmp_path: Path) -> None:
    content = registry_sandbox.seeded
    reg = registry_sandbox.client()
    m = reg.manifest("library/webapp:latest")
    paths = blobs.download(reg, "library/webapp:latest", tmp_path / "out", progress=False)
    want = [m.json["config"]["digest"]] + [d["digest"] for d in m.json["layers"]]
    assert [p.name for p in paths] == [blobs.blob_filename(d) for d in want]
    for p, d in zip(paths, want):
        assert p.read_bytes() == content.blobs[d]
    assert not list((tmp_path / "out").glob("*.partial"))


def test_index_platform_choice(registry_sandbox: LocalRegistry, tmp_path: Path) -> None:
    reg = registry_sandbox.client()
    index = reg.manifest("demo/multiarch:latest")
    by_plat = {f"{e['platform']['os']}/{e['platform']['architecture']}": e["digest"]
               for e in index.json["manifests"] if e["platform"]["os"] != "unknown"}
    for plat, expected in [(None, by_plat["linux/amd64"]), ("linux/arm64", by_plat["linux/arm64"])]:
        image = reg.manifest(f"demo/multiarch@{expected}")
        paths = blobs.download(reg, "demo/multiarch:latest", tmp_path / str(plat).replace("/", "-"),
                               platform=plat, progress=False)
        assert paths[0].name == blobs.blob_filename(image.json["config"]["digest"])
        assert [p.name for p in paths[1:]] == [blobs.blob_filename(d["digest"]) for d in image.json["layers"]]


def test_blob_by_digest_and_layer_selection(registry_sandbox: LocalRegistry, tmp_path: Path) -> None:
    content = registry_sandbox.seeded
    reg = registry_sandbox.client()
    m = reg.manifest("demo/busybox:latest")
    layers = [d["digest"] for d in m.json["layers"]]
    [p] = blobs.download(reg, f"demo/busybox@{layers[0]}", tmp_path, progress=False)
    assert p.read_bytes() == content.blobs[layers[0]]
    picked = blobs.download(reg, "demo/busybox:latest", tmp_path / "sel", layers=[-1, layers[0]], progress=False)
    assert [x.name for x in picked] == [blobs.blob_filename(layers[-1]), blobs.blob_filename(layers[0])]
    with pytest.raises(IndexError):
        blobs.download(reg, "demo/busybox:latest", tmp_path / "bad", layers=[99], progress=False)


def test_cache_hit_makes_no_blob_get(registry_sandbox: LocalRegistry, tmp_path: Path, private_cache: Path) -> None:
    reg = registry_sandbox.client()
    first = blobs.download(reg, "demo/busybox:1.0", tmp_path / "a", progress=False)
    assert len(blob_gets(reg)) == len(first)
    reg.clear_trace()
    second = blobs.download(reg, "demo/busybox:1.0", tmp_path / "b", progress=False)
    assert blob_gets(reg) == []
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
        assert os.path.samefile(b, cache_path(private_cache, "sha256:" + b.name[7:]))
    rows = blobs.cache_info()
    assert {r["digest"] for r in rows} >= {"sha256:" + p.name[7:] for p in first}
    assert all(r["size"] == Path(r["path"]).stat().st_size for r in rows)
    # a bare digest is served from the cache
    [bare] = blobs.download(reg, "sha256:" + first[-1].name[7:], tmp_path / "c", progress=False)
    assert bare.read_bytes() == first[-1].read_bytes()
    assert blobs.clear_cache() == len(rows) and blobs.cache_info() == []
    reg.clear_trace()
    blobs.download(reg, "demo/busybox:1.0", tmp_path / "d", progress=False)
    assert len(blob_gets(reg)) == len(first)  # gone from the cache: fetched again


def test_cache_off_by_environment(registry_sandbox: LocalRegistry, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEXPLORE_CACHE", "0")
    assert blobs.cache_dir() is None
    reg = registry_sandbox.client()
    blobs.download(reg, "demo/minimal:latest", tmp_path / "a", progress=False)
    reg.clear_trace()
    paths = blobs.download(reg, "demo/minimal:latest", tmp_path / "b", progress=False)
    assert len(blob_gets(reg)) == len(paths)
    # but a good file already at the destination is kept, not fetched again
    reg.clear_trace()
    blobs.download(reg, "demo/minimal:latest", tmp_path / "b", progress=False)
    assert blob_gets(reg) == []


def test_two_threads_same_image_fetch_each_blob_once(registry_sandbox: LocalRegistry, tmp_path: Path) -> None:
    reg = registry_sandbox.client()
    results: dict[int, list[Path]] = {}

    def run(i: int) -> None:
        results[i] = blobs.download(reg, "demo/zstd:latest", tmp_path / str(i), progress=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    assert len(blob_gets(reg)) == len(results[0])  # the per-digest lock: one GET per blob in all
    for i in (1, 2):
        assert [p.read_bytes() for p in results[i]] == [p.read_bytes() for p in results[0]]


def test_wrong_file_at_destination_is_replaced(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path) -> None:
    reg, img = plain[0].client(), plain[1]
    bad = tmp_path / blobs.blob_filename(img.layer_digest)
    bad.write_bytes(b"x" * len(img.layer))
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False)
    assert p.read_bytes() == img.layer


# ---------------------------------------------------------------------------------- resume
def test_partial_from_an_earlier_call_is_resumed(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path) -> None:
    reg, img = plain[0].client(), plain[1]
    n = 123_457
    partial = tmp_path / (blobs.blob_filename(img.layer_digest) + ".partial")
    partial.write_bytes(img.layer[:n])
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False)
    assert p.read_bytes() == img.layer and not partial.exists()
    [get] = blob_gets(reg)
    assert get["status"] == 206 and get["bytes"] == len(img.layer) - n  # only the rest travelled


def test_partial_with_a_bad_prefix_is_refetched_once(plain: tuple[LocalRegistry, TinyImage], tmp_path: Path) -> None:
    reg, img = plain[0].client(), plain[1]
    partial = tmp_path / (blobs.blob_filename(img.layer_digest) + ".partial")
    partial.write_bytes(b"\0" * 5000)
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False)
    assert p.read_bytes() == img.layer
    assert [g["status"] for g in blob_gets(reg)] == [206, 200]


def test_cut_connection_is_resumed_with_a_closed_range(proxy: FaultProxy, plain: tuple, tmp_path: Path) -> None:
    img = plain[1]
    reg = Registry(proxy.url)
    proxy.drop(after_bytes=100_000, path="/blobs/", method="GET")
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False)
    assert p.read_bytes() == img.layer
    gets = [r for r in proxy.requests if r["method"] == "GET" and "/blobs/" in r["path"]]
    assert gets[0]["fault"] == "drop"
    assert gets[1]["headers"]["Range"] == f"bytes=100000-{len(img.layer) - 1}"
    assert gets[1]["status"] == 206


def test_flipped_byte_raises_and_leaves_no_file(proxy: FaultProxy, plain: tuple, tmp_path: Path) -> None:
    img = plain[1]
    reg = Registry(proxy.url)
    proxy.flip_byte(offset=777, path="/blobs/", times=None)
    with pytest.raises(DigestMismatch) as info:
        blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False)
    assert info.value.expected == img.layer_digest
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"] or not (tmp_path / "cache" / "blobs").exists()
    assert not list(tmp_path.glob("sha256-*"))  # neither the good name nor a .partial
    assert blobs.cache_info() == []


def test_one_bad_layer_lets_the_layers_in_flight_finish(tmp_path: Path) -> None:
    """A layer that fails verification stops the call, but the layers already downloading finish
    under their good names: no ``.partial`` is left behind, and nothing good is thrown away."""
    import time

    from regexplore.sandbox import seed

    with LocalRegistry(seed=seed.demo_content().only("demo/big")) as sandbox:
        reg = sandbox.client()
        config, base, big = [reg.manifest("demo/big:latest").json["config"]["digest"],
                             *reg.layers("demo/big:latest")["digest"]]
        data = sandbox.storage / "docker/registry/v2/blobs/sha256" / base[7:9] / base[7:] / "data"
        raw = bytearray(data.read_bytes())
        raw[100] ^= 1                                   # the small base layer: same size, wrong bytes
        data.write_bytes(bytes(raw))
        big_events: list[ProgressEvent] = []

        def slow_big(event: ProgressEvent) -> None:     # the 6 MiB layer is still in flight when base fails
            if event.digest == big:
                big_events.append(event)
                time.sleep(0.05)

        with pytest.raises(DigestMismatch) as info:
            blobs.download(reg, "demo/big:latest", tmp_path, progress=slow_big, parallel=4)
        assert info.value.expected == base
        assert not list(tmp_path.glob("*.partial"))
        assert not (tmp_path / blobs.blob_filename(base)).exists()
        assert sha256_digest((tmp_path / blobs.blob_filename(big)).read_bytes()) == big      # finished and verified
        assert big_events[-1].done and len(big_events) > 2
        assert sha256_digest((tmp_path / blobs.blob_filename(config)).read_bytes()) == config
        reg.close()


def test_200_to_a_range_request_restarts_cleanly(proxy: FaultProxy, plain: tuple, tmp_path: Path) -> None:
    img = plain[1]
    reg = Registry(proxy.url)
    (tmp_path / (blobs.blob_filename(img.layer_digest) + ".partial")).write_bytes(img.layer[:50_000])
    proxy.ignore_range(path="/blobs/")
    [p] = blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False)
    assert p.read_bytes() == img.layer
    assert [g["status"] for g in blob_gets(reg)] == [200]


def test_redirect_to_storage_without_authorization(tmp_path: Path) -> None:
    users = {"alice": (PASSWORD, {"repository:demo/*": "pull,push"})}
    with TokenServer(users=users, anonymous=None) as ts, LocalRegistry(token=ts.registry_config()) as lr, \
            FaultProxy(lr.url) as proxy:
        src = tmp_path / "payload.bin"
        src.write_bytes(os.urandom(200_000))
        reg = Registry(proxy.url, auth=("alice", PASSWORD))
        digest = blobs.push(reg, [src], "demo/redirected:v1")
        layer = reg.manifest(f"demo/redirected@{digest}").json["layers"][0]
        store = proxy.redirect_blobs()
        paths = blobs.download(reg, "demo/redirected:v1", tmp_path / "out", progress=False)
        assert paths[1].name == blobs.blob_filename(layer["digest"])
        assert sha256_digest(paths[1].read_bytes()) == layer["digest"]
        assert len(store.requests) == 2 and not any(r["authorization"] for r in store.requests)
        redirected = [r for r in proxy.requests if r["fault"] == "redirect"]
        assert len(redirected) == 2 and all(r["authorization"] and r["status"] == 307 for r in redirected)
        assert PASSWORD not in repr(reg.transport.trace_records)


def test_token_refused_on_the_resumed_request_is_renewed(tmp_path: Path) -> None:
    users = {"alice": (PASSWORD, {"repository:demo/*": "pull,push"})}
    with TokenServer(users=users, anonymous=None) as ts, LocalRegistry(token=ts.registry_config()) as lr, \
            FaultProxy(lr.url) as proxy:
        payload = tmp_path / "payload.bin"
        payload.write_bytes(os.urandom(400_000))
        reg = Registry(proxy.url, auth=("alice", PASSWORD))
        reg.transport.retry = RetryPolicy(attempts=3, backoff=0.01, max_sleep=0.05)
        digest = blobs.push(reg, [payload], "demo/tok:v1")
        layer = reg.manifest(f"demo/tok@{digest}").json["layers"][0]
        data = b"".join(blobs.open_verified_stream(reg, "demo/tok", layer["digest"]))
        out = tmp_path / "out"
        out.mkdir()
        (out / (blobs.blob_filename(layer["digest"]) + ".partial")).write_bytes(data[:100_000])
        before = ts.count()
        proxy.expire_token(path="/blobs/")  # the resumed GET meets the registry's 401 invalid_token
        [p] = blobs.download(reg, "demo/tok:v1", out, layers=[0], progress=False)
        assert p.read_bytes() == data
        assert ts.count() == before + 1  # a fresh token, asked for by the transport
        statuses = [(r["fault"], r["status"], r["headers"].get("Range"))
                    for r in proxy.requests if r["method"] == "GET" and "/blobs/" in r["path"]][-2:]
        rng = f"bytes=100000-{len(data) - 1}"
        assert statuses == [("expire_token", 401, rng), (None, 206, rng)]


# ---------------------------------------------------------------------------------- big blobs: ranged parts
@pytest.fixture(scope="module")
def big() -> Iterator[tuple[LocalRegistry, str, bytes]]:
    data = os.urandom(70 * MiB)
    with LocalRegistry() as lr:
        digest = lr.client().v2.upload_blob("demo/big", data)
        yield lr, digest, data


def test_big_blob_comes_in_parallel_ranged_parts(big: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "FAST_LINK", float("inf"))  # as if the first part came over a slow link
    lr, digest, data = big
    reg = lr.client()
    events: list[ProgressEvent] = []
    [p] = blobs.download(reg, f"demo/big@{digest}", tmp_path, progress=events.append, parallel=4)
    assert sha256_digest(p.read_bytes()) == digest
    gets = blob_gets(reg)
    assert len(gets) == 5 and all(g["status"] == 206 for g in gets)  # 70 MiB = 4 x 16 MiB + 6 MiB
    # the first answer covers the whole blob (its first 16 MiB are read, then the link speed decides)
    assert gets[0]["bytes"] == len(data)
    assert sorted(g["bytes"] for g in gets[1:]) == [6 * MiB] + [16 * MiB] * 3
    done = [e for e in events if e.done]
    assert len(done) == 1 and done[0].bytes_done == len(data)
    steps = [e.bytes_done for e in events]
    assert steps == sorted(steps)  # hashed in order


def test_big_blob_on_a_fast_link_streams_the_rest_on_one_connection(big: tuple, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "FAST_LINK", 0)  # any link counts as fast: no parallel parts
    lr, digest, data = big
    reg = lr.client()
    [p] = blobs.download(reg, f"demo/big@{digest}", tmp_path, progress=False, cache=False, parallel=4)
    assert sha256_digest(p.read_bytes()) == digest
    gets = blob_gets(reg)
    assert [g["status"] for g in gets] == [206]  # one ranged answer holding the whole blob, read to its end
    assert [g["bytes"] for g in gets] == [len(data)]


def test_big_blob_part_cut_and_server_ignoring_range(big: tuple, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "FAST_LINK", float("inf"))
    lr, digest, data = big
    with FaultProxy(lr.url) as proxy:
        reg = Registry(proxy.url)
        proxy.drop(after_bytes=3 * MiB, path="/blobs/", method="GET")
        [p] = blobs.download(reg, f"demo/big@{digest}", tmp_path / "cut", progress=False, cache=False)
        assert sha256_digest(p.read_bytes()) == digest
        assert any(r["fault"] == "drop" for r in proxy.requests)
        proxy.ignore_range(path="/blobs/", times=None)
        [q] = blobs.download(reg, f"demo/big@{digest}", tmp_path / "norange", progress=False, cache=False)
        assert sha256_digest(q.read_bytes()) == digest
        assert [r["status"] for r in proxy.requests if r["fault"] == "ignore_range"] == [200]


# ---------------------------------------------------------------------------------- streaming reader
def test_open_verified_stream(proxy: FaultProxy, plain: tuple, tmp_path: Path) -> None:
    img = plain[1]
    reg = Registry(proxy.url)
    assert b"".join(blobs.open_verified_stream(reg, "demo/rand", img.layer_digest)) == img.layer
    proxy.drop(after_bytes=70_000, path="/blobs/", method="GET")
    got = b"".join(blobs.open_verified_stream(reg, "demo/rand", img.layer_digest, len(img.layer)))
    assert got == img.layer
    proxy.flip_byte(offset=10, path="/blobs/")
    stream = blobs.open_verified_stream(reg, "demo/rand", img.layer_digest)
    with pytest.raises(DigestMismatch):
        for _ in stream:
            pass
    blobs.download(reg, f"demo/rand@{img.layer_digest}", tmp_path, progress=False)
    n = len(proxy.requests)
    assert b"".join(blobs.open_verified_stream(reg, "demo/rand", img.layer_digest)) == img.layer
    assert len(proxy.requests) == n  # from the cache


# ---------------------------------------------------------------------------------- progress
def test_progress_callback_and_bar_object(registry_sandbox: LocalRegistry, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry_sandbox.client()
    events: list[ProgressEvent] = []
    paths = blobs.download(reg, "demo/big:latest", tmp_path / "a", progress=events.append)
    sizes = {"sha256:" + p.name[7:]: p.stat().st_size for p in paths}
    finished = {e.digest: e.bytes_done for e in events if e.done}
    assert finished == sizes

    class Bar:
        def __init__(self) -> None:
            self.total = None
            self.n = 0
            self.closed = False

        def update(self, k: int) -> None:
            self.n += k

        def close(self) -> None:
            self.closed = True

    bar = Bar()
    blobs.download(reg, "demo/big:latest", tmp_path / "b", progress=bar)  # from the cache: still counted
    assert bar.total == sum(sizes.values()) == bar.n and bar.closed


def test_progress_true_uses_tqdm_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")
    assert resolve_progress(True, total=10, count=2) is None
    monkeypatch.delenv("REGEXPLORE_PROGRESS")
    rep = resolve_progress(True, total=10, count=2, desc="t")
    assert rep is not None and type(rep).__name__ == "_TqdmReporter"
    rep(ProgressEvent("sha256:" + "a" * 64, 10, 10, done=True))
    rep.close()
    with pytest.raises(TypeError):
        resolve_progress(42)


def test_core_modules_do_not_import_ui_libraries() -> None:
    for name in ("blobs.py", "progress.py"):
        tree = ast.parse((Path(blobs.__file__).parent / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top for a in n.names} | {
            (n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
        assert not names & {"pandas", "tqdm", "ipywidgets"}, name

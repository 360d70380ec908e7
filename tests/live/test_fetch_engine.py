"""The one fetch engine (issue 11): v1 layers get what v2 blobs have — the cache, layer selection,
parallel layers, resume — and an argument that cannot apply to v1 raises instead of being dropped.

Against the in-process v1 server (:class:`regexplore.sandbox.v1server.LocalV1Registry`) and, for the
v2 side of the same engine, the real registry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import regexplore as rx
from regexplore.content import blobs
from regexplore.protocol.v1.client import V1Client
from regexplore.sandbox import LocalRegistry
from regexplore.sandbox.v1server import LocalV1Registry, V1Image

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest: a cache folder of its own per test
REPO = "alice/app"


def _chain() -> list[V1Image]:
    base = V1Image.build(files={"etc/os-release": b"ID=engine\n" * 60}, seed="engine-base")
    mid = V1Image.build(parent=base, files={"usr/lib/lib.so": bytes(range(256)) * 40}, seed="engine-mid")
    top = V1Image.build(parent=mid, files={"usr/bin/run": b"#!/bin/sh\necho run\n" * 80}, seed="engine-top")
    return [base, mid, top]


@pytest.fixture()
def chain() -> list[V1Image]:
    return _chain()


def _serve(chain: list[V1Image], **kw: Any) -> LocalV1Registry:
    srv = LocalV1Registry(**kw)
    srv.__enter__()
    srv.preload(REPO, chain, tags={"latest": chain[-1].id})
    return srv


@pytest.fixture()
def srv(chain: list[V1Image]) -> Iterator[LocalV1Registry]:
    server = _serve(chain)
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


def _layer_gets(reg: rx.Registry) -> list[dict[str, Any]]:
    return [r for r in reg.transport.trace_records if r["method"] == "GET" and r["url"].endswith("/layer")]


def test_v1_download_is_served_from_the_cache_the_second_time(srv: LocalV1Registry, chain: list[V1Image],
                                                              tmp_path: Path) -> None:
    reg = rx.Registry(srv.index_url, api="v1", auth=False)
    first = reg.download(f"{REPO}:latest", str(tmp_path / "one"), progress=False)
    assert [p.name for p in first] == [f"{i.id}.layer" for i in chain]
    assert [p.read_bytes() for p in first] == [i.layer for i in chain]
    assert len(_layer_gets(reg)) == 3
    cached = [row["digest"] for row in blobs.cache_info()]
    assert len(cached) == 3 and all(d.startswith("v1:sha256:") for d in cached)
    reg.clear_trace()
    second = reg.download(f"{REPO}:latest", str(tmp_path / "two"), progress=False)
    assert _layer_gets(reg) == []  # no layer GET: every layer came from the cache
    assert [p.read_bytes() for p in second] == [i.layer for i in chain]
    reg.clear_trace()
    reg.download(f"{REPO}:latest", str(tmp_path / "three"), progress=False, cache=False)
    assert len(_layer_gets(reg)) == 3  # cache=False is honoured


def test_v1_layers_selects_by_index_and_by_image_id(srv: LocalV1Registry, chain: list[V1Image],
                                                    tmp_path: Path) -> None:
    reg = rx.Registry(srv.index_url, api="v1", auth=False)
    got = reg.download(REPO, str(tmp_path), progress=False, layers=[-1, chain[0].id])
    assert [p.name for p in got] == [f"{chain[2].id}.layer", f"{chain[0].id}.layer"]
    assert [p.read_bytes() for p in got] == [chain[2].layer, chain[0].layer]
    assert len(_layer_gets(reg)) == 2 and not (tmp_path / f"{chain[1].id}.layer").exists()
    with pytest.raises(IndexError):
        reg.download(REPO, str(tmp_path), progress=False, layers=[3])
    with pytest.raises(ValueError, match="not a layer"):
        reg.download(REPO, str(tmp_path), progress=False, layers=["sha256:" + "0" * 64])


def test_v1_parallel_fetches_layers_at_the_same_time(srv: LocalV1Registry, chain: list[V1Image],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three layers, parallel=3: each layer GET waits until all three are open (a barrier that
    breaks after 10 s when they come one after another)."""
    barrier = threading.Barrier(3, timeout=10)
    real = V1Client.open_layer

    def open_together(self: V1Client, meta: Any, repo: str, start: int = 0) -> Any:
        barrier.wait()
        return real(self, meta, repo, start)

    monkeypatch.setattr(V1Client, "open_layer", open_together)
    reg = rx.Registry(srv.index_url, api="v1", auth=False)
    got = reg.download(REPO, str(tmp_path), progress=False, parallel=3, cache=False)
    assert [p.read_bytes() for p in got] == [i.layer for i in chain]


def test_v1_download_resumes_after_a_dropped_connection(chain: list[V1Image], tmp_path: Path) -> None:
    server = _serve(chain, drop_layer_after=700)
    try:
        reg = rx.Registry(server.index_url, api="v1", auth=False)
        events: list[blobs.ProgressEvent] = []
        got = reg.download(REPO, str(tmp_path), progress=events.append, layers=[1], cache=False)
        assert got[0].read_bytes() == chain[1].layer
        ranges = [r["headers"].get("Range") for r in server.requests if r["path"].endswith("/layer")]
        assert ranges == [None, "bytes=700-"]  # resumed where the connection broke, not restarted
        assert [e.bytes_done for e in events if e.done] == [len(chain[1].layer)]
        assert not list(tmp_path.glob("*.partial"))
    finally:
        server.__exit__(None, None, None)


def test_v1_arguments_that_cannot_apply_raise(srv: LocalV1Registry, tmp_path: Path) -> None:
    reg = rx.Registry(srv.index_url, api="v1", auth=False)
    with pytest.raises(ValueError, match="platform"):
        reg.download(REPO, str(tmp_path), progress=False, platform="linux/amd64")
    with pytest.raises(ValueError, match="no digests"):
        reg.download(f"{REPO}@sha256:{'a' * 64}", str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="no digests"):
        reg.download(f"sha256:{'a' * 64}", str(tmp_path), progress=False)
    assert _layer_gets(reg) == [] and not list(tmp_path.iterdir())


def test_v2_download_is_served_from_the_cache_the_second_time(plain: tuple[LocalRegistry, Any],
                                                              tmp_path: Path) -> None:
    """The same engine on the real registry: the second download makes no blob GET."""
    registry, img = plain
    reg = rx.Registry(registry.url)
    [first] = reg.download(f"demo/rand@{img.layer_digest}", str(tmp_path / "one"), progress=False)
    assert first.read_bytes() == img.layer
    reg.clear_trace()
    [second] = reg.download(f"demo/rand@{img.layer_digest}", str(tmp_path / "two"), progress=False)
    assert second.read_bytes() == img.layer
    assert [r for r in reg.transport.trace_records if r["method"] == "GET" and "/blobs/" in r["url"]] == []

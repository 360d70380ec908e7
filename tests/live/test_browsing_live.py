"""Browsing against the real registry: HEAD where a digest is enough, a moved tag is noticed,
chunk sizes follow ``OCI-Chunk-Min-Length``, errors name what the registry said, v1 is found by
``ping()`` alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from servers import FaultProxy, push_tiny_image

import regexplore as rx
from regexplore.sandbox import LocalRegistry
from regexplore.sandbox.v1server import LocalV1Registry

pytestmark = pytest.mark.usefixtures("private_cache")


def manifest_calls(reg: rx.Registry, repo: str) -> list[str]:
    return [r["method"] for r in reg.transport.trace_records if f"/v2/{repo}/manifests/" in r["url"]]


def test_a_tag_seen_before_costs_a_head_not_a_get(empty_sandbox: LocalRegistry) -> None:
    first = push_tiny_image(empty_sandbox.url, "browse/app", "stable", payload=b"one\n" * 100)
    reg = empty_sandbox.client()
    assert reg.manifest("browse/app:stable").digest == first.digest
    reg.history("browse/app:stable")
    reg.layers("browse/app:stable")
    reg.config("browse/app:stable")
    assert manifest_calls(reg, "browse/app") == ["GET", "HEAD", "HEAD", "HEAD"]

    second = push_tiny_image(empty_sandbox.url, "browse/app", "stable", payload=b"two\n" * 100)  # the tag moves
    assert second.digest != first.digest
    assert reg.manifest("browse/app:stable").digest == second.digest
    assert manifest_calls(reg, "browse/app")[-2:] == ["HEAD", "GET"]  # a new digest: fetched
    assert reg.history("browse/app:stable")["layer_digest"].tolist() == [second.layer_digest]


def test_tag_details_twice_reads_heads_and_cached_manifests(empty_sandbox: LocalRegistry) -> None:
    for tag in ("a", "b"):
        push_tiny_image(empty_sandbox.url, "browse/two", tag)
    reg = empty_sandbox.client()
    one = reg.tags("browse/two", details=True)
    n = len(manifest_calls(reg, "browse/two"))
    two = reg.tags("browse/two", details=True)
    assert manifest_calls(reg, "browse/two")[n:] == ["HEAD", "HEAD"]
    assert one["digest"].tolist() == two["digest"].tolist()


def test_chunked_upload_honours_oci_chunk_min_length(empty_sandbox: LocalRegistry, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(300_000))
    minimum = 100_000
    with FaultProxy(empty_sandbox.url) as proxy:
        proxy.add_headers({"OCI-Chunk-Min-Length": str(minimum)}, path=r"/v2/.+/blobs/uploads/$", method="POST")
        reg = rx.Registry(proxy.url)
        digest = reg.push([data], "chunks/app:v1", chunk_size=16_384)
        patches = [r for r in proxy.requests if r["method"] == "PATCH"]
        assert patches, "the upload was not chunked"
        uploads: dict[str, list[int]] = {}
        for r in patches:  # per upload session (its Location path), the sizes of its PATCHes in order
            uploads.setdefault(r["path"].split("?")[0], []).append(int(r["headers"].get("Content-Length", 0)))
        assert any(len(sizes) > 1 for sizes in uploads.values()), uploads          # the layer went in chunks
        for sizes in uploads.values():
            assert all(s >= minimum for s in sizes[:-1]), uploads                   # never the asked 16 KiB
    assert empty_sandbox.client().manifest("chunks/app:v1").digest == digest


def test_delete_on_a_registry_without_deletes_is_unsupported(tmp_path: Path) -> None:
    with LocalRegistry(delete=False) as lr:
        img = push_tiny_image(lr.url, "nodel/app", "v1")
        with pytest.raises(rx.Unsupported) as err, pytest.warns(UserWarning, match="removes every tag"):
            lr.client().delete(f"nodel/app@{img.digest}")
    assert err.value.status == 405 and err.value.code == "UNSUPPORTED"
    assert "unsupported" in str(err.value).lower()


def test_ping_alone_finds_a_v1_registry() -> None:
    with LocalV1Registry(seed=True) as srv:
        reg = rx.Registry(srv.url)
        out: dict[str, Any] = reg.ping()
        assert reg.api == "v1"
        assert out["status"] == 200 and out["version"]  # the v1 ping, not a 404 from /v2/

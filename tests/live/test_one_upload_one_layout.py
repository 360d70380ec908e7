"""Issue 11: one chunked upload (``V2Client.upload_stream``, which ``upload_blob``, ``push`` and the seed all go
through) and one OCI-layout writer (``content.layout``, shared by ``save`` and the sandbox seed), against the real
registry binary and skopeo."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from digests import sha256_digest

from regexplore.content import blobs, layout
from regexplore.sandbox import LocalRegistry
from regexplore.sandbox import seed as seed_mod
from regexplore.sandbox.seed import demo_content, write_oci_layout


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REGEXPLORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")
    return tmp_path / "cache"


def patches(reg: Any) -> list[dict]:
    return [r for r in reg.transport.trace_records if r["method"] == "PATCH" and "/blobs/uploads/" in r["url"]]


def test_upload_blob_and_push_chunk_through_the_one_upload(empty_sandbox: LocalRegistry, tmp_path: Path) -> None:
    reg = empty_sandbox.client()
    data = os.urandom(100_000)
    sent: list[int] = []
    reg.clear_trace()
    digest = reg.v2.upload_blob("one/up", data, chunk_size=16_384, progress=sent.append)
    assert digest == sha256_digest(data)
    assert len(patches(reg)) == math.ceil(len(data) / 16_384) == len(sent)
    assert sum(sent) == len(data)
    assert reg.v2.get_blob("one/up", digest) == data

    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(200_000))  # random: the gzip layer stays about as big
    reg.clear_trace()
    pushed = blobs.push(reg, [src], "one/files:v1", chunk_size=32_768)
    m = reg.manifest("one/files:v1")
    assert m.digest == pushed
    sizes = [m.config_descriptor["size"]] + [d["size"] for d in m.layer_descriptors]
    assert len(patches(reg)) == sum(math.ceil(s / 32_768) for s in sizes)


def test_chunk_min_length_raises_the_chunk_size(empty_sandbox: LocalRegistry, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """The registry's ``OCI-Chunk-Min-Length`` (added to the real registry's POST answer) wins over a smaller
    ``chunk_size``, for ``upload_blob`` and ``push`` alike: one upload path reads it."""
    reg = empty_sandbox.client()
    real = reg.transport.request

    def with_min_length(method: str, *args: Any, **kw: Any) -> Any:
        resp = real(method, *args, **kw)
        if method == "POST" and resp.status_code == 202:
            resp.headers["OCI-Chunk-Min-Length"] = "40000"
        return resp

    monkeypatch.setattr(reg.transport, "request", with_min_length)
    data = os.urandom(100_000)
    reg.clear_trace()
    digest = reg.v2.upload_blob("one/min", data, chunk_size=1_000)
    assert len(patches(reg)) == 3  # 40000 + 40000 + 20000, not 100
    assert reg.v2.get_blob("one/min", digest) == data

    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(90_000))
    reg.clear_trace()
    blobs.push(reg, [src], "one/min:v1", chunk_size=1_000)
    layer = reg.manifest("one/min:v1").layer_descriptors[0]
    assert len(patches(reg)) == math.ceil(layer["size"] / 40_000) + 1  # the layer, then the small config


def test_seed_layout_and_save_are_written_by_the_same_writer(registry_sandbox: LocalRegistry, skopeo: Any,
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's own layout of ``demo/multiarch`` and ``save()`` of every tag of it from the registry (where
    skopeo put the same content) are the same files, byte for byte; both go through ``layout.write_index``."""
    repo = "demo/multiarch"
    content = demo_content().only(repo)
    calls: list[Path] = []
    real = layout.write_index

    def counted(root: Path, entries: list[dict[str, Any]]) -> None:
        calls.append(root)
        real(root, entries)

    monkeypatch.setattr(layout, "write_index", counted)
    monkeypatch.setattr(seed_mod, "write_index", counted)
    seeded = write_oci_layout(content, tmp_path / "seed")[repo]
    reg = registry_sandbox.client()
    saved = tmp_path / "saved"
    tags = [m.tag for m in content.manifests if m.tag is not None]  # the seed's order
    assert len(tags) == 3
    for tag in tags:
        blobs.save(reg, f"{repo}:{tag}", saved, progress=False)
    assert calls == [seeded] + [saved] * len(tags)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(seeded) == files(saved)
    assert json.loads((seeded / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    oci_tags = [t for t in tags if content.manifest(repo, t).media_type == seed_mod.OCI_INDEX]
    assert oci_tags == ["latest", "2.0"]  # skopeo 1.9's oci: lists only OCI-typed entries
    for folder in (seeded, saved):
        for tag in oci_tags:
            raw = skopeo("inspect", "--raw", f"oci:{folder}:{tag}", raw=True)
            assert sha256_digest(raw) == content.digest_of(repo, tag)


def test_write_index_replaces_a_tag_and_keeps_the_others(tmp_path: Path) -> None:
    a = layout.layout_entry("application/vnd.oci.image.manifest.v1+json", "sha256:" + "a" * 64, 10, "one")
    b = layout.layout_entry("application/vnd.oci.image.manifest.v1+json", "sha256:" + "b" * 64, 11, "two")
    a2 = layout.layout_entry("application/vnd.oci.image.manifest.v1+json", "sha256:" + "c" * 64, 12, "one")
    layout.write_index(tmp_path, [a, b])
    layout.write_index(tmp_path, [a2])
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"] == [b, a2]

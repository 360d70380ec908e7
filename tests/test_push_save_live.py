"""save() → OCI layouts skopeo accepts; push() from layouts and from plain files, cross-checked with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from regexplore import blobs
from regexplore.sandbox import LocalRegistry


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REGEXPLORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")
    return tmp_path / "cache"


def remote_digest(skopeo: Any, ref: str) -> str:
    raw = skopeo("inspect", "--raw", f"docker://{ref}", raw=True)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def requests_of(reg: Any, method: str, part: str) -> list[dict]:
    return [r for r in reg.transport.trace_records if r["method"] == method and part in r["url"]]


def test_save_folder_then_skopeo_copies_it_back(registry_sandbox: LocalRegistry, empty_sandbox: LocalRegistry,
                                                skopeo: Any, tmp_path: Path) -> None:
    reg = registry_sandbox.client()
    want = reg.manifest("demo/busybox:1.1")
    out = blobs.save(reg, "demo/busybox:1.1", tmp_path / "layout", progress=False)
    index = json.loads((Path(out) / "index.json").read_text())
    assert json.loads((Path(out) / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    [entry] = index["manifests"]
    assert entry["digest"] == want.digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1.1"
    assert not list(Path(out).rglob("*.partial"))
    skopeo("copy", f"oci:{out}:1.1", f"docker://{empty_sandbox.host}/copied/busybox:1.1", raw=True)
    assert remote_digest(skopeo, f"{empty_sandbox.host}/copied/busybox:1.1") == want.digest


def test_docker_schema2_is_saved_byte_exact(registry_sandbox: LocalRegistry, empty_sandbox: LocalRegistry,
                                            skopeo: Any, tmp_path: Path) -> None:
    """A Docker manifest keeps its bytes and type (its digest) in the layout; skopeo 1.9's ``oci:`` only
    lists OCI-typed entries, so the round trip goes through regexplore's push and skopeo inspects it."""
    reg = registry_sandbox.client()
    want = reg.manifest("library/webapp:1.0")
    out = Path(blobs.save(reg, "library/webapp:1.0", tmp_path / "layout", progress=False))
    [entry] = json.loads((out / "index.json").read_text())["manifests"]
    assert (entry["mediaType"], entry["digest"]) == (want.media_type, want.digest)
    assert (out / "blobs" / "sha256" / want.digest[7:]).read_bytes() == want.raw
    assert blobs.push(empty_sandbox.client(), out, "copied/webapp:1.0") == want.digest
    assert remote_digest(skopeo, f"{empty_sandbox.host}/copied/webapp:1.0") == want.digest
    layers = skopeo("inspect", f"docker://{empty_sandbox.host}/copied/webapp:1.0")["Layers"]
    assert layers == [d["digest"] for d in want.json["layers"]]


def test_save_whole_index_as_tar(registry_sandbox: LocalRegistry, empty_sandbox: LocalRegistry, skopeo: Any,
                                 tmp_path: Path) -> None:
    reg = registry_sandbox.client()
    index = reg.manifest("demo/multiarch:latest")
    out = blobs.save(reg, "demo/multiarch:latest", tmp_path / "multi.tar", progress=False)
    assert out.endswith("multi.tar") and not Path(out + ".partial").exists()
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
    for e in index.json["manifests"]:  # every platform (and attestation) manifest is in it
        assert f"blobs/sha256/{e['digest'][7:]}" in names
    skopeo("copy", "--all", f"oci-archive:{out}:latest", f"docker://{empty_sandbox.host}/copied/multi:latest", raw=True)
    assert remote_digest(skopeo, f"{empty_sandbox.host}/copied/multi:latest") == index.digest


def test_save_one_platform(registry_sandbox: LocalRegistry, tmp_path: Path) -> None:
    reg = registry_sandbox.client()
    arm = reg.manifest("demo/multiarch:latest", platform="linux/arm64")
    out = Path(blobs.save(reg, "demo/multiarch:latest", tmp_path / "arm", platform="linux/arm64", progress=False))
    [entry] = json.loads((out / "index.json").read_text())["manifests"]
    assert entry["digest"] == arm.digest and entry["platform"]["architecture"] == "arm64"
    files = {p.name for p in (out / "blobs" / "sha256").iterdir()}
    expected = {arm.digest[7:], arm.json["config"]["digest"][7:]} | {d["digest"][7:] for d in arm.json["layers"]}
    assert files == expected


def test_push_skopeo_layout_and_tar(registry_sandbox: LocalRegistry, empty_sandbox: LocalRegistry, skopeo: Any,
                                    tmp_path: Path) -> None:
    src = f"{registry_sandbox.host}/demo/busybox:latest"
    skopeo("copy", f"docker://{src}", f"oci:{tmp_path / 'lay'}:latest", raw=True)
    skopeo("copy", f"docker://{src}", f"oci-archive:{tmp_path / 'lay.tar'}:latest", raw=True)
    want = remote_digest(skopeo, src)
    reg = empty_sandbox.client()
    assert blobs.push(reg, tmp_path / "lay", "pushed/busybox:1") == want
    assert remote_digest(skopeo, f"{empty_sandbox.host}/pushed/busybox:1") == want
    reg.clear_trace()
    assert blobs.push(reg, tmp_path / "lay.tar", "pushed/busybox:2") == want
    assert requests_of(reg, "POST", "/blobs/uploads/") == []  # every blob was there already (HEAD)
    assert remote_digest(skopeo, f"{empty_sandbox.host}/pushed/busybox:2") == want


def test_push_index_children_first_and_mount(registry_sandbox: LocalRegistry, empty_sandbox: LocalRegistry,
                                             skopeo: Any, tmp_path: Path) -> None:
    reg_src = registry_sandbox.client()
    index = reg_src.manifest("demo/multiarch:latest")
    layout = Path(blobs.save(reg_src, "demo/multiarch:latest", tmp_path / "multi", progress=False))
    reg = empty_sandbox.client()
    assert blobs.push(reg, layout, "first/multi:latest") == index.digest
    reg.clear_trace()
    assert blobs.push(reg, layout, "second/multi:latest", mount_from="first/multi") == index.digest
    posts = requests_of(reg, "POST", "/blobs/uploads/")  # the trace shows the URL without its query
    assert posts and all(r["status"] == 201 for r in posts)  # 201: mounted (an upload would be 202)
    assert requests_of(reg, "PUT", "/blobs/uploads/") == []  # nothing uploaded
    puts = [r["url"].rsplit("/", 1)[1] for r in requests_of(reg, "PUT", "/manifests/")]
    assert puts[-1] == "latest" and len(puts) == len(index.json["manifests"]) + 1
    out = skopeo("inspect", "--raw", f"docker://{empty_sandbox.host}/second/multi:latest")
    assert [m["digest"] for m in out["manifests"]] == [m["digest"] for m in index.json["manifests"]]


def test_push_files_as_a_one_layer_image_chunked(empty_sandbox: LocalRegistry, skopeo: Any, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    a = tmp_path / "in" / "notes.txt"
    a.write_text("hello registry\n")
    b = tmp_path / "in" / "data"
    b.mkdir()
    (b / "numbers.bin").write_bytes(bytes(range(256)) * 4000)
    reg = empty_sandbox.client()
    digest = blobs.push(reg, [a, b], "files/bundle:v1", chunk_size=256 * 1024)
    patches = requests_of(reg, "PATCH", "/blobs/uploads/")
    assert len(patches) >= 1
    info = skopeo("inspect", f"docker://{empty_sandbox.host}/files/bundle:v1")
    assert info["Digest"] == digest and len(info["Layers"]) == 1
    cfg = skopeo("inspect", "--config", f"docker://{empty_sandbox.host}/files/bundle:v1")
    assert "notes.txt" in cfg["history"][0]["created_by"] and cfg["os"] == "linux"
    [config_path, layer_path] = blobs.download(reg, "files/bundle:v1", tmp_path / "back", progress=False)
    tar_bytes = gzip.decompress(layer_path.read_bytes())
    assert "sha256:" + hashlib.sha256(tar_bytes).hexdigest() == cfg["rootfs"]["diff_ids"][0]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        assert sorted(tf.getnames()) == ["data", "data/numbers.bin", "notes.txt"]
        assert tf.extractfile("notes.txt").read() == b"hello registry\n"  # type: ignore[union-attr]
        assert tf.getmember("notes.txt").uid == 0


def test_push_rejects_ambiguous_layouts(registry_sandbox: LocalRegistry, empty_sandbox: LocalRegistry,
                                        tmp_path: Path) -> None:
    reg_src = registry_sandbox.client()
    layout = tmp_path / "two"
    blobs.save(reg_src, "demo/busybox:1.0", layout, progress=False)
    blobs.save(reg_src, "demo/busybox:1.1", layout, progress=False)  # a second entry in the same layout
    reg = empty_sandbox.client()
    with pytest.raises(ValueError, match="name="):
        blobs.push(reg, layout, "x/busybox:other")
    got = blobs.push(reg, layout, "x/busybox:pick", name="1.0")
    assert got == reg_src.manifest("demo/busybox:1.0").digest
    assert blobs.push(reg, layout, "x/busybox:1.1") == reg_src.manifest("demo/busybox:1.1").digest


@pytest.mark.parametrize("chunk_size", [None, 64 * 1024])
def test_push_starts_a_blob_upload_again_after_a_503_or_a_dropped_connection(
        tmp_path: Path, skopeo: Any, chunk_size: int | None) -> None:
    """A streamed upload cannot be replayed inside one request: the whole upload session starts
    again (POST, then PUT or PATCHes), as Docker's pusher does; a 4xx is not retried."""
    import regexplore as rx
    from regexplore.errors import RegistryError
    from regexplore.transport import RetryPolicy
    from servers import FaultProxy

    data = tmp_path / "payload.bin"
    data.write_bytes(bytes(range(256)) * 1024)  # 256 KiB: several PATCHes when chunked
    sent = "PATCH" if chunk_size else "PUT"
    with LocalRegistry() as sandbox, FaultProxy(sandbox.url) as proxy:
        proxy.fail(503, times=1, method=sent, path=r"/blobs/uploads/")
        proxy.drop(None, times=1, method=sent, path=r"/blobs/uploads/")
        with rx.Registry(proxy.url) as reg:
            reg.transport.retry = RetryPolicy(backoff=0.01)
            digest = blobs.push(reg, [data], "retry/upload:v1", chunk_size=chunk_size)
        assert proxy.hits(r"/blobs/uploads/", method="POST") == 2 + 2  # config + layer, 2 restarts
        info = skopeo("inspect", f"docker://{sandbox.host}/retry/upload:v1")
        assert info["Digest"] == digest and len(info["Layers"]) == 1

        proxy.fail(400, times=1, method=sent, path=r"/blobs/uploads/")
        before = proxy.hits(r"/blobs/uploads/", method="POST")
        with rx.Registry(proxy.url) as reg, pytest.raises(RegistryError) as info400:
            blobs.push(reg, [data], "retry/other:v1", chunk_size=chunk_size, parallel=1)
        assert info400.value.status == 400
        assert proxy.hits(r"/blobs/uploads/", method="POST") == before + 1

"""save() → OCI layouts skopeo accepts; push() from layouts and from plain files, cross-checked with skopeo."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from digests import sha256_digest

from regexplore.content import blobs
from regexplore.sandbox import LocalRegistry


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REGEXPLORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")
    return tmp_path / "cache"


def remote_digest(skopeo: Any, ref: str) -> str:
    raw = skopeo("inspect", "--raw", f"docker://{ref}", raw=True)
    return sha256_digest(raw)


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
    posts = requests_of(reg, "POST", "/blobs/uploads/")
    assert posts and all(r["status"] == 201 for r in posts)  # 201: mounted (an upload would be 202)
    assert all("?mount=sha256:" in r["url"] and r["url"].endswith("&from=first/multi") for r in posts)
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
    assert sha256_digest(tar_bytes) == cfg["rootfs"]["diff_ids"][0]
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
    from servers import FaultProxy

    import regexplore as rx
    from regexplore.errors import RegistryError
    from regexplore.http.transport import RetryPolicy

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


# ----------------------------------------------------------------- token auth with per-repository grants
TOKEN_PW = "pw-Push-4f2a!secret"


@pytest.fixture(scope="module")
def token_push_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, Path]]:
    """A token-auth registry holding ``secret/base:v`` (pushed by ``seed``, who may do anything) and
    that image as a layout on disk; ``bob`` may pull and push ``ok/*``, only pull ``ro/*``."""
    from servers import TokenServer

    import regexplore as rx

    users = {"seed": (TOKEN_PW, {"repository:*": "pull,push"}),
             "bob": (TOKEN_PW, {"repository:ok/*": "pull,push", "repository:ro/*": "pull"})}
    folder = tmp_path_factory.mktemp("token-push")
    (folder / "a.txt").write_text("alpha\n")
    (folder / "b.bin").write_bytes(bytes(range(256)) * 40)
    with TokenServer(users=users, anonymous=None) as ts, LocalRegistry(token=ts.registry_config()) as reg:
        with rx.Registry(reg.url, auth=("seed", TOKEN_PW)) as seed:
            seed.push([folder / "a.txt", folder / "b.bin"], "secret/base:v")
            layout = Path(blobs.save(seed, "secret/base:v", folder / "layout", progress=False))
        yield reg, layout


def test_push_mounting_from_a_repository_it_may_not_pull_uploads_instead(
        token_push_env: tuple[LocalRegistry, Path]) -> None:
    """The registry answers the mount 401 insufficient_scope (the token leaves out
    ``repository:secret/base:pull``): the mount is refused, the blob uploaded, the push succeeds."""
    import regexplore as rx
    from regexplore.errors import Denied

    reg_, layout = token_push_env
    with rx.Registry(reg_.url, auth=("bob", TOKEN_PW)) as bob:
        digest = bob.push(layout, "ok/mounted:v", mount_from="secret/base", parallel=1)
        assert bob.manifest("ok/mounted:v").digest == digest
        mounts = [r for r in requests_of(bob, "POST", "/blobs/uploads/") if "mount=" in r["url"]]
        uploads = [r for r in requests_of(bob, "POST", "/blobs/uploads/") if "mount=" not in r["url"]]
        assert mounts and {r["status"] for r in mounts} == {401}
        assert len(mounts) <= 2 * len(uploads) and [r["status"] for r in uploads] == [202] * len(uploads)

        # a push the credentials may not make is still refused (pull only on ro/*)
        with pytest.raises(Denied) as info:
            bob.push(layout, "ro/mounted:v", mount_from="ok/mounted", parallel=1)
        assert info.value.message.startswith("start upload")  # the mount was refused, then the upload
        assert info.value.status == 401 and TOKEN_PW not in str(info.value) + repr(info.value)


def test_denied_push_carries_the_challenge_code_and_scope(token_push_env: tuple[LocalRegistry, Path]) -> None:
    """The first request of a push with no grant is a blob HEAD: no body, only the challenge's
    ``error="insufficient_scope"`` and ``scope=`` tell what was refused."""
    import regexplore as rx
    from regexplore.errors import Denied

    reg_, layout = token_push_env
    with rx.Registry(reg_.url, auth=("bob", TOKEN_PW)) as bob, pytest.raises(Denied) as info:
        bob.push(layout, "nope/x:v", parallel=1)
    err = info.value
    assert (err.status, err.code) == (401, "INSUFFICIENT_SCOPE")
    assert "insufficient scope" in err.message and "repository:nope/x:pull" in err.message
    assert TOKEN_PW not in str(err) + repr(err) and "Bearer" not in str(err) and "realm" not in str(err)


def test_a_layer_listed_twice_is_checked_and_uploaded_once(empty_sandbox: LocalRegistry, skopeo: Any,
                                                            tmp_path: Path) -> None:
    layout = tmp_path / "twice"
    sha = layout / "blobs" / "sha256"
    sha.mkdir(parents=True)

    def blob(data: bytes) -> dict:
        digest = sha256_digest(data)
        (sha / digest[7:]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("same.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"same\n"))
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             **blob(gzip.compress(tar.getvalue(), mtime=0))}
    diff_id = sha256_digest(tar.getvalue())
    rootfs = {"type": "layers", "diff_ids": [diff_id] * 2}
    config = {"mediaType": "application/vnd.oci.image.config.v1+json",
              **blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": rootfs}).encode())}
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
         "layers": [layer, layer]}).encode())}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    reg = empty_sandbox.client()
    assert blobs.push(reg, layout, "twice/layer:v1", parallel=4) == manifest["digest"]
    assert len(requests_of(reg, "HEAD", layer["digest"])) == 1
    assert len([r for r in requests_of(reg, "PUT", "/blobs/uploads/") if layer["digest"] in r["url"]]) == 1
    info = skopeo("inspect", f"docker://{empty_sandbox.host}/twice/layer:v1")
    assert info["Layers"] == [layer["digest"]] * 2

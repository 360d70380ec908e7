"""LocalRegistry (the real registry binary on loopback) and the deterministic seed content."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import bcrypt
import pytest
import requests
import zstandard
from digests import sha256_digest

from regexplore.sandbox import seed
from regexplore.sandbox.local import LocalRegistry, RegistryBinaryMissing, _write_tls_files, to_yaml
from regexplore.sandbox.seed import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    demo_content,
    push,
    push_with_skopeo,
    scale_content,
    write_oci_layout,
)

PROJECT = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- lifecycle -------------------------------------------------------------------------------------------
@pytest.mark.live
def test_start_stop_frees_port_and_removes_temp_folder() -> None:
    sandbox = LocalRegistry()
    assert "not started" in repr(sandbox)
    sandbox.start()
    port, tmp, storage = sandbox.port, Path(sandbox._tmp), sandbox.storage
    assert sandbox.url == f"http://127.0.0.1:{port}" and sandbox.host == f"127.0.0.1:{port}"
    resp = requests.get(f"{sandbox.url}/v2/", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert storage is not None and storage.is_relative_to(tmp)
    assert sandbox.log_path.read_text().strip(), "the registry's log goes to the log file"
    config = sandbox.config_path.read_text()
    assert f"addr: \"127.0.0.1:{port}\"" in config and "maxentries: 1000" in config
    assert f"http://127.0.0.1:{port}" in repr(sandbox) and "running" in repr(sandbox)

    sandbox.stop()
    assert not sandbox.running
    assert not _port_open(port)
    assert not tmp.exists()
    sandbox.stop()  # idempotent


@pytest.mark.live
def test_context_manager_keeps_given_storage(tmp_path: Path, skopeo) -> None:
    minimal = demo_content().only("demo/minimal")
    with LocalRegistry(storage=tmp_path / "data") as sandbox:
        push_with_skopeo(minimal, sandbox)
    assert not sandbox.running
    assert (tmp_path / "data" / "docker" / "registry" / "v2" / "repositories" / "demo" / "minimal").is_dir()
    with LocalRegistry(storage=tmp_path / "data") as again:  # the same data served again
        raw = skopeo("inspect", "--raw", f"docker://{again.host}/demo/minimal:latest", raw=True)
    assert sha256_digest(raw) == minimal.digest_of("demo/minimal", "latest")


@pytest.mark.live
def test_taken_port_fails_with_the_log_and_cleans_up() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        sandbox = LocalRegistry(port=port)
        with pytest.raises(RuntimeError, match="address already in use"):
            sandbox.start()
    assert not sandbox.running and sandbox._tmp is None


def test_missing_binary_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEXPLORE_REGISTRY_BIN", "/nonexistent/registry")
    with pytest.raises(RegistryBinaryMissing, match="apt-get install docker-registry"):
        LocalRegistry()
    monkeypatch.delenv("REGEXPLORE_REGISTRY_BIN")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RegistryBinaryMissing, match="apt-get install docker-registry"):
        LocalRegistry()


def test_yaml_writer_quotes_strings_and_nests() -> None:
    text = to_yaml({"a": {"b": 1, "c": "x: y", "d": True, "e": ["p", 2], "f": {}}, "g": None})
    assert text == 'a:\n  b: 1\n  c: "x: y"\n  d: true\n  e: ["p", 2]\n  f: {}\ng: null'


# -- auth, TLS, token, config ------------------------------------------------------------------------------
@pytest.mark.live
def test_htpasswd_auth() -> None:
    with LocalRegistry(auth=("alice", "wonder-land-42")) as sandbox:
        url = f"{sandbox.url}/v2/"
        anonymous = requests.get(url, timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="regexplore-sandbox"')
        assert requests.get(url, auth=("alice", "wrong"), timeout=5).status_code == 401
        assert requests.get(url, auth=("alice", "wonder-land-42"), timeout=5).status_code == 200
        assert sandbox.credentials == ("alice", "wonder-land-42")
        assert "wonder-land-42" not in repr(sandbox) and "htpasswd" in repr(sandbox)
        line = (Path(sandbox._tmp) / "htpasswd").read_text().strip()
        user, hashed = line.split(":", 1)
        assert user == "alice" and "wonder-land-42" not in line
        assert bcrypt.checkpw(b"wonder-land-42", hashed.encode())
        assert "wonder-land-42" not in sandbox.config_path.read_text()


@pytest.mark.live
def test_tls_with_generated_ca() -> None:
    with LocalRegistry(tls=True) as sandbox:
        assert sandbox.url == f"https://127.0.0.1:{sandbox.port}"
        assert requests.get(f"{sandbox.url}/v2/", verify=sandbox.ca_file, timeout=5).status_code == 200
        localhost = f"https://localhost:{sandbox.port}/v2/"
        assert requests.get(localhost, verify=sandbox.ca_file, timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{sandbox.url}/v2/", timeout=5)  # the system CAs do not know it
        plain = requests.get(f"http://{sandbox.host}/v2/", timeout=5)  # Go's answer to http on a TLS port
        assert plain.status_code == 400 and b"HTTPS" in plain.content
        ca_file = Path(sandbox.ca_file)
    assert not ca_file.exists()


@pytest.mark.live
def test_token_auth_config(tmp_path: Path) -> None:
    ca, _, _ = _write_tls_files(tmp_path)
    token = dict(realm="http://127.0.0.1:1/token", service="sandbox-test", issuer="test-issuer",
                 rootcertbundle=str(ca))
    with LocalRegistry(token=token) as sandbox:
        resp = requests.get(f"{sandbox.url}/v2/", timeout=5)
        assert resp.status_code == 401
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'realm="http://127.0.0.1:1/token"' in challenge and 'service="sandbox-test"' in challenge
        resp = requests.get(f"{sandbox.url}/v2/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=5)
        assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    with pytest.raises(ValueError, match="rootcertbundle"):
        LocalRegistry(token={"realm": "x", "service": "y", "issuer": "z"})


@pytest.mark.live
def test_extra_config_and_delete_switch(skopeo) -> None:
    minimal = demo_content().only("demo/minimal")
    digest = minimal.digest_of("demo/minimal", "latest")
    with LocalRegistry(delete=False, extra_config={"catalog": {"maxentries": 2}}) as sandbox:
        push_with_skopeo(minimal, sandbox)
        over = requests.get(f"{sandbox.url}/v2/_catalog?n=3", timeout=5)
        assert over.status_code == 400 and over.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"
        assert requests.get(f"{sandbox.url}/v2/_catalog?n=2", timeout=5).status_code == 200
        refused = requests.delete(f"{sandbox.url}/v2/demo/minimal/manifests/{digest}", timeout=5)
        assert refused.status_code == 405
    with LocalRegistry() as sandbox:  # delete is on by default
        push_with_skopeo(minimal, sandbox)
        assert requests.delete(f"{sandbox.url}/v2/demo/minimal/manifests/{digest}", timeout=5).status_code == 202
        with pytest.raises(AssertionError, match="manifest unknown"):
            skopeo("inspect", "--raw", f"docker://{sandbox.host}/demo/minimal:latest")


# -- seeded content ----------------------------------------------------------------------------------------
def test_seeded_content_visible_via_skopeo(registry_sandbox: LocalRegistry, skopeo) -> None:
    content = registry_sandbox.seeded
    assert content is demo_content()
    catalog = requests.get(f"{registry_sandbox.url}/v2/_catalog", timeout=5).json()["repositories"]
    assert catalog == content.repositories()
    accept = ",".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
    for repo in content.repositories():
        listed = skopeo("list-tags", f"docker://{registry_sandbox.host}/{repo}")
        assert sorted(listed["Tags"]) == content.tags(repo)
        tags = content.tags(repo)
        for i, tag in enumerate(tags):
            if i < 3 or i == len(tags) - 1:  # skopeo for a few tags per repository, plain HTTP for the rest
                raw = skopeo("inspect", "--raw", f"docker://{registry_sandbox.host}/{repo}:{tag}", raw=True)
            else:
                raw = requests.get(f"{registry_sandbox.url}/v2/{repo}/manifests/{tag}",
                                   headers={"Accept": accept}, timeout=5).content
            assert sha256_digest(raw) == content.digest_of(repo, tag), f"{repo}:{tag}"
    index_ref = f"docker://{registry_sandbox.host}/demo/multiarch"
    index = skopeo("inspect", "--raw", f"{index_ref}:latest")
    for child in index["manifests"]:
        raw = skopeo("inspect", "--raw", f"{index_ref}@{child['digest']}", raw=True)
        assert sha256_digest(raw) == child["digest"]
    config = skopeo("inspect", "--config", f"docker://{registry_sandbox.host}/library/webapp:latest")
    assert config["config"]["WorkingDir"] == "/app" and len(config["history"]) == 12


def test_regexplore_push_gives_the_same_digests_as_skopeo(
    registry_sandbox: LocalRegistry, empty_sandbox: LocalRegistry, skopeo
) -> None:
    content = demo_content().only("demo/multiarch", "demo/busybox", "demo/big", "demo/zstd")
    report = push(content, empty_sandbox.client())
    assert report.manifests == len(content.manifests)
    assert report.uploaded + report.mounted == len({(m.repo, d) for m in content.manifests
                                                     for d in content.referenced_blobs(m)})
    assert report.mounted > 0  # the busybox base layer is shared across repositories
    for repo in content.repositories():
        for tag in content.tags(repo):
            ours = skopeo("inspect", "--raw", f"docker://{empty_sandbox.host}/{repo}:{tag}", raw=True)
            theirs = skopeo("inspect", "--raw", f"docker://{registry_sandbox.host}/{repo}:{tag}", raw=True)
            assert ours == theirs and sha256_digest(ours) == content.digest_of(repo, tag)
    big = json.loads(content.manifest("demo/big", "latest").raw)["layers"][-1]
    head = requests.head(f"{empty_sandbox.url}/v2/demo/big/blobs/{big['digest']}", timeout=5)
    assert int(head.headers["Content-Length"]) == big["size"] >= 4 * 1024 * 1024

    again = push(content, empty_sandbox.client())  # everything is there already
    assert again.uploaded == 0 and again.mounted == 0 and again.skipped > 0


def test_big_sandbox_has_every_pagination_path(big_sandbox: LocalRegistry, skopeo) -> None:
    repos, url = [], f"{big_sandbox.url}/v2/_catalog?n=100"
    pages = 0
    while url:
        resp = requests.get(url, timeout=5)
        repos += resp.json()["repositories"]
        pages += 1
        link = resp.headers.get("Link")
        url = f"{big_sandbox.url}{link.split(';')[0].strip('<> ')}" if link else None
    assert pages >= 2 and len(repos) >= 151 and repos == sorted(repos)
    assert repos == big_sandbox.seeded.repositories()
    tags = skopeo("list-tags", f"docker://{big_sandbox.host}/scale/tags")["Tags"]
    assert sorted(tags) == big_sandbox.seeded.tags("scale/tags") and len(tags) == 300


# -- determinism and shape of the content ------------------------------------------------------------------
def _digests(content: seed.Content) -> list[tuple[str, str | None, str]]:
    return [(m.repo, m.tag, m.digest) for m in content.manifests]


def test_two_builds_give_the_same_bytes_even_in_another_interpreter() -> None:
    first, second = demo_content.__wrapped__(), demo_content.__wrapped__()
    assert first is not second
    assert _digests(first) == _digests(second) and dict(first.blobs) == dict(second.blobs)
    code = ("import json; from regexplore.sandbox.seed import demo_content; "
            "print(json.dumps([[m.repo, m.tag, m.digest] for m in demo_content().manifests]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT), "PYTHONHASHSEED": "123"})
    assert [tuple(x) for x in json.loads(out.stdout)] == _digests(first)


def test_layers_are_deterministic_tars() -> None:
    content = demo_content()
    manifest = json.loads(content.manifest("library/webapp", "latest").raw)
    seen_whiteout = False
    for layer in manifest["layers"]:
        blob = content.blobs[layer["digest"]]
        assert blob[:2] == b"\x1f\x8b" and blob[4:8] == b"\0\0\0\0", "gzip with mtime 0"
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {m.mtime for m in members} == {seed.EPOCH} and {m.uid for m in members} == {0}
        seen_whiteout |= any(os.path.basename(n).startswith(".wh.") for n in names)
    assert seen_whiteout
    zstd_manifest = json.loads(content.manifest("demo/zstd", "latest").raw)
    zlayer = zstd_manifest["layers"][-1]
    assert zlayer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    tar_bytes = zstandard.ZstdDecompressor().decompress(content.blobs[zlayer["digest"]])
    config = json.loads(content.blobs[zstd_manifest["config"]["digest"]])
    assert config["rootfs"]["diff_ids"][-1] == sha256_digest(tar_bytes)


def test_demo_content_shape() -> None:
    content = demo_content()
    assert {"demo/busybox", "demo/multiarch", "demo/many-tags", "demo/zstd", "demo/big",
            "library/webapp"} <= set(content.repositories())
    assert content.tags("demo/busybox") == ["1.0", "1.1", "latest"]
    assert content.digest_of("demo/busybox", "1.1") == content.digest_of("demo/busybox", "latest")
    assert len(content.tags("demo/many-tags")) >= 120
    assert content.manifest("demo/busybox", "1.0").media_type == DOCKER_MANIFEST
    assert content.manifest("demo/multiarch", "docker-list").media_type == DOCKER_LIST

    index_entry = content.manifest("demo/multiarch", "latest")
    assert index_entry.media_type == OCI_INDEX
    index = json.loads(index_entry.raw)
    platforms = [(d["platform"]["os"], d["platform"]["architecture"]) for d in index["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64"), ("unknown", "unknown"), ("unknown", "unknown")]
    order = [m.digest for m in content.manifests]
    for desc in index["manifests"]:  # children are pushed (listed) before the index, by digest
        assert order.index(desc["digest"]) < order.index(index_entry.digest)
        assert content.manifest("demo/multiarch", desc["digest"]).tag is None
    attestation = index["manifests"][2]
    assert attestation["annotations"]["vnd.docker.reference.digest"] == index["manifests"][0]["digest"]

    for entry in content.manifests:  # every blob is there, every history aligns with the layers
        if entry.media_type in (OCI_INDEX, DOCKER_LIST):
            continue
        doc = json.loads(entry.raw)
        for desc in [doc["config"], *doc["layers"]]:
            assert sha256_digest(content.blobs[desc["digest"]]) == desc["digest"]
            assert len(content.blobs[desc["digest"]]) == desc["size"]
        config = json.loads(content.blobs[doc["config"]["digest"]])
        assert len(config["rootfs"]["diff_ids"]) == len(doc["layers"])
        if "history" in config:
            assert sum(not h.get("empty_layer") for h in config["history"]) == len(doc["layers"])

    webapp = json.loads(content.blobs[json.loads(content.manifest("library/webapp", "1.0").raw)["config"]["digest"]])
    assert len(webapp["history"]) >= 10 and any(h.get("empty_layer") for h in webapp["history"])
    assert webapp["history"][0]["created_by"].startswith("/bin/sh -c #(nop) ADD file:")
    assert webapp["history"][-1]["comment"] == "buildkit.dockerfile.v0"

    big = json.loads(content.manifest("demo/big", "latest").raw)["layers"][-1]
    assert big["size"] >= 0.99 * seed.BIG_LAYER_SIZE, "incompressible"

    scale = scale_content()
    assert len(scale.tags("scale/tags")) >= 300 and len(scale.repositories()) >= 151
    assert len(scale.blobs) == 2, "the test-scale content shares its blobs"


def test_oci_layout_is_readable_by_skopeo(tmp_path: Path, skopeo) -> None:
    content = demo_content().only("demo/multiarch", "demo/zstd")
    layouts = write_oci_layout(content, tmp_path)
    assert set(layouts) == {"demo/multiarch", "demo/zstd"}
    for folder in layouts.values():
        for blob in (folder / "blobs" / "sha256").iterdir():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    for repo, tag in (("demo/multiarch", "latest"), ("demo/zstd", "latest")):
        raw = skopeo("inspect", "--raw", f"oci:{layouts[repo]}:{tag}", raw=True)
        assert sha256_digest(raw) == content.digest_of(repo, tag)


@pytest.mark.live
def test_client_talks_to_an_auth_sandbox() -> None:
    with LocalRegistry(auth=("bob", "b0b-secret")) as sandbox:
        push(demo_content().only("demo/minimal"), sandbox.client())
        reg = sandbox.client()
        assert reg.v2.tags("demo/minimal") == ["latest"]
        assert "b0b-secret" not in repr(reg)


# -- command line ------------------------------------------------------------------------------------------
def test_cli_help_names_the_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    from regexplore.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["demo", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--headless" in out and "Ctrl-C" in out
    with pytest.raises(SystemExit):
        main([])  # a command is required


@pytest.mark.live
def test_cli_demo_prints_tables_and_stops_on_ctrl_c() -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "regexplore", "demo", "--no-lab"], cwd=PROJECT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    lines: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "Press Ctrl-C" in text, text
        url = next(line.split()[-1] for line in lines if line.startswith("Registry running at"))
        for repo in demo_content().repositories():
            assert repo in text
        assert "buildkit.dockerfile.v0" in text  # the history table
        assert requests.get(f"{url}/v2/demo/busybox/tags/list", timeout=5).json()["tags"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert not _port_open(int(url.rsplit(":", 1)[1]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

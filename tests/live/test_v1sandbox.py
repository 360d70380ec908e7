"""``regexplore.sandbox.v1server``: the packaged v1 Index + Registry (``LocalV1Registry``), its seed, its request
log, the ``tests/support/v1server.py`` re-export, and the v1 section of notebook 03 (run on its own, without the v2
sandbox)."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import nbformat
import requests
from nbclient import NotebookClient

import regexplore.sandbox.v1server as v1sandbox
from regexplore.sandbox.v1server import SEED_REPOSITORY, LocalV1Registry, V1Image, seed_content

ROOT = Path(__file__).resolve().parents[2]
USERS = {"demo": "demo-password"}


def test_module_is_stdlib_only_at_import() -> None:
    """No pandas (nor requests) at module level in any module of the package: only the stdlib, its own modules
    and ``regexplore.protocol.v1.tarsum``; the facade is imported inside ``client()``."""
    folder = Path(v1sandbox.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    assert node.level == 1 or (node.level, node.module) == (3, "protocol.v1.tarsum"), ast.dump(node)
                    continue
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            for name in names:
                assert name == "__future__" or name in sys.stdlib_module_names, (path.name, name)
    text = Path(v1sandbox.__file__).read_text()
    assert "not for production" in text and "2014" in text and "docker-registry" in text


def test_the_test_suite_name_is_a_re_export() -> None:
    import v1server

    assert v1server.V1Server is LocalV1Registry and v1sandbox.V1Server is LocalV1Registry
    assert v1server.V1Image is V1Image


def test_seed_content_is_deterministic_and_a_chain() -> None:
    (images, tags), (again, tags2) = seed_content(), seed_content()
    assert [(i.id, i.json, i.layer) for i in images] == [(i.id, i.json, i.layer) for i in again] and tags == tags2
    base, cmd, app = images
    assert base.parent is None and cmd.parent == base.id and app.parent == cmd.id
    assert tags == {"1.0": cmd.id, "latest": app.id}
    assert tarfile.open(fileobj=io.BytesIO(cmd.layer)).getnames() == []          # CMD: an empty layer
    assert "bin/busybox" in tarfile.open(fileobj=io.BytesIO(base.layer)).getnames()
    assert json.loads(app.json)["container_config"]["Cmd"][:2] == ["/bin/sh", "-c"]


def test_unseeded_server_is_empty_and_seeded_one_is_not() -> None:
    with LocalV1Registry() as empty:
        assert requests.get(f"{empty.url}/v1/search", params={"q": ""}, timeout=5).json()["num_results"] == 0
    images, tags = seed_content()
    srv = LocalV1Registry(seed=True)
    assert not srv.running and srv.url == ""
    assert srv.tags(SEED_REPOSITORY) == tags and [i["id"] for i in srv.index_images(SEED_REPOSITORY)] == [
        i.id for i in images]
    with srv:
        assert srv.running and srv.start() is srv and len(srv._servers) == 2   # start() again: no new port
        found = requests.get(f"{srv.url}/v1/search", params={"q": "busybox"}, timeout=5).json()
        assert [r["name"] for r in found["results"]] == [SEED_REPOSITORY] and found["results"][0]["description"]
    assert not srv.running


def test_seeded_registry_over_plain_http_tokens_endpoints_cookie() -> None:
    images, tags = seed_content()
    with LocalV1Registry(seed=True, users=USERS) as srv:
        assert srv.credentials == ("demo", "demo-password") and "demo-password" not in repr(srv)
        r = requests.get(f"{srv.url}/v1/repositories/{SEED_REPOSITORY}/images", auth=srv.credentials,
                         headers={"X-Docker-Token": "true"}, timeout=5)
        assert r.status_code == 200 and [i["id"] for i in r.json()] == [i.id for i in images]
        token = r.headers["X-Docker-Token"]
        assert token.startswith("signature=") and token.endswith(f'repository="{SEED_REPOSITORY}",access=read')
        assert r.headers["X-Docker-Endpoints"].strip() == srv.registry_host
        with requests.Session() as s:
            got = s.get(f"{srv.registry_url}/v1/repositories/{SEED_REPOSITORY}/tags",
                        headers={"Authorization": f"Token {token}"}, timeout=5)
            assert got.json() == tags and "session" in s.cookies
            app = images[-1]
            assert s.get(f"{srv.registry_url}/v1/images/{app.id}/ancestry", timeout=5).json() == [
                i.id for i in reversed(images)]
            js = s.get(f"{srv.registry_url}/v1/images/{app.id}/json", timeout=5)
            assert js.content == app.json and js.headers["X-Docker-Size"] == str(len(app.layer))
            payload = "sha256:" + hashlib.sha256(app.json + b"\n" + app.layer).hexdigest()
            assert js.headers["X-Docker-Payload-Checksum"] == payload
            assert s.get(f"{srv.registry_url}/v1/images/{app.id}/layer", timeout=5).content == app.layer
            cookie = s.cookies["session"]
        signature = token.split(",")[0].split("=", 1)[1]

        log = srv.requests
        images_call = next(x for x in log if x["path"].endswith("/images"))
        assert images_call["role"] == "index" and images_call["status"] == 200
        assert images_call["headers"]["Authorization"] == "Basic <redacted>"
        assert images_call["response_headers"]["X-Docker-Token"] == (
            f'signature=<redacted>,repository="{SEED_REPOSITORY}",access=read')
        assert images_call["response_headers"]["WWW-Authenticate"].startswith("Token signature=<redacted>,")
        tags_call = next(x for x in log if x["path"].endswith("/tags"))
        assert tags_call["headers"]["Authorization"] == "Token <redacted>"
        assert tags_call["response_headers"]["Set-Cookie"] == "session=<redacted>; HttpOnly; Path=/"
        layer_call = next(x for x in log if x["path"].endswith("/layer"))
        assert layer_call["status"] == 200 and layer_call["headers"]["Cookie"] == "session=<redacted>"
        assert layer_call["response_headers"]["Content-Length"] == str(len(images[-1].layer))
        text = repr(log)
        assert signature not in text and cookie not in text and "demo-password" not in text


def test_refusals_are_logged_with_their_status() -> None:
    with LocalV1Registry(seed=True) as srv:
        r = requests.get(f"{srv.registry_url}/v1/repositories/{SEED_REPOSITORY}/tags", timeout=5)
        assert r.status_code == 401
        assert srv.requests[-1]["status"] == 401 and srv.requests[-1]["response_headers"]["WWW-Authenticate"] == "Token"


def test_client_is_the_v1_facade() -> None:
    images, tags = seed_content()
    with LocalV1Registry(seed=True, users=USERS) as srv:
        reg = srv.client()
        try:
            assert reg.api == "v1"
            assert sorted(reg.tags(SEED_REPOSITORY)["tag"]) == ["1.0", "latest"]
            hist = reg.history(f"{SEED_REPOSITORY}:1.0")
            assert hist["id"].tolist() == [images[0].id, images[1].id]
            assert "CMD" in hist["created_by"].iloc[-1]
        finally:
            reg.close()
        index_requests = [x for x in srv.requests if x["role"] == "index"]
        assert all(x["headers"].get("Authorization") == "Basic <redacted>" for x in index_requests)


def _v1_section() -> list[nbformat.NotebookNode]:
    nb = nbformat.read(ROOT / "notebooks" / "03-how-a-pull-works.ipynb", as_version=4)
    return [c for c in nb.cells if "v1-contrast" in c.metadata.get("tags", [])]


def test_notebook_v1_section_runs_on_its_own(tmp_path: Path) -> None:
    """The v1 cells of notebook 03 need only ``pd`` and ``rx`` from the first cell; run them alone."""
    section = _v1_section()
    assert section and section[0].source.startswith("## For contrast: the v1 protocol")
    source = "\n".join(c.source for c in section)
    assert "LocalV1Registry(seed=True" in source and 'api="v1"' in source
    cells = ([nbformat.v4.new_code_cell("import pandas as pd\nimport regexplore as rx")]
             + section + [nbformat.v4.new_code_cell("reg1.close()\nv1srv.stop()\nprint('stopped', v1srv.running)")])
    nb = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   allow_errors=False).execute()
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + json.dumps(o.get("data", {})))
    text = "\n".join(out)
    assert "Traceback" not in text and "stopped False" in text
    for expected in ("demo/busybox", "/ancestry", "/json", "/layer", "X-Docker-Payload-Checksum",
                     "Token &lt;redacted&gt;", "signature=&lt;redacted&gt;", "session=&lt;redacted&gt;"):
        assert expected in text or expected.replace("&lt;", "<").replace("&gt;", ">") in text, expected
    assert "demo-password" not in text


def test_notebook_stops_the_v1_registry_at_the_end() -> None:
    nb = nbformat.read(ROOT / "notebooks" / "03-how-a-pull-works.ipynb", as_version=4)
    last = nb.cells[-1].source
    assert "v1srv.stop()" in last and "reg1.close()" in last

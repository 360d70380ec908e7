"""Hostile fan-out (issue 10, items 4, 9, 10): nested indexes that list one child many times, listings
whose ``Link`` / ``next`` pages never end, and an image that lists one decompression bomb many times.

Each attack runs in a child interpreter under ``servers.bounded.run_bounded`` (wall-clock timeout and
memory rlimit), so a regression fails the test instead of hanging CI or eating the machine. Images and
indexes are pushed to the real registry; the endless listings come from a small loopback server here.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import regexplore as rx
from regexplore.errors import ResponseTooLarge
from regexplore.sandbox import LocalRegistry
from layerkit import build_layer, zstd_bomb
from servers import serve, stop
from servers.bounded import run_bounded

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MiB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest: a cache folder of its own, no progress bars


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(base: str, repo: str, data: bytes) -> dict[str, Any]:
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    r = requests.put(requests.compat.urljoin(base, r.headers["Location"]), params={"digest": _digest(data)},
                     data=data, headers={"Content-Type": "application/octet-stream"})
    r.raise_for_status()
    return {"digest": _digest(data), "size": len(data)}


def _put_manifest(base: str, repo: str, ref: str | None, doc: dict) -> dict[str, Any]:
    """PUT ``doc`` by ``ref`` (a tag), or by its own digest; returns its descriptor."""
    raw = json.dumps(doc).encode()
    r = requests.put(f"{base}/v2/{repo}/manifests/{ref or _digest(raw)}", data=raw,
                     headers={"Content-Type": doc["mediaType"]})
    r.raise_for_status()
    return {"mediaType": doc["mediaType"], "digest": _digest(raw), "size": len(raw)}


def _image(base: str, repo: str, layers: list[tuple[bytes, str]], arch: str = "amd64",
           tag: str | None = None) -> dict[str, Any]:
    """An OCI image whose manifest lists ``layers`` ((blob, media type), repeats allowed) in order."""
    descs = {blob: {"mediaType": mt, **_put_blob(base, repo, blob)} for blob, mt in layers}
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [descs[b]["digest"] for b, _ in layers]}}).encode()
    return _put_manifest(base, repo, tag, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **_put_blob(base, repo, config)},
        "layers": [descs[b] for b, _ in layers]})


def _index(base: str, repo: str, entries: list[dict], tag: str | None = None) -> dict[str, Any]:
    return _put_manifest(base, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


def _tar_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ====================================================================== 9. endless Link / next pages
def _pager(mode: str) -> Any:
    """A server whose catalog, tags list, Hub tags and Hub search answer every page with a new next
    page: ``empty`` pages, the ``same`` two names each time, or 100 ``fresh`` names each time."""

    def names(n: int) -> list[str]:
        if mode == "fresh":
            return [f"r{n:07d}-{i:03d}" for i in range(100)]
        return ["a", "b"] if mode == "same" else []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            q = parse_qs(parts.query)
            n = int((q.get("last") or q.get("page") or ["0"])[0])
            headers = {"Content-Type": "application/json"}
            nxt = f"{parts.path}?{'page' if 'repositories/' in parts.path else 'last'}={n + 1}"
            if parts.path == "/v2/":
                doc: Any = {}
            elif parts.path == "/v2/_catalog" or parts.path.endswith("/tags/list"):
                doc = {"repositories" if "catalog" in parts.path else "tags": names(n)}
                headers["Link"] = f'<{nxt}&n=100>; rel="next"'
            elif parts.path.startswith("/v2/repositories/"):
                doc = {"count": 10**9, "next": f"http://{self.headers['Host']}{nxt}",
                       "results": [{"name": t, "images": []} for t in names(n)]}
            elif parts.path.startswith("/v2/search/repositories/"):
                doc = {"count": 10**9, "next": f"http://{self.headers['Host']}{nxt}",
                       "results": [{"repo_name": t} for t in names(n)]}
            else:
                doc = {"errors": [{"code": "NAME_UNKNOWN", "message": "no"}]}
            body = json.dumps(doc).encode()
            self.send_response(404 if "errors" in doc else 200)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    return serve(Handler)


LISTINGS = {
    "catalog": "result = len(rx.Registry(URL).catalog())",
    "tags": "result = len(rx.Registry(URL).tags('x'))",
    "hub_tags": "result = len(HubClient(hub_url=URL, index_url=URL).tags('x').rows)",
    "hub_search": "result = len(HubClient(hub_url=URL, index_url=URL).search_v2('x', limit=10**12).rows)",
}
_LISTING_HEAD = "import os, regexplore as rx\nfrom regexplore.hub import HubClient\nURL = os.environ['URL']\n"


# Hub's paging already stops at an empty page: the empty-page attack is on the registry's Link paging
ATTACKS = [(mode, listing) for mode in ("empty", "same", "fresh") for listing in sorted(LISTINGS)
           if not (mode == "empty" and listing.startswith("hub"))]


@pytest.mark.parametrize("mode,listing", ATTACKS)
def test_endless_pages_end_with_a_clear_error(mode: str, listing: str) -> None:
    httpd = _pager(mode)
    # small caps keep the attack short; without them it would never end
    env = {"URL": httpd.url, "REGEXPLORE_MAX_LIST_PAGES": "50", "REGEXPLORE_MAX_LIST_ENTRIES": "2000"}
    try:
        res = run_bounded(_LISTING_HEAD + LISTINGS[listing], env=env, timeout=20, memory_mb=1500)
    finally:
        stop(httpd)
    assert not res.ok, res.output[-3000:]
    if mode == "same":  # the second page brings nothing new: no progress, said at once
        assert res.raised("RegistryError") and "no progress" in res.message, res.output[-3000:]
    elif mode == "empty":
        assert res.raised("ResponseTooLarge") and "more than 50 pages" in res.message, res.output[-3000:]
        assert "REGEXPLORE_MAX_LIST_PAGES" in res.message
    else:
        assert res.raised("ResponseTooLarge") and "more than 2000 entries" in res.message, res.output[-3000:]
        assert "REGEXPLORE_MAX_LIST_ENTRIES" in res.message
    assert res.elapsed < 15


def test_same_names_under_ever_new_links_stop_without_any_cap_set() -> None:
    httpd = _pager("same")
    try:
        res = run_bounded(_LISTING_HEAD + LISTINGS["catalog"], env={"URL": httpd.url}, timeout=20, memory_mb=1500)
    finally:
        stop(httpd)
    assert res.raised("RegistryError") and "no progress" in res.message, res.output[-3000:]

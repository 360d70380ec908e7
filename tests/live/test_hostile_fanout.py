"""Hostile fan-out (issue 10, items 4, 9, 10): nested indexes that list one child many times, listings
whose ``Link`` / ``next`` pages never end, and an image that lists one decompression bomb many times.

Each attack runs in a child interpreter under ``servers.bounded.run_bounded`` (wall-clock timeout and
memory rlimit), so a regression fails the test instead of hanging CI or eating the machine. Images and
indexes are pushed to the real registry; the endless listings come from a small loopback server here.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from digests import sha256_digest
from layerkit import build_layer, zstd_bomb
from pushing import put_blob, put_manifest
from servers import serve, stop
from servers.bounded import run_bounded

import regexplore as rx
from regexplore.errors import ResponseTooLarge
from regexplore.sandbox import LocalRegistry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MiB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest: a cache folder of its own, no progress bars




def _image(base: str, repo: str, layers: list[tuple[bytes, str]], arch: str = "amd64",
           tag: str | None = None) -> dict[str, Any]:
    """An OCI image whose manifest lists ``layers`` ((blob, media type), repeats allowed) in order."""
    descs = {blob: {"mediaType": mt, **put_blob(base, repo, blob)} for blob, mt in layers}
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [descs[b]["digest"] for b, _ in layers]}}).encode()
    return put_manifest(base, repo, tag, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **put_blob(base, repo, config)},
        "layers": [descs[b] for b, _ in layers]})


def _index(base: str, repo: str, entries: list[dict], tag: str | None = None) -> dict[str, Any]:
    return put_manifest(base, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


def _tar_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ====================================================================== 4. nested-index fan-out
FAN = 60  # each of 4 nesting levels lists its child 60 times: 2 * 60**4 = 26 M rows unless deduplicated


@pytest.fixture
def fan(empty_sandbox: LocalRegistry) -> dict[str, Any]:
    """``fan/app:fan``: a 9 KB index whose child index is listed 60 times, 4 levels deep, ending in an
    index of two images (linux/amd64, linux/arm64)."""
    base = empty_sandbox.url
    amd = _image(base, "fan/app", [(_tar_layer({"a": b"amd"}), "application/vnd.oci.image.layer.v1.tar")])
    arm = _image(base, "fan/app", [(_tar_layer({"a": b"arm"}), "application/vnd.oci.image.layer.v1.tar")], "arm64")
    child = _index(base, "fan/app", [{**amd, "platform": {"os": "linux", "architecture": "amd64"}},
                                     {**arm, "platform": {"os": "linux", "architecture": "arm64"}}])
    for level in range(4):
        child = _index(base, "fan/app", [child] * FAN, tag="fan" if level == 3 else None)
    assert child["size"] < 10_000
    return {"url": base, "amd": amd, "arm": arm, "top": child}


FAN_CALLS = {
    "platforms": 'result = reg.platforms("fan/app:fan")["platform"].tolist()',
    "manifest": 'result = reg.manifest("fan/app:fan", platform="linux/arm64").digest',
    "tags_details": 'result = list(reg.tags("fan/app", details=True).iloc[0]["platforms"])',
    "layers": 'result = len(reg.layers("fan/app:fan", platform="linux/arm64"))',
    "save": 'result = reg.save("fan/app:fan", OUT)',
}


@pytest.mark.parametrize("call", sorted(FAN_CALLS))
def test_nested_index_listing_one_child_many_times_is_expanded_once(fan: dict, call: str, tmp_path: Path) -> None:
    res = run_bounded("import os, regexplore as rx\nURL, OUT = os.environ['URL'], os.environ['OUT']\n"
                      "reg = rx.Registry(URL)\n" + FAN_CALLS[call],
                      env={"URL": fan["url"], "OUT": str(tmp_path / "layout")}, timeout=30, memory_mb=1500)
    assert res.ok, res.output[-3000:]
    assert res.elapsed < 20, res.elapsed
    want = {"platforms": ["linux/amd64", "linux/arm64"], "manifest": fan["arm"]["digest"],
            "tags_details": ["linux/amd64", "linux/arm64"], "layers": 1, "save": str(tmp_path / "layout")}
    assert res.value == want[call]
    if call == "save":  # the whole tree, each manifest once: top, 3 nested indexes, the platform index, 2 images
        index = json.loads((tmp_path / "layout" / "index.json").read_text())
        assert [e["digest"] for e in index["manifests"]] == [fan["top"]["digest"]]
        blobs = {p.name for p in (tmp_path / "layout" / "blobs" / "sha256").iterdir()}
        assert {fan["top"]["digest"][7:], fan["amd"]["digest"][7:], fan["arm"]["digest"][7:]} <= blobs
        assert len(blobs) == 5 + 2 + 4  # manifests, plus a config and a layer per image


def test_repeats_in_one_index_are_the_registrys_answer_nested_ones_add_nothing(empty_sandbox: LocalRegistry) -> None:
    base = empty_sandbox.url
    amd = _image(base, "dup/app", [(_tar_layer({"a": b"1"}), "application/vnd.oci.image.layer.v1.tar")])
    plat = {"platform": {"os": "linux", "architecture": "amd64"}}
    inner = _index(base, "dup/app", [{**amd, **plat}])
    _index(base, "dup/app", [{**amd, **plat}, {**amd, **plat}], tag="twice")  # listed twice by the registry
    _index(base, "dup/app", [inner, inner, {**amd, **plat}, inner], tag="nested")
    reg = rx.Registry(base)
    assert reg.platforms("dup/app:twice")["digest"].tolist() == [amd["digest"]] * 2
    # the nested index is expanded where it is first listed; listed again, it adds no rows
    assert reg.platforms("dup/app:nested")["digest"].tolist() == [amd["digest"]] * 2


def test_index_entries_over_the_cap_are_a_clear_error(empty_sandbox: LocalRegistry, tmp_path: Path) -> None:
    base = empty_sandbox.url
    amd = _image(base, "wide/app", [(_tar_layer({"a": b"1"}), "application/vnd.oci.image.layer.v1.tar")])
    plat = {"platform": {"os": "linux", "architecture": "amd64"}}
    inner = _index(base, "wide/app", [{**amd, **plat}] * 60)
    top = _index(base, "wide/app", [inner, {**amd, **plat}] * 30, tag="wide")  # 60 + 60 entries in all
    code = ("import os, regexplore as rx\nreg = rx.Registry(os.environ['URL'])\n"
            "result = len(reg.platforms('wide/app:wide'))")
    res = run_bounded(code, env={"URL": base, "REGEXPLORE_MAX_INDEX_ENTRIES": "100"}, timeout=30, memory_mb=1500)
    assert res.raised("ResponseTooLarge"), res.output[-3000:]
    assert "wide/app" in res.message and top["digest"][:19] in res.message
    assert "REGEXPLORE_MAX_INDEX_ENTRIES" in res.message and "100" in res.message
    for call in ("reg.manifest('wide/app:wide', platform='linux/amd64')", "reg.save('wide/app:wide', OUT)"):
        res = run_bounded(f"import os, regexplore as rx\nreg = rx.Registry(os.environ['URL'])\n"
                          f"OUT = os.environ['OUT']\n{call}",
                          env={"URL": base, "OUT": str(tmp_path / "out"), "REGEXPLORE_MAX_INDEX_ENTRIES": "100"},
                          timeout=30, memory_mb=1500)
        assert res.raised("ResponseTooLarge"), (call, res.output[-3000:])
    assert not (tmp_path / "out" / "index.json").exists()
    res = run_bounded(code, env={"URL": base, "REGEXPLORE_MAX_INDEX_ENTRIES": "120"}, timeout=30, memory_mb=1500)
    assert res.ok and res.value == 90, res.output[-3000:]  # the nested index once (60) + 30 direct entries


def test_save_refuses_an_index_nested_deeper_than_the_depth_followed(empty_sandbox: LocalRegistry,
                                                                    tmp_path: Path) -> None:
    base = empty_sandbox.url
    amd = _image(base, "deep/app", [(_tar_layer({"a": b"1"}), "application/vnd.oci.image.layer.v1.tar")])
    child = _index(base, "deep/app", [{**amd, "platform": {"os": "linux", "architecture": "amd64"}}])
    for level in range(5):  # the image's index is 5 levels below the top: one more than is followed
        child = _index(base, "deep/app", [child], tag="deep" if level == 4 else None)
    reg = rx.Registry(base)
    assert reg.platforms("deep/app:deep")["media_type"].tolist() == [OCI_INDEX]  # deeper: an entry, not expanded
    with pytest.raises(ResponseTooLarge, match="nested more than 4 levels deep"):
        reg.save("deep/app:deep", str(tmp_path / "layout"))
    assert not (tmp_path / "layout" / "index.json").exists()


def _padded_index_server(count: int, pad: int) -> Any:
    """A registry whose ``big:top`` index lists ``count`` distinct nested indexes of ``pad`` bytes each
    (one image entry, padded with an annotation): few entries, many bytes."""
    image = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 2,
             "platform": {"os": "linux", "architecture": "amd64"}}
    docs = [json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image],
                        "annotations": {"pad": f"{i}" + "x" * pad}}).encode() for i in range(count)]
    by_digest = {sha256_digest(d): d for d in docs}
    top = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": d, "size": len(b)} for d, b in by_digest.items()]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            ref = self.path.rsplit("/", 1)[-1]
            body = top if ref == "top" else by_digest.get(ref)
            if self.path == "/v2/":
                body = b"{}"
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", OCI_INDEX if body not in (None, b"{}") else "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    return serve(Handler)


def test_nested_indexes_of_one_resolution_are_capped_in_bytes() -> None:
    httpd = _padded_index_server(count=12, pad=7 * MiB)  # 84 MiB of indexes behind a 1 KB top index
    try:
        res = run_bounded("import os, regexplore as rx\nreg = rx.Registry(os.environ['URL'])\n"
                          "result = len(reg.platforms('big:top'))", env={"URL": httpd.url}, timeout=30,
                          memory_mb=1500)
    finally:
        stop(httpd)
    assert res.raised("ResponseTooLarge"), res.output[-3000:]
    assert "big@sha256:" in res.message and "bytes" in res.message


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
_LISTING_HEAD = "import os, regexplore as rx\nfrom regexplore.protocol.hub import HubClient\nURL = os.environ['URL']\n"


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


# ====================================================================== 10. one bomb, listed many times
BOMB = 256 * MiB  # decompressed; about 8 KB compressed
BUDGET = 384 * MiB  # the per-image budget the attacks run under: one bomb fits, two do not


@pytest.fixture(scope="module")
def bombs() -> Iterator[dict[str, Any]]:
    """``bomb/app:x16``: one zstd bomb listed 16 times; ``rep/app:aba``: honest layers A, B, A (B deletes
    A's file, the second A brings it back)."""
    with LocalRegistry() as sb:
        bomb = zstd_bomb(BOMB)
        _image(sb.url, "bomb/app", [(bomb, "application/vnd.oci.image.layer.v1.tar+zstd")] * 16, tag="x16")
        a, _ = build_layer({"etc/a.txt": b"from A\n"}, dirs=["etc"])
        b, _ = build_layer({"etc/b.txt": b"from B\n"}, whiteouts=["etc/a.txt"])
        gz = "application/vnd.oci.image.layer.v1.tar+gzip"
        _image(sb.url, "rep/app", [(a, gz), (b, gz), (a, gz)], tag="aba")
        yield {"url": sb.url, "bomb": sha256_digest(bomb), "a": sha256_digest(a), "b": sha256_digest(b)}


BOMB_CALLS = {
    "files_merged": "reg.files('bomb/app:x16', merged=True)",
    "files": "reg.files('bomb/app:x16')",
    "diff": "reg.diff('bomb/app:x16', 'bomb/app:x16')",
    "extract": "reg.extract('bomb/app:x16', OUT)",
    "read_file": "reg.read_file('bomb/app:x16', 'not/there')",
}
_BOMB_CODE = """
import os, regexplore as rx
reg = rx.Registry(os.environ["URL"])
OUT = os.environ["OUT"]
try:
    {call}
    result = {{"error": None}}
except Exception as exc:
    result = {{"error": type(exc).__name__, "message": str(exc)}}
trace = reg.trace
result["gets"] = int(((trace["method"] == "GET") & trace["url"].str.contains(os.environ["BOMB"][7:])).sum())
"""


@pytest.mark.parametrize("call", sorted(BOMB_CALLS))
def test_a_bomb_listed_many_times_is_read_once_within_one_budget(bombs: dict, call: str, tmp_path: Path) -> None:
    env = {"URL": bombs["url"], "BOMB": bombs["bomb"], "OUT": str(tmp_path / "out"),
           "REGEXPLORE_MAX_IMAGE_BYTES": str(BUDGET)}
    res = run_bounded(_BOMB_CODE.format(call=BOMB_CALLS[call]), env=env, timeout=60, memory_mb=1500)
    assert res.ok, res.output[-3000:]
    assert res.value["error"] == "ResponseTooLarge", res.value
    assert "REGEXPLORE_MAX_IMAGE_BYTES" in res.value["message"] and "bomb/app" in res.value["message"]
    # read_file opens a layer per position it looks in (no listing to reuse): the budget stops the second
    assert res.value["gets"] <= (2 if call == "read_file" else 1), res.value
    assert res.elapsed < 30
    assert not (tmp_path / "out").exists()  # extract left nothing behind


def test_a_repeated_layer_is_read_once_and_applied_each_time(bombs: dict, tmp_path: Path) -> None:
    reg = rx.Registry(bombs["url"])

    def gets(digest: str) -> int:
        t = reg.trace
        n = int(((t["method"] == "GET") & t["url"].str.contains(digest[7:])).sum())
        reg.clear_trace()
        return n

    merged = reg.files("rep/app:aba", merged=True)
    assert sorted(merged["path"]) == ["etc", "etc/a.txt", "etc/b.txt"]  # the second A brings a.txt back
    assert merged.set_index("path").loc["etc/a.txt", "layer"] == bombs["a"]
    assert gets(bombs["a"]) == 1
    # files() lists from the layer scans the Registry caches by digest: a later call reads nothing again
    listing = reg.files("rep/app:aba")  # unmerged: every listed layer's rows, as the manifest lists them
    assert listing["layer"].tolist().count(bombs["a"]) == 4 and gets(bombs["a"]) == 0
    assert reg.diff("rep/app:aba", "rep/app:aba").empty and gets(bombs["a"]) == 1  # hashes contents: read
    reg.extract("rep/app:aba", str(tmp_path / "x"))
    assert (tmp_path / "x" / "etc" / "a.txt").read_bytes() == b"from A\n"
    assert (tmp_path / "x" / "etc" / "b.txt").read_bytes() == b"from B\n"
    assert gets(bombs["a"]) == 1
    assert reg.read_file("rep/app:aba", "etc/a.txt") == b"from A\n"


def test_the_image_budget_is_a_response_too_large_in_process(bombs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEXPLORE_MAX_IMAGE_BYTES", str(BUDGET))
    with pytest.raises(ResponseTooLarge, match="more than 402653184 bytes"):
        rx.Registry(bombs["url"]).files("bomb/app:x16", merged=True)
    monkeypatch.setenv("REGEXPLORE_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ValueError, match="REGEXPLORE_MAX_IMAGE_BYTES"):
        rx.Registry(bombs["url"]).files("rep/app:aba")

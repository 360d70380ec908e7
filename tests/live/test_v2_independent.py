"""v2 behaviours of registries other than distribution 2.8, against the real registry (sometimes
behind a proxy that imitates another server's documented answer): nested OCI indexes, configs whose
``created`` is outside pandas' range, ``"tags": null``, a page size the server refuses for tags,
listings that are not JSON and Link headers that point back to a page already read."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest
import requests
from digests import sha256_digest
from pushing import put_blob, put_manifest
from servers import FaultProxy

import regexplore as rx
from regexplore.errors import RegistryError
from regexplore.sandbox import LocalRegistry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"




def _image(base: str, repo: str, config: dict, tag: str | None = None) -> dict[str, Any]:
    """A one-layer OCI image pushed with plain requests; returns its descriptor."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = json.dumps(config).encode()
        info = tarfile.TarInfo("config-copy.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = put_blob(base, repo, buf.getvalue())
    cfg = put_blob(base, repo, json.dumps(config).encode())
    return put_manifest(base, repo, tag, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}]})


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with LocalRegistry() as sb:
        yield sb


def test_nested_index_is_searched_for_platforms(sandbox: LocalRegistry) -> None:
    # OCI image-index.md: index entries SHOULD support application/vnd.oci.image.index.v1+json (nested index)
    base = sandbox.url
    amd = _image(base, "nest/app", {"architecture": "amd64", "os": "linux", "created": "2022-01-01T00:00:00Z"})
    arm = _image(base, "nest/app", {"architecture": "arm64", "variant": "v8", "os": "linux"})
    inner = put_manifest(base, "nest/app", None, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**amd, "platform": {"os": "linux", "architecture": "amd64"}},
        {**arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]})
    put_manifest(base, "nest/app", "nested", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [inner]})

    reg = rx.Registry(base)
    assert reg.platforms("nest/app:nested")["platform"].tolist() == ["linux/amd64", "linux/arm64/v8"]
    assert reg.manifest("nest/app:nested", platform="linux/arm64/v8").digest == arm["digest"]
    assert reg.config("nest/app:nested")["architecture"] == "amd64"
    assert reg.history("nest/app:nested")["created_by"].tolist() == [""]
    row = reg.tags("nest/app", details=True).iloc[0]
    assert row["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert (row["os"], row["architecture"], str(row["created"])) == ("linux", "amd64", "2022-01-01 00:00:00+00:00")


def test_download_and_save_follow_a_nested_index(sandbox: LocalRegistry, tmp_path: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEXPLORE_CACHE", "off")
    test_nested_index_is_searched_for_platforms(sandbox)  # pushes nest/app:nested
    reg = rx.Registry(sandbox.url)
    arm = reg.manifest("nest/app:nested", platform="linux/arm64/v8")
    paths = reg.download("nest/app:nested", tmp_path / "dl", platform="linux/arm64/v8", progress=False)
    want = [arm.json["config"]["digest"], *(d["digest"] for d in arm.json["layers"])]
    assert [p.name for p in paths] == [d.replace(":", "-") for d in want]
    assert [sha256_digest(p.read_bytes()) for p in paths] == want
    out = reg.save("nest/app:nested", str(tmp_path / "layout"), platform="linux/arm64/v8")
    [entry] = json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"]
    assert entry["digest"] == arm.digest and out


def test_created_outside_pandas_range_is_na_not_a_crash(sandbox: LocalRegistry) -> None:
    when = "9999-12-31T23:59:59-01:00"  # valid RFC 3339, beyond datetime64[ns] (ends in 2262) and year 9999 in UTC
    _image(sandbox.url, "odd/created", {"architecture": "amd64", "os": "linux", "created": when,
                                        "history": [{"created": "1600-01-01T00:00:00Z", "created_by": "x"},
                                                    {"created": "0001-01-01T00:00:00+01:00", "created_by": "y",
                                                     "empty_layer": True}]}, "far")
    reg = rx.Registry(sandbox.url)
    details = reg.tags("odd/created", details=True)
    assert details["created"].isna().all() and str(details["created"].dtype) == "datetime64[ns, UTC]"
    history = reg.history("odd/created:far")
    assert history["created"].isna().all() and history["created_by"].tolist() == ["x", "y"]


def test_repository_whose_tags_were_deleted_lists_no_tags(sandbox: LocalRegistry) -> None:
    desc = _image(sandbox.url, "gone/app", {"architecture": "amd64", "os": "linux"}, "v1")
    requests.delete(f"{sandbox.url}/v2/gone/app/manifests/{desc['digest']}").raise_for_status()
    assert requests.get(f"{sandbox.url}/v2/gone/app/tags/list").json()["tags"] is None  # distribution's answer
    reg = rx.Registry(sandbox.url)
    assert reg.tags("gone/app").empty
    assert reg.tags("gone/app", details=True).empty


def test_tags_page_size_the_server_refuses_is_dropped(sandbox: LocalRegistry) -> None:
    for tag in ("a", "b", "c"):
        _image(sandbox.url, "paged/app", {"architecture": "amd64", "os": "linux"}, tag)
    refusal = json.dumps({"errors": [{"code": "PAGINATION_NUMBER_INVALID", "message": "invalid number of results "
                                      "requested", "detail": {"n": 5000}}]}).encode()  # distribution's n > maxentries
    with FaultProxy(sandbox.url) as proxy:
        proxy.fail(400, path=r"/tags/list", body=refusal, headers={"Content-Type": "application/json"})
        reg = rx.Registry(proxy.url)
        assert sorted(reg.v2.tags("paged/app", page_size=5000)) == ["a", "b", "c"]  # distribution 2.8: any order
        assert proxy.hits("/tags/list") == 2  # refused with n=5000, then asked without n


def test_listing_that_is_not_json_raises_registry_error(sandbox: LocalRegistry) -> None:
    page = b"<html><body>Please sign in</body></html>"  # a portal / misrouted proxy answering 200 HTML
    with FaultProxy(sandbox.url) as proxy:
        proxy.fail(200, path=r"/tags/list", body=page, headers={"Content-Type": "text/html"}, times=None)
        proxy.fail(200, path=r"/_catalog", body=page, headers={"Content-Type": "text/html"}, times=None)
        reg = rx.Registry(proxy.url)
        with pytest.raises(RegistryError, match="not a JSON listing"):
            reg.tags("paged/app")
        with pytest.raises(RegistryError, match="not a JSON listing"):
            reg.catalog()


def test_link_back_to_a_page_already_read_stops(sandbox: LocalRegistry) -> None:
    _image(sandbox.url, "loop/app", {"architecture": "amd64", "os": "linux"}, "v1")
    with FaultProxy(sandbox.url) as proxy:
        proxy.add_headers({"Link": '</v2/loop/app/tags/list>; rel="next"'}, path=r"/tags/list", times=3)
        reg = rx.Registry(proxy.url)
        with pytest.raises(RegistryError, match="points back to a page already read"):
            reg.tags("loop/app")
        assert proxy.hits("/tags/list") == 1  # (a client without the check reads it 3 times, then stops)

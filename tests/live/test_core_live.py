"""Issue 2 against the real registry: what regexplore reports must agree with skopeo and with the content
that was pushed (by skopeo for ``registry_sandbox``, by regexplore's own v2 upload code for ``big_sandbox``).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from digests import sha256_digest

import regexplore as rx
from regexplore.model import oci
from regexplore.sandbox.seed import demo_content, scale_content


@pytest.fixture(scope="module")
def reg(registry_sandbox):
    with rx.Registry(registry_sandbox.url) as r:
        yield r


def docker_ref(sandbox, repo, ref):
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"docker://{sandbox.host}/{repo}{sep}{ref}"


def test_ping(reg):
    info = reg.ping()
    assert info["status"] == 200 and info["api_version"] == "registry/2.0"


def test_first_ping_asks_v2_once(registry_sandbox):
    """In api="auto" the first ping probes /v2/ (is this a v2 registry?) and reports that same answer."""
    with rx.Registry(registry_sandbox.url) as fresh:
        assert fresh.ping()["api_version"] == "registry/2.0"
        assert fresh.ping()["status"] == 200  # known to be v2 now: one plain GET
        assert [(t.method, t.url.rsplit("/", 2)[-2:]) for t in fresh.trace.itertuples()] == [("GET", ["v2", ""])] * 2


def test_catalog_is_every_seeded_repository(reg):
    df = reg.catalog()
    assert list(df.columns) == ["repository"]
    assert df["repository"].tolist() == demo_content().repositories()


@pytest.mark.parametrize("repo", demo_content().repositories())
def test_tags_equal_skopeo_list_tags(reg, registry_sandbox, skopeo, repo):
    listed = skopeo("list-tags", f"docker://{registry_sandbox.host}/{repo}")
    df = reg.tags(repo)
    assert sorted(df["tag"]) == sorted(listed["Tags"])
    assert (df["repository"] == repo).all()


@pytest.mark.parametrize("repo", ["demo/busybox", "demo/multiarch", "demo/zstd", "library/webapp", "demo/minimal"])
def test_tag_details_equal_skopeo_inspect(reg, registry_sandbox, skopeo, repo):
    df = reg.tags(repo, details=True)
    assert len(df) == len(demo_content().tags(repo))
    for row in df.itertuples():
        raw = skopeo("inspect", "--raw", docker_ref(registry_sandbox, repo, row.tag), raw=True)
        assert row.digest == sha256_digest(raw)
        assert row.media_type == oci.detect_media_type(raw, None)
        info = skopeo("inspect", docker_ref(registry_sandbox, repo, row.tag))  # default platform: linux/amd64
        assert row.os == info["Os"] and row.architecture == info["Architecture"]
        if pd.isna(row.created):
            assert not info.get("Created") or info["Created"].startswith("0001-01-01")
        else:
            assert row.created == pd.Timestamp(info["Created"]).tz_convert("UTC")
        image = oci.Manifest.from_bytes(raw)
        if image.is_index:
            entry = oci.choose_platform(image.json)
            child = docker_ref(registry_sandbox, repo, entry["digest"])
            image = oci.Manifest.from_bytes(skopeo("inspect", "--raw", child, raw=True))
            assert len(row.platforms) >= 2 and "linux/amd64" in row.platforms
        sizes = [image.config_descriptor["size"]] + [layer["size"] for layer in image.layer_descriptors]
        assert row.size == sum(sizes)


def test_many_tags_details_are_deduplicated_and_concurrent(reg):
    reg.clear_trace()
    df = reg.tags("demo/many-tags", details=True)
    assert len(df) >= 100
    trace = reg.trace
    configs = trace[trace["url"].str.contains("/blobs/")]
    # configs are fetched once per digest, never once per tag
    assert len(configs) == trace[trace["url"].str.contains("/blobs/")]["url"].nunique()
    assert df["digest"].notna().all() and df["created"].notna().all()


def test_manifest_digest_checked_and_types(reg, registry_sandbox, skopeo):
    for repo, tag in [("demo/multiarch", "latest"), ("demo/multiarch", "docker-list"), ("demo/busybox", "1.0"),
                      ("demo/busybox", "1.1")]:
        m = reg.manifest(f"{repo}:{tag}")
        raw = skopeo("inspect", "--raw", docker_ref(registry_sandbox, repo, tag), raw=True)
        assert m.raw == raw and m.digest == oci.sha256_digest(raw)
        by_digest = reg.manifest(f"{repo}@{m.digest}")
        assert by_digest.raw == raw
    assert reg.manifest("demo/multiarch:docker-list").media_type == oci.DOCKER_LIST
    assert reg.manifest("demo/busybox:1.0").media_type == oci.DOCKER_V2


def test_manifest_by_wrong_digest_is_not_found(reg):
    with pytest.raises(rx.NotFound) as info:
        reg.manifest("demo/busybox@sha256:" + "0" * 64)
    assert info.value.code == "MANIFEST_UNKNOWN" and info.value.status == 404


def test_unknown_repository_and_tag(reg):
    with pytest.raises(rx.NotFound) as info:
        reg.tags("demo/nope")
    assert info.value.code == "NAME_UNKNOWN"
    with pytest.raises(rx.NotFound):
        reg.history("demo/busybox:9.9")


def test_platforms_of_an_index_match_skopeo(reg, registry_sandbox, skopeo):
    raw = skopeo("inspect", "--raw", docker_ref(registry_sandbox, "demo/multiarch", "latest"), raw=True)
    index = json.loads(raw)
    df = reg.platforms("demo/multiarch:latest")
    assert df["digest"].tolist() == [m["digest"] for m in index["manifests"]]
    real = df[~df["attestation"]]
    assert set(real["platform"]) == {"linux/amd64", "linux/arm64/v8"}
    assert df["attestation"].sum() == len(index["manifests"]) - 2


def test_history_matches_config_and_layers(reg, registry_sandbox, skopeo):
    for ref in ["library/webapp:latest", "demo/busybox:1.0", "demo/multiarch:latest"]:
        repo, tag = ref.split(":")
        cfg = skopeo("inspect", "--config", docker_ref(registry_sandbox, repo, tag))
        layers = [{"Size": d["size"]} for d in reg.manifest(ref, platform="linux/amd64").layer_descriptors]
        h = reg.history(ref)
        assert len(h) == len(cfg["history"])
        assert h["created_by"].tolist() == [s.get("created_by", "") for s in cfg["history"]]
        assert h["empty_layer"].tolist() == [bool(s.get("empty_layer")) for s in cfg["history"]]
        assert h.loc[~h["empty_layer"], "size"].tolist() == [layer["Size"] for layer in layers]
        assert h.loc[~h["empty_layer"], "diff_id"].tolist() == cfg["rootfs"]["diff_ids"]
        assert (h.loc[h["empty_layer"], "size"] == 0).all()
        assert h["step"].tolist() == list(range(len(h)))


def test_history_of_other_platform(reg, registry_sandbox, skopeo):
    h = reg.history("demo/multiarch:latest", platform="linux/arm64")
    cfg = skopeo("inspect", "--config", "--override-arch", "arm64", "--override-variant", "v8",
                 docker_ref(registry_sandbox, "demo/multiarch", "latest"))
    assert h["created_by"].tolist() == [s.get("created_by", "") for s in cfg["history"]]
    assert reg.config("demo/multiarch:latest", platform="linux/arm64")["architecture"] == "arm64"


def test_history_without_config_history(reg):
    h = reg.history("demo/minimal:latest")
    assert len(h) == len(reg.layers("demo/minimal:latest"))
    assert h["size"].notna().all()


def test_layers_frame(reg, registry_sandbox, skopeo):
    info = skopeo("inspect", docker_ref(registry_sandbox, "demo/zstd", "latest"))
    raw = json.loads(skopeo("inspect", "--raw", docker_ref(registry_sandbox, "demo/zstd", "latest"), raw=True))
    df = reg.layers("demo/zstd:latest")
    assert df["digest"].tolist() == info["Layers"] == [layer["digest"] for layer in raw["layers"]]
    assert df["media_type"].tolist() == [layer["mediaType"] for layer in raw["layers"]]
    assert df["size"].tolist() == [layer["size"] for layer in raw["layers"]]
    assert "zstd" in set(df["compression"])


def test_trace_records_every_exchange_redacted(reg):
    reg.clear_trace()
    reg.tags("demo/busybox")
    t = reg.trace
    assert len(t) >= 1 and t["method"].iloc[0] == "GET"
    assert t["url"].iloc[0].endswith("/v2/demo/busybox/tags/list")
    assert t["status"].iloc[0] == 200 and t["bytes"].iloc[0] > 0


# ------------------------------------------------------------------ pagination and test scale
def test_catalog_pages_follow_link(big_sandbox):
    reg = rx.Registry(big_sandbox.url)
    expected = scale_content().repositories()
    pages = list(reg.v2.catalog(page_size=40))
    assert len(pages) == -(-len(expected) // 40)
    assert [r for p in pages for r in p] == expected
    assert reg.catalog()["repository"].tolist() == expected
    assert len(reg.catalog(limit=17)) == 17


def test_tags_pagination_300(big_sandbox, skopeo):
    reg = rx.Registry(big_sandbox.url)
    listed = skopeo("list-tags", f"docker://{big_sandbox.host}/scale/tags")["Tags"]
    assert len(listed) == 300
    # the server's order, as skopeo reports it (distribution 2.8 does not sort an unpaged list)
    assert reg.tags("scale/tags")["tag"].tolist() == listed
    # distribution 2.8 ignores n=; PagingProxy pages the real answer as the OCI spec / distribution 3 do
    from pagingproxy import PagingProxy

    with PagingProxy(big_sandbox.url) as proxy:
        paged = rx.Registry(proxy.url)
        assert paged.v2.tags("scale/tags", page_size=64) == sorted(listed)
        assert proxy.tags_pages == 5  # 300 tags in pages of 64, following the relative Link
        assert len(paged.v2.tags("scale/tags", page_size=64, limit=70)) == 70
    df = reg.tags("scale/tags", details=True)
    assert df["digest"].nunique() == 1 and len(df) == 300


def test_catalog_honours_server_cap():
    from regexplore.sandbox import LocalRegistry

    with LocalRegistry(seed=scale_content(repositories=30, tags=2),
                       extra_config={"catalog": {"maxentries": 10}}) as sb:
        reg = rx.Registry(sb.url)
        df = reg.catalog()
        assert len(df) == 31
        # the server refused n=1000 (PAGINATION_NUMBER_INVALID) and regexplore followed its own pages
        assert any(s == 400 for s in reg.trace["status"].tolist())


# ------------------------------------------------------------------ regexplore's own upload code
def test_own_uploads_read_back_by_skopeo(empty_sandbox, skopeo, tmp_path):
    reg = rx.Registry(empty_sandbox.url)
    content = demo_content().only("demo/busybox")
    data = {d: b for d, b in content.blobs.items()}
    entry = content.manifest("demo/busybox", "1.0")
    digests = content.referenced_blobs(entry)
    # chunked PATCH for the first layer, monolithic for the rest
    for i, d in enumerate(digests):
        reg.v2.upload_blob("mine/a", data[d], d, chunk_size=97 if i == 1 else None)
    assert reg.v2.put_manifest("mine/a", "v1", entry.raw, entry.media_type) == entry.digest
    # cross-repo mount
    assert all(reg.v2.mount_blob("mine/b", d, "mine/a") for d in digests)
    reg.v2.put_manifest("mine/b", "v1", entry.raw, entry.media_type)
    for repo in ("mine/a", "mine/b"):
        raw = skopeo("inspect", "--raw", f"docker://{empty_sandbox.host}/{repo}:v1", raw=True)
        assert oci.sha256_digest(raw) == entry.digest
    skopeo("copy", f"docker://{empty_sandbox.host}/mine/b:v1", f"oci:{tmp_path}/out:v1", raw=True)
    assert (tmp_path / "out" / "blobs" / "sha256" / digests[1].split(":")[1]).read_bytes() == data[digests[1]]
    # tag and delete through the facade
    assert reg.tag("mine/a:v1", "v2") == entry.digest
    assert sorted(reg.tags("mine/a")["tag"]) == ["v1", "v2"]
    with pytest.warns(UserWarning, match="removes every tag"):
        reg.delete("mine/a:v2")
    assert reg.tags("mine/a")["tag"].tolist() == [] or "v2" not in reg.tags("mine/a")["tag"].tolist()


def test_response_cap_refuses_large_bodies(reg):
    entry = demo_content().manifest("demo/big", "latest")
    layer = json.loads(entry.raw)["layers"][0]["digest"]
    with pytest.raises(rx.ResponseTooLarge):
        reg.v2.get_blob("demo/big", layer, max_bytes=1024)


def test_schema1_from_the_real_registry_verifies_and_gives_the_same_history(reg):
    """Asked only for schema1, distribution 2.8 converts a schema2 image and signs it; its digest is
    computed over the JWS payload without signatures, which regexplore reproduces."""
    from regexplore.model.oci import SCHEMA1_SIGNED, history_rows

    m = reg.v2.get_manifest("demo/busybox", "1.0", accept=SCHEMA1_SIGNED)
    assert m.is_schema1 and m.digest == reg.v2.head_manifest("demo/busybox", "1.0", accept=SCHEMA1_SIGNED)["digest"]
    h1 = pd.DataFrame(history_rows(m, None))
    h2 = reg.history("demo/busybox:1.0")
    # the converter writes each step's created_by as its v1 Cmd, except the top entry, which carries the
    # image config itself (its container_config, absent in configs built without docker build)
    assert h1["created_by"].tolist()[:-1] == h2["created_by"].tolist()[:-1]
    assert h1["empty_layer"].tolist() == h2["empty_layer"].tolist()
    assert [t.isoformat() for t in h1["created"]] == [t.isoformat() for t in h2["created"]]

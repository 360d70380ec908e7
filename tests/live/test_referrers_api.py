"""``reg.referrers`` / ``reg.attach`` against a registry with the referrers API, built from the spec's text
(tests/support/servers/referrers_api.py): pages, the filter applied or not, the fallbacks a registry without the
API forces (404, a 200 that is not an index), a Bearer challenge, and hostile answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.referrers_api import OCI_INDEX, ReferrersRegistry, sha256
from servers.tokenserver import TokenServer

import regexplore as rx
from regexplore.errors import RegistryError, ResponseTooLarge
from regexplore.protocol.referrers import referrers_tag

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2}
REPO = "demo/app"


def image(server: ReferrersRegistry, tag: str = "v1") -> dict:
    """Store a small image; returns its descriptor."""
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY, "layers": [],
                      "annotations": {"tag": tag}}).encode()
    return {"mediaType": OCI_MANIFEST, "digest": server.put(REPO, raw, OCI_MANIFEST, tag), "size": len(raw)}


def artifact(server: ReferrersRegistry, subject: dict, atype: str | None, n: int, **put: str) -> str:
    """Store an artifact manifest with ``subject`` (no ``artifactType`` when ``atype`` is None)."""
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY, "layers": [EMPTY], "subject": subject,
           "annotations": {"n": str(n), "org.opencontainers.image.created": f"2024-01-{n % 28 + 1:02d}T00:00:00Z"}}
    if atype:
        doc["artifactType"] = atype
    return server.put(REPO, json.dumps(doc).encode(), OCI_MANIFEST, **put)


@pytest.fixture
def server() -> Iterator[ReferrersRegistry]:
    with ReferrersRegistry() as srv:
        yield srv


def test_every_page_is_read_and_rows_carry_the_descriptor(server: ReferrersRegistry) -> None:
    server.page_size = 4
    subject = image(server)
    made = {artifact(server, subject, f"application/example.{'sbom' if i % 2 else 'sig'}", i) for i in range(10)}
    df = rx.Registry(server.url).referrers(f"{REPO}:v1")
    assert set(df["digest"]) == made and len(df) == 10
    assert set(df["source"]) == {"api"} and set(df["depth"]) == {1} and set(df["subject"]) == {subject["digest"]}
    pages = [q for m, p, q in server.requests if p == f"/v2/{REPO}/referrers/{subject['digest']}"]
    assert len(pages) == 3  # 4 + 4 + 2
    row = df.set_index("digest").loc[sorted(made)[0]]
    raw, _ = server.manifests[f"{REPO}@{sorted(made)[0]}"]
    doc = json.loads(raw)
    assert row["artifact_type"] == doc["artifactType"] and row["size"] == len(raw)
    assert row["annotations"] == doc["annotations"]
    assert row["created"].isoformat() == doc["annotations"]["org.opencontainers.image.created"].replace("Z", "+00:00")


@pytest.mark.parametrize("filters", [True, False])
def test_artifact_type_filter_applied_by_the_server_or_by_the_client(server: ReferrersRegistry, filters: bool) -> None:
    server.filters = filters
    subject = image(server)
    sboms = {artifact(server, subject, "application/example.sbom", i) for i in range(3)}
    artifact(server, subject, "application/example.sig", 9)
    df = rx.Registry(server.url).referrers(f"{REPO}:v1", "application/example.sbom")
    assert set(df["digest"]) == sboms and set(df["artifact_type"]) == {"application/example.sbom"}
    asked = [q for m, p, q in server.requests if "/referrers/" in p]
    assert asked == ["artifactType=application%2Fexample.sbom"]


def test_missing_artifact_type_comes_from_the_config_media_type(server: ReferrersRegistry) -> None:
    """A referrers answer whose descriptor lacks artifactType (allowed for indexes): the client reads it."""
    subject = image(server)
    d = artifact(server, subject, None, 1)
    server.canned[subject["digest"]] = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": len(server.manifests[f"{REPO}@{d}"][0])}]}).encode()
    df = rx.Registry(server.url).referrers(f"{REPO}:v1")
    assert df["artifact_type"].tolist() == [EMPTY["mediaType"]]


@pytest.mark.parametrize("api", ["404", "html"])
def test_no_api_or_a_non_index_answer_falls_back_to_the_tag_schema(server: ReferrersRegistry, api: str) -> None:
    server.api = api
    subject = image(server)
    d = artifact(server, subject, "application/example.sbom", 1)
    size = len(server.manifests[f"{REPO}@{d}"][0])
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": size, "artifactType": "application/example.sbom"}]}
    server.put(REPO, json.dumps(index).encode(), OCI_INDEX, referrers_tag(subject["digest"]))
    df = rx.Registry(server.url).referrers(f"{REPO}:v1")
    assert df[["digest", "source", "artifact_type", "size"]].values.tolist() == [
        [d, "tag-schema", "application/example.sbom", size]]


def test_no_api_and_no_tag_means_no_referrers(server: ReferrersRegistry) -> None:
    server.api = "404"
    image(server)
    assert rx.Registry(server.url).referrers(f"{REPO}:v1").empty


def test_attach_on_a_registry_with_the_api_writes_no_fallback_tag(server: ReferrersRegistry, tmp_path: Path) -> None:
    subject = image(server)
    f = tmp_path / "sbom.spdx.json"
    f.write_text('{"spdxVersion": "SPDX-2.3"}')
    reg = rx.Registry(server.url)
    d = reg.attach(f"{REPO}:v1", [(f, "application/spdx+json")], artifact_type="application/spdx+json",
                   annotations={"k": "v"})
    assert f"{REPO}:{referrers_tag(subject['digest'])}" not in server.tags  # OCI-Subject: the registry indexes it
    df = reg.referrers(f"{REPO}:v1")
    assert df["digest"].tolist() == [d] and df["source"].tolist() == ["api"]
    doc = json.loads(server.manifests[f"{REPO}@{d}"][0])
    assert doc["subject"] == subject and doc["config"] == EMPTY and doc["artifactType"] == "application/spdx+json"
    assert doc["layers"][0]["annotations"]["org.opencontainers.image.title"] == "sbom.spdx.json"
    assert server.blobs[doc["layers"][0]["digest"]] == f.read_bytes()
    assert df["annotations"][0]["k"] == "v"


def test_attach_keeps_others_entries_with_if_match_on_a_conditional_registry(server: ReferrersRegistry) -> None:
    """No OCI-Subject (api 404) but conditional PUTs honoured: eight threads attaching at once all stay."""
    server.api = "404"
    image(server)
    reg = rx.Registry(server.url)
    digests = reg._map(lambda i: reg.attach(f"{REPO}:v1", [], artifact_type=f"application/example.{i}"), range(8))
    df = reg.referrers(f"{REPO}:v1")
    assert set(df["digest"]) == set(digests) and len(df) == 8 and set(df["source"]) == {"tag-schema"}
    assert any(m == "PUT" and "sha256-" in p for m, p, q in server.requests)


def test_a_bearer_challenge_is_answered_with_the_token_servers_token() -> None:
    with TokenServer(anonymous={"repository:*": "pull"}) as ts, ReferrersRegistry(token_server=ts) as server:
        subject = image(server)
        d = artifact(server, subject, "application/example.sbom", 1)
        df = rx.Registry(server.url).referrers(f"{REPO}:v1")
        assert df["digest"].tolist() == [d] and df["source"].tolist() == ["api"]
        assert any(f"repository:{REPO}:pull" in r.get("scopes", []) for r in ts.requests), ts.requests
        assert any(m == "GET" and "/referrers/" in p for m, p, q in server.requests)


def test_recursive_walks_referrers_of_referrers_with_depth(server: ReferrersRegistry) -> None:
    subject = image(server)
    first = artifact(server, subject, "application/example.sbom", 1)
    first_desc = {"mediaType": OCI_MANIFEST, "digest": first, "size": len(server.manifests[f"{REPO}@{first}"][0])}
    second = artifact(server, first_desc, "application/example.sig", 2)
    reg = rx.Registry(server.url)
    assert reg.referrers(f"{REPO}:v1")["digest"].tolist() == [first]
    df = reg.referrers(f"{REPO}:v1", recursive=True)
    assert df[["digest", "subject", "depth"]].values.tolist() == [[first, subject["digest"], 1],
                                                                  [second, first, 2]]


def test_a_hundred_thousand_referrers_is_a_clear_error_not_a_hang(server: ReferrersRegistry) -> None:
    subject = image(server)
    entries = [{"mediaType": OCI_MANIFEST, "digest": f"sha256:{i:064x}", "size": 100,
                "artifactType": "application/x"} for i in range(100_000)]
    server.canned[subject["digest"]] = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                   "manifests": entries}).encode()
    with pytest.raises(ResponseTooLarge, match="more than 10000 descriptors.*REGEXPLORE_MAX_REFERRERS"):
        rx.Registry(server.url).referrers(f"{REPO}:v1")


def test_a_link_loop_is_a_clear_error(server: ReferrersRegistry) -> None:
    server.api = "loop"
    subject = image(server)
    artifact(server, subject, "application/example.sbom", 1)
    with pytest.raises(RegistryError, match="pages without end|points back to a page already read"):
        rx.Registry(server.url).referrers(f"{REPO}:v1")


def test_a_referrers_answer_of_garbage_descriptors_is_our_error(server: ReferrersRegistry) -> None:
    subject = image(server)
    server.canned[subject["digest"]] = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                   "manifests": [{"digest": "../../etc"}]}).encode()
    with pytest.raises(rx.errors.UnsupportedMediaType, match="not a list of descriptors"):
        rx.Registry(server.url).referrers(f"{REPO}:v1")

"""``reg.referrers`` / ``reg.attach`` against the real registry (Debian's distribution 2.8), which has no referrers
API (it answers 404) but stores manifests with ``subject``: every fallback path, cross-checked with skopeo."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pushing import OCI_CONFIG, OCI_MANIFEST, Pusher, default_config, push_image

import regexplore as rx
from regexplore.protocol.referrers import MAX_TYPE_LOOKUPS, referrers_tag
from regexplore.sandbox import LocalRegistry

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def live() -> Iterator[tuple[LocalRegistry, rx.Registry]]:
    with LocalRegistry() as sandbox:
        yield sandbox, rx.Registry(sandbox.url)


def one_image(url: str, repo: str, tag: str, arch: str = "amd64") -> dict:
    layer = f"layer of {repo}:{tag} {arch}".encode()
    img = push_image(url, repo, tag, [(layer, "application/vnd.oci.image.layer.v1.tar")],
                     config=default_config([sha(layer)], arch))
    return img.descriptor


def test_the_registry_has_no_referrers_api_and_attach_keeps_the_tag_schema(live, skopeo, tmp_path: Path) -> None:
    sandbox, reg = live
    subject = one_image(sandbox.url, "demo/app", "v1")
    f = tmp_path / "sbom.json"
    f.write_bytes(b'{"bomFormat": "CycloneDX"}')
    sbom = reg.attach("demo/app:v1", [(f, "application/vnd.cyclonedx+json")], artifact_type="application/example.sbom")
    sig = reg.attach("demo/app:v1", [], artifact_type="application/example.signature", annotations={"who": "me"})
    df = reg.referrers("demo/app:v1")
    referrers_calls = reg.trace[reg.trace["url"].str.contains("/referrers/")]
    assert set(referrers_calls["status"]) == {404}  # the real registry has no API: the tag schema is read
    assert df["digest"].tolist() == [sbom, sig] and set(df["source"]) == {"tag-schema"}
    assert df["artifact_type"].tolist() == ["application/example.sbom", "application/example.signature"]
    # skopeo, an independent client, reads the same artifact bytes and the same fallback index
    tag = referrers_tag(subject["digest"])
    index = skopeo("inspect", "--raw", f"docker://{sandbox.host}/demo/app:{tag}")
    assert [e["digest"] for e in index["manifests"]] == [sbom, sig]
    assert index["mediaType"] == OCI_INDEX and index["manifests"][1]["annotations"]["who"] == "me"
    raw = skopeo("inspect", "--raw", f"docker://{sandbox.host}/demo/app@{sbom}", raw=True)
    doc = json.loads(raw)
    assert sha(raw) == sbom and doc["subject"] == subject and doc["artifactType"] == "application/example.sbom"
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(b"{}"), "size": 2}
    assert df["size"].tolist()[0] == len(raw)
    assert skopeo("inspect", "--raw", f"docker://{sandbox.host}/demo/app@{sig}")["layers"] == [doc["config"]]
    # the regctl recording's shape: same keys in the tag-schema index and the artifact manifest
    regctl_index = json.loads((REAL / "referrers_tag_schema_index_regctl_testrepo_v2.json").read_bytes())
    regctl_art = json.loads((REAL / "artifact_manifest_subject_regctl_testrepo_a1_sbom.json").read_bytes())
    assert set(index) >= set(regctl_index) - {"annotations"} and set(doc) >= set(regctl_art)


def attach_after(start: threading.Barrier, url: str, artifact_type: str, got: list[str]) -> None:
    """One client: resolve the subject, wait for the other client, attach."""
    reg = rx.Registry(url)
    reg.manifest("demo/race:v1")
    start.wait()
    got.append(reg.attach("demo/race:v1", [], artifact_type=artifact_type))


def test_two_concurrent_attaches_keep_both_entries(live) -> None:
    sandbox, _ = live
    subject = one_image(sandbox.url, "demo/race", "v1")
    for rnd in range(3):  # each round: two clients attaching at the same instant
        start, got = threading.Barrier(2), []
        threads = [threading.Thread(target=attach_after, args=(start, sandbox.url, f"application/example.r{rnd}.{i}",
                                                                got)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        listed = set(rx.Registry(sandbox.url).referrers("demo/race:v1")["digest"])
        assert set(got) <= listed and len(got) == 2
    with Pusher(sandbox.url) as p:
        index = p.s.get(f"{sandbox.url}/v2/demo/race/manifests/{referrers_tag(subject['digest'])}",
                        headers={"Accept": OCI_INDEX}).json()
    assert len(index["manifests"]) == 6


def cosign_sig(payload_for: str, host: str) -> tuple[bytes, bytes, dict]:
    """(payload, config, manifest) of a ``.sig`` in the layout cosign v1 pushed to Docker Hub (the recorded
    cosign_sig_* fixtures): a simple-signing payload layer with the signature annotation, a config naming it."""
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"{host}/demo/signed"},
                                       "image": {"docker-manifest-digest": payload_for},
                                       "type": "cosign container image signature"}, "optional": None},
                         separators=(",", ":")).encode()
    config = json.dumps({"architecture": "", "created": "2023-02-17T09:25:33.91047962-08:00",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [sha(payload)]}, "config": {}},
                        separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha(config)},
                "layers": [{"mediaType": SIMPLESIGNING, "size": len(payload), "digest": sha(payload),
                            "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(b"sig").decode()}}]}
    return payload, config, manifest


def test_cosign_sig_tag_is_listed_as_cosign_tag(live) -> None:
    sandbox, reg = live
    subject = one_image(sandbox.url, "demo/signed", "v1")
    payload, config, manifest = cosign_sig(subject["digest"], sandbox.host)
    recorded = json.loads((REAL / "cosign_sig_manifest_dockerhub_chihjenhuang_cosign1_2023.json").read_bytes())
    recorded_cfg = json.loads((REAL / "cosign_sig_config_dockerhub_chihjenhuang_cosign1_2023.json").read_bytes())
    assert list(manifest) == list(recorded) and manifest["layers"][0].keys() == recorded["layers"][0].keys()
    assert list(json.loads(config)) == list(recorded_cfg)
    with Pusher(sandbox.url) as p:
        p.blob("demo/signed", payload)
        p.blob("demo/signed", config)
        pushed = p.manifest("demo/signed", referrers_tag(subject["digest"]) + ".sig", manifest)
    df = reg.referrers("demo/signed:v1")
    assert df[["digest", "source", "artifact_type", "media_type", "depth"]].values.tolist() == [
        [pushed["digest"], "cosign-tag", OCI_CONFIG, OCI_MANIFEST, 1]]  # no artifactType: the config's type
    assert df["size"].tolist() == [pushed["size"]] and df["created"].isna().all()
    assert reg.referrers("demo/signed:v1", OCI_CONFIG)["digest"].tolist() == [pushed["digest"]]
    assert reg.referrers("demo/signed:v1", "application/other").empty


def test_an_index_lists_its_own_referrers_and_platform_picks_a_child(live) -> None:
    sandbox, reg = live
    amd = one_image(sandbox.url, "demo/multi", "amd64", "amd64")
    arm = one_image(sandbox.url, "demo/multi", "arm64", "arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**amd, "platform": {"os": "linux", "architecture": "amd64"}},
        {**arm, "platform": {"os": "linux", "architecture": "arm64"}}]}
    with Pusher(sandbox.url) as p:
        p.manifest("demo/multi", "v1", index)
    on_index = reg.attach("demo/multi:v1", [], artifact_type="application/example.index-sbom")
    on_amd = reg.attach(f"demo/multi@{amd['digest']}", [], artifact_type="application/example.arms")
    top = reg.referrers("demo/multi:v1")
    assert top["digest"].tolist() == [on_index] and top["subject"].tolist() == [top.attrs["digest"]]
    child = reg.referrers("demo/multi:v1", platform="linux/amd64")
    assert child["digest"].tolist() == [on_amd] and child.attrs["digest"] == amd["digest"]
    assert reg.referrers("demo/multi:v1", platform="linux/arm64").empty


def test_recursive_walks_the_tag_schema_two_levels_concurrently(live) -> None:
    sandbox, reg = live
    one_image(sandbox.url, "demo/tree", "v1")
    sboms = [reg.attach("demo/tree:v1", [], artifact_type="application/example.sbom", annotations={"n": str(i)})
             for i in range(3)]  # (identical artifacts would be one manifest: the same bytes, the same digest)
    sigs = {reg.attach(f"demo/tree@{s}", [], artifact_type="application/example.sig"): s for s in sboms}
    payload, config, manifest = cosign_sig(sboms[0], sandbox.host)  # a cosign signature of the first SBOM
    with Pusher(sandbox.url) as p:
        p.blob("demo/tree", payload)
        p.blob("demo/tree", config)
        cosigned = p.manifest("demo/tree", referrers_tag(sboms[0]) + ".sig", manifest)["digest"]
    fresh = rx.Registry(sandbox.url)
    df = fresh.referrers("demo/tree:v1", recursive=True)
    assert df[df["depth"] == 1]["digest"].tolist() == sboms
    deeper = df[df["depth"] == 2]
    assert dict(zip(deeper["digest"], deeper["subject"], strict=True)) == {**sigs, cosigned: sboms[0]}
    assert deeper.set_index("digest").loc[cosigned, "source"] == "cosign-tag"
    # the first 404 shows there is no API and the tags are listed once: only tags that exist are read after that
    misses = fresh.trace[fresh.trace["status"] == 404]["url"].tolist()
    assert len(misses) == 4 and sum("/referrers/" in u for u in misses) == 1, misses
    assert reg.referrers("demo/tree:v1", "application/example.sbom", recursive=True)["digest"].tolist() == sboms


def test_a_tag_schema_descriptor_without_artifact_type_reads_the_manifest(live) -> None:
    """A referrers tag written by another client without ``artifactType``: the spec's rule from the manifest."""
    sandbox, reg = live
    subject = one_image(sandbox.url, "demo/plain", "v1")
    with Pusher(sandbox.url) as p:
        cfg = p.blob("demo/plain", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
                     OCI_CONFIG)
        art = p.manifest("demo/plain", None, {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                                              "layers": [], "subject": subject})
        p.manifest("demo/plain", referrers_tag(subject["digest"]),
                   {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [art]})
    df = reg.referrers("demo/plain:v1")
    assert df[["digest", "artifact_type", "source"]].values.tolist() == [[art["digest"], OCI_CONFIG, "tag-schema"]]


def test_attach_takes_one_path_or_one_pair_as_well_as_a_list(live, tmp_path: Path) -> None:
    sandbox, reg = live
    one_image(sandbox.url, "demo/single", "v1")
    f = tmp_path / "sbom.json"
    f.write_bytes(b'{"bomFormat": "CycloneDX"}')
    plain = reg.attach("demo/single:v1", str(f), artifact_type="application/example.a")
    pair = reg.attach("demo/single:v1", (f, "application/vnd.cyclonedx+json"), artifact_type="application/example.b")
    for digest, media_type in ((plain, "application/octet-stream"), (pair, "application/vnd.cyclonedx+json")):
        raw = reg.v2.get_manifest("demo/single", digest).json
        assert [(x["mediaType"], x["digest"], x["annotations"]["org.opencontainers.image.title"])
                for x in raw["layers"]] == [(media_type, sha(f.read_bytes()), "sbom.json")]


def test_a_listed_digest_that_is_no_manifest_leaves_its_type_empty_and_the_others_listed(live) -> None:
    """A hostile or broken tag-schema index whose entries name blobs, not manifests (the registry answers their
    manifest GETs with 500): every entry is listed, the typed one with its type, the rest <NA>, and the manifest
    look-ups for a type stop at :data:`MAX_TYPE_LOOKUPS`."""
    sandbox, reg = live
    subject = one_image(sandbox.url, "demo/odd", "v1")
    with Pusher(sandbox.url) as p:
        typed = {**p.blob("demo/odd", b"typed", "application/json"), "artifactType": "application/x.ok"}
        bare = [p.blob("demo/odd", b'{"not": "a manifest %d"}' % i, "application/json") for i in range(150)]
        p.manifest("demo/odd", referrers_tag(subject["digest"]),
                   {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [bare[0], typed, *bare[1:]]})
    df = reg.referrers("demo/odd:v1")
    assert df["digest"].tolist() == [bare[0]["digest"], typed["digest"], *(b["digest"] for b in bare[1:])]
    assert df["artifact_type"].isna().tolist() == [True, False, *([True] * 149)]
    looked_up = reg.trace[reg.trace["url"].str.contains("/manifests/sha256:")]
    assert set(looked_up["status"]) == {500}  # (distribution's answer for a blob read as a manifest)
    assert looked_up["url"].nunique() == MAX_TYPE_LOOKUPS, looked_up["url"].nunique()


def test_attach_keeps_an_entry_it_cannot_read_verbatim(live, skopeo) -> None:
    """Go's JSON reads keys regardless of case, so the registry stores an entry spelled ``"Digest"``; attach keeps
    it byte for byte (and does not refuse the whole index) and adds its own entry."""
    sandbox, reg = live
    subject = one_image(sandbox.url, "demo/keep", "v1")
    other = one_image(sandbox.url, "demo/keep", "other")
    odd = {"mediaType": OCI_MANIFEST, "Digest": other["digest"], "size": other["size"], "annotations": {"k": "v"}}
    tag = referrers_tag(subject["digest"])
    with Pusher(sandbox.url) as p:
        p.manifest("demo/keep", tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [odd]})
    digest = reg.attach("demo/keep:v1", [], artifact_type="application/example.sbom")
    index = skopeo("inspect", "--raw", f"docker://{sandbox.host}/demo/keep:{tag}")
    assert index["manifests"][0] == odd and index["manifests"][1]["digest"] == digest
    assert len(index["manifests"]) == 2


def test_attach_refuses_to_overwrite_a_referrers_tag_that_is_not_an_index(live, skopeo) -> None:
    sandbox, reg = live
    subject = one_image(sandbox.url, "demo/squat", "v1")
    tag = referrers_tag(subject["digest"])
    squatter = push_image(sandbox.url, "demo/squat", tag, [(b"squat", "application/vnd.oci.image.layer.v1.tar")],
                          config=default_config([sha(b"squat")], "amd64")).digest
    with pytest.raises(rx.UnsupportedMediaType, match="not an image index") as exc:
        reg.attach("demo/squat:v1", [], artifact_type="application/example.sbom")
    assert "not overwritten" in str(exc.value)
    raw = skopeo("inspect", "--raw", f"docker://{sandbox.host}/demo/squat:{tag}", raw=True)
    assert sha(raw) == squatter

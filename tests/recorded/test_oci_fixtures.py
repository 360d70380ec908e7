"""Parsers on the real recorded responses in ../shared/fixtures/real (pure tier: no network)."""

import json

import pytest

from regexplore.errors import DigestMismatch, NotFound, UnsupportedMediaType
from regexplore.model import frames, oci


def load(shared_dir, name, mode="rb"):
    return (shared_dir / "fixtures" / "real" / name).read_bytes()


@pytest.fixture
def httpd(shared_dir):
    man = oci.Manifest.from_bytes(load(shared_dir, "manifest_schema2_httpd-copy.json"))
    cfg_raw = load(shared_dir, "image_config_httpd_2.4.23_digest_9ca4bda0.json")
    return man, cfg_raw


def test_httpd_config_is_the_digest_the_manifest_names(httpd):
    man, cfg_raw = httpd
    assert man.media_type == oci.DOCKER_V2
    assert oci.check_digest(cfg_raw, man.config_descriptor["digest"]) == man.config_descriptor["digest"]
    assert len(cfg_raw) == man.config_descriptor["size"] == 5940


def test_httpd_schema2_history(httpd):
    man, cfg_raw = httpd
    df = frames.make_frame("history", oci.history_rows(man, json.loads(cfg_raw)))
    assert len(df) == 15
    assert list(df["step"]) == list(range(15))
    sizes = df.loc[~df["empty_layer"], "size"].tolist()
    assert sizes == [51354364, 150, 11739507, 8841833, 291]
    assert (df.loc[df["empty_layer"], "size"] == 0).all()
    assert df["created"].is_monotonic_increasing
    assert df.loc[~df["empty_layer"], "layer_digest"].tolist() == [d["digest"] for d in man.layer_descriptors]
    assert df["layer_digest"].isna().sum() == 10


def test_schema1_twin_gives_the_same_steps(shared_dir, httpd):
    man, cfg_raw = httpd
    s1 = oci.Manifest.from_bytes(load(shared_dir, "manifest_schema1_signed_httpd-copy_from_registry.json"),
                                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
    assert s1.is_schema1
    h1 = frames.make_frame("history", oci.history_rows(s1, None))
    h2 = frames.make_frame("history", oci.history_rows(man, json.loads(cfg_raw)))
    assert len(h1) == len(h2) == 15
    assert (h1["created"] == h2["created"]).all()
    assert h1["created_by"].tolist() == h2["created_by"].tolist()
    assert h1["empty_layer"].tolist() == h2["empty_layer"].tolist()
    # schema1 names no compressed sizes (v1Compatibility's Size, where present, is uncompressed)
    assert h1.loc[h1["empty_layer"], "size"].eq(0).all() and h1.loc[~h1["empty_layer"], "size"].isna().all()
    # the top entry's Cmd was split into four strings; joined with spaces it matches the config
    assert h1["created_by"].iloc[-1] == '/bin/sh -c #(nop)  CMD ["httpd-foreground"]'


def test_schema1_detected_without_content_type(shared_dir):
    m = oci.Manifest.from_bytes(load(shared_dir, "manifest_schema1_signed_httpd-copy_from_registry.json"))
    assert m.media_type == oci.SCHEMA1_SIGNED


def test_misaligned_history_gives_unknown_sizes_not_wrong_ones(httpd):
    man, cfg_raw = httpd
    cfg = json.loads(cfg_raw)
    cfg["history"] = [h for h in cfg["history"] if h.get("empty_layer")] + cfg["history"][:1]
    rows = oci.history_rows(man, cfg)
    non_empty = [r for r in rows if not r["empty_layer"]]
    assert non_empty and all(r["size"] is None and r["layer_digest"] is None for r in non_empty)


def test_ubuntu_list_and_child_digest(shared_dir):
    lst = oci.Manifest.from_bytes(load(shared_dir, "manifest_list_docker_v2_library_ubuntu_17.10_dependabot.json"))
    assert lst.is_index and lst.media_type == oci.DOCKER_LIST
    child_raw = load(shared_dir, "manifest_schema2_library_ubuntu_17.10_amd64_dependabot.json")
    entry = oci.choose_platform(lst.json)
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    child = oci.Manifest.from_bytes(child_raw, expected=entry["digest"])
    assert child.digest == entry["digest"] and child.size == entry["size"] == 1357
    with pytest.raises(DigestMismatch):
        oci.Manifest.from_bytes(child_raw + b" ", expected=entry["digest"])


def test_platform_tables(shared_dir):
    lst = oci.Manifest.from_bytes(load(shared_dir, "manifest_list_docker_v2_library_ubuntu_17.10_dependabot.json"))
    df = frames.make_frame("platforms", oci.platform_rows(lst.json))
    assert df["platform"].tolist() == ["linux/amd64", "linux/arm/v7", "linux/arm64/v8", "linux/386",
                                       "linux/ppc64le", "linux/s390x"]
    assert not df["attestation"].any()
    idx = oci.Manifest.from_bytes(load(shared_dir, "manifest_oci_index_library_ubuntu_latest_2024.json"))
    assert idx.media_type == oci.OCI_INDEX
    df2 = frames.make_frame("platforms", oci.platform_rows(idx.json))
    assert len(df2) == 6 and "linux/riscv64" in df2["platform"].tolist()
    assert oci.choose_platform(idx.json, "linux/arm64")["platform"]["variant"] == "v8"
    assert oci.choose_platform(idx.json, "arm/v7")["platform"]["architecture"] == "arm"
    with pytest.raises(NotFound, match="windows/amd64"):
        oci.choose_platform(idx.json, "windows/amd64")


def test_attestation_entries_are_flagged_and_never_chosen():
    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        {"mediaType": oci.OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1,
         "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        {"mediaType": oci.OCI_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 1,
         "platform": {"architecture": "arm64", "os": "linux"}},
    ]}
    rows = oci.platform_rows(index)
    assert [r["attestation"] for r in rows] == [True, False]
    assert oci.choose_platform(index)["digest"] == "sha256:" + "2" * 64


def test_ubuntu_arm64_config_history(shared_dir):
    cfg = json.loads(load(shared_dir, "image_config_ubuntu_24.04_arm64v8_2024_reformatted.json"))
    man = oci.Manifest.from_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + "b" * 64, "size": 28}]}).encode())
    df = frames.make_frame("history", oci.history_rows(man, cfg))
    assert len(df) == 6 and int(df["empty_layer"].sum()) == 5
    assert df.loc[~df["empty_layer"], "diff_id"].tolist() == cfg["rootfs"]["diff_ids"]
    assert oci.image_summary(man, cfg)["architecture"] == "arm64"


def test_media_type_detection_order():
    body = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []}).encode()
    assert oci.detect_media_type(body, "application/vnd.oci.image.index.v1+json; charset=utf-8") == oci.OCI_INDEX
    assert oci.detect_media_type(body, "application/json") == oci.OCI_INDEX
    with pytest.raises(UnsupportedMediaType):
        oci.detect_media_type(b"<html>", "text/html")
    with pytest.raises(UnsupportedMediaType, match="differs"):
        oci.Manifest.from_bytes(body, oci.DOCKER_V2)


def test_layer_rows_and_compression(httpd):
    man, cfg_raw = httpd
    df = frames.make_frame("layers", oci.layer_rows(man, json.loads(cfg_raw)))
    assert df["index"].tolist() == [0, 1, 2, 3, 4]
    assert set(df["compression"]) == {"gzip"}
    assert df["diff_id"].tolist() == json.loads(cfg_raw)["rootfs"]["diff_ids"]
    assert oci.compression_of("application/vnd.oci.image.layer.v1.tar+zstd") == "zstd"
    assert oci.compression_of("application/vnd.oci.image.layer.v1.tar") == "none"


@pytest.mark.parametrize("value, iso", [
    ("2016-09-23T23:20:39.662806612Z", "2016-09-23T23:20:39.662806+00:00"),
    ("2013-06-13T14:03:50.821769-07:00", "2013-06-13T21:03:50.821769+00:00"),
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+00:00"),
    ("0001-01-01T00:00:00Z", None),
    ("not a time", None),
    (None, None),
])
def test_parse_time(value, iso):
    got = oci.parse_time(value)
    assert (got.isoformat() if got else None) == iso


def test_schema1_size_field_is_not_taken_for_a_compressed_size(shared_dir):
    doc = json.loads(load(shared_dir, "manifest_schema1_signed_httpd-copy_from_registry.json"))
    doc.pop("signatures", None)
    for h in doc["history"]:
        v1 = json.loads(h["v1Compatibility"])
        v1["Size"] = 123456  # what a Docker 1.x daemon wrote: the layer's uncompressed size
        h["v1Compatibility"] = json.dumps(v1)
    m = oci.Manifest.from_bytes(json.dumps(doc).encode(), oci.SCHEMA1)
    rows = oci.history_rows(m, None)
    assert [r["size"] for r in rows if not r["empty_layer"]] == [None] * sum(not r["empty_layer"] for r in rows)

"""Every recorded referrers answer in ../shared/fixtures/real becomes a ``referrers`` frame: regctl's referrers tag
schema indexes and artifact manifests (byte-exact, served by digest and tag from the spec-built registry of
tests/support/servers/referrers_api.py), and MCR's referrers API answer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from servers.referrers_api import OCI_INDEX, ReferrersRegistry, sha256

import regexplore as rx
from regexplore.protocol.referrers import Referrers, referrers_tag

REAL = Path(os.environ.get("REGEXPLORE_SHARED") or Path(__file__).resolve().parents[3] / "shared") / "fixtures" / "real"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "regclient/testrepo"
#: file -> (media type, the digest its name in regctl's blobs/ says, the tag regctl gave it or None)
REGCTL = {
    "image_index_regctl_testrepo_v2_subject.json": (OCI_INDEX, "dfae8f42", "v2"),
    "image_manifest_regctl_testrepo_v2_amd64_subject.json": (OCI_MANIFEST, "ee378b79", None),
    "artifact_manifest_subject_regctl_testrepo_a1_sbom.json": (OCI_MANIFEST, "0484e93c", None),
    "artifact_manifest_subject_regctl_testrepo_a2_signature.json": (OCI_MANIFEST, "741132f9", None),
    "artifact_manifest_subject_regctl_testrepo_amd64_arms.json": (OCI_MANIFEST, "30bc58e8", None),
    "artifact_manifest_no_artifactType_regctl_testrepo_a-docker-oci.json": (OCI_MANIFEST, "d9104343", None),
}
TAG_SCHEMA = {"referrers_tag_schema_index_regctl_testrepo_v2.json": "955b8a89",
              "referrers_tag_schema_index_regctl_testrepo_v2_amd64.json": "41d51f3b",
              "referrers_tag_schema_index_regctl_testrepo_v1_arm64.json": "4351e6eb"}


def serial(fn, items):  # noqa: ANN001, ANN201 (the map a Referrers client takes)
    return [fn(i) for i in items]


@pytest.fixture(params=["404", "spec"])
def regctl(request: pytest.FixtureRequest) -> Iterator[ReferrersRegistry]:
    """regctl's testrepo: with no referrers API (its tag-schema indexes are read), or with the spec's API
    (which lists the same artifacts from their ``subject``)."""
    with ReferrersRegistry(api=request.param) as server:
        for name, (media_type, short, tag) in REGCTL.items():
            assert server.put(REPO, (REAL / name).read_bytes(), media_type, tag)[7:15] == short
        for name, short in TAG_SCHEMA.items():
            raw = (REAL / name).read_bytes()
            assert sha256(raw)[7:15] == short
            subject = json.loads(server.manifests[f"{REPO}@{json.loads(raw)['manifests'][0]['digest']}"][0])["subject"]
            server.put(REPO, raw, OCI_INDEX, referrers_tag(subject["digest"]))
        yield server


def rows(df: pd.DataFrame) -> list[list]:
    return df[["digest", "artifact_type", "size", "depth"]].values.tolist()


def test_regctl_index_and_its_amd64_child(regctl: ReferrersRegistry) -> None:
    reg = rx.Registry(regctl.url)
    index = json.loads((REAL / "referrers_tag_schema_index_regctl_testrepo_v2.json").read_bytes())
    expected = [[d["digest"], d["artifactType"], d["size"], 1] for d in index["manifests"]]
    df = reg.referrers(f"{REPO}:v2")
    assert sorted(rows(df)) == sorted(expected)
    assert set(df["source"]) == {"tag-schema" if regctl.api == "404" else "api"}
    assert df.attrs["digest"].startswith("sha256:dfae8f42") and set(df["subject"]) == {df.attrs["digest"]}
    child = reg.referrers(f"{REPO}:v2", platform="linux/amd64")
    arms = json.loads((REAL / "referrers_tag_schema_index_regctl_testrepo_v2_amd64.json").read_bytes())["manifests"]
    assert rows(child) == [[arms[0]["digest"], "application/example.arms", arms[0]["size"], 1]]
    assert child.attrs["digest"].startswith("sha256:ee378b79")
    assert reg.referrers(f"{REPO}:v2", "application/example.signature")["artifact_type"].tolist() == [
        "application/example.signature"]


def test_regctl_artifact_without_artifact_type(regctl: ReferrersRegistry) -> None:
    """Its subject (v1's arm64 manifest) was not recorded, so it is listed by digest through the protocol client."""
    art = json.loads((REAL / "artifact_manifest_no_artifactType_regctl_testrepo_a-docker-oci.json").read_bytes())
    reg = rx.Registry(regctl.url)
    found = Referrers(reg.v2, reg.v2.get_manifest, serial).list(REPO, art["subject"]["digest"])
    # regctl wrote artifactType = the config's media type into its index: the spec's rule, which the API applies too
    assert [(r["digest"][:15], r["artifact_type"], r["created"]) for r in found] == [
        ("sha256:d9104343", "application/vnd.oci.image.config.v1+json", None)]


def test_mcr_referrers_api_answer() -> None:
    """MCR's answer (as dredge printed it) for ``dotnet/core/sdk:latest``, served as the API's answer."""
    raw = (REAL / "referrers_api_response_mcr_dotnet_core_sdk_latest_dredge_2024_reformatted.json").read_bytes()
    with ReferrersRegistry() as server:
        subject = server.put("dotnet/core/sdk", json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                                            "config": {}, "layers": []}).encode(), OCI_MANIFEST,
                             "latest")
        server.canned[subject] = raw
        df = rx.Registry(server.url).referrers("dotnet/core/sdk:latest")
    desc = json.loads(raw)["manifests"][0]
    assert rows(df) == [[desc["digest"], "application/vnd.microsoft.artifact.lifecycle", 788, 1]]
    assert df["annotations"][0] == desc["annotations"] and df["source"].tolist() == ["api"]
    assert df["created"][0] == pd.Timestamp("2024-08-13T14:20:19Z")
    assert str(df["created"].dtype) == "datetime64[ns, UTC]" and str(df["size"].dtype) == "Int64"

"""The pure parts of regexplore.protocol.referrers: the referrers tag schema (the spec's own examples) and the
spec's artifactType rule on the recorded manifests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regexplore.model.oci import Manifest
from regexplore.protocol.referrers import artifact_type_of, referrers_tag

REAL = Path(os.environ.get("REGEXPLORE_SHARED") or Path(__file__).resolve().parents[3] / "shared") / "fixtures" / "real"


@pytest.mark.parametrize(("digest", "tag"), [  # distribution-spec v1.1 spec.md, "Referrers Tag Schema", its table
    ("sha256:" + "a" * 64, "sha256-" + "a" * 64),
    ("sha512:" + "a" * 128, "sha512-" + "a" * 64),
    ("test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:"
     "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation",
     "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot"),
])
def test_referrers_tag_follows_the_specs_examples(digest: str, tag: str) -> None:
    assert referrers_tag(digest) == tag


@pytest.mark.parametrize(("name", "expected"), [
    ("artifact_manifest_subject_regctl_testrepo_a1_sbom.json", "application/example.sbom"),
    ("artifact_manifest_no_artifactType_regctl_testrepo_a-docker-oci.json", "application/vnd.oci.image.config.v1+json"),
    ("cosign_sig_manifest_dockerhub_chihjenhuang_cosign1_2023.json", "application/vnd.oci.image.config.v1+json"),
    ("image_index_regctl_testrepo_v2_subject.json", None),
])
def test_artifact_type_is_the_manifests_else_its_configs_media_type(name: str, expected: str | None) -> None:
    assert artifact_type_of(Manifest.from_bytes((REAL / name).read_bytes())) == expected

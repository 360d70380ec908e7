"""The supply-chain facade on real recorded data: Docker Hub's alpine 3.23.2 attestations and containers/image's
cosign signatures, served byte for byte by a fake transport (regexplore.http.testing.FakeAdapter) from
../shared/fixtures/real; what the fixtures lack (a tag, the cosign tags) answers 404 as a registry does."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import cosignkit as ck
import pytest
import requests

import regexplore as rx
from regexplore.http.testing import FakeAdapter, Reply
from regexplore.model.oci import Manifest

UNKNOWN = Reply(404, {"Content-Type": "application/json"}, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "x"}]})


def _serve(objects: dict[str, bytes], tags: dict[str, bytes]):
    """A registry answer function: manifests by tag or digest, blobs by digest, else 404."""
    def answer(req: requests.PreparedRequest) -> Reply:
        path = req.path_url.split("?", 1)[0]
        kind, _, ref = path.rpartition("/")
        body = tags.get(ref) if ":" not in ref else objects.get(ref)
        if body is None:
            return UNKNOWN
        if kind.endswith("/manifests"):
            return Reply(200, {"Content-Type": json.loads(body)["mediaType"]}, body)
        return Reply(200, {"Content-Type": "application/octet-stream"}, body)
    return answer


def _registry(objects: dict[str, bytes], tags: dict[str, bytes]) -> rx.Registry:
    reg = rx.Registry("registry.example.test", api="v2")
    FakeAdapter(_serve(objects, tags)).mount(reg.transport)
    return reg


@pytest.fixture
def alpine(shared_dir: Path) -> rx.Registry:
    folder = ck.alpine_dir(shared_dir) / "blobs" / "sha256"
    objects = {f"sha256:{p.name}": p.read_bytes() for p in folder.iterdir()}
    index = (ck.alpine_dir(shared_dir) / "index_alpine_3.23.2_reformatted.json").read_bytes()
    return _registry(objects, {"3.23.2": index})


def test_every_recorded_alpine_object_parses(shared_dir: Path) -> None:
    folder = ck.alpine_dir(shared_dir) / "blobs" / "sha256"
    kinds = {"manifest": 0, "statement": 0, "config": 0}
    for p in sorted(folder.iterdir()):
        raw = p.read_bytes()
        assert hashlib.sha256(raw).hexdigest() == p.name
        doc = json.loads(raw)
        if "mediaType" in doc:
            assert Manifest.from_bytes(raw, expected=f"sha256:{p.name}").digest == f"sha256:{p.name}"
            kinds["manifest"] += 1
        else:
            kinds["statement" if "predicateType" in doc else "config"] += 1
    assert kinds == {"manifest": 16, "statement": 5, "config": 2}


def test_attestations_of_the_recorded_index(alpine: rx.Registry) -> None:
    df = alpine.attestations("library/alpine:3.23.2")
    assert len(df) == 15 and df["platform"].nunique() == 8
    v6 = df[df["platform"] == "linux/arm/v6"]
    assert list(v6["predicate_type"]) == ["https://slsa.dev/provenance/v0.2"]  # provenance only
    amd64 = df[df["platform"] == "linux/amd64"]
    assert list(amd64["layer_digest"].str[7:19]) == ["5c1f58ba4e0d", "644afed44dca"]
    assert list(amd64["size"]) == [79649, 5639]
    assert set(df["image_digest"]) == set(alpine.platforms("library/alpine:3.23.2").query("~attestation")["digest"])


def test_sbom_and_provenance_of_the_recorded_index(alpine: rx.Registry) -> None:
    packages = alpine.sbom("library/alpine:3.23.2")
    assert len(packages) == 20 and "sbom" not in set(packages["name"])
    assert packages.iloc[0][["name", "version"]].tolist() == ["alpine-base", "3.23.2-r0"]
    assert packages.iloc[-1][["name", "version"]].tolist() == ["zlib", "1.3.1-r2"]
    assert packages["purl"].notna().all() and packages.attrs["source"] == "buildkit attestation"
    arm64 = alpine.provenance("library/alpine:3.23.2", platform="linux/arm64")
    assert arm64["builder_id"] == "https://github.com/docker-library"
    assert arm64["parameters"]["frontend"] == "gateway.v0"
    assert arm64["document"] == "sha256:4fbdf2544c910b27f420924db0b8295dbf1fedcfe30c7a7a71386852418dbac6"
    with pytest.raises(rx.NotFound, match="no SBOM found"):
        alpine.sbom("library/alpine:3.23.2", platform="linux/arm/v6")


def test_recorded_cosign_signatures_in_a_sig_manifest(shared_dir: Path) -> None:
    real = shared_dir / "fixtures" / "real"
    image = (real / "cosign_signed_image_manifest_634a8f35_containers-image.json").read_bytes()
    digest = "sha256:" + hashlib.sha256(image).hexdigest()
    recorded_sig = json.loads((real / "cosign_sig_manifest_dockerhub_chihjenhuang_cosign1_2023.json").read_bytes())
    config = (real / "cosign_sig_config_dockerhub_chihjenhuang_cosign1_2023.json").read_bytes()
    objects = {digest: image, recorded_sig["config"]["digest"]: config}
    layers = []
    for payload, signature in ck.recorded_signatures(shared_dir):
        d = "sha256:" + hashlib.sha256(payload).hexdigest()
        objects[d] = payload
        layers.append(ck.signature_layer({"digest": d, "size": len(payload)}, signature))
    sig = json.dumps(ck.sig_manifest(recorded_sig["config"], layers)).encode()
    reg = _registry(objects, {"signed": image, f"sha256-{digest[7:]}.sig": sig})
    df = reg.verify("demo/signed:signed", real / "cosign_public_key_containers-image_fixture.pub")
    assert list(df["verified"]) == [True, True, False]
    assert df.attrs["signed_digest"] == digest and set(df["digest"]) == {"sha256:" + hashlib.sha256(sig).hexdigest()}
    other = reg.verify("demo/signed:signed", ck.public_pem(ck.new_key()))
    assert not other["verified"].any() and other["error"].str.contains("does not verify").all()
    # the recorded Docker Hub .sig manifest parses and names its payload, which was not recorded
    assert base64.b64decode(recorded_sig["layers"][0]["annotations"][ck.SIGNATURE])

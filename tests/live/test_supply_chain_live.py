"""The supply chain against the real registry (Debian's distribution 2.8): a buildkit-style attestation index
built from Docker Hub's recorded alpine statements, cosign signatures this test makes (ECDSA P-256 with
``cryptography``, cosign's payload and ``sha256-<hex>.sig`` layout, see tests/support/cosignkit.py), SBOMs
attached as cosign tags and as OCI referrers, and a huge SBOM. Content is pushed with plain ``requests``
(tests/support/pushing.py) except where ``reg.attach`` is what is tested; syft is the SBOM oracle."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cosignkit as ck
import pushing
import pytest
from servers import push_tiny_image

import regexplore as rx
from regexplore.sandbox import LocalRegistry

SBOM, PROVENANCE, SPDX, PROV = ck.SBOM, ck.PROVENANCE, ck.SPDX, ck.PROV


@pytest.fixture(scope="module")
def server() -> Iterator[LocalRegistry]:
    with LocalRegistry() as reg:
        yield reg


def _oracle(document: dict, tmp_path: Path) -> list[tuple[str, str]]:
    """(name, version) of ``document``'s packages as syft reads it."""
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    syft = str(Path(sys.executable).with_name("syft"))
    out = subprocess.run([syft, "convert", str(path), "-o", "syft-json", "-q"], check=True, capture_output=True,
                         timeout=120).stdout
    return sorted((a["name"], a["version"]) for a in json.loads(out)["artifacts"])


def test_attestations_sbom_and_provenance_from_a_pushed_buildkit_index(server: LocalRegistry, shared_dir: Path,
                                                                       tmp_path: Path) -> None:
    images = ck.push_attested_index(server.url, shared_dir, "att/alpine")
    reg = rx.Registry(server.url)
    df = reg.attestations("att/alpine:3.23.2")
    assert len(df) == 5 and dict(zip(df["platform"], df["image_digest"])) == images
    assert df.groupby("platform")["predicate_type"].apply(list).to_dict() == {
        "linux/amd64": [SPDX, PROV], "linux/arm64/v8": [SPDX, PROV], "linux/arm/v6": [PROV]}
    for platform, digest in SBOM.items():
        packages = reg.sbom("att/alpine:3.23.2", platform=platform)
        oracle = _oracle(ck.statement_predicate(shared_dir, digest), tmp_path)
        assert sorted(zip(packages["name"], packages["version"])) == oracle and len(oracle) == 20
        assert packages.attrs["document"] == digest
    for platform, digest in PROVENANCE.items():
        prov = reg.provenance("att/alpine:3.23.2", platform=platform)
        raw = ck.statement_predicate(shared_dir, digest)
        assert (prov["builder_id"], prov["materials"]) == (raw["builder"]["id"], raw["materials"])
        assert prov["document"] == digest
    with pytest.raises(rx.NotFound, match="no SBOM found"):
        reg.sbom("att/alpine:3.23.2", platform="linux/arm/v6")
    assert reg.attestations(f"att/alpine@{images['linux/amd64']}").empty  # a single image has none


def test_made_signatures_on_the_real_registry(server: LocalRegistry) -> None:
    img = push_tiny_image(server.url, "sig/app", "v1")
    key, other = ck.new_key(), ck.new_key()
    good = ck.payload(img.digest, f"{server.url.split('://')[1]}/sig/app")
    wrong = ck.payload("sha256:" + "1" * 64, "sig/app")
    cases = [(good, ck.sign(key, good)),                                                 # verifies
             (wrong, ck.sign(key, wrong)),                                               # another digest
             (good.replace(b"sig/app", b"sig/evil"), ck.sign(key, good)),                # tampered payload
             (good, ck.sign(other, good)),                                               # wrong key
             (good, base64.b64encode(base64.b64decode(ck.sign(key, good))[:20]).decode())]  # truncated
    ck.push_signatures(server.url, "sig/app", img.digest, cases)
    reg = rx.Registry(server.url)
    df = reg.verify("sig/app:v1", ck.public_pem(key))
    assert list(df["verified"]) == [True, False, False, False, False]
    assert df["error"].isna().tolist() == [True, False, False, False, False]
    assert "signs sha256:1111" in df["error"][1]
    assert all("does not verify" in e for e in df["error"][2:])
    assert df["docker_reference"][0].endswith("/sig/app") and df["layer_digest"].nunique() == 3  # good, wrong, tampered
    assert reg.verify("sig/app:v1", ck.public_pem(other))["verified"].tolist() == [False, False, False, True, False]
    found = reg.verify("sig/app:v1")  # no key: every signature listed, none verified
    assert len(found) == 5 and not found["verified"].any() and found["key"].isna().all()
    assert set(found["error"]) == {"found, not verified: no key given"}
    unsigned = push_tiny_image(server.url, "sig/plain", "v1")
    assert reg.verify(f"sig/plain@{unsigned.digest}", ck.public_pem(key)).empty


def _sign_as_referrer(url: str, repo: str, image: dict, signatures: list[tuple[bytes, str]]) -> dict:
    """cosign 2.x ``--registry-referrers-mode=oci-1-1``: the signature manifest pushed by digest with the image
    as ``subject``; distribution 2.8 has no referrers API, so the ``sha256-<hex>`` index is kept as
    go-containerregistry keeps it (see cosignkit). Returns the signature manifest's descriptor."""
    tag = f"sha256-{image['digest'][7:]}"
    with pushing.Pusher(url) as p:
        layers = [ck.signature_layer(p.blob(repo, payload, ck.SIMPLE_SIGNING), sig) for payload, sig in signatures]
        config = {"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]}}
        manifest = ck.referrer_sig_manifest(p.blob(repo, json.dumps(config).encode(), ck.OCI_CONFIG), layers, image)
        desc = p.manifest(repo, None, manifest)
        r = p.s.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": ck.OCI_INDEX})
        known = []
        for e in r.json()["manifests"] if r.ok else []:
            m = p.s.get(f"{url}/v2/{repo}/manifests/{e['digest']}", headers={"Accept": e["mediaType"]}).json()
            known.append((m, {"digest": e["digest"], "size": e["size"]}))
        p.manifest(repo, tag, ck.fallback_index(known + [(manifest, desc)]))
    return desc


def test_signatures_stored_as_oci_referrers(server: LocalRegistry, tmp_path: Path) -> None:
    img = push_tiny_image(server.url, "sig/oci11", "v1")
    key, other = ck.new_key(), ck.new_key()
    good = ck.payload(img.digest, f"{server.url.split('://')[1]}/sig/oci11")
    first = _sign_as_referrer(server.url, "sig/oci11", img.descriptor, [(good, ck.sign(key, good))])
    second = _sign_as_referrer(server.url, "sig/oci11", img.descriptor, [(good, ck.sign(other, good))])
    reg = rx.Registry(server.url)
    assert set(reg.referrers("sig/oci11:v1", ck.SIG_ARTIFACT)["digest"]) == {first["digest"], second["digest"]}
    df = reg.verify("sig/oci11:v1", ck.public_pem(key))
    assert dict(zip(df["digest"], df["verified"])) == {first["digest"]: True, second["digest"]: False}
    assert set(df["source"]) == {"referrer"} and "does not verify" in df.set_index("digest")["error"][second["digest"]]
    # an SBOM referrer is not a signature; a .sig tag next to the referrers is read too
    spdx = tmp_path / "sbom.spdx.json"
    spdx.write_text('{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "packages": []}')
    reg.attach("sig/oci11:v1", [(str(spdx), "application/spdx+json")], artifact_type="application/spdx+json")
    ck.push_signatures(server.url, "sig/oci11", img.digest, [(good, ck.sign(other, good))])
    fresh = rx.Registry(server.url)
    df = fresh.verify("sig/oci11:v1", ck.public_pem(other))
    assert sorted(zip(df["source"], df["verified"])) == [("cosign .sig", True), ("referrer", False), ("referrer", True)]
    # a referrer signature of another image does not verify this one
    twin = push_tiny_image(server.url, "sig/oci11", "v2", payload=b"other")
    _sign_as_referrer(server.url, "sig/oci11", twin.descriptor, [(good, ck.sign(key, good))])
    df = rx.Registry(server.url).verify("sig/oci11:v2", ck.public_pem(key))
    assert df["verified"].tolist() == [False] and f"not {twin.digest}" in df["error"][0]


def test_sboms_attached_as_cosign_tags_and_as_referrers(server: LocalRegistry, shared_dir: Path,
                                                        tmp_path: Path) -> None:
    spdx = ck.statement_predicate(shared_dir, SBOM["linux/amd64"])
    path = tmp_path / "sbom.spdx.json"
    path.write_text(json.dumps(spdx))
    syft = str(Path(sys.executable).with_name("syft"))
    cdx = subprocess.run([syft, "convert", str(path), "-o", "cyclonedx-json", "-q"], check=True,
                         capture_output=True, timeout=120).stdout
    oracle = _oracle(spdx, tmp_path)
    reg = rx.Registry(server.url)
    # CycloneDX as `cosign attach sbom` stores it: the document as a layer of the .sbom tag
    a = push_tiny_image(server.url, "sbom/cdx", "v1")
    with pushing.Pusher(server.url) as p:
        layer = p.blob("sbom/cdx", cdx, "application/vnd.cyclonedx+json")
        cfg = p.blob("sbom/cdx", b"{}", ck.OCI_CONFIG)
        p.manifest("sbom/cdx", f"sha256-{a.digest[7:]}.sbom", ck.sig_manifest(cfg, [layer]))
    got = reg.sbom("sbom/cdx:v1")
    assert sorted(zip(got["name"], got["version"])) == oracle and got.attrs["source"] == "cosign .sbom"
    assert got.attrs["format"].startswith("CycloneDX")
    # SPDX as an in-toto statement in a DSSE envelope, as `cosign attest` stores it in the .att tag
    b = push_tiny_image(server.url, "sbom/att", "v1")
    statement = ck.alpine_blob(shared_dir, SBOM["linux/amd64"])
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json",
                           "payload": base64.b64encode(statement).decode(), "signatures": []}).encode()
    with pushing.Pusher(server.url) as p:
        layer = p.blob("sbom/att", envelope, "application/vnd.dsse.envelope.v1+json",
                       annotations={"predicateType": SPDX})
        cfg = p.blob("sbom/att", b"{}", ck.OCI_CONFIG)
        p.manifest("sbom/att", f"sha256-{b.digest[7:]}.att", ck.sig_manifest(cfg, [layer]))
    got = reg.sbom("sbom/att:v1")
    assert sorted(zip(got["name"], got["version"])) == oracle and got.attrs["source"] == "cosign .att"
    # SPDX attached with reg.attach (OCI 1.1 subject; distribution 2.8 keeps the sha256-<hex> index)
    c = push_tiny_image(server.url, "sbom/ref", "v1")
    reg.attach("sbom/ref:v1", [(str(path), "application/spdx+json")], artifact_type="application/spdx+json")
    got = reg.sbom("sbom/ref:v1")
    assert sorted(zip(got["name"], got["version"])) == oracle and got.attrs["source"] == "referrer"
    assert reg.referrers(f"sbom/ref@{c.digest}")["artifact_type"].tolist() == ["application/spdx+json"]


def test_a_huge_sbom_is_capped_with_our_error(server: LocalRegistry, shared_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spdx = ck.statement_predicate(shared_dir, SBOM["linux/amd64"])
    spdx["packages"] = spdx["packages"] * 150  # about 2 MB
    doc = json.dumps(spdx).encode()
    img = push_tiny_image(server.url, "sbom/huge", "v1")
    with pushing.Pusher(server.url) as p:
        true_layer = p.blob("sbom/huge", doc, "application/spdx+json")
        cfg = p.blob("sbom/huge", b"{}", ck.OCI_CONFIG)
        # the descriptor understates the size: the cap must hold on the wire too
        lying = {**true_layer, "size": 1000}
        p.manifest("sbom/huge", f"sha256-{img.digest[7:]}.sbom", ck.sig_manifest(cfg, [lying]))
    monkeypatch.setenv("REGEXPLORE_MAX_SBOM_BYTES", str(1024 * 1024))
    reg = rx.Registry(server.url)
    with pytest.raises(rx.ResponseTooLarge, match="REGEXPLORE_MAX_SBOM_BYTES=1048576"):
        reg.sbom("sbom/huge:v1")
    with pushing.Pusher(server.url) as p:  # the honest descriptor is refused before a byte is fetched
        p.manifest("sbom/huge", f"sha256-{img.digest[7:]}.sbom", ck.sig_manifest(cfg, [true_layer]))
    fresh = rx.Registry(server.url)
    with pytest.raises(rx.ResponseTooLarge, match="its descriptor says"):
        fresh.sbom("sbom/huge:v1")
    assert not any(f"/blobs/{true_layer['digest']}" in u for u in fresh.trace["url"])
    assert len(doc) > 1024 * 1024

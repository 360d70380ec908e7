"""The supply-chain parsers on real recorded documents, with syft as the oracle for SBOMs and cryptography for
signatures (regexplore/content/attestations.py, sbom.py, signatures.py). No sockets."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cosignkit as ck
import pytest
from packageurl import PackageURL

from regexplore.content.attestations import Document, attestation_rows, documents_in, predicate_of, provenance_summary
from regexplore.content.inside.model import TYPES
from regexplore.content.sbom import sbom_rows
from regexplore.content.signatures import PublicKey, signature_rows, verify_payload
from regexplore.errors import UnsupportedMediaType
from regexplore.model.oci import OCI_MANIFEST, Manifest

SBOM_AMD64 = "sha256:5c1f58ba4e0de0c5a3d414623520605bbfcf811e450d0dc2e2483e22562bafb2"
SBOM_ARM64 = "sha256:0d38fd5b319494c7f0fdcc2c23fe9358909a9d14e82a7982e20f83a2b860edba"
PROVENANCE = ["sha256:644afed44dca2b34dcec62eac3f2cbfafa45adfaa22355c33a26bce6eb7e939b",
              "sha256:4fbdf2544c910b27f420924db0b8295dbf1fedcfe30c7a7a71386852418dbac6",
              "sha256:c29e4c1977b4ca5bc317f8a0c00b379f7a1d9e0b905cbf75076c5ca8d38b7ff6"]
SIGNED = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"


def syft(*args: str) -> Any:
    """Run the syft binary installed next to this Python (else on PATH); its JSON output."""
    binary = Path(sys.executable).with_name("syft")
    found = str(binary) if binary.exists() else shutil.which("syft")
    if not found:
        pytest.fail("syft is not installed (the test extra's oracle)", pytrace=False)
    out = subprocess.run([found, *args, "-q"], check=True, capture_output=True, timeout=120).stdout
    return json.loads(out)


def _without_qualifiers(purl: str) -> str:
    p = PackageURL.from_string(purl)
    return PackageURL(p.type, p.namespace, p.name, p.version).to_string()


@pytest.mark.parametrize("digest", [SBOM_AMD64, SBOM_ARM64])
def test_recorded_spdx_sboms_give_syfts_packages_without_the_root(shared_dir: Path, tmp_path: Path,
                                                                   digest: str) -> None:
    predicate = ck.statement_predicate(shared_dir, digest)
    doc = tmp_path / "sbom.spdx.json"
    doc.write_text(json.dumps(predicate))
    oracle = syft("convert", str(doc), "-o", "syft-json")["artifacts"]
    rows = sbom_rows(predicate)
    assert len(rows) == len(oracle) == 20  # the DocumentRoot "sbom" is the image, not a package
    assert sorted((r["name"], r["version"]) for r in rows) == sorted((a["name"], a["version"]) for a in oracle)
    # syft rewrites the qualifiers; the package identity in the purl is the document's
    assert sorted(_without_qualifiers(r["purl"]) for r in rows) == sorted(_without_qualifiers(a["purl"])
                                                                          for a in oracle)
    # docker scout's purls carry no arch / upstream qualifiers: nothing is made up for those columns
    assert {r["arch"] for r in rows} == {r["source"] for r in rows} == {None}
    busybox = next(r for r in rows if r["name"] == "busybox")
    assert busybox["licenses"] == ["GPL-2.0-only"]  # licenseConcluded NOASSERTION is no license
    assert sorted((r["name"], r["type"]) for r in rows) == sorted((a["name"], a["type"]) for a in oracle)
    assert {r["type"] for r in rows} == {"apk"}  # syft's name for purl type "apk"


def test_cyclonedx_made_by_syft_gives_the_same_packages(shared_dir: Path, tmp_path: Path) -> None:
    doc = tmp_path / "sbom.spdx.json"
    doc.write_text(json.dumps(ck.statement_predicate(shared_dir, SBOM_AMD64)))
    cdx = syft("convert", str(doc), "-o", "cyclonedx-json")
    oracle = syft("convert", str(doc), "-o", "syft-json")["artifacts"]
    rows = sbom_rows(cdx)
    assert sorted((r["name"], r["version"], r["purl"]) for r in rows) == \
        sorted((a["name"], a["version"], a["purl"]) for a in oracle)


def _rows_key(name: Any, version: Any, kind: Any) -> tuple[str, str, str]:
    return str(name), str(version), str(kind if kind in TYPES else None)


def test_types_are_syfts_names_for_the_purl_types(tmp_path: Path) -> None:
    """syft scans real files of six ecosystems (this machine's dpkg status, a wheel's dist-info, npm's
    corepack, a Debian jar, the dive Go binary) into SPDX; reading that SPDX back, syft names each package's
    type from its purl. ``sbom_rows`` gives the same names for the seven types regexplore knows, <NA> for
    others."""
    root = tmp_path / "root"
    files = {"/etc/os-release": "etc/os-release", "/var/lib/dpkg/status": "var/lib/dpkg/status",
             "/usr/lib/node_modules/corepack/package.json": "usr/lib/node_modules/corepack/package.json",
             "/usr/share/java/commons-cli-1.5.0.jar": "usr/share/java/commons-cli.jar",
             str(Path(sys.executable).with_name("dive")): "usr/bin/dive"}
    for source, target in files.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / target)
    wheel = next(Path(sys.executable).parents[1].glob("lib/python3.*/site-packages/anyio-*.dist-info"))
    shutil.copytree(wheel, root / "usr/lib/python3/site-packages" / wheel.name)
    spdx = tmp_path / "scan.spdx.json"
    syft("scan", f"dir:{root}", "-o", f"spdx-json={spdx}", "-o", "syft-json", "--select-catalogers",
         "+dpkg-db-cataloger,+python-installed-package-cataloger,+javascript-package-cataloger,"
         "+java-archive-cataloger,+go-module-binary-cataloger")
    oracle = syft("convert", str(spdx), "-o", "syft-json")["artifacts"]
    rows = sbom_rows(json.loads(spdx.read_text()))
    assert sorted(_rows_key(r["name"], r["version"], r["type"]) for r in rows) == \
        sorted(_rows_key(a["name"], a["version"], a["type"]) for a in oracle)
    assert {r["type"] for r in rows} == {"deb", "python", "npm", "java-archive", "go-module"}


def test_a_document_of_neither_format_is_refused_with_our_error() -> None:
    with pytest.raises(UnsupportedMediaType, match="neither an SPDX nor a CycloneDX"):
        sbom_rows({"bomFormat": "other"}, "SBOM x")
    with pytest.raises(UnsupportedMediaType, match="'packages' is not a list"):
        sbom_rows({"spdxVersion": "SPDX-2.3", "packages": {"a": 1}}, "SBOM x")


@pytest.mark.parametrize("digest", PROVENANCE)
def test_recorded_slsa_v02_provenance(shared_dir: Path, digest: str) -> None:
    statement = json.loads(ck.alpine_blob(shared_dir, digest))
    doc = Document({"digest": digest}, "statement", statement["predicateType"], "test", "sha256:0")
    summary = provenance_summary(*predicate_of(doc, statement))
    raw = statement["predicate"]
    assert summary["predicate_type"] == "https://slsa.dev/provenance/v0.2"
    assert summary["builder_id"] == raw["builder"]["id"] == "https://github.com/docker-library"
    assert summary["build_type"] == "https://mobyproject.org/buildkit@v1"
    assert summary["parameters"] == raw["invocation"]["parameters"] and summary["parameters"]["frontend"]
    assert summary["materials"] == raw["materials"] and summary["materials"][0]["uri"].startswith("pkg:docker/")


def test_slsa_v1_provenance_reads_into_the_same_keys() -> None:
    """The v1 shape of slsa-framework/slsa docs/spec/v1.1/schema/provenance.cue (no v1 statement was recorded)."""
    deps = [{"uri": "pkg:docker/alpine@3.23", "digest": {"sha256": "a" * 64}}]
    predicate = {"buildDefinition": {"buildType": "https://github.com/moby/buildkit/blob/master/docs/"
                                                  "attestations/slsa-definitions.md",
                                     "externalParameters": {"request": {"frontend": "dockerfile.v0"}},
                                     "internalParameters": {}, "resolvedDependencies": deps},
                 "runDetails": {"builder": {"id": "https://example.test/builder"}, "metadata": {}}}
    summary = provenance_summary("https://slsa.dev/provenance/v1", predicate)
    assert summary["builder_id"] == "https://example.test/builder"
    assert summary["build_type"].endswith("slsa-definitions.md")
    assert summary["parameters"] == {"request": {"frontend": "dockerfile.v0"}}
    assert summary["materials"] == deps and summary["predicate"] is predicate


def test_a_dsse_envelope_gives_its_statement(shared_dir: Path) -> None:
    raw = ck.alpine_blob(shared_dir, PROVENANCE[0])
    envelope = {"payloadType": "application/vnd.in-toto+json", "payload": base64.b64encode(raw).decode(),
                "signatures": []}
    doc = Document({"digest": "sha256:1"}, "dsse", "https://slsa.dev/provenance/v0.2", "cosign .att", "sha256:0")
    assert predicate_of(doc, envelope) == ("https://slsa.dev/provenance/v0.2", json.loads(raw)["predicate"])
    with pytest.raises(UnsupportedMediaType, match="not base64 JSON"):
        predicate_of(doc, {"payload": "%%%"})


# ------------------------------------------------------------------------------------------ signatures
def test_recorded_signatures_verify_with_the_recorded_key_and_fail_with_another(shared_dir: Path) -> None:
    recorded = PublicKey(shared_dir / "fixtures" / "real" / "cosign_public_key_containers-image_fixture.pub")
    other = PublicKey(ck.public_pem(ck.new_key()))
    sigs = ck.recorded_signatures(shared_dir)
    results = [verify_payload(p, {ck.SIGNATURE: s}, SIGNED, recorded) for p, s in sigs]
    assert [r["verified"] for r in results] == [True, True, False]
    assert results[1]["docker_reference"] == "192.168.64.2:5000/skopeo-signed:tag"
    assert "does not verify" in results[2]["error"]
    assert not any(verify_payload(p, {ck.SIGNATURE: s}, SIGNED, other)["verified"] for p, s in sigs)


def test_made_signatures_fail_each_with_a_reason() -> None:
    key = ck.new_key()
    public = PublicKey(key.public_key())
    good = ck.payload(SIGNED, "example.test/app")
    cases = {
        "ok": (good, ck.sign(key, good)),
        "wrong digest": (ck.payload("sha256:" + "0" * 64, "example.test/app"),
                         ck.sign(key, ck.payload("sha256:" + "0" * 64, "example.test/app"))),
        "tampered": (good.replace(b"example.test/app", b"example.test/evil"), ck.sign(key, good)),
        "wrong key": (good, ck.sign(ck.new_key(), good)),
        "truncated": (good, base64.b64encode(base64.b64decode(ck.sign(key, good))[:-3]).decode()),
        "not base64": (good, "***"),
    }
    rows = {name: verify_payload(p, {ck.SIGNATURE: s}, SIGNED, public) for name, (p, s) in cases.items()}
    assert rows.pop("ok") == {"verified": True, "docker_reference": "example.test/app", "error": None}
    assert "signs sha256:0000" in rows.pop("wrong digest")["error"]
    assert all(not r["verified"] and "does not verify" in r["error"] for r in rows.values()), rows


def test_keyless_signatures_are_found_not_verified() -> None:
    key = ck.new_key()
    good = ck.payload(SIGNED, "example.test/app")
    row = verify_payload(good, {ck.SIGNATURE: ck.sign(key, good), "dev.sigstore.cosign/certificate": "-----BEGIN"},
                         SIGNED, PublicKey(key.public_key()))
    assert row["verified"] is False and "keyless" in row["error"] and "not verified" in row["error"]


def test_keys_never_show_their_material_and_private_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = ck.new_key()
    pem = ck.public_pem(key)
    body = pem.decode().splitlines()[1]
    named = PublicKey(pem)
    assert named.name.startswith("sha256:") and body not in repr(named)
    path = tmp_path / "cosign.pub"
    path.write_bytes(pem)
    assert PublicKey(path).name == str(path)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with pytest.raises(ValueError, match="private key") as exc:
        PublicKey(private)
    assert private.decode().splitlines()[1] not in str(exc.value)
    with pytest.raises(ValueError, match="not a PEM public key"):
        PublicKey(b"hello")


def test_pem_text_given_as_str_is_read_as_a_key_and_never_echoed() -> None:
    from cryptography.hazmat.primitives import serialization

    key = ck.new_key()
    assert PublicKey(ck.public_pem(key).decode()).name.startswith("sha256:")
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    with pytest.raises(ValueError, match="private key") as exc:
        PublicKey(private)
    assert private.splitlines()[1] not in str(exc.value) and "PRIVATE KEY-----" not in str(exc.value)
    with pytest.raises(ValueError, match="not a PEM public key") as exc:
        PublicKey("-----BEGIN PUBLIC KEY-----\nc2VrcmV0\n-----END PUBLIC KEY-----\n")
    assert "c2VrcmV0" not in str(exc.value)


HOSTILE_SBOMS = {
    "SPDXID a list": {"spdxVersion": "SPDX-2.3", "packages": [{"SPDXID": ["x"], "name": "a"}]},
    "relatedSpdxElement a list": {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "packages": [
        {"SPDXID": "b", "name": "b"}], "relationships": [{"relationshipType": "DESCRIBES", "spdxElementId":
                                                          "SPDXRef-DOCUMENT", "relatedSpdxElement": ["x"]}]},
    "externalRefs a number": {"spdxVersion": "SPDX-2.3", "packages": [{"SPDXID": "a", "name": "a",
                                                                       "externalRefs": 5}]},
    "CycloneDX licenses a number": {"bomFormat": "CycloneDX", "specVersion": "1.5",
                                    "components": [{"name": "a", "licenses": 5}]},
    "documentDescribes a number": {"spdxVersion": "SPDX-2.3", "documentDescribes": 5,
                                   "packages": [{"SPDXID": "a", "name": "a"}]},
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SBOMS))
def test_hostile_sbom_fields_give_rows_not_type_errors(case: str) -> None:
    rows = sbom_rows(HOSTILE_SBOMS[case], "SBOM x")
    assert [r["name"] for r in rows] == ["b" if case.startswith("related") else "a"]
    assert all(r["licenses"] == [] and r.get("purl") is None for r in rows)


def _artifact(layers: Any) -> Manifest:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers,
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:" + "0" * 64, "size": 2}}
    return Manifest.from_bytes(json.dumps(doc).encode(), OCI_MANIFEST)


@pytest.mark.parametrize("layers", [[1], 5, [{"digest": ["sha256:x"]}]])
def test_a_manifest_whose_layers_are_no_descriptors_is_refused_with_our_error(layers: Any) -> None:
    m = _artifact(layers)
    entry = {"digest": "sha256:" + "1" * 64, "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    for parse in (lambda: documents_in(m, "x"), lambda: signature_rows(None, "r", m, "sha256:x", None, "s"),
                  lambda: attestation_rows({"manifests": [entry]}, lambda d: m)):
        with pytest.raises(UnsupportedMediaType, match="'layers' is not a list of descriptors"):
            parse()
    assert "layers" in m._repr_html_()


def test_an_attestation_entry_with_hostile_fields_gives_rows() -> None:
    layer = {"mediaType": "application/vnd.in-toto+json", "digest": "sha256:" + "2" * 64, "size": 3}
    m = _artifact([layer])
    index = {"manifests": [
        {"digest": "sha256:" + "1" * 64, "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                                         "vnd.docker.reference.digest": ["x"]}},
        {"digest": ["sha256:x"], "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        {"annotations": {"vnd.docker.reference.type": "attestation-manifest"}}]}
    rows = attestation_rows(index, lambda d: m)
    assert [(r["image_digest"], r["layer_digest"]) for r in rows] == [(None, layer["digest"])]
    assert attestation_rows({"manifests": 5}, lambda d: m) == []

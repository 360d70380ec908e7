"""``rx.to_cyclonedx``: a packages frame as a CycloneDX 1.5 document, checked by cyclonedx-python-lib's strict
schema validator and against syft's own CycloneDX output for the same real content.

The content is this machine's: its dpkg status file and every package's copyright file (the licences), and
three dist-info folders of the installed Python packages, in two layer tars (dpkg, then Python). syft 1.18.1
scans that folder (``dir:``, offline) twice: its syft-json gives the rows of the packages frame (the catalogers
are another branch's work; this test is about the document), its ``cyclonedx-json@1.5`` is the oracle for the
purls and licences the document must carry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

import regexplore as rx
from regexplore.model.frames import make_frame

SYFT = Path(sys.executable).with_name("syft")


def _site_packages() -> Path:
    """Where this interpreter's packages are installed (their dist-info folders are real METADATA)."""
    import packageurl

    return Path(packageurl.__file__).resolve().parents[1]


def _layer_digest(root: Path, members: list[str]) -> str:
    """The diff ID of a layer holding ``members`` of ``root``: sha256 of its uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in members:
            tar.add(root / name, arcname=name)
    return "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()


def _primary(artifact: dict[str, Any]) -> str:
    """The path of the file a syft package was read from (its primary evidence), without the leading /."""
    (path,) = {loc["path"] for loc in artifact["locations"] if loc["annotations"]["evidence"] == "primary"}
    return path.lstrip("/")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """syft's two outputs (``artifacts`` of the syft-json, the CycloneDX document), the packages frame made
    from the artifacts, and the two layers' digests."""
    root = tmp_path_factory.mktemp("rootfs")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copyfile("/etc/os-release", root / "etc/os-release")   # the distro of the deb purls
    shutil.copy2("/var/lib/dpkg/status", root / "var/lib/dpkg/status")
    for copyright_file in Path("/usr/share/doc").glob("*/copyright"):
        target = root / "usr/share/doc" / copyright_file.parent.name / "copyright"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copyright_file, target)       # follows a symlink to a shared copyright file
    site = root / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True)
    for dist in ("requests", "packageurl_python", "univers"):
        (info,) = _site_packages().glob(f"{dist}-*.dist-info")
        shutil.copytree(info, site / info.name)
    layers = {"deb": _layer_digest(root, ["etc", "var", "usr/share"]), "python": _layer_digest(root, ["usr/lib"])}
    out = tmp_path_factory.mktemp("syft")
    subprocess.run([str(SYFT), "scan", f"dir:{root}", "-q", "-o", f"syft-json={out / 'syft.json'}",
                    "-o", f"cyclonedx-json@1.5={out / 'cdx.json'}"], check=True, timeout=120,
                   env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"})
    artifacts = json.loads((out / "syft.json").read_text())["artifacts"]
    rows = [{"name": a["name"], "version": a["version"], "type": a["type"], "purl": a["purl"],
             "arch": a["metadata"].get("architecture"), "source": a["metadata"].get("source") or None,
             "licenses": [lic["value"] for lic in a["licenses"]], "layer": layers[a["type"]],
             "path": _primary(a)} for a in artifacts]
    return {"frame": make_frame("packages", rows), "syft_cdx": json.loads((out / "cdx.json").read_text()),
            "artifacts": artifacts, "layers": layers}


def _valid(doc: dict[str, Any]) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(json.dumps(doc))
    assert error is None, error


def _text_of(licence: dict[str, Any]) -> str:
    """A CycloneDX licence entry's text: its expression, SPDX id or name."""
    return licence.get("expression") or licence["license"].get("id") or licence["license"]["name"]


def _licence_texts(component: dict[str, Any]) -> set[str]:
    return {_text_of(lic) for lic in component.get("licenses", [])}


def test_document_is_schema_valid_cyclonedx_1_5(scanned: dict[str, Any]) -> None:
    doc = rx.to_cyclonedx(scanned["frame"], name="demo/debian", version="12", digest="sha256:" + "ab" * 32)
    _valid(doc)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    image = doc["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "demo/debian", "12")
    assert image["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert {"regexplore"} == {t["name"] for t in doc["metadata"]["tools"]["components"]}
    (root,) = [d for d in doc["dependencies"] if d["ref"] == image["bom-ref"]]
    assert sorted(root["dependsOn"]) == sorted(c["bom-ref"] for c in doc["components"])


def test_purls_and_versions_are_syfts_for_the_same_content(scanned: dict[str, Any]) -> None:
    doc = rx.to_cyclonedx(scanned["frame"])
    frame = scanned["frame"]
    assert len(doc["components"]) == len(frame) > 700          # every dpkg package and the three dists
    ours = sorted((c["name"], c["version"], c["purl"]) for c in doc["components"])
    theirs = sorted((c["name"], c["version"], c["purl"]) for c in scanned["syft_cdx"]["components"]
                    if c.get("purl"))
    assert ours == theirs


def test_licences_are_all_carried_ids_where_syft_says_a_value_is_an_spdx_id(scanned: dict[str, Any]) -> None:
    """Per package every licence of the frame, none lost (a copyright file lists up to 25); a
    value that syft's own SPDX table maps to itself (``spdxExpression == value``) is written as an SPDX
    ``id``, any other value keeps its text (an id differing only in case, or a name)."""
    doc = rx.to_cyclonedx(scanned["frame"])
    _valid(doc)
    counts = [len(c.get("licenses", [])) for c in doc["components"]]
    assert max(counts) >= 10 and sum(counts) > 2000
    spdx_ids = {lic["value"] for a in scanned["artifacts"] for lic in a["licenses"]
                if lic["spdxExpression"] == lic["value"] and " " not in lic["value"]}   # ids, not expressions
    assert len(spdx_ids) > 30
    by_purl = {row.purl: row for row in scanned["frame"].itertuples()}
    for component in doc["components"]:
        values = list(dict.fromkeys(by_purl[component["purl"]].licenses))
        written = component.get("licenses", [])
        # case aside ("BSD-3-clause" is "BSD-3-Clause"), the same licences
        assert {_text_of(w).lower() for w in written} == {v.lower() for v in values}
        assert {w["license"]["id"] for w in written if "id" in w.get("license", {})} >= spdx_ids & set(values)


def test_a_single_spdx_expression_stays_an_expression_and_mixed_lists_lose_nothing() -> None:
    rows = [{"name": "a", "version": "1", "type": "python", "purl": "pkg:pypi/a@1", "licenses": ["MIT OR Apache-2.0"]},
            {"name": "b", "version": "1", "type": "python", "purl": "pkg:pypi/b@1",
             "licenses": ["MIT OR Apache-2.0", "BSD-3-Clause", "Public domain, mostly"]}]
    doc = rx.to_cyclonedx(make_frame("packages", rows))
    _valid(doc)
    a, b = sorted(doc["components"], key=lambda c: c["name"])
    assert a["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    assert _licence_texts(b) == {"MIT OR Apache-2.0", "BSD-3-Clause", "Public domain, mostly"}


def test_the_introducing_layer_path_and_type_are_properties(scanned: dict[str, Any]) -> None:
    doc = rx.to_cyclonedx(scanned["frame"])
    frame = scanned["frame"].set_index("purl")
    for component in doc["components"]:
        props = {p["name"]: p["value"] for p in component["properties"]}
        row = frame.loc[component["purl"]]
        assert props["regexplore:layer"] == row["layer"] == scanned["layers"][row["type"]]
        assert props["regexplore:path"] == row["path"] and props["regexplore:package:type"] == row["type"]
        if row["type"] == "deb":
            assert props["regexplore:arch"] == row["arch"]


def test_the_same_package_twice_gets_two_distinct_bom_refs() -> None:
    row = {"name": "six", "version": "1.16.0", "type": "python", "purl": "pkg:pypi/six@1.16.0", "licenses": ["MIT"]}
    doc = rx.to_cyclonedx(make_frame("packages", [{**row, "path": "a/METADATA"}, {**row, "path": "b/METADATA"},
                                                  {"name": "x", "type": "npm", "path": "c/package.json"}]))
    _valid(doc)
    refs = [c["bom-ref"] for c in doc["components"]]
    assert len(set(refs)) == 3 and "pkg:pypi/six@1.16.0" in refs and "npm:x@" in refs


def test_an_empty_frame_is_a_valid_document_without_components() -> None:
    doc = rx.to_cyclonedx(make_frame("packages"), name="scratch")
    _valid(doc)
    assert doc.get("components", []) == [] and doc["metadata"]["component"]["name"] == "scratch"


@pytest.mark.parametrize(("frame", "digest", "message"), [
    (make_frame("files"), None, "missing columns"),
    (make_frame("packages", [{"name": "a", "purl": "not a purl"}]), None, "purl"),
    (make_frame("packages"), "md5:abc", "sha256"),
])
def test_bad_input_is_a_value_error_that_says_what(frame: Any, digest: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rx.to_cyclonedx(frame, digest=digest)


def test_without_the_library_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "cyclonedx" or m.startswith("cyclonedx.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cyclonedx", None)     # what an interpreter without the package sees
    with pytest.raises(ImportError, match=r"regexplore\[sbom\]"):
        rx.to_cyclonedx(make_frame("packages"))

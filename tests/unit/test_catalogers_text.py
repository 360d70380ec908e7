"""The text catalogers (dpkg, apk, python, npm) and purl.py on REAL content: this machine's dpkg database
(checked against ``dpkg-query`` on the same file), the venv's wheels (checked against ``importlib.metadata``),
npm's own package.json files, trivy's recorded Alpine database; plus a seeded mutation fuzzer over all of them.
The same catalogers are compared with syft 1.18.1 in tests/live/test_packages_text.py."""

from __future__ import annotations

import importlib.metadata
import random
import re
import subprocess
import time
from pathlib import Path

import inside_images
import pytest

from regexplore.content.inside.catalogers import apk, dpkg, npm, purl, python
from regexplore.content.inside.model import Evidence, Package

APK_DB = Path(__file__).resolve().parents[1] / "fixtures" / "apk" / "installed"
DEBIAN = {"ID": "debian", "VERSION_ID": "12"}


def dpkg_query(status: bytes, tmp_path: Path) -> set[tuple[str, str]]:
    """(name, version) of the ``ii`` packages dpkg-query itself reads from ``status``."""
    (tmp_path / "status").write_bytes(status)
    fmt = "-f=${db:Status-Abbrev}|${Package}|${Version}\n"
    out = subprocess.run(["dpkg-query", f"--admindir={tmp_path}", "-W", fmt],
                         check=True, capture_output=True, text=True).stdout
    return {(n, v) for abbrev, n, v in (line.split("|") for line in out.splitlines()) if abbrev.strip() == "ii"}


def test_dpkg_status_of_this_machine_equals_dpkg_query(tmp_path: Path) -> None:
    status = inside_images.DPKG_STATUS.read_bytes()
    ev = dpkg.parse_status("var/lib/dpkg/status", status)
    got = {(p.name, p.version) for p in ev.packages}
    assert len(got) >= 300
    assert got == dpkg_query(status, tmp_path)
    by_name = {p.name: p for p in ev.packages}
    with_source = [p for p in ev.packages if p.source_version]
    assert with_source and all("(" not in p.source for p in with_source)
    assert by_name["libc6"].source == "glibc" and by_name["libc6"].arch


def test_dpkg_removed_package_is_not_listed(tmp_path: Path) -> None:
    stanzas = inside_images.dpkg_stanzas()
    removed = stanzas[5].replace(b"Status: install ok installed", b"Status: deinstall ok config-files")
    status = b"".join(stanzas[:5] + [removed] + stanzas[6:])
    got = {(p.name, p.version) for p in dpkg.parse_status("var/lib/dpkg/status", status).packages}
    assert got == dpkg_query(status, tmp_path) and len(got) == len(stanzas) - 1


def test_dpkg_status_d_stanza_without_status_counts() -> None:
    stanza = re.sub(rb"(?m)^Status: .*\n", b"", inside_images.dpkg_stanzas()[0])
    name = re.search(rb"(?m)^Package: (.*)$", stanza).group(1).decode()
    cat = next(c for c in dpkg.CATALOGERS if c.name == "dpkg-db")
    assert cat.wants(f"var/lib/dpkg/status.d/{name}", 0o644, len(stanza)) == "whole"
    assert cat.wants(f"var/lib/dpkg/status.d/{name}.md5sums", 0o644, 10) is None
    assert [p.name for p in dpkg.parse_status(f"var/lib/dpkg/status.d/{name}", stanza).packages] == [name]


def test_dpkg_duplicate_key_is_an_error() -> None:
    stanza = inside_images.dpkg_stanzas()[0]
    with pytest.raises(ValueError, match="duplicate"):
        dpkg.parse_status("var/lib/dpkg/status", stanza.replace(b"\n\n", b"\n") + b"Package: again\n")


def test_copyright_licenses_follow_syft_rules() -> None:
    files = inside_images.copyright_files(["libc6", "bash", "coreutils"])
    assert files
    for path, data in files.items():
        facts = dict(dpkg.parse_copyright(path, data).facts)
        assert facts["copyright_of"] == path.split("/")[3]
        text = data.decode()
        for lic in facts["licenses"]:
            assert f"License: {lic}" in text or f"/usr/share/common-licenses/{lic}" in text
            assert " or " not in lic and not lic.endswith(".") and lic.lower() != "none"
        assert list(facts["licenses"]) == sorted(set(facts["licenses"]))


def test_python_dist_info_of_the_venv_equals_importlib_metadata() -> None:
    files = inside_images.dist_infos()
    assert len(files) >= 50
    got = {(p.name, p.version) for path, data in files.items() for p in python.parse_metadata(path, data).packages}
    want = {(python.normalize(d.metadata["Name"]), d.version) for d in importlib.metadata.distributions(
        path=[str(inside_images.SITE_PACKAGES)]) if d.metadata["Name"] and str(d._path).endswith(".dist-info")}
    assert got == want


def test_python_header_block_only_and_interpreter_skipped() -> None:
    meta = b"Metadata-Version: 2.1\nName: Foo_Bar.baz\nVersion: 0.1\n\nName: not-this\n"
    (pkg,) = python.parse_metadata("x/Foo_Bar.baz-0.1.dist-info/METADATA", meta).packages
    assert (pkg.name, pkg.version, purl.purl_of(pkg, None)) == ("foo-bar-baz", "0.1", "pkg:pypi/foo-bar-baz@0.1")
    assert python.parse_metadata("usr/lib/python2.7/Python.egg-info", b"Name: Python\nVersion: 2.7\n") == Evidence()


def test_npm_package_jsons_installed_by_npm() -> None:
    files = inside_images.npm_package_jsons()
    packages = [p for path, data in files.items() for p in npm.parse_package_json(path, data).packages]
    assert len(packages) >= 100
    top = [p for p in packages if p.path.endswith(f"/npm/node_modules/{p.name}/package.json")]
    assert top and all(p.version != "UNKNOWN" for p in top)
    assert npm.parse_package_json("a/package.json", b'{"version": "1.0.0"}') == Evidence()
    (stub,) = npm.parse_package_json("a/package.json", b'{"name": "@scope/left", "license": {"type": "MIT"}}').packages
    assert (stub.version, stub.licenses, purl.purl_of(stub, None)) == ("UNKNOWN", ("MIT",), "pkg:npm/%40scope/left")


def test_apk_recorded_database() -> None:
    ev = apk.parse_installed("lib/apk/db/installed", APK_DB.read_bytes())
    names = [p.name for p in ev.packages]
    assert names.count("musl") == 1 and "libcrypto1.0" in names
    crypto = next(p for p in ev.packages if p.name == "libcrypto1.0")
    distro = {"ID": "alpine", "VERSION_ID": "3.4.6"}
    assert purl.purl_of(crypto, distro) == (
        "pkg:apk/alpine/libcrypto1.0@1.0.2h-r1?arch=x86_64&distro=alpine-3.4.6&upstream=openssl")
    assert purl.purl_of(crypto, None) is None
    repos = b"https://dl-cdn.alpinelinux.org/alpine/v3.4/main\nhttps://dl-cdn.alpinelinux.org/alpine/v3.4/community\n"
    assert apk.parse_repositories("etc/apk/repositories", repos).facts == (("alpine_release", "3.4"),)


@pytest.mark.parametrize(("pkg", "distro", "want"), [
    # the purls inside.md A.1-A.6 records from syft 1.18.1 runs
    (Package("libc6", "2.36-9+deb12u4", "deb", "s", arch="amd64", source="glibc"), DEBIAN,
     "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"),
    (Package("libsystemd0", "252.22-1~deb12u1", "deb", "s", arch="amd64", source="systemd",
             source_version="252.22-1~deb12u1"), DEBIAN,
     "pkg:deb/debian/libsystemd0@252.22-1~deb12u1?arch=amd64&distro=debian-12&upstream=systemd%40252.22-1~deb12u1"),
    (Package("libc6", "2.35", "deb", "s", arch="amd64"), {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"},
     "pkg:deb/ubuntu/libc6@2.35?arch=amd64&distro=ubuntu-22.04"),
    (Package("libc6", "2.35", "deb", "s"), {"ID": "fedora", "VERSION_ID": "40"}, None),
    (Package("hello-syft", "2:1.0.2-3.fc40", "rpm", "s", arch="x86_64", source="hello-syft-1.0.2-3.fc40.src.rpm",
             purl_parts=(("vr", "1.0.2-3.fc40"), ("epoch", "2"))), {"ID": "fedora", "VERSION_ID": "40"},
     "pkg:rpm/fedora/hello-syft@1.0.2-3.fc40?arch=x86_64&distro=fedora-40&epoch=2&upstream=hello-syft-1.0.2-3.fc40.src.rpm"),
    (Package("plain", "0.9-1", "rpm", "s", arch="noarch", source="plain-0.9-1.src.rpm", purl_parts=(("vr", "0.9-1"),)),
     {"ID": "rhel", "VERSION_ID": "9.3"},
     "pkg:rpm/redhat/plain@0.9-1?arch=noarch&distro=rhel-9.3&upstream=plain-0.9-1.src.rpm"),
    (Package("github.com/cespare/xxhash/v2", "v2.3.0", "go-module", "s"), None,
     "pkg:golang/github.com/cespare/xxhash@v2.3.0#v2"),
    (Package("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", "v0.54.0", "go-module", "s"), None,
     "pkg:golang/go.opentelemetry.io/contrib/instrumentation@v0.54.0#net/http/otelhttp"),
    (Package("github.com/wagoodman/dive", "v0.13.1+dirty", "go-module", "s"), None,
     "pkg:golang/github.com/wagoodman/dive@v0.13.1%2Bdirty"),
    (Package("demo", "1.2.3", "java-archive", "s", purl_parts=(("group", "org.example"),)), None,
     "pkg:maven/org.example/demo@1.2.3"),
    (Package("@scope/leftpad", "1.3.0", "npm", "s"), None, "pkg:npm/%40scope/leftpad@1.3.0"),
    (Package("x", "1", "deb", "s", arch="amd64"), {"ID": "debian", "BUILD_ID": "rolling"},
     "pkg:deb/debian/x@1?arch=amd64&distro=debian-rolling"),
    (Package("x", "1", "apk", "s", arch="x86_64", source="x"), {"ID": "Alpine"},
     "pkg:apk/alpine/x@1?arch=x86_64&distro=Alpine"),
])
def test_purl_matches_syft(pkg: Package, distro: dict | None, want: str | None) -> None:
    assert purl.purl_of(pkg, distro) == want


def _mutants(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            out.append(data[:rng.randrange(len(data) + 1)])
        elif kind == 1:
            buf = bytearray(data)
            for _ in range(rng.randrange(1, 20)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            out.append(bytes(buf))
        elif kind == 2:
            cut = rng.randrange(len(data) + 1)
            out.append(data[:cut] + bytes([rng.choice(b"a: \n{[\"")]) * rng.randrange(1, 2_000_000) + data[cut:])
        else:
            cut = rng.randrange(len(data) + 1)
            out.append(data[:cut] + b"\n" * rng.randrange(1, 5) + b" continuation\n" + data[cut:])
    return out


def test_fuzzed_real_files_give_evidence_or_a_plain_error_quickly() -> None:
    """Truncations, byte flips, giant fields and orphan continuations of real files: every read returns
    Evidence or raises an ordinary Exception, within a time bound."""
    rng = random.Random(20261206)
    meta_path, meta = next(iter(inside_images.dist_infos().items()))
    json_path, pkg_json = next(iter(inside_images.npm_package_jsons().items()))
    seeds = [("var/lib/dpkg/status", b"".join(inside_images.dpkg_stanzas()[:40])), (meta_path, meta),
             (json_path, pkg_json), ("lib/apk/db/installed", APK_DB.read_bytes()),
             *inside_images.copyright_files(["libc6"]).items()]
    catalogers = [c for mod in (dpkg, apk, python, npm) for c in mod.CATALOGERS]
    outcomes = {"evidence": 0, "error": 0}
    for path, data in seeds:
        cats = [c for c in catalogers if c.wants(path, 0o644, len(data))]
        assert cats, path
        for mutant in _mutants(data, rng, 60):
            for cat in cats:
                start = time.monotonic()
                try:
                    assert isinstance(cat.read(path, mutant), Evidence)
                    outcomes["evidence"] += 1
                except Exception:  # noqa: BLE001 - any plain exception is what the pass records as Skipped
                    outcomes["error"] += 1
                assert time.monotonic() - start < 2.0, (path, len(mutant))
    assert outcomes["evidence"] > 0 and outcomes["error"] > 0

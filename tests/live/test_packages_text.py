"""``reg.packages()`` with the text catalogers, end to end on the real registry, against syft 1.18.1 on the
same images: one Debian image built from this machine's dpkg database and copyright files, the venv's wheels
and npm's own modules over four layers, and one Alpine image of trivy's recorded database.

The Debian image's layers (bottom first):
  0. os-release, half of the status file, every copyright file;
  1. the status rewritten: every stanza, one dropped, one ``deinstall ok config-files``, one ``hold ok
     installed``; a stanza moved to ``status.d/NAME`` with a duplicated field (a broken file);
  2. the wheels' METADATA (one truncated before its ``Name``: a broken file) and npm's package.json files;
  3. one wheel's folder whited out and its METADATA re-added elsewhere, another wheel's folder and one
     package.json whited out for good, an npm folder made opaque and re-added.

syft is the oracle of the (type, name, version) set, purls, evidence paths and deb licenses (``--scope
squashed``) and of the introducing layer (``--scope all-layers``: the lowest layer where syft found the
package at its path). syft's all-layers view does not model deletions (a re-added file still counts from
the lowest layer that ever held it), so the test counts only the layers above the last one that deleted the
path, read from the image's own layer specs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import inside_images
import pandas as pd
import pytest
from inside_images import Layer
from syft_oracle import SyftPackage, syft_packages

import regexplore as rx
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.xdist_group("packages_text")

APK_DB = Path(__file__).resolve().parents[1] / "fixtures" / "apk" / "installed"
PY = "usr/lib/python3/dist-packages"
NPM = "usr/lib/node_modules/npm/node_modules"
STATUS = "var/lib/dpkg/status"
INSTALLED = b"Status: install ok installed"


@dataclass(frozen=True, eq=False)
class Image:
    """A pushed test image: its registry host, reference, layer specs and layer digests (bottom first);
    hashed by identity (the session's scans and frames are cached by image)."""

    host: str
    ref: str
    layers: list[Layer]
    digests: list[str]

    def final_file(self, path: str) -> bytes:
        """The content of ``path`` in the image's top-most layer that writes it."""
        return next(layer.files[path] for layer in reversed(self.layers) if path in layer.files)

    def visible_since(self, path: str) -> int:
        """The index of the lowest layer whose ``path`` can still be seen: the last layer that whites it
        out (or one of its folders) or makes a folder above it opaque (hiding what is below it), else 0."""
        hiding = [i for i, layer in enumerate(self.layers) for gone in [*layer.whiteouts, *layer.opaque]
                  if path == gone or path.startswith(gone + "/")]
        return max(hiding, default=0)


@cache
def syft(image: Image, scope: str) -> tuple[SyftPackage, ...]:
    """syft's packages of ``image``: one scan per scope per image in the session."""
    return tuple(syft_packages(image.host, image.ref, scope=scope))


def package_name(stanza: bytes) -> str:
    return re.search(rb"(?m)^Package: (.*)$", stanza).group(1).decode()


def not_installed(status: bytes) -> set[tuple[str, str]]:
    """(Package, Version) of the stanzas whose Status, read from the file, is not ``install ok installed``
    nor ``hold ok installed`` (syft 1.18.1 lists them, dpkg does not count them as installed)."""
    out = set()
    for stanza in status.decode().split("\n\n"):
        fields = dict(re.findall(r"(?m)^(Package|Version|Status): (.*)$", stanza))
        if "Package" in fields and fields.get("Status") not in (None, "install ok installed", "hold ok installed"):
            out.add((fields["Package"], fields["Version"]))
    return out


@pytest.fixture(scope="module")
def text_registry(own_registry: LocalRegistry) -> LocalRegistry:
    return own_registry


@pytest.fixture(scope="module")
def deb_image(text_registry: LocalRegistry) -> Image:
    """The four-layer Debian image of the module docstring."""
    stanzas = inside_images.dpkg_stanzas()
    removed = stanzas[3].replace(INSTALLED, b"Status: deinstall ok config-files")
    held = stanzas[4].replace(INSTALLED, b"Status: hold ok installed")
    broken = stanzas[5].replace(b"\nVersion: ", b"\nVersion: 0\nVersion: ", 1)
    assert removed != stanzas[3] and held != stanzas[4] and broken != stanzas[5]
    wheels = inside_images.dist_infos(PY)
    modules = inside_images.npm_package_jsons(NPM)
    truncated, gone = list(wheels)[1], list(wheels)[0].rsplit("/", 1)[0]
    wheels[truncated] = wheels[truncated][:wheels[truncated].index(b"\nName:") + 1]
    opaque_dir = f"{NPM}/semver"
    deleted = [list(wheels)[2].rsplit("/", 1)[0], next(p for p in modules if p.count("/") == 6 and "semver" not in p)]
    layers = [
        Layer({"etc/os-release": Path("/etc/os-release").read_bytes(), STATUS: b"".join(stanzas[:len(stanzas) // 2]),
               **inside_images.copyright_files([package_name(s) for s in stanzas])}),
        Layer({STATUS: b"".join([*stanzas[:2], removed, held, *stanzas[6:]]),
               f"var/lib/dpkg/status.d/{package_name(broken)}": broken}),
        Layer({**wheels, **modules}),
        Layer({f"{opaque_dir}/package.json": modules[f"{opaque_dir}/package.json"],
               f"opt/venv/lib/python3.11/site-packages/{gone.rsplit('/', 1)[1]}/METADATA": wheels[f"{gone}/METADATA"]},
              whiteouts=[gone, *deleted], opaque=[opaque_dir]),
    ]
    pushed = inside_images.build_image(text_registry.url, "inside/text", "deb", layers)
    return Image(text_registry.host, pushed.ref, layers, list(pushed.layer_digests))


@pytest.fixture(scope="module")
def apk_image(text_registry: LocalRegistry) -> Image:
    """One layer: trivy's recorded Alpine database and a repositories file naming Alpine 3.4 (no os-release)."""
    layers = [Layer({"lib/apk/db/installed": APK_DB.read_bytes(),
                     "etc/apk/repositories": b"https://dl-cdn.alpinelinux.org/alpine/v3.4/main\n"})]
    pushed = inside_images.build_image(text_registry.url, "inside/text", "apk", layers)
    return Image(text_registry.host, pushed.ref, layers, list(pushed.layer_digests))


@cache
def packages(image: Image) -> pd.DataFrame:
    """``reg.packages()`` of ``image``, once per session."""
    with rx.Registry(f"http://{image.host}") as reg:
        return reg.packages(image.ref)


def by_key(frame: pd.DataFrame) -> dict[tuple[str, str, str], dict]:
    """The frame's rows by (type, name, version); fails on a duplicate key."""
    rows = frame.to_dict("records")
    keyed = {(r["type"], r["name"], r["version"]): r for r in rows}
    assert len(keyed) == len(rows), "a (type, name, version) listed twice"
    return keyed


def check_against_syft(image: Image, skip: set[tuple[str, str, str]] = frozenset()) -> dict:
    """Assert that ``packages(image)`` has syft's (type, name, version) set (less ``skip``), purls, evidence
    paths and introducing layers; return our rows by key."""
    ours = by_key(packages(image))
    theirs = {(p.type, p.name, p.version): p for p in syft(image, "squashed")}
    assert set(ours) == set(theirs) - skip
    assert {k: r["purl"] for k, r in ours.items()} == {k: theirs[k].purl for k in ours}
    assert {k: {r["path"]} for k, r in ours.items()} == {k: theirs[k].paths for k in ours}
    every = {}
    for p in syft(image, "all-layers"):
        every.setdefault((p.type, p.name, p.version), []).append(p)
    want = {}
    for k, r in ours.items():
        (lowest,) = {layer for p in every[k] if (layer := p.lowest_layer(r["path"], image.visible_since(r["path"])))}
        want[k] = lowest
    assert {k: r["layer"] for k, r in ours.items()} == want
    return ours


def test_deb_python_npm_equal_syft(deb_image: Image) -> None:
    skip = {("deb", n, v) for n, v in not_installed(deb_image.final_file(STATUS))}
    assert len(skip) == 1, "the image holds one stanza that is not installed"
    ours = check_against_syft(deb_image, skip)
    counts = pd.Series([k[0] for k in ours]).value_counts()
    assert counts["deb"] >= 300 and counts["python"] >= 50 and counts["npm"] >= 100
    theirs = {(p.type, p.name, p.version): p.licenses for p in syft(deb_image, "squashed")}
    assert {k: tuple(sorted(r["licenses"])) for k, r in ours.items() if k[0] == "deb"} == {
        k: theirs[k] for k in ours if k[0] == "deb"}
    assert sum(bool(r["licenses"]) for k, r in ours.items() if k[0] == "deb") >= 300


def test_deb_layers_removed_held_and_rewritten_unchanged(deb_image: Image) -> None:
    """Read from the image's own layers, not from syft: what the status rewrite does to each package."""
    rows = packages(deb_image)
    deb = rows[rows.type == "deb"].set_index("name")
    stanzas = inside_images.dpkg_stanzas()
    names = [package_name(s) for s in stanzas]
    assert names[2] not in deb.index and names[3] not in deb.index and names[5] not in deb.index
    assert deb.loc[names[0], "layer"] == deb.loc[names[4], "layer"] == deb_image.digests[0]  # unchanged, held
    assert deb.loc[names[-1], "layer"] == deb_image.digests[1]  # added by the rewrite
    assert set(deb.path) == {STATUS}


def test_whiteouts_remove_and_readd(deb_image: Image) -> None:
    """Read from the image's own layers, not from syft: no package read from a deleted path; the wheel
    deleted and re-added elsewhere comes from its new path, introduced by the top layer."""
    rows = packages(deb_image)
    top = deb_image.layers[3]
    assert not [p for p in rows.path for gone in top.whiteouts if p == gone or p.startswith(gone + "/")]
    (readded,) = [p for p in top.files if p.endswith("/METADATA")]
    assert rows.set_index("path").loc[readded, "layer"] == deb_image.digests[3]
    wheels = [p for p in deb_image.layers[2].files if p.endswith("/METADATA")]
    assert (rows.type == "python").sum() == len(wheels) - 2  # one truncated, one deleted


def test_skipped_lists_the_broken_files_with_their_reason(deb_image: Image) -> None:
    skipped = packages(deb_image).attrs["skipped"]
    by_path = {s["path"]: s for s in skipped}
    status_d = next(p for p in deb_image.layers[1].files if p.startswith("var/lib/dpkg/status.d/"))
    metadata = next(p for p, d in deb_image.layers[2].files.items() if p.endswith("/METADATA") and b"\nName:" not in d)
    assert set(by_path) == {status_d, metadata}
    assert by_path[status_d]["layer"] == deb_image.digests[1]
    assert "duplicate field 'Version'" in by_path[status_d]["reason"]
    assert by_path[metadata]["layer"] == deb_image.digests[2]
    assert "no Name field" in by_path[metadata]["reason"]


def test_types_filter(deb_image: Image) -> None:
    everything = packages(deb_image)
    with rx.Registry(f"http://{deb_image.host}") as reg:
        some = reg.packages(deb_image.ref, types=["python", "npm"])
        debs = reg.packages(deb_image.ref, types="deb")
        with pytest.raises(ValueError, match="unknown package types"):
            reg.packages(deb_image.ref, types=["pip"])
    for frame, kinds in ((some, {"python", "npm"}), (debs, {"deb"})):
        assert set(frame.type) == kinds
        want = everything[everything.type.isin(kinds)].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), want)


def test_apk_equals_syft(apk_image: Image) -> None:
    ours = check_against_syft(apk_image)
    assert len(ours) >= 10 and {k[0] for k in ours} == {"apk"}
    assert packages(apk_image).attrs["os_release"] is None

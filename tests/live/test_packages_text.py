"""The text catalogers against syft 1.18.1 on the same images in the real registry: images built from this
machine's dpkg database and copyright files, the venv's wheels, npm's own modules and trivy's recorded Alpine
database, over several layers (a status rewrite adding packages and removing one, a whiteout, an opaque dir).

Until the layer pass and ``reg.packages()`` land (branch rs/inside-core), the catalogers read the files of the
final filesystem as the test itself stacks them; syft reads the image from the registry."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import inside_images
import pytest
from conftest import start_sandbox
from inside_images import Layer
from syft_oracle import syft_packages

from regexplore.content.inside.catalogers import apk, dpkg, npm, purl, python
from regexplore.sandbox import LocalRegistry

APK_DB = Path(__file__).resolve().parents[1] / "fixtures" / "apk" / "installed"
CATALOGERS = [c for mod in (dpkg, apk, python, npm) for c in mod.CATALOGERS]
PY = "usr/lib/python3/dist-packages"
NPM = "usr/lib/node_modules/npm/node_modules"


def final_files(layers: Sequence[Layer]) -> dict[str, bytes]:
    """The regular files of the stacked layers (whiteouts and opaque dirs hide lower content)."""
    files: dict[str, bytes] = {}
    for layer in layers:
        for hidden in [*layer.whiteouts, *layer.opaque]:
            files = {p: d for p, d in files.items() if p != hidden and not p.startswith(hidden + "/")}
        files.update(layer.files)
    return files


def catalog(files: dict[str, bytes], distro: dict | None) -> dict[str, dict[tuple[str, str], str | None]]:
    """Per type, {(name, version): purl} read by our catalogers from ``files``."""
    out: dict[str, dict[tuple[str, str], str | None]] = {}
    for path, data in files.items():
        for cat in CATALOGERS:
            if cat.wants(path, 0o644, len(data)):
                for pkg in cat.read(path, data).packages:
                    out.setdefault(pkg.type, {})[(pkg.name, pkg.version)] = purl.purl_of(pkg, distro)
    return out


def not_installed(status: bytes) -> set[tuple[str, str]]:
    """(Package, Version) of the stanzas whose Status, read from the file, is not ``install ok installed``."""
    out = set()
    for stanza in status.decode().split("\n\n"):
        fields = dict(re.findall(r"(?m)^(Package|Version|Status): (.*)$", stanza))
        if "Package" in fields and fields.get("Status", "install ok installed") != "install ok installed":
            out.add((fields["Package"], fields["Version"]))
    return out


@pytest.fixture(scope="module")
def deb_image(empty_sandbox_module: LocalRegistry) -> tuple[str, str, list[Layer]]:
    """(host, ref, layers) of a Debian image: dpkg db rewritten by layer 1 (a package removed), wheels and npm
    modules in layer 2, one wheel deleted and moved and an npm dir made opaque and re-added in layer 3."""
    stanzas = inside_images.dpkg_stanzas()
    removed = stanzas[3].replace(b"Status: install ok installed", b"Status: deinstall ok config-files")
    names = [re.search(rb"(?m)^Package: (.*)$", s).group(1).decode() for s in stanzas]
    wheels = inside_images.dist_infos(PY)
    modules = inside_images.npm_package_jsons(NPM)
    gone = next(iter(wheels)).rsplit("/", 1)[0]
    opaque_dir = f"{NPM}/semver"
    layers = [
        Layer({"etc/os-release": Path("/etc/os-release").read_bytes(),
               "var/lib/dpkg/status": b"".join(stanzas[: len(stanzas) // 2]), **inside_images.copyright_files(names)}),
        Layer({"var/lib/dpkg/status": b"".join(stanzas[:3] + [removed] + stanzas[4:])}),
        Layer({**wheels, **modules}),
        Layer({f"{opaque_dir}/package.json": modules[f"{opaque_dir}/package.json"],
               f"opt/venv/lib/python3.11/site-packages/{gone.rsplit('/', 1)[1]}/METADATA": wheels[f"{gone}/METADATA"]},
              whiteouts=[gone], opaque=[opaque_dir]),
    ]
    image = inside_images.build_image(empty_sandbox_module.url, "inside/text", "deb", layers)
    return empty_sandbox_module.host, image.ref, layers


@pytest.fixture(scope="module")
def empty_sandbox_module() -> Iterator[LocalRegistry]:
    """An empty registry shared by this module's images."""
    sandbox = start_sandbox()
    yield sandbox
    sandbox.stop()


def os_release(data: bytes) -> dict[str, str]:
    """The ``KEY=value`` fields of an os-release file."""
    return {k: v.strip('"') for k, v in re.findall(r"(?m)^([A-Z_]+)=(.*)$", data.decode())}


def test_deb_python_npm_equal_syft(deb_image: tuple[str, str, list[Layer]]) -> None:
    host, ref, layers = deb_image
    files = final_files(layers)
    ours = catalog(files, os_release(files["etc/os-release"]))
    theirs: dict[str, dict[tuple[str, str], str]] = {}
    for p in syft_packages(host, ref):
        theirs.setdefault(p.type, {})[(p.name, p.version)] = p.purl
    skip = not_installed(files["var/lib/dpkg/status"])
    assert skip, "the image must hold a stanza that is not installed"
    theirs["deb"] = {k: v for k, v in theirs["deb"].items() if k not in skip}
    assert set(ours) == set(theirs) == {"deb", "python", "npm"}
    for kind in ours:
        assert set(ours[kind]) == set(theirs[kind]), kind
        assert ours[kind] == theirs[kind], kind
    assert len(ours["deb"]) >= 300 and len(ours["python"]) >= 50 and len(ours["npm"]) >= 100


def test_apk_equals_syft(empty_sandbox_module: LocalRegistry) -> None:
    repositories = b"https://dl-cdn.alpinelinux.org/alpine/v3.4/main\n"
    layers = [Layer({"lib/apk/db/installed": APK_DB.read_bytes(), "etc/apk/repositories": repositories})]
    image = inside_images.build_image(empty_sandbox_module.url, "inside/text", "apk", layers)
    files = final_files(layers)
    (release,) = [v for k, v in apk.parse_repositories("etc/apk/repositories", repositories).facts]
    ours = catalog(files, {"ID": "alpine", "VERSION_ID": release})["apk"]
    theirs = {(p.name, p.version): p.purl for p in syft_packages(empty_sandbox_module.host, image.ref)}
    assert ours == theirs

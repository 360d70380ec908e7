"""``reg.packages()`` for rpm, go-module and java-archive against syft 1.18.1 on one image in the real
registry, built at test time from real content (tests/support/inside_binary.py): rpm databases made by
rpmbuild + ``rpm --root`` (sqlite), ``db5.3_load`` (BerkeleyDB) and the NDB layout, dive's Go binary,
Debian's jars and a war/ear nesting them, a Fedora 42 os-release (tests/fixtures/os-release/README.md).

Four layers: (0) os-release, an rpmdb.sqlite of two packages, a BerkeleyDB of three; (1) dive, an NDB,
Debian's jars and hand-made edge jars; (2) rpmdb.sqlite rewritten with one more package, a war and an ear;
(3) a jar deleted. One syft scan, ``--scope all-layers``: its packages found only under the deleted jar are
the ones the final filesystem no longer has; each other package's introducing layer is the lowest layer of
its primary evidence (inside.md A.9)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import inside_binary
import inside_images
import pytest
from conftest import start_sandbox
from inside_images import Layer
from syft_oracle import SyftPackage, syft_packages

import regexplore as rx
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.live
FEDORA = Path(__file__).resolve().parents[1] / "fixtures" / "os-release" / "fedora-42"
TYPES = ("rpm", "go-module", "java-archive")
APP = "opt/app"
RPMDB = "var/lib/rpm/rpmdb.sqlite"


def _layers(work: Path) -> tuple[list[Layer], str]:
    """The image's layers and the path of the jar the last one deletes."""
    two = inside_binary.build_rpmdb(work / "two", inside_binary.RPMS[:2])
    three = inside_binary.build_rpmdb(work / "three")
    blobs = inside_binary.header_blobs(three / RPMDB)
    bdb = inside_binary.bdb_packages(blobs, work / "Packages")
    ndb = inside_binary.ndb_packages(blobs, work / "Packages.db")
    jars = inside_binary.debian_jars()
    names = sorted(jars)
    war = inside_binary.nest_archive(work / "shop.war", {f"WEB-INF/lib/{n}": jars[n] for n in names[:2]})
    ear = inside_binary.nest_archive(work / "suite.ear", {"shop.war": war.read_bytes(),
                                                          f"lib/{names[2]}": jars[names[2]]})
    deleted = f"{APP}/{names[3]}"
    layers = [
        Layer({"etc/os-release": FEDORA.read_bytes(), RPMDB: (two / RPMDB).read_bytes(),
               "opt/bdb/var/lib/rpm/Packages": bdb.read_bytes()}),
        Layer({"usr/bin/dive": inside_binary.DIVE_BINARY.read_bytes(),
               "opt/ndb/usr/lib/sysimage/rpm/Packages.db": ndb.read_bytes(),
               **{f"{APP}/{n}": data for n, data in jars.items()},
               **{f"{APP}/edge/{n}": data for n, data in inside_binary.edge_jars().items()}}),
        Layer({RPMDB: (three / RPMDB).read_bytes(), f"{APP}/shop.war": war.read_bytes(),
               f"{APP}/suite.ear": ear.read_bytes()}),
        Layer(whiteouts=[deleted]),
    ]
    return layers, deleted


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, str, list[str], str]]:
    """(registry, ref, layer digests, deleted jar path) of the image, pushed once for the module."""
    layers, deleted = _layers(tmp_path_factory.mktemp("binary-image"))
    sandbox = start_sandbox()
    try:
        pushed = inside_images.build_image(sandbox.url, "inside/binary", "v1", layers)
        yield sandbox, pushed.ref, list(pushed.layer_digests), deleted
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def syft_all_layers(image: tuple[LocalRegistry, str, list[str], str]) -> list[SyftPackage]:
    """syft's packages of our three types, ``--scope all-layers`` (the one syft scan of the image)."""
    sandbox, ref, _, _ = image
    return [p for p in syft_packages(sandbox.host, ref, scope="all-layers") if p.type in TYPES]


@pytest.fixture(scope="module")
def ours(image: tuple[LocalRegistry, str, list[str], str]) -> list[dict]:
    """``reg.packages()`` of the image, our three types, as records."""
    sandbox, ref, _, _ = image
    with rx.Registry(sandbox.url) as reg:
        frame = reg.packages(ref, types=list(TYPES))
    assert not frame.attrs["skipped"], frame.attrs["skipped"]
    return frame.to_dict("records")


def _only_under(p: SyftPackage, deleted: str) -> bool:
    return all(path.lstrip("/").startswith(deleted) for path in p.paths)


def test_same_packages_purls_and_layers_as_syft(image, syft_all_layers, ours) -> None:
    _, _, _, deleted = image
    gone = [p for p in syft_all_layers if _only_under(p, deleted)]
    assert gone, "syft's all-layers scan must still list the deleted jar's package"
    theirs = Counter((p.type, p.name, p.version, p.purl, p.layer) for p in syft_all_layers if p not in gone)
    mine = Counter((r["type"], r["name"], r["version"], r["purl"], r["layer"]) for r in ours)
    assert mine == theirs  # as multisets: a jar nested in the war and in the ear is two packages
    assert {g.name for g in gone}.isdisjoint({r["name"] for r in ours if r["type"] == "java-archive"})
    by_type = {t: [r for r in ours if r["type"] == t] for t in TYPES}
    assert len(by_type["rpm"]) == 9 and len(by_type["go-module"]) >= 50 and len(by_type["java-archive"]) >= 8
    assert any("distro=fedora-42" in r["purl"] and "epoch=2" in r["purl"] for r in by_type["rpm"])
    assert any(r["version"] == "UNKNOWN" for r in by_type["java-archive"])


def test_rewritten_rpmdb_keeps_the_introducing_layer(image, ours) -> None:
    """rpmdb.sqlite of layer 2 adds one package to layer 0's two: those two stay introduced by layer 0."""
    _, _, digests, _ = image
    sqlite_rows = {r["name"]: r["layer"] for r in ours if r["path"] == RPMDB}
    first_two = {r.name for r in inside_binary.RPMS[:2]}
    assert sqlite_rows == {n: digests[0] if n in first_two else digests[2] for n in sqlite_rows}
    assert len(sqlite_rows) == 3

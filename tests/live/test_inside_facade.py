"""The inside-an-image facade on the real registry: os_release() against syft 1.18.1's ``distro`` on the same
images, packages() with the introducing layer (small explicit catalogers: the real ones come from their own
modules), and each layer read once across packages/efficiency/os_release/files and images sharing layers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from layerkit import build_layer
from pushing import push_image

import regexplore as rx
from regexplore.content.inside.model import Cataloger, Evidence, Package
from regexplore.content.inside.osrelease import CATALOGERS as RELEASE

pytestmark = pytest.mark.live
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
SYFT = shutil.which("syft") or os.path.join(os.path.dirname(sys.executable), "syft")
HOST_RELEASE = Path("/usr/lib/os-release").read_bytes()  # this machine's own (Debian's) os-release

RELEASE_IMAGES = {
    "debian": dict(files={"usr/lib/os-release": HOST_RELEASE}, symlinks={"etc/os-release": "../usr/lib/os-release"}),
    "quoted": dict(files={"etc/os-release": b"# c\nNAME='My OS'\nID=myos\nVERSION_ID=\"1.2\"\n"
                                            b"PRETTY_NAME=\"My \\\"OS\\\" 1.2\"\nID_LIKE=\"debian  ubuntu\"\n"}),
    "empty-then-lib": dict(files={"etc/os-release": b"FOO=bar\n", "usr/lib/os-release": b"ID=lib\nVERSION_ID=3\n"}),
    "cpe": dict(files={"etc/system-release-cpe": b"cpe:/o:centos:linux:6:GA\n"}),
    "redhat": dict(files={"etc/redhat-release": b"CentOS release 6.10 (Final)\n"}),
    "busybox": dict(files={"bin/busybox": os.urandom(3000) + b"\0BusyBox v1.36.1 (2024-01-01) multi-call\0"
                                          + os.urandom(3000)}),
    "nothing": dict(files={"etc/hostname": b"x\n"}),
}
#: syft-json distro key -> os-release key
SYFT_KEYS = {"prettyName": "PRETTY_NAME", "name": "NAME", "id": "ID", "version": "VERSION",
             "versionID": "VERSION_ID", "versionCodename": "VERSION_CODENAME", "buildID": "BUILD_ID",
             "homeURL": "HOME_URL", "supportURL": "SUPPORT_URL", "bugReportURL": "BUG_REPORT_URL",
             "cpeName": "CPE_NAME", "variantID": "VARIANT_ID"}


@pytest.fixture(scope="module")
def sandbox(own_registry):
    return own_registry


def push(sandbox, repo, layers):
    built = [build_layer(**kw) for kw in layers]
    return push_image(sandbox.url, repo, "v1", [(b, GZ) for b, _ in built], diff_ids=[d for _, d in built])


def syft_distro(sandbox, ref, tmp_path):
    out = tmp_path / "syft.json"
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    proc = subprocess.run([SYFT, "scan", f"registry:{sandbox.host}/{ref}", "-q", "-o", f"syft-json={out}"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())["distro"]


@pytest.mark.parametrize("name", sorted(RELEASE_IMAGES))
def test_os_release_equals_syft(sandbox, tmp_path, name):
    ref = push(sandbox, f"inside/release-{name}", [RELEASE_IMAGES[name]]).ref
    expected = syft_distro(sandbox, ref, tmp_path)
    with rx.Registry(sandbox.url) as reg:
        got = reg.os_release(ref)
    if not expected:
        assert got is None
        return
    assert got is not None
    for key, ours in SYFT_KEYS.items():
        assert got.get(ours, "") == expected.get(key, ""), key
    assert (got.get("ID_LIKE") or "").split() == expected.get("idLike", [])


def lines_cataloger(evidence_path="var/lib/pk"):
    """A tiny package database: one ``name version`` per line."""
    def read(path, data):
        return Evidence(packages=tuple(Package(n, v, "deb", path) for n, v in
                                       (line.split() for line in data.decode().splitlines())))
    return Cataloger("lines", "deb", lambda p, m, n: "whole" if p == evidence_path else None, read)


def test_packages_carry_the_introducing_layer(sandbox):
    image = push(sandbox, "inside/intro", [
        dict(files={"var/lib/pk": b"a 1\nb 1\ngone 1\n"}),
        dict(files={"var/lib/pk": b"a 1\nb 2\ngone 1\nc 1\n"}),
        dict(files={"other": b"x"}),
        dict(whiteouts=["var/lib/pk"]),
        dict(files={"var/lib/pk": b"a 1\nb 2\nd 1\n"}),
        dict(files={"var/lib/pk": b"a 1\nb 2\nd 1\ne 1\n"}),
    ])
    L = image.layer_digests
    with rx.Registry(sandbox.url) as reg:
        reg._layers.catalogers = (lines_cataloger(), *RELEASE)
        df = reg.packages(image.ref)
        with pytest.raises(ValueError, match="go-module"):
            reg.packages(image.ref, types=["debs"])
        assert reg.packages(image.ref, types=["rpm"]).empty
    got = {(r.name, r.version): r.layer for r in df.itertuples()}
    # the whiteout in layer 3 cuts the history: nothing is older than layer 4
    assert got == {("a", "1"): L[4], ("b", "2"): L[4], ("d", "1"): L[4], ("e", "1"): L[5]}
    assert set(df["path"]) == {"var/lib/pk"} and df.attrs["skipped"] == []


def test_each_layer_is_read_once_across_views_and_images(sandbox):
    base = [dict(files={"usr/lib/os-release": HOST_RELEASE, "var/lib/pk": b"a 1\n"},
                 symlinks={"etc/os-release": "../usr/lib/os-release"}),
            dict(files={"var/lib/pk": b"a 1\nb 1\n"})]
    one = push(sandbox, "inside/share-1", base)
    two = push(sandbox, "inside/share-2", [*base, dict(files={"var/lib/pk": b"a 1\nb 1\nc 1\n"})])
    with rx.Registry(sandbox.url) as reg:
        reg._layers.catalogers = (lines_cataloger(), *RELEASE)
        reg.packages(one.ref)
        reg.efficiency(one.ref)
        assert reg.os_release(one.ref)["ID"] == "debian"
        assert len(reg.files(one.ref)) == len(reg.files(one.ref, max_bytes=1 << 30))
        assert set(reg.packages(two.ref)["name"]) == {"a", "b", "c"}
        trace = reg.trace
    gets = [u for m, u in zip(trace["method"], trace["url"]) if m == "GET" and "/blobs/sha256:" in u]
    layer_gets = [u for u in gets if any(d in u for d in two.layer_digests)]
    # 3 distinct layers, read once by the pass, plus the one files(max_bytes=...) read that bypasses the cache
    assert len(layer_gets) == 3 + len(one.layer_digests)

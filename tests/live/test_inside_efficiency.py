"""reg.efficiency() against dive 0.13.1 itself: images pushed to the real registry, copied by skopeo to a
docker-archive, read by ``dive --json``; wasted bytes and image size equal, the score to 1e-9, on images
carrying dive's quirks (a deleted folder, an opaque whiteout, a whiteout of a missing path, a folder that a
later layer names only as a parent)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from layerkit import build_layer
from pushing import push_image

import regexplore as rx

pytestmark = pytest.mark.live
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DIVE = shutil.which("dive") or os.path.join(os.path.dirname(sys.executable), "dive")

#: name -> layers (build_layer keyword arguments), oldest first
IMAGES = {
    "three": [
        dict(dirs=["etc", "opt/data", "var/lib/dpkg"], files={
            "big.bin": os.urandom(30_000), "same.txt": b"s" * 400, "opt/data/a": b"a" * 700,
            "opt/data/b": b"b" * 300, "var/lib/dpkg/status": b"Package: x\n" * 80, "etc/keep": b"k" * 50}),
        dict(files={"big.bin": os.urandom(20_000), "same.txt": b"s" * 400, "var/lib/dpkg/status": b"P\n" * 90,
                    "etc/new": b"n" * 10}, whiteouts=["opt/data"], opaque=["etc"]),
        dict(files={"zz/late": b"z" * 1234, "aa/early": b"e" * 99}, whiteouts=["big.bin", "ghost"]),
    ],
    "parent-only": [  # "d" is a folder in layer 0, only a parent in layer 1, then deleted in layer 2
        dict(dirs=["d"], files={"d/x": b"x" * 500, "d/y": b"y" * 200, "e": b"e" * 40}),
        dict(files={"d/z": b"z" * 10}),
        dict(whiteouts=["d"], files={"e": b"e" * 5}),
    ],
    "single": [dict(dirs=["a"], files={"a/f": b"f" * 123, "g": b"g" * 7})],
    "deep": [  # a path of 3,000 components (a PAX name): copying the tree once recursed (RecursionError)
        dict(files={"a/" * 3000 + "f": b"1" * 100, "top": b"t" * 10}),
        dict(files={"a/" * 3000 + "f": b"2" * 80}),
    ],
    "readded": [
        dict(files={"f": b"1" * 100}),
        dict(whiteouts=["f"]),
        dict(files={"f": b"2" * 60}),
    ],
}


@pytest.fixture(scope="module")
def sandbox(own_registry):
    return own_registry


@pytest.fixture(scope="module")
def pushed(sandbox):
    refs = {}
    for name, layers in IMAGES.items():
        built = [build_layer(**kw) for kw in layers]
        refs[name] = push_image(sandbox.url, f"inside/eff-{name}", "v1", [(b, GZ) for b, _ in built],
                                diff_ids=[d for _, d in built]).ref
    return refs


def dive_json(skopeo, sandbox, ref, tmp_path):
    archive, out = tmp_path / "image.tar", tmp_path / "dive.json"
    skopeo("copy", f"docker://{sandbox.host}/{ref}", f"docker-archive:{archive}:{ref}", raw=True)
    proc = subprocess.run([DIVE, "--source", "docker-archive", str(archive), "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_efficiency_equals_dive(sandbox, skopeo, pushed, tmp_path, name):
    ref = pushed[name]
    report = dive_json(skopeo, sandbox, ref, tmp_path)
    dive, layers = report["image"], report["layer"]
    with rx.Registry(sandbox.url) as reg:
        eff = reg.efficiency(ref)
    assert eff.image_size == dive["sizeBytes"]
    assert eff.wasted_bytes == dive["inefficientBytes"]
    assert abs(eff.score - dive["efficiencyScore"]) <= 1e-9
    user = dive["sizeBytes"] - layers[0]["sizeBytes"]
    assert eff.user_wasted_percent == (dive["inefficientBytes"] / user if user else 0.0)
    mine = sorted(zip(eff.files["path"], eff.files["count"], eff.files["size"]))
    theirs = sorted((f["file"].lstrip("/"), f["count"], f["sizeBytes"]) for f in dive["fileReference"])
    assert mine == theirs
    assert list(eff.files["size"]) == sorted(eff.files["size"], reverse=True)
    assert eff.files.attrs["reference"].endswith(ref)
    assert "efficiency" in eff._repr_html_()

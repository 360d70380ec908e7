"""A package whose fields form no package URL (review H6): an npm ``package.json`` named ``@scope/`` or a
Go-style ``a/`` splits into an empty purl name, which packageurl refuses. It used to raise ValueError out
of ``reg.packages()`` for the whole image; now that package has no purl and ``attrs["skipped"]`` names
its file, every other package listed as before."""

from __future__ import annotations

import json

import pandas as pd
from layerkit import build_layer
from pushing import push_image

import regexplore as rx


def _package_json(name: str, version: str) -> bytes:
    return json.dumps({"name": name, "version": version}).encode()


def test_unnamed_purl_is_skipped_not_raised(empty_sandbox) -> None:
    blob, _ = build_layer({"app/node_modules/good/package.json": _package_json("good", "1.0.0"),
                           "app/node_modules/bad/package.json": _package_json("@scope/", "2.0.0"),
                           "app/node_modules/worse/package.json": _package_json("a/", "3.0.0")})
    push_image(empty_sandbox.url, "hostile/names", "v1", [(blob, "application/vnd.oci.image.layer.v1.tar+gzip")])
    frame = rx.Registry(empty_sandbox.url).packages("hostile/names:v1")
    purls = dict(zip(frame["name"], frame["purl"]))
    assert purls["good"] == "pkg:npm/good@1.0.0"
    assert pd.isna(purls["@scope/"]) and pd.isna(purls["a/"]), purls
    skipped = {s["path"]: s["reason"] for s in frame.attrs["skipped"]}
    assert "no package URL" in skipped["app/node_modules/bad/package.json"], skipped
    assert "no package URL" in skipped["app/node_modules/worse/package.json"], skipped
    assert "app/node_modules/good/package.json" not in skipped

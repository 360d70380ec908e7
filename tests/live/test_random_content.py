"""Regressions found by checking regexplore against random images (content pushed to a real registry).

* read_file of a hardlink must give the file the link was made to (layer.md "Applying Changesets": a
  layer is extracted like a tar, so the link shares the inode its target had then); a later layer that
  rewrites or whites out the target path, or a rewrite later in the same tar, does not change it.
* a layer that is a pax archive holding only a global header (type ``g``) then the end-of-archive
  marker is an empty layer (POSIX pax; GNU tar lists it as empty), not "not a tar archive".

Seeds are fixed, so every run builds the same images.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile

import pytest
from layerkit import compress, info, raw_tar, sha256_digest

import regexplore as rx
from regexplore.model import oci
from regexplore.sandbox import LocalRegistry

MEDIA = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
         "none": "application/vnd.oci.image.layer.v1.tar"}


@pytest.fixture(scope="module")
def reg():
    with LocalRegistry() as sandbox, rx.Registry(sandbox.url) as r:
        yield r


def push(reg, ref, tars, compressions=None):
    """Push an image whose layers are the uncompressed ``tars`` (oldest first)."""
    repo, tag = ref.split(":")
    compressions = compressions or ["gzip"] * len(tars)
    descs = []
    for tar, how in zip(tars, compressions):
        blob = compress(tar, how)
        descs.append({"mediaType": MEDIA[how], "digest": reg.v2.upload_blob(repo, blob), "size": len(blob)})
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [sha256_digest(t) for t in tars]},
                      "history": [{"created_by": f"step {i}"} for i in range(len(tars))]}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                      "config": {"mediaType": oci.OCI_CONFIG, "digest": reg.v2.upload_blob(repo, cfg),
                                 "size": len(cfg)}, "layers": descs}).encode()
    reg.v2.put_manifest(repo, tag, man, oci.OCI_MANIFEST)
    return ref


def f(name, data):
    return info(name, "file", size=len(data)), data


def link(name, target):
    return info(name, "hardlink", linkname=target)


def wh(name):
    head, _, base = name.rpartition("/")
    return info(f"{head}/.wh.{base}" if head else f".wh.{base}", mode=0o600)


def read(reg, ref, path):
    try:
        return reg.read_file(ref, path)
    except FileNotFoundError:
        return None


def extracted(reg, ref, tmp_path):
    dest = tmp_path / ref.replace("/", "_").replace(":", "_")
    reg.extract(ref, str(dest))
    out = {}
    for dirpath, _dirs, files in os.walk(dest):
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                with open(full, "rb") as fh:
                    out[os.path.relpath(full, dest)] = fh.read()
    return out


HARDLINK_CASES = {
    # name: (layers, {path: expected bytes or None for absent})
    "target-rewritten-later": ([[f("t", b"A"), link("h", "t")], [f("t", b"B")]], {"h": b"A", "t": b"B"}),
    "target-whited-out": ([[f("t", b"A"), link("h", "t")], [wh("t")]], {"h": b"A", "t": None}),
    "rewritten-in-same-tar": ([[f("t", b"A"), link("h", "t"), f("t", b"B")]], {"h": b"A", "t": b"B"}),
    "cross-layer-link": ([[f("d/t", b"A")], [link("d/h", "d/t")], [f("d/t", b"C")]],
                         {"d/h": b"A", "d/t": b"C"}),
    "link-to-link": ([[f("t", b"A"), link("h1", "t")], [link("h2", "h1"), f("t", b"B")], [wh("h1")]],
                     {"h2": b"A", "t": b"B", "h1": None}),
}


@pytest.mark.parametrize("case", sorted(HARDLINK_CASES))
def test_hardlink_reads_the_file_it_was_linked_to(reg, tmp_path, case):
    layers, want = HARDLINK_CASES[case]
    ref = push(reg, f"rand/hardlink-{case}:1", [raw_tar(members) for members in layers])
    on_disk = extracted(reg, ref, tmp_path)
    for path, data in want.items():
        assert read(reg, ref, path) == data, path
        assert on_disk.get(path) == data, path  # read_file agrees with extract()


def test_global_header_only_layer_is_an_empty_layer(reg, tmp_path):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "ü"}):
        pass
    empty = out.getvalue()
    ref = push(reg, "rand/global-header:1", [raw_tar([f("a", b"x")]), empty, raw_tar([f("b", b"y")])],
               ["gzip", "zstd", "none"])
    digests = list(reg.layers(ref)["digest"])
    assert len(reg.files(f"rand/global-header@{digests[1]}")) == 0
    assert sorted(reg.files(ref, merged=True)["path"]) == ["a", "b"]
    assert reg.read_file(ref, "b") == b"y"
    assert extracted(reg, ref, tmp_path) == {"a": b"x", "b": b"y"}
    assert reg.diff(ref, ref).empty


def _random_layers(rng: random.Random) -> list[bytes]:
    """3-4 layers of files, rewrites, hardlinks (also to lower layers) and whiteouts, always well formed."""
    files: dict[str, bytes] = {}
    tars = []
    for n in range(rng.randint(3, 4)):
        members = []
        for name in rng.sample(sorted(files), min(len(files), rng.randint(0, 2))):  # whiteouts of lower files
            members.append(wh(name))
            del files[name]
        here: dict[str, bytes] = {}
        for k in range(rng.randint(2, 7)):
            x = rng.random()
            pool = sorted(files.keys() | here.keys())
            if pool and x < 0.35:  # hardlink to a lower file or one written earlier in this layer
                target = rng.choice(pool)
                name = f"l{n}_{k} ü"
                members.append(link(name, target))
                here[name] = here.get(target, files.get(target))
            else:  # a new file, or a rewrite of an existing one (maybe a hardlink target)
                name = rng.choice(pool) if pool and x < 0.6 else f"f{n}_{k}"
                data = rng.randbytes(rng.randint(0, 300))
                members.append(f(name, data))
                here[name] = data
        files.update(here)
        tars.append(raw_tar(members))
    return tars


@pytest.mark.parametrize("seed", range(6))
def test_random_hardlink_layers_read_like_extract(reg, tmp_path, seed):
    rng = random.Random(seed)
    tars = _random_layers(rng)
    ref = push(reg, f"rand/seed{seed}:1", tars, [rng.choice(["gzip", "zstd", "none"]) for _ in tars])
    on_disk = extracted(reg, ref, tmp_path)
    merged = set(reg.files(ref, merged=True)["path"])
    assert merged == set(on_disk)
    for path, data in on_disk.items():
        assert reg.read_file(ref, path) == data, path

"""What registries hold besides plain images, against the real registry: OCI artifacts whose config is
not an image config (YAML, a JSON array, an empty ``{}``), cosign-style signatures (``os: ""``), indexes with
no platform entry, foreign layers, and repository names whose first component looks like a host.

Content is pushed with plain ``requests`` (not regexplore's push code). Media types and shapes follow the
OCI image spec 1.1 (artifactType, ``application/vnd.oci.empty.v1+json``), Helm's and cosign's documented
layouts, and Docker's foreign-layer type.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from typing import Any

import pushing
import pytest

import regexplore as rx
from regexplore.sandbox import LocalRegistry
from regexplore.sandbox.examples import pick_examples

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

pytestmark = pytest.mark.live


def _layer(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_600_000_000
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue(), mtime=0)


class Pusher(pushing.Pusher):
    """The support pusher (plain requests), plus one-call images with a default one-file layer."""

    def image(self, repo: str, tag: str, config: dict | bytes, layers: list[dict] | None = None, *,
              config_type: str = OCI_CONFIG, **extra: Any) -> dict:
        raw = config if isinstance(config, bytes) else json.dumps(config).encode()
        if layers is None:
            layers = [self.blob(repo, _layer("hello.txt", f"{repo}:{tag}\n".encode()), OCI_LAYER)]
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.blob(repo, raw, config_type),
               "layers": layers, **extra}
        return self.manifest(repo, tag, doc)


def image_config(**over: Any) -> dict:
    return {"architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": []}, "config": {}, **over}


@pytest.fixture(scope="module")
def odd() -> Iterator[tuple[LocalRegistry, Pusher]]:
    with LocalRegistry() as lr:
        yield lr, Pusher(lr.url)


def test_artifact_configs_that_are_not_json_objects(odd: tuple[LocalRegistry, Pusher]) -> None:
    lr, p = odd
    p.image("art/app", "yaml", b"name: chart\n", config_type="application/yaml",
            layers=[p.blob("art/app", b'{"k": 1}', "application/json")],
            artifactType="application/vnd.example")
    p.image("art/app", "list", b"[1, 2]", config_type="application/vnd.example.config+json")
    p.image("art/app", "1.0", image_config())
    with lr.client() as reg:
        details = reg.tags("art/app", details=True).set_index("tag")
        assert details.loc["1.0", "os"] == "linux"
        for tag in ("yaml", "list"):
            assert pd_isna(details.loc[tag, "os"]) and pd_isna(details.loc[tag, "created"])
            assert details.loc[tag, "platforms"] == []
            layers = reg.layers(f"art/app:{tag}")
            assert len(layers) == 1 and pd_isna(layers["diff_id"].iloc[0])        # no rootfs to say it
            history = reg.history(f"art/app:{tag}")
            assert list(history["layer_digest"]) == list(layers["digest"])         # one step per layer
            assert pd_isna(reg.platforms(f"art/app:{tag}")["platform"].iloc[0])
            with pytest.raises(rx.UnsupportedMediaType, match="not a JSON object"):
                reg.config(f"art/app:{tag}")
        layer = reg.layers("art/app:yaml")["digest"].iloc[0]
        with pytest.raises(rx.UnsupportedMediaType, match=rf"{layer[:19]}.*application/json.*not a tar"):
            reg.files("art/app:yaml")


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_a_cosign_signature_has_no_platform(odd: tuple[LocalRegistry, Pusher]) -> None:
    """cosign writes ``"os": ""`` and ``"architecture": ""`` in its config: no value, shown as NA."""
    lr, p = odd
    sig = p.blob("sig/app", b'{"critical": {}}', "application/vnd.dev.cosign.simplesigning.v1+json",
                 annotations={"dev.cosignproject.cosign/signature": "MEUCIQ"})
    p.image("sig/app", "sha256-" + "1" * 64 + ".sig", image_config(os="", architecture="", created=None),
            layers=[sig])
    with lr.client() as reg:
        row = reg.tags("sig/app", details=True).iloc[0]
        assert pd_isna(row["os"]) and pd_isna(row["architecture"]) and row["platforms"] == []
        plat = reg.platforms(f"sig/app:{row['tag']}").iloc[0]
        assert pd_isna(plat["os"]) and pd_isna(plat["platform"])


def test_an_index_without_a_platform_entry_is_one_row_of_na(odd: tuple[LocalRegistry, Pusher]) -> None:
    lr, p = odd
    img = p.image("idx/app", "1.0", image_config())
    p.manifest("idx/app", "empty", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    attestation = {**img, "platform": {"os": "unknown", "architecture": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    p.manifest("idx/app", "att-only", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [attestation]})
    with lr.client() as reg:
        details = reg.tags("idx/app", details=True).set_index("tag")
        assert details.loc["1.0", "os"] == "linux"
        for tag in ("empty", "att-only"):
            assert details.loc[tag, "media_type"] == OCI_INDEX and details.loc[tag, "platforms"] == []
            assert pd_isna(details.loc[tag, "os"]) and pd_isna(details.loc[tag, "size"])
        with pytest.raises(rx.NotFound, match="no platform"):
            reg.history("idx/app:empty")


def test_repository_names_that_look_like_hosts(odd: tuple[LocalRegistry, Pusher]) -> None:
    """``dots.name/app`` and ``localhost/app`` are valid names that the catalog lists: they work as given."""
    lr, p = odd
    for repo in ("dots.name/app", "localhost/app"):
        p.image(repo, "1.0", image_config())
    with lr.client() as reg:
        names = set(reg.catalog()["repository"])
        assert {"dots.name/app", "localhost/app"} <= names
        for repo in ("dots.name/app", "localhost/app"):
            assert list(reg.tags(repo)["tag"]) == ["1.0"]
            assert reg.ref(f"{repo}:1.0").repository == repo
            assert len(reg.history(f"{repo}:1.0")) == 1
        with pytest.raises(rx.InvalidReference, match="belongs to 10.0.0.1:5000"):
            reg.ref("10.0.0.1:5000/dots/app")          # a host with a port is never a name
        with pytest.raises(rx.InvalidReference, match="belongs to quay.io"):
            reg.ref("quay.io/me/app:1")                 # no such repository here: another registry's image
        with pytest.raises(rx.InvalidReference, match="belongs to quay.io"):
            reg.push([__file__], "quay.io/me/app:1")    # so nothing is pushed under that name here
        assert "quay.io/me/app" not in set(reg.catalog()["repository"])
    with pytest.raises(rx.InvalidReference, match="belongs to ghcr.io"):
        rx.Registry("docker.io").ref("ghcr.io/a/b:1")   # Docker Hub has no dotted namespaces


def test_pick_examples_and_the_browser_skip_what_is_not_an_image(odd: tuple[LocalRegistry, Pusher]) -> None:
    """A signature, a Helm chart and an image with a foreign layer are not examples; an index whose first
    entry is an artifact (no platform) still opens in the browser."""
    from regexplore.jupyter import RegistryBrowser

    with LocalRegistry() as lr:
        p = Pusher(lr.url)
        sig = p.blob("z/sig", b"{}", "application/vnd.dev.cosign.simplesigning.v1+json")
        for n in range(3):   # the repository with the most tags holds only signatures
            p.image("z/sig", f"sha256-{n:064d}.sig", image_config(os="", architecture=""), layers=[sig])
        p.image("z/chart", "0.1.0", b'{"name": "demo", "version": "0.1.0"}',
                config_type="application/vnd.cncf.helm.config.v1+json",
                layers=[p.blob("z/chart", _layer("demo/Chart.yaml", b"name: demo\n"),
                               "application/vnd.cncf.helm.chart.content.v1.tar+gzip")])
        foreign = {"mediaType": FOREIGN, "digest": "sha256:" + "f" * 64, "size": 1000,
                   "urls": ["https://example.invalid/layer"]}
        p.image("z/foreign", "1", image_config(), layers=[foreign, p.blob("z/foreign", _layer("a", b"a"), OCI_LAYER)])
        plain = p.image("z/plain", "1", image_config())
        artifact = p.image("z/plain", "sbom", b"{}", config_type="application/vnd.oci.empty.v1+json",
                           layers=[p.blob("z/plain", b'{"spdx": 1}', "application/spdx+json")])
        p.manifest("z/plain", "mixed", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            artifact, {**plain, "platform": {"os": "linux", "architecture": "arm64"}}]})
        p.blob("z/broken", b"an upload that never got a manifest", "application/octet-stream")
        no_type = p.blob("z/notype", _layer("x", b"x"), OCI_LAYER)
        del no_type["mediaType"]                       # the registry accepts a layer descriptor without one
        p.image("z/notype", "1", image_config(), layers=[no_type])
        with lr.client() as reg:
            assert "z/broken" in set(reg.catalog()["repository"])    # listed, but no tags to read
            ex = pick_examples(reg)
            assert ex.source == "catalog" and ex.repository == "z/plain"
            assert "z/broken" not in ex.repositories and "z/notype" in ex.repositories
            assert ex.multiarch is None                 # one image and one artifact: not multi-platform
            assert ex.pair is None                      # z/plain's tags all show the same image
            images = ("z/notype:1", "z/plain:1", "z/plain:mixed")   # not the signature, chart or foreign one
            assert ex.image in images and ex.download in images
            assert len(reg.files(ex.image)) == 1
            browser = RegistryBrowser(reg)
            browser.wait()
            browser.search.value = "plain"
            browser.repositories.value = "z/plain"
            browser.wait()
            browser.tags.value = "mixed"
            browser.wait()
            assert browser.error in (None, "") and browser.value["platform"] == "linux/arm64"
            browser.close()


def test_pick_examples_pairs_tags_whose_layers_differ() -> None:
    """Two images that differ only in a config label would show diff() nothing: the pair skips them."""
    with LocalRegistry() as lr:
        p = Pusher(lr.url)
        shared = p.blob("z/labels", _layer("app", b"v2"), OCI_LAYER)
        p.image("z/labels", "old", image_config(created="2024-01-01T00:00:00Z"),
                layers=[p.blob("z/labels", _layer("app", b"v1"), OCI_LAYER)])
        p.image("z/labels", "relabelled", image_config(created="2024-02-01T00:00:00Z",
                                                       config={"Labels": {"x": "1"}}), layers=[shared])
        p.image("z/labels", "new", image_config(created="2024-03-01T00:00:00Z"), layers=[shared])
        with lr.client() as reg:
            assert pick_examples(reg).pair == ("z/labels:old", "z/labels:new")
            assert len(reg.diff("z/labels:old", "z/labels:new")) == 1

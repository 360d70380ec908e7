"""Every name the real registry's catalog lists works in every facade method that takes a repository
(issue 11), including names whose first component looks like a host: ``x.y_z/005-tool`` and
``foo_bar.com/x`` cannot be hosts (``_``), ``a.b-c/d`` could be one and exists here."""

from __future__ import annotations

import pytest
from servers import push_tiny_image

import regexplore as rx
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.usefixtures("private_cache")

NAMES = ["x.y_z/005-tool", "foo_bar.com/x", "a.b-c/d", "localhost_1/x", "plain/app"]


def test_every_catalog_name_works_in_every_method(empty_sandbox: LocalRegistry) -> None:
    pushed = {name: push_tiny_image(empty_sandbox.url, name, "v1", payload=name.encode() * 50) for name in NAMES}
    reg = empty_sandbox.client()
    catalog = reg.catalog()["repository"].tolist()
    assert sorted(catalog) == sorted(NAMES)
    for name in catalog:
        image = pushed[name]
        assert reg.tags(name)["tag"].tolist() == ["v1"], name
        details = reg.tags(name, details=True)
        assert details["digest"].tolist() == [image.digest] and details["repository"].tolist() == [name]
        ref = f"{name}:v1"
        assert reg.manifest(ref).digest == image.digest
        assert reg.history(ref)["layer_digest"].tolist() == [image.layer_digest]
        assert reg.layers(ref)["digest"].tolist() == [image.layer_digest]
        files = reg.files(ref)
        assert files["path"].tolist() == ["hello.txt"] and files["size"].tolist() == [len(name) * 50]
        assert reg.read_file(ref, "hello.txt") == name.encode() * 50
    reg.close()


def test_a_host_looking_name_the_registry_lacks_is_still_another_registry(empty_sandbox: LocalRegistry) -> None:
    push_tiny_image(empty_sandbox.url, "x.y_z/005-tool", "v1")
    reg = empty_sandbox.client()
    with pytest.raises(rx.InvalidReference, match="belongs to a.b-c"):
        reg.tags("a.b-c/d")
    with pytest.raises(rx.NotFound):   # a path here: the registry itself says it has no such repository
        reg.tags("q.r_s/none")
    reg.close()

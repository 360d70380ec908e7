"""Names a registry's own catalog lists are repository names, even when their first component looks like
a host (issue 11): distribution's grammar makes the domain optional, and a component with ``_`` cannot be
a domain label, so ``x.y_z/005-tool`` and ``foo_bar.com/x`` are paths. Pure: no sockets."""

from __future__ import annotations

import pytest

import regexplore as rx
from regexplore.reference import is_repository_name, split_repository

HERE = "127.0.0.1:5000"


@pytest.mark.parametrize("name", ["x.y_z/005-tool", "foo_bar.com/x", "localhost_1/x", "a.b_c.d/e/f",
                                  "x_y.z/a.b_c/d"])
def test_a_first_component_that_cannot_be_a_host_is_a_path_component(name: str) -> None:
    assert is_repository_name(name)
    r = rx.parse_reference(name, default_registry=HERE)
    assert (r.registry, r.repository, r.tag) == (HERE, name, "latest")
    assert rx.parse_reference(f"{HERE}/{name}:t") == rx.ImageRef(HERE, name, "t", None)
    assert split_repository(name) == ("docker.io", name)  # the two readings of a name agree


def test_such_a_name_on_docker_hub_is_a_hub_path() -> None:
    assert rx.parse_reference("foo_bar.com/x") == rx.ImageRef("docker.io", "foo_bar.com/x", "latest", None)


@pytest.mark.parametrize("name, host", [
    ("a.b-c/d", "a.b-c"), ("localhost/x", "localhost"), ("Foo/bar", "Foo"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080"),
    ("example.com/x_y", "example.com"),
])
def test_a_first_component_that_can_be_a_host_stays_the_host(name: str, host: str) -> None:
    assert rx.parse_reference(name, default_registry=HERE).registry == host
    assert split_repository(name)[0] == host


@pytest.mark.parametrize("text", ["h..com/x", "h-.com/x", "dock_.er/docker", "-docker.io/x", "Foo_bar/x", "[.]/x",
                                  "a_b:5000/x"])
def test_neither_host_nor_path_is_refused_as_a_host(text: str) -> None:
    with pytest.raises(rx.InvalidReference, match="invalid registry host"):
        rx.parse_reference(text, default_registry=HERE)


@pytest.mark.parametrize("name", ["x.y_z/005-tool", "foo_bar.com/x", "localhost_1/x"])
def test_the_facade_reads_such_a_name_as_its_own_without_asking(name: str) -> None:
    reg = rx.Registry(f"http://{HERE}", auth=False, api="v2")
    try:
        r = reg.ref(f"{name}:v1")
        assert (r.registry, r.repository, r.tag) == (HERE, name, "v1")
        assert len(reg.transport.trace_records) == 0   # no "does this repository exist here" request
    finally:
        reg.close()


# --- what the facade routes to the v1 adapter: every method that takes a repository has an answer there ---

def test_a_v1_registry_answers_every_method_or_refuses_it_by_name_without_a_request() -> None:
    from regexplore._v1_adapter import V1_CAN, V1Adapter

    reg = rx.Registry(f"http://{HERE}", auth=False, api="v1")
    try:
        assert reg.api == "v1" and reg.can("tags") and reg.can("history") and reg.can("download")
        assert not reg.can("catalog") and not reg.can("manifest") and not reg.can("tag details")
        with pytest.raises(ValueError, match="unknown capability"):
            reg.can("teleport")
        for method in ("manifest", "platforms", "config", "layers", "files", "save", "tag", "delete"):
            assert callable(getattr(V1Adapter, method)) and method not in V1_CAN
            args = ("x.y_z/005-tool:1", "/nonexistent") if method in ("save", "tag") else ("x.y_z/005-tool:1",)
            with pytest.raises(rx.RegistryError, match=rf"{method}\(\) is not part of the v1 registry API"):
                getattr(reg, method)(*args)
        with pytest.raises(rx.RegistryError, match="catalog is not available"):
            reg.catalog()
        assert len(reg.transport.trace_records) == 0
    finally:
        reg.close()


def test_a_v2_registry_can_everything_but_says_no_to_unknown_names() -> None:
    reg = rx.Registry(f"http://{HERE}", auth=False, api="v2")
    try:
        assert all(reg.can(m) for m in ("catalog", "tags", "tag details", "manifest", "files", "download"))
    finally:
        reg.close()

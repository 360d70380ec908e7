"""Image reference grammar and Docker's normalisation (distribution/reference)."""

import dataclasses

import pytest

import regexplore as rx
from regexplore.reference import ImageRef

H = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("python", ("docker.io", "library/python", "latest", None)),
        ("python:3.12-slim", ("docker.io", "library/python", "3.12-slim", None)),
        ("jupyter/base-notebook", ("docker.io", "jupyter/base-notebook", "latest", None)),
        ("docker.io/python", ("docker.io", "library/python", "latest", None)),
        ("index.docker.io/library/python:3", ("docker.io", "library/python", "3", None)),
        ("localhost/foo", ("localhost", "foo", "latest", None)),
        ("localhost:5000/x", ("localhost:5000", "x", "latest", None)),
        ("127.0.0.1:5000/demo/busybox:1.0", ("127.0.0.1:5000", "demo/busybox", "1.0", None)),
        ("ghcr.io/owner/app@" + H, ("ghcr.io", "owner/app", None, H)),
        ("quay.io/a/b:v1@" + H, ("quay.io", "a/b", "v1", H)),
        ("Foo/bar", ("Foo", "bar", "latest", None)),  # uppercase first component is a host
        ("index.docker.io/ubuntu", ("docker.io", "library/ubuntu", "latest", None)),  # legacyDefaultDomain
        ("registry-1.docker.io/ubuntu", ("registry-1.docker.io", "ubuntu", "latest", None)),  # as Docker: no alias
        ("[::1]:5000/x:y", ("[::1]:5000", "x", "y", None)),
        ("a.b/c__d/e-f.g---h:T_a.g-9", ("a.b", "c__d/e-f.g---h", "T_a.g-9", None)),
    ],
)
def test_parse_and_normalise(text, expected):
    r = rx.parse_reference(text)
    assert (r.registry, r.repository, r.tag, r.digest) == expected


def test_reference_prefers_digest_and_str_roundtrip():
    r = rx.parse_reference("quay.io/a/b:v1@" + H)
    assert r.reference == H
    assert str(r) == "quay.io/a/b:v1@" + H
    assert rx.parse_reference(str(r)) == r
    assert rx.parse_reference("python").familiar() == "python:latest"


def test_default_registry_for_relative_names():
    r = rx.parse_reference("demo/busybox:1.0", default_registry="127.0.0.1:5000")
    assert r == ImageRef("127.0.0.1:5000", "demo/busybox", "1.0", None)
    # no library/ prefix outside Docker Hub
    assert rx.parse_reference("busybox", default_registry="127.0.0.1:5000").repository == "busybox"


@pytest.mark.parametrize(
    "text, part",
    [
        ("", "empty"),
        ("UPPER", "lowercase"),
        ("docker.io/Library/python", "lowercase"),
        ("python:-bad", "tag"),
        ("python:" + "t" * 129, "tag"),
        ("python@sha256:abc", "digest"),
        ("python@sha256:" + "a" * 63, "64 hex"),
        ("python@sha256:" + "A" * 64, "lowercase"),
        ("a//b", "empty path component"),
        ("https://ghcr.io/x", "scheme"),
        ("foo/bar_/baz", "not allowed"),
        ("ex ample.com/x", "host"),
    ],
)
def test_invalid_references_name_the_bad_part(text, part):
    with pytest.raises(rx.InvalidReference) as info:
        rx.parse_reference(text)
    assert isinstance(info.value, ValueError)
    assert part in str(info.value)


def test_too_long_name():
    with pytest.raises(rx.InvalidReference, match="255"):
        rx.parse_reference("example.com/" + "/".join(["abcdefghij"] * 30))


def test_imageref_is_frozen():
    r = rx.parse_reference("python")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.tag = "x"  # type: ignore[misc]


def test_registry_rejects_foreign_reference():
    """A reference to another registry is refused (nothing listens on this port: no repository of that
    name can be found here either; tests/test_artifacts_live.py has the case where one exists)."""
    from regexplore.http.transport import RetryPolicy

    reg = rx.Registry("127.0.0.1:9")
    reg.transport.retry = RetryPolicy(attempts=1)   # a refused connection is answer enough here
    with pytest.raises(rx.InvalidReference, match="belongs to ghcr.io"):
        reg.ref("ghcr.io/a/b:1")
    with pytest.raises(rx.InvalidReference, match="belongs to 10.1.2.3:5000"):
        reg.ref("10.1.2.3:5000/a/b:1")
    assert reg.ref("demo/a:1").registry == "127.0.0.1:9"
    assert reg.ref("127.0.0.1:9/ghcr.io/a/b:1").repository == "ghcr.io/a/b"   # spelled out: a name here
    with pytest.raises(rx.InvalidReference, match="belongs to ghcr.io"):
        rx.Registry("docker.io").ref("ghcr.io/a/b:1")
    with pytest.raises(rx.InvalidReference):
        reg.ref(rx.parse_reference("ghcr.io/a/b:1"))   # an ImageRef says which registry it means


@pytest.mark.parametrize(
    "given, base",
    [
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("localhost:5000", "http://localhost:5000"),
        ("[::1]:5000", "http://[::1]:5000"),
        ("docker.io", "https://registry-1.docker.io"),
        ("index.docker.io", "https://registry-1.docker.io"),
        ("ghcr.io", "https://ghcr.io"),
        ("registry.example.com:5000", "https://registry.example.com:5000"),
        ("http://registry.example.com", "http://registry.example.com"),
        ("https://127.0.0.1:5443/", "https://127.0.0.1:5443"),
    ],
)
def test_base_url(given, base):
    assert rx.Registry(given).base_url == base


def test_registry_name_for_docker_hub():
    assert rx.Registry("docker.io").name == "docker.io"
    assert rx.Registry("docker.io").ref("ubuntu").repository == "library/ubuntu"

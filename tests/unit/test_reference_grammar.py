"""parse_reference against the distribution/reference grammar and Docker's normalisation.

Cases are ported from github.com/distribution/reference (``normalize_test.go``:
TestValidateReferenceName, TestValidateRemoteName, TestParseRepositoryInfo,
TestNormalizedSplitHostname, TestParseReferenceWithTagAndDigest, TestParseAnyReference;
``reference_test.go``: TestReferenceParse, run through the normalising parser), plus
regressions found by fuzzing against an independent model of ``regexp.go``/``normalize.go``.
Pure and offline.
"""

import pytest

import regexplore as rx

F64 = "f" * 64
HEX = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
D = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"


def fields(text):
    r = rx.parse_reference(text)
    return (r.registry, r.repository, r.tag, r.digest)


# normalize_test.go TestValidateReferenceName (valid) + TestValidateRemoteName (valid)
@pytest.mark.parametrize("text", [
    "docker/docker", "library/debian", "debian", "docker.io/docker/docker", "docker.io/library/debian",
    "docker.io/debian", "index.docker.io/docker/docker", "index.docker.io/library/debian",
    "index.docker.io/debian", "127.0.0.1:5000/docker/docker", "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80", "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian", "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker", "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/" + HEX, "Docker/docker", "DOCKER/docker",
    "docker-rules/docker", "docker---rules/docker", "doc/docker", "d/docker", "jess/t", "dock__er/docker",
])
def test_go_valid_names(text):
    rx.parse_reference(text)


# normalize_test.go TestValidateReferenceName / TestValidateRemoteName (invalid),
# TestInvalidReferenceComponents; reference_test.go TestReferenceParse (err cases)
@pytest.mark.parametrize("text", [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
    "-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker", "docker.io/docker///docker",
    "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian", "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian", HEX,
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker",
    "dock_.er/docker", "dock-.er/docker", "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
    "-foo",
    "", ":justtag", "@sha256:" + F64, "repo@sha256:" + "f" * 34, "Uppercase:tag",
    "test:5000/Uppercase/lowercase:tag", "a/" * 128 + "a:tag", "aa/asdf$$^/aa",
    "[2001:db8::1]", "[2001:db8::1]:5000", "[2001:db8::1]:tag",
    "[fe80::1%eth0]:5000/repo", "[fe80::1%@invalidzone]:5000/repo",
])
def test_go_invalid_names(text):
    with pytest.raises(rx.InvalidReference):
        rx.parse_reference(text)


# normalize_test.go TestParseRepositoryInfo: familiar, full and ambiguous spellings -> (domain, path)
@pytest.mark.parametrize("spellings, domain, path", [
    (["fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar"], "docker.io", "fooo/bar"),
    (["ubuntu", "docker.io/library/ubuntu", "library/ubuntu"], "docker.io", "library/ubuntu"),
    (["nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu"], "docker.io", "nonlibrary/ubuntu"),
    (["other/library", "docker.io/other/library"], "docker.io", "other/library"),
    (["127.0.0.1:8000/private/moonbase"], "127.0.0.1:8000", "private/moonbase"),
    (["127.0.0.1:8000/privatebase"], "127.0.0.1:8000", "privatebase"),
    (["example.com:8000/private/moonbase"], "example.com:8000", "private/moonbase"),
    (["ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
      "index.docker.io/library/ubuntu-12.04-base"], "docker.io", "library/ubuntu-12.04-base"),
    (["foo", "docker.io/library/foo", "docker.io/foo"], "docker.io", "library/foo"),
    (["library/foo/bar", "docker.io/library/foo/bar"], "docker.io", "library/foo/bar"),
    (["store/foo/bar", "docker.io/store/foo/bar"], "docker.io", "store/foo/bar"),
    (["Foo/bar"], "Foo", "bar"),
    (["FOO/bar"], "FOO", "bar"),
    # TestNormalizedSplitHostname
    (["test_com/foo"], "docker.io", "test_com/foo"),
    (["test-com:8080/foo"], "test-com:8080", "foo"),
    (["xn--n3h.com:18080/foo"], "xn--n3h.com:18080", "foo"),
])
def test_go_repository_info(spellings, domain, path):
    for text in spellings:
        assert fields(text) == (domain, path, "latest", None), text


# reference_test.go TestReferenceParse (valid rows, normalised), TestSerialization,
# normalize_test.go TestParseReferenceWithTagAndDigest / TestParseAnyReference
@pytest.mark.parametrize("text, expected", [
    ("test.com:5000", ("docker.io", "library/test.com", "5000", None)),
    ("test:5000/repo:tag@sha256:" + F64, ("test:5000", "repo", "tag", "sha256:" + F64)),
    ("lowercase:Uppercase", ("docker.io", "library/lowercase", "Uppercase", None)),
    ("a/" * 127 + "a:tag-puts-this-over-max", None),  # docker.io/ pushes the name over 255
    ("b.gcr.io/test.example.com/my-app:test.example.com",
     ("b.gcr.io", "test.example.com/my-app", "test.example.com", None)),
    ("xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128,
     ("xn--7o8h.com", "myimage", "xn--7o8h.com", "sha512:" + "f" * 128)),
    ("foo/foo_bar.com:8080", ("docker.io", "foo/foo_bar.com", "8080", None)),
    ("192.168.1.1:5000/repo:5050", ("192.168.1.1:5000", "repo", "5050", None)),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", ("[2001:db8:1:2:3:4:5:6]", "repo", "tag", None)),
    ("[2001:db8::]:5000/repo", ("[2001:db8::]:5000", "repo", "latest", None)),
    ("[2001:db8::1]:5000/repo:tag@sha256:" + F64, ("[2001:db8::1]:5000", "repo", "tag", "sha256:" + F64)),
    ("busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
     ("docker.io", "library/busybox", "latest",
      "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa")),
    ("redis@" + D, ("docker.io", "library/redis", None, D)),
    ("dmcgowan/myapp@" + D, ("docker.io", "dmcgowan/myapp", None, D)),
    (HEX[:-1], ("docker.io", "library/" + HEX[:-1], "latest", None)),  # 63 hex: a name, not an ID
])
def test_go_reference_rows(text, expected):
    if expected is None:
        with pytest.raises(rx.InvalidReference, match="255"):
            rx.parse_reference(text)
    else:
        assert fields(text) == expected


# --- regressions from the differential fuzz --------------------------------------------------

@pytest.mark.parametrize("text", [
    "[2001:db8:3:4::192.0.2.33]:5000/debian",  # regexp.go ipv6address = \[(?:[a-fA-F0-9:]+)\]
    "[::1.2.3.4]/x",
    "[.]/x",
])
def test_ipv6_host_is_hex_and_colons_only(text):
    with pytest.raises(rx.InvalidReference, match="host"):
        rx.parse_reference(text)


def test_64_hex_identifier_is_not_a_name():
    # normalize.go ParseNormalizedNamed: anchoredIdentifierRegexp -> "cannot specify 64-byte
    # hexadecimal strings"; only the exact whole string, so a domain or a tag makes it a name
    with pytest.raises(rx.InvalidReference, match="image ID"):
        rx.parse_reference(HEX)
    assert fields("docker.io/" + HEX)[1] == "library/" + HEX
    assert fields(HEX + ":1")[1:3] == ("library/" + HEX, "1")


@pytest.mark.parametrize("digest, ok", [
    # go-digest algorithm.go anchoredEncodedRegexps: sha256 64, sha384 96, sha512 128, lowercase hex
    ("sha384:" + "a" * 96, True),
    ("sha384:" + "a" * 64, False),
    ("sha384:" + "A" * 96, False),
    ("sha512:" + "a" * 127, False),
    ("sha256:" + "a" * 65, False),
    # other algorithms follow the reference grammar (digestPat): alg components, >= 32 hex
    ("sha256+b64:" + "a" * 32, True),
    ("multihash+base58:" + "AbCd" * 8, True),
    ("md5:" + "a" * 31, False),
    ("1sha:" + "a" * 32, False),
    ("sha..256:" + "a" * 64, False),
])
def test_digest_algorithms(digest, ok):
    if ok:
        assert rx.parse_reference("x@" + digest).digest == digest
    else:
        with pytest.raises(rx.InvalidReference, match="digest"):
            rx.parse_reference("x@" + digest)


@pytest.mark.parametrize("text, expected", [
    ("registry-1.docker.io/x", ("registry-1.docker.io", "x", "latest", None)),  # only index.docker.io aliases
    ("Docker.io/x", ("Docker.io", "x", "latest", None)),
    ("docker.io:443/x", ("docker.io:443", "x", "latest", None)),
    ("INDEX.DOCKER.IO/x", ("INDEX.DOCKER.IO", "x", "latest", None)),
    ("localhost", ("docker.io", "library/localhost", "latest", None)),  # splitDockerDomain fast path
    ("localhost:5000", ("docker.io", "library/localhost", "5000", None)),
    ("x:t@" + D, ("docker.io", "library/x", "t", D)),
])
def test_domain_normalisation_edges(text, expected):
    assert fields(text) == expected


@pytest.mark.parametrize("text", ["h:/x", "h:abc/x", "[::1]:/x", "[]/x", "h-.com/x", "h..com/x",
                                  "a___b", "a.-b", "x:", "x@", "x@sha256", "a:b:c", "x:t\u00e9"])
def test_more_invalid(text):
    with pytest.raises(rx.InvalidReference):
        rx.parse_reference(text)


@pytest.mark.parametrize("text, ok", [
    ("library/python", True), ("demo/a__b", True), ("a-b/c.d", True),
    ("demo//x", False), ("demo/x.", False), ("demo/../x", False), ("Demo/x", False),
    ("demo/x:tag", False), ("127.0.0.1:5000/x", False), ("", False),
])
def test_is_repository_name_follows_the_path_grammar(text: str, ok: bool) -> None:
    # regexp.go: path-component = alpha-numeric (separator alpha-numeric)*, separator [_.]|__|[-]*
    from regexplore.reference import is_repository_name

    assert is_repository_name(text) is ok

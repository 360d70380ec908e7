"""Regexes on attacker-controlled text stay linear (review H1, H2): each pathological input of a realistic
size is read in a child interpreter under a deadline (a backtracking blow-up fails the test, never hangs it)."""

from __future__ import annotations

import pytest

from regexplore.content.inside import osrelease
from regexplore.content.inside.catalogers import golang, java
from tests.support.servers.bounded import run_bounded


def _timed(call: str, setup: str, timeout: float = 20) -> tuple[object, float]:
    """``(result, seconds)`` of ``call`` after ``setup`` in a bounded child; fails on a hang."""
    res = run_bounded(f"""
        import time
        {setup}
        start = time.perf_counter()
        value = {call}
        result = [value, time.perf_counter() - start]
    """, timeout=timeout, memory_mb=1024)
    assert res.ok, res.output
    return res.value[0], res.value[1]


@pytest.mark.parametrize("ldflags, version", [
    ("-X main.version=1.2.3", "v1.2.3"),
    ("-s -w -X main.Version=v0.9.1-rc1", "v0.9.1-rc1"),
    ("-X github.com/x/y/cmd.gitTag=refs/tags/v4.5.6", "v4.5.6"),
    ("-X main.buildVersion=a/b/2.0.0 -X main.version=3.0.0", "v2.0.0"),
    ("-X other.version=1.2.3", "(devel)"),
    ("-X main.version=dev", "(devel)"),
    ("-X github.com/x/y/internal.releaseVersion=7.8.9", "v7.8.9"),
    ("-X main.gitTag=1.0.0 -X main.version=2.0.0", "v2.0.0"),  # every ...ver pattern before a ...tag one
])
def test_ldflags_versions_as_syft_reads_them(ldflags: str, version: str) -> None:
    info = golang.BuildInfo("go1.22.1", path="github.com/x/y", main=("github.com/x/y", "(devel)"),
                            settings={"-ldflags": ldflags})
    assert golang.modules(info)[0] == ("github.com/x/y", version)


def test_hostile_ldflags_is_linear() -> None:
    """``-X main.version=a/a/.../a/ `` (backtracked in 2^n on a nested ``(\\S+/)*``: n=26 took 6 s)."""
    setup = """
        from regexplore.content.inside.catalogers import golang
        info = golang.BuildInfo("go1.22.1", settings={"-ldflags": "-X main.version=" + "a/" * 40 + " "})
        big = golang.BuildInfo("go1.22.1", settings={"-ldflags": ("-X main.version=" + "a/" * 5000 + "=") * 4})
    """
    value, seconds = _timed("[golang.main_version(i, 'example.com/m', '(devel)') for i in (info, big)]", setup)
    assert value == ["(devel)", "(devel)"] and seconds < 0.2, seconds


def test_release_file_fallbacks_are_linear() -> None:
    """``etc/system-release-cpe`` of ``:`` runs (n=400 took 13 s) and an ``etc/redhat-release`` of
    `` release `` repeated up to the 64 KiB cap the pass keeps (~50 s)."""
    setup = """
        from regexplore.content.inside import osrelease
        cpe, redhat = "cpe:/o:" + ":" * 2000 + "\\nx", " release " * (64 * 1024 // 9)
        facts = {"etc/system-release-cpe": {"release_file": cpe}, "etc/redhat-release": {"release_file": redhat}}
    """
    value, seconds = _timed("osrelease.os_release(lambda p: facts.get(p, {}))", setup)
    assert value is None and seconds < 0.05, seconds


@pytest.mark.parametrize("text, expected", [
    ("cpe:/o:redhat:enterprise_linux:9.4:ga", ("redhat", "9.4")),
    ("x cpe:/o:fedoraproject:fedora:40", None),
    ("ignored\ncpe:/o:a:b:1::z", ("a", "1")),
])
def test_cpe_fallback_as_syft(text: str, expected: tuple[str, str] | None) -> None:
    facts = {"etc/system-release-cpe": {"release_file": text}}
    found = osrelease.os_release(lambda p: facts.get(p, {}))
    assert (found and (found["NAME"], found["VERSION_ID"])) == (expected or None)


def test_redhat_fallback_as_syft() -> None:
    facts = {"etc/redhat-release": {"release_file": "x\nCentOS Linux release 7.9.2009 (Core)\n"}}
    found = osrelease.os_release(lambda p: facts.get(p, {}))
    assert (found["PRETTY_NAME"], found["ID"], found["VERSION_ID"]) == ("CentOS Linux", "centos linux", "7.9")


@pytest.mark.parametrize("stem, split", [
    ("commons-lang3-3.12.0", ("commons-lang3", "3.12.0")),
    ("spring-core-5.3.9-SNAPSHOT", ("spring-core", "5.3.9-SNAPSHOT")),
    ("guava-31.1--jre", ("guava-31.1--jre", "")),
    ("a-1-b--c-2", ("a-1-b--c", "2")),
    ("tool-", ("tool-", "")), ("-1", ("-1", "")), ("plain", ("plain", "")),
])
def test_jar_file_names_as_syft(stem: str, split: tuple[str, str]) -> None:
    assert java.split_file_name(stem) == split


def test_hostile_jar_file_name_is_linear() -> None:
    """A 64 KiB archive stem ``a-1a-1...--`` (24 KB took 3 s; a war holds hundreds of such members)."""
    setup = """
        from regexplore.content.inside.catalogers import java
        stems = ["a-1" * (64 * 1024 // 3) + "--", "a-1-" * (64 * 1024 // 4) + "-x"]
    """
    value, seconds = _timed("[java._packages('x/' + s + '.jar', {}, []) and None for s in stems]", setup)
    assert value == [None, None] and seconds < 0.05, seconds

"""Regexes on attacker-controlled text stay linear (review H1, H2): each pathological input of a realistic
size is read in a child interpreter under a deadline (a backtracking blow-up fails the test, never hangs it)."""

from __future__ import annotations

import pytest

from regexplore.content.inside.catalogers import golang
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

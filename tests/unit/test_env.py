"""Every environment variable is read in regexplore/_env.py, documented once, and parsed one way."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest

from regexplore import _env

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "regexplore"


def test_readme_env_table_is_the_declared_one() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- env-table:start -->")
    end = readme.index("<!-- env-table:end -->")
    assert readme[start:end].split("\n", 1)[1].strip() == _env.markdown().strip()


def _environ_reads(path: Path) -> list[int]:
    """Lines that read os.environ / os.getenv (copying the whole environment for a child process is no read)."""
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr == "getenv" or (f.attr in ("get", "pop", "setdefault") and isinstance(f.value, ast.Attribute)
                                      and f.value.attr == "environ" and f.attr == "get"):
                lines.append(node.lineno)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "environ" and isinstance(node.ctx, ast.Load):
            lines.append(node.lineno)
        if isinstance(node, ast.Compare) and any(isinstance(c, ast.Attribute) and c.attr == "environ"
                                                 for c in node.comparators):
            lines.append(node.lineno)
    return lines


def test_no_module_but_env_reads_the_environment() -> None:
    reads = {str(p.relative_to(ROOT)): _environ_reads(p) for p in PKG.rglob("*.py") if p.name != "_env.py"}
    # the demo saves and restores REGEXPLORE_REGISTRY around the kernel it starts: a write, not a setting
    allowed = {"regexplore/jupyter/demo.py"}
    bad = {f: lines for f, lines in reads.items() if lines and f not in allowed}
    assert not bad, f"read the environment through regexplore._env: {bad}"


def test_every_variable_named_in_the_code_is_declared() -> None:
    declared = {n for v in _env.VARIABLES for n in v.names}
    named = set()
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"REGEXPLORE_[A-Z_]+", node.value):
                named.add(node.value)
    assert named <= declared, f"undeclared: {sorted(named - declared)}"


@pytest.mark.parametrize(("raw", "expected"), [("", 7), (" 12 ", 12), ("3", 3)])
def test_whole_reads_positive_numbers(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv("REGEXPLORE_MAX_LIST_PAGES", raw)
    assert _env.whole("REGEXPLORE_MAX_LIST_PAGES", 7) == expected


@pytest.mark.parametrize("raw", ["0", "-5", "1e3", "lots"])
def test_whole_names_the_variable_for_a_bad_value(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("REGEXPLORE_MAX_LIST_PAGES", raw)
    with pytest.raises(ValueError, match="REGEXPLORE_MAX_LIST_PAGES"):
        _env.whole("REGEXPLORE_MAX_LIST_PAGES", 7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _env.whole("REGEXPLORE_MAX_LIST_PAGES", 7, warn=True) == 7
    assert "REGEXPLORE_MAX_LIST_PAGES" in str(caught[0].message)


@pytest.mark.parametrize(("raw", "expected"), [("", 30.0), ("off", None), ("0", None), ("2.5", 2.5)])
def test_number_reads_seconds_and_off(monkeypatch: pytest.MonkeyPatch, raw: str, expected: float | None) -> None:
    monkeypatch.setenv("REGEXPLORE_DEADLINE", raw)
    assert _env.number("REGEXPLORE_DEADLINE", 30.0, off=None) == expected  # type: ignore[arg-type]


def test_an_undeclared_variable_cannot_be_read() -> None:
    with pytest.raises(KeyError):
        _env.text("REGEXPLORE_NO_SUCH_THING")


def test_cache_env_empty_means_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from regexplore.content.cache import cache_dir

    monkeypatch.setenv("REGEXPLORE_CACHE", "")
    assert cache_dir() is None
    monkeypatch.setenv("REGEXPLORE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("REGEXPLORE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "regexplore"

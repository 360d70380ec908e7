"""The layers of the package, held by a test (DESIGN.md, "Target layout").

Each sub-package may import only from the parts listed for it in ``ALLOWED`` (its own part included);
imports inside functions count too (a lazy import still ties the two). No two modules may import each
other in a loop. The protocol core never imports pandas, ipywidgets, tqdm or matplotlib at module level,
and ``import regexplore`` loads none of them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "regexplore"

#: a module's part: the first entry (longest prefix first) its dotted name starts with
PARTS = {
    "regexplore.errors": "leaf",
    "regexplore.reference": "leaf",
    "regexplore._env": "leaf",
    "regexplore._version": "leaf",
    "regexplore.http.redact": "leaf",
    "regexplore.http.challenges": "leaf",
    "regexplore.http.urls": "leaf",
    "regexplore.model": "model",
    "regexplore.http": "http",
    "regexplore.protocol": "protocol",
    "regexplore.content": "content",
    "regexplore.registry": "facade",
    "regexplore._resolve": "facade",
    "regexplore._v1_adapter": "facade",
    "regexplore._image_layers": "facade",
    "regexplore._supply_chain": "facade",
    "regexplore.census": "census",
    "regexplore.sandbox": "sandbox",
    "regexplore.jupyter": "jupyter",
    "regexplore.__main__": "jupyter",
    "regexplore": "root",
}
_BELOW_FACADE = {"leaf", "model", "http", "protocol", "content"}
#: part -> the parts it may import from
ALLOWED = {
    "leaf": {"leaf"},
    "model": {"leaf", "model"},
    "http": {"leaf", "http"},
    "protocol": {"leaf", "model", "http", "protocol"},
    "content": {"leaf", "model", "http", "protocol", "content"},
    "facade": _BELOW_FACADE | {"facade"},
    "census": _BELOW_FACADE | {"facade", "census"},  # a level above the facade: it uses Registry
    "root": _BELOW_FACADE | {"facade", "root", "census"},  # the package face hands names on (lazily: top parts)
    "sandbox": _BELOW_FACADE | {"facade", "root", "sandbox"},
    "jupyter": _BELOW_FACADE | {"facade", "root", "sandbox", "jupyter"},
}
CORE_PARTS = {"leaf", "model", "http", "protocol", "content", "sandbox"}
HEAVY = {"pandas", "ipywidgets", "tqdm", "matplotlib"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    for prefix in sorted(PARTS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return PARTS[prefix]
    raise AssertionError(f"{module} is in no part of the layout: add it to PARTS")


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(module: str, *, module_level_only: bool = False) -> set[str]:
    """The regexplore modules (or, for outside packages, their top names) ``module`` imports."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
            found |= submodules  # `from . import seed` names a module
            if len(submodules) < len(node.names):
                found.add(target)
    return found


def internal_imports(module: str) -> set[str]:
    return {m for m in imports_of(module) if m in MODULES and m != module}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_from_the_parts_allowed_for_it(module: str) -> None:
    mine = part_of(module)
    bad = sorted(f"{m} ({part_of(m)})" for m in internal_imports(module) if part_of(m) not in ALLOWED[mine])
    assert not bad, f"{module} ({mine}) may import only from {sorted(ALLOWED[mine])}, but imports {bad}"


def test_no_import_cycles() -> None:
    graph = {m: internal_imports(m) - {"regexplore"} for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part_of(m) in CORE_PARTS))
def test_core_module_imports_nothing_heavy(module: str) -> None:
    heavy = {m.split(".")[0] for m in imports_of(module, module_level_only=True)} & HEAVY
    assert not heavy, f"{module} imports {sorted(heavy)} at module level"


def test_import_regexplore_is_light() -> None:
    code = f"import sys, regexplore; print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

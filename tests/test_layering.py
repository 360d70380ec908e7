"""The import direction DESIGN.md asks for: the protocol core never imports pandas, ipywidgets or
tqdm at module level, and ``import regexplore`` loads none of them."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "regexplore"
CORE = ["errors", "reference", "transport", "auth", "v2", "v1", "hub", "oci", "blobs", "layers", "tarsum",
        "sandbox", "v1sandbox", "seed", "progress"]
HEAVY = {"pandas", "ipywidgets", "tqdm", "matplotlib"}


def module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:  # module level only: lazy imports inside functions are the point
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports_nothing_heavy(name):
    assert not module_level_imports(PKG / f"{name}.py") & HEAVY


def test_import_regexplore_is_light():
    code = "import sys, regexplore; print(sorted(m for m in %r if m in sys.modules))" % (sorted(HEAVY),)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

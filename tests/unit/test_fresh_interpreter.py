"""Every public name, touched first in a fresh interpreter (issue 11).

A name that resolves lazily (a module ``__getattr__``, an import inside a function) can work in a test run,
where something else imported its module first, and fail for a user who touches it first:
``import regexplore as rx; rx.sandbox.LocalRegistry(seed=True)`` once raised ``RecursionError`` that way.
So the package and each sub-package is imported in a ``python -c`` of its own and every name of its
``__all__`` is touched there; each lazy name (one the package does not hold once imported) gets an
interpreter of its own too,
since touching one lazy name first can hide a fault of another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the package and every sub-package, by dotted name: the public faces whose ``__all__`` users import from
PACKAGES = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "regexplore").rglob("__init__.py"))
# regexplore's __getattr__ names: nothing imports them at ``import regexplore``
LAZY_AT_TOP = ["sandbox", "browse", "census", "open_census", "to_cyclonedx"]

# imports the module, touches each name of __all__ the module already holds, prints the others (the lazy ones)
_TOUCH_EAGER = """
import importlib, json, sys
mod = importlib.import_module(sys.argv[1])
names = list(getattr(mod, "__all__", []))
assert len(names) == len(set(names)), "a name twice in __all__"
lazy = [n for n in names if n not in vars(mod)]
for name in names:
    if name not in lazy:
        getattr(mod, name)
print(json.dumps(lazy))
"""
_TOUCH_ONE = """
import importlib, sys
mod = importlib.import_module(sys.argv[1])
value = getattr(mod, sys.argv[2])
assert value is not None, sys.argv[2]
print(type(value).__name__)
"""


def fresh(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter (this checkout first on ``sys.path``); fail with its stderr."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": path, **(env or {})}, cwd=ROOT)
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc


def test_every_sub_package_is_listed() -> None:
    assert {"regexplore", "regexplore.http", "regexplore.model", "regexplore.protocol", "regexplore.protocol.v1",
            "regexplore.content", "regexplore.sandbox", "regexplore.jupyter"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_first_and_every_public_name_resolves(package: str) -> None:
    lazy = json.loads(fresh(_TOUCH_EAGER, package).stdout)
    if package == "regexplore":
        assert lazy == LAZY_AT_TOP
    if package == "regexplore.jupyter":
        assert lazy == ["RegistryBrowser"]
    for name in lazy:  # each lazy name first in an interpreter of its own
        assert fresh(_TOUCH_ONE, package, name).stdout.strip(), name


def test_an_unknown_attribute_is_an_attribute_error_not_a_recursion() -> None:
    out = fresh("import regexplore as rx, regexplore.jupyter as j\n"
                "for mod in (rx, j):\n"
                "    assert not hasattr(mod, 'no_such_name')\n"
                "    try:\n"
                "        mod.no_such_name\n"
                "    except AttributeError as exc:\n"
                "        print(exc)\n").stdout
    assert out.splitlines() == ["module 'regexplore' has no attribute 'no_such_name'",
                                "module 'regexplore.jupyter' has no attribute 'no_such_name'"]


def test_sandbox_local_registry_is_constructed_through_the_lazy_attribute(tmp_path: Path) -> None:
    """The issue's line, first thing in an interpreter: it reaches ``LocalRegistry.__init__`` (which looks
    for the registry binary: pointed at a missing file here, so this tier needs none) and fails the way
    that documents, not with a ``RecursionError``. Starting and stopping it for real: tests/notebook/
    test_installs.py, in the venv of an installed wheel."""
    missing = tmp_path / "no-registry-here"
    out = fresh("import regexplore as rx\n"
                "try:\n"
                "    rx.sandbox.LocalRegistry(seed=True)\n"
                "except rx.sandbox.RegistryBinaryMissing as exc:\n"
                "    print(type(exc).__name__, exc)\n",
                env={"REGEXPLORE_REGISTRY_BIN": str(missing)}).stdout
    assert out.startswith("RegistryBinaryMissing ") and str(missing) in out


def test_supply_chain_methods_resolve_first_thing() -> None:
    """``reg.referrers`` / ``reg.attach`` and their module, touched first in a new interpreter (issue 13)."""
    proc = fresh("import regexplore as rx; r = rx.Registry('127.0.0.1:9'); "
                 "assert callable(r.referrers) and callable(r.attach); "
                 "from regexplore.protocol.referrers import referrers_tag; print(referrers_tag('sha256:' + 'ab' * 32))")
    assert proc.stdout.strip() == "sha256-" + "ab" * 32

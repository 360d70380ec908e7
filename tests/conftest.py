"""Shared fixtures: real registries on loopback (``LocalRegistry``), skopeo as an independent client, and
the path to ../shared (recorded fixtures, docs).

The tests are in tiers, one folder each, and a test's folder gives its marker:

- ``unit/``: pure code and parsers, no sockets beyond a fake adapter;
- ``recorded/``: vcrpy cassettes and the real recorded fixtures (no registry binary);
- ``live/``: the real registry binary, skopeo and loopback servers;
- ``notebook/``: the notebooks, executed; ``browser/``: widgets in Debian's chromium.

``live``, ``notebook`` and ``browser`` tests are also marked ``live``, so ``pytest -m "not live"`` (the unit and
recorded tiers) needs no registry binary. A test outside
``live/``, ``notebook/`` or ``browser/`` that asks for a registry or skopeo fixture fails: it is in the wrong
tier. A missing registry binary or skopeo makes those fixtures FAIL with the install hint (CI installs
both; a skip would hide it). Helpers shared by the tests (servers, layer builders) are in ``support/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

from regexplore.sandbox import LocalRegistry, RegistryBinaryMissing  # noqa: E402

_LIVE_FIXTURES = {"registry_sandbox", "empty_sandbox", "big_sandbox", "skopeo", "plain"}
TIERS = ("unit", "recorded", "live", "notebook", "browser")
_NEEDS_SERVERS = {"live", "notebook", "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        tier = Path(str(item.path)).resolve().relative_to(here).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of the tier folders {TIERS}")
        item.add_marker(getattr(pytest.mark, tier))
        if tier in _NEEDS_SERVERS:  # notebooks and the browser need the registry too: `-m "not live"` skips them
            item.add_marker(pytest.mark.live)
        uses = _LIVE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses and tier not in _NEEDS_SERVERS:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(uses)}: it belongs in tests/live/")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the repository (``REGEXPLORE_SHARED`` overrides)."""
    env = os.environ.get("REGEXPLORE_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.fail(f"shared folder not found at {path} (set REGEXPLORE_SHARED)", pytrace=False)
    return path


def start_sandbox(**kw: Any) -> LocalRegistry:
    """Start a ``LocalRegistry``; a missing binary fails the test with the install hint."""
    try:
        sandbox = LocalRegistry(**kw)
    except RegistryBinaryMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    return sandbox.start()


@pytest.fixture(scope="session")
def registry_sandbox() -> Iterator[LocalRegistry]:
    """The demo content (``regexplore.sandbox.seed.demo_content()``), pushed by skopeo — a client independent of
    regexplore, so reading tests cannot be fooled by a matching push bug. ``.seeded`` is the Content."""
    _require_skopeo()
    sandbox = start_sandbox(seed=True, seed_via="skopeo")
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def own_registry() -> Iterator[LocalRegistry]:
    """An empty registry for one test module's images: the session's seeded registry keeps only its own
    content (other tests compare its catalog with what was seeded)."""
    sandbox = start_sandbox()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def empty_sandbox() -> Iterator[LocalRegistry]:
    """An empty registry (delete enabled) for one test."""
    sandbox = start_sandbox()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def big_sandbox() -> Iterator[LocalRegistry]:
    """Test-scale content (``scale/tags`` with 300 tags, 150 one-tag repositories), pushed with regexplore's
    own v2 client (blobs mounted across repositories)."""
    sandbox = start_sandbox(seed="test-scale")
    yield sandbox
    sandbox.stop()


def _require_skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.fail("skopeo is not installed: apt-get install skopeo", pytrace=False)
    return path


class Skopeo:
    """Run skopeo against loopback registries: TLS verification off, no credentials unless given.

    ``skopeo("inspect", "--raw", "docker://127.0.0.1:5000/demo/app:1")`` returns parsed JSON;
    ``raw=True`` returns stdout bytes (for digests); ``creds=("user", "pw")`` logs in. A failing command
    raises ``AssertionError`` with skopeo's stderr.
    """

    _TLS_FLAGS = {
        "copy": ["--src-tls-verify=false", "--dest-tls-verify=false"],
        "sync": ["--src-tls-verify=false", "--dest-tls-verify=false"],
    }

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def command(self, *args: str, creds: tuple[str, str] | None = None) -> list[str]:
        sub, rest = args[0], list(args[1:])
        flags = self._TLS_FLAGS.get(sub, ["--tls-verify=false"])
        if creds:
            flags = [*flags, "--creds", f"{creds[0]}:{creds[1]}"]
        return [self.binary, sub, *flags, *rest]

    def __call__(self, *args: str, raw: bool = False, creds: tuple[str, str] | None = None,
                 timeout: float = 60) -> Any:
        proc = subprocess.run(self.command(*args, creds=creds), capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"skopeo {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
        if raw:
            return proc.stdout
        return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.fixture(scope="session")
def skopeo() -> Skopeo:
    """A ``Skopeo`` runner (see its docstring)."""
    return Skopeo(_require_skopeo())


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A test's own download cache folder (never the user's), and no progress bars."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("REGEXPLORE_CACHE", str(folder))
    monkeypatch.setenv("REGEXPLORE_PROGRESS", "0")
    return folder


@pytest.fixture(scope="module")
def plain() -> Iterator[tuple[LocalRegistry, Any]]:
    """A registry of the module's own holding one image whose layer is 300 kB of random bytes."""
    from servers import push_tiny_image

    with LocalRegistry() as reg:
        yield reg, push_tiny_image(reg.url, "demo/rand", payload=os.urandom(300_000))

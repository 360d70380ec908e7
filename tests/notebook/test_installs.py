"""The notebooks under each documented install, from a built wheel, in a venv of its own (issue 11).

The README tells a notebook user ``pip install "regexplore[notebook]"``; binder installs ``.[notebook,plot]``.
The suite's own venv has every extra, so it cannot see a notebook that needs a test-only package, nor a
wheel that lacks the notebooks or the recordings notebook 03 replays. Here: the wheel is built
(``pip wheel --no-deps``), installed with exactly the ``notebook`` extra into a fresh venv (no system site
packages; pip's cache keeps it to a minute or two once warm), and run from outside the checkout.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def run(cmd: list[str], *, timeout: int, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; fail with the end of its output unless it exits 0."""
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd[:4]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``name``, filled by ``make(folder)`` once for the whole run: pytest-xdist workers share
    it (the first to ask makes it, the others wait on a lock), so the wheel and the venv are made once."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".done").touch()
    return folder


def build_wheel(out: Path) -> None:
    """Build the wheel into ``out`` from a copy of what the build reads: nothing is written into the
    checkout, and the copy proves the build needs nothing else (``notebooks/`` is reached through the
    package's symlink)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("regexplore", "notebooks"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], timeout=300)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (built,) = once(tmp_path_factory, "regexplore-wheel", build_wheel).glob("regexplore-*.whl")
    return built


@pytest.fixture(scope="session")
def notebook_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``regexplore[notebook]`` installed from the wheel; returns its ``bin`` folder."""

    def install(venv: Path) -> None:
        run([sys.executable, "-m", "venv", "--clear", str(venv)], timeout=120)
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile",
             f"regexplore[notebook] @ {wheel.as_uri()}"], timeout=600, env=user_env(venv.parent))

    return once(tmp_path_factory, "regexplore-notebook-venv", install) / "bin"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working folder outside the checkout (nothing of it is importable from there)."""
    return tmp_path


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user of the installed package: no checkout on the path, no registry named,
    Jupyter's own folders and the blob cache in ``home``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "REGEXPLORE_REGISTRY", "REGEXPLORE_NOTEBOOKS")}
    return {**env, "JUPYTER_DATA_DIR": str(home / "jupyter-data"), "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
            "IPYTHONDIR": str(home / "ipython"), "REGEXPLORE_CACHE": str(home / "cache")}


def installed_notebooks(bin_dir: Path, home: Path) -> Path:
    """Where the installed package's notebooks are (inside the venv, not the checkout)."""
    code = "from regexplore.jupyter.demo import notebooks_dir; print(notebooks_dir())"
    folder = Path(run([str(bin_dir / "python"), "-c", code], timeout=60, env=user_env(home), cwd=home).stdout.strip())
    assert folder.is_relative_to(bin_dir.parent) and not folder.is_relative_to(ROOT), folder
    return folder


def test_the_wheel_carries_the_notebooks_and_the_recordings(wheel: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("regexplore/jupyter/notebooks/")) == NOTEBOOKS
    recordings = ROOT / "regexplore" / "jupyter" / "recordings"
    shipped = {p.relative_to(recordings).as_posix() for p in recordings.rglob("*") if p.is_file()}
    assert {n.removeprefix("regexplore/jupyter/recordings/") for n in names
            if n.startswith("regexplore/jupyter/recordings/")} == shipped
    assert {"dockerhub_ubuntu_index_2024.yaml", "dockerhub_blob_cdn_redirect.yaml",
            "alpine_3.23.2_attestations/PROVENANCE.md"} < shipped


def test_demo_headless_executes_every_notebook_of_the_installed_package(notebook_venv: Path, home: Path) -> None:
    folder = installed_notebooks(notebook_venv, home)
    assert sorted(p.name for p in folder.glob("*.ipynb")) == NOTEBOOKS
    out = home / "demo-output"
    proc = run([str(notebook_venv / "regexplore"), "demo", "--headless", "--output", str(out)], timeout=300,
               env=user_env(home), cwd=home)
    assert f"Executing the notebooks of {folder}" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [n.replace(".ipynb", ".html") for n in NOTEBOOKS]
    for name in NOTEBOOKS:  # a failing cell stops the command non-zero; here: every cell ran, none raised
        html = (out / name.replace(".ipynb", ".html")).read_text()
        code_cells = [c for c in nbformat.read(folder / name, as_version=4).cells if c.cell_type == "code"]
        assert len(re.findall(r"jp-InputArea-prompt\">In\W*\[\d+\]:", html)) == len(code_cells), name
        assert "Traceback" not in html, name
    assert "1357 bytes, verified" in (out / "03-how-a-pull-works.html").read_text()  # the recordings replayed
    assert "builder:    https://github.com/docker-library" in (out / "06-supply-chain.html").read_text()


def test_pull_notebook_starts_its_auth_sandbox_with_only_the_notebook_extra(notebook_venv: Path, home: Path) -> None:
    """Notebook 03 without ``REGEXPLORE_REGISTRY`` starts a registry with htpasswd auth (bcrypt)."""
    source = installed_notebooks(notebook_venv, home) / "03-how-a-pull-works.ipynb"
    target = home / "03-own-registry.ipynb"
    run([str(notebook_venv / "jupyter"), "nbconvert", "--to", "notebook", "--execute", str(source),
         "--output", str(target), "--ExecutePreprocessor.timeout=240"], timeout=300, env=user_env(home), cwd=home)
    ping = nbformat.read(target, as_version=4).cells[3]
    shown = "".join(out.get("text", "") for out in ping.outputs)
    assert "'auth_scheme': 'Basic'" in shown and "'authenticated': True" in shown


def test_local_registry_starts_and_stops_first_thing_in_a_fresh_interpreter(notebook_venv: Path, home: Path) -> None:
    """The issue's line (once a ``RecursionError``), in the installed package: a real seeded registry."""
    code = ("import regexplore as rx\n"
            "with rx.sandbox.LocalRegistry(seed=True) as sandbox:\n"
            "    print(','.join(rx.Registry(sandbox.url).catalog()['repository']))\n"
            "print('running' if sandbox.running else 'stopped')\n")
    repos, state = run([str(notebook_venv / "python"), "-c", code], timeout=120, env=user_env(home),
                       cwd=home).stdout.split()
    assert "demo/busybox" in repos.split(",") and state == "stopped"


def test_binder_installs_nothing_the_notebook_extra_lacks() -> None:
    """binder: ``-e .[notebook,plot]`` and voila (which no notebook imports). ``plot`` is within ``notebook``,
    so the install above is binder's, less voila."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["plot"]) <= set(extras["notebook"])
    lines = [line.strip() for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "-e .[notebook,plot]" and [line.split(">")[0] for line in lines[1:]] == ["voila"]
    for name in NOTEBOOKS:
        sources = "\n".join(c.source for c in nbformat.read(ROOT / "notebooks" / name, as_version=4).cells)
        assert "voila" not in sources, name

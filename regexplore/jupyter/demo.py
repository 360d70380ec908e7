"""The notebook side of ``python -m regexplore demo``: open JupyterLab on the tour, or (headless) execute
every notebook against the running sandbox and write them as HTML.

Both hand the sandbox to the notebooks through ``REGEXPLORE_REGISTRY`` — the variable every notebook reads
first — so they use the registry the command started instead of starting their own.

The notebooks and the Docker Hub recordings notebook 03 replays are package data of this package
(``notebooks/``, a symlink to the repository's ``notebooks/`` folder that the wheel build follows, and
``recordings/``), found with :mod:`importlib.resources` in a checkout and in an installed wheel alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from .. import _env

__all__ = ["NO_NOTEBOOKS", "TOUR", "export_notebooks", "lab_command", "notebooks_dir", "recording", "run_lab"]

TOUR = "01-tour.ipynb"
NO_NOTEBOOKS = ("no notebooks found: this regexplore was installed without its package data "
                "(set REGEXPLORE_NOTEBOOKS to a folder holding 01-tour.ipynb)")


def _package_folder(name: str) -> Path:
    """The folder ``name`` of this package's data, resolved (a checkout's symlink leads to its target)."""
    return Path(str(resources.files(__package__) / name)).resolve()


def notebooks_dir() -> Path | None:
    """The folder of the notebooks: ``REGEXPLORE_NOTEBOOKS`` when set, else the ones shipped in the package
    (in a source checkout: the repository's ``notebooks/``). Returns None when that folder has no
    :data:`TOUR` (see :data:`NO_NOTEBOOKS`)."""
    env = _env.text("REGEXPLORE_NOTEBOOKS")
    path = Path(env) if env else _package_folder("notebooks")
    return path if (path / TOUR).is_file() else None


def recording(name: str) -> Path:
    """The path of ``name``, a vcrpy cassette of real Docker Hub responses shipped in the package
    (``dockerhub_ubuntu_index_2024.yaml``, ``dockerhub_blob_cdn_redirect.yaml``; built by
    ``tests/recorded/cassettes/build.py``).

    Raises
    ------
    FileNotFoundError
        If the package holds no such recording.
    """
    path = _package_folder("recordings") / name
    if not path.is_file():
        raise FileNotFoundError(f"no recording {name!r} in {path.parent}")
    return path


def _kernel_env(registry_url: str) -> dict[str, str]:
    return {**os.environ, "REGEXPLORE_REGISTRY": registry_url}


def lab_command(folder: Path, notebook: str = TOUR, *, open_browser: bool = True) -> list[str]:
    """The JupyterLab command line that opens ``folder/notebook`` (server on 127.0.0.1 only)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}", "--ServerApp.ip=127.0.0.1",
           f"--LabApp.default_url=/lab/tree/{notebook}"]
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI machines often run as root; Jupyter refuses without it
    return cmd


def run_lab(registry_url: str, folder: Path, notebook: str = TOUR, *, open_browser: bool = True) -> int:
    """Run JupyterLab in the foreground on ``folder/notebook`` with ``REGEXPLORE_REGISTRY=registry_url``
    until it exits (Ctrl-C); returns its exit status."""
    proc = subprocess.Popen(lab_command(folder, notebook, open_browser=open_browser), env=_kernel_env(registry_url),
                            cwd=folder)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def export_notebooks(registry_url: str, out: str | os.PathLike[str], folder: Path | None = None,
                     names: Iterable[str] | None = None, *, timeout: int = 300) -> list[Path]:
    """Execute each notebook of ``folder`` (default :func:`notebooks_dir`; ``names`` to choose) against
    ``registry_url`` and write ``out/<name>.html``; returns the HTML paths. A failing cell raises
    ``nbclient.exceptions.CellExecutionError`` (the HTML of the notebooks before it is kept)."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    folder = folder or notebooks_dir()
    if folder is None:
        raise FileNotFoundError(NO_NOTEBOOKS)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    found = [p.name for p in folder.glob("*.ipynb")]
    chosen: Sequence[str] = sorted(names if names is not None else found)
    written = []
    saved = os.environ.get("REGEXPLORE_REGISTRY")
    os.environ["REGEXPLORE_REGISTRY"] = registry_url   # the kernel inherits it
    try:
        for name in chosen:
            nb = nbformat.read(folder / name, as_version=4)
            # the kernel's log level: ipykernel warns on every start that its loopback TCP is unencrypted
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           extra_arguments=["--IPKernelApp.log_level=ERROR"],
                           resources={"metadata": {"path": str(out_dir)}}).execute()
            body, _ = HTMLExporter().from_notebook_node(nb)
            target = out_dir / (Path(name).stem + ".html")
            target.write_text(body, encoding="utf-8")
            written.append(target)
            print(f"wrote {target}", flush=True)
    finally:
        if saved is None:
            os.environ.pop("REGEXPLORE_REGISTRY", None)
        else:
            os.environ["REGEXPLORE_REGISTRY"] = saved
    return written

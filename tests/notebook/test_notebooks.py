"""Execute every notebook of notebooks/ top to bottom in a real kernel; any cell error fails the test.

The notebooks use ``REGEXPLORE_REGISTRY`` when set: here it points at the session's seeded sandbox, so they
read the same demo content the other tests check. One notebook is also run without it, to prove the
"starts its own seeded registry" path works on a machine with nothing running.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def execute(path: Path, env: dict[str, str], cwd: Path, timeout: int = 180) -> nbformat.NotebookNode:
    """Run ``path`` in a fresh python3 kernel with ``env`` added to the environment; returns the executed
    notebook. ``nbclient`` raises ``CellExecutionError`` (with the cell and traceback) on any error."""
    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)          # the kernel is a child process: it inherits this environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                       allow_errors=False).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def run_against(name: str, registry_url: str, tmp_path: Path) -> tuple[nbformat.NotebookNode, str]:
    """Execute notebook ``name`` with ``REGEXPLORE_REGISTRY`` = ``registry_url`` (downloads and cache in
    ``tmp_path``); returns the executed notebook and the text of its outputs."""
    env = {"REGEXPLORE_REGISTRY": registry_url, "REGEXPLORE_DOWNLOADS": str(tmp_path / "downloads"),
           "REGEXPLORE_CACHE": str(tmp_path / "cache")}
    nb = execute(NOTEBOOKS / name, env, tmp_path)
    return nb, outputs_text(nb)


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(json.dumps(out.get("data", {})))
    return "\n".join(parts)


def test_the_notebooks_are_committed_without_outputs() -> None:
    assert ALL == ["01-tour.ipynb", "02-analysis.ipynb", "03-how-a-pull-works.ipynb", "04-inside-an-image.ipynb",
                   "05-registry-census.ipynb", "06-supply-chain.ipynb"]
    for name in ALL:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert "REGEXPLORE_REGISTRY" in nb.cells[0].source, f"{name} must say which registry it uses"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs"


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_against_the_sandbox(name: str, registry_sandbox: Any, tmp_path: Path) -> None:
    nb, text = run_against(name, registry_sandbox.url, tmp_path)
    assert registry_sandbox.host in text           # it really talked to the sandbox
    assert "Traceback" not in text
    if name == "01-tour.ipynb":
        assert (tmp_path / "downloads").is_dir() and any((tmp_path / "downloads").iterdir())
        assert "demo/multiarch" in text and "linux/amd64" in text     # browser.value was shown
        assert "application/vnd.jupyter.widget-view+json" in text     # the widget was displayed
    if name == "02-analysis.ipynb":
        assert "image/png" in text                                    # the plots were drawn
    if name == "03-how-a-pull-works.ipynb":
        assert "refused:" in text and "OCI index found" in text       # negotiation, with the registry's words
        download_cell = next(c for c in nb.cells if "cache=False" in c.source)
        shown = outputs_text(nbformat.v4.new_notebook(cells=[download_cell]))
        assert shown.count("/v2/demo/multiarch/blobs/sha256:") >= 3   # config + 2 layers on the wire
        assert "/v1/repositories/demo/busybox/images" in text and "/ancestry" in text  # the v1 contrast ran
        # Docker Hub's recorded answers: the 401, the anonymous token, the 307 to the CDN, verified bytes
        assert "auth.docker.io/token" in text and "production.cloudflare.docker.com" in text
        assert "1357 bytes, verified" in text and "307" in text
    if name == "04-inside-an-image.ipynb":
        from importlib import metadata

        assert "demo/pyapp:1.0" in text and "'ID': 'debian'" in text and "image/png" in text
        assert "1.5 " in text and " components" in text                     # the SBOM was made
        # Debian's pyparsing (demo/debian) is older than pip's (demo/pyapp): univers' PEP 440 order finds it
        assert f"python pyparsing below {metadata.version('pyparsing')}" in text and "demo/debian:12" in text
    elif name == "06-supply-chain.ipynb":
        assert "with cosign.pub: [True]" in text and "does not verify with key" in text   # made, then checked
        assert "{'in both': 3, 'layers only': 1, 'SBOM only': 0}" in text   # the SBOM left ipywidgets out
        assert "SPDX-2.3 from buildkit attestation — 20 packages" in text   # Docker Hub's recorded statement
        assert "builder:    https://github.com/docker-library" in text
    elif name == "05-registry-census.ipynb":
        import requests

        url = registry_sandbox.url
        repos = requests.get(f"{url}/v2/_catalog", timeout=30).json()["repositories"]
        listed = sum(len(requests.get(f"{url}/v2/{r}/tags/list", timeout=30).json()["tags"]) for r in repos)
        assert f"{len(repos)} repositories, {listed} tags" in text      # the census = the raw HTTP listing
        assert "image/png" in text and " 0 errors" in text
        assert "sharing saves" in text and "platform manifests are listed by an index" in text


def test_pull_notebook_starts_its_own_registry_with_auth(tmp_path: Path) -> None:
    env = {"REGEXPLORE_REGISTRY": "", "REGEXPLORE_CACHE": str(tmp_path / "cache")}
    nb = execute(NOTEBOOKS / "03-how-a-pull-works.ipynb", env, tmp_path, timeout=240)
    first_contact = outputs_text(nbformat.v4.new_notebook(cells=[nb.cells[3]]))   # the ping cell
    assert "'auth_scheme': 'Basic'" in first_contact and "'authenticated': True" in first_contact
    assert "401" in first_contact                   # the challenge is in the trace


def test_demo_headless_executes_the_notebooks_to_html(tmp_path: Path) -> None:
    """``python -m regexplore demo --headless``: its own seeded registry, the tables, then every notebook
    executed against that registry and written as HTML."""
    import subprocess
    import sys

    out = tmp_path / "demo-output"
    env = {**os.environ, "REGEXPLORE_CACHE": str(tmp_path / "cache")}
    env.pop("REGEXPLORE_REGISTRY", None)
    proc = subprocess.run([sys.executable, "-m", "regexplore", "demo", "--headless", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]   # no kernel log noise in the main job's output
    lines = proc.stdout.splitlines()
    url = next(line.split()[-1] for line in lines if line.startswith("Registry running at"))
    assert sorted(p.name for p in out.iterdir()) == [n.replace(".ipynb", ".html") for n in ALL]
    tour = (out / "01-tour.html").read_text()
    assert url in tour and "library/webapp" in tour and "Traceback" not in tour


def test_lab_command_opens_the_tour_on_loopback() -> None:
    from regexplore.jupyter.demo import lab_command, notebooks_dir

    folder = notebooks_dir()
    assert folder == NOTEBOOKS
    cmd = lab_command(folder, open_browser=False)
    assert cmd[1:3] == ["-m", "jupyterlab"] and "--no-browser" in cmd
    assert f"--ServerApp.root_dir={NOTEBOOKS}" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    assert "--LabApp.default_url=/lab/tree/01-tour.ipynb" in cmd


def test_binder_start_serves_a_seeded_registry_to_the_command(tmp_path: Path) -> None:
    """binder/start: a seeded registry in the background, REGEXPLORE_REGISTRY exported, then ``exec "$@"``."""
    import signal
    import subprocess
    import sys

    root = NOTEBOOKS.parent
    assert (root / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert "docker-registry" in (root / "binder" / "apt.txt").read_text().split()
    assert any(line.startswith("-e .") for line in (root / "binder" / "requirements.txt").read_text().splitlines())
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("REGEXPLORE_REGISTRY", None)
    probe = ("import os, regexplore as rx; url = os.environ['REGEXPLORE_REGISTRY']; "
             "print(url, ','.join(rx.Registry(url).catalog()['repository']))")
    try:
        proc = subprocess.run(["bash", str(root / "binder" / "start"), sys.executable, "-c", probe],
                              capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    finally:
        pid_file = tmp_path / "regexplore-registry.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)   # the background sandbox stops its registry
            except ProcessLookupError:
                pass
    assert proc.returncode == 0, proc.stderr[-2000:]
    url, repos = proc.stdout.split()
    assert url.startswith("http://127.0.0.1:") and "demo/busybox" in repos.split(",")


@pytest.fixture(scope="module")
def other_registry(registry_sandbox: Any, skopeo: Any) -> Any:
    """A registry that is not the demo: images copied by skopeo under other names, no multi-platform
    image (a role the notebooks must do without), one repository with two different images."""
    from regexplore.sandbox import LocalRegistry

    with LocalRegistry() as other:
        for src, dest in (("library/webapp:latest", "acme/web:2.0"), ("demo/busybox:1.1", "acme/web:1.9"),
                          ("demo/zstd:latest", "tools/zstd:latest"), ("demo/minimal:latest", "tools/minimal:1")):
            skopeo("copy", f"docker://{registry_sandbox.host}/{src}", f"docker://{other.host}/{dest}", raw=True)
        yield other


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_against_another_registry(name: str, other_registry: Any, tmp_path: Path) -> None:
    """REGEXPLORE_REGISTRY is the one line to change: the notebooks find what to show in that registry."""
    nb, text = run_against(name, other_registry.url, tmp_path)
    assert other_registry.host in text and "Traceback" not in text and "acme/web" in text
    v2_part = [c for c in nb.cells if not any(v1 in c.source for v1 in ("LocalV1Registry", "reg1", "v1srv"))]
    assert "demo/" not in outputs_text(nbformat.v4.new_notebook(cells=v2_part))   # no demo name hard-coded
    if name == "01-tour.ipynb":
        assert "no multi-platform image here" in text
        assert any((tmp_path / "downloads").iterdir())


def test_pick_examples_fills_every_role_from_what_a_registry_has(registry_sandbox: Any, skopeo: Any) -> None:
    import regexplore as rx
    from regexplore.sandbox import LocalRegistry
    from regexplore.sandbox.examples import DEMO, pick_examples

    with rx.Registry(registry_sandbox.url) as reg:
        assert pick_examples(reg) is DEMO
    with LocalRegistry() as other:
        for src, dest in (("demo/multiarch:latest", "x/multi:latest"), ("demo/busybox:1.0", "x/box:old"),
                          ("demo/busybox:1.1", "x/box:new"), ("demo/busybox:1.1", "x/box:latest"),
                          ("demo/big:latest", "x/big:1")):
            skopeo("copy", "--all", f"docker://{registry_sandbox.host}/{src}", f"docker://{other.host}/{dest}",
                   raw=True)
        with rx.Registry(other.url) as reg:
            ex = pick_examples(reg)
            assert ex.source == "catalog" and ex.repositories == ["x/big", "x/box", "x/multi"]
            assert ex.repository == ex.many_tags == "x/box"            # three tags
            assert ex.multiarch == "x/multi:latest" and ex.platform == "linux/amd64"
            assert ex.download == "x/box:latest"                       # the smallest image
            layers = {r: len(reg.layers(r)) for r in ("x/big:1", "x/box:latest", "x/multi:latest")}
            assert layers[ex.image] == max(layers.values())
            assert set(ex.pair or ()) in ({"x/box:old", "x/box:new"}, {"x/box:old", "x/box:latest"})
            assert reg.manifest(ex.pair[0]).digest != reg.manifest(ex.pair[1]).digest
            only = pick_examples(reg, ["x/big"])
            assert only.source == "REGEXPLORE_REPOSITORIES" and only.multiarch is None and only.pair is None
        with rx.Registry(other.url) as reg, pytest.raises(rx.NotFound, match="x/none"):
            pick_examples(reg, ["x/none"])
    with LocalRegistry() as empty, rx.Registry(empty.url) as reg:
        with pytest.raises(rx.RegistryError, match="no tagged image in the catalog"):
            pick_examples(reg)

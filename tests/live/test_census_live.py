"""The census against the real registry binary seeded once with 300+ repositories (tests/support/censusseed.py):
what it stores is checked against raw HTTP listings, dpkg-query and importlib.metadata (packages), the layer
tars themselves (files); a lost Dask worker, a killed process, faults, unit order, and the request budget
counted per second at a proxy. One census of the whole registry (``full``) serves as the reference."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from censusseed import seed_census, seed_inside
from inside_images import DPKG_STATUS, SITE_PACKAGES
from servers import FaultProxy

import regexplore as rx
from regexplore.census.ledger import Ledger
from regexplore.census.plan import Unit, pages_of
from regexplore.content.inside.catalogers import python
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.xdist_group("census")
ROOT = Path(__file__).resolve().parents[2]
KEYS = {"repositories": ["repository"], "tags": ["repository", "tag"], "manifests": ["digest"],
        "index_entries": ["index_digest", "digest"], "layers": ["manifest_digest", "index"],
        "history": ["manifest_digest", "step"]}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder in memory (tmpfs) when the machine has one: the registry's storage and the census datasets
    are thousands of small files, which a busy disk makes slow to write and to remove."""
    shm = Path("/dev/shm")
    roomy = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * 1024**3
    folder = Path(tempfile.mkdtemp(prefix="regexplore-census-", dir=shm)) if roomy else \
        tmp_path_factory.mktemp("census")  # a container's default /dev/shm is 64 MB
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def work(scratch, request) -> Path:
    """A fresh folder for one test's census datasets."""
    return Path(tempfile.mkdtemp(prefix=re.sub(r"\W", "_", request.node.name)[:40], dir=scratch))


@pytest.fixture(scope="module")
def seeded(scratch):
    """The registry (storage in ``scratch``), seeded once for the module: (sandbox, what seed_census pushed,
    the inside images)."""
    storage = {"storage": {"filesystem": {"rootdirectory": str(scratch / "registry")}}}
    with LocalRegistry(extra_config=storage) as sandbox:
        yield sandbox, seed_census(sandbox.url), seed_inside(sandbox.url)


@pytest.fixture(scope="module")
def full(seeded, scratch):
    """The census of the whole seeded registry, local threads, no faults."""
    sandbox, *_ = seeded
    return rx.census(sandbox.url, scratch / "full", progress=False)


def raw_tags(url: str) -> set[tuple[str, str]]:
    """Every (repository, tag) the registry lists, read with plain requests."""
    page = requests.get(f"{url}/v2/_catalog", params={"n": 1000}, timeout=30)
    assert "Link" not in page.headers  # one page holds them all
    repos = page.json()["repositories"]
    return {(r, t) for r in repos
            for t in requests.get(f"{url}/v2/{r}/tags/list", timeout=30).json()["tags"] or []}


def table(c, name: str) -> pd.DataFrame:
    return c.table(name).sort_values(KEYS[name]).reset_index(drop=True)


def assert_same(a, b) -> None:
    for name in KEYS:
        pd.testing.assert_frame_equal(table(a, name), table(b, name))


def test_census_lists_what_the_registry_lists(seeded, full):
    sandbox, pushed, inside = seeded
    assert len(pushed.tags) >= 300
    tags = full.tags
    assert set(zip(tags.repository, tags.tag)) == raw_tags(sandbox.url)
    assert len(tags) == len(set(zip(tags.repository, tags.tag)))
    listed = dict(zip(zip(tags.repository, tags.tag), tags.digest))
    assert {(r, t): d for r, ts in pushed.tags.items() for t, d in ts.items()} == {
        k: d for k, d in listed.items() if k[0] in pushed.tags}
    assert listed[("inside/copy", "py")] == listed[("inside/py", "1")] == inside.py.digest
    m = full.manifests
    assert m.digest.is_unique and set(tags.digest) <= set(m.digest)
    index = m[m.media_type == "application/vnd.oci.image.index.v1+json"].digest.item()
    assert sorted(m[m.index_digest == index].architecture) == ["amd64", "arm64"]
    assert listed[("solo/arch", "amd64")] in set(m[m.index_digest == index].digest)  # tagged alone too
    assert full.errors.empty
    assert full.counts["tags"] == len(pd.read_parquet(Path(full.path) / "tags"))
    assert dict(zip(full.repositories.repository, full.repositories.tags))["big/many-0"] == 250


def test_killed_census_resumes_only_unfinished_units(seeded, full, work):
    sandbox, *_ = seeded
    out = work / "killed"
    code = (f"import regexplore as rx; rx.census({sandbox.url!r}, {str(out)!r}, progress=False, "
            "max_requests_per_second=150)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    ledger = Ledger(out)
    deadline = time.monotonic() + 60
    while ledger.count() < 60 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 60 <= ledger.count() < 300
    done = {p.stem for p in (out / "_ledger").glob("*.json")}
    unfinished = set()
    for repo, n in zip(full.repositories.repository, full.repositories.tags):
        units = [Unit(repo), *pages_of(repo, [str(i) for i in range(n)])[1]]
        if any(u.key not in done for u in units):
            unfinished.add(repo)
    with FaultProxy(sandbox.url) as proxy:
        again = rx.census(proxy.url, out, progress=False)
        paths = [r["path"].split("?")[0] for r in proxy.requests]
    touched = {re.match(r"/v2/(.+)/(tags|manifests|blobs)/", p).group(1) for p in paths if "/_catalog" not in p}
    assert touched == unfinished
    assert sum("/_catalog" in p for p in paths) == 1
    assert_same(again, full)


def test_faults_become_error_rows_only_when_they_last(seeded, full, work):
    sandbox, pushed, inside = seeded
    names = ["multi/arch", "x.y_z/005-tool", *sorted(pushed.tags)[:20], "ghost/none"]
    with FaultProxy(sandbox.url) as proxy:
        proxy.fail(429, times=3, path=r"/tags/list", headers={"Retry-After": "0"})
        proxy.fail(503, times=2, path=r"/manifests/")
        proxy.drop(after_bytes=20, times=1, path=r"/manifests/", method="GET")
        c = rx.census(proxy.url, work / "faults", repositories=names, progress=False)
        assert proxy.hits(r"/_catalog") == 0
    errors = c.errors
    assert errors[["repository", "error", "status"]].to_dict("records") == [
        {"repository": "ghost/none", "error": "NotFound", "status": 404}]
    want = full.tags[full.tags.repository.isin(names)].sort_values(["repository", "tag"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(c.tags.sort_values(["repository", "tag"]).reset_index(drop=True), want)


def test_a_manifest_that_stays_truncated_is_one_error_row(seeded, work):
    sandbox, *_ = seeded
    with FaultProxy(sandbox.url) as proxy:
        proxy.drop(after_bytes=20, times=None, path=r"/x\.y_z/005-tool/manifests/", method="GET")
        c = rx.census(proxy.url, work / "cut", repositories=["x.y_z/005-tool"], progress=False)
    assert c.errors[["unit", "tag"]].to_dict("records") == [{"unit": "x.y_z/005-tool", "tag": "1.0"}]
    assert c.manifests.empty
    assert not Ledger(c.path).done(Unit("x.y_z/005-tool"))  # tried again on resume


def test_index_digest_does_not_depend_on_unit_order(seeded, full, work):
    """A platform manifest tagged on its own (solo/arch) and named by an index (multi/arch): censused one
    repository after the other, in both orders, the stored tables are the same and name the index."""
    sandbox, *_ = seeded
    runs = []
    for order in (["solo/arch", "multi/arch"], ["multi/arch", "solo/arch"]):
        out = work / "-".join(o.replace("/", "_") for o in order)
        for repo in order:
            rx.census(sandbox.url, out, repositories=[repo], progress=False)
        runs.append(rx.open_census(out))
    assert_same(*runs)
    m = runs[0].manifests
    solo = runs[0].tags.set_index("repository").digest["solo/arch"]
    index = runs[0].tags.set_index("repository").digest["multi/arch"]
    assert m.set_index("digest").index_digest[solo] == index
    everything = table(full, "manifests")
    pd.testing.assert_frame_equal(table(runs[0], "manifests"),
                                  everything[everything.digest.isin(m.digest)].reset_index(drop=True))


def dpkg_query(tmp_path: Path) -> set[tuple[str, str]]:
    """(name, version) of the ``ii`` packages dpkg-query reads from this machine's status file."""
    (tmp_path / "status").write_bytes(DPKG_STATUS.read_bytes())
    fmt = "-f=${db:Status-Abbrev}|${Package}|${Version}\n"
    out = subprocess.run(["dpkg-query", f"--admindir={tmp_path}", "-W", fmt], check=True, capture_output=True,
                         text=True).stdout
    return {(n, v) for a, n, v in (line.split("|") for line in out.splitlines()) if a.strip() == "ii"}


def layer_names(url: str, repo: str, digest: str) -> list[str]:
    """The member names of a layer tar, read with plain requests and tarfile."""
    import io
    import tarfile

    blob = requests.get(f"{url}/v2/{repo}/blobs/{digest}", timeout=30).content
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return [m.name for m in tar.getmembers()]


def test_packages_and_files_read_each_layer_once(seeded, work, tmp_path):
    """Two images sharing their base layer (this machine's dpkg status), each tagged in two repositories:
    packages once per manifest digest (dpkg-query's and importlib.metadata's answers), files once per layer
    digest (the tar's own member list), and every layer blob fetched once."""
    sandbox, _, inside = seeded
    with FaultProxy(sandbox.url) as proxy:
        c = rx.census(proxy.url, work / "inside", repositories=list(inside.repositories), packages=True,
                      files=True, progress=False)
        blob_gets = [r["path"] for r in proxy.requests if r["method"] == "GET" and "/blobs/" in r["path"]]
    assert c.errors.empty
    layers = {*inside.deb.layer_digests, *inside.py.layer_digests}
    assert sorted(p.rsplit("/", 1)[1] for p in blob_gets if p.rsplit("/", 1)[1] in layers) == sorted(layers)
    pk = c.packages
    assert set(pk.manifest_digest) == {inside.deb.digest, inside.py.digest}
    debs = {d: set(zip(g.name, g.version)) for d, g in pk[pk.type == "deb"].groupby("manifest_digest")}
    want = dpkg_query(tmp_path)
    assert len(want) >= 100 and debs == {inside.deb.digest: want, inside.py.digest: want}
    py = pk[(pk.manifest_digest == inside.py.digest) & (pk.type == "python")]
    metadata = {(python.normalize(d.metadata["Name"]), d.version) for d in importlib.metadata.distributions(
        path=[str(SITE_PACKAGES)]) if d.metadata["Name"] and str(d._path).endswith(".dist-info")}  # syft's names
    assert set(zip(py.name, py.version)) == metadata
    assert (pk[pk.type == "deb"].layer == inside.deb.layer_digests[0]).all()
    files = c.files
    assert set(files.layer) == layers
    for digest in layers:
        names = files[files.layer == digest].path.tolist()
        assert names == [n.rstrip("/") for n in layer_names(sandbox.url, "inside/py", digest)]


@pytest.fixture(scope="module")
def cluster():
    """A Dask LocalCluster of two worker processes (one thread each) and its client, for the module."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def busiest(times: list[float], window: float) -> int:
    """The most requests in any window of ``window`` seconds."""
    times = sorted(times)
    start, most = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_request_budget_holds_at_the_registry(seeded, cluster, work, engine):
    """Requests counted at a proxy in front of the registry stay under max_requests_per_second, threads here
    or two Dask workers sharing the rate: in any 2 s window at most the bucket's ``rate × (2 + 0.1)``, plus 15%
    for requests that a loaded machine delivers to the proxy in clumps (twice the rate would be 4 × rate);
    and the rate was what bound the run: from the first request to the last at least (requests - burst) / rate,
    less 10% for the clumps (two workers each on the whole rate would take about half that)."""
    sandbox, pushed, _ = seeded
    rate = 60
    names = [r for r in sorted(pushed.tags) if r.startswith("team")][:64]  # four Dask batches of 16
    with FaultProxy(sandbox.url) as proxy:
        rx.census(proxy.url, work / engine, repositories=names, progress=False, max_requests_per_second=rate,
                  client=cluster if engine == "dask" else None)
        times = [r["time"] for r in proxy.requests]
    assert len(times) >= 2 * rate
    most = busiest(times, 2.0)
    assert most <= rate * 2.1 * 1.15, f"{most} requests in 2 s at {rate}/s"
    span = max(times) - min(times)
    assert span >= 0.9 * (len(times) - rate * 0.1) / rate, f"{len(times)} requests in {span:.2f} s"


def test_dask_worker_killed_mid_census_equals_local_run(seeded, full, cluster, work):
    sandbox, *_ = seeded
    out = work / "dask"
    pids = list(cluster.run(os.getpid).values())
    ledger = Ledger(out)

    def kill_one() -> None:
        while ledger.count() < 40:
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    c = rx.census(sandbox.url, out, client=cluster, progress=False, max_requests_per_second=400)
    killer.join(timeout=5)
    assert not killer.is_alive()
    assert c.errors.empty
    assert_same(c, full)

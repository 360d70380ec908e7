"""The census against the real registry binary seeded with 300+ repositories (tests/support/censusseed.py):
what it stores is checked against raw HTTP listings, a lost Dask worker and a killed process, and faults."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from censusseed import seed_census
from servers import FaultProxy

import regexplore as rx
from regexplore.census.ledger import Ledger
from regexplore.census.plan import Unit, pages_of
from regexplore.sandbox import LocalRegistry

pytestmark = pytest.mark.xdist_group("census")
ROOT = Path(__file__).resolve().parents[2]
KEYS = {"repositories": ["repository"], "tags": ["repository", "tag"], "manifests": ["digest"],
        "layers": ["manifest_digest", "index"], "history": ["manifest_digest", "step"]}


@pytest.fixture(scope="module")
def seeded():
    with LocalRegistry() as sandbox:
        yield sandbox, seed_census(sandbox.url)


@pytest.fixture(scope="module")
def full(seeded, tmp_path_factory):
    """The census of the whole seeded registry, local threads, no faults."""
    sandbox, _ = seeded
    return rx.census(sandbox.url, tmp_path_factory.mktemp("full"), progress=False)


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
    sandbox, pushed = seeded
    assert len(pushed.tags) >= 300
    tags = full.tags
    assert set(zip(tags.repository, tags.tag)) == raw_tags(sandbox.url)
    assert len(tags) == len(set(zip(tags.repository, tags.tag)))
    assert {(r, t): d for r, ts in pushed.tags.items() for t, d in ts.items()} == dict(
        zip(zip(tags.repository, tags.tag), tags.digest))
    m = full.manifests
    assert m.digest.is_unique and set(tags.digest) <= set(m.digest)
    index = m[m.media_type == "application/vnd.oci.image.index.v1+json"].digest.item()
    assert sorted(m[m.index_digest == index].architecture) == ["amd64", "arm64"]
    assert full.errors.empty
    assert full.counts["tags"] == len(pd.read_parquet(Path(full.path) / "tags"))
    assert dict(zip(full.repositories.repository, full.repositories.tags))["big/many-0"] == 250


def test_killed_census_resumes_only_unfinished_units(seeded, full, tmp_path):
    sandbox, _ = seeded
    out = tmp_path / "killed"
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


def test_faults_become_error_rows_only_when_they_last(seeded, full, tmp_path):
    sandbox, pushed = seeded
    names = ["multi/arch", "x.y_z/005-tool", *sorted(pushed.tags)[:20], "ghost/none"]
    with FaultProxy(sandbox.url) as proxy:
        proxy.fail(429, times=3, path=r"/tags/list", headers={"Retry-After": "0"})
        proxy.fail(503, times=2, path=r"/manifests/")
        proxy.drop(after_bytes=20, times=1, path=r"/manifests/", method="GET")
        c = rx.census(proxy.url, tmp_path / "faults", repositories=names, progress=False)
        assert proxy.hits(r"/_catalog") == 0
    errors = c.errors
    assert errors[["repository", "error", "status"]].to_dict("records") == [
        {"repository": "ghost/none", "error": "NotFound", "status": 404}]
    want = full.tags[full.tags.repository.isin(names)].sort_values(["repository", "tag"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(c.tags.sort_values(["repository", "tag"]).reset_index(drop=True), want)


def test_a_manifest_that_stays_truncated_is_one_error_row(seeded, tmp_path):
    sandbox, _ = seeded
    with FaultProxy(sandbox.url) as proxy:
        proxy.drop(after_bytes=20, times=None, path=r"/x\.y_z/005-tool/manifests/", method="GET")
        c = rx.census(proxy.url, tmp_path / "cut", repositories=["x.y_z/005-tool"], progress=False)
    assert c.errors[["unit", "tag"]].to_dict("records") == [{"unit": "x.y_z/005-tool", "tag": "1.0"}]
    assert c.manifests.empty
    assert not Ledger(c.path).done(Unit("x.y_z/005-tool"))  # tried again on resume


def test_dask_worker_killed_mid_census_equals_local_run(seeded, full, tmp_path):
    from distributed import Client, LocalCluster

    sandbox, _ = seeded
    out = tmp_path / "dask"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        ledger = Ledger(out)

        def kill_one() -> None:
            while ledger.count() < 40:
                time.sleep(0.02)
            os.kill(pids[0], signal.SIGKILL)

        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        c = rx.census(sandbox.url, out, client=client, progress=False, max_requests_per_second=400)
        killer.join(timeout=5)
        assert not killer.is_alive()
    assert c.errors.empty
    assert_same(c, full)

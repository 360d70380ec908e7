"""Issue 14's census figures: ``rx.census`` of a registry of many repositories through a 20 ms RTT link.

Setup: a fresh local registry (distribution) with ``--repos`` repositories of ``--tags`` tags each, all made
of ``--images`` shared images (their blobs pushed once into ``base/images``, mounted into each repository,
tags PUT by manifest), behind :class:`benchmarks.latency_proxy.LatencyProxyProcess`.

Measured, each through the proxy:

- ``census``: ``rx.census(url, out, progress=False)`` in a child process (wall time of the call, HTTP requests
  seen by the proxy, peak memory = the child's ``VmHWM``);
- ``floor``: the very requests the census made (method and path from the proxy's log, manifest ``Accept``
  header) replayed by a bare urllib3 pool on as many threads as the census uses, nothing else: the time any
  client needs for that request list at that concurrency;
- ``serial``: a plain ``requests`` session doing the census' requests one after another (tags list, a HEAD
  per tag, manifest + config GET per new digest) for the first ``--serial-repos`` repositories; its request
  rate is measured there, and its time for the whole registry is that rate applied to the census' request
  count (reported as ``serial_s_extrapolated``: 20,000 HEADs one by one take minutes);
- ``dask``: the same census on a ``LocalCluster(n_workers=2, processes=True)`` (cluster start not counted).

    python -m benchmarks.bench_census                            # 2,000 repositories × 10 tags, 20 ms RTT
    python -m benchmarks.bench_census --repos 500 --tags 10     # a smaller run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import regexplore as rx
from regexplore.model.oci import MANIFEST_ACCEPT

from .content import OCI_MANIFEST, _config, _layer, _manifest, bench_registry
from .latency_proxy import LatencyProxyProcess as LatencyProxy

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "base/images"


def seed(url: str, repos: int, tags: int, images: int, workers: int = 16) -> float:
    """Push ``images`` images once into ``base/images``, then per repository mount the blobs of the two
    images it uses and PUT ``tags`` tags alternating between them. Returns the seconds it took."""
    t0 = time.perf_counter()
    layer, diff_id = _layer()
    configs = [_config(i, diff_id) for i in range(images)]
    manifests = [_manifest(c, layer) for c in configs]
    with rx.Registry(url, max_workers=workers) as reg, ThreadPoolExecutor(workers) as pool:
        v2 = reg.v2
        layer_digest = v2.upload_blob(BASE, layer)
        config_digests = list(pool.map(lambda c: v2.upload_blob(BASE, c), configs))
        v2.put_manifest(BASE, "base", manifests[0], OCI_MANIFEST)  # a repository of the catalog has tags

        def one_repo(r: int) -> None:
            name = f"team{r % 50:02d}/app-{r:05d}"
            used = [r % images, (r * 7 + 1) % images]
            for digest in (layer_digest, *(config_digests[i] for i in used)):
                v2.mount_blob(name, digest, BASE)
            for t in range(tags):
                v2.put_manifest(name, f"v{t:03d}", manifests[used[t % 2]], OCI_MANIFEST)

        list(pool.map(one_repo, range(repos)))
    return time.perf_counter() - t0


_CHILD = """
import json, sys, time
import regexplore as rx
t0 = time.perf_counter()
c = rx.census(sys.argv[1], sys.argv[2], progress=False)
secs = time.perf_counter() - t0
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": secs, "vmhwm_kb": hwm, "counts": c.counts, "errors": len(c.errors)}))
"""


def run_census_child(url: str, out: str) -> dict[str, Any]:
    """``rx.census`` in a fresh interpreter; returns its time, peak memory and table counts."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, url, out], capture_output=True, text=True, env=env,
                          timeout=3600, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def replay_floor(url: str, log: list[tuple[int, str, str]], threads: int) -> float:
    """Seconds a bare urllib3 pool on ``threads`` threads takes for the requests of ``log``."""
    import urllib3

    pool = urllib3.PoolManager(maxsize=threads, retries=False)
    todo = iter([(m, t) for _, m, t in log])
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            method, target = item
            r = pool.request(method, url + target, headers={"Accept": MANIFEST_ACCEPT}, preload_content=True)
            if r.status >= 400:
                raise AssertionError(f"{method} {target}: {r.status}")

    t0 = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def run_serial(url: str, repos: list[str]) -> tuple[float, int]:
    """A plain requests session doing the census' requests for ``repos`` one by one: (seconds, requests)."""
    import requests

    n = 0
    seen: set[str] = set()
    t0 = time.perf_counter()
    with requests.Session() as s:
        s.headers["Accept"] = MANIFEST_ACCEPT
        for repo in repos:
            tags = s.get(f"{url}/v2/{repo}/tags/list").json()["tags"]
            n += 1
            for tag in tags:
                digest = s.head(f"{url}/v2/{repo}/manifests/{tag}").headers["Docker-Content-Digest"]
                n += 1
                if digest not in seen:
                    seen.add(digest)
                    config = s.get(f"{url}/v2/{repo}/manifests/{digest}").json()["config"]["digest"]
                    s.get(f"{url}/v2/{repo}/blobs/{config}").json()
                    n += 2
    return time.perf_counter() - t0, n


def run_dask(url: str, out: str) -> float:
    """Seconds of ``rx.census(..., client=)`` on a two-worker LocalCluster (its start not counted)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t0 = time.perf_counter()
        c = rx.census(url, out, client=client, progress=False)
        secs = time.perf_counter() - t0
        if len(c.errors):
            raise AssertionError(f"dask census: {len(c.errors)} errors")
        return secs


def measure(args: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {}
    with bench_registry() as registry, LatencyProxy("127.0.0.1", registry.port, rtt_ms=args.rtt_ms) as proxy:
        r["seed_s"] = seed(registry.url, args.repos, args.tags, args.images)
        url = proxy.url
        with tempfile.TemporaryDirectory() as tmp:
            proxy.reset_counts()
            census = run_census_child(url, f"{tmp}/local")
            log = proxy.request_log
            r["census"] = census
            r["census_requests"] = len(log)
            if census["errors"] or census["counts"]["tags"] != args.repos * args.tags + 1:
                raise AssertionError(f"the census is wrong: {census}")
            r["floor_s"] = replay_floor(url, log, threads=16)
            if not args.no_dask:
                r["dask_s"] = run_dask(url, f"{tmp}/dask")
        names = [f"team{i % 50:02d}/app-{i:05d}" for i in range(min(args.serial_repos, args.repos))]
        secs, n = run_serial(url, names)
        r["serial_subset"] = {"repositories": len(names), "seconds": secs, "requests": n}
    census_s = r["census"]["seconds"]
    r["serial_s_extrapolated"] = r["census_requests"] * secs / n
    r["speedup_vs_serial"] = r["serial_s_extrapolated"] / census_s
    r["vs_floor"] = census_s / r["floor_s"]
    if "dask_s" in r:
        r["dask_vs_local"] = r["dask_s"] / census_s
    r["peak_mb"] = r["census"]["vmhwm_kb"] / 1024
    return r


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", type=int, default=2000)
    ap.add_argument("--tags", type=int, default=10)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--serial-repos", type=int, default=100)
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--json", help="where to write the results (default benchmarks/results/census-<time>.json)")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"command": " ".join(["python -m benchmarks.bench_census", *(argv or sys.argv[1:])]),
                               "python": platform.python_version(), "cpus": os.cpu_count(),
                               "loadavg_start": os.getloadavg(), "args": vars(args)}
    results.update(measure(args))
    results["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.json) if args.json else RESULTS / f"census-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    r = results
    print(f"census of {args.repos:,} repositories / {args.repos * args.tags:,} tags at {args.rtt_ms:g} ms RTT: "
          f"{r['census']['seconds']:.1f} s, {r['census_requests']:,} requests, peak {r['peak_mb']:.0f} MB")
    print(f"request floor (bare urllib3, 16 threads, same requests): {r['floor_s']:.1f} s -> census/floor "
          f"{r['vs_floor']:.2f}x")
    sub = r["serial_subset"]
    print(f"serial requests session: {sub['requests']:,} requests of {sub['repositories']} repositories in "
          f"{sub['seconds']:.1f} s -> {r['serial_s_extrapolated']:.0f} s for the census' requests "
          f"(extrapolated) -> census is {r['speedup_vs_serial']:.1f}x faster")
    if "dask_s" in r:
        print(f"2-worker LocalCluster: {r['dask_s']:.1f} s -> {r['dask_vs_local']:.2f}x the local run")
    print(f"load average {r['loadavg_start'][0]:.1f} -> {r['loadavg_end'][0]:.1f}; results in {out}")
    return results


if __name__ == "__main__":
    main()

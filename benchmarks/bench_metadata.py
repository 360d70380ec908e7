"""Issue 2's metadata figures: tag details and the catalog through a 20 ms RTT link, regexplore vs python-dxf.

Setup: a fresh local registry (distribution) with ``bench/many-tags`` (500 distinct images) and 2,000
catalog repositories (:mod:`benchmarks.content`), behind :class:`benchmarks.latency_proxy.LatencyProxy`.

Measured (wall time, fresh client each repetition, so no warm caches or connections):

- ``regexplore``: ``Registry(url).tags(repo, details=True)`` at default settings;
- ``python-dxf``: the same reads, sequential as its API is: ``list_aliases()``, then per tag
  ``get_manifest_and_response(tag)`` and ``pull_blob(config digest)`` (digest-verified), configs deduplicated
  by digest, inside ``with DXF(...)`` so that it keeps one pooled connection (its fastest mode);
- ``bare urllib3 x16``: the floor for any Python client, the same reads on 16 threads over one urllib3
  pool with nothing else (no auth, retries, checks, trace or frame);
- ``catalog``: ``Registry(url).catalog()`` of 2,001 repositories: HTTP requests seen by the proxy (round trips)
  against the pages the server needs at its maximum page size; python-dxf's ``list_repos()`` beside it.

    python -m benchmarks.bench_metadata                 # defaults: --rtt-ms 20 --reps 5 --dxf-reps 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import regexplore as rx
from regexplore.model.oci import MANIFEST_ACCEPT

from .content import TAGS_REPO, bench_registry, push_content
from .latency_proxy import LatencyProxyProcess as LatencyProxy  # in a child process: no GIL sharing

RESULTS = Path(__file__).resolve().parent / "results"


CPU: list[float] = []  # client CPU seconds (all threads) of the last _timed call


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    CPU[:] = [time.process_time() - c0]
    return secs, out


def run_regexplore(url: str, expected: dict[str, str], **kw: Any) -> float:
    def go() -> Any:
        with rx.Registry(url, **kw) as reg:
            return reg.tags(TAGS_REPO, details=True)

    secs, df = _timed(go)
    got = dict(zip(df["tag"], df["digest"]))
    if got != expected or df["created"].isna().any():
        raise AssertionError("regexplore returned wrong details")
    return secs


def run_dxf(netloc: str, expected: dict[str, str]) -> float:
    from dxf import DXF

    def go() -> dict[str, str]:
        digests: dict[str, str] = {}
        configs: dict[str, dict] = {}
        with DXF(netloc, TAGS_REPO, insecure=True) as d:
            for tag in d.list_aliases():
                raw, resp = d.get_manifest_and_response(tag)
                m = json.loads(raw)
                digests[tag] = resp.headers["Docker-Content-Digest"]
                cd = m["config"]["digest"]
                if cd not in configs:
                    configs[cd] = json.loads(b"".join(d.pull_blob(cd)))
        return digests

    secs, got = _timed(go)
    if got != expected:
        raise AssertionError("python-dxf returned wrong details")
    return secs


def run_floor(url: str, expected: dict[str, str], workers: int = 16) -> float:
    """The floor for any Python client: bare urllib3, ``workers`` threads on one pool, the same
    1,001 reads and nothing else (no auth, retries, digest checks, trace or frame)."""
    import urllib3

    accept = MANIFEST_ACCEPT
    u = urllib3.util.parse_url(url)

    def go() -> dict[str, str]:
        pool = urllib3.HTTPConnectionPool(u.host, u.port, maxsize=workers)

        def one(tag: str) -> tuple[str, str]:
            r = pool.request("GET", f"/v2/{TAGS_REPO}/manifests/{tag}", headers={"Accept": accept})
            config = json.loads(r.data)["config"]["digest"]
            json.loads(pool.request("GET", f"/v2/{TAGS_REPO}/blobs/{config}").data)
            return tag, r.headers["Docker-Content-Digest"]

        tags = json.loads(pool.request("GET", f"/v2/{TAGS_REPO}/tags/list?n=1000").data)["tags"]
        with ThreadPoolExecutor(workers) as ex:
            got = dict(ex.map(one, tags))
        pool.close()
        return got

    secs, got = _timed(go)
    if got != expected:
        raise AssertionError("the urllib3 floor returned wrong digests")
    return secs


SERVER_PID: list[int] = []


def server_cpu(which: int = 0) -> float:
    """CPU seconds the registry (0) or proxy (1) process has used so far (Linux /proc), or nan."""
    try:
        fields = Path(f"/proc/{SERVER_PID[which]}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, OSError, ValueError):
        return float("nan")


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="regexplore vs python-dxf metadata reads through a latency proxy")
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--reps", type=int, default=5, help="regexplore repetitions (>= 3)")
    ap.add_argument("--dxf-reps", type=int, default=2, help="python-dxf repetitions (slow: ~1000 RTTs each)")
    ap.add_argument("--tags", type=int, default=500)
    ap.add_argument("--repos", type=int, default=2000)
    ap.add_argument("--max-workers", type=int, default=None, help="override Registry(max_workers=)")
    ap.add_argument("--json", default=None, help="output file (default benchmarks/results/metadata-*.json)")
    args = ap.parse_args(argv)
    kw = {"max_workers": args.max_workers} if args.max_workers else {}

    # storage in RAM when possible: removing 2,000 repositories from disk takes longer than pushing them
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    storage = tempfile.mkdtemp(prefix="regexplore-bench-", dir=shm)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rtt_ms": args.rtt_ms,
        "loadavg_start": os.getloadavg(),
        "tags": args.tags,
        "catalog_repos": args.repos,
        "command": "python -m benchmarks.bench_metadata " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    try:
        with bench_registry(storage=storage) as sandbox:
            t0 = time.perf_counter()
            content = push_content(sandbox.url, tags=args.tags, repos=args.repos)
            results["setup_s"] = round(time.perf_counter() - t0, 1)
            print(f"setup: {args.tags} tags + {args.repos} repositories pushed in {results['setup_s']} s",
                  flush=True)
            expected = content.manifest_digests
            SERVER_PID[:] = [sandbox._proc.pid] if sandbox._proc is not None else []
            with LatencyProxy("127.0.0.1", sandbox.port, rtt_ms=args.rtt_ms) as proxy:
                SERVER_PID.append(proxy.pid or 0)
                results.update(_tags_runs(args, kw, sandbox.url, proxy, expected))
                results["catalog"] = _catalog_runs(args, kw, proxy, n_repos=args.repos + 1)
    finally:
        shutil.rmtree(storage, ignore_errors=True)

    results["loadavg_end"] = os.getloadavg()
    _print(results)
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.json) if args.json else RESULTS / f"metadata-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return results


def _tags_runs(args: Any, kw: dict, direct_url: str, proxy: LatencyProxy, expected: dict[str, str]) -> dict:
    rx_s: list[float] = []
    rx_direct: list[float] = []
    dxf_s: list[float] = []
    floor_s: list[float] = []
    rx_cpu: list[float] = []
    srv_cpu: list[float] = []
    proxy_cpu: list[float] = []
    dxf_cpu: list[float] = []
    rx_counts: dict[str, int] = {}
    dxf_counts: dict[str, int] = {}
    for i in range(max(args.reps, args.dxf_reps)):  # interleaved, so both see the same machine noise
        if i < args.reps:
            proxy.reset_counts()
            s0, p0 = server_cpu(), server_cpu(1)
            rx_s.append(run_regexplore(proxy.url, expected, **kw))
            rx_cpu.append(CPU[0])
            srv_cpu.append(server_cpu() - s0)
            proxy_cpu.append(server_cpu(1) - p0)
            rx_counts = proxy.counts()
            rx_direct.append(run_regexplore(direct_url, expected, **kw))
            floor_s.append(run_floor(proxy.url, expected))
            print(f"  regexplore rep {i + 1}: {rx_s[-1]:.3f} s, cpu {rx_cpu[-1]:.2f} s  "
                  f"(no proxy: {rx_direct[-1]:.3f} s)  {rx_counts}",
                  flush=True)
        if i < args.dxf_reps:
            proxy.reset_counts()
            dxf_s.append(run_dxf(proxy.netloc, expected))
            dxf_cpu.append(CPU[0])
            dxf_counts = proxy.counts()
            print(f"  python-dxf rep {i + 1}: {dxf_s[-1]:.3f} s, cpu {dxf_cpu[-1]:.2f} s  {dxf_counts}", flush=True)
    out = {
        "tags_details": {
            "regexplore_s": [round(x, 4) for x in rx_s],
            "regexplore_median_s": round(_median(rx_s), 4),
            "regexplore_cpu_s": [round(x, 3) for x in rx_cpu],
            "python_dxf_cpu_s": [round(x, 3) for x in dxf_cpu],
            "registry_cpu_s_during_regexplore": [round(x, 3) for x in srv_cpu],
            "proxy_cpu_s_during_regexplore": [round(x, 3) for x in proxy_cpu],
            "regexplore_no_proxy_s": [round(x, 4) for x in rx_direct],
            "regexplore_no_proxy_median_s": round(_median(rx_direct), 4),
            "regexplore_http": rx_counts,
            "urllib3_floor_s": [round(x, 4) for x in floor_s],
            "urllib3_floor_median_s": round(_median(floor_s), 4),
            "python_dxf_s": [round(x, 4) for x in dxf_s],
            "python_dxf_median_s": round(_median(dxf_s), 4),
            "python_dxf_http": dxf_counts,
        }
    }
    t = out["tags_details"]
    t["speedup_vs_python_dxf"] = round(t["python_dxf_median_s"] / t["regexplore_median_s"], 2)
    t["target_speedup_met"] = t["speedup_vs_python_dxf"] >= 15
    t["target_under_2s_met"] = t["regexplore_median_s"] < 2.0
    return out


def _catalog_runs(args: Any, kw: dict, proxy: LatencyProxy, n_repos: int) -> dict:
    from dxf import DXFBase

    secs: list[float] = []
    dxf_secs: list[float] = []
    requests_seen: list[int] = []
    dxf_requests = 0
    for i in range(max(args.reps, 1)):
        proxy.reset_counts()
        with rx.Registry(proxy.url, **kw) as reg:
            s, df = _timed(reg.catalog)
        if len(df) != n_repos:
            raise AssertionError(f"catalog listed {len(df)} repositories, expected {n_repos}")
        secs.append(s)
        requests_seen.append(proxy.counts()["requests"])
        log = list(proxy.request_log)
        if i < args.dxf_reps:
            proxy.reset_counts()
            with DXFBase(proxy.netloc, insecure=True) as d:
                s, repos = _timed(d.list_repos)
            if len(repos) != n_repos:
                raise AssertionError("python-dxf catalog is incomplete")
            dxf_secs.append(s)
            dxf_requests = proxy.counts()["requests"]
    page_max = 1000  # LocalRegistry's catalog.maxentries, the largest page the server gives
    pages = math.ceil(n_repos / page_max)
    return {
        "repositories": n_repos,
        "server_max_page": page_max,
        "pages_needed": pages,
        "regexplore_round_trips": max(requests_seen),
        "regexplore_requests": [f"{m} {t}" for _, m, t in log],
        "round_trips_le_pages": max(requests_seen) <= pages,
        "regexplore_s": [round(x, 4) for x in secs],
        "regexplore_median_s": round(_median(secs), 4),
        "python_dxf_round_trips": dxf_requests,
        "python_dxf_s": [round(x, 4) for x in dxf_secs],
        "python_dxf_median_s": round(_median(dxf_secs), 4),
    }


def _print(r: dict[str, Any]) -> None:
    t, c = r["tags_details"], r["catalog"]
    print(f"\n== tag details: {r['tags']} tags, {r['rtt_ms']:g} ms RTT ({r['machine']['cpus']} CPUs) ==")
    print(f"{'client':<28}{'runs':>5}{'median s':>10}{'HTTP req':>10}{'conns':>7}{'ratio':>8}")
    print(f"{'regexplore tags(details)':<28}{len(t['regexplore_s']):>5}{t['regexplore_median_s']:>10.3f}"
          f"{t['regexplore_http'].get('requests', 0):>10}{t['regexplore_http'].get('connections', 0):>7}"
          f"{1.0:>8.2f}")
    print(f"{'python-dxf (1 session)':<28}{len(t['python_dxf_s']):>5}{t['python_dxf_median_s']:>10.3f}"
          f"{t['python_dxf_http'].get('requests', 0):>10}{t['python_dxf_http'].get('connections', 0):>7}"
          f"{t['speedup_vs_python_dxf']:>8.2f}")
    print(f"{'regexplore, no proxy':<28}{len(t['regexplore_no_proxy_s']):>5}"
          f"{t['regexplore_no_proxy_median_s']:>10.3f}")
    print(f"{'bare urllib3 x16 (floor)':<28}{len(t['urllib3_floor_s']):>5}"
          f"{t['urllib3_floor_median_s']:>10.3f}")
    print(f"client CPU s (median): regexplore {_median(t['regexplore_cpu_s']):.2f}, "
          f"python-dxf {_median(t['python_dxf_cpu_s']):.2f}; registry during regexplore "
          f"{_median(t['registry_cpu_s_during_regexplore']):.2f}, "
          f"proxy {_median(t['proxy_cpu_s_during_regexplore']):.2f}; load average {r['loadavg_start'][0]:.1f} -> "
          f"{r['loadavg_end'][0]:.1f}")
    print(f"targets: >= 15x python-dxf: {'MET' if t['target_speedup_met'] else 'MISSED'} "
          f"({t['speedup_vs_python_dxf']:.1f}x); under 2 s: {'MET' if t['target_under_2s_met'] else 'MISSED'}")
    print(f"\n== catalog: {c['repositories']} repositories, server pages of up to {c['server_max_page']} ==")
    print(f"regexplore: {c['regexplore_round_trips']} round trips for {c['pages_needed']} pages "
          f"({'OK' if c['round_trips_le_pages'] else 'MORE THAN PAGES'}), median {c['regexplore_median_s']:.3f} s; "
          f"requests: {c['regexplore_requests']}")
    print(f"python-dxf list_repos(): {c['python_dxf_round_trips']} round trips, "
          f"median {c['python_dxf_median_s']:.3f} s")


if __name__ == "__main__":
    main()

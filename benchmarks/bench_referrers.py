"""``reg.referrers(ref, recursive=True)`` of an image with 50 referrers two levels deep (10 direct, 4 under each), at
20 ms RTT, against a serial client sending the same requests one after another on one kept-alive connection.

Two registries: the real one (Debian's distribution 2.8: no referrers API, so the referrers tag schema is read)
with the artifacts pushed by ``reg.attach``, and the spec-built one of tests/support/servers/referrers_api.py (the
API). The target (issue 13): at most 3 round trips per level beyond the pages. Levels are 3: the direct
referrers, theirs, and the third that finds the leaves have none. Prints medians; writes
benchmarks/results/referrers-*.json.

    python -m benchmarks.bench_referrers [--rtt-ms 20] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

import regexplore as rx
from regexplore.model.oci import MANIFEST_ACCEPT

from .content import bench_registry
from .latency_proxy import LatencyProxyProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from servers.referrers_api import ReferrersRegistry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO, LEVELS = "bench/referred", 3


def seed(url: str) -> str:
    """Push an image and 10 + 40 artifacts with ``reg.attach``; returns the image reference."""
    from servers import push_tiny_image

    push_tiny_image(url, REPO, "v1")
    reg = rx.Registry(url)
    for i in range(10):
        top = reg.attach(f"{REPO}:v1", [], artifact_type="application/example.sbom", annotations={"i": str(i)})
        for j in range(4):
            reg.attach(f"{REPO}@{top}", [], artifact_type="application/example.sig", annotations={"j": str(j)})
    return f"{REPO}:v1"


def measure(url: str, ref: str, rtt_ms: float, reps: int) -> dict[str, Any]:
    """Median seconds of the recursive listing through the proxy, and of the serial replay of its requests."""
    host, port = url.split("://", 1)[1].split(":")
    ours, serial, counts = [], [], {}
    with LatencyProxyProcess(host, int(port), rtt_ms) as proxy:
        for _ in range(reps):
            proxy.reset_counts()
            t0 = time.perf_counter()
            df = rx.Registry(proxy.url).referrers(ref, recursive=True)
            ours.append(time.perf_counter() - t0)
            assert len(df) == 50 and df["depth"].value_counts().to_dict() == {1: 10, 2: 40}, df
            counts, log = proxy.counts(), proxy.request_log
            proxy.reset_counts()
            with requests.Session() as s:
                t0 = time.perf_counter()
                for _, method, target in log:
                    s.request(method, proxy.url + target, headers={"Accept": MANIFEST_ACCEPT})
                serial.append(time.perf_counter() - t0)
    mid, ser = statistics.median(ours), statistics.median(serial)
    per_conn = Counter(conn for conn, _, _ in log)
    exchange = ser / max(1, len(log))  # one request's cost on this machine: an RTT plus both sides' CPU
    return {"regexplore_s": round(mid, 3), "serial_s": round(ser, 3), "speedup": round(ser / mid, 1),
            "requests": counts.get("requests"), "connections": counts.get("connections"),
            "busiest_connection_requests": max(per_conn.values(), default=0),
            "exchanges_on_critical_path": round(mid / exchange, 1),
            "round_trips": round(mid * 1000 / rtt_ms, 1),
            "round_trips_per_level": round(mid * 1000 / rtt_ms / LEVELS, 1), "runs": [round(x, 3) for x in ours]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"command": "python -m benchmarks.bench_referrers " + " ".join(argv or sys.argv[1:]),
                               "python": sys.version.split()[0], "cpus": os.cpu_count(), "rtt_ms": args.rtt_ms,
                               "loadavg_start": os.getloadavg()}
    with bench_registry() as sandbox:
        results["distribution_tag_schema"] = measure(sandbox.url, seed(sandbox.url), args.rtt_ms, args.reps)
    with ReferrersRegistry() as server:
        results["spec_api"] = measure(server.url, seed(server.url), args.rtt_ms, args.reps)
    results["loadavg_end"] = os.getloadavg()
    for name in ("distribution_tag_schema", "spec_api"):
        r = results[name]
        print(f"{name}: regexplore {r['regexplore_s']} s = {r['round_trips']} RTT ({r['round_trips_per_level']} per "
              f"level; {r['exchanges_on_critical_path']} request-times, the busiest connection carried "
              f"{r['busiest_connection_requests']}), {r['requests']} requests on {r['connections']} connections; "
              f"serial {r['serial_s']} s: {r['speedup']}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"referrers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")
    return results


if __name__ == "__main__":
    main()

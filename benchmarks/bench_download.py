"""Download speed and memory: regexplore vs python-dxf vs curl, against the real registry on loopback.

    /work/venv/bin/python benchmarks/bench_download.py [--reps 9] [--size-mib 256] [--rss-mib 1024]

A random layer (incompressible) is pushed into a ``LocalRegistry``; then, in one run and interleaved,
each client downloads it ``--reps`` times into a fresh file:

- regexplore: ``blobs.download`` (verified, atomic; the cache off so every repetition transfers);
- python-dxf: ``DXF(host, repo, insecure=True).pull_blob(digest)`` (it verifies too), written to a file;
- curl: ``curl -s -o FILE URL`` (no verification: the floor).

Then the peak RSS of a subprocess downloading a ``--rss-mib`` layer with regexplore. Prints medians,
ratios and the RSS; writes JSON to ``benchmarks/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regexplore.content import blobs  # noqa: E402
from regexplore.sandbox import LocalRegistry  # noqa: E402

MiB = 1024 * 1024


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return the sha256 digest."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(8 * MiB, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return "sha256:" + h.hexdigest()


def push_layer_image(reg, repo: str, layer_path: Path, digest: str) -> None:
    """Push a one-layer image whose layer is ``layer_path`` (streamed from disk)."""
    size = layer_path.stat().st_size
    reg.v2.upload_stream(repo, digest, size, lambda: open(layer_path, "rb"))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest]}}).encode()
    cfg_digest = reg.v2.upload_blob(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}],
    }).encode()
    reg.v2.put_manifest(repo, "latest", manifest, "application/vnd.oci.image.manifest.v1+json")


def run_regexplore(reg, repo: str, out: Path) -> Path:
    [path] = blobs.download(reg, f"{repo}:latest", out, layers=[0], progress=False, cache=False)
    return path


def run_dxf(host: str, repo: str, digest: str, out: Path) -> Path:
    from dxf import DXF

    d = DXF(host, repo, insecure=True)
    path = out / "dxf.blob"
    with open(path, "wb") as f:
        for chunk in d.pull_blob(digest):
            f.write(chunk)
    return path


def run_curl(url: str, out: Path) -> Path:
    path = out / "curl.blob"
    subprocess.run(["curl", "-s", "-f", "-o", str(path), url], check=True)
    return path


RSS_SCRIPT = r"""
import resource, sys, tempfile
sys.path.insert(0, {root!r})
from regexplore import Registry
from regexplore.content import blobs
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reg = Registry({url!r})
with tempfile.TemporaryDirectory(dir={tmp!r}) as d:
    blobs.download(reg, {ref!r}, d, layers=[0], progress=False, cache=False)
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rss-mib", type=int, default=1024)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="regexplore-bench-"))
    try:
        with LocalRegistry() as lr:
            reg = lr.client()
            layer = work / "layer.bin"
            digest = random_file(layer, args.size_mib * MiB)
            push_layer_image(reg, "bench/img", layer, digest)
            layer.unlink()
            url = f"{lr.url}/v2/bench/img/blobs/{digest}"
            clients = {
                "regexplore": lambda out: run_regexplore(reg, "bench/img", out),
                "python-dxf": lambda out: run_dxf(lr.host, "bench/img", digest, out),
                "curl": lambda out: run_curl(url, out),
            }
            times: dict[str, list[float]] = {k: [] for k in clients}
            for rep in range(args.reps + 1):  # the first round warms the page cache and is not counted
                for name, fn in clients.items():
                    out = work / f"{name}-{rep}"
                    out.mkdir()
                    t0 = time.perf_counter()
                    path = fn(out)
                    dt = time.perf_counter() - t0
                    if path.stat().st_size != args.size_mib * MiB:
                        raise SystemExit(f"{name} wrote {path.stat().st_size} bytes")
                    shutil.rmtree(out)
                    if rep:
                        times[name].append(dt)

            big = work / "big.bin"
            big_digest = random_file(big, args.rss_mib * MiB)
            push_layer_image(reg, "bench/huge", big, big_digest)
            big.unlink()
            proc = subprocess.run(
                [sys.executable, "-c", RSS_SCRIPT.format(root=str(ROOT), url=lr.url, tmp=str(work),
                                                          ref="bench/huge:latest")],
                capture_output=True, text=True, check=True)
            base_kib, peak_kib = proc.stdout.strip().splitlines()[-1].split()
            base_mb, rss_mb = int(base_kib) / 1024, int(peak_kib) / 1024  # Linux: KiB

        med = {k: statistics.median(v) for k, v in times.items()}
        mbps = {k: args.size_mib / v for k, v in med.items()}
        result = {
            "size_mib": args.size_mib, "reps": args.reps, "median_s": med, "runs_s": times, "MiB_per_s": mbps,
            "speedup_vs_python_dxf": med["python-dxf"] / med["regexplore"],
            "ratio_to_curl": med["regexplore"] / med["curl"],
            "rss_layer_mib": args.rss_mib, "peak_rss_mb": rss_mb, "rss_after_import_mb": base_mb,
            "cpus": os.cpu_count(), "python": platform.python_version(), "time": time.time(),
        }
        print(f"\n{args.size_mib} MiB random layer, median of {args.reps} (loopback, {os.cpu_count()} CPUs)")
        print(f"{'client':<12}{'median s':>10}{'MiB/s':>10}")
        for k in clients:
            print(f"{k:<12}{med[k]:>10.3f}{mbps[k]:>10.0f}   runs: {' '.join(f'{t:.3f}' for t in times[k])}")
        print(f"regexplore vs python-dxf: {result['speedup_vs_python_dxf']:.2f}x faster (target >= 2)")
        print(f"regexplore / curl time:   {result['ratio_to_curl']:.2f} (target <= 1.5)")
        print(f"peak RSS downloading a {args.rss_mib} MiB layer: {rss_mb:.0f} MB (target < 100); "
              f"after `import regexplore` alone: {base_mb:.0f} MB, so the download adds {rss_mb - base_mb:.0f} MB")
        results = ROOT / "benchmarks" / "results"
        results.mkdir(parents=True, exist_ok=True)
        out = results / f"bench_download-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"written: {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

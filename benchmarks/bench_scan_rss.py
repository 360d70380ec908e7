"""Memory of a layer scan: peak RSS growth of ``reg.files(ref)`` on a 1 GiB gzip layer, in a child process.

    /work/main/.venv/bin/python -m benchmarks.bench_scan_rss [--gib 1] [--rebuild]

The layer (cached in ``benchmarks/results/``, gitignored) is a tar of ``--gib`` GiB of random-content files
(4,096 per GiB, 256 KiB each: incompressible, so the gzip blob is as big as the tar and the download,
the hash, the inflate and the header scan all see the full GiB), compressed with ISA-L. It is pushed into a
fresh ``LocalRegistry``; a fresh interpreter (``python -c``) imports regexplore and pandas, opens a client,
notes its ``VmRSS``, lists the layer with ``reg.files(ref)`` (the one layer pass: the listing and the
catalogers' capture) and reports its ``VmHWM`` (the kernel's
high-water mark of that process; ``ru_maxrss`` is not used: Linux keeps it across ``execve``, so a child
would report its parent's peak). Growth = VmHWM - VmRSS before the scan (target < 100 MB).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["REGEXPLORE_CACHE"] = "off"

from benchmarks.layerfiles import RESULTS, MiB, cached, push_image, write_gzip_layer  # noqa: E402
from regexplore.sandbox import LocalRegistry  # noqa: E402

FILE_BYTES = 256 * 1024
TARGET_MB = 100

CHILD = """
import os, sys
sys.path.insert(0, {root!r})
os.environ["REGEXPLORE_CACHE"] = "off"
import pandas
from regexplore import Registry

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))  # kB

with Registry({url!r}) as reg:
    before = status("VmRSS")
    rows = len(reg.files({ref!r}))
    print(before, status("VmHWM"), rows)
"""


class _Sink:
    """What tarfile's stream mode writes to: a ``write`` callable."""

    def __init__(self, write) -> None:
        self.write = write


def build_layer(dest: Path, gib: int) -> dict:
    """Write the layer to ``dest`` (tar.gz of ``gib`` GiB of random files); return its metadata."""
    count = gib * 1024**3 // FILE_BYTES

    def fill(write) -> None:
        with tarfile.open(fileobj=_Sink(write), mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            for n in range(count):
                info = tarfile.TarInfo(f"data/d{n // 256:03d}/f{n:06d}.bin")
                info.size, info.mtime, info.mode = FILE_BYTES, 1_700_000_000, 0o644
                tar.addfile(info, io.BytesIO(os.urandom(FILE_BYTES)))

    return write_gzip_layer(dest, fill, count)


def measure(url: str, ref: str) -> tuple[float, float, int]:
    """(VmRSS before, VmHWM after, rows) of a fresh interpreter listing ``ref``, in MB."""
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), url=url, ref=ref)],
                          capture_output=True, text=True, check=True)
    before, peak, rows = proc.stdout.split()
    return int(before) / 1000, int(peak) / 1000, int(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--gib", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()

    path, meta = cached(f"scan-rss-{args.gib}gib", lambda p: build_layer(p, args.gib), args.rebuild)
    print(f"layer: {path.name}: {meta['size'] / MiB:.0f} MiB gzip, {meta['entries']} entries", flush=True)
    runs = []
    with LocalRegistry() as lr:
        with lr.client() as reg:
            ref = push_image(reg, "bench/rss", "latest", [(path, meta)], set())
        for rep in range(args.reps):
            before, peak, rows = measure(lr.url, ref)
            if rows != meta["entries"]:
                raise SystemExit(f"files() listed {rows} rows, the layer has {meta['entries']}")
            runs.append({"rss_before_mb": before, "hwm_mb": peak, "growth_mb": peak - before})
            print(f"  run {rep}: VmRSS before {before:.0f} MB, VmHWM {peak:.0f} MB: +{peak - before:.0f} MB",
                  flush=True)
    worst = max(r["growth_mb"] for r in runs)
    print(f"peak RSS growth of reg.files() on a {meta['size'] / MiB:.0f} MiB layer: {worst:.0f} MB "
          f"(worst of {args.reps}; target < {TARGET_MB})")
    result = {"layer": meta, "runs": runs, "worst_growth_mb": worst, "target_mb": TARGET_MB,
              "command": "/work/main/.venv/bin/python -m benchmarks.bench_scan_rss " + " ".join(sys.argv[1:]),
              "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "python": platform.python_version(),
              "time": time.time()}
    out = RESULTS / f"bench_scan_rss-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()

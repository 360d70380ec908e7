"""Listing speed: ``reg.files(ref)`` of a ~300 MB gzip layer (~65,000 entries) vs ``tar tzvf`` on disk.

    /work/main/.venv/bin/python -m benchmarks.bench_files [--reps 5] [--rebuild]

The layer is built once and cached in ``benchmarks/results/`` (gitignored): a GNU tar (``tar --sort=name
--numeric-owner``, default GNU format) of a Python installation's ``lib/python3.11`` plus a generated
``extras/`` folder (random-content files, GNU long names, non-ASCII names, symlinks, hardlinks,
directories), compressed with ``gzip -6 -n``. It is pushed (streamed from disk) as a one-layer image into
a fresh ``LocalRegistry``; then, in one run, each repetition runs every measurement in turn:

- ``tar tzvf``: ``tar tzvf FILE > /dev/null`` on the file on disk (gzip in a child process): the peer;
- ``reg.files``: ``Registry.files(ref)``: the full DataFrame, streamed from the registry, digest verified
  (a fresh client: the one layer pass, whose capture hook also keeps what the catalogers want);
- ``list local``: ``sum(1 for _ in layers.iter_entries(open(FILE)))``: decompress + tar parse, no network;
- ``list tarfile``: the same listing through ``tarfile`` stream mode (the code path before the fast one);
- ``gunzip local``: ``layers.open_layer_stream(open(FILE)).drain()``: decompression only;
- ``stream+hash``: ``blobs.open_verified_stream`` consumed: HTTP + sha256, no decompression.

Prints medians (the first, warm-up round is not counted) and the ratio ``reg.files / tar tzvf``
(target <= 0.4, issue 12); writes JSON to ``benchmarks/results/``. The blob cache is off (``REGEXPLORE_CACHE=off``)
so every ``reg.files`` transfers the layer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["REGEXPLORE_CACHE"] = "off"

from regexplore.content import blobs, layers  # noqa: E402
from regexplore.sandbox import LocalRegistry  # noqa: E402

MiB = 1024 * 1024
RESULTS = ROOT / "benchmarks" / "results"
LAYER_VERSION = 1  # bump when the recipe changes
PY_LIB = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
EXTRA_FILES = 5600
EXTRA_FILE_BYTES = 11 * 1024  # random content: incompressible, ~60 MB
FIXED_MTIME = 1_700_000_000
GZIP_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"
TARGET = 0.4  # reg.files / tar tzvf (issue 12)


# ------------------------------------------------------------------------------------------ the layer
def _extra_name(n: int) -> str:
    if n % 10 == 0:
        return f"{'long_name_' * 12}{n:05d}.bin"  # > 100 bytes: a GNU long-name header
    if n % 10 == 1:
        return f"café-naïve-{n:05d}.bin"
    return f"file{n:05d}.bin"


def _make_extras(folder: Path) -> None:
    """``folder/extras``: deterministic files (random bytes), long and non-ASCII names, links, dirs."""
    rnd = random.Random(4)
    base = folder / "extras"
    per_dir = EXTRA_FILES // 100
    for d in range(100):
        sub = base / f"dir{d:03d}"
        sub.mkdir(parents=True)
        for n in range(d * per_dir, (d + 1) * per_dir):
            (sub / _extra_name(n)).write_bytes(rnd.randbytes(EXTRA_FILE_BYTES))
        for i in range(3):
            os.symlink(_extra_name(d * per_dir + i), sub / f"link{i}")
        os.link(sub / _extra_name(d * per_dir + 5), sub / "hardlink")
    for p in [base, *base.rglob("*")]:
        os.utime(p, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)


def build_layer(dest: Path) -> dict:
    """Build the benchmark layer at ``dest`` (tar | gzip -6 -n); return its digest, size and entry count."""
    with tempfile.TemporaryDirectory(prefix="regexplore-bench-files-") as tmp:
        _make_extras(Path(tmp))
        partial = dest.with_suffix(".partial")
        with open(partial, "wb") as out:
            tar = subprocess.Popen(
                ["tar", "--sort=name", "--numeric-owner", "-cf", "-", "-C", str(PY_LIB.parent), PY_LIB.name,
                 "-C", tmp, "extras"], stdout=subprocess.PIPE)
            gz = subprocess.run(["gzip", "-6", "-n"], stdin=tar.stdout, stdout=out, check=True)
            assert tar.stdout is not None
            tar.stdout.close()
            if tar.wait() not in (0, 1) or gz.returncode:  # tar exits 1 when a file changed while read
                raise SystemExit("building the layer failed")
    h = hashlib.sha256()
    with open(partial, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    entries = subprocess.run(f"tar tzf {partial} | wc -l", shell=True, check=True, capture_output=True,
                             text=True).stdout.strip()
    os.replace(partial, dest)
    return {"digest": "sha256:" + h.hexdigest(), "size": dest.stat().st_size, "entries": int(entries),
            "source": str(PY_LIB), "version": LAYER_VERSION}


def cached_layer(rebuild: bool) -> tuple[Path, dict]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"files-layer-v{LAYER_VERSION}.tar.gz"
    meta_path = path.with_suffix(".json")
    if rebuild or not path.exists() or not meta_path.exists():
        print(f"building {path} from {PY_LIB} (once; about a minute) ...", flush=True)
        meta_path.write_text(json.dumps(build_layer(path), indent=2))
    meta = json.loads(meta_path.read_text())
    if path.stat().st_size != meta["size"]:
        raise SystemExit(f"{path} changed; rerun with --rebuild")
    return path, meta


def push_layer_image(reg, repo: str, layer: Path, digest: str) -> str:
    """A one-layer image whose layer is streamed from ``layer`` (regexplore's chunk-less upload)."""
    size = layer.stat().st_size
    reg.v2.upload_stream(repo, digest, size, lambda: open(layer, "rb"))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest]}}).encode()
    cfg_digest = reg.v2.upload_blob(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                   "size": len(config)},
        "layers": [{"mediaType": GZIP_MEDIA, "digest": digest, "size": size}],
    }).encode()
    reg.v2.put_manifest(repo, "latest", manifest, "application/vnd.oci.image.manifest.v1+json")
    return f"{repo}:latest"


# ---------------------------------------------------------------------------------------- measures
def run_tar(path: Path) -> int:
    subprocess.run(f"tar tzvf {path} > /dev/null", shell=True, check=True)
    return -1


def run_files(lr: LocalRegistry, ref: str) -> int:
    with lr.client() as reg:  # a fresh client each time: no warm connections
        return len(reg.files(ref))


def run_list_local(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in layers.iter_entries(f))


def run_list_tarfile(path: Path) -> int:
    """The listing as it was before the fast path: tarfile stream mode in the consumer's thread."""
    with open(path, "rb") as f:
        return sum(1 for _ in layers._members(layers.open_layer_stream(f), drain=True))


def run_gunzip_local(path: Path) -> int:
    with open(path, "rb") as f:
        layers.open_layer_stream(f).drain()
    return -1


def run_stream_hash(lr: LocalRegistry, repo: str, digest: str, size: int) -> int:
    with lr.client() as reg:
        for _ in blobs.open_verified_stream(reg, repo, digest, size, cache=False):
            pass
    return -1


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached layer")
    ap.add_argument("--only", default="", help="comma-separated subset of measurements")
    args = ap.parse_args()

    path, meta = cached_layer(args.rebuild)
    print(f"layer: {path.name}: {meta['size'] / MiB:.0f} MiB gzip, {meta['entries']} entries", flush=True)
    with LocalRegistry() as lr:
        with lr.client() as reg:
            ref = push_layer_image(reg, "bench/files", path, meta["digest"])
        measures = {
            "tar tzvf": lambda: run_tar(path),
            "reg.files": lambda: run_files(lr, ref),
            "list local": lambda: run_list_local(path),
            "list tarfile": lambda: run_list_tarfile(path),
            "gunzip local": lambda: run_gunzip_local(path),
            "stream+hash": lambda: run_stream_hash(lr, "bench/files", meta["digest"], meta["size"]),
        }
        if args.only:
            keep = {k.strip() for k in args.only.split(",")} | {"tar tzvf", "reg.files"}
            measures = {k: v for k, v in measures.items() if k in keep}
        times: dict[str, list[float]] = {k: [] for k in measures}
        cpu: dict[str, list[float]] = {k: [] for k in measures}
        for rep in range(args.reps + 1):  # round 0 warms the page cache and the registry: not counted
            for name, fn in measures.items():
                c0, t0 = cpu_seconds(), time.perf_counter()
                n = fn()
                dt, dc = time.perf_counter() - t0, cpu_seconds() - c0
                if n >= 0 and n != meta["entries"]:
                    raise SystemExit(f"{name} listed {n} entries, tar lists {meta['entries']}")
                if rep:
                    times[name].append(dt)
                    cpu[name].append(dc)
                print(f"  round {rep} {name:<13} {dt:6.2f} s  (cpu {dc:5.2f} s)", flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["reg.files"] / med["tar tzvf"]
    load = os.getloadavg()
    print(f"\nreg.files of a {meta['size'] / MiB:.0f} MiB gzip layer, {meta['entries']} entries; "
          f"median of {args.reps} ({os.cpu_count()} CPUs, load {load[0]:.1f})")
    print(f"{'measure':<14}{'median s':>10}{'min s':>8}{'max s':>8}{'cpu s':>8}{'vs tar':>8}")
    for k in measures:
        print(f"{k:<14}{med[k]:>10.2f}{min(times[k]):>8.2f}{max(times[k]):>8.2f}"
              f"{statistics.median(cpu[k]):>8.2f}{med[k] / med['tar tzvf']:>8.2f}")
    print(f"reg.files / tar tzvf: {ratio:.2f} (target <= {TARGET})")
    result = {
        "layer": meta, "reps": args.reps, "median_s": med, "times_s": times, "cpu_s": cpu,
        "ratio_files_to_tar": ratio, "target": TARGET, "gzip_backend": layers.GZIP_BACKEND,
        "command": "/work/main/.venv/bin/python -m benchmarks.bench_files " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(), "loadavg": load, "python": platform.python_version(), "time": time.time(),
    }
    out = RESULTS / f"bench_files-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()

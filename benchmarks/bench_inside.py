"""Inside an image: ``reg.packages`` vs syft, ``reg.efficiency`` vs skopeo + dive, the full layer pass vs
the plain listing; side by side, alternating, against one real registry (``LocalRegistry``).

    /work/main/.venv/bin/python -m benchmarks.bench_inside [--reps 3] [--rebuild]

The images are built once from this machine's real content (layers cached in ``benchmarks/results/``):

- ``os``: ``var/lib/dpkg`` (the dpkg database: ~760 installed packages), every ``usr/share/doc/*/copyright``,
  ``etc/os-release`` (a symlink, as on Debian) and ``usr/lib/os-release``;
- ``big``: ``usr/lib/chromium`` (real binaries, ~350 MB) and ``usr/share/java`` (Debian's jars);
- ``python``: the project venv's ``site-packages``: every ``*.dist-info`` (~150 packages) plus numpy and
  pandas, under ``usr/local/lib/python3.11/site-packages``;
- ``app``: requests, urllib3, idna and certifi with their ``dist-info`` (the second image's own layer).

``inside/app:1`` = os + big + python (≥ 100 MB compressed); ``inside/app:2`` = os + big + app (shares the
base layers). Each round (the first, warm-up round is not counted) runs, in turn:

- (a) a fresh ``Registry``: ``packages(app:1)`` (cold: every layer read), then ``packages(app:2)`` on the
  same client (the shared layers are not read again); peer: ``syft scan registry:HOST/inside/app:1 -o
  syft-json=FILE`` (syft 1.18.1, ``SYFT_CHECK_FOR_APP_UPDATE=false``); targets: ≥ 3× faster than syft,
  second call ≤ 0.3× the first;
- (b) a fresh ``Registry``: ``efficiency(app:1)``; peer: ``skopeo copy docker://HOST/inside/app:1
  docker-archive:FILE`` then ``dive --source docker-archive FILE --json OUT`` (dive 0.13.1); target ≥ 3×;
- (c) on ``bench_files``' 290 MiB gzip layer (65,527 entries), each with a fresh ``Registry``: ``files(ref,
  max_bytes=8 GiB)`` ("files plain": with a cap ``files()`` takes the plain listing, no capture hook) vs
  ``files(ref)`` ("files pass": the one layer pass that also feeds the catalogers and keeps what the
  efficiency count needs, cached for ``packages``/``efficiency``/``os_release``); target ≤ 1.15×. Also
  shown: ``packages(ref)`` + ``efficiency(ref)`` on a fresh client (the pass plus the per-image work:
  the final filesystem, the packages frame, dive's count over 65,527 entries).

Prints medians (wall and CPU: this process for regexplore, the child processes for the peers; the registry's
own CPU in neither) and ratios; writes JSON to ``benchmarks/results/bench_inside-*.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["REGEXPLORE_CACHE"] = "off"

from benchmarks import bench_files  # noqa: E402
from benchmarks.layerfiles import MiB, cached, push_image, tar_of, write_gzip_layer  # noqa: E402
from regexplore.sandbox import LocalRegistry  # noqa: E402

BIN = Path(sys.executable).parent
SYFT = str(BIN / "syft")
DIVE = str(BIN / "dive")
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
PY_DEST = "usr/local/lib/python3.11/site-packages"
CAP = 8 * 1024**3


# ------------------------------------------------------------------------------------------ the images
def _site_args(names: list[str]) -> list[str]:
    """tar arguments for ``names`` (relative to site-packages) placed under :data:`PY_DEST`."""
    return ["-C", str(SITE.parent), f"--transform=s,^site-packages,{PY_DEST},S",
            *[f"site-packages/{n}" for n in names]]


def _dist_infos(*projects: str) -> list[str]:
    """The ``*.dist-info`` folder names of site-packages (all, or those of ``projects``)."""
    found = sorted(p.name for p in SITE.glob("*.dist-info"))
    if not projects:
        return found
    return [n for n in found if n.split("-")[0].lower().replace("_", "-") in projects]


RECIPES = {
    "os": lambda: ["-C", "/", "var/lib/dpkg", "etc/os-release", "usr/lib/os-release",
                   *sorted(p.lstrip("/") for p in glob.glob("/usr/share/doc/*/copyright"))],
    "big": lambda: ["-C", "/", "usr/lib/chromium", "usr/share/java"],
    "python": lambda: _site_args([*_dist_infos(), "numpy", "pandas"]),
    "app": lambda: _site_args([*_dist_infos("requests", "urllib3", "idna", "certifi"),
                               "requests", "urllib3", "idna", "certifi"]),
}


def layers(rebuild: bool) -> dict[str, tuple[Path, dict]]:
    """Every recipe's layer, built once (``results/inside-NAME.tar.gz``)."""
    return {name: cached(f"inside-{name}", lambda path, r=recipe: write_gzip_layer(path, tar_of(r())), rebuild)
            for name, recipe in RECIPES.items()}


# ---------------------------------------------------------------------------------------- measures
def syft_scan(host: str, ref: str, out: Path) -> dict:
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    subprocess.run([SYFT, "scan", f"registry:{host}/{ref}", "-o", f"syft-json={out}", "-q"], check=True,
                   env=env, capture_output=True, timeout=1800)
    return json.loads(out.read_text())


def skopeo_dive(host: str, ref: str, work: Path) -> dict:
    archive, out = work / "image.tar", work / "dive.json"
    archive.unlink(missing_ok=True)
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/{ref}",
                    f"docker-archive:{archive}:{ref}"], check=True, capture_output=True, timeout=1800)
    subprocess.run([DIVE, "--source", "docker-archive", str(archive), "--json", str(out)], check=True,
                   capture_output=True, timeout=1800)
    return json.loads(out.read_text())


def cpu_seconds() -> float:
    """CPU of this process and of its waited-for children (the registry is neither until it stops)."""
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def one_round(lr: LocalRegistry, refs: dict[str, str], work: Path) -> tuple[dict[str, tuple[float, float]], dict]:
    """One round of every measurement, in turn: ({name: (seconds, CPU seconds)}, what they found)."""
    t: dict[str, tuple[float, float]] = {}

    def timed(name: str, fn):
        c0, t0 = cpu_seconds(), time.perf_counter()
        out = fn()
        t[name] = (time.perf_counter() - t0, cpu_seconds() - c0)
        return out

    found: dict = {}
    with lr.client() as reg:
        first = timed("packages first", lambda: reg.packages(refs["one"]))
        second = timed("packages second", lambda: reg.packages(refs["two"]))
    doc = timed("syft", lambda: syft_scan(lr.host, refs["one"], work / "syft.json"))
    with lr.client() as reg:
        eff = timed("efficiency", lambda: reg.efficiency(refs["one"]))
    dive = timed("skopeo+dive", lambda: skopeo_dive(lr.host, refs["one"], work))
    with lr.client() as reg:
        plain = timed("files plain", lambda: reg.files(refs["files"], max_bytes=CAP))
    with lr.client() as reg:
        timed("files pass", lambda: reg.files(refs["files"]))
    with lr.client() as reg:
        timed("packages+efficiency", lambda: (reg.packages(refs["files"]), reg.efficiency(refs["files"])))
    found["ours"] = {k: int(v) for k, v in first["type"].value_counts().items()}
    found["ours second"] = {k: int(v) for k, v in second["type"].value_counts().items()}
    types: dict[str, int] = {}
    for a in doc["artifacts"]:
        types[a["type"]] = types.get(a["type"], 0) + 1
    found["syft"] = types
    found["efficiency"] = {"ours": [eff.wasted_bytes, eff.image_size],
                           "dive": [dive["image"]["inefficientBytes"], dive["image"]["sizeBytes"]]}
    found["files rows"] = len(plain)
    return t, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached layers")
    args = ap.parse_args()

    built = layers(args.rebuild)
    files_path, files_meta = bench_files.cached_layer(False)
    files_meta = {**files_meta, "diff_id": files_meta.get("diff_id", files_meta["digest"])}
    one = [built["os"], built["big"], built["python"]]
    size_one = sum(m["size"] for _, m in one)
    print(f"image 1: {size_one / MiB:.0f} MiB compressed in {len(one)} layers; image 2 shares "
          f"{(built['os'][1]['size'] + built['big'][1]['size']) / MiB:.0f} MiB of them", flush=True)
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with LocalRegistry() as lr, tempfile.TemporaryDirectory(prefix="regexplore-bench-inside-") as tmp:
        pushed: set[str] = set()
        with lr.client() as reg:
            refs = {"one": push_image(reg, "inside/app", "1", one, pushed),
                    "two": push_image(reg, "inside/app", "2", [built["os"], built["big"], built["app"]], pushed),
                    "files": push_image(reg, "bench/files", "latest", [(files_path, files_meta)], set())}
        for rep in range(args.reps + 1):  # round 0 warms the page cache and the registry: not counted
            t, found = one_round(lr, refs, Path(tmp))
            print(f"  round {rep}: " + ", ".join(f"{k} {v:.2f} s" for k, (v, _) in t.items()), flush=True)
            if rep:
                for k, (v, c) in t.items():
                    times.setdefault(k, []).append(v)
                    cpu.setdefault(k, []).append(c)
    report(args, times, cpu, found, size_one)


def report(args, times: dict[str, list[float]], cpu: dict[str, list[float]], found: dict, size_one: int) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratios = {
        "syft / packages first": (med["syft"] / med["packages first"], ">= 3"),
        "packages second / first": (med["packages second"] / med["packages first"], "<= 0.3"),
        "skopeo+dive / efficiency": (med["skopeo+dive"] / med["efficiency"], ">= 3"),
        "files pass / files plain": (med["files pass"] / med["files plain"], "<= 1.15"),
        "packages+efficiency / files plain": (med["packages+efficiency"] / med["files plain"], "(shown)"),
    }
    load = os.getloadavg()
    print(f"\nmedians of {args.reps} rounds ({os.cpu_count()} CPUs, load {load[0]:.1f})")
    for k, v in med.items():
        print(f"  {k:<20}{v:8.2f} s  cpu {med_cpu[k]:6.2f} s   runs: {' '.join(f'{x:.2f}' for x in times[k])}")
    for k, (v, target) in ratios.items():
        print(f"  {k:<34}{v:7.2f}  (target {target})")
    print(f"packages by type: ours {found['ours']}; syft {found['syft']}")
    print(f"efficiency [wasted, image size]: ours {found['efficiency']['ours']}, dive {found['efficiency']['dive']}")
    result = {
        "reps": args.reps, "median_s": med, "times_s": times, "median_cpu_s": med_cpu, "cpu_s": cpu,
        "ratios": {k: v for k, (v, _) in ratios.items()},
        "targets": {k: t for k, (_, t) in ratios.items()}, "found": found, "image_bytes": size_one,
        "command": "/work/main/.venv/bin/python -m benchmarks.bench_inside " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(), "loadavg": load, "python": platform.python_version(), "time": time.time(),
        "syft": shutil.which(SYFT), "dive": shutil.which(DIVE),
    }
    out = bench_files.RESULTS / f"bench_inside-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()

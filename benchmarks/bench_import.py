"""What ``import regexplore`` adds to ``import pandas, requests`` (target: < 150 ms).

Fresh interpreters, alternating, N times each (default 10):

- wall time of ``python -c "import pandas, requests"`` vs ``python -c "import pandas, requests, regexplore"``;
- in-process: a fresh interpreter imports pandas and requests, then times ``import regexplore`` (wall and CPU);
  the primary figure, since the difference of two multi-second medians is noisy on a busy machine;
- ``python -X importtime``: the cumulative microseconds of the ``regexplore`` entry when pandas and requests
  are already imported (what regexplore itself costs on top).

Prints medians and the difference; writes JSON to benchmarks/results/.

    python -m benchmarks.bench_import [-n 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BASE = "import pandas, requests"
WITH = "import pandas, requests, regexplore"
TARGET_MS = 150.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def wall_ms(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), cwd=ROOT)
    return (time.perf_counter() - t0) * 1000.0


def importtime_ms(code: str = WITH, module: str = "regexplore") -> tuple[float, list[tuple[str, float]]]:
    """Cumulative import time of ``module`` (ms) and its five most expensive new imports."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True, env=_env(), cwd=ROOT,
                       capture_output=True, text=True)
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, self_us, cum_us, name = _parse(line)
        rows.append((name, int(self_us), int(cum_us)))
    top = [i for i, r in enumerate(rows) if r[0] == module]  # a top-level row
    if not top:
        return float("nan"), []
    idx = top[-1]
    total = rows[idx][2] / 1000.0
    # rows are printed children first: regexplore's subtree is the indented run just above its own row
    start = idx
    while start > 0 and rows[start - 1][0].startswith(" "):
        start -= 1
    heavy = sorted(((r[0].strip(), r[1] / 1000.0) for r in rows[start:idx + 1]), key=lambda x: -x[1])[:6]
    return total, heavy


INPROC = ("import time; import pandas, requests; c = time.process_time(); t = time.perf_counter(); "
          "import regexplore; print(time.perf_counter() - t, time.process_time() - c)")


def inproc_ms() -> tuple[float, float]:
    """(wall, CPU) ms of ``import regexplore`` in a fresh interpreter that already imported pandas, requests."""
    p = subprocess.run([sys.executable, "-c", INPROC], check=True, env=_env(), cwd=ROOT, capture_output=True,
                       text=True)
    wall, cpu = (float(x) * 1000.0 for x in p.stdout.split())
    return wall, cpu


def _parse(line: str) -> tuple[str, str, str, str]:
    # "import time:       123 |        456 |   name"
    body = line.split(":", 1)[1]
    self_us, cum_us, name = body.split("|", 2)
    return "", self_us.strip(), cum_us.strip(), name.rstrip()[1:]  # keep the indentation (2 spaces a level)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args(argv)
    wall_ms(WITH)  # warm the file cache and .pyc files once
    base, with_, itime, in_wall, in_cpu = [], [], [], [], []
    heavy: list[tuple[str, float]] = []
    for _ in range(args.n):
        base.append(wall_ms(BASE))
        with_.append(wall_ms(WITH))
        ms, heavy = importtime_ms()
        itime.append(ms)
        w, c = inproc_ms()
        in_wall.append(w)
        in_cpu.append(c)
    med = statistics.median
    diff = med(with_) - med(base)
    res = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "n": args.n,
        "loadavg": os.getloadavg(),
        "base_ms": [round(x, 1) for x in base],
        "with_regexplore_ms": [round(x, 1) for x in with_],
        "base_median_ms": round(med(base), 1),
        "with_regexplore_median_ms": round(med(with_), 1),
        "added_wall_median_ms": round(diff, 1),
        "importtime_regexplore_median_ms": round(med(itime), 1),
        "in_process_wall_median_ms": round(med(in_wall), 1),
        "in_process_cpu_median_ms": round(med(in_cpu), 1),
        "in_process_wall_ms": [round(x, 1) for x in in_wall],
        "importtime_regexplore_ms": [round(x, 1) for x in itime],
        "heaviest_self_ms_last_run": [(n, round(ms, 1)) for n, ms in heavy],
        "target_ms": TARGET_MS,
        "target_met": med(in_wall) < TARGET_MS and med(itime) < TARGET_MS,
        "command": "python -m benchmarks.bench_import" + (f" -n {args.n}" if args.n != 10 else ""),
    }
    print(f"python -c '{BASE}'           median {res['base_median_ms']:7.1f} ms  (N={args.n})")
    print(f"python -c '{WITH}' median {res['with_regexplore_median_ms']:7.1f} ms")
    print(f"added by regexplore (wall, difference of medians): {res['added_wall_median_ms']:.1f} ms")
    print(f"-X importtime cumulative 'regexplore' (median):    {res['importtime_regexplore_median_ms']:.1f} ms")
    print(f"in a fresh interpreter after pandas+requests: wall {res['in_process_wall_median_ms']:.1f} ms, "
          f"CPU {res['in_process_cpu_median_ms']:.1f} ms (medians)")
    print("heaviest imports under regexplore (self ms): "
          + ", ".join(f"{n} {ms:.1f}" for n, ms in res["heaviest_self_ms_last_run"]))
    verdict = "MET" if res["target_met"] else "MISSED"
    print(f"target < {TARGET_MS:.0f} ms: {verdict}  (load average {res['loadavg'][0]:.1f})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"import-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()

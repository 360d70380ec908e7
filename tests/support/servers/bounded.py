"""Run an attack in a child interpreter with a wall-clock timeout and a memory rlimit.

A denial-of-service regression must *fail* a test, not hang CI or take the machine's memory: the
code under test runs in ``python -c`` with ``RLIMIT_AS`` set (so a runaway allocation raises
``MemoryError`` in the child) and is killed after ``timeout`` seconds. ::

    res = run_bounded('''
        import regexplore as rx
        rx.Registry(URL).catalog()
    ''', env={"URL": server.url}, timeout=20, memory_mb=1500)
    assert res.error == "ResponseTooLarge", res.output

The child prints one last line ``RESULT <json>``: ``{"ok": true, "value": ...}`` when the code's last
statement stored ``result = ...`` (any JSON-able value), else ``{"ok": false, "error": class name,
"message": str(exc)}``. ``res.elapsed`` is the wall time; ``res.peak_rss_mb`` the child's peak RSS (``VmHWM``: on Linux
``ru_maxrss`` survives ``execve``, so it would report the forking pytest worker's peak).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

_WRAPPER = """
import json, resource, sys, traceback
ns = {{}}
try:
    exec(compile({code!r}, "<attack>", "exec"), ns)
    out = {{"ok": True, "value": ns.get("result")}}
except BaseException as exc:
    out = {{"ok": False, "error": type(exc).__name__, "message": str(exc)[:2000],
           "classes": [c.__name__ for c in type(exc).__mro__]}}
    traceback.print_exc()
# VmHWM is this address space's peak; ru_maxrss would carry the forking parent's peak across exec
try:
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
    out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
except (OSError, IndexError):
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out, default=str), flush=True)
"""


@dataclass
class Bounded:
    ok: bool
    value: Any
    error: str | None
    message: str
    classes: list[str]
    elapsed: float
    peak_rss_mb: float
    output: str

    def raised(self, name: str) -> bool:
        """True when the child raised ``name`` or a subclass of it."""
        return name in self.classes


def run_bounded(code: str, *, env: dict[str, str] | None = None, timeout: float = 60,
                memory_mb: int = 2048) -> Bounded:
    """Run ``code`` (dedented) in a fresh interpreter under a ``memory_mb`` address-space limit.

    Fails the calling test (``AssertionError``) when the child outlives ``timeout`` seconds or dies
    without printing its result line (a crash, or killed by the limit)."""
    limit = memory_mb * 1024 * 1024

    def limits() -> None:  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    child_env = {**os.environ, "MALLOC_ARENA_MAX": "2", "REGEXPLORE_PROGRESS": "0", **(env or {})}
    script = _WRAPPER.format(code=textwrap.dedent(code))
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", script], env=child_env, capture_output=True,
                              timeout=timeout, preexec_fn=limits)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"").decode(errors="replace")[-3000:]
        raise AssertionError(f"the attack ran past its {timeout} s deadline (a hang):\n{tail}") from None
    elapsed = time.monotonic() - start
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise AssertionError(f"the child died without a result (exit {proc.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    return Bounded(ok=res["ok"], value=res.get("value"), error=res.get("error"), message=res.get("message", ""),
                   classes=res.get("classes", []), elapsed=elapsed, peak_rss_mb=res["peak_rss_mb"], output=out + err)

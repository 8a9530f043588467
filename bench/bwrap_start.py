"""Time a bare bubblewrap start: `bwrap` (all namespaces unshared) running `python3 -I -S -c 'print(1)'`,
next to the same Python without bubblewrap. Prints the median and p90 wall time of each, in ms.

The sandbox's own round trip (with its cgroups, work directory and clean-up) is
bench/tool_speed.py; this isolates what bubblewrap itself costs.

    python bench/bwrap_start.py --runs 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

PY = ["-I", "-S", "-c", "print(1)"]


def bwrap_argv(python: str) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for name in ("bin", "lib", "lib64", "sbin"):
        argv += ["--symlink", f"usr/{name}", f"/{name}"]
    return [*argv, python, *PY]


def timed(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    python = "/usr/bin/python3"
    if shutil.which("bwrap") is None:
        print("bwrap not found", file=sys.stderr)
        return 1
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[0]}  runs: {args.runs}")
    for label, argv in (("python3 alone", [python, *PY]), ("bwrap + python3", bwrap_argv(python))):
        ms = sorted(timed(argv, args.runs))
        print(f"{label:16s} p50 {statistics.median(ms):6.1f} ms  p90 {ms[int(0.9 * (len(ms) - 1))]:6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

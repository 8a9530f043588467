"""Throughput and latency of the agent's tools on this machine.

    python bench/tool_speed.py [--sandbox-runs 100] [--pages 100]

Prints calculator evaluations/s, sandbox round trips/s for `print(1)` with p50/p99 latency
(sequential, then with one worker per core), and browser pages/s against a local server.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import BrowserSettings, SandboxSettings  # noqa: E402
from tools.browser import Browser  # noqa: E402
from tools.calculator import evaluate  # noqa: E402
from tools.netguard import fetch, make_client  # noqa: E402
from tools.sandbox import Sandbox, isolation_report  # noqa: E402

EXPRESSIONS = ["17*24+3", "0.1+0.2", "sqrt(2)/2", "(1+2)*(3+4)/5", "2**64-1", "15% of 80", "max(3, 7, 2) * ln(10)", "1,234,567 / 89"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def bench_calculator(seconds: float = 1.0) -> None:
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for expr in EXPRESSIONS:
            evaluate(expr)
        n += len(EXPRESSIONS)
    elapsed = time.perf_counter() - start
    guard_start = time.perf_counter()
    for bad in ("9**9**9", "100000!", "(" * 59 + "1" + ")" * 59):
        try:
            evaluate(bad)
        except ValueError:
            pass
    guard_ms = (time.perf_counter() - guard_start) / 3 * 1000
    print(f"calculator: {n / elapsed:,.0f} evaluations/s (mixed expressions); malicious inputs rejected in {guard_ms:.2f} ms on average")


def bench_sandbox(runs: int) -> None:
    box = Sandbox(SandboxSettings())
    print(f"sandbox isolation: {isolation_report()}")
    box.run("print(1)")  # warm the page cache
    latencies = []
    start = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        result = box.run("print(1)")
        latencies.append(time.perf_counter() - t0)
        assert result.stdout == "1\n", result
    elapsed = time.perf_counter() - start
    print(
        f"sandbox print(1), sequential: {runs / elapsed:.1f} round trips/s, "
        f"p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms"
    )
    workers = os.cpu_count() or 2
    latencies = []

    def one(_: int) -> None:
        t0 = time.perf_counter()
        box.run("print(1)")
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(runs)))
    elapsed = time.perf_counter() - start
    print(
        f"sandbox print(1), {workers} concurrent: {runs / elapsed:.1f} round trips/s, "
        f"p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms"
    )


PAGE = (
    "<html><head><title>Bench page</title></head><body><nav>"
    + "".join(f'<a href="/p{i}">nav {i}</a>' for i in range(20))
    + "</nav><main><h1>Benchmark article</h1>"
    + "".join(f"<p>Paragraph {i}: the agent reads this text to answer a question about item {i}.</p>" for i in range(60))
    + "</main></body></html>"
).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


def bench_browser(pages: int) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    settings = BrowserSettings(allow_hosts=["127.0.0.1"])
    browser = Browser(settings)
    assert browser.open(url).ok  # loads trafilatura once
    try:
        client = make_client(settings)
        start = time.perf_counter()
        for _ in range(pages):
            fetch(url, settings, client=client)
        fetch_rate = pages / (time.perf_counter() - start)
        latencies = []
        start = time.perf_counter()
        for _ in range(pages):
            t0 = time.perf_counter()
            assert browser.open(url).ok
            latencies.append(time.perf_counter() - t0)
        rate = pages / (time.perf_counter() - start)
    finally:
        httpd.shutdown()
        httpd.server_close()
    print(
        f"browser ({len(PAGE) // 1024} KB page, local server): {rate:.1f} pages/s opened and extracted "
        f"(p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms); "
        f"{fetch_rate:.0f} guarded fetches/s without extraction"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandbox-runs", type=int, default=100)
    parser.add_argument("--pages", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    bench_calculator()
    bench_sandbox(args.sandbox_runs)
    bench_browser(args.pages)


if __name__ == "__main__":
    main()

"""What bounding HTML extraction costs: in-process `extract_page` vs the forked, limited child.

    python bench/extract_bound.py [--runs 20]

Both run on bench/tool_speed.py's 5 KB page, interleaved so load affects them alike; prints
the median of each. Also times the 300,000-unclosed-tags page through `Browser` (cut to the
first 20,000 tags, then extracted under the CPU and memory limits).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tool_speed import PAGE  # noqa: E402

from agent.config import BrowserSettings  # noqa: E402
from tools.bounded import run_bounded  # noqa: E402
from tools.browser import Browser, _extract_data, _preload_extractors, extract_page  # noqa: E402
from tools.netguard import FetchResult  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    html = PAGE.decode()
    _preload_extractors()
    extract_page(html, "http://a.test/")
    inline, child = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        extract_page(html, "http://a.test/")
        inline.append(time.perf_counter() - t)
        t = time.perf_counter()
        run_bounded(_extract_data, html, "http://a.test/", timeout_s=5, memory_mb=512)
        child.append(time.perf_counter() - t)
    print(f"5 KB page, n={args.runs} each: in-process p50 {statistics.median(inline) * 1000:.0f} ms, "
          f"bounded child p50 {statistics.median(child) * 1000:.0f} ms")
    bomb = "<html><body><p>visible</p>" + "<div>" * 300_000
    browser = Browser(BrowserSettings(), fetcher=lambda url: FetchResult(
        url=url, status=200, content_type="text/html", body=bomb.encode(), charset="utf-8"))
    t = time.perf_counter()
    result = browser.open("http://a.test/")
    print(f"300,000 unclosed tags ({len(bomb):,} bytes): {'read' if result.ok else 'refused'} in "
          f"{time.perf_counter() - t:.1f} s wall")


if __name__ == "__main__":
    main()

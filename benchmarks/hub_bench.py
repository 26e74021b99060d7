"""Benchmark the hub's first render in headless Chromium (Debian's /usr/bin/chromium).

Serves the published sample (data/warehouse by default; `make run` builds it) and, in a fresh
browser context each time, measures from navigation to:
- the catalogue: every product card visible;
- the product overview: the SLO badges visible (signed in);
- the metrics tab: every chart drawn (signed in).
Prints the median and the worst of R runs against the 1 s aim, and a baseline in the same run:
a blank page with one element, to show the browser's own cost.

    python benchmarks/hub_bench.py [--warehouse FILE] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from playwright.sync_api import sync_playwright  # noqa: E402

from retail_dp.settings import Settings  # noqa: E402
from tests.delivery_server import Server  # noqa: E402

KEY = "rdp_demo_marketing_2026"
CONSUMER = "product_affinity_cross_sell"


def timed(browser, url: str, ready: str, key: str | None = None) -> float:
    context = browser.new_context()
    if key:
        context.add_init_script(f"sessionStorage.setItem('retail_dp_key', '{key}')")
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready)
    elapsed = (time.perf_counter() - start) * 1000
    context.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warehouse", type=Path, default=Settings().warehouse)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    server = Server(args.warehouse, args.warehouse.parent / "hub-bench-access.jsonl")
    product = f"{server.url}/#/product/{CONSUMER}"
    cases = {
        "blank page (baseline)": (f"{server.url}/health", "body", None),
        "catalogue": (f"{server.url}/#/", ".card:nth-child(4)", None),
        "product overview": (f"{product}/overview", "#slo-badges .badge", KEY),
        "metrics tab (5 charts)": (f"{product}/metrics", "figure.chart:nth-child(5) svg", KEY),
    }
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            timed(browser, f"{server.url}/#/", ".card")  # warm the server and the browser
            print(f"hub first render, {args.runs} runs each, fresh browser context per run")
            print(f"{'page':<26} {'median':>9} {'worst':>9}  aim")
            for name, (url, ready, key) in cases.items():
                runs = [timed(browser, url, ready, key) for _ in range(args.runs)]
                median = statistics.median(runs)
                verdict = (
                    "" if "baseline" in name else ("< 1 s met" if max(runs) < 1000 else "NOT met")
                )
                print(f"{name:<26} {median:>6.0f} ms {max(runs):>6.0f} ms  {verdict}")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""Benchmark the sample data generator: wall time and peak memory at a given size.

Each repetition runs in a fresh process so peak RSS is that run's own. Prints the median and
the ratio against a baseline measured in the same session: DuckDB writing the same number of
purchase lines from a trivial generate_series, i.e. the cost of the file writing alone.

    python benchmarks/generate_bench.py [--customers 1000000] [--repeat 3] [--format csv]
        [--profile grocery|marketplace]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
from pathlib import Path
from retail_dp.generator.landing import GenerateRequest, generate
from retail_dp.generator.profiles import PROFILES
customers, out, fmt, profile = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
start = time.perf_counter()
manifest = generate(
    GenerateRequest(customers=customers, out=out, format=fmt, profile=PROFILES[profile])
)
print("RESULT " + json.dumps({
    "seconds": time.perf_counter() - start,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "purchase_lines": manifest["rows"]["purchase"],
}))
"""

BASELINE = """
import json, resource, sys, time
import duckdb
duckdb.execute("SET enable_progress_bar = false")
lines, out, fmt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
options = "(FORMAT csv, HEADER true)" if fmt == "csv" else "(FORMAT parquet)"
start = time.perf_counter()
duckdb.sql(
    f"COPY (SELECT 'L' || lpad(i::VARCHAR, 10, '0') AS purchase_id, i % 97 AS quantity, "
    f"(i % 1000) / 10.0 AS unit_price, TIMESTAMP '2025-01-01' + to_seconds(i % 63072000) AS ts "
    f"FROM range({lines}) t(i)) TO '{out}/baseline.{fmt}' {options}"
)
print("RESULT " + json.dumps({
    "seconds": time.perf_counter() - start,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    result = [line for line in out.stdout.splitlines() if "RESULT " in line]
    return json.loads(result[-1].split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--profile", default="grocery", help="grocery or marketplace")
    args = parser.parse_args()
    gen, base = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            gen.append(run(CHILD, str(args.customers), tmp, args.format, args.profile))
            print(f"run {i + 1}: generator {gen[-1]}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            base.append(run(BASELINE, str(gen[-1]["purchase_lines"]), tmp, args.format))
            print(f"run {i + 1}: baseline  {base[-1]}", flush=True)
    g = statistics.median(r["seconds"] for r in gen)
    b = statistics.median(r["seconds"] for r in base)
    rss = statistics.median(r["peak_rss_mb"] for r in gen)
    print(f"\nprofile              {args.profile}")
    print(f"customers            {args.customers:,}")
    print(f"purchase lines       {gen[0]['purchase_lines']:,}")
    print(f"generator median     {g:.1f} s   (target < 120 s)")
    print(f"generator peak RSS   {rss:.0f} MB (target < 2048 MB)")
    print(f"baseline median      {b:.1f} s   (DuckDB writing as many lines, no simulation)")
    print(f"ratio                {g / b:.2f}x the baseline")


if __name__ == "__main__":
    main()

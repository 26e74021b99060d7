"""Benchmark the whole build (load -> marts -> CLV and cross-sell) against hand-written SQL.

Generates the landing zone once (default 1M customers, about 20M purchase lines) into
data/bench/, then, for each repetition and each in a fresh process:
- the pipeline: the refresh job, in-process, into a new warehouse; wall time, time per step and
  peak RSS of the largest process (the job's or dbt's);
- the baseline: benchmarks/handwritten_marts.sql in one DuckDB connection into a new file.
Prints medians and the ratio of the pipeline's load + dbt time (the part the SQL script also
does) to the script's. Model fitting has no SQL counterpart and is reported on its own.

    python benchmarks/pipeline_bench.py [--customers 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-07-01 06:00:00"
FIT_STEPS = ("customer_lifetime_value_model", "cross_sell_model")

PIPELINE = """
import json, resource, sys
from datetime import datetime
from pathlib import Path
import dagster as dg
from retail_dp.runner import run_refresh
from retail_dp.settings import Settings
settings = Settings.from_env(data_dir=sys.argv[1], warehouse=sys.argv[2])
report = run_refresh(settings, as_of=datetime.fromisoformat(sys.argv[3]),
                     instance=dg.DagsterInstance.ephemeral())
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print("RESULT " + json.dumps({"ok": report.ok, "seconds": report.seconds, "peak_rss_mb": peak,
      "steps": report.step_seconds, "failure": report.failure}))
"""

BASELINE = """
import json, sys, time
from pathlib import Path
import duckdb
script = Path(sys.argv[1]).read_text().format(data_dir=sys.argv[2], as_of=sys.argv[4])
con = duckdb.connect(sys.argv[3])
con.execute("SET enable_progress_bar = false")
start = time.perf_counter()
con.execute(script)
print("RESULT " + json.dumps({"seconds": time.perf_counter() - start}))
"""


def run_child(code: str, *args: str) -> dict:
    """Run in a fresh process and return what it reports."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT
    )
    lines = [line for line in out.stdout.splitlines() if "RESULT " in line]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(lines[-1].split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data_dir = ROOT / "data" / "bench" / f"landing_{args.customers}"
    if not (data_dir / "manifest.json").exists():
        print(f"generating {args.customers:,} customers into {data_dir} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "retail_dp.cli",
                "generate",
                "--customers",
                str(args.customers),
                "--end-date",
                AS_OF[:10],
                "--out",
                str(data_dir),
            ],
            check=True,
            cwd=ROOT,
        )
    manifest = json.loads((data_dir / "manifest.json").read_text())
    script = ROOT / "benchmarks" / "handwritten_marts.sql"
    pipeline, baseline = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_child(PIPELINE, str(data_dir), f"{tmp}/wh.duckdb", AS_OF)
            if not result["ok"]:
                raise SystemExit(f"pipeline failed: {result['failure']}")
            pipeline.append(result)
            print(f"run {i + 1}: pipeline {result['seconds']:.1f} s {result['steps']}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result = run_child(BASELINE, str(script), str(data_dir), f"{tmp}/b.duckdb", AS_OF)
            baseline.append(result)
            print(f"run {i + 1}: hand-written SQL {result['seconds']:.1f} s", flush=True)

    def median_step(name: str) -> float:
        return statistics.median(r["steps"].get(name, 0.0) for r in pipeline)

    total = statistics.median(r["seconds"] for r in pipeline)
    fitting = sum(median_step(s) for s in FIT_STEPS)
    load_and_dbt = statistics.median(
        sum(v for k, v in r["steps"].items() if k not in FIT_STEPS) for r in pipeline
    )
    sql = statistics.median(r["seconds"] for r in baseline)
    print(f"\ncustomers                  {manifest['customers']:,}")
    print(f"purchase lines             {manifest['rows']['purchase']:,}")
    print(f"pipeline, whole run        {total:.1f} s (median of {args.repeat})")
    print(f"  load + dbt steps         {load_and_dbt:.1f} s")
    print(f"  model fitting            {fitting:.1f} s ({', '.join(FIT_STEPS)})")
    peak = max(r["peak_rss_mb"] for r in pipeline)
    print(f"  peak RSS, largest process {peak:.0f} MB (target < 4096 MB)")
    print(f"hand-written SQL           {sql:.1f} s")
    print(f"ratio (load + dbt) / SQL   {load_and_dbt / sql:.2f}x (aim: within 1.5x)")


if __name__ == "__main__":
    main()

"""DuckDB against Spark: the same full build on each engine, per size, measured in one run.

For each size (default: the 2,240-customer sample and 1M customers) the landing zone is
generated once into data/bench/ (as benchmarks/pipeline_bench.py does), then the refresh job
builds it into a new warehouse, in a fresh process, once with RETAIL_DP_ENGINE=duckdb and once
with spark (local mode, every core). Reported per run: time, time per stage (load, dbt, fits,
the rest: checks, the semantic layer's copy, publishing) and the peak memory of the whole
process tree (the job, Spark's JVM, dbt and dbt-spark's JVM), sampled from /proc every 0.2 s;
then Spark's time as a multiple of DuckDB's.

    python benchmarks/engine_bench.py [--customers 2240 1000000] [--repeat 1]
                                      [--engines duckdb spark]

Each run's figures are printed as it ends, so a failed later run keeps the earlier ones.

Needs the [spark] extra (make install-spark).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from pipeline_bench import AS_OF, FIT_STEPS, landing  # noqa: E402

SOURCES = ("customer_info", "product", "purchase")
STAGES = ("seconds", "load", "dbt", "fits", "rest", "peak_mb")
DBT_STEPS = ("cross_sell_dbt_models", "semantic_layer_dbt_models", "dbt_source_tests")

PIPELINE = """
import json, sys
from datetime import datetime
import dagster as dg
from retail_dp.runner import run_refresh
from retail_dp.settings import Settings
settings = Settings.from_env(data_dir=sys.argv[1], warehouse=sys.argv[2], spark_dir=sys.argv[3])
report = run_refresh(settings, as_of=datetime.fromisoformat(sys.argv[4]),
                     instance=dg.DagsterInstance.ephemeral())
print("RESULT " + json.dumps({"ok": report.ok, "seconds": report.seconds,
      "steps": report.step_seconds, "failure": report.failure,
      "lines": report.table_rows.get("marts.fct_purchase")}))
"""


def _tree_rss(root: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def run_build(engine: str, data_dir: Path, tmp: Path) -> dict:
    """One full build in a fresh process; its report and the tree's peak memory."""
    env = {**os.environ, "RETAIL_DP_ENGINE": engine}
    args = [str(data_dir), str(tmp / "wh" / "retail_dp.duckdb"), str(tmp / "spark"), AS_OF]
    proc = subprocess.Popen(
        [sys.executable, "-c", PIPELINE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    lines = [line for line in out.splitlines() if "RESULT " in line]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{engine} build failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(lines[-1].split("RESULT ", 1)[1])
    if not result["ok"]:
        raise SystemExit(f"{engine} build was not ok: {result['failure']}")
    steps = result["steps"]
    stage = {
        "load": sum(steps.get(s, 0.0) for s in SOURCES),
        "dbt": sum(steps.get(s, 0.0) for s in DBT_STEPS),
        "fits": sum(steps.get(s, 0.0) for s in FIT_STEPS),
    }
    stage["rest"] = result["seconds"] - sum(stage.values())
    return {"seconds": result["seconds"], **stage, "peak_mb": peak[0] / 2**20, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[2240, 1_000_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--engines", nargs="+", choices=("duckdb", "spark"), default=["duckdb", "spark"]
    )
    args = parser.parse_args()
    rows = []
    for customers in args.customers:
        data_dir = landing(customers)
        runs: dict[str, list[dict]] = {engine: [] for engine in args.engines}
        for _ in range(args.repeat):
            for engine in runs:
                with tempfile.TemporaryDirectory(dir=ROOT / "data" / "bench") as tmp:
                    print(f"{customers:,} customers on {engine} ...", flush=True)
                    run = run_build(engine, data_dir, Path(tmp))
                    runs[engine].append(run)
                    figures = {k: round(run[k], 1) for k in STAGES} | {"lines": run["lines"]}
                    print(f"  {engine}: {json.dumps(figures)}", flush=True)
        median = {
            engine: {k: statistics.median(r[k] for r in found) for k in STAGES}
            for engine, found in runs.items()
        }
        rows.append((customers, next(iter(runs.values()))[0]["lines"], median))
    print()
    print(
        "| customers | lines | engine | full build | load | dbt | fits | rest | peak memory "
        "| Spark / DuckDB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for customers, lines, median in rows:
        for engine, m in median.items():
            base = median.get("duckdb")
            ratio = f"{m['seconds'] / base['seconds']:.2f}x" if base else "-"
            print(
                f"| {customers:,} | {lines:,} | {engine} | {m['seconds']:.1f} s | "
                f"{m['load']:.1f} | {m['dbt']:.1f} | {m['fits']:.1f} | {m['rest']:.1f} | "
                f"{m['peak_mb']:,.0f} MB | {ratio} |"
            )
    print(f"\nmedians of {args.repeat} run(s) per engine and size; every build in a fresh process")


if __name__ == "__main__":
    main()

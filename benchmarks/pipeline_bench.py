"""The scale table: a full build, a one-day increment, a quiet day and hand-written SQL, per size.

For each size (default 100k and 1M customers) the landing zone is generated once into
data/bench/ and laid out as daily drops (retail_dp/generator/daily.py): the history before the
last day, then the last day's file. Each measurement runs in a fresh process:
- full build: the refresh job, in-process, into a new warehouse, on the history;
- one-day increment: the last day's file lands and the same warehouse refreshes (the models
  re-score with the fit of the day before, as a daily run between weekly refits does);
- quiet day: the same warehouse refreshes again a day later with no new file: what a daily
  run costs before any data arrives (the `as_of`-relative models, re-scoring, checks and
  publishing), so the one-day increment less this is what the day's data cost;
- baseline: benchmarks/handwritten_marts.sql in one DuckDB connection into a new file, on
  the whole landing zone.
Time, time per step and peak RSS (the job's process or its dbt children) for each; then the
ratios the targets of issue #11 are set in: (load + dbt) / SQL, increment / full build, and
the quiet day and the day's data (increment less quiet day) over the full build.

    python benchmarks/pipeline_bench.py [--customers 100000 1000000] [--repeat 1] [--json FILE]

--json writes every run's raw figures (seconds per step, peak RSS, loads) to FILE as well.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from retail_dp.generator.daily import daily_drops, end_of  # noqa: E402

AS_OF = "2026-07-01 06:00:00"
LAST_DAY = date(2026, 6, 30)
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
loads = {s: (m, r) for s, m, _, _, r, _ in report.loads}
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print("RESULT " + json.dumps({"ok": report.ok, "seconds": report.seconds, "peak_rss_mb": peak,
      "steps": report.step_seconds, "failure": report.failure, "loads": loads}))
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


def landing(customers: int) -> Path:
    data_dir = ROOT / "data" / "bench" / f"landing_{customers}"
    if not (data_dir / "manifest.json").exists():
        print(f"generating {customers:,} customers into {data_dir} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "retail_dp.cli",
                "generate",
                "--customers",
                str(customers),
                "--end-date",
                LAST_DAY.isoformat(),
                "--out",
                str(data_dir),
            ],
            check=True,
            cwd=ROOT,
        )
    return data_dir


def daily_layout(data_dir: Path) -> tuple[Path, Path]:
    """The daily drops of a landing zone (made once) and the last day's file."""
    daily = data_dir.parent / f"{data_dir.name}_daily"
    last = daily / "purchase" / f"{LAST_DAY.isoformat()}.csv"
    if not last.exists():
        print(f"laying out {data_dir} as daily drops ...", flush=True)
        daily_drops(data_dir, daily, LAST_DAY)
    return daily, last


def incremental_landing(daily: Path, tmp: Path) -> Path:
    """A landing zone holding the history only (hard links: no copy of the big files)."""
    out = tmp / "landing"
    (out / "purchase").mkdir(parents=True)
    for name in ("customer_info.csv", "product.csv", "purchase/history.csv"):
        os.link(daily / name, out / name)
    return out


def measure(customers: int, repeat: int, script: Path) -> dict:
    data_dir = landing(customers)
    daily, last = daily_layout(data_dir)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    full, increment, quiet, baseline = [], [], [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(dir=ROOT / "data" / "bench") as tmp:
            zone = incremental_landing(daily, Path(tmp))
            warehouse = f"{tmp}/wh.duckdb"
            before = end_of(LAST_DAY - timedelta(days=1))
            result = run_child(PIPELINE, str(zone), warehouse, before)
            if not result["ok"]:
                raise SystemExit(f"full build failed: {result['failure']}")
            full.append(result)
            print(f"{customers:,} run {i + 1}: full build {result['seconds']:.1f} s", flush=True)
            os.link(last, zone / "purchase" / last.name)
            result = run_child(PIPELINE, str(zone), warehouse, end_of(LAST_DAY))
            if not result["ok"]:
                raise SystemExit(f"increment failed: {result['failure']}")
            increment.append(result)
            print(
                f"{customers:,} run {i + 1}: one-day increment {result['seconds']:.1f} s "
                f"{result['loads']}",
                flush=True,
            )
            result = run_child(PIPELINE, str(zone), warehouse, end_of(LAST_DAY + timedelta(1)))
            if not result["ok"]:
                raise SystemExit(f"quiet day failed: {result['failure']}")
            quiet.append(result)
            print(f"{customers:,} run {i + 1}: quiet day {result['seconds']:.1f} s", flush=True)
        with tempfile.TemporaryDirectory(dir=ROOT / "data" / "bench") as tmp:
            result = run_child(BASELINE, str(script), str(data_dir), f"{tmp}/b.duckdb", AS_OF)
            baseline.append(result)
            print(f"{customers:,} run {i + 1}: hand-written SQL {result['seconds']:.1f} s")

    def load_and_dbt(r: dict) -> float:
        return sum(v for k, v in r["steps"].items() if k not in FIT_STEPS)

    def fits(r: dict) -> float:
        return sum(r["steps"].get(k, 0.0) for k in FIT_STEPS)

    med = statistics.median
    return {
        "customers": manifest["customers"],
        "lines": manifest["rows"]["purchase"],
        "full": med(r["seconds"] for r in full),
        "full_load_dbt": med(load_and_dbt(r) for r in full),
        "full_fits": med(fits(r) for r in full),
        "full_peak": max(r["peak_rss_mb"] for r in full),
        "increment": med(r["seconds"] for r in increment),
        "increment_load_dbt": med(load_and_dbt(r) for r in increment),
        "increment_fits": med(fits(r) for r in increment),
        "increment_peak": max(r["peak_rss_mb"] for r in increment),
        "quiet": med(r["seconds"] for r in quiet),
        "sql": med(r["seconds"] for r in baseline),
        "repeat": repeat,
        "runs": {"full": full, "increment": increment, "quiet": quiet, "baseline": baseline},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every run's raw figures here")
    args = parser.parse_args()
    script = ROOT / "benchmarks" / "handwritten_marts.sql"
    rows = [measure(n, args.repeat, script) for n in args.customers]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    print(f"\nmedians of {args.repeat} run(s); seconds; peak RSS of the largest process in MB")
    header = (
        f"{'customers':>10} {'lines':>11} | {'full':>7} {'load+dbt':>8} {'fits':>6} "
        f"{'peak':>6} | {'1-day':>6} {'load+dbt':>8} {'fits':>6} {'peak':>6} | {'SQL':>6} | "
        f"{'(l+d)/SQL':>9} {'1-day/full':>10} | {'quiet':>6} {'quiet/full':>10} "
        f"{'data/full':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['customers']:>10,} {r['lines']:>11,} | {r['full']:>7.1f} "
            f"{r['full_load_dbt']:>8.1f} {r['full_fits']:>6.1f} {r['full_peak']:>6.0f} | "
            f"{r['increment']:>6.1f} {r['increment_load_dbt']:>8.1f} "
            f"{r['increment_fits']:>6.1f} {r['increment_peak']:>6.0f} | {r['sql']:>6.1f} | "
            f"{r['full_load_dbt'] / r['sql']:>8.2f}x {r['increment'] / r['full']:>10.1%} | "
            f"{r['quiet']:>6.1f} {r['quiet'] / r['full']:>10.1%} "
            f"{(r['increment'] - r['quiet']) / r['full']:>9.1%}"
        )
    print(
        "targets (issue #11): (load + dbt) / SQL <= 1.5x at 1M; one-day increment <= 10% of "
        "a full build at 1M; fits < 30 s at 1M; peak < 4096 MB"
    )


if __name__ == "__main__":
    main()

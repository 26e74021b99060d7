"""Benchmark the model fits on a built warehouse: the CLV and cross-sell steps' time and peak
memory, and the cross-sell parameters from the bounded stratified sample against a fit on
every row.

Builds the product once from the landing zone (e.g. `retail-dp generate --customers 1000000
--out DIR`), then re-runs only the two fit steps `--repeat` times, each in a fresh process,
and prints medians.

    python benchmarks/fit_bench.py --data-dir DIR [--repeat 3] [--as-of 2026-07-01]
                                  [--warehouse BUILT]

With --warehouse, a warehouse already built from DIR at the same as_of is used instead of a new
build: every run is then fits-only, and the fitted marts in it are replaced.

With --against REV (and --warehouse), the baseline is another revision's code measured in the
same session: a git worktree of REV (its dbt project parsed there) and this checkout take turns,
`--repeat` fits-only runs each, each on its own copy of the warehouse, and the medians of both
and their ratio are printed. The machine's speed drifts within an hour; taking turns exposes
both versions to the same drift.

    python benchmarks/fit_bench.py --data-dir DIR --warehouse BUILT --against 1c98011
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIT_STEPS = ("customer_lifetime_value_model", "cross_sell_model")
FITTED = [
    "marts/customer_lifetime_value",
    "marts/clv_model_parameters",
    "marts/cross_sell_recommendations",
    "marts/cross_sell_model",
]

RUN = """
import json, resource, sys
from datetime import datetime
import dagster as dg
from retail_dp.runner import run_refresh
from retail_dp.settings import Settings
settings = Settings.from_env(data_dir=sys.argv[1], warehouse=sys.argv[2])
selection = json.loads(sys.argv[4]) or None
# every run refits: the same as_of would otherwise re-score with the fit just saved
report = run_refresh(settings, as_of=datetime.fromisoformat(sys.argv[3]),
                     instance=dg.DagsterInstance.ephemeral(), selection=selection,
                     refit="always")
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print("RESULT " + json.dumps({"ok": report.success, "steps": report.step_seconds,
      "peak_rss_mb": peak, "failure": report.failure}))
"""

PARAMETERS = """
import json, sys
import duckdb, numpy as np
from retail_dp.analytics import assets, cross_sell
con = duckdb.connect(sys.argv[1], read_only=True)
activity, _ = cross_sell.activity(assets._customers(con, 90))
sampled, _ = cross_sell.fit(assets._training_sample(con, 90, activity))
rows = con.execute("SELECT * EXCLUDE (days_before_as_of) FROM intermediate.int_cross_sell_features "
                   "WHERE days_before_as_of = 90").df()
full, _ = cross_sell.fit(cross_sell.with_activity(rows, activity)[0])
a, b = sampled.coefficients, full.coefficients
print("RESULT " + json.dumps({"rows": len(rows), "sample_rows": sampled.training_rows,
      "max_abs_difference": float(np.max(np.abs(a - b))),
      "max_relative_difference": float(np.max(np.abs(a - b) / np.abs(b))),
      "difference_over_largest_coefficient": float(np.max(np.abs(a - b)) / np.max(np.abs(b[1:]))),
      "terms": dict(zip(["intercept", *cross_sell.FEATURES], map(float, a / b - 1)))}))
"""


def child(code: str, *args: str, root: Path = ROOT) -> dict:
    """`code` in a fresh interpreter in `root`, whose retail_dp it imports (the working
    directory comes first on the path, before the editable install)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=root
    )
    # the result may follow other output on the same line
    lines = [line.split("RESULT ", 1)[1] for line in out.stdout.splitlines() if "RESULT " in line]
    if not lines:
        raise RuntimeError(f"exit {out.returncode}: {out.stdout[-1500:]} {out.stderr[-1500:]}")
    return json.loads(lines[-1])


def against(args: argparse.Namespace, revision: str) -> None:
    """This checkout's fits and `revision`'s, taking turns on copies of one warehouse."""
    with tempfile.TemporaryDirectory(prefix="fit_bench_") as tmp:
        baseline = Path(tmp) / "baseline"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(baseline), revision], check=True)
        try:
            subprocess.run(
                [sys.executable, "-m", "retail_dp.cli", "prepare"], cwd=baseline, check=True
            )
            roots = {revision: baseline, "this checkout": ROOT}
            copies = {name: Path(tmp) / f"{i}.duckdb" for i, name in enumerate(roots)}
            for name in roots:
                shutil.copy(args.warehouse, copies[name])
            times: dict[str, list[list[float]]] = {name: [] for name in roots}
            for turn in range(args.repeat):
                for name, root in roots.items():
                    run = child(
                        RUN,
                        str(args.data_dir),
                        str(copies[name]),
                        args.as_of,
                        json.dumps(FITTED),
                        root=root,
                    )
                    if not run["ok"]:
                        raise SystemExit(f"{name}: the run failed: {run['failure']}")
                    steps = [run["steps"].get(s, float("nan")) for s in FIT_STEPS]
                    times[name].append(steps)
                    print(f"turn {turn + 1}, {name}: {', '.join(f'{t:.1f}' for t in steps)} s, "
                          f"peak RSS {run['peak_rss_mb']:.0f} MB")  # fmt: skip
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(baseline)], check=False)
    medians = {}
    for name, runs in times.items():
        per_step = [statistics.median(r[i] for r in runs) for i in range(len(FIT_STEPS))]
        medians[name] = statistics.median(sum(r) for r in runs)
        steps = ", ".join(f"{s} {t:.1f}" for s, t in zip(FIT_STEPS, per_step, strict=True))
        print(f"{name}: both fits median {medians[name]:.1f} s ({steps} s)")
    ratio = medians["this checkout"] / medians[revision]
    print(f"this checkout / {revision}: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--as-of", default="2026-07-01 06:00:00")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warehouse", type=Path, help="a warehouse built from --data-dir")
    parser.add_argument(
        "--against", metavar="REV", help="a git revision whose fits take turns with these"
    )
    args = parser.parse_args()
    if args.against:
        if not args.warehouse:
            parser.error("--against needs --warehouse (a warehouse built from --data-dir)")
        against(args, args.against)
        return
    with tempfile.TemporaryDirectory(prefix="fit_bench_") as tmp:
        if args.warehouse:
            warehouse, runs = str(args.warehouse), []
        else:
            warehouse = str(Path(tmp) / "retail_dp.duckdb")
            build = child(RUN, str(args.data_dir), warehouse, args.as_of, "[]")
            fits = [round(build["steps"].get(s, 0), 1) for s in FIT_STEPS]
            print(f"full build: ok={build['ok']}, peak RSS {build['peak_rss_mb']:.0f} MB, "
                  f"fits {fits} s")  # fmt: skip
            runs = [build]
        runs += [
            child(RUN, str(args.data_dir), warehouse, args.as_of, json.dumps(FITTED))
            for _ in range(args.repeat - len(runs))
        ]
        if not all(r["ok"] for r in runs):
            raise SystemExit(f"a run failed: {[r['failure'] for r in runs if not r['ok']]}")
        for step in FIT_STEPS:
            times = [r["steps"].get(step, float("nan")) for r in runs]
            each = ", ".join(f"{t:.1f}" for t in times)
            print(f"{step}: median {statistics.median(times):.1f} s ({each})")
        total = [sum(r["steps"].get(s, 0) for s in FIT_STEPS) for r in runs]
        print(f"both fits: median {statistics.median(total):.1f} s (target < 30 s)")
        fits_only = runs[0 if args.warehouse else 1 :] or runs
        peaks = [r["peak_rss_mb"] for r in fits_only]
        print(f"peak RSS of a fits-only run: median {statistics.median(peaks):.0f} MB")
        print("cross-sell parameters, sample against all rows: " + json.dumps(
            child(PARAMETERS, warehouse), indent=1))  # fmt: skip


if __name__ == "__main__":
    main()

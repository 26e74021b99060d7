"""How well can any ranker pick a marketplace customer's next new category? The generator's own
category probabilities as a ranker (the oracle) next to ours and the backtest's baselines.

The marketplace generator draws every line's product by one global popularity, whatever the
customer bought before. The best possible ranking of the categories a customer does not own
yet is then the true shares, which no model fitted to the data can know better. This script
generates marketplaces of the given sizes, runs `retail-dp backtest` on each (the product built
at T, what happened in (T, T + horizon] read from the same files), and prints hit@1 and hit@3 of
every ranker among the customers who bought a new category, the oracle included.

    python benchmarks/category_oracle.py [--customers 8000 40000] [--seed 42]
                                         [--as-of 2026-08-27] [--horizon 90]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from retail_dp.analytics import backtest
from retail_dp.generator.landing import GenerateRequest, generate, simulated_catalogue
from retail_dp.generator.profiles import PROFILES
from retail_dp.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
END_DATE = date(2026, 11, 25)


def true_category_shares(req: GenerateRequest) -> dict[str, float]:
    """Each category's chance of being the category of a line, as the generator draws lines:
    from the catalogue `generate(req)` drew, checked against the product file it wrote."""
    products = simulated_catalogue(req)
    if products.popularity is None:
        raise SystemExit(f"profile {req.profile.name}: lines are not drawn by one popularity")
    categories = req.profile.categories
    written = pd.read_csv(req.out / "product.csv")["product_category"].tolist()
    if written != [categories[i] for i in products.category]:
        raise SystemExit("the rebuilt catalogue is not the one generate wrote")
    shares = np.bincount(products.category, weights=products.popularity, minlength=len(categories))
    return dict(zip(categories, shares.tolist(), strict=True))


def measure(customers: int, seed: int, as_of: datetime, horizon: int, work: Path) -> dict:
    data_dir = work / f"marketplace_{customers}"
    req = GenerateRequest(
        customers=customers,
        seed=seed,
        end_date=END_DATE,
        out=data_dir,
        profile=PROFILES["marketplace"],
    )
    generate(req)
    shares = true_category_shares(req)
    warehouse = work / f"backtest_{customers}" / "retail_dp.duckdb"
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home")}
    (work / "dagster_home").mkdir(exist_ok=True)
    (work / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "retail-dp"),
            "backtest",
            "--data-dir", str(data_dir),
            "--warehouse", str(warehouse),
            "--as-of", as_of.isoformat(sep=" "),
            "--horizon", f"{horizon}d",
        ],
        env=env,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if run.returncode:
        raise SystemExit(f"retail-dp backtest failed ({run.returncode}):\n{run.stderr[-4000:]}")
    window = backtest.Window(as_of, horizon)
    settings = Settings.from_env(data_dir=str(data_dir))
    outcomes = backtest.read_outcomes(data_dir, settings.descriptors_dir, window)

    def oracle(rows: pd.DataFrame) -> dict[str, list[np.ndarray]]:
        return {"oracle": [rows["category"].map(shares).fillna(0.0).to_numpy(float)]}

    with duckdb.connect(str(warehouse), read_only=True) as con:
        built = backtest.read_built(con, window)
    new = backtest.opportunity_section(built, outcomes, window)["new_categories"]
    return backtest.category_section(built, new, window, more_rankers=oracle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[8000, 40000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", type=datetime.fromisoformat, default=datetime(2026, 8, 27))
    parser.add_argument("--horizon", type=int, default=90)
    args = parser.parse_args()
    scratch = ROOT / "data" / "bench"  # git ignores it
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        for customers in args.customers:
            section = measure(customers, args.seed, args.as_of, args.horizon, Path(tmp))
            print(
                f"\nmarketplace, {customers:,} customers, T = {args.as_of:%Y-%m-%d}, "
                f"{args.horizon} days: {section['customers']} new-category buyers"
            )
            print(f"{'ranker':<22}{'hit@1':>8}{'hit@3':>8}")
            for name, hits in section["rankers"].items():
                print(f"{name:<22}{hits['hit_at_1']:>8.3f}{hits['hit_at_3']:>8.3f}")


if __name__ == "__main__":
    main()

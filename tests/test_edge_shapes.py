"""Shapes at the edges: a catalogue of two categories, and an as_of long after the data ends,
where the cross-sell model cannot learn. The run still publishes usable numbers and says why."""

from __future__ import annotations

import csv
import shutil
from datetime import datetime

import duckdb
import pytest

from .conftest import build

TWO = {"Gold": "Gold"}  # every other category becomes Food


@pytest.fixture(scope="module")
def two_categories(sample, tmp_path_factory):
    data_dir, _ = sample
    landing = tmp_path_factory.mktemp("two") / "landing"
    shutil.copytree(data_dir, landing)
    with (data_dir / "product.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["product_category"] = TWO.get(row["product_category"], "Food")
    with (landing / "product.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report, settings = build(landing, tmp_path_factory.mktemp("two_wh") / "retail_dp.duckdb")
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    yield report, con
    con.close()


def test_two_categories_build_affinity_recommendations_and_publish(two_categories):
    report, con = two_categories
    assert report.ok, (report.failure, report.failed_error_checks)
    assert "published/snapshot" in report.materialized
    pairs = con.execute(
        "SELECT antecedent, consequent FROM marts.category_affinity "
        "WHERE basket_level = 'customer' ORDER BY ALL"
    ).fetchall()
    assert pairs == [("Food", "Gold"), ("Gold", "Food")]
    recommended = {
        c
        for (c,) in con.execute(
            "SELECT DISTINCT next_best_category_1 FROM marts.cross_sell_recommendations "
            "WHERE next_best_category_1 IS NOT NULL"
        ).fetchall()
    }
    assert recommended and recommended <= {"Food", "Gold"}


def test_the_compatibility_profile_shows_zero_for_absent_categories(two_categories):
    _, con = two_categories
    absent, spend_gap = con.execute(
        "SELECT sum(mntwines + mntmeatproducts + mntfishproducts + mntsweetproducts "
        "+ mntfruits), max(abs(p.spend - m.total_spend)) "
        "FROM marts.customer_category_profile p "
        "JOIN marts.customer_purchase_metrics m USING (customer_id)"
    ).fetchall()[0]
    assert absent == 0  # no Wines, Meats, Fish, Sweets or Fruits in this catalogue
    assert spend_gap < 1e-6  # spend still covers every category


@pytest.fixture(scope="module")
def long_after(built, tmp_path_factory):
    _, settings, _ = built
    warehouse = tmp_path_factory.mktemp("late") / "retail_dp.duckdb"
    report, later = build(settings.data_dir, warehouse, as_of=datetime(2028, 1, 1))
    con = duckdb.connect(str(later.warehouse), read_only=True)
    yield report, con
    con.close()


def test_a_model_that_cannot_learn_says_so_and_the_rest_publishes(long_after):
    report, con = long_after
    assert report.ok, (report.failure, report.failed_error_checks)
    assert "published/snapshot" in report.materialized
    status = dict(
        con.execute(
            "SELECT kind, detail FROM marts.cross_sell_model WHERE name = 'fit_status'"
        ).fetchall()
    )
    assert set(status) == {"fit", "backtest_fit"}
    assert all(d.startswith("failed") for d in status.values()), status
    undefined = con.execute(
        "SELECT count(*) FROM marts.cross_sell_recommendations "
        "JOIN intermediate.int_customer_rfm USING (customer_id) "  # buyers; others are NULL
        "WHERE cross_sell_opportunity_score IS NULL OR isnan(cross_sell_opportunity_score)"
    ).fetchall()[0][0]
    assert undefined == 0
    # the freshness SLO (WARN) says the data is stale; it does not block
    stale = [c for c in report.checks if c.check == "slo_freshness" and not c.passed]
    assert stale and all(c.severity == "WARN" for c in stale)

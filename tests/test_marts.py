"""The consumer-aligned marts: hand-computed edge cases, the mlxtend oracle, planted structure."""

from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from mlxtend.frequent_patterns import apriori, association_rules

from retail_dp.runner import run_refresh
from retail_dp.settings import Settings

from .conftest import AS_OF
from .test_end_to_end import ALL_ASSETS

EDGE_CASES = Path(__file__).parent / "data" / "edge_cases"
# everything up to the SQL marts; the model fits need more customers than four
MODEL_FITS = {
    "intermediate/int_customer_rfm",
    "intermediate/int_cross_sell_affinity",
    "intermediate/int_cross_sell_features",
    "intermediate/int_cross_sell_snapshots",
    "marts/customer_lifetime_value",
    "marts/clv_model_parameters",
    "marts/cross_sell_recommendations",
    "marts/cross_sell_model",
}
# the semantic layer reads the fitted marts, and publishing waits for everything
AFTER_FITS = {
    "semantic/customer_value",
    "semantic/category_pairs",
    "semantic/metricflow_time_spine",
    "published/snapshot",
}
DBT_MARTS = sorted(ALL_ASSETS - MODEL_FITS - AFTER_FITS)


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    """The hand-written dataset, built through the real pipeline up to the dbt marts."""
    root = tmp_path_factory.mktemp("edge")
    warehouse = root / "edge.duckdb"
    # eight hand-written lines, one a second after as_of: deferred, so it counts against no SLO
    settings = Settings.from_env(data_dir=EDGE_CASES, warehouse=warehouse)
    report = run_refresh(
        settings, as_of=AS_OF, instance=dg.DagsterInstance.ephemeral(), selection=DBT_MARTS
    )
    assert report.ok, report.failure
    con = duckdb.connect(str(warehouse), read_only=True)
    yield con
    con.close()


def rows(con, sql: str) -> dict:
    frame = con.execute(sql).df()
    return {r["customer_id"]: r for r in frame.to_dict("records")}


def test_purchase_at_as_of_counts_and_after_it_does_not(edge):
    assert edge.execute("SELECT purchase_id FROM marts.fct_purchase ORDER BY 1").fetchall() == [
        (f"L{i}",) for i in range(1, 8)
    ]
    # the line a second after as_of is deferred: neither loaded nor rejected
    assert edge.execute("SELECT count(*) FROM sources.quarantine").fetchall() == [(0,)]
    audit = edge.execute(
        "SELECT audit->>'rows_deferred' FROM sources.landing_audit WHERE source = 'purchase'"
    ).fetchall()
    assert audit == [("1",)]
    amounts = dict(edge.execute("SELECT purchase_id, amount FROM marts.fct_purchase").fetchall())
    assert amounts["L3"] == 40.0 and amounts["L6"] == 15.0


def test_customer_purchase_metrics_by_hand(edge):
    m = rows(edge, "SELECT * FROM marts.customer_purchase_metrics")
    assert set(m) == {"C1", "C2", "C3", "C4"}  # the customer who never bought is there
    never, single, multi, edge_case = m["C1"], m["C2"], m["C3"], m["C4"]
    assert (never["lifetime_orders"], never["orders_365d"], never["total_spend"]) == (0, 0, 0)
    assert pd.isna(never["avg_order_value"]) and pd.isna(never["recency_days"])
    assert never["categories_purchased"] == 0
    assert (single["lifetime_orders"], single["total_spend"], single["avg_order_value"]) == (
        1,
        20,
        20,
    )
    assert single["recency_days"] == 30 and single["categories_purchased"] == 1
    # C3: O2 (150, three categories), O3 (17, a deal) and O4 (15, more than 365 days ago)
    assert (multi["lifetime_orders"], multi["orders_365d"]) == (3, 2)
    assert (multi["total_spend"], multi["spend_365d"]) == (182, 167)
    assert multi["avg_order_value"] == pytest.approx(182 / 3)
    assert multi["categories_purchased"] == 4 and multi["recency_days"] == 47
    assert str(multi["first_purchase_at"]) == "2025-05-01 08:00:00"
    assert (edge_case["lifetime_orders"], edge_case["recency_days"]) == (1, 0)
    assert edge_case["tenure_days"] == 1 and edge_case["tenure_band"] == "under 3 months"


def test_customer_category_profile_reproduces_dataos_measures(edge):
    p = rows(edge, "SELECT * FROM marts.customer_category_profile")
    c3 = p["C3"]
    assert (c3["mntwines"], c3["mntmeatproducts"], c3["mntgoldprods"], c3["mntfishproducts"]) == (
        10,
        57,
        100,
        15,
    )
    assert (c3["mntsweetproducts"], c3["mntfruits"]) == (0, 0)
    # one order per channel; store counted once in purchases
    assert (c3["numwebpurchases"], c3["numstorepurchases"], c3["numcatalogpurchases"]) == (1, 1, 1)
    assert c3["numdealspurchases"] == 1 and c3["purchases"] == 3
    assert c3["spend"] == 182 and c3["average_spend"] == pytest.approx(182 / 3)
    assert c3["churn_probability"] == 0.5  # recency 47, spend 182
    expected = (0.25 * 10 + 0.2 * 57 + 0.15 * 15 + 0.1 * 0 + 0.3 * 100 + 0.2 * 0) / (3 + 1)
    assert c3["dataos_cross_sell_score"] == pytest.approx(expected)
    assert p["C2"]["churn_probability"] == 0.2  # spend under 100
    assert p["C1"]["purchases"] == 0 and pd.isna(p["C1"]["average_spend"])
    assert p["C1"]["churn_probability"] == 0.2 and p["C1"]["dataos_cross_sell_score"] == 0


def test_category_affinity_by_hand(edge):
    rules = {
        (level, a, b): (support, confidence, lift)
        for level, a, b, support, confidence, lift in edge.execute(
            "SELECT basket_level, antecedent, consequent, support, confidence, lift "
            "FROM marts.category_affinity"
        ).fetchall()
    }
    # orders: {W}, {W, M, G}, {M}, {F}, {F}
    assert rules[("order", "Wines", "Meats")] == pytest.approx((0.2, 0.5, 1.25))
    # customers: {W}, {W, M, G, F}, {F}
    assert rules[("customer", "Wines", "Meats")] == pytest.approx((1 / 3, 0.5, 1.5))
    assert rules[("customer", "Meats", "Wines")] == pytest.approx((1 / 3, 1.0, 1.5))


def _one_hot(con, key: str) -> pd.DataFrame:
    baskets = con.execute(f"SELECT DISTINCT {key} AS basket, category FROM marts.fct_purchase").df()
    return pd.crosstab(baskets["basket"], baskets["category"]).astype(bool)


@pytest.mark.parametrize("level, key", [("customer", "customer_id"), ("order", "order_id")])
def test_category_affinity_equals_mlxtend(built, level, key):
    _, settings, _ = built
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        baskets = _one_hot(con, key)
        ours = con.execute(
            "SELECT antecedent, consequent, antecedent_support, consequent_support, support, "
            "confidence, lift, leverage, conviction FROM marts.category_affinity "
            "WHERE basket_level = ?",
            [level],
        ).df()
    frequent = apriori(baskets, min_support=1e-9, use_colnames=True, max_len=2)
    oracle = association_rules(
        frequent, num_itemsets=len(baskets), metric="confidence", min_threshold=0.0
    )
    oracle = oracle[(oracle["antecedents"].map(len) == 1) & (oracle["consequents"].map(len) == 1)]
    oracle = oracle.assign(
        antecedent=oracle["antecedents"].map(lambda s: next(iter(s))),
        consequent=oracle["consequents"].map(lambda s: next(iter(s))),
    )
    merged = ours.merge(oracle, on=["antecedent", "consequent"], suffixes=("", "_mlxtend"))
    assert len(merged) == len(oracle) == len(ours[ours["support"] > 0]) > 0
    for ours_col, theirs in [
        ("antecedent_support", "antecedent support"),
        ("consequent_support", "consequent support"),
        ("support", "support_mlxtend"),
        ("confidence", "confidence_mlxtend"),
        ("lift", "lift_mlxtend"),
        ("leverage", "leverage_mlxtend"),
    ]:
        np.testing.assert_allclose(merged[ours_col], merged[theirs], rtol=1e-9, err_msg=ours_col)
    finite = np.isfinite(merged["conviction_mlxtend"])
    np.testing.assert_allclose(
        merged.loc[finite, "conviction"], merged.loc[finite, "conviction_mlxtend"], rtol=1e-9
    )


def test_affinity_recovers_the_planted_structure(built):
    _, settings, _ = built
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        lift = {
            (a, b): v
            for a, b, v in con.execute(
                "SELECT antecedent, consequent, lift FROM marts.category_affinity "
                "WHERE basket_level = 'customer'"
            ).fetchall()
        }
    assert lift[("Wines", "Meats")] > 1.4 and lift[("Fish", "Fruits")] > 1.4
    strongest = max(lift, key=lift.get)
    assert set(strongest) in ({"Wines", "Meats"}, {"Fish", "Fruits"})
    gold = [lift[("Gold", c)] for c in ("Wines", "Meats", "Fish", "Sweets", "Fruits")]
    assert max(gold) < 1.25 and min(gold) > 0.85


def test_clv_recovers_the_generators_parameters(built):
    """Tolerances: at 2,240 customers the likelihood has a ridge along which a and b (and q
    and gamma) move together, so we hold the identifiable quantities to the truth: the mean
    purchase rate r/alpha, the mean dropout a/(a+b) and the Gamma shape p. Order values are
    whole units at list prices, so they follow Gamma-Gamma only approximately; the fitted mean
    value per purchase must match the observed one."""
    _, settings, manifest = built
    truth = manifest["true_parameters"]
    bg, gg = truth["bg_nbd"], truth["gamma_gamma"]
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        fit = con.execute("SELECT * FROM marts.clv_model_parameters").df().iloc[0]
        observed_mean = con.execute(
            "SELECT avg(monetary_value) FROM intermediate.int_customer_rfm WHERE frequency > 0"
        ).fetchall()[0][0]
        clv = con.execute("SELECT * FROM marts.customer_lifetime_value").df()
    assert fit["r"] / fit["alpha"] == pytest.approx(bg["r"] / bg["alpha"], rel=0.15)
    assert fit["a"] / (fit["a"] + fit["b"]) == pytest.approx(bg["a"] / (bg["a"] + bg["b"]), rel=0.3)
    assert fit["p"] == pytest.approx(gg["p"], rel=0.2)
    assert fit["p"] * fit["gamma"] / (fit["q"] - 1) == pytest.approx(observed_mean, rel=0.1)
    assert np.isfinite(fit["bgnbd_log_likelihood"]) and fit["customers"] > 2000
    buyers = clv[clv["value_tier"] != "prospect"]
    assert buyers["probability_alive"].between(0, 1).all()
    assert (buyers["expected_purchases_365d"] >= 0).all()
    assert (clv["predicted_clv_365d"] >= 0).all()
    assert set(clv["value_tier"]) == {"platinum", "gold", "silver", "bronze", "prospect"}
    top = clv.groupby("value_tier")["predicted_clv_365d"].mean()
    assert top["platinum"] > top["gold"] > top["silver"] > top["bronze"]


def test_cross_sell_backtest_beats_dataos(built, instance):
    _, settings, _ = built
    event = instance.get_latest_materialization_event(
        dg.AssetKey.from_user_string("marts/cross_sell_recommendations")
    )
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert meta["auc"] > 0.70
    assert meta["auc"] > meta["auc_dataos"]
    assert meta["top_decile_precision"] > meta["base_rate"]
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        recs = con.execute("SELECT * FROM marts.cross_sell_recommendations").df()
        bought = con.execute("SELECT DISTINCT customer_id, category FROM marts.fct_purchase").df()
    scored = recs.dropna(subset=["cross_sell_opportunity_score"])
    assert scored["cross_sell_opportunity_score"].between(0, 1).all()
    for rank in (1, 2, 3):
        s = scored[f"next_best_category_{rank}_score"].dropna()
        assert s.between(0, 1).all()
    # never recommend what the customer already bought, and ranks are ordered
    pairs = set(map(tuple, bought.to_numpy()))
    for rank in (1, 2, 3):
        col = scored[["customer_id", f"next_best_category_{rank}"]].dropna()
        assert not any(tuple(r) in pairs for r in col.to_numpy())
    both = scored.dropna(subset=["next_best_category_2_score"])
    assert (both["next_best_category_1_score"] >= both["next_best_category_2_score"]).all()

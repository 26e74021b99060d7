"""The whole product on a marketplace's shape, unlike our grocery sample: 32-hex ids, 70
categories, no names or contact details, about 3% repeat buyers, countries in mixed forms.
Every published number must be usable, and the models must say how their fits went."""

from __future__ import annotations

import math

import duckdb
import pytest


@pytest.fixture(scope="module")
def market(marketplace):
    report, settings, manifest = marketplace
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    yield report, settings, manifest, con
    con.close()


def scalar(con, sql: str):
    return con.execute(sql).fetchall()[0][0]


def test_the_run_publishes_and_every_error_check_passes(market):
    report, settings, _, _ = market
    assert report.ok, (report.failure, [(c.asset, c.check) for c in report.failed_error_checks])
    assert "published/snapshot" in report.materialized
    assert (settings.warehouse.parent / "published" / "CURRENT").exists()


def test_hex_ids_nameless_products_and_mixed_countries_are_loaded(market):
    report, _, manifest, con = market
    rejected = {(s, r) for s, r, _, _ in report.quarantine}
    assert not {r for _, r in rejected} & {"unparseable_value", "invalid_identifier"}
    assert scalar(con, "SELECT min(length(customer_id)) FROM marts.dim_customer") == 32
    assert scalar(con, "SELECT count(*) FROM marts.dim_product WHERE product_name IS NULL") > 0
    countries = {
        c for (c,) in con.execute("SELECT DISTINCT country_code FROM marts.dim_customer").fetchall()
    }
    assert {"BR", "US", "DE"} <= countries  # written as BRA/Brazil, USA/United States, GER
    unknown = scalar(con, "SELECT count(*) FROM marts.dim_customer WHERE region = 'unknown'")
    assert unknown == manifest["kept_defects"]["unrecognised_country"]


def test_seventy_categories_flow_into_affinity_and_recommendations(market):
    _, _, _, con = market
    categories = scalar(con, "SELECT count(DISTINCT category) FROM marts.dim_product")
    assert categories >= 60
    pairs = scalar(
        con, "SELECT count(*) FROM marts.category_affinity WHERE basket_level = 'customer'"
    )
    assert pairs == categories * (categories - 1)
    recommended = scalar(
        con,
        "SELECT count(DISTINCT next_best_category_1) FROM marts.cross_sell_recommendations",
    )
    assert recommended >= 1


def test_clv_is_defined_for_every_buyer_and_records_its_fit(market):
    _, _, _, con = market
    status, converged, repeat_share = con.execute(
        "SELECT fit_status, converged, repeat_share FROM marts.clv_model_parameters"
    ).fetchall()[0]
    assert status in ("ok", "degenerate") and converged is not None
    assert 0.005 < repeat_share < 0.06
    undefined = scalar(
        con,
        "SELECT count(*) FROM marts.customer_lifetime_value v "
        "JOIN intermediate.int_customer_rfm r USING (customer_id) "
        "WHERE v.expected_purchases_365d IS NULL OR isnan(v.expected_purchases_365d) "
        "OR v.predicted_clv_365d IS NULL OR isnan(v.predicted_clv_365d) "
        "OR v.probability_alive IS NULL OR isnan(v.probability_alive)",
    )
    assert undefined == 0
    # tiers among buyers only: 10 / 20 / 30 / 40 %, never everyone platinum
    shares = dict(
        con.execute(
            "SELECT value_tier, count(*) / sum(count(*)) OVER () "
            "FROM marts.customer_lifetime_value WHERE value_tier <> 'prospect' GROUP BY 1"
        ).fetchall()
    )
    assert shares == pytest.approx(
        {"platinum": 0.1, "gold": 0.2, "silver": 0.3, "bronze": 0.4}, abs=0.002
    )


def test_cross_sell_scores_are_finite_and_the_backtest_says_how_many(market):
    _, _, _, con = market
    bad = scalar(
        con,
        "SELECT count(*) FROM marts.cross_sell_recommendations r "
        "JOIN intermediate.int_customer_rfm USING (customer_id) "
        "WHERE cross_sell_opportunity_score IS NULL OR isnan(cross_sell_opportunity_score) "
        "OR cross_sell_opportunity_score NOT BETWEEN 0 AND 1",
    )
    assert bad == 0
    figures = dict(
        con.execute(
            "SELECT name, value FROM marts.cross_sell_model WHERE kind = 'backtest'"
        ).fetchall()
    )
    assert figures["backtest_customers_scored"] > 0
    auc = figures["auc"]
    assert auc is None or (not math.isnan(auc) and 0 <= auc <= 1)


def test_the_recorded_ranking_is_the_one_the_recommendations_follow(market):
    """Model or popularity, chosen on the validation window: the published next-best
    categories fall in that order (popularity: the share of owners at as_of)."""
    from retail_dp.analytics import cross_sell

    _, _, _, con = market
    validation = dict(
        con.execute(
            "SELECT name, value FROM marts.cross_sell_model WHERE kind = 'backtest'"
        ).fetchall()
    )
    choice = scalar(
        con, "SELECT detail FROM marts.cross_sell_model WHERE kind = 'ranking' AND name = 'choice'"
    )
    expected = cross_sell.choose_ranking(validation)
    assert choice == f"{expected.chosen}: {expected.detail}"
    key = "f.category_support" if expected.chosen == "popularity" else "r.{}_score"
    first, second = (key.format(f"next_best_category_{k}").replace("f.", f"f{k}.") for k in (1, 2))
    out_of_order = scalar(
        con,
        f"""SELECT count(*) FROM marts.cross_sell_recommendations r
        JOIN intermediate.int_cross_sell_features f1 ON f1.days_before_as_of = 0
            AND f1.customer_id = r.customer_id AND f1.category = r.next_best_category_1
        JOIN intermediate.int_cross_sell_features f2 ON f2.days_before_as_of = 0
            AND f2.customer_id = r.customer_id AND f2.category = r.next_best_category_2
        WHERE {first} < {second}""",
    )
    assert out_of_order == 0


def test_the_api_serves_seventy_categories(market, tmp_path):
    from .delivery_server import Server

    _, settings, _, con = market
    server = Server(settings.warehouse, tmp_path / "access.jsonl")
    try:
        with server.client("marketing") as client:
            response = client.post(
                "/v1/load",
                json={
                    "measures": ["purchase.total_spend"],
                    "dimensions": ["product.category"],
                    "limit": 1000,
                },
            )
        assert response.status_code == 200, response.text
        served = {r["product.category"]: r["purchase.total_spend"] for r in response.json()["data"]}
    finally:
        server.stop()
    expected = dict(
        con.execute("SELECT category, sum(amount) FROM marts.fct_purchase GROUP BY 1").fetchall()
    )
    assert served.keys() == expected.keys()
    assert served == pytest.approx(expected, rel=1e-9)

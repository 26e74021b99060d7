"""`retail-dp backtest`: the product built at T against what happened in (T, T + horizon],
through the CLI on the sample, and each figure by hand on a small case."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from retail_dp.analytics import backtest, clv, cross_sell
from retail_dp.cli import main

T = datetime(2026, 4, 1)
HORIZON = 90


@pytest.fixture(scope="module")
def report(sample, tmp_path_factory) -> tuple[dict, list, duckdb.DuckDBPyConnection]:
    data_dir, _ = sample
    warehouse = tmp_path_factory.mktemp("backtest") / "retail_dp.duckdb"
    args = ["backtest", "--data-dir", str(data_dir), "--warehouse", str(warehouse)]
    with pytest.MonkeyPatch.context() as env:  # the run is recorded in an instance of its own
        env.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
        assert main([*args, "--as-of", T.date().isoformat(), "--horizon", f"{HORIZON}d"]) == 0
    folder = warehouse.parent / "reports"
    written = sorted(p.name for p in folder.iterdir())
    figures = json.loads((folder / "latest.json").read_text())
    con = duckdb.connect(str(warehouse), read_only=True)
    yield figures, written, con
    con.close()


def test_the_report_is_written_as_json_and_markdown(report):
    figures, written, _ = report
    stem = f"backtest-{T.date()}-{HORIZON}d"
    assert written == sorted([f"{stem}.json", f"{stem}.md", "latest.json", "latest.md"])
    assert figures["as_of"] == "2026-04-01 00:00:00" and figures["horizon_days"] == HORIZON


def test_the_product_is_built_at_t_and_outcomes_come_after_it(report, sample):
    figures, _, con = report
    assert con.execute("SELECT max(purchase_ts) FROM marts.fct_purchase").fetchall()[0][0] <= T
    data_dir, _ = sample
    lines = duckdb.sql(
        f"SELECT count(*) FROM read_csv('{data_dir}/purchase.csv') "
        f"WHERE purchase_ts > '{T}' AND purchase_ts <= '{T + timedelta(days=HORIZON)}'"
    ).fetchall()[0][0]
    # the same contracts judge the outcomes: quarantined lines count in neither
    assert 0.95 * lines < figures["outcome_lines"] <= lines


def test_every_figure_is_set_against_its_baselines(report):
    figures, _, con = report
    opportunity, category = figures["opportunity"], figures["next_best_category"]
    assert set(opportunity["scores"]) == {
        "ours",
        "recency",
        "same_as_last_period",
        "popularity",
        "dataos",
    }
    assert set(category["rankers"]) == {"ours", "popularity", "transitions", "same_as_last_period"}
    assert set(figures["clv"]["predictors"]) == {"ours", "same_as_last_period"}
    buyers = con.execute("SELECT count(*) FROM intermediate.int_customer_rfm").fetchall()[0][0]
    assert opportunity["customers"] == figures["clv"]["customers"] == buyers
    assert opportunity["scores"]["ours"]["auc"] > opportunity["scores"]["recency"]["auc"]
    ours, transitions = category["rankers"]["ours"], category["rankers"]["transitions"]
    assert ours["hit_at_3"] >= ours["hit_at_1"] > category["rankers"]["popularity"]["hit_at_1"]
    assert ours["hit_at_1"] >= transitions["hit_at_1"] - 0.05
    assert len(opportunity["calibration"]) == 10


def test_clv_deciles_and_tiers_add_up_to_the_totals(report):
    clv = report[0]["clv"]
    deciles, ours = clv["deciles"], clv["predictors"]["ours"]
    total = sum(d["customers"] * d["actual_spend"] for d in deciles)
    assert total == pytest.approx(ours["actual_spend"], rel=1e-3)
    assert sum(t["share_of_spend"] for t in clv["value_tiers"]) == pytest.approx(1, abs=1e-3)
    assert clv["value_tiers"][0]["value_tier"] == "platinum"
    # the platinum tenth of buyers holds far more than a tenth of the next period's spend
    assert clv["value_tiers"][0]["share_of_spend"] > 0.25
    assert 0.7 < ours["purchases_ratio"] < 1.3 and ours["spearman_spend"] > 0.4
    # each ratio comes with how far the sample of buyers moves it
    for name in ("purchases_ratio", "spend_ratio"):
        low, high = ours[f"{name}_interval"]
        assert low < ours[name] < high, name
    markdown = backtest.markdown(report[0])
    low, high = ours["spend_ratio_interval"]
    assert f"{ours['spend_ratio']:,.3f} [{low:,.3f}, {high:,.3f}]" in markdown


def test_a_ratio_interval_follows_the_sample_of_buyers():
    rng = np.random.default_rng(5)
    actual = rng.poisson(2.0, 400).astype(float)
    predicted = actual * 1.1 + rng.normal(0, 0.5, 400)
    ratio = predicted.sum() / actual.sum()
    low, high = backtest.ratio_interval(predicted, actual)
    assert low < ratio < high and high - low < 0.2
    # the same inputs, the same interval (fixed draws); more buyers, a narrower one
    assert backtest.ratio_interval(predicted, actual) == [low, high]
    wide = backtest.ratio_interval(predicted[:40], actual[:40])
    assert wide[1] - wide[0] > 2 * (high - low)
    # a prediction that misses by far more than the sample explains stays outside it
    assert backtest.ratio_interval(predicted * 1.5, actual)[0] > high
    # nothing happened, or a single buyer: no interval
    assert backtest.ratio_interval(predicted, np.zeros(400)) is None
    assert backtest.ratio_interval(predicted[:1], actual[:1]) is None
    # an undefined prediction leaves the ratio undefined: no interval from the other resamples
    assert backtest.ratio_interval(np.r_[predicted[:-1], np.nan], actual) is None


def test_the_scores_are_calibrated_on_a_held_out_snapshot_and_rank_as_before(report):
    """The published scores are the model's with their hazard scaled by k, fitted on the
    snapshot 90 days before T; undone, they give the report's figures before calibration."""
    figures, _, con = report
    opportunity = figures["opportunity"]
    fit = opportunity["calibration_fit"]
    recorded = dict(
        con.execute(
            "SELECT name, value FROM marts.cross_sell_model WHERE kind = 'calibration'"
        ).fetchall()
    )
    assert fit["status"] == "fitted" and fit["hazard_scale"] == recorded["hazard_scale"] != 1.0
    held = fit["held_out"]
    assert held["customers"] > 1000 and held["log_loss_after"] <= held["log_loss_before"]
    assert abs(held["mean_after"] - held["observed_rate"]) < abs(
        held["mean_before"] - held["observed_rate"]
    )
    after = (
        con.execute(
            "SELECT coalesce(cross_sell_opportunity_score, 0) FROM intermediate.int_customer_rfm "
            "LEFT JOIN marts.cross_sell_recommendations USING (customer_id) ORDER BY customer_id"
        )
        .df()
        .iloc[:, 0]
        .to_numpy()
    )
    before = cross_sell.Calibration(hazard_scale=fit["hazard_scale"]).undo(after)
    np.testing.assert_array_equal(rankdata(before), rankdata(after))
    assert opportunity["mean_predicted"] == pytest.approx(after.mean(), abs=1e-4)
    assert opportunity["mean_predicted_before_calibration"] == pytest.approx(
        before.mean(), abs=1e-4
    )
    assert [d["decile"] for d in opportunity["calibration_before"]] == list(range(1, 11))
    # the Markdown counts the held-out customers as a count, not as the mart's DOUBLE
    warehouse = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()[0][0]
    markdown = (Path(warehouse).parent / "reports" / "latest.md").read_text()
    assert f"fitted on {int(held['customers']):,} customers" in markdown


def test_the_spend_model_is_chosen_after_a_cutoff_and_is_the_one_published(report):
    figures, _, con = report
    spend = figures["clv"]["spend_model"]
    errors = spend["holdout_error"]
    assert spend["holdout_customers"] > 100 and 90 <= spend["holdout_days"] <= 365
    assert errors[spend["chosen"]] == min(errors.values())
    rfm = con.execute(
        "SELECT frequency, round(monetary_value, 6) AS m, round(total_spend, 6) AS spend, "
        "expected_avg_order_value FROM intermediate.int_customer_rfm "
        "JOIN marts.customer_lifetime_value USING (customer_id) ORDER BY customer_id"
    ).df()
    x, m = rfm["frequency"].to_numpy(float), rfm["m"].to_numpy(float)
    pooled = clv.pooled_order_value(rfm["spend"].to_numpy(float), x)
    prior = pooled if spend["chosen"] == "pooled_shrinkage" else None
    chosen = clv.fit_gamma_gamma(x, m, pooled, prior_mean=prior)
    expected = clv.expected_transaction_value(chosen, x, m)
    np.testing.assert_allclose(rfm["expected_avg_order_value"], expected, atol=2e-6)
    # with the cutoff at as_of, the holdout's summary is the fit's own (int_customer_rfm)
    whole = con.execute(clv.SPEND_HOLDOUT_SQL, {"cutoff": T.date()}).df()
    np.testing.assert_array_equal(whole["frequency"], rfm["frequency"])
    np.testing.assert_allclose(whole["total_spend"].astype(float), rfm["spend"], atol=1e-6)
    assert (whole["holdout_days"] == 0).all()


def test_the_ranking_chosen_on_the_validation_window_is_the_one_published(report):
    figures, _, con = report
    ranking = figures["next_best_category"]["ranking"]
    validation = dict(
        con.execute(
            "SELECT name, value FROM marts.cross_sell_model WHERE kind = 'backtest'"
        ).fetchall()
    )
    expected = cross_sell.choose_ranking(validation)
    assert ranking["chosen"] == expected.chosen and ranking["detail"] == expected.detail
    assert ranking["validation_customers"] == validation["hit_customers"] > 50
    assert ranking["validation_hit_at_1_model"] == round(validation["hit_at_1"], 4)
    # on the grocery sample the model beats popularity before T, so it ranks
    assert ranking["chosen"] == "model"
    recs = con.execute(
        "SELECT count(*) FROM marts.cross_sell_recommendations "
        "WHERE next_best_category_1_score < next_best_category_2_score"
    ).fetchall()[0][0]
    assert recs == 0  # ranked by the model: the probabilities fall with the rank


def built_by_hand() -> backtest.Built:
    """Three buyers at T (2026-04-01): A owns Fish, B owns Fish and Gold, C owns Wines."""
    owned = pd.DataFrame(
        {
            "customer_id": ["A", "B", "B", "C"],
            "category": ["Fish", "Fish", "Gold", "Wines"],
            "adopted_on": pd.to_datetime(["2025-01-01", "2025-01-01", "2026-02-01", "2025-06-01"]),
        }
    )
    candidates = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B", "B", "C", "C", "C"],
            "category": ["Gold", "Meats", "Wines", "Meats", "Wines", "Fish", "Gold", "Meats"],
            "category_support": [0.5, 0.1, 0.4, 0.1, 0.4, 0.8, 0.5, 0.1],
            "next_adoptions_after_last": [9, 1, 0, 4, 2, 3, 0, 7],
        }
    )
    recs = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "cross_sell_opportunity_score": [0.9, 0.2, 0.5],
            "next_best_category_1": ["Meats", "Wines", "Meats"],
            "next_best_category_2": ["Gold", "Meats", "Fish"],
            "next_best_category_3": ["Wines", None, "Gold"],
        }
    )
    buyers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "recency_days": [3.0, 60.0, 30.0],
            "dataos_cross_sell_score": [0.1, 0.3, 0.2],
        }
    )
    return backtest.Built(buyers, {}, recs, candidates, owned, pd.DataFrame())


def test_hits_and_scores_by_hand():
    window = backtest.Window(T, HORIZON)
    outcomes = pd.DataFrame(
        {  # A buys Meats (new) and Fish (owned); C buys Gold (new); B nothing
            "customer_id": ["A", "A", "C"],
            "category": ["Meats", "Fish", "Gold"],
        }
    )
    built = built_by_hand()
    section = backtest.opportunity_section(built, outcomes, window)
    new = section.pop("new_categories")
    assert sorted(map(tuple, new.to_numpy())) == [("A", "Meats"), ("C", "Gold")]
    assert section["new_category_buyers"] == 2 and section["base_rate"] == 0.6667
    # ours ranks A and C (the buyers) above B: AUC 1; recency puts B last too
    assert section["scores"]["ours"]["auc"] == 1.0
    assert section["scores"]["recency"]["auc"] == 1.0
    # B adopted Gold in the 90 days before T: the "same as last period" customer
    assert section["scores"]["same_as_last_period"]["auc"] == 0.0
    hits = backtest.category_section(built, new, window)
    assert hits["customers"] == 2
    # ours: A's first pick Meats hits, C's Gold is third; popularity: A's Gold and C's Fish
    # first, misses; transitions: A's Gold (9) misses, C's Meats (7) misses
    assert hits["rankers"]["ours"] == {"hit_at_1": 0.5, "hit_at_3": 1.0}
    assert hits["rankers"]["popularity"] == {"hit_at_1": 0.0, "hit_at_3": 1.0}
    assert hits["rankers"]["transitions"]["hit_at_1"] == 0.0
    # last period: B's Gold adoption makes Gold the most adopted category then
    assert hits["rankers"]["same_as_last_period"]["hit_at_1"] == 0.5
    # a ranker given from outside (an oracle): scored like the others, among the same buyers
    truth = {"Meats": 3.0, "Gold": 2.0}
    more = backtest.category_section(
        built, new, window, more_rankers=lambda rows: {
            "oracle": [rows["category"].map(truth).fillna(0.0).to_numpy(float)]
        }
    )  # fmt: skip
    assert more["customers"] == 2
    assert more["rankers"]["oracle"] == {"hit_at_1": 0.5, "hit_at_3": 1.0}
    assert {k: v for k, v in more["rankers"].items() if k != "oracle"} == hits["rankers"]


def test_decile_calibration_compares_predicted_with_observed():
    probability = np.linspace(1, 0.05, 20)
    label = (np.arange(20) < 5).astype(float)
    rows = backtest.decile_calibration(label, probability)
    assert [r["customers"] for r in rows] == [2] * 10
    assert rows[0] == {"decile": 1, "customers": 2, "predicted": 0.975, "observed": 1.0}
    assert rows[-1]["observed"] == 0.0


def test_a_horizon_must_be_a_number_of_days(capsys):
    with pytest.raises(SystemExit):
        main(["backtest", "--as-of", "2026-04-01", "--horizon", "three months"])
    assert "is not a number of days" in capsys.readouterr().err

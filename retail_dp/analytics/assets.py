"""Model fitting, the only consumer-aligned logic outside dbt: CLV and cross-sell."""

import dagster as dg
import numpy as np
import pandas as pd

from retail_dp.analytics import clv, cross_sell
from retail_dp.descriptors import DataProduct
from retail_dp.resources import ReferenceTime, Warehouse

K = dg.AssetKey.from_user_string
HORIZON_WEEKS = clv.WEEKS_PER_YEAR
MAX_TRAINING_ROWS = 500_000
# value tiers by predicted CLV among customers who have bought: top 10%, next 20%, next 30%
VALUE_TIERS = ((0.10, "platinum"), (0.30, "gold"), (0.60, "silver"), (1.01, "bronze"))


COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "marts/customer_lifetime_value": [
        ("customer_id", "VARCHAR", "The CRM's customer key; every customer in dim_customer."),
        ("historical_clv", "DOUBLE", "Total spend from the first purchase to as_of."),
        (
            "expected_purchases_365d",
            "DOUBLE",
            "BG/NBD: expected purchase days in the 365 days after as_of; null if never bought.",
        ),
        (
            "probability_alive",
            "DOUBLE",
            "BG/NBD: probability the customer is still active at as_of; null if never bought.",
        ),
        (
            "expected_avg_order_value",
            "DOUBLE",
            "Gamma-Gamma: expected spend per purchase day; null if never bought.",
        ),
        (
            "predicted_clv_365d",
            "DOUBLE",
            "expected_purchases_365d x expected_avg_order_value, undiscounted; 0 if never bought.",
        ),
        (
            "value_tier",
            "VARCHAR",
            "By predicted CLV among buyers: platinum (top 10%), gold (next 20%), "
            "silver (next 30%), bronze (the rest); prospect for customers who never bought.",
        ),
    ],
    "marts/clv_model_parameters": [
        ("r", "DOUBLE", "BG/NBD: shape of the gamma distribution of purchase rates."),
        ("alpha", "DOUBLE", "BG/NBD: scale of the gamma distribution of purchase rates (weeks)."),
        ("a", "DOUBLE", "BG/NBD: first shape of the beta distribution of dropout probability."),
        ("b", "DOUBLE", "BG/NBD: second shape of the beta distribution of dropout probability."),
        ("p", "DOUBLE", "Gamma-Gamma: shape of the gamma distribution of purchase values."),
        ("q", "DOUBLE", "Gamma-Gamma: shape of the gamma distribution of the customer scale."),
        ("gamma", "DOUBLE", "Gamma-Gamma: scale of the gamma distribution of the customer scale."),
        ("bgnbd_log_likelihood", "DOUBLE", "BG/NBD log-likelihood at the fit."),
        ("gamma_gamma_log_likelihood", "DOUBLE", "Gamma-Gamma log-likelihood at the fit."),
        ("customers", "BIGINT", "Customers with a purchase, fitted on."),
        ("repeat_customers", "BIGINT", "Customers with a repeat purchase (the Gamma-Gamma fit)."),
        ("time_unit", "VARCHAR", "weeks"),
        ("as_of", "TIMESTAMP", "The run's reference time."),
    ],
    "marts/cross_sell_recommendations": [
        ("customer_id", "VARCHAR", "The CRM's customer key; every customer in dim_customer."),
        (
            "cross_sell_opportunity_score",
            "DOUBLE",
            "Probability of buying at least one category new to the customer in the next 90 days; "
            "null for customers who never bought.",
        ),
        *[
            col
            for rank in (1, 2, 3)
            for col in (
                (
                    f"next_best_category_{rank}",
                    "VARCHAR",
                    f"The category not yet bought with the {rank}. highest probability.",
                ),
                (
                    f"next_best_category_{rank}_score",
                    "DOUBLE",
                    f"Probability of buying next_best_category_{rank} in the next 90 days.",
                ),
            )
        ],
    ],
    "marts/cross_sell_model": [
        ("kind", "VARCHAR", "coefficient or backtest."),
        ("name", "VARCHAR", "The model term, or the backtest figure (auc, auc_dataos, ...)."),
        ("value", "DOUBLE", "Its value."),
    ],
}


def _spec(product: DataProduct, key: str, description: str, deps: list[str]) -> dg.AssetSpec:
    schema = dg.TableSchema(
        columns=[dg.TableColumn(n, t, description=d) for n, t, d in COLUMNS[key]]
    )
    return dg.AssetSpec(
        key=K(key),
        description=description,
        deps=[K(d) for d in deps],
        group_name=product.name,
        owners=product.owners,
        tags={**product.dagster_tags, "layer": "marts"},
        kinds={"python", "duckdb"},
        metadata={"dagster/column_schema": schema},
    )


def _replace_table(con, table: str, frame: pd.DataFrame, select: str = "SELECT * FROM frame"):
    con.register("frame", frame)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {select}")
    finally:
        con.unregister("frame")


def build_clv_assets(product: DataProduct) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="customer_lifetime_value_model",
        specs=[
            _spec(
                product,
                "marts/customer_lifetime_value",
                "Per customer: historical CLV (total spend) and predicted CLV for the next 365 "
                "days from BG/NBD (purchases) and Gamma-Gamma (spend per purchase), with the "
                "value tier.",
                ["intermediate/int_customer_rfm", "marts/dim_customer"],
            ),
            _spec(
                product,
                "marts/clv_model_parameters",
                "The fitted BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, gamma) parameters, "
                "their log-likelihoods, the customers fitted on and as_of.",
                ["intermediate/int_customer_rfm"],
            ),
        ],
    )
    def _clv(
        context: dg.AssetExecutionContext, warehouse: Warehouse, reference_time: ReferenceTime
    ):
        as_of = reference_time.resolve(context)
        with warehouse.get_connection() as con:
            rfm = con.execute(
                "SELECT customer_id, frequency, recency_weeks, age_weeks, monetary_value, "
                "total_spend FROM intermediate.int_customer_rfm ORDER BY customer_id"
            ).df()
            x = rfm["frequency"].to_numpy(float)
            t_x = rfm["recency_weeks"].to_numpy(float)
            T = rfm["age_weeks"].to_numpy(float)
            m = rfm["monetary_value"].to_numpy(float)
            bgnbd = clv.fit_bgnbd(x, t_x, T)
            gg = clv.fit_gamma_gamma(x, np.nan_to_num(m))
            rfm["expected_purchases_365d"] = clv.expected_purchases(bgnbd, HORIZON_WEEKS, x, t_x, T)
            rfm["probability_alive"] = clv.probability_alive(bgnbd, x, t_x, T)
            rfm["expected_avg_order_value"] = clv.expected_transaction_value(gg, x, m)
            rfm["predicted_clv_365d"] = (
                rfm["expected_purchases_365d"] * rfm["expected_avg_order_value"]
            )
            tiers = " ".join(
                f"WHEN percent_rank() OVER (ORDER BY f.predicted_clv_365d DESC) < {cut} "
                f"THEN '{name}'"
                for cut, name in VALUE_TIERS
            )
            _replace_table(
                con,
                "marts.customer_lifetime_value",
                rfm,
                f"""SELECT
                    c.customer_id,
                    coalesce(f.total_spend, 0) AS historical_clv,
                    f.expected_purchases_365d,
                    f.probability_alive,
                    f.expected_avg_order_value,
                    coalesce(f.predicted_clv_365d, 0) AS predicted_clv_365d,
                    CASE WHEN f.customer_id IS NULL THEN 'prospect' ELSE CASE {tiers} END END
                        AS value_tier
                FROM marts.dim_customer c LEFT JOIN frame f USING (customer_id)
                ORDER BY c.customer_id""",
            )
            params = pd.DataFrame(
                [
                    {
                        **{k: v for k, v in bgnbd.as_dict().items() if k != "log_likelihood"},
                        **{k: v for k, v in gg.as_dict().items() if k != "log_likelihood"},
                        "bgnbd_log_likelihood": bgnbd.log_likelihood,
                        "gamma_gamma_log_likelihood": gg.log_likelihood,
                        "customers": len(rfm),
                        "repeat_customers": int((x > 0).sum()),
                        "time_unit": "weeks",
                        "as_of": as_of,
                    }
                ]
            )
            _replace_table(con, "marts.clv_model_parameters", params)
            summary = con.execute(
                "SELECT count(*), avg(predicted_clv_365d), sum(predicted_clv_365d) "
                "FROM marts.customer_lifetime_value"
            ).fetchall()[0]
        context.log.info(f"BG/NBD {bgnbd}; Gamma-Gamma {gg}")
        yield dg.MaterializeResult(
            asset_key=K("marts/customer_lifetime_value"),
            metadata={
                "dagster/row_count": summary[0],
                "mean_predicted_clv_365d": float(summary[1] or 0),
                "total_predicted_clv_365d": float(summary[2] or 0),
            },
        )
        yield dg.MaterializeResult(
            asset_key=K("marts/clv_model_parameters"),
            metadata={
                "bg_nbd": dg.MetadataValue.json(bgnbd.as_dict()),
                "gamma_gamma": dg.MetadataValue.json(gg.as_dict()),
                "customers": len(rfm),
                "as_of": as_of.isoformat(sep=" "),
            },
        )

    return _clv


def build_cross_sell_assets(product: DataProduct) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="cross_sell_model",
        specs=[
            _spec(
                product,
                "marts/cross_sell_recommendations",
                "Per customer: the probability of buying at least one category new to them in "
                "the next 90 days (cross_sell_opportunity_score) and the three next-best "
                "categories with their probabilities. Backtest AUC in the metadata.",
                [
                    "intermediate/int_cross_sell_features",
                    "intermediate/int_cross_sell_snapshots",
                    "marts/dim_customer",
                ],
            ),
            _spec(
                product,
                "marts/cross_sell_model",
                "The cross-sell model's coefficients and its out-of-time backtest next to "
                "DataOS's score: ROC AUC and precision in the top decile.",
                ["intermediate/int_cross_sell_features", "intermediate/int_cross_sell_snapshots"],
            ),
        ],
    )
    def _cross_sell(context: dg.AssetExecutionContext, warehouse: Warehouse):
        with warehouse.get_connection() as con:
            snapshots = con.execute(
                "SELECT * FROM intermediate.int_cross_sell_snapshots "
                "WHERE days_before_as_of = 90 ORDER BY customer_id"
            ).df()
            # out of time: learn from the window ending 90 days ago, test on the last 90 days
            train = cross_sell.with_activity(_snapshot(con, 180, sample=True))
            backtest = cross_sell.with_activity(_snapshot(con, 90))
            model = cross_sell.fit(train)
            ours = cross_sell.customer_scores(backtest, model.predict(backtest))
            scored = snapshots.set_index("customer_id")
            scored["ours"] = ours.reindex(scored.index).fillna(0.0)
            label = scored["bought_new_category_next_90d"].to_numpy()
            metrics = {
                "backtest_customers": int(len(scored)),
                "backtest_new_category_buyers": int(label.sum()),
                "auc": cross_sell.roc_auc(label, scored["ours"].to_numpy()),
                "auc_dataos": cross_sell.roc_auc(label, scored["dataos_cross_sell_score"]),
                "top_decile_precision": cross_sell.top_decile_precision(label, scored["ours"]),
                "top_decile_precision_dataos": cross_sell.top_decile_precision(
                    label, scored["dataos_cross_sell_score"].to_numpy()
                ),
                "base_rate": float(label.mean()) if len(label) else float("nan"),
            }
            # the model that scores today learns from the most recent complete window
            final = cross_sell.fit(_subsample(backtest))
            del backtest
            current = cross_sell.with_activity(_snapshot(con, 0))
            current["score"] = final.predict(current)
            opportunity = cross_sell.customer_scores(current, current["score"].to_numpy())
            top = (
                current.sort_values(
                    ["customer_id", "score", "category"], ascending=[True, False, True]
                )
                .groupby("customer_id")
                .head(3)
            )
            top["rank"] = top.groupby("customer_id").cumcount() + 1
            wide = top.pivot(index="customer_id", columns="rank", values=["category", "score"])
            recs = pd.DataFrame(index=opportunity.index)
            recs["cross_sell_opportunity_score"] = opportunity
            for rank in (1, 2, 3):
                recs[f"next_best_category_{rank}"] = wide.get(("category", rank))
                recs[f"next_best_category_{rank}_score"] = wide.get(("score", rank))
            recs = recs.reset_index()
            _replace_table(
                con,
                "marts.cross_sell_recommendations",
                recs,
                """SELECT c.customer_id, f.* EXCLUDE (customer_id)
                FROM marts.dim_customer c LEFT JOIN frame f USING (customer_id)
                ORDER BY c.customer_id""",
            )
            model_table = pd.DataFrame(
                [
                    {"kind": "coefficient", "name": r["term"], "value": r["coefficient"]}
                    for r in final.as_records()
                ]
                + [{"kind": "backtest", "name": k, "value": float(v)} for k, v in metrics.items()]
            )
            _replace_table(con, "marts.cross_sell_model", model_table)
            row_count = con.execute(
                "SELECT count(*) FROM marts.cross_sell_recommendations"
            ).fetchall()[0][0]
        context.log.info(f"cross-sell backtest: {metrics}")
        yield dg.MaterializeResult(
            asset_key=K("marts/cross_sell_recommendations"),
            metadata={"dagster/row_count": row_count, **metrics},
        )
        yield dg.MaterializeResult(
            asset_key=K("marts/cross_sell_model"),
            metadata={
                **metrics,
                "training_rows": model.training_rows,
                "coefficients": dg.MetadataValue.json(final.as_records()),
            },
        )

    return _cross_sell


def _snapshot(con, days_before_as_of: int, sample: bool = False) -> pd.DataFrame:
    """One snapshot's feature rows; with `sample`, at most MAX_TRAINING_ROWS of them, the
    same ones for the same data."""
    order = (
        f"ORDER BY hash(customer_id, category) LIMIT {MAX_TRAINING_ROWS}"
        if sample
        else "ORDER BY customer_id, category"
    )
    return con.execute(
        f"SELECT * EXCLUDE (days_before_as_of) FROM intermediate.int_cross_sell_features "
        f"WHERE days_before_as_of = ? {order}",
        [days_before_as_of],
    ).df()


def _subsample(rows: pd.DataFrame) -> pd.DataFrame:
    if len(rows) <= MAX_TRAINING_ROWS:
        return rows
    return rows.sample(n=MAX_TRAINING_ROWS, random_state=0)

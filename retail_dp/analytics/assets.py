"""Model fitting, the only consumer-aligned logic outside dbt: CLV and cross-sell."""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import dagster as dg
import numpy as np
import pandas as pd

from retail_dp.analytics import clv, cross_sell
from retail_dp.analytics.fits import load_fit, save_fit
from retail_dp.descriptors import DataProduct
from retail_dp.resources import FITTED_MODELS, ReferenceTime, RefreshMode, Warehouse
from retail_dp.transform.marts import Mart

K = dg.AssetKey.from_user_string
CLV_FIT, CROSS_SELL_FIT = FITTED_MODELS
HORIZON_WEEKS = clv.WEEKS_PER_YEAR
# 1M rows: within 1% of a fit on every row at 1M customers (0.36-0.75% over three draws,
# where 500,000 gave 1.16-1.49%)
MAX_TRAINING_ROWS = 1_000_000
# rows scored at a time: 64 DuckDB vectors of 2,048 rows
SCORING_CHUNK_VECTORS = 64
# the fits' DuckDB gets half the warehouse's memory limit, their frames the other half: with
# all of it, DuckDB's buffers and 5M customers' frames peaked at 4.9 GB (3.3 GB now)
FIT_DUCKDB_SHARE = 0.5
# the training sample: the rows with the smallest md5 of this key, the same on any engine
SAMPLE_KEY_SQL = "md5(customer_id || '|' || category)"
# the refit's backtest scores at most this many of the snapshot's customers, those with the
# smallest md5 of customer_id: AUC's standard error on 250,000 customers is about 0.002, and
# scoring all 830,000 of the 1M-customer shop's cost each refit about 4 s
MAX_BACKTEST_CUSTOMERS = 250_000


def _columns(marts: list[Mart], asset: str) -> list[tuple[str, str, str]]:
    """A fitted mart's (column, declared type, description), from its dbt YAML (the `fitted`
    source): the one declaration of what the fits write."""
    mart = next((m for m in marts if m.fitted and m.asset == asset), None)
    if mart is None:
        raise ValueError(f"{asset} is not declared in the dbt source 'fitted'")
    return [(c, t, mart.descriptions[c]) for c, t in mart.columns.items()]


def _spec(
    product: DataProduct, columns: list[tuple[str, str, str]], key: str, description: str, deps
) -> dg.AssetSpec:
    schema = dg.TableSchema(columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns])
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


def build_clv_assets(product: DataProduct, marts: list[Mart]) -> dg.AssetsDefinition:
    clv_columns = _columns(marts, "marts/customer_lifetime_value")
    parameter_columns = _columns(marts, "marts/clv_model_parameters")

    @dg.multi_asset(
        name="customer_lifetime_value_model",
        specs=[
            _spec(
                product,
                clv_columns,
                "marts/customer_lifetime_value",
                "Per customer: historical CLV (total spend) and predicted CLV for the next 365 "
                "days from BG/NBD or MBG/NBD (purchases) and Gamma-Gamma (spend per purchase), "
                "with the value tier.",
                ["intermediate/int_customer_rfm", "marts/dim_customer"],
            ),
            _spec(
                product,
                parameter_columns,
                "marts/clv_model_parameters",
                "The purchase model chosen by held-out log-likelihood (BG/NBD or MBG/NBD) with "
                "its r, alpha, a, b, the Gamma-Gamma p, q, gamma, their log-likelihoods, the "
                "customers fitted on and as_of; the spend model chosen on the purchases after "
                "a cutoff (Gamma-Gamma, or shrunk towards the pooled order value) in the "
                "metadata.",
                ["intermediate/int_customer_rfm"],
            ),
        ],
    )
    def _clv(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        reference_time: ReferenceTime,
        refresh_mode: RefreshMode,
    ):
        as_of = reference_time.resolve(context)
        with warehouse.get_connection(memory_share=FIT_DUCKDB_SHARE) as con:
            refit, why = refresh_mode.refit_due(con, as_of, product.refresh.refit_every_days)
            # sorted, so every sum runs in the same order; rounded, because DuckDB's parallel
            # float sums upstream differ in the last bit from run to run
            rfm = con.execute(
                "SELECT customer_id, frequency, round(recency_weeks, 9) AS recency_weeks, "
                "round(age_weeks, 9) AS age_weeks, round(monetary_value, 6) AS monetary_value, "
                f"round(total_spend, 6) AS total_spend, {clv.HOLDOUT_SQL} AS holdout, "
                f"{clv.DRAW_SQL} AS draw "
                "FROM intermediate.int_customer_rfm ORDER BY customer_id"
            ).df()
            if refit:
                fitted = _fit_clv(con, rfm, as_of)
                fitted_as_of = as_of
                save_fit(
                    con, CLV_FIT, as_of, context.run_id, fitted, fitted["parameters"]["fit_status"]
                )
            else:
                # between refits: every customer re-scored at this as_of with the last fit
                fitted_as_of, fitted = load_fit(con, CLV_FIT)
            choice, gg, spend, row = (
                fitted[k] for k in ("choice", "gamma_gamma", "spend", "parameters")
            )
            bgnbd = choice.chosen
            rfm = clv.predict_customers(
                rfm.drop(columns=["holdout", "draw"]), bgnbd, gg, HORIZON_WEEKS
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
                    coalesce(f.value_tier, '{clv.PROSPECT}') AS value_tier
                FROM marts.dim_customer c LEFT JOIN frame f USING (customer_id)
                ORDER BY c.customer_id""",
            )
            if refit:
                columns = parameter_columns
                params = pd.DataFrame([row])[[n for n, _, _ in columns]]
                # a parameter with no value is a NULL DOUBLE, never an untyped NULL
                params = params.astype({n: float for n, t, _ in columns if t == "DOUBLE"})
                _replace_table(con, "marts.clv_model_parameters", params)
            summary = con.execute(
                "SELECT count(*), avg(predicted_clv_365d), sum(predicted_clv_365d) "
                "FROM marts.customer_lifetime_value"
            ).fetchall()[0]
        fits = {"bg_nbd_fit": bgnbd.report, "gamma_gamma_fit": gg.report}
        context.log.info(
            f"{'refitted' if refit else 're-scored'} ({why}): {choice.as_metadata()}: {bgnbd}; "
            f"Gamma-Gamma {gg}; {spend}"
        )
        if row["fit_status"] != "ok":
            context.log.warning(f"CLV fit {row['fit_status']}: {row['fit_notes']}")
        cadence = {
            "refit": refit,
            "refit_reason": why,
            "fitted_as_of": fitted_as_of.isoformat(sep=" "),
        }
        yield dg.MaterializeResult(
            asset_key=K("marts/customer_lifetime_value"),
            metadata={
                "dagster/row_count": summary[0],
                "mean_predicted_clv_365d": float(summary[1] or 0),
                "total_predicted_clv_365d": float(summary[2] or 0),
                "buyers": len(rfm),
                "fit_status": row["fit_status"],
                "expected_avg_order_value_fallback": gg.fallback_value is not None,
                "spend_model": spend.chosen,
                **cadence,
            },
        )
        yield dg.MaterializeResult(
            asset_key=K("marts/clv_model_parameters"),
            metadata={
                "bg_nbd": dg.MetadataValue.json(_finite(bgnbd.as_dict())),
                "purchase_model": bgnbd.model,
                "purchase_model_choice": dg.MetadataValue.json(choice.as_metadata()),
                "spend_model": spend.chosen,
                "spend_model_choice": dg.MetadataValue.json(
                    {**spend.as_metadata(), "prior_mean": gg.prior_mean}
                ),
                "gamma_gamma": dg.MetadataValue.json(_finite(gg.as_dict())),
                **{k: dg.MetadataValue.json(r.as_metadata()) for k, r in fits.items() if r},
                "fit_status": row["fit_status"],
                "converged": row["converged"],
                "repeat_share": row["repeat_share"],
                "fit_notes": row["fit_notes"] or "none",
                "customers": len(rfm),
                "as_of": fitted_as_of.isoformat(sep=" "),
                **cadence,
            },
        )

    def _finite(values: dict[str, float]) -> dict[str, float | None]:
        return {k: v if np.isfinite(v) else None for k, v in values.items()}

    return _clv


def _fit_clv(con, rfm: pd.DataFrame, as_of) -> dict:
    """Fit the purchase model (BG/NBD or MBG/NBD by held-out log-likelihood) and the spend
    model (Gamma-Gamma, plain or shrunk to the pooled value, by a spend holdout): what scoring
    needs, and the parameters row of marts.clv_model_parameters."""
    x = rfm["frequency"].to_numpy(float)
    choice = clv.choose_purchase_model(
        x, rfm["recency_weeks"], rfm["age_weeks"], rfm["holdout"], rfm["draw"].to_numpy()
    )
    fallback = clv.pooled_order_value(rfm["total_spend"].to_numpy(float), x)
    spend = clv.choose_spend_model(**clv.spend_holdout(con, as_of))
    prior = fallback if spend.chosen == "pooled_shrinkage" else None
    gg = clv.fit_gamma_gamma(x, rfm["monetary_value"], fallback, prior_mean=prior)
    row = {**clv.parameters_row(choice.chosen, gg, x, choice), "as_of": as_of}
    return {"choice": choice, "gamma_gamma": gg, "spend": spend, "parameters": row}


def build_cross_sell_assets(product: DataProduct, marts: list[Mart]) -> dg.AssetsDefinition:
    recommendation_columns = _columns(marts, "marts/cross_sell_recommendations")
    model_columns = _columns(marts, "marts/cross_sell_model")

    @dg.multi_asset(
        name="cross_sell_model",
        specs=[
            _spec(
                product,
                recommendation_columns,
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
                model_columns,
                "marts/cross_sell_model",
                "The cross-sell model's coefficients and its out-of-time backtest next to "
                "DataOS's score: ROC AUC and precision in the top decile.",
                ["intermediate/int_cross_sell_features", "intermediate/int_cross_sell_snapshots"],
            ),
        ],
    )
    def _cross_sell(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        reference_time: ReferenceTime,
        refresh_mode: RefreshMode,
    ):
        as_of = reference_time.resolve(context)
        with warehouse.get_connection(memory_share=FIT_DUCKDB_SHARE) as con:
            refit, why = refresh_mode.refit_due(con, as_of, product.refresh.refit_every_days)
            if refit:
                fitted = _fit_cross_sell(con, model_columns)
                fitted_as_of = as_of
                _replace_table(con, "marts.cross_sell_model", fitted.pop("model_table"))
                current_activity = fitted.pop("current_activity")
                save_fit(
                    con,
                    CROSS_SELL_FIT,
                    as_of,
                    context.run_id,
                    fitted,
                    fitted["metadata"]["fit_status"],
                )
            else:
                # between refits: every customer re-scored at this as_of with the last fit
                fitted_as_of, fitted = load_fit(con, CROSS_SELL_FIT)
                current_activity = cross_sell.activity(
                    _customers(con, 0), fitted=fitted["activity_model"]
                )[0]
            scorer, ranking = fitted["scorer"], fitted["ranking"]
            _publish_recommendations(
                con, scorer, current_activity, ranking.chosen, recommendation_columns
            )
            row_count = con.execute(
                "SELECT count(*) FROM marts.cross_sell_recommendations"
            ).fetchall()[0][0]
        metadata = {
            **fitted["metadata"],
            "refit": refit,
            "refit_reason": why,
            "fitted_as_of": fitted_as_of.isoformat(sep=" "),
        }
        context.log.info(
            f"cross-sell {'refitted' if refit else 're-scored'} ({why}); "
            f"backtest: {fitted['metrics']}"
        )
        for report in fitted["reports"]:
            if report.fit_status != "ok":
                context.log.warning(f"cross-sell fit {report.fit_status}: {report.reasons}")
        yield dg.MaterializeResult(
            asset_key=K("marts/cross_sell_recommendations"),
            metadata={"dagster/row_count": row_count, **metadata},
        )
        yield dg.MaterializeResult(
            asset_key=K("marts/cross_sell_model"),
            metadata={
                **metadata,
                "training_rows": fitted["training_rows"],
                "coefficients": dg.MetadataValue.json(scorer.as_records()),
            },
        )

    return _cross_sell


def _fit_cross_sell(con, model_columns) -> dict:
    """Fit the cross-sell model: out of time, learn from the window ending 90 days ago and
    test on the last 90 days (the backtest, the calibration and the ranking choice); then the
    model that scores today learns from the most recent complete window. Returns what scoring
    needs (saved between refits), the marts.cross_sell_model table and the metadata."""
    (snapshot_rows,) = con.execute(
        "SELECT count(*) FROM intermediate.int_cross_sell_snapshots WHERE days_before_as_of = 90"
    ).fetchone()
    if not snapshot_rows:
        raise dg.Failure(
            "cross-sell refit: intermediate.int_cross_sell_snapshots has no snapshot 90 days "
            "before as_of; the dbt models were built for a run that does not refit "
            "(materialize them in the same run as the model)"
        )
    # each snapshot's customer frame is dropped once read for the last time: at 5M customers
    # each holds 4M of them
    activity, activity_models = _activity(con)
    # the model that scores today learns on the other core while the backtest's model learns
    # and scores (numpy and DuckDB release the GIL; each fit's arithmetic is unchanged). No
    # name holds a sample: each is freed when its fit returns, so the two samples (240 MB
    # each at 1M customers) and the two fits' matrices are seldom in memory at once
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-sell-fit") as pool:
        final_job = pool.submit(cross_sell.fit, _training_sample(con, 90, activity[90]))
        model, model_fit = cross_sell.fit(_training_sample(con, 180, activity.pop(180)))
        snapshots, sampled_from = _backtest_customers(con)
        backtest_activity, sampled = activity.pop(90), len(snapshots) < sampled_from
        if sampled:
            drawn = backtest_activity["customer_id"].isin(snapshots["customer_id"])
            backtest_activity = backtest_activity[drawn.to_numpy()]
        # without the recommended categories, which the backtest does not read
        scored = pd.concat(
            [
                part.drop(columns=list(cross_sell.RECOMMENDED))
                for part in _scored_chunks(
                    con,
                    90,
                    model,
                    backtest_activity,
                    "bought_next_90d",
                    only_these_customers=sampled,
                )
            ],
            ignore_index=True,
        )
        final, final_fit = final_job.result()
    metrics, undefined = cross_sell.backtest(snapshots, scored)
    metrics["backtest_sampled_from"] = sampled_from
    calibration = _calibration(model, final, scored)
    scorer = cross_sell.Calibrated(final, calibration)
    ranking = cross_sell.choose_ranking(metrics)
    model_table = pd.DataFrame(
        [
            {"kind": "coefficient", "name": r["term"], "value": r["coefficient"]}
            for r in final.as_records()
        ]
        + [
            {"kind": "backtest", "name": k, "value": v, "detail": undefined.get(k)}
            for k, v in metrics.items()
        ]
        + cross_sell.fit_rows("fit", final_fit, final)
        + cross_sell.fit_rows("backtest_fit", model_fit, model)
        + calibration.as_rows()
        + ranking.as_rows(),
        columns=[n for n, _, _ in model_columns],
    ).astype({"value": float})
    train_activity, backtest_activity, current_activity = (
        activity_models[d].report for d in (180, 90, 0)
    )
    metadata = {
        **{k: v for k, v in metrics.items() if v is not None},
        "fit_status": final_fit.fit_status,
        "backtest_fit_status": model_fit.fit_status,
        "fit": dg.MetadataValue.json(final_fit.as_metadata()),
        "backtest_fit": dg.MetadataValue.json(model_fit.as_metadata()),
        "activity_fits": dg.MetadataValue.json(
            {
                "days_before_as_of_180": train_activity.as_metadata(),
                "days_before_as_of_90": backtest_activity.as_metadata(),
                "days_before_as_of_0": current_activity.as_metadata(),
            }
        ),
        "calibration": dg.MetadataValue.json(calibration.as_metadata()),
        "ranking": ranking.chosen,
        "ranking_choice": dg.MetadataValue.json(ranking.as_metadata()),
        **({"undefined": dg.MetadataValue.json(undefined)} if undefined else {}),
    }
    return {
        "scorer": scorer,
        "ranking": ranking,
        "activity_model": activity_models[0],
        "metrics": metrics,
        "reports": [final_fit, model_fit],
        "training_rows": model.training_rows,
        "metadata": metadata,
        "model_table": model_table,
        "current_activity": activity.pop(0),
    }


def _calibration(
    backtest_model: cross_sell.Scorer, final: cross_sell.Scorer, scored: pd.DataFrame
) -> cross_sell.Calibration:
    """The scores' calibration, measured on the snapshot 90 days before as_of: the model that
    learnt one window earlier (the backtest's), on customers it never saw, against what they
    did by as_of; the model that scores today stands in the same relation to today's
    snapshot. The identity, saying why, when either model is the popularity baseline."""
    if not all(isinstance(m, cross_sell.CrossSellModel) for m in (backtest_model, final)):
        return cross_sell.Calibration(detail="no logistic model to calibrate (baseline)")
    return cross_sell.fit_calibration(
        scored["cross_sell_opportunity_score"].to_numpy(float),
        scored["new_category_buyer"].to_numpy(float),
    )


def _activity(con) -> tuple[dict[int, pd.DataFrame], dict[int, clv.BgNbd]]:
    """Each snapshot's activity features and BG/NBD fit, by days before as_of; each fit
    starts from the previous snapshot's."""
    frames, models, previous = {}, {}, None
    for days in (180, 90, 0):
        frames[days], models[days] = cross_sell.activity(_customers(con, days), start=previous)
        previous = models[days]
    return frames, models


def _backtest_customers(con) -> tuple[pd.DataFrame, int]:
    """What the backtest reads of the snapshot 90 days before as_of, no more: its customers,
    at most MAX_BACKTEST_CUSTOMERS of them (the smallest md5 of customer_id, the same ones
    for the same data on any engine), in customer order; and how many it has in all."""
    ((customers,),) = con.execute(
        "SELECT count(*) FROM intermediate.int_cross_sell_snapshots WHERE days_before_as_of = 90"
    ).fetchall()
    snapshots = con.execute(
        """SELECT * FROM (
            SELECT customer_id, dataos_cross_sell_score, bought_new_category_next_90d
            FROM intermediate.int_cross_sell_snapshots WHERE days_before_as_of = 90
            ORDER BY md5(customer_id), customer_id LIMIT ?
        ) ORDER BY customer_id""",
        [MAX_BACKTEST_CUSTOMERS],
    ).df()
    return snapshots, int(customers)


def _customers(con, days_before_as_of: int) -> pd.DataFrame:
    """The BG/NBD summary of every customer with a candidate row at the snapshot."""
    return con.execute(
        "SELECT DISTINCT customer_id, frequency, round(recency_weeks, 9) AS recency_weeks, "
        "round(age_weeks, 9) AS age_weeks FROM intermediate.int_cross_sell_features "
        "WHERE days_before_as_of = ? ORDER BY customer_id",
        [days_before_as_of],
    ).df()


@contextmanager
def _activity_view(con, activity: pd.DataFrame):
    """`activity` (one row per customer, `cross_sell.activity`) as the view
    `_customer_activity`, for the queries that give each candidate row its customer's activity
    (`LEFT JOIN _customer_activity a USING (customer_id)`), with the customer's code: their
    position in `activity`, which is in customer_id order."""
    con.register("_customer_activity", activity.assign(customer_code=np.arange(len(activity))))
    try:
        yield
    finally:
        con.unregister("_customer_activity")


@contextmanager
def _category_codes(con, days_before_as_of: int):
    """The snapshot's candidate categories in name order, registered with their codes (0,
    1, ...) as `_category_codes` (category, category_code) for the query to join."""
    categories = np.asarray(
        [
            name
            for (name,) in con.execute(
                "SELECT DISTINCT category FROM intermediate.int_cross_sell_features "
                "WHERE days_before_as_of = ? ORDER BY category",
                [days_before_as_of],
            ).fetchall()
        ],
        dtype=object,
    )
    codes = pd.DataFrame({"category": categories, "category_code": np.arange(len(categories))})
    con.register("_category_codes", codes)
    try:
        yield categories
    finally:
        con.unregister("_category_codes")


# what the logistic fit does not read (cross_sell.fit: the features' inputs, the label, the
# weight, frequency for the repeat share, the customer's and category's codes for the order)
SAMPLE_UNUSED = (
    "customer_id",
    "category",
    "days_before_as_of",
    "spend",
    "recency_weeks",
    "age_weeks",
    "next_adoptions_after_last",
)


def _training_sample(con, days_before_as_of: int, activity: pd.DataFrame) -> pd.DataFrame:
    """A bounded sample of one snapshot's labelled rows, stratified by the label: every
    buyer's row up to half of MAX_TRAINING_ROWS, non-buyers' rows to fill the rest, each
    stratum's rows those with the smallest md5 of customer_id|category (the same ones for the
    same data on any engine), weighted by the inverse of their stratum's sampling rate. The
    rows name their customer and category by code (`_activity_view`, `_category_codes`), in
    that order: a million rows' two strings made Python objects cost a second."""
    counts = dict(
        con.execute(
            "SELECT coalesce(bought_next_90d, 0), count(*) "
            "FROM intermediate.int_cross_sell_features WHERE days_before_as_of = ? GROUP BY 1",
            [days_before_as_of],
        ).fetchall()
    )
    positives, negatives = counts.get(1, 0), counts.get(0, 0)
    quota = {1: min(positives, MAX_TRAINING_ROWS // 2)}
    quota[0] = min(negatives, MAX_TRAINING_ROWS - quota[1])
    # the draw ranks the keys alone, then fetches the drawn rows' columns (sorting every row
    # with all its columns cost twice as much at 1M customers); one top-N per stratum, which
    # DuckDB keeps in a heap, where a window over the stratum sorted all of it (2.8 s -> 1.6 s)
    stratum = "coalesce(bought_next_90d, 0)"
    draw = " UNION ALL ".join(
        f"""(SELECT customer_id, category, {label} AS stratum
            FROM intermediate.int_cross_sell_features
            WHERE days_before_as_of = ? AND {stratum} = {label}
            ORDER BY {SAMPLE_KEY_SQL}, customer_id, category LIMIT ?)"""
        for label in (1, 0)
    )
    with _activity_view(con, activity), _category_codes(con, days_before_as_of):
        return con.execute(
            f"""WITH drawn AS ({draw})
        SELECT f.* EXCLUDE ({", ".join(SAMPLE_UNUSED)}),
            CASE d.stratum WHEN 1 THEN ?::DOUBLE / ? ELSE ?::DOUBLE / ? END AS sample_weight,
            a.* EXCLUDE (customer_id), c.category_code
        FROM intermediate.int_cross_sell_features f
        JOIN drawn d USING (customer_id, category)
        JOIN _category_codes c USING (category)
        LEFT JOIN _customer_activity a USING (customer_id)
        WHERE f.days_before_as_of = ?
        ORDER BY a.customer_code, c.category_code""",
            [
                days_before_as_of,
                quota[1],
                days_before_as_of,
                quota[0],
                positives,
                max(quota[1], 1),
                negatives,
                max(quota[0], 1),
                days_before_as_of,
            ],
        ).df()


def _scored_chunks(
    con,
    days_before_as_of: int,
    scorer,
    activity: pd.DataFrame,
    label: str | None = None,
    ranking: str = "model",
    only_these_customers: bool = False,
) -> Iterator[pd.DataFrame]:
    """Every customer of one snapshot scored in bounded chunks of whole customers (a
    customer's rows are never split), each row with its customer's `activity` (joined in the
    same scan): `cross_sell.score_customers` per chunk, in customer order; at least one
    (empty) frame. `only_these_customers`: `activity` holds some of the snapshot's customers
    (a sample), and only theirs are scored; otherwise a row whose customer it lacks fails."""
    # `activity` holds one row per customer of the snapshot, in customer_id order: its
    # position is the customer's code, and the categories are coded in name order. The rows
    # come with the two codes instead of the two strings, which pandas would make a Python
    # object of each (a third of the time, holding the GIL the scoring needs)
    ids = pd.Index(activity["customer_id"], name="customer_id")
    # not the BG/NBD summary (`activity` carries what scoring takes from it) nor the spend:
    # fewer columns to convert
    with _activity_view(con, activity), _category_codes(con, days_before_as_of) as categories:
        result = con.execute(
            "SELECT f.* EXCLUDE (days_before_as_of, customer_id, category, spend, frequency, "
            "recency_weeks, age_weeks), c.category_code, a.* EXCLUDE (customer_id) "
            "FROM intermediate.int_cross_sell_features f "
            "JOIN _category_codes c USING (category) "
            f"{'' if only_these_customers else 'LEFT '}JOIN _customer_activity a "
            "USING (customer_id) "
            "WHERE f.days_before_as_of = ? ORDER BY a.customer_code, c.category_code",
            [days_before_as_of],
        )
        carry, yielded = None, False
        for chunk in _prefetched(lambda: result.fetch_df_chunk(SCORING_CHUNK_VECTORS)):
            done = chunk.empty
            if carry is not None:
                chunk = pd.concat([carry, chunk], ignore_index=True)
            if chunk["customer_code"].isna().any():
                raise dg.Failure(
                    f"cross-sell scoring: a row of the snapshot {days_before_as_of} days "
                    "before as_of has a customer without activity features"
                )
            customer = chunk["customer_code"].to_numpy(np.int64)
            # the last customer's rows may continue in the next chunk: keep them for it
            others = np.flatnonzero(customer != customer[-1]) if len(customer) else customer
            cut = len(chunk) if done else (int(others[-1]) + 1 if len(others) else 0)
            carry = chunk.iloc[cut:]
            rows = chunk.iloc[:cut]
            if cut or (done and not yielded):
                yielded = True
                codes = cross_sell.RowCodes(
                    cross_sell.Customers.of_codes(customer[:cut], ids),
                    rows["category_code"].to_numpy(np.int64),
                    categories,
                )
                yield cross_sell.score_customers(rows, scorer.predict(rows), label, ranking, codes)


def _publish_recommendations(
    con, scorer, activity: pd.DataFrame, ranking: str, columns: list[tuple[str, str, str]]
) -> None:
    """marts.cross_sell_recommendations, one row per customer of marts.dim_customer, from the
    snapshot at as_of: each scored chunk goes to a temporary table as it comes, never every
    customer's scores in memory at once. A buyer with no candidate row has bought every
    category: opportunity 0, no next-best category. A customer who never bought: no score."""
    names = [n for n, _, _ in columns]
    writer = con.cursor()  # its own connection: `con` is streaming the snapshot's rows
    try:
        for number, part in enumerate(_scored_chunks(con, 0, scorer, activity, ranking=ranking)):
            writer.register("part", part[names])
            statement = "INSERT INTO _scored" if number else "CREATE TEMP TABLE _scored AS"
            writer.execute(f"{statement} SELECT * FROM part")
            writer.unregister("part")
        # a scored customer keeps their score as it is: a missing one stays NULL, for the
        # scores_defined check to fail on, never a silent 0
        scores = ", ".join(
            f"CASE WHEN s.customer_id IS NOT NULL THEN s.{n} "
            f"WHEN b.customer_id IS NOT NULL THEN 0.0 END AS {n}"
            if n == "cross_sell_opportunity_score"
            else f"s.{n}"
            for n in names[1:]
        )
        writer.execute(
            f"""CREATE OR REPLACE TABLE marts.cross_sell_recommendations AS
            WITH buyers AS (
                SELECT customer_id FROM intermediate.int_customer_rfm UNION
                SELECT customer_id FROM intermediate.int_cross_sell_snapshots
                WHERE days_before_as_of = 0
            )
            SELECT c.customer_id, {scores}
            FROM marts.dim_customer c
            LEFT JOIN _scored s USING (customer_id)
            LEFT JOIN buyers b USING (customer_id)
            ORDER BY c.customer_id"""
        )
    finally:
        writer.close()


def _prefetched(fetch: Callable[[], pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """`fetch()`'s frames up to and including the first empty one, the next one fetched on
    another thread while the caller works on the current one (DuckDB converts a chunk while
    numpy scores the one before)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch") as pool:
        pending = pool.submit(fetch)
        while True:
            chunk = pending.result()
            if chunk.empty:
                yield chunk
                return
            pending = pool.submit(fetch)
            yield chunk

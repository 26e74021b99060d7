"""`retail-dp backtest`: the product as built at T, set against what really happened in
(T, T + horizon] and against simple baselines computed in the same run.

The product is built at T from the full landing zone (ingestion defers every row dated after
T). What happened next is read from the same landing files through the same contracts, at
T + horizon, so a quarantined line counts in neither. Every figure is over the customers who
had bought by T:

- opportunity score (P(buys a category new to them)): ROC AUC, top-decile lift and decile
  calibration, against recency, "same as last period" (adopted a category in (T - h, T]),
  popularity (1 - prod(1 - share of buyers owning it) over the categories not yet bought) and
  DataOS's score;
- next-best category: hit@1 and hit@3 among the customers who bought a new category,
  against popularity, the plain count of transitions from the last adopted category, and
  "same as last period" (the categories most adopted in (T - h, T]);
- CLV: predicted against actual purchase days and spend, in total and by decile of predicted
  spend, with Spearman correlation, against "same as last period"; P(alive) of one-time
  buyers against the share of them who bought again; each value tier's share of the spend.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from retail_dp.analytics import clv, cross_sell
from retail_dp.descriptors import Catalog, LandingInput
from retail_dp.sources.contracts import build_contracts
from retail_dp.sources.ingest import load_source

DECILES = 10
FIGURE_DECIMALS = 4


@dataclass(frozen=True)
class Window:
    as_of: datetime
    horizon_days: int

    @property
    def end(self) -> datetime:
        return self.as_of + timedelta(days=self.horizon_days)

    @property
    def start_of_last_period(self) -> datetime:
        return self.as_of - timedelta(days=self.horizon_days)


# --- what happened -------------------------------------------------------------------------


def read_outcomes(data_dir: Path, descriptors_dir: Path, window: Window) -> pd.DataFrame:
    """Purchase lines dated in (T, T + horizon], accepted by the landing contracts at
    T + horizon: customer_id, category, purchase_date, amount."""
    catalog = Catalog.load(descriptors_dir)
    with tempfile.TemporaryDirectory(prefix="retail_dp_backtest_") as spill:
        con = duckdb.connect()
        try:
            con.execute(f"SET temp_directory = '{spill}'")
            con.execute("SET enable_progress_bar = false")
            for name, contract in build_contracts(catalog).items():
                landing = next(i for i in catalog[name].inputs if isinstance(i, LandingInput))
                load_source(con, contract, data_dir, landing.location, window.end)
            return con.execute(
                """SELECT p.customer_id, pr.product_category AS category,
                    CAST(p.purchase_ts AS DATE) AS purchase_date,
                    p.quantity * p.unit_price AS amount
                FROM sources.purchase p JOIN sources.product pr USING (product_id)
                WHERE p.purchase_ts > ? AND p.purchase_ts <= ?
                ORDER BY 1, 3, 2""",
                [window.as_of, window.end],
            ).df()
        finally:
            con.close()


# --- what the product said at T ---------------------------------------------------------------


@dataclass
class Built:
    buyers: pd.DataFrame  # one row per buyer at T: the CLV inputs and outputs, recency
    parameters: dict
    recommendations: pd.DataFrame
    candidates: pd.DataFrame  # int_cross_sell_features at T
    owned: pd.DataFrame  # (customer_id, category, adopted_on) at T
    last_period: pd.DataFrame  # per customer: purchase days and spend in (T - h, T]
    # marts.cross_sell_model's kind "calibration": name -> (value, detail)
    calibration: dict[str, tuple[float | None, str | None]] = field(default_factory=dict)
    spend_model: clv.SpendChoice | None = None  # the CLV fit's choice, made again at T
    # marts.cross_sell_model's kind "ranking": name -> (value, detail)
    ranking: dict[str, tuple[float | None, str | None]] = field(default_factory=dict)


def read_built(con: duckdb.DuckDBPyConnection, window: Window) -> Built:
    buyers = con.execute(
        """SELECT r.customer_id, r.frequency, r.recency_weeks, r.age_weeks, r.total_spend,
            v.expected_avg_order_value, v.probability_alive, v.value_tier,
            m.recency_days, s.dataos_cross_sell_score
        FROM intermediate.int_customer_rfm r
        JOIN marts.customer_lifetime_value v USING (customer_id)
        JOIN marts.customer_purchase_metrics m USING (customer_id)
        LEFT JOIN intermediate.int_cross_sell_snapshots s
            ON s.customer_id = r.customer_id AND s.days_before_as_of = 0
        ORDER BY r.customer_id"""
    ).df()
    parameters = con.execute("SELECT * FROM marts.clv_model_parameters").df().iloc[0].to_dict()
    recs = con.execute(
        "SELECT * FROM marts.cross_sell_recommendations "
        "WHERE customer_id IN (SELECT customer_id FROM intermediate.int_customer_rfm)"
    ).df()
    candidates = con.execute(
        "SELECT customer_id, category, category_support, next_adoptions_after_last "
        "FROM intermediate.int_cross_sell_features WHERE days_before_as_of = 0 "
        "ORDER BY customer_id, category"
    ).df()
    owned = con.execute(
        "SELECT customer_id, category, min(purchase_date) AS adopted_on "
        "FROM marts.fct_purchase GROUP BY 1, 2 ORDER BY 1, 2"
    ).df()
    last_period = con.execute(
        """SELECT customer_id, count(DISTINCT purchase_date) AS purchases, sum(amount) AS spend
        FROM marts.fct_purchase WHERE purchase_ts > ? GROUP BY 1""",
        [window.start_of_last_period],
    ).df()
    calibration, ranking = (
        {
            name: (value, detail)
            for name, value, detail in con.execute(
                "SELECT name, value, detail FROM marts.cross_sell_model WHERE kind = ?", [kind]
            ).fetchall()
        }
        for kind in ("calibration", "ranking")
    )
    # deterministic: the same warehouse and as_of give the choice the CLV fit made
    spend = clv.choose_spend_model(**clv.spend_holdout(con, window.as_of))
    return Built(
        buyers, parameters, recs, candidates, owned, last_period, calibration, spend, ranking
    )


# --- figures ---------------------------------------------------------------------------------


def _round(value):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return round(float(value), FIGURE_DECIMALS)


def ranking_figures(label: np.ndarray, score: np.ndarray) -> dict:
    return {
        "auc": _round(cross_sell.roc_auc(label, score)),
        "top_decile_lift": _round(cross_sell.top_decile_lift(label, score)),
    }


def deciles(by: np.ndarray, means: dict[str, np.ndarray]) -> list[dict]:
    """Customers in deciles of `by` (highest first), with the mean of each named column."""
    order = np.argsort(-by, kind="stable")
    return [
        {
            "decile": i,
            "customers": len(part),
            **{name: _round(values[part].mean()) for name, values in means.items()},
        }
        for i, part in enumerate(np.array_split(order, DECILES), start=1)
        if len(part)
    ]


def decile_calibration(label: np.ndarray, probability: np.ndarray) -> list[dict]:
    """Customers in deciles of the predicted probability (highest first): mean predicted
    against the observed rate."""
    return deciles(probability, {"predicted": probability, "observed": label})


def opportunity_section(built: Built, outcomes: pd.DataFrame, window: Window) -> dict:
    """Who bought a category new to them in the horizon, ranked by each score."""
    buyers = built.buyers.set_index("customer_id")
    owned_pairs = set(zip(built.owned["customer_id"], built.owned["category"], strict=True))
    bought = outcomes[["customer_id", "category"]].drop_duplicates()
    new = bought[[(c, k) not in owned_pairs for c, k in bought.itertuples(index=False)]]
    label = buyers.index.isin(new["customer_id"]).astype(float)
    recs = built.recommendations.set_index("customer_id").reindex(buyers.index)
    ours = recs["cross_sell_opportunity_score"].fillna(0).to_numpy(float)
    support = built.candidates.groupby("customer_id")["category_support"].apply(
        lambda s: 1 - np.prod(1 - s.clip(0, 1 - 1e-12))
    )
    adopted_recently = _recent_adopters(built, window)
    scores = {
        "ours": ours,
        "recency": -buyers["recency_days"].fillna(1e9).to_numpy(float),
        "same_as_last_period": buyers.index.isin(adopted_recently).astype(float),
        "popularity": support.reindex(buyers.index).fillna(0).to_numpy(float),
        "dataos": buyers["dataos_cross_sell_score"].fillna(0).to_numpy(float),
    }
    calibration = _calibration_fit(built)
    before = cross_sell.Calibration(hazard_scale=calibration["hazard_scale"]).undo(ours)
    return {
        "customers": int(len(buyers)),
        "new_category_buyers": int(label.sum()),
        "base_rate": _round(label.mean()) if len(label) else None,
        "mean_predicted": _round(ours.mean()) if len(ours) else None,
        "mean_predicted_before_calibration": _round(before.mean()) if len(ours) else None,
        "scores": {name: ranking_figures(label, s) for name, s in scores.items()},
        "calibration": decile_calibration(label, ours),
        "calibration_before": decile_calibration(label, before),
        "calibration_fit": calibration,
        "new_categories": new,
    }


def _calibration_fit(built: Built) -> dict:
    """How the published scores were calibrated (marts.cross_sell_model, kind "calibration"):
    the hazard scale (1 when there is none) and what it did on its held-out snapshot."""
    found = built.calibration
    status = (found.get("status") or (None, None))[1] or "identity; not recorded"
    figures = {
        name: _round(found[name][0]) if found.get(name, (None,))[0] is not None else None
        for name in ("customers", "observed_rate", "mean_before", "mean_after",
                     "log_loss_before", "log_loss_after")
    }  # fmt: skip
    scale = found.get("hazard_scale", (None, None))[0]
    return {
        "method": "hazard scaling: p' = 1 - (1 - p)^k",
        "status": status,
        "hazard_scale": float(scale) if scale is not None and np.isfinite(scale) else 1.0,
        "held_out": figures,
    }


def _recent_adopters(built: Built, window: Window) -> pd.Index:
    """Customers who had bought before T - h and adopted a category in (T - h, T]."""
    owned = built.owned.assign(adopted_on=pd.to_datetime(built.owned["adopted_on"]))
    first = owned.groupby("customer_id")["adopted_on"].transform("min")
    start = pd.Timestamp(window.start_of_last_period)
    recent = owned[(owned["adopted_on"] > start) & (first <= start)]
    return pd.Index(recent["customer_id"].unique())


def category_section(
    built: Built,
    new: pd.DataFrame,
    window: Window,
    more_rankers: Callable[[pd.DataFrame], dict[str, list[np.ndarray]]] | None = None,
) -> dict:
    """Hit@1 and hit@3 of each ranker among the customers who bought a new category and had
    one left to recommend. `more_rankers` adds rankers of the candidate rows (name -> sort
    keys, highest first), such as an oracle that knows how the data was made."""
    rows = built.candidates.copy()
    rows["bought"] = pd.MultiIndex.from_frame(rows[["customer_id", "category"]]).isin(
        pd.MultiIndex.from_frame(new[["customer_id", "category"]])
    )
    recs = built.recommendations.set_index("customer_id")
    ours = np.zeros(len(rows))
    for rank in (1, 2, 3):  # ours: the published top three, in order
        picked = rows["customer_id"].map(recs[f"next_best_category_{rank}"]) == rows["category"]
        ours = np.where(picked, 4 - rank, ours)
    owned = built.owned.assign(adopted_on=pd.to_datetime(built.owned["adopted_on"]))
    recent = owned[owned["adopted_on"] > pd.Timestamp(window.start_of_last_period)]
    last_period = rows["category"].map(recent.groupby("category").size()).fillna(0)
    support = rows["category_support"].to_numpy(float)
    rankers = {
        "ours": [ours],
        **cross_sell.baseline_rankings(rows),
        "same_as_last_period": [last_period.to_numpy(float), support],
        **(more_rankers(rows) if more_rankers else {}),
    }
    buyer = rows.groupby("customer_id")["bought"].transform("any").to_numpy()
    customers = int(rows.loc[buyer, "customer_id"].nunique())
    figures = {}
    codes = cross_sell.RowCodes.of(rows)  # once for every ranker
    for name, keys in rankers.items():
        rank = cross_sell.within_customer_rank(rows, keys, codes)
        hits = {}
        for k in (1, 3):
            hit = (rows["bought"].to_numpy() & (rank <= k))[buyer]
            per_customer = pd.Series(hit).groupby(rows.loc[buyer, "customer_id"].to_numpy()).any()
            hits[f"hit_at_{k}"] = _round(per_customer.mean()) if customers else None
        figures[name] = hits
    return {"customers": customers, "rankers": figures, "ranking": _ranking(built)}


def _ranking(built: Built) -> dict | None:
    """How the published next-best categories were ranked (marts.cross_sell_model, kind
    "ranking"): model or popularity, why, and the validation figures behind the choice."""
    found = built.ranking
    if "choice" not in found:
        return None
    chosen, _, why = (found["choice"][1] or "").partition(": ")
    figures = {k: _round(v) for k, (v, _) in found.items() if k != "choice"}
    return {"chosen": chosen, "detail": why, **figures}


def clv_section(built: Built, outcomes: pd.DataFrame, window: Window) -> dict:
    """Predicted against actual purchase days and spend over the horizon, per buyer at T."""
    buyers = built.buyers
    model = purchase_model(built.parameters)
    x, t_x, T = (buyers[c].to_numpy(float) for c in ("frequency", "recency_weeks", "age_weeks"))
    purchases = clv.expected_purchases(model, window.horizon_days / 7.0, x, t_x, T)
    spend = purchases * buyers["expected_avg_order_value"].to_numpy(float)
    actual = outcomes.groupby("customer_id").agg(
        purchases=("purchase_date", "nunique"), spend=("amount", "sum")
    )
    actual = actual.reindex(buyers["customer_id"]).fillna(0)
    last = built.last_period.set_index("customer_id").reindex(buyers["customer_id"]).fillna(0)
    predictors = {
        "ours": (purchases, spend),
        "same_as_last_period": (last["purchases"].to_numpy(float), last["spend"].to_numpy(float)),
    }
    figures = {
        name: _totals(p, s, actual["purchases"].to_numpy(float), actual["spend"].to_numpy(float))
        for name, (p, s) in predictors.items()
    }
    one_time = x == 0
    alive = buyers["probability_alive"].to_numpy(float)
    came_back = actual["purchases"].to_numpy() > 0
    return {
        "customers": int(len(buyers)),
        "purchase_model": model.model,
        "spend_model": built.spend_model.as_metadata() if built.spend_model else None,
        "predictors": figures,
        "deciles": _clv_deciles(purchases, spend, actual),
        "one_time_buyers": {
            "customers": int(one_time.sum()),
            "mean_probability_alive": _round(alive[one_time].mean()) if one_time.any() else None,
            "share_who_bought_again": _round(came_back[one_time].mean())
            if one_time.any()
            else None,
        },
        "value_tiers": _tier_shares(buyers, actual),
    }


def purchase_model(parameters: dict) -> clv.BgNbd:
    """The purchase model recorded in marts.clv_model_parameters."""
    return clv.BgNbd(
        *(float(parameters[k]) for k in ("r", "alpha", "a", "b")),
        model=parameters.get("purchase_model") or "bgnbd",
    )


# The resampled sets of buyers behind each predicted/actual ratio's interval
BOOTSTRAP_RESAMPLES = 1000
# numbers drawn at once while resampling (memory: 8 bytes each)
_RESAMPLE_BATCH = 4_000_000


def ratio_interval(
    predicted: np.ndarray, actual: np.ndarray, level: float = 0.95, seed: int = 0
) -> list[float] | None:
    """How far the ratio sum(predicted) / sum(actual) moves with the sample of buyers: the
    percentile interval of the ratio over BOOTSTRAP_RESAMPLES resamples of the buyers (drawn
    with replacement, as many as there are; the same draws for the same inputs). A ratio
    outside a target band whose interval reaches into it may be the sample, not the model.
    None when nothing happened (no actual total), there is a single buyer, or a figure is not
    a number (the ratio itself is then undefined)."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    n = len(actual)
    finite = np.isfinite(predicted).all() and np.isfinite(actual).all()
    if n < 2 or not finite or actual.sum() <= 0:
        return None
    rng = np.random.default_rng(seed)
    batch = max(1, _RESAMPLE_BATCH // n)
    ratios = []
    for start in range(0, BOOTSTRAP_RESAMPLES, batch):
        drawn = rng.integers(0, n, size=(min(batch, BOOTSTRAP_RESAMPLES - start), n))
        ratios.append(predicted[drawn].sum(axis=1) / actual[drawn].sum(axis=1))
    ratios = np.concatenate(ratios)
    ratios = ratios[np.isfinite(ratios)]  # a resample without any actual purchase
    if not ratios.size:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return [_round(low), _round(high)]


def _totals(purchases, spend, actual_purchases, actual_spend) -> dict:
    def ratio(p, a):
        return _round(p.sum() / a.sum()) if a.sum() > 0 else None

    return {
        "predicted_purchases": _round(purchases.sum()),
        "actual_purchases": _round(actual_purchases.sum()),
        "purchases_ratio": ratio(purchases, actual_purchases),
        "purchases_ratio_interval": ratio_interval(purchases, actual_purchases),
        "predicted_spend": _round(spend.sum()),
        "actual_spend": _round(actual_spend.sum()),
        "spend_ratio": ratio(spend, actual_spend),
        "spend_ratio_interval": ratio_interval(spend, actual_spend),
        "spearman_purchases": _round(spearmanr(purchases, actual_purchases).statistic)
        if len(purchases) > 1
        else None,
        "spearman_spend": _round(spearmanr(spend, actual_spend).statistic)
        if len(spend) > 1
        else None,
    }


def _clv_deciles(purchases, spend, actual: pd.DataFrame) -> list[dict]:
    return deciles(
        spend,
        {
            "predicted_purchases": purchases,
            "actual_purchases": actual["purchases"].to_numpy(),
            "predicted_spend": spend,
            "actual_spend": actual["spend"].to_numpy(),
        },
    )


def _tier_shares(buyers: pd.DataFrame, actual: pd.DataFrame) -> list[dict]:
    spend = pd.Series(actual["spend"].to_numpy(), index=buyers["value_tier"].to_numpy())
    total = spend.sum()
    rows = []
    for _, tier in clv.VALUE_TIERS:
        in_tier = spend[spend.index == tier]
        rows.append(
            {
                "value_tier": tier,
                "customers": int(len(in_tier)),
                "share_of_customers": _round(len(in_tier) / len(spend)) if len(spend) else None,
                "share_of_spend": _round(in_tier.sum() / total) if total > 0 else None,
            }
        )
    return rows


# --- the report ------------------------------------------------------------------------------


def build_report(
    con: duckdb.DuckDBPyConnection,
    outcomes: pd.DataFrame,
    window: Window,
    created_at: datetime | None = None,
) -> dict:
    built = read_built(con, window)
    opportunity = opportunity_section(built, outcomes, window)
    new = opportunity.pop("new_categories")
    created = created_at or datetime.now(UTC)
    return {
        "as_of": window.as_of.isoformat(sep=" "),
        "horizon_days": window.horizon_days,
        "horizon_end": window.end.isoformat(sep=" "),
        "created_at": created.isoformat(timespec="milliseconds"),
        "outcome_lines": int(len(outcomes)),
        "opportunity": opportunity,
        "next_best_category": category_section(built, new, window),
        "clv": clv_section(built, outcomes, window),
    }


def write_report(report: dict, folder: Path) -> list[Path]:
    """`backtest-<T>-<h>d.json` and `.md` in `folder`, and the same as `latest.*`. Each file
    is written whole to a temporary name and renamed into place, so a reader (the delivery
    service) never sees half a report."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"backtest-{report['as_of'][:10]}-{report['horizon_days']}d"
    text = json.dumps(report, indent=2) + "\n"
    md = markdown(report)
    paths = []
    for name in (stem, "latest"):
        for suffix, content in ((".json", text), (".md", md)):
            path = folder / f"{name}{suffix}"
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(content)
            os.replace(partial, path)
            paths.append(path)
    return paths


def _with_interval(ratio, interval) -> str:
    if ratio is None or not interval:
        return _cell(ratio)
    return f"{_cell(ratio)} [{_cell(interval[0])}, {_cell(interval[1])}]"


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:,.3f}" if isinstance(value, float) else str(value)


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _calibration_lines(opp: dict) -> list[str]:
    fit = opp.get("calibration_fit")
    before = opp.get("calibration_before") or [{} for _ in opp["calibration"]]
    lines = []
    if fit:
        held = fit["held_out"]
        # a count, stored in the model mart's DOUBLE column
        customers = "n/a" if held["customers"] is None else f"{int(held['customers']):,}"
        lines += [
            f"Calibration ({fit['method']}): k = {fit['hazard_scale']:.4f}, {fit['status']}; "
            f"fitted on {customers} customers of the snapshot 90 days before "
            f"as_of (observed rate {_cell(held['observed_rate'])}, mean predicted "
            f"{_cell(held['mean_before'])} before, {_cell(held['mean_after'])} after). Here: "
            f"mean predicted {_cell(opp.get('mean_predicted_before_calibration'))} before, "
            f"{_cell(opp['mean_predicted'])} after, against {_cell(opp['base_rate'])}.",
            "",
        ]
    lines += ["Calibration by decile of our score:", ""]
    return lines + _table(
        ["decile", "customers", "predicted before", "predicted", "observed"],
        [
            [r["decile"], r["customers"], b.get("predicted"), r["predicted"], r["observed"]]
            for r, b in zip(opp["calibration"], before, strict=True)
        ],
    )


def _spend_lines(spend: dict | None) -> list[str]:
    if not spend:
        return []
    errors = ", ".join(f"{k} {_cell(v)}" for k, v in spend["holdout_error"].items())
    return [
        f"Spend model chosen on the {spend['holdout_days']} days before as_of "
        f"({spend['holdout_customers']:,} customers, {spend['holdout_purchase_days']:,} purchase "
        f"days): |log(predicted / actual spend)| {errors}.",
        "",
    ]


def markdown(report: dict) -> str:
    opp, cat, value = report["opportunity"], report["next_best_category"], report["clv"]
    lines = [
        f"# Backtest at {report['as_of']}, horizon {report['horizon_days']} days",
        "",
        f"Created {report.get('created_at', 'n/a')}.",
        "",
        f"Outcomes: {report['outcome_lines']:,} purchase lines in ({report['as_of']}, "
        f"{report['horizon_end']}].",
        "",
        f"## Opportunity score ({opp['customers']:,} buyers, {opp['new_category_buyers']:,} "
        f"bought a new category, base rate {_cell(opp['base_rate'])}, mean predicted "
        f"{_cell(opp['mean_predicted'])})",
        "",
        *_table(
            ["score", "ROC AUC", "top-decile lift"],
            [[n, f["auc"], f["top_decile_lift"]] for n, f in opp["scores"].items()],
        ),
        *_calibration_lines(opp),
        f"## Next-best category ({cat['customers']:,} customers bought a new category)",
        "",
        *(
            [f"Ours ranked by {cat['ranking']['chosen']}: {cat['ranking']['detail']}.", ""]
            if cat.get("ranking")
            else []
        ),
        *_table(
            ["ranker", "hit@1", "hit@3"],
            [[n, f["hit_at_1"], f["hit_at_3"]] for n, f in cat["rankers"].items()],
        ),
        f"## CLV ({value['customers']:,} buyers, purchase model {value['purchase_model']}, "
        f"spend model {(value.get('spend_model') or {}).get('chosen', 'n/a')})",
        "",
        *_spend_lines(value.get("spend_model")),
        *_table(
            [
                "predictor",
                "purchases pred/actual",
                "spend pred/actual",
                "Spearman purchases",
                "Spearman spend",
            ],
            [
                [
                    n,
                    _with_interval(f["purchases_ratio"], f.get("purchases_ratio_interval")),
                    _with_interval(f["spend_ratio"], f.get("spend_ratio_interval")),
                    f["spearman_purchases"],
                    f["spearman_spend"],
                ]
                for n, f in value["predictors"].items()
            ],
        ),  # fmt: skip
        "Pred/actual with the 95% interval over resampled buyers in brackets.",
        "",
        "By decile of predicted spend (means per customer):",
        "",
        *_table(
            ["decile", "customers", "purchases pred", "actual", "spend pred", "actual"],
            [
                [
                    r["decile"],
                    r["customers"],
                    r["predicted_purchases"],
                    r["actual_purchases"],
                    r["predicted_spend"],
                    r["actual_spend"],
                ]
                for r in value["deciles"]
            ],
        ),  # fmt: skip
        "One-time buyers: "
        f"{value['one_time_buyers']['customers']:,}, mean P(alive) "
        f"{_cell(value['one_time_buyers']['mean_probability_alive'])}, share who bought again "
        f"{_cell(value['one_time_buyers']['share_who_bought_again'])}.",
        "",
        "Value tiers' share of the horizon's spend:",
        "",
        *_table(
            ["tier", "customers", "share of customers", "share of spend"],
            [
                [r["value_tier"], r["customers"], r["share_of_customers"], r["share_of_spend"]]
                for r in value["value_tiers"]
            ],
        ),
    ]
    return "\n".join(lines)

"""The cross-sell model: the probability that a customer buys a category new to them in the
next 90 days, from their purchase history, the category affinities and the order and timing
in which customers adopt categories (A -> B transitions estimated from the history).

A logistic regression over (customer, category not yet bought) rows, fitted by penalised
maximum likelihood with scipy. A customer's opportunity score is the probability of buying at
least one new category: 1 - prod(1 - p_category).

The model learns from the window that ends at the snapshot it scores, and fewer customers adopt
a new category as they age, so its raw rates run high. `fit_calibration` measures by how much
on a held-out snapshot: the model learnt one window earlier, scored on a snapshot it never saw,
against what those customers then did. The correction scales each probability's hazard,
p' = 1 - (1 - p)^k (Platt scaling on the complementary log-log link with the slope fixed at
1), so the opportunity score stays 1 - prod(1 - p'), equals 1 - (1 - score)^k, keeps every
ranking (of customers and of categories) and can be undone exactly.

It never emits NaN: missing or non-finite features take the documented FEATURE_DEFAULTS, and
when the model cannot learn (too few rows, or only buyers or only non-buyers in the window)
`fit` returns the PopularityBaseline with a "failed" FitReport instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit
from scipy.stats import rankdata

from retail_dp.analytics import clv

FEATURES = (
    "log_expected_purchases_90d",
    "probability_alive",
    "log_orders",
    "log_orders_90d",
    "log_recency_days",
    "categories_bought",
    "confidence_max",
    "confidence_mean",
    "category_support",
    "log_days_since_last_adoption",
    "log_next_adoption_share",
    "log_next_adoption_share_due",
    "log_next_adoption_share_max",
)
SHARE_FLOOR = 1e-3  # added to the adoption shares before their log
# what a missing or non-finite feature is taken to mean
FEATURE_DEFAULTS = {
    "log_expected_purchases_90d": 0.0,  # no purchase expected
    "probability_alive": 1.0,  # BG/NBD's value for a customer with no repeat purchase
    "log_orders": 0.0,
    "log_orders_90d": 0.0,
    "log_recency_days": float(np.log1p(365.0)),  # a year since the last purchase
    "categories_bought": 0.0,
    "confidence_max": 0.0,  # no rule leads to the category
    "confidence_mean": 0.0,
    "category_support": 0.0,  # nobody bought the category
    "log_days_since_last_adoption": float(np.log1p(365.0)),  # a year since the last adoption
    # nobody adopted it next after the categories the customer owns
    "log_next_adoption_share": float(np.log(SHARE_FLOOR)),
    "log_next_adoption_share_due": float(np.log(SHARE_FLOOR)),
    "log_next_adoption_share_max": float(np.log(SHARE_FLOOR)),
}
L2_PENALTY = 1e-3
FEATURE_DECIMALS = 9
MIN_TRAINING_ROWS = 50  # fewer rows than this: no model, the baseline scores
MIN_CLASS_ROWS = 10  # fewer buyers (or non-buyers) than this: fitted, but degenerate
# the baseline's activity: exp(-recency_days / RECENCY_SCALE_DAYS), 1 for a purchase today
RECENCY_SCALE_DAYS = 180.0

HORIZON_WEEKS = 90 / 7
SUMMARY = ("frequency", "recency_weeks", "age_weeks")


def activity(
    customers: pd.DataFrame, start: clv.BgNbd | None = None, fitted: clv.BgNbd | None = None
) -> tuple[pd.DataFrame, clv.BgNbd]:
    """BG/NBD's view of each customer at the snapshot (one row each, with SUMMARY): P(alive)
    and the purchases expected in the next 90 days, from a model fitted on all the snapshot's
    customers (on their distinct summaries, so every customer counts and the order does not),
    starting from `start` if given (another snapshot's fit), and the model. With `fitted`, that
    model is applied as it is (a run between refits)."""
    ids = customers["customer_id"].to_numpy()
    if not (len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))):  # as the product reads them
        customers = customers.drop_duplicates("customer_id")
        customers = customers.sort_values("customer_id", kind="stable")
    x, t_x, T = (customers[c].to_numpy(float) for c in SUMMARY)
    model = fitted if fitted is not None else clv.fit_bgnbd(x, t_x, T, start=start)
    usable = model.report is not None and model.report.fit_status != "failed"
    nan = np.full(len(customers), np.nan)  # a failed fit leaves the features' defaults
    expected = clv.expected_purchases(model, HORIZON_WEEKS, x, t_x, T) if usable else nan
    alive = clv.probability_alive(model, x, t_x, T) if usable else nan
    frame = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "expected_purchases_90d": np.round(expected, clv.PROBABILITY_DECIMALS),
            "probability_alive": np.round(alive, clv.PROBABILITY_DECIMALS),
        }
    )
    return frame, model


def with_activity(
    rows: pd.DataFrame, customers: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, clv.FitReport | None]:
    """`rows` with each customer's activity; fitted on `rows`' own customers unless the
    activity of the snapshot's customers is given (then the report is None)."""
    report = None
    if customers is None:
        customers, model = activity(rows)
        report = model.report
    # `activity` gives one row per customer (drop_duplicates), so the merge needs no
    # validation (the product's own scoring and training draw join it in DuckDB instead)
    merged = rows.merge(customers, on="customer_id", how="left")
    return merged, report


def feature_matrix(rows: pd.DataFrame) -> np.ndarray:
    """The model's features, with FEATURE_DEFAULTS wherever an input is missing or infinite."""

    def col(name: str) -> pd.Series:
        return pd.to_numeric(rows[name], errors="coerce").astype(float)

    derived = pd.DataFrame(
        {
            "log_expected_purchases_90d": np.log1p(col("expected_purchases_90d").clip(lower=0)),
            "probability_alive": col("probability_alive").clip(0, 1),
            "log_orders": np.log1p(col("orders").clip(lower=0)),
            "log_orders_90d": np.log1p(col("orders_90d").clip(lower=0)),
            "log_recency_days": np.log1p(col("recency_days").clip(lower=0)),
            "categories_bought": col("categories_bought"),
            "confidence_max": col("confidence_max"),
            "confidence_mean": col("confidence_mean"),
            "category_support": col("category_support"),
            "log_days_since_last_adoption": np.log1p(col("days_since_last_adoption").clip(lower=0)),
            # logs: the chance of adopting B is about the customer's activity times a share
            **{
                f"log_{name}": np.log(col(name).clip(lower=0) + SHARE_FLOOR)
                for name in (
                    "next_adoption_share",
                    "next_adoption_share_due",
                    "next_adoption_share_max",
                )
            },
        },
        index=rows.index,
    )
    derived = derived.replace([np.inf, -np.inf], np.nan).fillna(FEATURE_DEFAULTS)
    # rounded: DuckDB's parallel float aggregates upstream differ in the last bit between runs
    return derived[list(FEATURES)].to_numpy(dtype=float).round(FEATURE_DECIMALS)


class Scorer(Protocol):
    training_positive_rate: float

    def predict(self, rows: pd.DataFrame) -> np.ndarray: ...

    def as_records(self) -> list[dict]: ...


@dataclass(frozen=True)
class CrossSellModel:
    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray  # intercept first
    training_rows: int
    training_positive_rate: float

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        z = (feature_matrix(rows) - self.mean) / self.scale
        return np.round(expit(self.coefficients[0] + z @ self.coefficients[1:]), 9)

    def as_records(self) -> list[dict]:
        names = ("intercept", *FEATURES)
        return [
            {"term": n, "coefficient": float(c)}
            for n, c in zip(names, self.coefficients, strict=True)
        ]


@dataclass(frozen=True)
class PopularityBaseline:
    """The fallback when no model can be learned: the category's popularity (its share of
    buyers at the snapshot) times a recency-based activity, exp(-recency_days / 180)."""

    training_rows: int = 0
    training_positive_rate: float = 0.0

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        features = pd.DataFrame(feature_matrix(rows), columns=list(FEATURES))
        recency_days = np.expm1(features["log_recency_days"].to_numpy())
        activity = np.exp(-recency_days / RECENCY_SCALE_DAYS)
        support = features["category_support"].to_numpy().clip(0, 1)
        return np.round(support * activity, 9)

    def as_records(self) -> list[dict]:
        return [{"term": "baseline_recency_scale_days", "coefficient": RECENCY_SCALE_DAYS}]


def fit(
    rows: pd.DataFrame, label: str = "bought_next_90d", weight: str = "sample_weight"
) -> tuple[Scorer, clv.FitReport]:
    """The logistic model and how its fit went; the PopularityBaseline, with a "failed"
    report, when there are fewer than MIN_TRAINING_ROWS rows or only one class. "degenerate"
    when the minority class has fewer than MIN_CLASS_ROWS rows or the optimiser stopped early.
    A `weight` column (a stratified sample's inverse sampling rates) weights each row, so the
    fit estimates the fit on every row. Rows are sorted first, so the sums run in the same
    order for the same data."""
    keys = _order_keys(rows)
    if not _in_order(rows, keys):  # a copy of every row: only when needed
        rows = rows.sort_values(keys, kind="stable")
    y = pd.to_numeric(rows[label], errors="coerce").fillna(0).to_numpy(dtype=float)
    w = rows[weight].to_numpy(dtype=float) if weight in rows else np.ones(len(y))
    positives = int(y.sum())
    repeat_share = _repeat_share(rows, keys[0])
    failure = _cannot_learn(len(y), positives)
    if failure:
        report = clv.FitReport("failed", False, 0, None, len(y), repeat_share, (failure,))
        rate = positives / len(y) if len(y) else 0.0
        return PopularityBaseline(len(y), rate), report
    x = feature_matrix(rows)
    mean = w @ x / w.sum()
    scale = np.sqrt(w @ (x - mean) ** 2 / w.sum())
    scale[scale == 0] = 1.0
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    del x
    loss, hessian = _loss(z, y, w)
    # Newton's method in a trust region, with the exact Hessian: 9 iterations on a 500,000-row
    # sample where L-BFGS took 50, and a gradient a thousand times smaller at the end
    result = minimize(
        loss,
        np.zeros(z.shape[1]),
        jac=True,
        hess=hessian,
        method="trust-exact",
        options={"maxiter": 200, "gtol": 1e-9},
    )
    rate = float(w @ y / w.sum())
    model = CrossSellModel(mean, scale, result.x, int(len(y)), rate)
    reasons = []
    if min(positives, len(y) - positives) < MIN_CLASS_ROWS:
        reasons.append(f"{min(positives, len(y) - positives)} rows in the minority class")
    converged = bool(result.success) or float(np.max(np.abs(result.jac))) <= 1e-6
    if not converged:
        reasons.append(f"the optimiser stopped before its tolerance: {result.message}")
    log_likelihood = -float(result.fun) * float(w.sum())
    if not (np.isfinite(result.x).all() and np.isfinite(log_likelihood)):
        return PopularityBaseline(len(y), rate), clv.FitReport(
            "failed", False, int(result.nit), None, len(y), repeat_share, ("non-finite fit",)
        )
    report = clv.FitReport(
        "degenerate" if reasons else "ok",
        converged,
        int(result.nit),
        log_likelihood,
        len(y),
        repeat_share,
        tuple(reasons),
    )
    return model, report


def _order_keys(rows: pd.DataFrame) -> list[str]:
    """What names each row's customer and category: their integer codes (in customer_id and
    category order) where the rows carry them, as the product's training sample does, or the
    ids themselves."""
    coded = ["customer_code", "category_code"]
    return coded if set(coded) <= set(rows.columns) else ["customer_id", "category"]


def _in_order(rows: pd.DataFrame, keys: list[str]) -> bool:
    """Whether the rows are sorted by the customer, then the category (`_order_keys`)."""
    ids, names = rows[keys[0]].to_numpy(), rows[keys[1]].to_numpy()
    same = ids[1:] == ids[:-1]
    return bool(np.all((ids[1:] > ids[:-1]) | (same & (names[1:] >= names[:-1]))))


def _cannot_learn(rows: int, positives: int) -> str | None:
    if rows < MIN_TRAINING_ROWS:
        return f"{rows} training rows, fewer than {MIN_TRAINING_ROWS}: popularity baseline"
    if positives == 0 or positives == rows:
        kind = "non-buyers" if positives == 0 else "buyers"
        return f"only {kind} of a new category in the training window: popularity baseline"
    return None


def _loss(z: np.ndarray, y: np.ndarray, w: np.ndarray):
    """The weighted mean negative log-likelihood plus an L2 penalty on the coefficients (not
    the intercept) with its gradient, and its Hessian."""
    total = w.sum()
    penalised = np.r_[0.0, np.ones(z.shape[1] - 1)]

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        s = z @ beta
        # log(1 + e^s) - y s is the negative log-likelihood without log(0) for any s
        nll = float(w @ (np.logaddexp(0.0, s) - y * s)) / total
        grad = z.T @ (w * (expit(s) - y)) / total
        penalty = L2_PENALTY * np.r_[0.0, beta[1:]]
        return nll + 0.5 * L2_PENALTY * float(beta[1:] @ beta[1:]), grad + penalty

    def hessian(beta: np.ndarray) -> np.ndarray:
        p = expit(z @ beta)
        return z.T @ (z * (w * p * (1 - p))[:, None]) / total + np.diag(L2_PENALTY * penalised)

    return loss, hessian


def _repeat_share(rows: pd.DataFrame, customer: str = "customer_id") -> float:
    """The share of the rows' customers with a repeat purchase; `rows` sorted by customer."""
    if rows.empty or "frequency" not in rows:
        return 0.0
    first = _run_starts(rows[customer].to_numpy())  # each customer's first row
    frequency = pd.to_numeric(rows["frequency"], errors="coerce").to_numpy(float)[first]
    return float((frequency > 0).mean())


# --- calibration ------------------------------------------------------------------------------

LOG_HAZARD_SCALE_BOUNDS = (np.log(1e-3), np.log(1e3))
MIN_CALIBRATION_CLASS = 5  # fewer buyers (or non-buyers) with a score than this: no calibration


@dataclass(frozen=True)
class Calibration:
    """p' = 1 - (1 - p)^hazard_scale, fitted by maximum likelihood on the customers of a
    held-out snapshot (their opportunity scores against whether they bought a new category).
    `status` "fitted", or "identity" (hazard_scale 1) with the reason in `detail`; the figures
    say how the scores of the held-out snapshot compare with what happened, before and after."""

    hazard_scale: float = 1.0
    status: str = "identity"
    detail: str | None = None
    customers: int = 0
    observed_rate: float | None = None
    mean_before: float | None = None
    mean_after: float | None = None
    log_loss_before: float | None = None
    log_loss_after: float | None = None

    def apply(self, probability: np.ndarray) -> np.ndarray:
        return _scale_hazard(probability, self.hazard_scale)

    def undo(self, probability: np.ndarray) -> np.ndarray:
        return _scale_hazard(probability, 1.0 / self.hazard_scale)

    def as_metadata(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def as_rows(self) -> list[dict]:
        """marts/cross_sell_model's rows (kind "calibration"): the status with its reason in
        `detail`, then the figures; a figure that could not be measured is NULL, and says why."""
        why = "not measured: " + (self.detail or "no held-out customers")
        rows = [{"kind": "calibration", "name": "status", "value": None,
                 "detail": "; ".join(x for x in (self.status, self.detail) if x)}]  # fmt: skip
        for name in ("hazard_scale", "customers", "observed_rate", "mean_before", "mean_after",
                     "log_loss_before", "log_loss_after"):  # fmt: skip
            value = getattr(self, name)
            value = None if value is None else float(value)
            rows.append({"kind": "calibration", "name": name, "value": value,
                         "detail": why if value is None else None})  # fmt: skip
        return rows


def _scale_hazard(probability: np.ndarray, scale: float) -> np.ndarray:
    p = np.clip(np.nan_to_num(np.asarray(probability, dtype=float)), 0.0, 1.0 - 1e-12)
    return np.round(-np.expm1(scale * np.log1p(-p)), 9)


def _log_loss(label: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(probability, 1e-12, 1 - 1e-12)
    return float(-np.mean(label * np.log(p) + (1 - label) * np.log1p(-p)))


def fit_calibration(score: np.ndarray, label: np.ndarray) -> Calibration:
    """The hazard scale k that maximises the likelihood of `label` (bought a new category)
    under 1 - (1 - score)^k, over the customers with a score above 0 (a score of 0 stays 0
    whatever k). The identity, saying why, when either class has fewer than
    MIN_CALIBRATION_CLASS customers."""
    score = np.nan_to_num(np.asarray(score, dtype=float))
    label = np.nan_to_num(np.asarray(label, dtype=float)) > 0
    keep = score > 0
    score, label = np.clip(score[keep], 0, 1 - 1e-12), label[keep]
    figures = {"customers": int(len(score))}
    if len(score):
        figures |= {"observed_rate": float(label.mean()), "mean_before": float(score.mean()),
                    "log_loss_before": _log_loss(label, score)}  # fmt: skip
    positives = int(label.sum())
    if min(positives, len(label) - positives) < MIN_CALIBRATION_CLASS:
        kind = "buyers" if positives < MIN_CALIBRATION_CLASS else "non-buyers"
        why = f"{min(positives, len(label) - positives)} {kind} of a new category with a score"
        return Calibration(detail=f"{why}, fewer than {MIN_CALIBRATION_CLASS}", **figures)
    hazard = -np.log1p(-score)

    def loss(log_k: float) -> float:
        h = np.exp(log_k) * hazard
        # -log(1 - e^-h) for buyers, h for the others
        return float(-np.log(-np.expm1(-h[label])).sum() + h[~label].sum()) / len(h)

    found = minimize_scalar(loss, bounds=LOG_HAZARD_SCALE_BOUNDS, method="bounded",
                            options={"xatol": 1e-10})  # fmt: skip
    k = float(np.exp(found.x))
    after = _scale_hazard(score, k)
    detail = None
    if min(abs(found.x - b) for b in LOG_HAZARD_SCALE_BOUNDS) < 1e-6:
        detail = f"hazard scale {k:.4g} ran to its bound"
    return Calibration(
        hazard_scale=k,
        status="fitted",
        detail=detail,
        mean_after=float(after.mean()),
        log_loss_after=_log_loss(label, after),
        **figures,
    )


@dataclass(frozen=True)
class Calibrated:
    """A scorer whose probabilities pass through a Calibration."""

    base: Scorer
    calibration: Calibration

    @property
    def training_positive_rate(self) -> float:
        return self.base.training_positive_rate

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return self.calibration.apply(self.base.predict(rows))

    def as_records(self) -> list[dict]:
        return self.base.as_records()


@dataclass(frozen=True)
class Customers:
    """The customers of a set of rows: each row's code (0, 1, ... in customer_id order), the
    ids in that order (an Index named customer_id) and each one's first row. Rows sorted by
    customer_id (as the scoring reads them) are coded by one pass over the ids; any other
    order by hashing them."""

    codes: np.ndarray
    ids: pd.Index
    first_rows: np.ndarray

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Customers:
        column = rows["customer_id"]
        ids = column.to_numpy()
        if len(ids) and np.all(ids[1:] >= ids[:-1]):
            starts = _run_starts(ids)
            index = pd.Index(ids[starts], dtype=column.dtype, name="customer_id")
            return cls(np.cumsum(starts) - 1, index, np.flatnonzero(starts))
        codes, uniques = pd.factorize(ids, sort=True)
        return cls(
            codes,
            pd.Index(uniques, dtype=column.dtype, name="customer_id"),
            np.unique(codes, return_index=True)[1],
        )

    @classmethod
    def of_codes(cls, codes: np.ndarray, ids: pd.Index) -> Customers:
        """From each row's integer customer code, the rows sorted by it, and the id of each
        code (`ids[code]`, in id order): no string is compared."""
        starts = _run_starts(codes)
        return cls(np.cumsum(starts) - 1, ids[codes[starts]], np.flatnonzero(starts))

    def any(self, flags: np.ndarray) -> np.ndarray:
        """Per customer: whether any of their rows is flagged."""
        counts = np.bincount(self.codes, weights=flags.astype(float), minlength=len(self.ids))
        return counts > 0


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal keys starts, in sorted keys."""
    return np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, dtype=bool)


@dataclass(frozen=True)
class RowCodes:
    """Integer codes of each row's customer and category (both in id or name order) and the
    category names by code: what the rankings sort and group on, never the strings."""

    customers: Customers
    category: np.ndarray
    categories: np.ndarray

    @classmethod
    def of(cls, rows: pd.DataFrame) -> RowCodes:
        codes, names = pd.factorize(rows["category"], sort=True)
        return cls(Customers.of(rows), codes, np.asarray(names, dtype=object))


def customer_scores(
    rows: pd.DataFrame, probability: np.ndarray, customers: Customers | None = None
) -> pd.Series:
    """P(at least one new category) per customer, from the per-category probabilities (a
    missing probability counts as 0)."""
    customers = customers or Customers.of(rows)
    p = np.clip(np.nan_to_num(np.asarray(probability, dtype=float)), 0, 1 - 1e-12)
    # grouped by the integer codes, not the ids: the same sums, without hashing strings
    log_none = pd.Series(np.log1p(-p)).groupby(customers.codes, sort=True).sum()
    return pd.Series(-np.expm1(log_none.to_numpy()), index=customers.ids).round(9)


def within_customer_rank(
    rows: pd.DataFrame, keys: list[np.ndarray], codes: RowCodes | None = None
) -> np.ndarray:
    """Each row's rank among its customer's rows (1 = best) by `keys`, highest first, the
    first key deciding; ties go to the category name. Sorted on integer codes (`RowCodes`,
    computed here unless given), never on the strings themselves."""
    codes = codes or RowCodes.of(rows)
    customer = codes.customers.codes
    negated = [-np.asarray(k, dtype=float) for k in reversed(keys)]
    # rows in customer, then category order (as the product scores them) break the keys' ties
    # by category as they are: lexsort is stable, so one sort of the codes fewer
    in_order = np.all(
        (customer[1:] > customer[:-1])
        | ((customer[1:] == customer[:-1]) & (codes.category[1:] >= codes.category[:-1]))
    )
    order = np.lexsort((*negated, customer) if in_order else (codes.category, *negated, customer))
    sorted_customer = customer[order]
    starts = np.r_[True, sorted_customer[1:] != sorted_customer[:-1]]
    position = np.arange(len(order))
    first = np.maximum.accumulate(np.where(starts, position, 0))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = position - first + 1
    return rank


def baseline_rankings(rows: pd.DataFrame) -> dict[str, list[np.ndarray]]:
    """The simple category rankers every backtest sets ours against: popularity (the share
    of buyers who own the category) and the plain count of transitions from the customer's
    last adopted category (ties by popularity)."""
    support = _popularity(rows)
    counts = pd.to_numeric(rows["next_adoptions_after_last"], errors="coerce").fillna(0)
    return {"popularity": [support], "transitions": [counts.to_numpy(float), support]}


def _popularity(rows: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(rows["category_support"], errors="coerce").fillna(0).to_numpy(float)


def score_customers(
    rows: pd.DataFrame,
    probability: np.ndarray,
    label: str | None = None,
    ranking: str = "model",
    codes: RowCodes | None = None,
) -> pd.DataFrame:
    """Per customer of `rows` (all of each customer's rows): the opportunity score and the
    three next-best categories, ranked by `ranking` (RANKINGS; each with its probability);
    with `label`, also whether they bought a new category and, for ours and each baseline
    ranker, whether the top 1 and top 3 held one (NaN for customers who bought none). Works on
    any chunk that holds whole customers. With `codes`, `rows` need not carry customer_id and
    category: the codes name them."""
    if rows.empty:
        return _empty_scores(label)
    codes = codes or RowCodes.of(rows)
    customers = codes.customers
    score = np.asarray(probability, dtype=float)
    ours = within_customer_rank(rows, [score], codes)
    if ranking == "popularity":  # ties by the model's probability
        top = within_customer_rank(rows, [_popularity(rows), score], codes)
    else:
        top = ours
    out = _top_three(codes, score, top)
    out["cross_sell_opportunity_score"] = customer_scores(rows, score, customers)
    if label is None:
        return out.reset_index()
    bought = pd.to_numeric(rows[label], errors="coerce").fillna(0).to_numpy() > 0
    buyer = customers.any(bought)
    for name, keys in {"ours": None, **baseline_rankings(rows)}.items():
        rank = ours if keys is None else within_customer_rank(rows, keys, codes)
        for k in (1, 3):
            hit = customers.any(bought & (rank <= k)).astype(float)
            out[f"hit_at_{k}_{name}"] = np.where(buyer, hit, np.nan)
    out["new_category_buyer"] = buyer.astype(float)
    recency = pd.to_numeric(rows["recency_days"], errors="coerce").to_numpy(float)
    out["recency_days"] = recency[customers.first_rows]  # the same on every customer's row
    return out.reset_index()


# score_customers' columns that name the next-best categories
RECOMMENDED = tuple(f"next_best_category_{r}" for r in (1, 2, 3))


def _empty_scores(label: str | None) -> pd.DataFrame:
    columns = {"customer_id": "str", "cross_sell_opportunity_score": float}
    for r in (1, 2, 3):
        columns |= {f"next_best_category_{r}": "str", f"next_best_category_{r}_score": float}
    if label is not None:
        names = ("ours", *baseline_rankings(pd.DataFrame(columns=_BASELINE_INPUTS)))
        columns |= {f"hit_at_{k}_{n}": float for n in names for k in (1, 3)}
        columns |= {"new_category_buyer": float, "recency_days": float}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


_BASELINE_INPUTS = ["category_support", "next_adoptions_after_last"]


def _top_three(codes: RowCodes, score: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    """Per customer (in id order): the three best categories by `rank` (within_customer_rank)
    and their scores, missing where the customer has fewer candidates."""
    customers = codes.customers
    out = pd.DataFrame(index=customers.ids)
    for r in (1, 2, 3):
        at = rank == r
        names = np.full(len(customers.ids), np.nan, dtype=object)
        names[customers.codes[at]] = codes.categories[codes.category[at]]
        scores = np.full(len(customers.ids), np.nan)
        scores[customers.codes[at]] = score[at]
        # typed even when empty, so the mart's columns keep their types
        out[f"next_best_category_{r}"] = pd.Series(names, index=out.index, dtype="str")
        out[f"next_best_category_{r}_score"] = scores
    return out


def roc_auc(label: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the Mann-Whitney statistic (ties count half); None when it
    is undefined (only one class)."""
    label = np.asarray(label, dtype=bool)
    positives, negatives = label.sum(), (~label).sum()
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def top_decile_precision(label: np.ndarray, score: np.ndarray) -> float | None:
    """Share of actual buyers among the 10% highest-scored customers; None with no customers."""
    if len(score) == 0:
        return None
    n = max(1, int(np.ceil(len(score) * 0.1)))
    top = np.argsort(-np.asarray(score), kind="stable")[:n]
    return float(np.asarray(label, dtype=float)[top].mean())


def top_decile_lift(label: np.ndarray, score: np.ndarray) -> float | None:
    """Top-decile precision over the base rate; None when either is undefined or zero."""
    precision = top_decile_precision(label, score)
    base = float(np.mean(label)) if len(label) else 0.0
    return precision / base if precision is not None and base > 0 else None


def backtest(
    snapshots: pd.DataFrame, scored: pd.DataFrame
) -> tuple[dict[str, float | int | None], dict[str, str]]:
    """Our score against DataOS's and recency's on the customers of the snapshot 90 days before
    as_of, over the customers whose scores are finite, and our next-best category against the
    baseline rankers (hit@1, hit@3 among the customers who bought a new category). A customer
    with no candidate row has bought every category, so nothing new is possible: score 0.
    Undefined figures are None, with the reason in the second dict."""
    frame = snapshots.set_index("customer_id").join(scored.set_index("customer_id"), how="left")
    has_rows = frame.index.isin(scored["customer_id"])
    ours = frame["cross_sell_opportunity_score"].astype(float).mask(~has_rows, 0.0)
    dataos = pd.to_numeric(frame["dataos_cross_sell_score"], errors="coerce").astype(float)
    defined = np.isfinite(ours.to_numpy()) & np.isfinite(dataos.to_numpy())
    label = frame["bought_new_category_next_90d"].fillna(0).to_numpy(dtype=bool)[defined]
    mine, theirs = ours.to_numpy()[defined], dataos.to_numpy()[defined]
    # the recency baseline: the more recent the last purchase, the likelier; none: last
    recency = -frame["recency_days"].astype(float).fillna(1e9).to_numpy()[defined]
    metrics: dict[str, float | int | None] = {
        "backtest_customers": int(len(frame)),
        "backtest_customers_scored": int(defined.sum()),
        "backtest_new_category_buyers": int(label.sum()),
        "auc": roc_auc(label, mine),
        "auc_dataos": roc_auc(label, theirs),
        "auc_recency": roc_auc(label, recency),
        "top_decile_precision": top_decile_precision(label, mine),
        "top_decile_precision_dataos": top_decile_precision(label, theirs),
        "top_decile_lift": top_decile_lift(label, mine),
        "top_decile_lift_recency": top_decile_lift(label, recency),
        "base_rate": float(label.mean()) if len(label) else None,
        "mean_score": float(mine.mean()) if len(mine) else None,
    }
    hit_columns = [c for c in frame if c.startswith("hit_at_")]
    metrics["hit_customers"] = int(frame[hit_columns[0]].notna().sum()) if hit_columns else 0
    for column in hit_columns:
        values = frame[column].dropna()
        name = column.removesuffix("_ours")
        metrics[name] = float(values.mean()) if len(values) else None
    why = (
        "no customers scored"
        if not len(label)
        else f"only {'non-buyers' if label.sum() == 0 else 'buyers'} of a new category"
    )
    undefined = {k: f"undefined: {why}" for k, v in metrics.items() if v is None}
    return metrics, undefined


# --- which ranking --------------------------------------------------------------------------

RANKINGS = ("model", "popularity")


@dataclass(frozen=True)
class RankingChoice:
    """How the next-best categories are ranked: by the model's probability, or by popularity
    (the share of buyers who own the category) when the model did not beat popularity's hit@1
    on the validation window, the backtest 90 days before as_of (the model learnt before it).
    Popularity has no fitted parameter, so a tie goes to it; the model when the validation
    figures are undefined (nobody bought a new category then)."""

    chosen: str
    hit_at_1: dict[str, float | None]
    customers: int  # new-category buyers in the validation window
    detail: str

    def as_metadata(self) -> dict:
        return {"chosen": self.chosen, "hit_at_1": self.hit_at_1, "customers": self.customers,
                "detail": self.detail}  # fmt: skip

    def as_rows(self) -> list[dict]:
        """marts/cross_sell_model's rows (kind "ranking"): the choice with its reason in
        `detail`, then the validation figures (NULL, with the reason, when undefined)."""
        rows = [{"kind": "ranking", "name": "choice", "value": None,
                 "detail": f"{self.chosen}: {self.detail}"}]  # fmt: skip
        figures = {"validation_customers": float(self.customers)}
        figures |= {f"validation_hit_at_1_{k}": v for k, v in self.hit_at_1.items()}
        for name, value in figures.items():
            rows.append({"kind": "ranking", "name": name, "value": value,
                         "detail": None if value is not None else "undefined: nobody bought "
                         "a new category in the validation window"})  # fmt: skip
        return rows


def choose_ranking(validation: dict[str, float | int | None]) -> RankingChoice:
    """The ranking for today's recommendations from `backtest`'s figures (see RankingChoice)."""
    model, popularity = validation.get("hit_at_1"), validation.get("hit_at_1_popularity")
    customers = int(validation.get("hit_customers") or 0)
    hits = {"model": model, "popularity": popularity}
    if model is None or popularity is None:
        return RankingChoice("model", hits, customers, "validation hit@1 undefined")
    if model > popularity:
        why = f"validation hit@1 {model:.3f} > popularity's {popularity:.3f}"
        return RankingChoice("model", hits, customers, why)
    why = f"validation hit@1 {model:.3f} <= popularity's {popularity:.3f}"
    return RankingChoice("popularity", hits, customers, why)


def fit_rows(kind: str, report: clv.FitReport, scorer: Scorer) -> list[dict]:
    """marts/cross_sell_model's rows for one fit: the status (its text in `detail`) and the
    numbers that say how it went."""
    figures = {
        "converged": float(report.converged),
        "iterations": float(report.iterations),
        "log_likelihood": report.log_likelihood,
        "training_rows": float(report.n),
        "training_positive_rate": float(scorer.training_positive_rate),
        "repeat_share": report.repeat_share,
        "baseline": float(isinstance(scorer, PopularityBaseline)),
    }
    status = {
        "kind": kind,
        "name": "fit_status",
        "value": None,
        "detail": "; ".join([report.fit_status, *report.reasons]),
    }
    return [status] + [
        {"kind": kind, "name": n, "value": v, "detail": None} for n, v in figures.items()
    ]

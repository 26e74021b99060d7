"""The cross-sell model: the probability that a customer buys a category new to them in the
next 90 days, from their purchase history and the category affinities.

A logistic regression over (customer, category not yet bought) rows, fitted by penalised
maximum likelihood with scipy. A customer's opportunity score is the probability of buying at
least one new category: 1 - prod(1 - p_category).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
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
)
L2_PENALTY = 1e-3


HORIZON_WEEKS = 90 / 7
MAX_ACTIVITY_FIT_CUSTOMERS = 200_000
SUMMARY = ("frequency", "recency_weeks", "age_weeks")


def with_activity(rows: pd.DataFrame) -> pd.DataFrame:
    """Add BG/NBD's view of each customer at the snapshot: P(alive) and the purchases expected
    in the next 90 days, from a model fitted on the snapshot's own customers."""
    customers = rows.drop_duplicates("customer_id")
    fitted = customers
    if len(customers) > MAX_ACTIVITY_FIT_CUSTOMERS:  # plenty to pin four parameters down
        fitted = customers.sample(n=MAX_ACTIVITY_FIT_CUSTOMERS, random_state=0)
    model = clv.fit_bgnbd(*(fitted[c].to_numpy(float) for c in SUMMARY))
    x, t_x, T = (customers[c].to_numpy(float) for c in SUMMARY)
    activity = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "expected_purchases_90d": clv.expected_purchases(model, HORIZON_WEEKS, x, t_x, T),
            "probability_alive": clv.probability_alive(model, x, t_x, T),
        }
    )
    return rows.merge(activity, on="customer_id", how="left", validate="many_to_one")


def feature_matrix(rows: pd.DataFrame) -> np.ndarray:
    derived = pd.DataFrame(
        {
            "log_expected_purchases_90d": np.log1p(rows["expected_purchases_90d"].astype(float)),
            "probability_alive": rows["probability_alive"].astype(float),
            "log_orders": np.log1p(rows["orders"].astype(float)),
            "log_orders_90d": np.log1p(rows["orders_90d"].astype(float)),
            "log_recency_days": np.log1p(rows["recency_days"].astype(float).clip(lower=0)),
            "categories_bought": rows["categories_bought"].astype(float),
            "confidence_max": rows["confidence_max"].astype(float),
            "confidence_mean": rows["confidence_mean"].astype(float),
            "category_support": rows["category_support"].astype(float),
        }
    )
    return derived[list(FEATURES)].to_numpy()


@dataclass(frozen=True)
class CrossSellModel:
    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray  # intercept first
    training_rows: int
    training_positive_rate: float

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        z = (feature_matrix(rows) - self.mean) / self.scale
        return expit(self.coefficients[0] + z @ self.coefficients[1:])

    def as_records(self) -> list[dict]:
        names = ("intercept", *FEATURES)
        return [
            {"term": n, "coefficient": float(c)}
            for n, c in zip(names, self.coefficients, strict=True)
        ]


def fit(rows: pd.DataFrame, label: str = "bought_next_90d") -> CrossSellModel:
    y = rows[label].to_numpy(dtype=float)
    if y.size == 0 or y.min() == y.max():
        raise ValueError("the cross-sell model needs both buyers and non-buyers to learn from")
    x = feature_matrix(rows)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        p = expit(z @ w)
        eps = 1e-12
        nll = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
        grad = z.T @ (p - y) / len(y)
        penalty = L2_PENALTY * np.r_[0.0, w[1:]]
        return nll + 0.5 * L2_PENALTY * float(w[1:] @ w[1:]), grad + penalty

    result = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B")
    return CrossSellModel(mean, scale, result.x, int(len(y)), float(y.mean()))


def customer_scores(rows: pd.DataFrame, probability: np.ndarray) -> pd.Series:
    """P(at least one new category) per customer, from the per-category probabilities."""
    log_none = pd.Series(np.log1p(-np.clip(probability, 0, 1 - 1e-12)), index=rows.index)
    return 1 - np.exp(log_none.groupby(rows["customer_id"]).sum())


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney statistic (ties count half)."""
    label = np.asarray(label, dtype=bool)
    positives, negatives = label.sum(), (~label).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def top_decile_precision(label: np.ndarray, score: np.ndarray) -> float:
    """Share of actual buyers among the 10% highest-scored customers."""
    n = max(1, int(np.ceil(len(score) * 0.1)))
    top = np.argsort(-np.asarray(score), kind="stable")[:n]
    return float(np.asarray(label, dtype=float)[top].mean())

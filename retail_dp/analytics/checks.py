"""Checks that the fitted marts never publish an undefined number: every buyer has finite
predictions, every score is a probability, and the CLV fit did not fail. Blocking ERROR checks,
so a model that broke stops what is downstream of it instead of publishing NULLs or zeros; a
degenerate (finite but doubtful) fit is a non-blocking WARN.

Each check is one query returning (violations, rows looked at); the result carries that
measured value against the target of 0, as the SLO checks do.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import duckdb

from retail_dp.descriptors import DataProduct
from retail_dp.resources import Warehouse

CATEGORY = "validity"
TARGET = 0
# customers with a purchase: in the RFM summary, or with spend in the CLV mart
BUYERS = """buyers AS (
    SELECT customer_id FROM intermediate.int_customer_rfm
    UNION
    SELECT customer_id FROM marts.customer_lifetime_value WHERE historical_clv > 0
)"""
CLV_OUTPUTS = (
    "expected_purchases_365d",
    "probability_alive",
    "expected_avg_order_value",
    "predicted_clv_365d",
)
BGNBD_PARAMETERS = ("r", "alpha", "a", "b")
PURCHASE_MODELS = ("bgnbd", "mbgnbd")  # clv.PURCHASE_MODELS, spelt for SQL
NEXT_BEST = (1, 2, 3)
GAMMA_GAMMA_PARAMETERS = ("p", "q", "gamma")
# marts.cross_sell_model's kinds whose figures are NULL only with a reason
FIGURE_KINDS = ("calibration",)
HAZARD_SCALE = "kind = 'calibration' AND name = 'hazard_scale'"
RANKINGS = ("model", "popularity")  # cross_sell.RANKINGS, spelt for SQL


def _undefined(column: str) -> str:
    return f"({column} IS NULL OR isnan({column}) OR isinf({column}))"


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _non_finite(column: str) -> str:
    """Present but NaN or infinite (NULL passes)."""
    return f"coalesce(isnan({column}) OR isinf({column}), false)"


@dataclass(frozen=True)
class ModelCheck:
    asset: str
    name: str
    description: str  # what is checked, after the "[validity]" category
    sql: str  # one row: (violations, rows looked at)
    unit: str
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    @property
    def blocking(self) -> bool:
        return self.severity == dg.AssetCheckSeverity.ERROR


CHECKS = (
    ModelCheck(
        "marts/customer_lifetime_value",
        "model_outputs_defined",
        "Every buyer has finite expected purchases, P(alive), expected order value and "
        "predicted CLV: no NULL, NaN or infinity.",
        f"""WITH {BUYERS}
        SELECT count(*) FILTER (WHERE {" OR ".join(_undefined(f"v.{c}") for c in CLV_OUTPUTS)}),
            count(*)
        FROM buyers LEFT JOIN marts.customer_lifetime_value v USING (customer_id)""",
        "buyers with an undefined output",
    ),
    ModelCheck(
        "marts/cross_sell_recommendations",
        "scores_defined",
        "Every buyer has a finite cross_sell_opportunity_score within [0, 1].",
        f"""WITH {BUYERS}
        SELECT count(*) FILTER (
                WHERE {_undefined("r.cross_sell_opportunity_score")}
                OR r.cross_sell_opportunity_score NOT BETWEEN 0 AND 1
            ),
            count(*)
        FROM buyers LEFT JOIN marts.cross_sell_recommendations r USING (customer_id)""",
        "buyers with an undefined or out-of-range score",
    ),
    ModelCheck(
        "marts/cross_sell_recommendations",
        "next_best_scores_defined",
        "Every next-best category has a finite probability within [0, 1], and every such "
        "probability a category: no NaN, infinity or orphan.",
        f"""SELECT count(*) FILTER (WHERE {
            " OR ".join(
                f"({_non_finite(f'next_best_category_{k}_score')} "
                f"OR next_best_category_{k}_score NOT BETWEEN 0 AND 1 "
                f"OR (next_best_category_{k} IS NULL) <> (next_best_category_{k}_score IS NULL))"
                for k in NEXT_BEST
            )
        }),
            count(*)
        FROM marts.cross_sell_recommendations""",
        "customers with an undefined or orphan next-best score",
    ),
    ModelCheck(
        "marts/cross_sell_model",
        "calibration_defined",
        "The scores' calibration is recorded once, with a finite positive hazard scale, and "
        "every other figure of it is finite, or NULL with the reason in detail.",
        f"""WITH rows AS (
            SELECT * FROM marts.cross_sell_model WHERE kind IN ({_listed(FIGURE_KINDS)})
        )
        SELECT count(*) FILTER (
                WHERE {_non_finite("value")} OR (value IS NULL AND detail IS NULL)
                OR ({HAZARD_SCALE} AND NOT coalesce(value > 0, false))
            ) + (SELECT count(*) <> 1 FROM rows WHERE {HAZARD_SCALE})::INT,
            count(*)
        FROM rows""",
        "undefined calibration figures (or no hazard scale)",
    ),
    ModelCheck(
        "marts/cross_sell_model",
        "ranking_defined",
        "How the next-best categories are ranked is recorded once (model or popularity, with "
        "why), and every validation figure behind it is finite, or NULL with the reason.",
        f"""WITH rows AS (SELECT * FROM marts.cross_sell_model WHERE kind = 'ranking')
        SELECT count(*) FILTER (
                WHERE {_non_finite("value")} OR (value IS NULL AND detail IS NULL)
            ) + (
                SELECT count(*) <> 1 FROM rows WHERE name = 'choice'
                AND split_part(detail, ':', 1) IN ({_listed(RANKINGS)})
            )::INT,
            count(*)
        FROM rows""",
        "undefined ranking figures (or no ranking recorded)",
    ),
    ModelCheck(
        "marts/clv_model_parameters",
        "fit_not_failed",
        "The CLV fit did not fail, it names its purchase model and every parameter is "
        "finite; the Gamma-Gamma parameters may be NULL only when that fit is degenerate "
        "(no repeat buyer: pooled fallback).",
        f"""SELECT count(*) FILTER (
                WHERE fit_status IS NULL OR fit_status = 'failed'
                OR purchase_model IS NULL
                OR purchase_model NOT IN ({", ".join(f"'{m}'" for m in PURCHASE_MODELS)})
                OR {" OR ".join(_undefined(c) for c in BGNBD_PARAMETERS)}
                OR {" OR ".join(_non_finite(c) for c in GAMMA_GAMMA_PARAMETERS)}
                OR ((p IS NULL OR q IS NULL OR gamma IS NULL)
                    AND gamma_gamma_fit_status IS DISTINCT FROM 'degenerate')
            ),
            count(*)
        FROM marts.clv_model_parameters""",
        "failed fits or undefined parameters",
    ),
    ModelCheck(
        "marts/clv_model_parameters",
        "fit_not_degenerate",
        "The CLV fit is not degenerate (parameters at a bound or collapsed, too few repeat "
        "buyers, q <= 1 or no convergence); fit_notes says which rule fired.",
        "SELECT count(*) FILTER (WHERE fit_status = 'degenerate'), count(*) "
        "FROM marts.clv_model_parameters",
        "degenerate fits",
        severity=dg.AssetCheckSeverity.WARN,
    ),
)


def model_output_checks(product: DataProduct) -> list[dg.AssetChecksDefinition]:
    """The model-output checks of the consumer-aligned product, one op each."""
    return [_asset_check(check, product) for check in CHECKS]


def _asset_check(check: ModelCheck, product: DataProduct) -> dg.AssetChecksDefinition:
    asset = dg.AssetKey.from_user_string(check.asset)

    @dg.asset_check(
        asset=asset,
        name=check.name,
        description=f"[{CATEGORY}] {check.description}",
        blocking=check.blocking,
        metadata={"slo_category": CATEGORY, "data_product": product.name},
    )
    def _check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.get_connection() as con:
            return evaluate(check, con)

    return _check


def evaluate(check: ModelCheck, con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    """Run one check's query; a missing table or column is a failed check, not a crash."""
    violation = None
    try:
        bad, total = con.execute(check.sql).fetchall()[0]
    except duckdb.Error as exc:
        bad, total, violation = None, None, f"cannot measure: {exc}".splitlines()[0]
    if violation is None and total == 0 and check.asset == "marts/clv_model_parameters":
        violation = "no fit recorded"
    passed = violation is None and bad == TARGET
    metadata = {
        "slo_category": CATEGORY,
        "measured": bad if bad is not None else "not measured",
        "target": TARGET,
        "comparison": "<=",
        "unit": check.unit,
        "rows_checked": total if total is not None else "not measured",
        "severity": check.severity.value,
        "blocking": check.blocking,
    }
    if violation:
        metadata["violation"] = violation
    return dg.AssetCheckResult(
        passed=passed,
        severity=check.severity,
        description=violation or (None if passed else f"{bad} {check.unit} (target {TARGET})"),
        metadata=metadata,
    )

"""SLO checks on the consumer-aligned marts, from the consumer descriptor's targets.

Each mart declares what its SLOs look at: its key, its required columns, its validity rules,
the reconciliations that prove its totals (accuracy) and, for the fact table, the column that
dates the data (freshness). The expected schema comes from the column types declared beside
the models (dbt YAML `data_type`, or the Python marts' column list)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from retail_dp.descriptors import DataProduct, SloCategory
from retail_dp.quality.slo import MeasureContext, Measurement, SloCheck, ratio
from retail_dp.sources.rules import ident, literal

CATEGORY_COLUMNS = {
    "Wines": "mntwines",
    "Meats": "mntmeatproducts",
    "Fish": "mntfishproducts",
    "Sweets": "mntsweetproducts",
    "Gold": "mntgoldprods",
    "Fruits": "mntfruits",
}
FACT = "marts.fct_purchase"


@dataclass(frozen=True)
class Rule:
    """A validity rule: `valid` is SQL that is TRUE for a valid row. A strict rule admits no
    invalid row at all (DataOS's `invalid_count(x) = 0`)."""

    label: str
    valid: str
    strict: bool = False


@dataclass(frozen=True)
class Reconciliation:
    """Two figures that must agree: one from the mart, one from where it comes from."""

    label: str
    mart_sql: str
    reference_sql: str


@dataclass(frozen=True)
class MartSpec:
    asset: str
    key: tuple[str, ...]
    required: tuple[str, ...] = ()
    covers_customers: bool = False
    validity: tuple[Rule, ...] = ()
    accuracy: tuple[Reconciliation, ...] = ()
    freshness_column: str | None = None

    @property
    def table(self) -> str:
        schema, name = self.asset.split("/")
        return f"{schema}.{ident(name)}"


def _between(col: str, low: float, high: float) -> Rule:
    return Rule(f"{col} between {low:g} and {high:g}", f"{ident(col)} BETWEEN {low} AND {high}")


def _non_negative(col: str, strict: bool = False) -> Rule:
    return Rule(f"{col} >= 0", f"{ident(col)} >= 0", strict)


MARTS: tuple[MartSpec, ...] = (
    MartSpec(
        "marts/fct_purchase",
        key=("purchase_id",),
        required=(
            "purchase_id",
            "order_id",
            "customer_id",
            "product_id",
            "category",
            "quantity",
            "unit_price",
            "amount",
            "purchase_ts",
        ),
        validity=(
            Rule("quantity > 0", "quantity > 0"),
            Rule("unit_price > 0", "unit_price > 0"),
            Rule("amount = quantity x unit_price", "abs(amount - quantity * unit_price) < 0.005"),
            Rule("channel in (web, store, catalog)", "channel IN ('web', 'store', 'catalog')"),
        ),
        accuracy=(
            Reconciliation(
                "every accepted purchase line counted exactly once",
                f"SELECT count(DISTINCT purchase_id) FROM {FACT}",
                "SELECT count(*) FROM sources.purchase",
            ),
            Reconciliation(
                "fact lines = distinct purchase_id",
                f"SELECT count(*) FROM {FACT}",
                f"SELECT count(DISTINCT purchase_id) FROM {FACT}",
            ),
            Reconciliation(
                "revenue = sum of quantity x unit_price over accepted lines",
                f"SELECT sum(amount) FROM {FACT}",
                "SELECT sum(quantity * unit_price) FROM sources.purchase",
            ),
        ),
        freshness_column="purchase_ts",
    ),
    MartSpec(
        "marts/dim_customer",
        key=("customer_id",),
        required=("customer_id", "updated_at"),
        validity=(
            Rule("email has a valid format", "email IS NULL OR has_valid_email"),
            Rule(
                "birth_year is plausible", "birth_year IS NULL OR birth_year BETWEEN 1900 AND 2010"
            ),
        ),
        accuracy=(
            Reconciliation(
                "one row per accepted customer",
                "SELECT count(*) FROM marts.dim_customer",
                "SELECT count(*) FROM sources.customer_info",
            ),
        ),
    ),
    MartSpec(
        "marts/dim_product",
        key=("product_id",),
        required=("product_id", "category", "list_price"),
        validity=(Rule("list_price > 0", "list_price > 0"),),
        accuracy=(
            Reconciliation(
                "one row per accepted product",
                "SELECT count(*) FROM marts.dim_product",
                "SELECT count(*) FROM sources.product",
            ),
        ),
    ),
    MartSpec(
        "marts/customer_purchase_metrics",
        key=("customer_id",),
        required=("customer_id", "lifetime_orders", "total_spend"),
        covers_customers=True,
        validity=(
            _non_negative("total_spend", strict=True),
            _non_negative("lifetime_orders", strict=True),
            Rule("orders_365d <= lifetime_orders", "orders_365d <= lifetime_orders"),
        ),
        accuracy=(
            Reconciliation(
                "total_spend sums to the fact table's revenue",
                "SELECT sum(total_spend) FROM marts.customer_purchase_metrics",
                f"SELECT sum(amount) FROM {FACT}",
            ),
            Reconciliation(
                "lifetime_orders sums to the fact table's orders",
                "SELECT sum(lifetime_orders) FROM marts.customer_purchase_metrics",
                f"SELECT count(DISTINCT order_id) FROM {FACT}",
            ),
        ),
    ),
    MartSpec(
        "marts/customer_category_profile",
        key=("customer_id",),
        required=("customer_id", "spend", "churn_probability"),
        covers_customers=True,
        validity=tuple(
            Rule(f"invalid_count({col}) = 0", f"{col} >= 0", strict=True)
            for col in CATEGORY_COLUMNS.values()
        ),
        accuracy=(
            *(
                Reconciliation(
                    f"{col} sums to the fact table's {category} revenue",
                    f"SELECT sum({col}) FROM marts.customer_category_profile",
                    f"SELECT coalesce(sum(amount), 0) FROM {FACT} "
                    f"WHERE category = {literal(category)}",
                )
                for category, col in CATEGORY_COLUMNS.items()
            ),
            Reconciliation(
                "spend sums to the fact table's revenue",
                "SELECT sum(spend) FROM marts.customer_category_profile",
                f"SELECT sum(amount) FROM {FACT}",
            ),
        ),
    ),
    MartSpec(
        "marts/category_affinity",
        key=("basket_level", "antecedent", "consequent"),
        required=("basket_level", "antecedent", "consequent", "lift"),
        validity=(
            _non_negative("lift", strict=True),
            _between("support", 0, 1),
            _between("confidence", 0, 1),
        ),
    ),
    MartSpec(
        "marts/customer_lifetime_value",
        key=("customer_id",),
        required=("customer_id", "historical_clv", "predicted_clv_365d", "value_tier"),
        covers_customers=True,
        validity=(
            _non_negative("predicted_clv_365d", strict=True),
            _between("probability_alive", 0, 1),
        ),
        accuracy=(
            Reconciliation(
                "historical_clv sums to the fact table's revenue",
                "SELECT sum(historical_clv) FROM marts.customer_lifetime_value",
                f"SELECT sum(amount) FROM {FACT}",
            ),
        ),
    ),
    MartSpec(
        "marts/cross_sell_recommendations",
        key=("customer_id",),
        required=("customer_id",),
        covers_customers=True,
        validity=(_between("cross_sell_opportunity_score", 0, 1),),
    ),
)


def _scalar(ctx: MeasureContext, sql: str) -> float:
    value = ctx.con.execute(sql).fetchall()[0][0]
    return float(value or 0)


def _mart_checks(spec: MartSpec, product: DataProduct, columns: dict[str, str]) -> list[SloCheck]:
    key = dg.AssetKey(spec.asset.split("/"))
    table = spec.table

    def rows(ctx: MeasureContext) -> int:
        return int(_scalar(ctx, f"SELECT count(*) FROM {table}"))

    def completeness(ctx: MeasureContext) -> Measurement:
        total = rows(ctx)
        counts = ", ".join(f"count(*) FILTER (WHERE {ident(c)} IS NULL)" for c in spec.required)
        nulls = dict(
            zip(
                spec.required,
                ctx.con.execute(f"SELECT {counts} FROM {table}").fetchall()[0],
                strict=False,
            )
        )
        rates = {c: ratio(n, total) for c, n in nulls.items()}
        value = min(rates.values(), default=1.0)
        meta: dict = {"rows": total, "missing_by_column": nulls}
        if spec.covers_customers:
            customers = _scalar(ctx, "SELECT count(*) FROM marts.dim_customer")
            covered = _scalar(
                ctx,
                f"SELECT count(*) FROM marts.dim_customer d WHERE EXISTS "
                f"(SELECT 1 FROM {table} m WHERE m.customer_id = d.customer_id)",
            )
            coverage = ratio(int(customers - covered), int(customers))
            meta["customer_coverage"] = coverage
            value = min(value, coverage)
        violation = (
            f"{nulls['customer_id']} rows have no customer_id" if nulls.get("customer_id") else None
        )
        return Measurement(value, meta, violation)

    def uniqueness(ctx: MeasureContext) -> Measurement:
        cols = ", ".join(ident(c) for c in spec.key)
        total, distinct = ctx.con.execute(
            f"SELECT count(*), count(*) - (SELECT count(*) FROM (SELECT DISTINCT {cols} "
            f"FROM {table})) FROM {table}"
        ).fetchall()[0]
        return Measurement(
            ratio(distinct, total),
            {"rows": total, "duplicate_rows": distinct, "key": list(spec.key)},
        )

    def validity(ctx: MeasureContext) -> Measurement:
        total = rows(ctx)
        counts = ", ".join(
            f"count(*) FILTER (WHERE NOT coalesce({r.valid}, TRUE))" for r in spec.validity
        )
        any_invalid = " OR ".join(f"NOT coalesce({r.valid}, TRUE)" for r in spec.validity)
        *invalid, bad_rows = ctx.con.execute(
            f"SELECT {counts}, count(*) FILTER (WHERE {any_invalid}) FROM {table}"
        ).fetchall()[0]
        by_rule = {r.label: n for r, n in zip(spec.validity, invalid, strict=False)}
        broken = [r.label for r, n in zip(spec.validity, invalid, strict=False) if r.strict and n]
        return Measurement(
            ratio(bad_rows, total),
            {"rows": total, "invalid_rows": bad_rows, "invalid_count_by_rule": by_rule},
            f"strict rules broken: {', '.join(broken)}" if broken else None,
        )

    def accuracy(ctx: MeasureContext) -> Measurement:
        figures = {}
        worst = 1.0
        for rec in spec.accuracy:
            mart, reference = _scalar(ctx, rec.mart_sql), _scalar(ctx, rec.reference_sql)
            agreement = (
                1.0 - abs(mart - reference) / abs(reference)
                if reference
                else float(mart == reference)
            )
            figures[rec.label] = {
                "mart": round(mart, 4),
                "reference": round(reference, 4),
                "agreement": round(agreement, 6),
            }
            worst = min(worst, agreement)
        return Measurement(round(worst, 6), {"reconciliations": figures})

    def freshness(ctx: MeasureContext) -> Measurement:
        newest = ctx.con.execute(
            f"SELECT max({ident(spec.freshness_column)}) FROM {table}"
        ).fetchall()[0][0]
        if newest is None:
            return Measurement(None, {}, f"{table} has no rows to date the data by")
        hours = max((ctx.as_of - newest).total_seconds() / 3600, 0.0)
        return Measurement(
            round(hours, 2),
            {"newest": newest.isoformat(sep=" "), "newest_of": spec.freshness_column},
        )

    def schema(ctx: MeasureContext) -> Measurement:
        schema_name, name = spec.asset.split("/")
        found = dict(
            ctx.con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [schema_name, name],
            ).fetchall()
        )
        problems = [
            f"{c}: expected {t}, found {found.get(c, 'no column')}"
            for c, t in columns.items()
            if found.get(c) != t
        ]
        problems += [f"{c}: not declared" for c in found if c not in columns]
        checked = len(columns) + sum(c not in columns for c in found)
        return Measurement(
            ratio(len(problems), checked),
            {"expected_columns": columns, "problems": problems},
            None if found else f"{table} does not exist",
            note="; ".join(problems[:5]) or None,
        )

    measures = {
        SloCategory.completeness: (
            completeness,
            "Null share of the required columns "
            + ("and share of dim_customer's customers present; " if spec.covers_customers else "; ")
            + "customer_id is never null.",
        ),
        SloCategory.uniqueness: (uniqueness, f"Share of rows unique by ({', '.join(spec.key)})."),
        SloCategory.schema: (
            schema,
            "Share of declared columns present with their declared types.",
        ),
    }
    if spec.validity:
        measures[SloCategory.validity] = (
            validity,
            "Share of rows that pass: " + "; ".join(r.label for r in spec.validity) + ".",
        )
    if spec.accuracy:
        measures[SloCategory.accuracy] = (
            accuracy,
            "Reconciliations: " + "; ".join(r.label for r in spec.accuracy) + ".",
        )
    if spec.freshness_column:
        measures[SloCategory.freshness] = (
            freshness,
            f"Hours between the newest {spec.freshness_column} and as_of.",
        )
    return [
        SloCheck(key, product, category, description, fn)
        for category, (fn, description) in measures.items()
        if category in product.slos
    ]


def mart_checks(product: DataProduct, declared: dict[str, dict[str, str]]) -> list[SloCheck]:
    """`declared` maps each mart asset (`marts/x`) to its declared column types."""
    return [
        check
        for spec in MARTS
        for check in _mart_checks(spec, product, declared.get(spec.asset, {}))
    ]

"""SLO checks on the consumer-aligned marts, from the consumer descriptor's targets.

What each mart's SLOs look at comes from its dbt YAML (`meta.slo`, read through the manifest by
`transform.marts`): its key, its required columns, its validity rules, the reconciliations that
prove its totals (accuracy) and the column that dates the data (freshness). The expected schema
is the column types declared beside the model. `warn_only` makes a mart's checks WARN and
non-blocking (the compatibility profile never blocks the build)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from retail_dp.descriptors import DataProduct, SloCategory
from retail_dp.quality.slo import MeasureContext, Measurement, SloCheck, ratio
from retail_dp.sources.rules import ident
from retail_dp.transform.marts import Mart


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
    warn_only: bool = False

    @property
    def table(self) -> str:
        schema, name = self.asset.split("/")
        return f"{schema}.{ident(name)}"

    @classmethod
    def of(cls, mart: Mart) -> MartSpec:
        slo = mart.slo
        try:
            return cls(
                asset=mart.asset,
                key=tuple(slo["key"]),
                required=tuple(slo.get("required", ())),
                covers_customers=bool(slo.get("covers_customers", False)),
                validity=tuple(Rule(**r) for r in slo.get("validity", ())),
                accuracy=tuple(
                    Reconciliation(r["label"], r["mart"], r["reference"])
                    for r in slo.get("accuracy", ())
                ),
                freshness_column=slo.get("freshness_column"),
                warn_only=bool(slo.get("warn_only", False)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{mart.asset}: meta.slo in its dbt YAML is malformed: {exc}") from exc


def _scalar(ctx: MeasureContext, sql: str) -> float:
    return float(ctx.scalar(sql) or 0)


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
        if len(spec.key) == 1:
            # the distinct count a reconciliation may also ask for (measured once); a missing
            # key counts as one value, as SELECT DISTINCT counts it
            total = rows(ctx)
            distinct = int(_scalar(ctx, f"SELECT count(DISTINCT {cols}) FROM {table}"))
            missing = int(_scalar(ctx, f"SELECT count(*) - count({cols}) FROM {table}"))
            duplicates = total - distinct - (1 if missing else 0)
        else:
            total, duplicates = ctx.con.execute(
                f"SELECT count(*), count(*) - (SELECT count(*) FROM (SELECT DISTINCT {cols} "
                f"FROM {table})) FROM {table}"
            ).fetchall()[0]
        return Measurement(
            ratio(duplicates, total),
            {"rows": total, "duplicate_rows": duplicates, "key": list(spec.key)},
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
        SloCheck(key, product, category, description, fn, warn_only=spec.warn_only)
        for category, (fn, description) in measures.items()
        if category in product.slos
    ]


def mart_checks(product: DataProduct, marts: list[Mart]) -> list[SloCheck]:
    """The SLO checks of every mart whose dbt YAML says what they measure."""
    return [
        check
        for mart in marts
        if mart.slo
        for check in _mart_checks(MartSpec.of(mart), product, mart.columns)
    ]

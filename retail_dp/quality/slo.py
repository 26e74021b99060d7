"""One SLO check: what it measures, how the measured value meets the descriptor's target, and
the metadata every check result carries (the UI, `retail-dp check` and the hub read it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from retail_dp.descriptors import DataProduct, Slo, SloCategory
from retail_dp.sources.landing import LandingError

# Check names.
SLO_CHECK_PREFIX = "slo_"


@dataclass(frozen=True)
class MeasureContext:
    """What one step's checks measure against. The warehouse does not change during the step,
    so a figure the checks ask for twice is measured once (`scalar`)."""

    con: duckdb.DuckDBPyConnection
    as_of: datetime
    data_dir: Path
    run_id: str | None
    _scalars: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def scalar(self, sql: str) -> Any:
        """The first value of `sql`'s first row, measured once per step: fct_purchase's
        reconciliations and its uniqueness ask for its distinct purchase_id three times, ~2 s
        a time at 1M customers. Texts that differ only in spacing or in quotes around a plain
        lower-case name (`marts."fct_purchase"` is marts.fct_purchase) are one query."""
        key = _same_query(sql)
        if key not in self._scalars:
            self._scalars[key] = self.con.execute(sql).fetchall()[0][0]
        return self._scalars[key]


_PLAIN_QUOTED = re.compile(r'"([a-z_][a-z0-9_]*)"')


def _same_query(sql: str) -> str:
    """`sql` with its spacing collapsed and plain quoted names unquoted: DuckDB binds a quoted
    lower-case name as the bare one. Left as it is when it has a string literal, inside which
    quotes and spaces are data."""
    if "'" in sql:
        return sql
    return " ".join(_PLAIN_QUOTED.sub(r"\1", sql).split())


@dataclass(frozen=True)
class Measurement:
    """`value` is compared with the target. `violation` fails the check whatever the value
    (e.g. a null customer_id among accepted rows); `None` value means it could not be measured."""

    value: float | None
    metadata: dict[str, Any] = field(default_factory=dict)
    violation: str | None = None
    note: str | None = None  # what went wrong, when the value alone misses the target


@dataclass(frozen=True)
class SloCheck:
    asset: dg.AssetKey
    product: DataProduct
    category: SloCategory
    description: str
    measure: Callable[[MeasureContext], Measurement]
    warn_only: bool = False  # report, never block (a compatibility output)

    @property
    def slo(self) -> Slo:
        slo = self.product.slos[self.category]
        if self.warn_only:
            return slo.model_copy(update={"severity": "WARN", "blocking": False})
        return slo

    @property
    def name(self) -> str:
        return f"{SLO_CHECK_PREFIX}{self.category.value}"

    @property
    def key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.asset, self.name)

    def spec(self) -> dg.AssetCheckSpec:
        slo = self.slo
        return dg.AssetCheckSpec(
            self.name,
            asset=self.asset,
            description=f"[{self.category.value}] {self.description} "
            f"SLO: {slo.objective} (target {slo.comparison} {slo.target:g} {slo.unit}).",
            blocking=slo.blocking,
            metadata={
                "slo_category": self.category.value,
                "target": slo.target,
                "comparison": slo.comparison,
                "unit": slo.unit,
                "severity": slo.severity,
                "blocking": slo.blocking,
                "data_product": self.product.name,
            },
        )

    def evaluate(self, ctx: MeasureContext) -> dg.AssetCheckResult:
        try:
            measured = self.measure(ctx)
        except LandingError as exc:  # a landing file that breaks the contract's columns
            measured = Measurement(None, violation=str(exc))
        except duckdb.Error as exc:  # a missing table or column is a failed check, not a crash
            measured = Measurement(None, violation=f"cannot measure: {exc}".splitlines()[0])
        passed = measured.violation is None and meets(self.slo, measured.value)
        return dg.AssetCheckResult(
            asset_key=self.asset,
            check_name=self.name,
            passed=passed,
            severity=dg.AssetCheckSeverity(self.slo.severity),
            description=measured.violation or (None if passed else measured.note),
            metadata=result_metadata(self, measured, ctx),
        )


def meets(slo: Slo, value: float | None) -> bool:
    if value is None:
        return False
    return value >= slo.target if slo.comparison == ">=" else value <= slo.target


def result_metadata(check: SloCheck, measured: Measurement, ctx: MeasureContext) -> dict:
    slo = check.slo
    meta: dict[str, Any] = {
        "slo_category": check.category.value,
        "measured": measured.value if measured.value is not None else "not measured",
        "target": slo.target,
        "comparison": slo.comparison,
        "unit": slo.unit,
        "severity": slo.severity,
        "blocking": slo.blocking,
        "as_of": ctx.as_of.isoformat(sep=" "),
    }
    if measured.violation:
        meta["violation"] = measured.violation
    for name, value in measured.metadata.items():
        meta[name] = dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
    return meta


def ratio(bad: int, total: int) -> float:
    """1 - bad/total, rounded for display; an empty table is fully good."""
    return round(1.0 - bad / total, 6) if total else 1.0

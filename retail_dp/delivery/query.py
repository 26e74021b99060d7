"""The `/v1/load` query, Cube/Lens style, and its translation into a MetricFlow request.

Member names are looked up in the semantic model (never spliced in as given); filter values
become `$pN` parameters bound at execution. Nothing a caller sends reaches the SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retail_dp.delivery.semantic import GRANULARITIES, Dimension, SemanticError, SemanticModel

DEFAULT_LIMIT = 1_000
MAX_LIMIT = 50_000
MAX_OFFSET = 10_000_000

Operator = Literal[
    "equals",
    "notEquals",
    "in",
    "notIn",
    "contains",
    "notContains",
    "startsWith",
    "gt",
    "gte",
    "lt",
    "lte",
    "set",
    "notSet",
    "inDateRange",
    "beforeDate",
    "afterDate",
]
Value = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filter(_Model):
    member: str = Field(description="A dimension, e.g. customer.country_code")
    operator: Operator
    values: list[Value] = []

    @model_validator(mode="after")
    def _arity(self) -> Filter:
        n = len(self.values)
        if self.operator in ("set", "notSet") and n:
            raise ValueError(f"{self.operator} takes no values")
        if self.operator in ("gt", "gte", "lt", "lte", "beforeDate", "afterDate") and n != 1:
            raise ValueError(f"{self.operator} takes exactly one value")
        if self.operator == "inDateRange" and n != 2:
            raise ValueError("inDateRange takes two values: [from, to]")
        if self.operator not in ("set", "notSet") and n == 0:
            raise ValueError(f"{self.operator} needs at least one value")
        if self.operator in ("inDateRange", "beforeDate", "afterDate"):
            for v in self.values:
                date.fromisoformat(str(v))  # a clear 422 for a malformed date
        return self


class TimeDimension(_Model):
    dimension: str = Field(description="A time dimension, e.g. purchase.purchase_date")
    granularity: Literal["day", "week", "month", "quarter", "year"] | None = None
    dateRange: list[date] | None = Field(default=None, min_length=2, max_length=2)


class LoadQuery(_Model):
    # sizes are capped by QueryLimits (a 400 naming the limit), not here (a 422)
    measures: list[str] = []
    dimensions: list[str] = []
    timeDimensions: list[TimeDimension] = []
    filters: list[Filter] = []
    segments: list[str] = []
    order: dict[str, Literal["asc", "desc"]] = Field(
        default={}, description="member -> asc|desc, applied in the given order"
    )
    limit: int | None = Field(
        default=None, ge=1, le=MAX_LIMIT, description=f"default {DEFAULT_LIMIT}, max {MAX_LIMIT}"
    )
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)

    @model_validator(mode="after")
    def _not_empty(self) -> LoadQuery:
        grouped = [t for t in self.timeDimensions if t.granularity]
        if not (self.measures or self.dimensions or grouped):
            raise ValueError("ask for at least one measure or dimension")
        return self


class QueryTooLarge(SemanticError):
    """A query over one of the service's size limits (HTTP 400, naming the limit)."""


@dataclass(frozen=True)
class QueryLimits:
    """How large one query may be. They bound what one request can cost before anything is
    compiled: MetricFlow's compile time grows with the filter values (20 filters of 100
    values take ~0.4 s; the 50 x 990 that stalled the service took 11 s)."""

    max_members: int = 30  # measures, dimensions, time dimensions and segments together
    max_filters: int = 20
    max_values_per_filter: int = 100
    max_values: int = 500  # over all filters
    max_string_length: int = 256  # a member name or a filter value

    def check(self, query: LoadQuery) -> None:
        members = [*query.measures, *query.dimensions, *query.segments]
        members += [t.dimension for t in query.timeDimensions]
        _at_most(len(members), self.max_members, "members", "max_members")
        _at_most(len(query.filters), self.max_filters, "filters", "max_filters")
        for f in query.filters:
            what = f"values in the filter on {f.member[:64]!r}"
            _at_most(len(f.values), self.max_values_per_filter, what, "max_values_per_filter")
        total = sum(len(f.values) for f in query.filters)
        _at_most(total, self.max_values, "filter values in all", "max_values")
        texts = [*members, *query.order, *(f.member for f in query.filters)]
        texts += [v for f in query.filters for v in f.values if isinstance(v, str)]
        longest = max((len(t) for t in texts), default=0)
        what = "characters in a member name or filter value"
        _at_most(longest, self.max_string_length, what, "max_string_length")


def _at_most(n: int, limit: int, what: str, name: str) -> None:
    if n > limit:
        raise QueryTooLarge(f"the query has {n} {what}; the limit is {limit} ({name})")


@dataclass
class Plan:
    """A validated query: what to compile, the values to bind, how to shape the rows."""

    measures: list[str]  # MetricFlow metric names
    group_by: list[tuple[str, str]]  # (MetricFlow name, API member)
    where: list[str]  # MetricFlow filters with $pN placeholders
    params: dict[str, Value | date] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)  # (output column, asc|desc)
    members: list[str] = field(default_factory=list)  # everything the caller asked for
    dimensions: dict[str, Dimension] = field(default_factory=dict)  # output member -> dimension
    filtered: list[str] = field(default_factory=list)  # dimensions the query filters on

    def bind(self, value: Value | date) -> str:
        name = f"p{len(self.params) + 1}"
        self.params[name] = value
        return f"${name}"


def _ref(dim: Dimension) -> str:
    if dim.type == "time":
        return f"{{{{ TimeDimension('{dim.mf_name()}', 'day') }}}}"
    return f"{{{{ Dimension('{dim.mf_name()}') }}}}"


def filter_sql(plan: Plan, dim: Dimension, operator: str, values: list) -> str:
    """One filter as a MetricFlow where clause; every value is a bound parameter."""
    col = _ref(dim)
    if dim.type == "time":
        try:
            values = [date.fromisoformat(str(v)) if isinstance(v, str) else v for v in values]
        except ValueError as exc:
            raise SemanticError(f"{dim.member}: {exc}; give dates as YYYY-MM-DD") from exc
    if operator in ("equals", "in", "notEquals", "notIn"):
        marks = ", ".join(plan.bind(v) for v in values)
        negate = operator in ("notEquals", "notIn")
        return f"({col} IS NULL OR {col} NOT IN ({marks}))" if negate else f"{col} IN ({marks})"
    if operator in ("contains", "notContains", "startsWith"):
        fn = "starts_with" if operator == "startsWith" else "contains"
        tests = " OR ".join(
            f"{fn}(lower(CAST({col} AS VARCHAR)), lower(CAST({plan.bind(str(v))} AS VARCHAR)))"
            for v in values
        )
        return f"NOT coalesce({tests}, false)" if operator == "notContains" else f"({tests})"
    comparisons = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "beforeDate": "<",
                   "afterDate": ">"}  # fmt: skip
    if operator in comparisons:
        return f"{col} {comparisons[operator]} {plan.bind(values[0])}"
    if operator == "set":
        return f"{col} IS NOT NULL"
    if operator == "notSet":
        return f"{col} IS NULL"
    if operator == "inDateRange":
        return f"{col} BETWEEN {plan.bind(values[0])} AND {plan.bind(values[1])}"
    raise SemanticError(f"unknown operator {operator!r}")


def plan_query(model: SemanticModel, query: LoadQuery) -> Plan:
    """Resolve members against the model. Access and masking are the policy layer's concern."""
    plan = Plan(measures=[], group_by=[], where=[])
    for name in query.measures:
        plan.measures.append(model.measure(name).name)
        plan.members.append(name)
    for name in query.dimensions:
        dim = model.dimension(name)
        if dim.type == "time":
            raise SemanticError(f"{name!r} is a time dimension: put it in timeDimensions")
        plan.group_by.append((dim.mf_name(), name))
        plan.dimensions[name] = dim
        plan.members.append(name)
    for td in query.timeDimensions:
        dim = model.dimension(td.dimension)
        if dim.type != "time":
            raise SemanticError(f"{td.dimension!r} is not a time dimension")
        plan.members.append(td.dimension)
        if td.granularity:
            assert td.granularity in GRANULARITIES
            member = f"{td.dimension}.{td.granularity}"
            plan.group_by.append((dim.mf_name(td.granularity), member))
            plan.dimensions[member] = dim
        if td.dateRange:
            plan.where.append(filter_sql(plan, dim, "inDateRange", list(td.dateRange)))
            plan.filtered.append(td.dimension)
    for f in query.filters:
        dim = model.dimension(f.member)
        plan.where.append(filter_sql(plan, dim, f.operator, f.values))
        plan.members.append(f.member)
        plan.filtered.append(f.member)
    for name in query.segments:
        segment = model.segment(name)
        spec = segment.filter
        plan.where.append(
            filter_sql(plan, model.dimension(spec["member"]), spec["operator"], spec["values"])
        )
        plan.members.append(name)
        plan.members.append(spec["member"])  # a segment filters on a member: govern it too
        plan.filtered.append(spec["member"])
    outputs = {member: mf for mf, member in plan.group_by}
    outputs.update({f"{model.measure(n).table}.{model.measure(n).name}": model.measure(n).name
                    for n in query.measures})  # fmt: skip
    for member, direction in query.order.items():
        if member not in outputs:
            raise SemanticError(f"order by {member!r}: only queried members can order the rows")
        plan.order.append((outputs[member], direction))
    return plan

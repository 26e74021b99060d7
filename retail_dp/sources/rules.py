"""Compile a pandera contract to DuckDB SQL, so rules run where the data is.

Values arrive as text (CSV read as VARCHAR, Parquet cast to VARCHAR) and are parsed here, with
no silent coercion: a number that does not fit its column's type is unparseable, never rounded
(2.5 is no quantity, NaN no price), and timestamps with an offset or `Z` become UTC instants.
Naive timestamps are UTC. The connection's session time zone must be UTC (`utc_session`).

`ident` and `literal` are the one place that quotes names and values into SQL; file paths and
run-time values are bound as parameters instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandera.pandas as pa

# pandera dtype (as str) -> DuckDB type
DUCKDB_TYPES = {
    "string[python]": "VARCHAR",
    "str": "VARCHAR",
    "Int64": "BIGINT",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "datetime64[ns]": "TIMESTAMP",
}
# How each type is parsed from text, per engine; `{x}` is the text, NULL when it does not parse.
# Both are written in DuckDB's dialect (Spark's is transpiled from it, retail_dp/spark/sql.py).
# The two engines' casts accept different text: DuckDB reads `1_000` as a number and
# `infinity` as a date, Spark reads `2026-01-05 25:00:00` as a date and refuses `12.0` as a
# BIGINT. So each parser first narrows the text to what it means on both, and a test feeds
# both engines the same awkward text (tests/test_spark.py).
PARSERS: dict[str, dict[str, str]] = {
    "duckdb": {
        "VARCHAR": "{x}",
        "BIGINT": (
            "CASE WHEN NOT contains({x}, '_') AND isfinite(TRY_CAST({x} AS DOUBLE)) "
            "AND TRY_CAST({x} AS DOUBLE) = trunc(TRY_CAST({x} AS DOUBLE)) "
            "THEN TRY_CAST(trim({x}) AS BIGINT) END"
        ),
        "DOUBLE": (
            "CASE WHEN NOT contains({x}, '_') AND isfinite(TRY_CAST({x} AS DOUBLE)) "
            "THEN TRY_CAST({x} AS DOUBLE) END"
        ),
        "BOOLEAN": "TRY_CAST(trim({x}) AS BOOLEAN)",
        # DuckDB also reads the words `epoch` and `infinity` as dates: not from a CSV
        "DATE": (
            "CASE WHEN left(trim({x}), 1) BETWEEN '0' AND '9' THEN coalesce("
            "TRY_CAST(trim({x}) AS DATE), "
            "CAST(timezone('UTC', TRY_CAST(trim({x}) AS TIMESTAMPTZ)) AS DATE)) END"
        ),
        "TIMESTAMP": (
            "CASE WHEN left(trim({x}), 1) BETWEEN '0' AND '9' "
            "THEN timezone('UTC', TRY_CAST(trim({x}) AS TIMESTAMPTZ)) END"
        ),
    },
    # NaN and infinity are the doubles whose absolute value is not <= the largest finite one
    "spark": {
        "VARCHAR": "{x}",
        "BIGINT": (
            "CASE WHEN NOT contains({x}, '_') "
            "AND abs(TRY_CAST({x} AS DOUBLE)) <= 1.7976931348623157e308 "
            "AND TRY_CAST({x} AS DOUBLE) % 1 = 0 "
            "THEN TRY_CAST(TRY_CAST(trim({x}) AS DECIMAL(38, 6)) AS BIGINT) END"
        ),
        "DOUBLE": (
            "CASE WHEN NOT contains({x}, '_') "
            "AND abs(TRY_CAST({x} AS DOUBLE)) <= 1.7976931348623157e308 "
            "THEN TRY_CAST({x} AS DOUBLE) END"
        ),
        "BOOLEAN": "TRY_CAST(trim({x}) AS BOOLEAN)",
        "DATE": (
            "coalesce(CASE WHEN regexp_matches(trim({x}), "
            "'^[0-9]{{4}}-[0-9]{{1,2}}-[0-9]{{1,2}}$') THEN TRY_CAST(trim({x}) AS DATE) END, "
            "CAST(TRY_CAST(trim({x}) AS TIMESTAMP) AS DATE))"
        ),
        "TIMESTAMP": "TRY_CAST(trim({x}) AS TIMESTAMP)",
    },
}
WHAT_PARSES = {
    "BIGINT": "a whole number within BIGINT",
    "DOUBLE": "a finite number",
    "BOOLEAN": "true or false",
    "DATE": "a date",
    "TIMESTAMP": "a timestamp",
}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def utc_session(con: duckdb.DuckDBPyConnection) -> None:
    """Naive timestamps are UTC, whatever the machine's zone: parsing depends on it."""
    con.execute("SET TimeZone = 'UTC'")


def duckdb_type(column: pa.Column) -> str:
    try:
        return DUCKDB_TYPES[str(column.dtype)]
    except KeyError as exc:
        raise TypeError(
            f"column {column.name!r}: no DuckDB type for pandera dtype {column.dtype}"
        ) from exc


def parse(column: pa.Column, text: str, engine: str = "duckdb") -> str:
    """SQL for the typed value of `text`; NULL when it does not fit the column's type."""
    return PARSERS[engine][duckdb_type(column)].format(x=text)


def check_predicate(check: pa.Check, expr: str) -> str:
    """SQL that is TRUE when `expr` passes the pandera check (NULLs are handled elsewhere)."""
    stats = check.statistics
    match check.name:
        case "greater_than":
            return f"{expr} > {literal(stats['min_value'])}"
        case "greater_than_or_equal_to":
            return f"{expr} >= {literal(stats['min_value'])}"
        case "less_than":
            return f"{expr} < {literal(stats['max_value'])}"
        case "less_than_or_equal_to":
            return f"{expr} <= {literal(stats['max_value'])}"
        case "in_range":
            low = ">=" if stats.get("include_min", True) else ">"
            high = "<=" if stats.get("include_max", True) else "<"
            return (
                f"({expr} {low} {literal(stats['min_value'])}"
                f" AND {expr} {high} {literal(stats['max_value'])})"
            )
        case "isin" | "iso_country":
            return f"{expr} IN ({', '.join(literal(v) for v in stats['allowed_values'])})"
        case "notin":
            return f"{expr} NOT IN ({', '.join(literal(v) for v in stats['forbidden_values'])})"
        case "str_matches":
            return f"regexp_matches({expr}, {literal(stats['pattern'])})"
        case "str_length":
            return f"length({expr}) <= {literal(stats['max_value'])}"
        case _:
            raise NotImplementedError(f"no SQL for pandera check {check.name!r}")


def describe_check(check: pa.Check) -> str:
    if check.name == "iso_country":
        return "iso_country(alpha-2, alpha-3 or English name)"
    if check.name == "isin" and len(check.statistics["allowed_values"]) > 12:
        return f"isin({len(check.statistics['allowed_values'])} allowed values)"
    args = ", ".join(
        str(v) for v in check.statistics.values() if v is not None and not isinstance(v, bool)
    )
    return f"{check.name}({args})"


REASONS = {
    "greater_than": "out_of_range",
    "greater_than_or_equal_to": "out_of_range",
    "less_than": "out_of_range",
    "less_than_or_equal_to": "out_of_range",
    "in_range": "out_of_range",
    "isin": "not_allowed",
    "iso_country": "not_allowed",
    "str_matches": "bad_format",
    "str_length": "invalid_identifier",
}


@dataclass(frozen=True)
class Rule:
    """One reason a row can be rejected: a SQL condition that is TRUE for a bad row."""

    reason: str
    field: str  # the column the rule judges
    condition: str
    detail: str  # SQL expression that explains the rejection


def _shown(expr: str, limit: int = 200) -> str:
    """A value quoted into a quarantine detail, cut short so one huge field stays readable."""
    return f"left({expr}::VARCHAR, {limit})"


def row_rules(schema: pa.DataFrameSchema, raw: str, typed: dict[str, str]) -> list[Rule]:
    """Rules that look at one row, in order of precedence. `raw` is the raw table alias and
    `typed` maps each column to the SQL of its parsed value."""
    rules: list[Rule] = []
    key = schema.metadata["key"]
    limit = schema.metadata.get("max_field_length", 1_000_000)
    for name in schema.columns:
        col = f"{raw}.{ident(name)}"
        rules.append(
            Rule(
                "oversized_field",
                name,
                f"length({col}) > {limit}",
                f"'{name} has ' || length({col}) || ' characters, more than {limit}'",
            )
        )
    for name, column in schema.columns.items():
        typ = duckdb_type(column)
        if typ != "VARCHAR":
            col = f"{raw}.{ident(name)}"
            rules.append(
                Rule(
                    "unparseable_value",
                    name,
                    f"{col} IS NOT NULL AND {typed[name]} IS NULL",
                    f"'{name}=' || {_shown(col)} || ' is not {WHAT_PARSES[typ]}'",
                )
            )
    rules.append(Rule("missing_key", key, f"{typed[key]} IS NULL", f"'{key} is missing'"))
    for name, column in schema.columns.items():
        if not column.nullable and name != key:
            rules.append(
                Rule("missing_value", name, f"{typed[name]} IS NULL", f"'{name} is missing'")
            )
    for name, column in schema.columns.items():
        for check in column.checks:
            if check.raise_warning:
                continue  # kept; counted by the validity SLO
            value = typed[name]
            rules.append(
                Rule(
                    REASONS.get(check.name, "out_of_range"),
                    name,
                    f"{value} IS NOT NULL AND NOT ({check_predicate(check, value)})",
                    f"'{name}=' || {_shown(value)} || "
                    + literal(f" breaks {describe_check(check)}"),
                )
            )
    return rules


def warning_checks(schema: pa.DataFrameSchema) -> list[tuple[str, str]]:
    """(label, SQL TRUE for a row that breaks it) for each rule that keeps the row, on the
    parsed columns."""
    found = []
    for name, column in schema.columns.items():
        for check in column.checks:
            if check.raise_warning:
                predicate = check_predicate(check, ident(name))
                found.append(
                    (
                        f"{name} breaks {describe_check(check)}",
                        f"{ident(name)} IS NOT NULL AND NOT ({predicate})",
                    )
                )
    return found


def ceiling_label(schema: pa.DataFrameSchema) -> str | None:
    ceiling = schema.metadata.get("price_ceiling")
    if not ceiling or ceiling.get("on_fail", "reject") == "reject":
        return None
    return f"{ceiling['column']} breaks price_ceiling({ceiling['ratio']}x list price)"

"""Compile a pandera contract to DuckDB SQL, so rules run where the data is."""

from __future__ import annotations

from dataclasses import dataclass

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


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def duckdb_type(column: pa.Column) -> str:
    try:
        return DUCKDB_TYPES[str(column.dtype)]
    except KeyError as exc:
        raise TypeError(
            f"column {column.name!r}: no DuckDB type for pandera dtype {column.dtype}"
        ) from exc


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
        case "isin":
            return f"{expr} IN ({', '.join(literal(v) for v in stats['allowed_values'])})"
        case "notin":
            return f"{expr} NOT IN ({', '.join(literal(v) for v in stats['forbidden_values'])})"
        case "str_matches":
            return f"regexp_matches({expr}, {literal(stats['pattern'])})"
        case _:
            raise NotImplementedError(f"no SQL for pandera check {check.name!r}")


def describe_check(check: pa.Check) -> str:
    args = ", ".join(f"{v}" for v in check.statistics.values() if not isinstance(v, bool))
    return f"{check.name}({args})"


@dataclass(frozen=True)
class Rule:
    """One reason a row can be rejected: a SQL condition that is TRUE for a bad row."""

    reason: str
    field: str  # the column the rule judges
    condition: str
    detail: str  # SQL expression that explains the rejection


def row_rules(schema: pa.DataFrameSchema, raw: str, as_of_literal: str) -> list[Rule]:
    """Rules that look at one row, in order of precedence. `raw` is the raw table alias."""
    rules: list[Rule] = []
    key = schema.metadata["key"]
    for name, column in schema.columns.items():
        col = f"{raw}.{ident(name)}"
        typ = duckdb_type(column)
        if typ != "VARCHAR":
            rules.append(
                Rule(
                    "unparseable_value",
                    name,
                    f"{col} IS NOT NULL AND TRY_CAST({col} AS {typ}) IS NULL",
                    f"'{name}=' || {col} || ' is not a valid {typ}'",
                )
            )
    rules.append(Rule("missing_key", key, f"{raw}.{ident(key)} IS NULL", f"'{key} is missing'"))
    for name, column in schema.columns.items():
        if not column.nullable and name != key:
            col = f"{raw}.{ident(name)}"
            rules.append(Rule("missing_value", name, f"{col} IS NULL", f"'{name} is missing'"))
    for name, column in schema.columns.items():
        typed = f"TRY_CAST({raw}.{ident(name)} AS {duckdb_type(column)})"
        for check in column.checks:
            if check.raise_warning:
                continue  # kept; counted by the validity SLO
            rules.append(
                Rule(
                    "out_of_range",
                    name,
                    f"{typed} IS NOT NULL AND NOT ({check_predicate(check, typed)})",
                    f"'{name}=' || {typed}::VARCHAR || "
                    + literal(f" breaks {describe_check(check)}"),
                )
            )
    for name in schema.metadata.get("not_after_as_of", []):
        typed = f"TRY_CAST({raw}.{ident(name)} AS TIMESTAMP)"
        rules.append(
            Rule(
                "after_as_of",
                name,
                f"{typed} > {as_of_literal}",
                f"'{name}=' || {typed}::VARCHAR || ' is after as_of {as_of_literal[11:-1]}'",
            )
        )
    return rules

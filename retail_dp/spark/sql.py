"""DuckDB SQL to Spark SQL: the contract rules are written once, in DuckDB's dialect."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

_T = exp.DataType.Type
_TIMESTAMPS = {_T.TIMESTAMP, _T.TIMESTAMPTZ, _T.TIMESTAMPNTZ}


def _instant(node: exp.Expression) -> exp.Expression:
    # sqlglot writes DuckDB's TIMESTAMP as Spark's TIMESTAMP_NTZ, a wall-clock time. The
    # product's timestamps are UTC instants: Spark's TIMESTAMP_LTZ in a UTC session. (With
    # NTZ, dbt-spark's date macros once gave empty tables under a green dbt test.)
    if isinstance(node, exp.DataType) and node.this in _TIMESTAMPS:
        return exp.DataType.build("TIMESTAMPLTZ")
    return node


def to_spark(sql: str) -> str:
    """One DuckDB statement as Spark SQL."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return tree.transform(_instant).sql(dialect="spark")

"""Column profiles of an accepted source table, in the manner of DataOS's Metis, computed in
SQL so they hold at 20M rows: type, null %, distinct count, min and max, the most frequent
values and, for numbers, outliers by the IQR rule."""

from __future__ import annotations

import json

import duckdb

from retail_dp.sources.rules import ident

NUMERIC = {"BIGINT", "DOUBLE", "INTEGER"}
CATEGORICAL = {"VARCHAR", "BOOLEAN"}
TOP_VALUES = 5


def profile_table(
    con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], key: str | None = None
) -> dict[str, dict]:
    """One entry per column; `columns` maps name -> DuckDB type. The `key` column (unique in
    an accepted table) gets no most frequent values: each would be counted once, and finding
    them grouped every row (1.5 s of the 5.7 s profile of 20.6M purchase lines)."""
    parts = ["count(*) AS n"]
    for i, (name, typ) in enumerate(columns.items()):
        col = ident(name)
        parts += [
            f"count({col}) AS nn{i}",
            f"approx_count_distinct({col}) AS d{i}",
            f"min({col})::VARCHAR AS lo{i}",
            f"max({col})::VARCHAR AS hi{i}",
        ]
        if typ in NUMERIC:
            parts.append(f"approx_quantile({col}, [0.25, 0.75]) AS q{i}")
    row = con.execute(f"SELECT {', '.join(parts)} FROM {table}").fetchall()[0]
    values = iter(row)
    total = next(values)
    profile: dict[str, dict] = {}
    for name, typ in columns.items():
        non_null, distinct, low, high = (next(values) for _ in range(4))
        entry = {
            "type": typ,
            "null_pct": round(100.0 * (total - non_null) / total, 4) if total else 0.0,
            "distinct": int(distinct),
            "min": low,
            "max": high,
        }
        if typ in NUMERIC:
            q1, q3 = next(values) or (None, None)
            entry.update(_outliers(con, table, name, q1, q3))
        if typ in CATEGORICAL and name == key:
            entry["top_values"] = []  # the key: every value once
        elif typ in CATEGORICAL:
            entry["top_values"] = [
                {"value": v, "count": c}
                for v, c in con.execute(
                    f"SELECT {ident(name)}::VARCHAR, count(*) FROM {table} "
                    f"WHERE {ident(name)} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
                    [TOP_VALUES],
                ).fetchall()
            ]
        profile[name] = entry
    return profile


# the last profile of each source, with the load whose accepted rows it describes
PROFILES = "sources.column_profiles"
PROFILES_DDL = f"""
CREATE TABLE IF NOT EXISTS {PROFILES} (
    source VARCHAR PRIMARY KEY,
    load_id BIGINT NOT NULL,
    profile JSON NOT NULL,
    profiled_at TIMESTAMP NOT NULL
)"""


def profile_load(
    con: duckdb.DuckDBPyConnection,
    source: str,
    table: str,
    columns: dict[str, str],
    key: str | None,
    load_id: int,
    previous_load_id: int = 0,
    unchanged: bool = False,
) -> tuple[dict[str, dict], bool]:
    """The profile of `table` after load `load_id`, and whether it was reused: when the load
    left the accepted rows `unchanged`, the profile stored by the load before it
    (`previous_load_id`) still describes them, if it has the same columns. A source with no
    new file is profiled in no time instead of 4.6 s (20.6M purchase lines). The profile is
    stored as this load's."""
    con.execute(PROFILES_DDL)
    profile = None
    if unchanged and previous_load_id:
        stored = con.execute(
            f"SELECT profile FROM {PROFILES} WHERE source = ? AND load_id = ?",
            [source, previous_load_id],
        ).fetchall()
        profile = json.loads(stored[0][0]) if stored else None
        if profile is not None and {c: p["type"] for c, p in profile.items()} != columns:
            profile = None
    reused = profile is not None
    if profile is None:
        profile = profile_table(con, table, columns, key)
    con.execute(
        f"INSERT OR REPLACE INTO {PROFILES} VALUES (?, ?, ?, now()::TIMESTAMP)",
        [source, load_id, json.dumps(profile)],
    )
    return profile, reused


def _outliers(con, table: str, name: str, q1: float | None, q3: float | None) -> dict:
    if q1 is None or q3 is None:
        return {"q1": None, "q3": None, "outliers_iqr": 0}
    spread = 1.5 * (q3 - q1)
    low, high = q1 - spread, q3 + spread
    count = con.execute(
        f"SELECT count(*) FROM {table} WHERE {ident(name)} < ? OR {ident(name)} > ?",
        [low, high],
    ).fetchall()[0][0]
    return {"q1": q1, "q3": q3, "iqr_fences": [low, high], "outliers_iqr": int(count)}


def profile_markdown(profile: dict[str, dict]) -> str:
    """The profile as a table for the Dagster UI."""
    lines = [
        "| column | type | null % | distinct | min | max | IQR outliers | top values |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in profile.items():
        top = ", ".join(f"{t['value']} ({t['count']})" for t in p.get("top_values", [])[:3])
        lines.append(
            f"| {name} | {p['type']} | {p['null_pct']} | {p['distinct']} | {p['min']} | "
            f"{p['max']} | {p.get('outliers_iqr', '')} | {top} |"
        )
    return "\n".join(lines)

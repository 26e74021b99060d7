"""Load one source's landing files into the warehouse with DuckDB's own readers.

Every row read ends up in exactly one place: the accepted table `sources.<name>` or
`sources.quarantine` with its reason. The swap happens in one transaction, so a failed load
leaves the previous accepted table and its quarantine rows as they were.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandera.pandas as pa

from retail_dp.sources.audit import LandingAudit, audit_judgement, save_audit
from retail_dp.sources.contracts import country_spellings
from retail_dp.sources.landing import (
    LandingFiles,
    check_file_columns,
    find_landing_files,
    reader_sql,
)
from retail_dp.sources.rules import (
    Rule,
    duckdb_type,
    ident,
    literal,
    parse,
    row_rules,
    utc_session,
)

SCHEMA = "sources"
QUARANTINE = f"{SCHEMA}.quarantine"
QUARANTINE_DDL = f"""
CREATE TABLE IF NOT EXISTS {QUARANTINE} (
    source VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    field VARCHAR,
    detail VARCHAR,
    record JSON NOT NULL,
    as_of TIMESTAMP NOT NULL,
    run_id VARCHAR,
    quarantined_at TIMESTAMP NOT NULL
)"""


# Erased customers (GDPR Art. 17, `retail-dp erase`): SHA-256 digests of their trimmed
# customer_id, one per line, in the landing zone. Their rows are dropped from every source
# with this column before anything is judged, and counted as `rows_suppressed`.
SUPPRESSION_LIST = "_suppressed_customers.txt"
SUPPRESSED_COLUMN = "customer_id"


def suppression_digest(customer_id: str) -> str:
    return hashlib.sha256(customer_id.strip().encode()).hexdigest()


def read_suppression_list(data_dir: Path) -> list[str]:
    path = data_dir / SUPPRESSION_LIST
    if not path.exists():
        return []
    return sorted({line.strip() for line in path.read_text().splitlines() if line.strip()})


def add_to_suppression_list(data_dir: Path, customer_id: str) -> str:
    digest = suppression_digest(customer_id)
    if digest not in read_suppression_list(data_dir):
        with open(data_dir / SUPPRESSION_LIST, "a") as f:
            f.write(digest + "\n")
    return digest


def _suppress(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema, digests) -> int:
    """Drop the rows of erased customers from `_raw`; returns how many."""
    if not digests or SUPPRESSED_COLUMN not in schema.columns:
        return 0
    column = f"trim(CAST({ident(SUPPRESSED_COLUMN)} AS VARCHAR))"
    dropped = con.execute(
        f"DELETE FROM _raw WHERE sha256({column}) IN (SELECT unnest($digests))",
        {"digests": list(digests)},
    )
    return dropped.fetchall()[0][0]


@dataclass
class LoadResult:
    source: str
    files: list[str]
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_deferred: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    audit: LandingAudit | None = None

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined + self.rows_deferred


def table(source: str) -> str:
    return f"{SCHEMA}.{ident(source)}"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(QUARANTINE_DDL)


def _cross_table_rules(
    schema: pa.DataFrameSchema, typed: dict[str, str]
) -> tuple[list[str], list[Rule], str]:
    """Joins to accepted upstream tables, the rules that use them, and the SQL that is TRUE
    for a kept row that breaks a warning-only cross-table rule (else FALSE)."""
    joins: list[str] = []
    rules: list[Rule] = []
    warned = "FALSE"
    for i, (column, (source, ref_col)) in enumerate(schema.metadata.get("references", {}).items()):
        alias = f"ref{i}"
        joins.append(
            f"LEFT JOIN {table(source)} {alias} ON {alias}.{ident(ref_col)} = {typed[column]}"
        )
        rules.append(
            Rule(
                "orphan_reference",
                column,
                f"{alias}.{ident(ref_col)} IS NULL",
                f"'{column}=' || left({typed[column]}, 200) || ' does not exist in "
                f"{source}.{ref_col}'",
            )
        )
    ceiling = schema.metadata.get("price_ceiling")
    if ceiling:
        source, join_col, ref_key, ref_price = ceiling["reference"]
        col, ratio = ceiling["column"], ceiling["ratio"]
        alias = "ceiling"
        joins.append(
            f"LEFT JOIN {table(source)} {alias} ON {alias}.{ident(ref_key)} = {typed[join_col]}"
        )
        price = f"{alias}.{ident(ref_price)}"
        broken = f"({price} > 0 AND {typed[col]} > {literal(ratio)} * {price})"
        if ceiling.get("on_fail", "reject") == "reject":
            rules.append(
                Rule(
                    "out_of_range",
                    col,
                    broken,
                    f"'{col}=' || {typed[col]}::VARCHAR || ' is more than {ratio}x the list "
                    f"price ' || {price}::VARCHAR",
                )
            )
        else:
            warned = f"coalesce({broken}, FALSE)"
    return joins, rules, warned


def _typed_columns(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema) -> dict[str, str]:
    """Each column's parsed value as SQL over the raw alias `r` (and `cty` for countries)."""
    typed = {name: parse(column, f"r.{ident(name)}") for name, column in schema.columns.items()}
    for name in schema.metadata.get("identifiers", []):
        typed[name] = f"nullif(trim(r.{ident(name)}), '')"
    for name in schema.metadata.get("normalise_country", []):
        _country_table(con)
        typed[name] = (
            f"coalesce((SELECT c.alpha2 FROM _countries c "
            f"WHERE c.spelling = upper(trim(r.{ident(name)}))), r.{ident(name)})"
        )
    return typed


def _country_table(con: duckdb.DuckDBPyConnection) -> None:
    spellings = country_spellings()
    con.execute("CREATE OR REPLACE TEMP TABLE _countries (spelling VARCHAR, alpha2 VARCHAR)")
    con.executemany("INSERT INTO _countries VALUES (?, ?)", list(spellings.items()))


def judge(
    con: duckdb.DuckDBPyConnection,
    schema: pa.DataFrameSchema,
    files: LandingFiles,
    as_of: datetime,
    suppressed: list[str] | None = None,
) -> int:
    """Read the landing files into temp tables `_raw` (as read) and `_checked` (typed, with each
    row's verdict: `_reason`, `_field`, `_detail`, NULL when accepted, `deferred` for a row
    dated after as_of). Returns rows read.

    Writes nothing but temp tables: the quality checks use it to audit a landing zone that has
    not been loaded."""
    utc_session(con)
    columns = list(schema.columns)
    key, newest_by = schema.metadata["key"], schema.metadata["newest_by"]
    parsed = _typed_columns(con, schema)
    # the rules read each parsed value once, from the inner select's `_t_<column>`
    typed = {c: f"r.{ident('_t_' + c)}" for c in columns}
    joins, cross_rules, ceiling_warned = _cross_table_rules(schema, typed)
    rules = row_rules(schema, "r", typed) + cross_rules
    deferred = " OR ".join(
        f"coalesce({typed[c]} > $as_of, FALSE)" for c in schema.metadata.get("defer_after_as_of")
    )
    deferral = [Rule("deferred", "", deferred, "NULL")] if deferred else []
    verdicts = [*deferral, *rules, _duplicate_rule(key, newest_by)]
    read, params = reader_sql(files, columns)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _raw AS "
        f"SELECT row_number() OVER () AS _row, * FROM ({read})",
        params,
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _suppressed AS SELECT ? AS n",
        [_suppress(con, schema, suppressed)],
    )
    rows_read = con.execute("SELECT count(*) FROM _raw").fetchall()[0][0]
    inner = ", ".join(f"{parsed[c]} AS {ident('_t_' + c)}" for c in columns)
    first = "CASE " + " ".join(f"WHEN {r.condition} THEN {i}" for i, r in enumerate(verdicts[:-1]))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _checked AS
        SELECT r._row, r._file, {", ".join(f"{typed[c]} AS {ident(c)}" for c in columns)},
            {first} END AS _rule,
            {_by_rule(verdicts, "reason")} AS _reason,
            {_by_rule(verdicts, "field")} AS _field,
            {_by_rule(verdicts, "detail")} AS _detail,
            {ceiling_warned} AS _ceiling_warned
        FROM (SELECT r.*, {inner} FROM _raw r) r {" ".join(joins)}""",
        {"as_of": as_of} if deferred else None,
    )
    _mark_duplicates(con, key, newest_by, len(verdicts) - 1)
    return rows_read


def _duplicate_rule(key: str, newest_by: str) -> Rule:
    return Rule(
        "duplicate_key",
        key,
        "FALSE",  # decided by _mark_duplicates, over the keys that repeat
        f"'{key}=' || {ident(key)} || ' has a newer row by {newest_by}'",
    )


def _by_rule(verdicts: list[Rule], what: str) -> str:
    """The rule's reason, field or detail, picked by the row's rule number (`_rule`, an alias
    of the same SELECT): only the matching branch is evaluated, for the rejected rows."""

    def value(rule: Rule) -> str:
        return rule.detail if what == "detail" else literal(getattr(rule, what))

    return (
        "CASE _rule "
        + " ".join(f"WHEN {i} THEN {value(r)}" for i, r in enumerate(verdicts[:-1]))
        + " END"
    )


def _mark_duplicates(con: duckdb.DuckDBPyConnection, key: str, newest_by: str, rule: int) -> None:
    """Of accepted rows sharing a key, keep the newest by `newest_by` (then the later file and
    row). Only the keys that repeat are ranked: a sort of every row would cost far more."""
    dup = _duplicate_rule(key, newest_by)
    detail = dup.detail.replace(ident(key), f"c.{ident(key)}")
    con.execute(
        f"""UPDATE _checked c SET _rule = {rule}, _reason = {literal(dup.reason)},
            _field = {literal(dup.field)}, _detail = {detail}
        FROM (
            SELECT _row, row_number() OVER (
                PARTITION BY {ident(key)}
                ORDER BY {ident(newest_by)} DESC, _file DESC, _row DESC
            ) AS _rank
            FROM _checked
            WHERE _rule IS NULL AND {ident(key)} IN (
                SELECT {ident(key)} FROM _checked WHERE _rule IS NULL
                GROUP BY ALL HAVING count(*) > 1
            )
        ) ranked
        WHERE c._row = ranked._row AND ranked._rank > 1"""
    )


def drop_judgement(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE IF EXISTS _raw")
    con.execute("DROP TABLE IF EXISTS _checked")
    con.execute("DROP TABLE IF EXISTS _suppressed")


def load_source(
    con: duckdb.DuckDBPyConnection,
    schema: pa.DataFrameSchema,
    data_dir: Path,
    location: str,
    as_of: datetime,
    run_id: str | None = None,
    freshness_column: str | None = None,
) -> LoadResult:
    """Validate and load one source; returns the reconciliation figures.

    The accepted table, the source's quarantine rows and its landing audit (the figures the
    quality checks measure) are replaced in one transaction."""
    source = schema.name
    files = find_landing_files(data_dir, location, source)
    for path in files.all:
        check_file_columns(con, path, schema)
    ensure_schema(con)
    columns = list(schema.columns)
    raw_cols = ", ".join(f"r.{ident(c)}" for c in columns)
    try:
        rows_read = judge(con, schema, files, as_of, read_suppression_list(data_dir))
        audit = audit_judgement(con, schema, files, rows_read, as_of, freshness_column, run_id)
        audit.rows_suppressed = con.execute("SELECT n FROM _suppressed").fetchall()[0][0]
        select_cols = ", ".join(ident(c) for c in columns)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                f"CREATE OR REPLACE TABLE {table(source)} AS SELECT {select_cols} "
                "FROM _checked WHERE _reason IS NULL"
            )
            con.execute(f"DELETE FROM {QUARANTINE} WHERE source = ?", [source])
            con.execute(
                f"""INSERT INTO {QUARANTINE}
                SELECT ?, c._file, c._row, c._reason, c._field, c._detail,
                       to_json(struct_pack({raw_cols})), ?, ?, now()::TIMESTAMP
                FROM _checked c JOIN _raw r USING (_row)
                WHERE c._reason IS NOT NULL AND c._reason <> 'deferred' ORDER BY c._row""",
                [source, as_of, run_id],
            )
            save_audit(con, audit)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    finally:
        drop_judgement(con)
    return _result(con, source, files, columns, schema, rows_read, audit)


def _result(con, source, files, columns, schema, rows_read: int, audit) -> LoadResult:
    accepted = con.execute(f"SELECT count(*) FROM {table(source)}").fetchall()[0][0]
    by_reason = dict(
        con.execute(
            f"SELECT reason, count(*) FROM {QUARANTINE} WHERE source = ? GROUP BY 1 ORDER BY 1",
            [source],
        ).fetchall()
    )
    quarantined = sum(by_reason.values())
    return LoadResult(
        rows_deferred=audit.rows_deferred,
        source=source,
        files=[str(p) for p in files.all],
        rows_read=rows_read,
        rows_accepted=accepted,
        rows_quarantined=quarantined,
        quarantined_by_reason=by_reason,
        columns={c: duckdb_type(schema.columns[c]) for c in columns},
        audit=audit,
    )

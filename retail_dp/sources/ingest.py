"""Load one source's landing files into the warehouse with DuckDB's own readers.

Every row read ends up in exactly one place: the accepted table `sources.<name>`,
`sources.quarantine` with its reason, or `sources.deferred` when it is dated after as_of. A
load reads only new or changed files (sources/registry.py); the rows loaded before that might
now be judged differently (quarantined, deferred, or referencing a changed upstream row) are
judged again with them. The writes happen in one transaction, so a failed load leaves the
previous accepted table, quarantine and deferred rows as they were.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandera.pandas as pa

from retail_dp.resources import transaction
from retail_dp.sources.audit import LandingAudit, audit_judgement, load_audit, save_audit
from retail_dp.sources.contracts import country_spellings, upstream_sources
from retail_dp.sources.landing import (
    AMBIGUOUS_TYPED_VALUE,
    TYPED_CSV_TYPES,
    LandingFiles,
    check_file_columns,
    file_columns,
    find_landing_files,
    in_source_folder,
    relation,
    typed_csv_relation,
)
from retail_dp.sources.registry import (
    CHANGES,
    Plan,
    ensure_registry,
    plan_load,
    record_load,
    suppressed_rows,
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
# rows dated after the as_of they were read at: judged again by every later load
DEFERRED = f"{SCHEMA}.deferred"
DEFERRED_DDL = f"""
CREATE TABLE IF NOT EXISTS {DEFERRED} (
    source VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    record JSON NOT NULL,
    as_of TIMESTAMP NOT NULL,
    run_id VARCHAR
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


def _suppress(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema, digests):
    """Drop the rows of erased customers from `_raw`; returns how many, per file."""
    if not digests or SUPPRESSED_COLUMN not in schema.columns:
        return Counter()
    column = f"trim(CAST({ident(SUPPRESSED_COLUMN)} AS VARCHAR))"
    dropped = con.execute(
        f"INSERT INTO _dropped SELECT _row, _file FROM _raw "
        f"WHERE sha256({column}) IN (SELECT unnest($digests)) RETURNING _file",
        {"digests": list(digests)},
    ).fetchall()
    _raw_view(con, schema)
    return Counter(row[0] for row in dropped)


# the catalog of the work tables a judgement reads and writes (`judging`)
JUDGING = "_judging"


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
    # what this load did: full or increment (and why), the files it read or took back, the
    # rows it read from them and the accepted rows it added or removed
    mode: str = "full"
    reason: str = ""
    files_loaded: list[str] = field(default_factory=list)
    files_retracted: list[str] = field(default_factory=list)
    rows_loaded: int = 0
    keys_changed: int = 0
    # the CSV files read as text because a typed column's value was not in its strict form
    files_read_as_text: list[str] = field(default_factory=list)
    # this load (sources.loads) and the source's load before it (0 for none)
    load_id: int = 0
    previous_load_id: int = 0

    @property
    def left_rows_unchanged(self) -> bool:
        """An increment after which the accepted rows hold the same values as before it (an
        update is a removed and an added key, so it counts as a change)."""
        return self.mode == "increment" and self.keys_changed == 0 and self.previous_load_id > 0

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined + self.rows_deferred


def table(source: str) -> str:
    return f"{SCHEMA}.{ident(source)}"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(QUARANTINE_DDL)
    con.execute(DEFERRED_DDL)
    ensure_registry(con)


def _cross_table_rules(
    schema: pa.DataFrameSchema, typed: dict[str, str], accepted: Callable[[str], str] = table
) -> tuple[list[str], list[Rule], str]:
    """Joins to accepted upstream tables (named by `accepted`), the rules that use them, and
    the SQL that is TRUE for a kept row that breaks a warning-only cross-table rule (else
    FALSE)."""
    joins: list[str] = []
    rules: list[Rule] = []
    warned = "FALSE"
    for i, (column, (source, ref_col)) in enumerate(schema.metadata.get("references", {}).items()):
        alias = f"ref{i}"
        joins.append(
            f"LEFT JOIN {accepted(source)} {alias} ON {alias}.{ident(ref_col)} = {typed[column]}"
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
            f"LEFT JOIN {accepted(source)} {alias} ON {alias}.{ident(ref_key)} = {typed[join_col]}"
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


def _typed_columns(schema: pa.DataFrameSchema, engine: str) -> tuple[dict[str, str], list[str]]:
    """Each column's parsed value as SQL over the raw alias `r`, and the joins it needs:
    countries are looked up in `_countries` (which `_country_table` fills; one row per
    spelling) by a left join. A correlated subquery did the same, but Spark copied it into every
    rule that reads the column: judging 1M customers took 145 s on Spark, 15 s with the join."""
    typed = {
        name: parse(column, f"r.{ident(name)}", engine) for name, column in schema.columns.items()
    }
    for name in schema.metadata.get("identifiers", []):
        typed[name] = f"nullif(trim(r.{ident(name)}), '')"
    joins = []
    for i, name in enumerate(schema.metadata.get("normalise_country", [])):
        alias = f"_country_{i}"
        joins.append(
            f"LEFT JOIN _countries {alias} ON {alias}.spelling = upper(trim(r.{ident(name)}))"
        )
        typed[name] = f"coalesce({alias}.alpha2, r.{ident(name)})"
    return typed, joins


def _country_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE OR REPLACE TABLE {JUDGING}._countries (spelling VARCHAR, alpha2 VARCHAR)")
    con.executemany("INSERT INTO _countries VALUES (?, ?)", list(country_spellings().items()))


def typed_reads(schema: pa.DataFrameSchema) -> dict[str, str]:
    """The contract columns a CSV file's typed read parses (landing.TYPED_CSV_TYPES), by type."""
    types = {name: duckdb_type(column) for name, column in schema.columns.items()}
    return {name: typ for name, typ in types.items() if typ in TYPED_CSV_TYPES}


def typed_column(name: str) -> str:
    """`_raw`'s column holding a typed read's value of contract column `name`."""
    return f"_typed_{name}"


def raw_text(name: str, typed: dict[str, str]) -> str:
    """SQL for the text of `_raw r`'s column `name` as read: a typed read's value as text."""
    if name in typed:
        return f"coalesce(r.{ident(name)}, CAST(r.{ident(typed_column(name))} AS VARCHAR))"
    return f"r.{ident(name)}"


def _raw_table(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema) -> None:
    """`_raw`: one row per row to judge, with the file and its row within that file. A row
    read as text has every column as text; a row of a typed read has its typed columns'
    values in `_typed_<column>` instead (their text columns are NULL).

    A view over `_raw_rows`, which is only ever appended to: a row's `_row` is its rowid + 1
    and a row read from a file takes its `_line` from where its read started (`_start`).
    Numbering the rows inside the read (`row_number() OVER ()`) made the CSV parse run on one
    thread: at 1M customers the purchase read took 22.9 s that way and takes 11.2 s. Rows are
    taken out by listing them in `_dropped`, never deleted: a checkpoint after a delete may
    renumber the rows behind it."""
    text = ", ".join(f"{ident(c)} VARCHAR" for c in schema.columns)
    typed = "".join(f", {ident(typed_column(c))} {t}" for c, t in typed_reads(schema).items())
    con.execute(
        f"CREATE OR REPLACE TABLE {JUDGING}._raw_rows "
        f"(_start BIGINT, _file VARCHAR, _line BIGINT, {text}{typed})"
    )
    con.execute(f"CREATE OR REPLACE TABLE {JUDGING}._dropped (_row BIGINT, _file VARCHAR)")
    _raw_view(con, schema)


def _raw_view(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema) -> None:
    """(Re)define the view `_raw` after rows were dropped: it leaves out `_dropped` only when
    that has rows (the anti-join cost each read of the view 2 s at 1M customers when empty)."""
    dropping = con.execute(f"SELECT count(*) FROM {JUDGING}._dropped").fetchall()[0][0] > 0
    typed_columns = [typed_column(c) for c in typed_reads(schema)]
    names = ", ".join(f"r.{ident(c)}" for c in [*schema.columns, *typed_columns])
    kept = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {JUDGING}._dropped d WHERE d._row = r.rowid + 1)"
        if dropping
        else ""
    )
    con.execute(
        f"""CREATE OR REPLACE VIEW {JUDGING}._raw AS
        SELECT r.rowid + 1 AS _row, r._file, coalesce(r._line, r.rowid - r._start + 1) AS _line,
            {names}
        FROM {JUDGING}._raw_rows r {kept}"""
    )


def _append_raw(con: duckdb.DuckDBPyConnection, columns: list[str], select: str, params) -> int:
    """Add rows to `_raw`; `select` yields `_file`, `_line` and the columns as text. A NULL
    `_line` is the row's place in the select, counted from 1. Returns the read's `_start`."""
    start = con.execute(f"SELECT count(*) FROM {JUDGING}._raw_rows").fetchall()[0][0]
    names = ", ".join(ident(c) for c in columns)
    con.execute(
        f"INSERT INTO {JUDGING}._raw_rows (_start, _file, _line, {names}) "
        f"SELECT {int(start)}, _file, _line, {names} FROM ({select})",
        params,
    )
    # the rows of one read hold the rowids after the rows before it, in the order read
    count, first, last = con.execute(
        f"SELECT count(*), min(rowid), max(rowid) FROM {JUDGING}._raw_rows WHERE _start = ?",
        [start],
    ).fetchall()[0]
    if count and (first != start or last != start + count - 1):
        raise RuntimeError(
            f"rows read into {JUDGING}._raw_rows hold rowids {first}-{last}, not "
            f"{start}-{start + count - 1}: their row numbers would be wrong"
        )
    return start


def _read_files(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema, paths) -> list[str]:
    """Each landing file's rows (bound paths, one file at a time so each row knows its row
    number within its file). A CSV file is read typed when every value of its typed columns
    is in its strict form (`_read_typed`); otherwise, and for a Parquet file, every contract
    column is read as text. Returns the CSV files read as text although the contract has
    typed columns."""
    columns = list(schema.columns)
    typed = typed_reads(schema)
    as_text = ", ".join(f"CAST({ident(c)} AS VARCHAR) AS {ident(c)}" for c in columns)
    read_as_text = []
    for path in paths:
        if typed and path.suffix == ".csv":
            if _read_typed(con, columns, typed, path):
                continue
            read_as_text.append(str(path))
        _append_raw(
            con,
            columns,
            f"SELECT ? AS _file, NULL::BIGINT AS _line, {as_text} FROM {relation(path)}",
            [str(path), str(path)],
        )
    if read_as_text:
        _raw_view(con, schema)  # a typed read may have dropped its rows
    return read_as_text


def _read_typed(con, columns: list[str], typed: dict[str, str], path: Path) -> bool:
    """Read a CSV file with its `typed` columns parsed by the reader (landing.typed_csv_relation)
    into their `_typed_<column>`; False, with nothing added, when a value is not in its strict
    form or may be a word the contract refuses (landing.AMBIGUOUS_TYPED_VALUE). Parsing the
    timestamps while reading saves the text and its parse: at 1M customers the purchase load
    took 52.0 s read as text, 46.5 s typed."""
    select = ", ".join(
        f"{ident(c)} AS {ident(typed_column(c))}" if c in typed else ident(c) for c in columns
    )
    targets = [typed_column(c) if c in typed else c for c in columns]
    reader = typed_csv_relation(list(file_columns(con, path)), typed)
    try:
        start = _append_raw(
            con,
            targets,
            f"SELECT ? AS _file, NULL::BIGINT AS _line, {select} FROM {reader}",
            [str(path), str(path)],
        )
    except (duckdb.ConversionException, duckdb.InvalidInputException):
        return False  # the statement added nothing
    ambiguous = " OR ".join(
        AMBIGUOUS_TYPED_VALUE[t].format(x=ident(typed_column(c)))
        for c, t in typed.items()
        if t in AMBIGUOUS_TYPED_VALUE
    )
    if ambiguous:
        hidden = con.execute(
            f"SELECT count(*) FROM _raw_rows WHERE _start = ? AND ({ambiguous})", [start]
        ).fetchall()[0][0]
        if hidden:
            con.execute(
                "INSERT INTO _dropped SELECT rowid + 1, _file FROM _raw_rows WHERE _start = ?",
                [start],
            )
            return False
    return True


def _read_records(con, columns: list[str], table_name: str, source: str, files: list[str]):
    """The stored original rows (quarantined or deferred) of `source` from `files`."""
    fields = ", ".join(
        f"json_extract_string(record, {literal('$.' + json.dumps(c))}) AS {ident(c)}"
        for c in columns
    )
    _append_raw(
        con,
        columns,
        f"SELECT source_file AS _file, source_row AS _line, {fields} FROM {table_name} "
        "WHERE source = ? AND list_contains(?, source_file)",
        [source, files],
    )


def verdicts_select(
    schema: pa.DataFrameSchema,
    as_of: str,
    engine: str = "duckdb",
    accepted: Callable[[str], str] = table,
    read_typed: Iterable[str] = (),
) -> tuple[str, int]:
    """The SELECT (DuckDB dialect) that types `_raw` and gives each row its verdict: `_rule`,
    `_reason`, `_field`, `_detail`, NULL when accepted, `deferred` for a row dated after
    `as_of` (SQL). Duplicates are decided later, by the returned rule number. `read_typed`:
    the columns whose `_raw` has a typed read's values beside the text (`typed_column`)."""
    columns = list(schema.columns)
    parsed, lookups = _typed_columns(schema, engine)
    for c in read_typed:
        # a typed read's row has no text: the rules on the text (oversized, unparseable) pass
        parsed[c] = f"coalesce(r.{ident(typed_column(c))}, {parsed[c]})"
    # the rules read each parsed value once, from the inner select's `_t_<column>`
    typed = {c: f"r.{ident('_t_' + c)}" for c in columns}
    joins, cross_rules, ceiling_warned = _cross_table_rules(schema, typed, accepted)
    rules = row_rules(schema, "r", typed) + cross_rules
    deferred = " OR ".join(
        f"coalesce({typed[c]} > {as_of}, FALSE)" for c in schema.metadata.get("defer_after_as_of")
    )
    deferral = [Rule("deferred", "", deferred, "NULL")] if deferred else []
    verdicts = [*deferral, *rules, duplicate_rule(schema)]
    inner = ", ".join(f"{parsed[c]} AS {ident('_t_' + c)}" for c in columns)
    first = "CASE " + " ".join(f"WHEN {r.condition} THEN {i}" for i, r in enumerate(verdicts[:-1]))
    select = f"""SELECT r._row, r._file, r._line,
            {", ".join(f"{typed[c]} AS {ident(c)}" for c in columns)},
            {first} END AS _rule,
            {_by_rule(verdicts, "reason")} AS _reason,
            {_by_rule(verdicts, "field")} AS _field,
            {_by_rule(verdicts, "detail")} AS _detail,
            {ceiling_warned} AS _ceiling_warned,
            FALSE AS _existing
        FROM (SELECT r.*, {inner} FROM _raw r {" ".join(lookups)}) r {" ".join(joins)}"""
    return select, len(verdicts) - 1


def _verdicts(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema, as_of: datetime):
    """`_checked`: `_raw` typed, with each row's verdict (`verdicts_select`)."""
    if schema.metadata.get("normalise_country"):
        _country_table(con)
    select, duplicate = verdicts_select(schema, "$as_of", read_typed=typed_reads(schema))
    uses_as_of = bool(schema.metadata.get("defer_after_as_of"))
    con.execute(
        f"CREATE OR REPLACE TABLE {JUDGING}._checked AS {select}",
        {"as_of": as_of} if uses_as_of else None,
    )
    return duplicate


def judge(
    con: duckdb.DuckDBPyConnection,
    schema: pa.DataFrameSchema,
    files: LandingFiles,
    as_of: datetime,
    suppressed: list[str] | None = None,
) -> int:
    """Judge every row of the landing files as a full load would, into the work tables `_raw`
    (as read) and `_checked` (typed, with each row's verdict). Returns rows read. Call it
    inside `judging(con)`, which holds those tables.

    Writes nothing but work tables: the quality checks use it to audit a landing zone that has
    not been loaded."""
    utc_session(con)
    _raw_table(con, schema)
    _read_files(con, schema, files.all)
    dropped = _suppress(con, schema, suppressed)
    con.execute(
        f"CREATE OR REPLACE TABLE {JUDGING}._suppressed AS SELECT ? AS n", [sum(dropped.values())]
    )
    duplicate = _verdicts(con, schema, as_of)
    _mark_duplicates(con, schema, duplicate)
    return con.execute("SELECT count(*) FROM _raw").fetchall()[0][0]


def duplicate_rule(schema: pa.DataFrameSchema) -> Rule:
    key, newest_by = schema.metadata["key"], schema.metadata["newest_by"]
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


def _mark_duplicates(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema, rule: int):
    """Of accepted rows sharing a key, keep the newest by `newest_by` (then the later file and
    the later row in it). Only the keys that repeat are ranked: a sort of every row would cost
    far more. An increment's rows compete with the accepted rows of their keys, which
    `_add_competitors` put in `_checked` beforehand."""
    key, newest_by = schema.metadata["key"], schema.metadata["newest_by"]
    dup = duplicate_rule(schema)
    detail = dup.detail.replace(ident(key), f"c.{ident(key)}")
    con.execute(
        f"""UPDATE _checked c SET _rule = {rule}, _reason = {literal(dup.reason)},
            _field = {literal(dup.field)}, _detail = {detail}
        FROM (
            SELECT _row, row_number() OVER (
                PARTITION BY {ident(key)}
                ORDER BY {ident(newest_by)} DESC, _file DESC, _line DESC
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
    con.execute(f"DROP VIEW IF EXISTS {JUDGING}._raw")
    for name in ("_raw_rows", "_dropped", "_checked", "_suppressed", "_taken", "_countries"):
        con.execute(f"DROP TABLE IF EXISTS {JUDGING}.{name}")
    con.execute("DROP VIEW IF EXISTS _state")


@contextmanager
def judging(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Where a judgement's work tables (`_raw`, `_checked`, `_taken`, ...) live for the block:
    the catalog JUDGING, a scratch database file beside the warehouse (`<file>.judging`),
    on the search path (so the tables are found by name), detached and deleted at the end.
    A database file stores them compressed: as temp tables they spilled to disk uncompressed,
    and a 1M-customer purchase load took 7.7 GB of disk for a 2 GB CSV (1.9 GB this way, in
    the same time); a 5M one ran out of 42 GB. One judgement at a time per database instance
    (loads are serialised by the warehouse's single writer anyway)."""
    attached = con.execute(
        "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [JUDGING]
    ).fetchall()[0][0]
    if attached:
        # never touch another judgement's scratch file
        raise RuntimeError("another load or landing audit is judging rows on this warehouse")
    scratch = _scratch_file(con)
    previous = con.execute("SELECT current_setting('search_path')").fetchall()[0][0]
    _remove(scratch)  # left by a process that was killed
    con.execute(f"ATTACH {literal(str(scratch) if scratch else ':memory:')} AS {JUDGING}")
    try:
        con.execute("SET search_path = ?", [f"{previous or 'main'},{JUDGING}.main"])
        yield
    finally:
        if previous:
            con.execute("SET search_path = ?", [previous])
        else:
            con.execute("RESET search_path")
        con.execute(f"DETACH {JUDGING}")
        _remove(scratch)


def _scratch_file(con: duckdb.DuckDBPyConnection) -> Path | None:
    """`<warehouse file>.judging`, or None for an in-memory warehouse."""
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return Path(f"{path[0][0]}.judging") if path and path[0][0] else None


def _remove(scratch: Path | None) -> None:
    if scratch is not None:
        for leftover in (scratch, Path(f"{scratch}.wal")):
            leftover.unlink(missing_ok=True)


def _customer_column(schema: pa.DataFrameSchema) -> str:
    """SQL for the customer a row belongs to (what the models downstream refresh by)."""
    return ident(SUPPRESSED_COLUMN) if SUPPRESSED_COLUMN in schema.columns else "NULL"


def _take_back(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema, plan: Plan) -> None:
    """`_taken`: the accepted rows an increment removes before judging: those of retracted
    files, and those whose upstream row (a referenced customer or product) was removed or
    changed since this source's last load, which are judged again with the new rows."""
    accepted = table(schema.name)
    references = schema.metadata.get("references", {})
    looked_up = [
        f"{ident(column)} IN (SELECT key FROM {CHANGES} WHERE source = {literal(src)} "
        f"AND change = 'removed' AND load_id > {int(plan.since_load)})"
        for column, (src, _) in references.items()
    ]
    removed_upstream = con.execute(
        f"SELECT count(*) FROM {CHANGES} WHERE list_contains(?, source) "
        f"AND change = 'removed' AND load_id > {int(plan.since_load)}",
        [sorted({src for src, _ in references.values()})],
    ).fetchall()[0][0]
    if not plan.gone and not removed_upstream:
        # nothing to take back: no scan of every accepted row (1.3 s at 20.6M lines)
        con.execute(f"CREATE OR REPLACE TABLE {JUDGING}._taken AS FROM {accepted} LIMIT 0")
        return
    condition = " OR ".join(["list_contains($gone, _source_file)", *looked_up])
    con.execute(
        f"CREATE OR REPLACE TABLE {JUDGING}._taken AS SELECT * FROM {accepted} WHERE {condition}",
        {"gone": plan.gone},
    )


def _add_competitors(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema) -> None:
    """Put the accepted rows that share a key with an accepted new row into `_checked`, so
    the newest row of each key wins whichever load brought it."""
    key = ident(schema.metadata["key"])
    names = ", ".join(ident(c) for c in schema.columns)
    con.execute(
        f"""INSERT INTO _checked (_row, _file, _line, {names}, _existing)
        SELECT -row_number() OVER (), a._source_file, a._source_row,
            {", ".join(f"a.{ident(c)}" for c in schema.columns)}, TRUE
        FROM {table(schema.name)} a
        WHERE a.{key} IN (SELECT {key} FROM _checked WHERE _rule IS NULL)
        AND NOT EXISTS (
            SELECT 1 FROM _taken t
            WHERE t._source_file = a._source_file AND t._source_row = a._source_row
        )"""
    )


def load_source(
    con: duckdb.DuckDBPyConnection,
    schema: pa.DataFrameSchema,
    data_dir: Path,
    location: str,
    as_of: datetime,
    run_id: str | None = None,
    freshness_column: str | None = None,
    full_refresh: bool = False,
) -> LoadResult:
    """Validate and load one source; returns the reconciliation figures.

    Only new or changed landing files are read (sources/registry.py says when a load is full
    instead). The accepted table, the source's quarantined and deferred rows, its landing audit
    (the figures the quality checks measure) and the registry change in one transaction."""
    source = schema.name
    files = find_landing_files(data_dir, location, source)
    ensure_schema(con)
    utc_session(con)
    suppressed = read_suppression_list(data_dir)
    plan = plan_load(
        con, schema, files.all, upstream_sources(schema), as_of, suppressed, full_refresh
    )
    for f in plan.new:
        path = Path(f.path)
        check_file_columns(
            con, path, schema, rows_required=not in_source_folder(path, data_dir, location)
        )
    columns = list(schema.columns)
    with judging(con):
        try:
            _raw_table(con, schema)
            read_as_text = _read_files(con, schema, [Path(f.path) for f in plan.new])
            if not plan.full:
                # rows loaded before whose verdict may change: quarantined (an orphan's customer
                # may have arrived), deferred (as_of may have passed them), taken back (above)
                for stored in (QUARANTINE, DEFERRED):
                    _read_records(con, columns, stored, source, plan.retained)
                _take_back(con, schema, plan)
                as_text = ", ".join(f"CAST({ident(c)} AS VARCHAR) AS {ident(c)}" for c in columns)
                _append_raw(
                    con,
                    columns,
                    f"SELECT _source_file AS _file, _source_row AS _line, {as_text} FROM _taken "
                    "WHERE list_contains(?, _source_file)",
                    [plan.retained],
                )
            dropped = _suppress(con, schema, suppressed)
            duplicate = _verdicts(con, schema, as_of)
            if not plan.full:
                _add_competitors(con, schema)
            _mark_duplicates(con, schema, duplicate)
            per_file = _per_file(con, plan, dropped)
            with transaction(con):
                changed = _apply(con, schema, plan, as_of, run_id)
                record_load(con, plan, schema, as_of, run_id, suppressed, per_file, changed)
                audit = _audit_state(con, schema, plan, files, as_of, freshness_column, run_id)
                save_audit(con, audit)
        finally:
            drop_judgement(con)
    result = load_result(con, source, files, columns, schema, audit, plan, per_file, changed)
    result.files_read_as_text = read_as_text
    return result


def _per_file(con, plan: Plan, dropped: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Per new file: rows read, accepted, quarantined, deferred and suppressed, as judged now."""
    counts = {
        row[0]: row[1:]
        for row in con.execute(
            """SELECT _file, count(*), count(*) FILTER (WHERE _reason IS NULL),
                count(*) FILTER (WHERE _reason <> 'deferred'),
                count(*) FILTER (WHERE _reason = 'deferred')
            FROM _checked WHERE NOT _existing AND list_contains(?, _file) GROUP BY _file""",
            [[f.path for f in plan.new]],
        ).fetchall()
    }
    return {f.path: (*counts.get(f.path, (0, 0, 0, 0)), dropped.get(f.path, 0)) for f in plan.new}


def _apply(con, schema: pa.DataFrameSchema, plan: Plan, as_of: datetime, run_id) -> int:
    """Write the verdicts: accepted rows, quarantined rows, deferred rows and the keys that
    changed. Returns how many keys changed (every accepted key on a full load)."""
    source = schema.name
    accepted = table(source)
    columns = list(schema.columns)
    names = ", ".join(ident(c) for c in columns)
    typed = typed_reads(schema)
    # the rows as read; a typed read's values as text in their canonical form
    raw_cols = ", ".join(f"{ident(c)} := {raw_text(c, typed)}" for c in columns)
    new_rows = "NOT c._existing AND c._reason IS NULL"
    if plan.full:
        con.execute(
            f"CREATE OR REPLACE TABLE {accepted} AS SELECT {names}, _file AS _source_file, "
            f"_line AS _source_row, CAST(? AS BIGINT) AS _load_id FROM _checked c "
            f"WHERE {new_rows}",
            [plan.load_id],
        )
        changed = con.execute(f"SELECT count(*) FROM {accepted}").fetchall()[0][0]
    else:
        key, customer = ident(schema.metadata["key"]), _customer_column(schema)
        # what leaves the accepted table: rows taken back and rows a newer row replaced
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _leaving AS
            SELECT _source_file AS _file, _source_row AS _line, {names} FROM _taken
            UNION ALL
            SELECT _file, _line, {names} FROM _checked WHERE _existing AND _reason IS NOT NULL"""
        )
        con.execute(
            f"""DELETE FROM {accepted} a USING _leaving l
            WHERE a._source_file = l._file AND a._source_row = l._line"""
        )
        con.execute(
            f"INSERT INTO {accepted} ({names}, _source_file, _source_row, _load_id) "
            f"SELECT {names}, _file, _line, ? FROM _checked c WHERE {new_rows}",
            [plan.load_id],
        )
        # an update is a removed row and an added one; a row read again unchanged is neither
        changed = con.execute(
            f"""INSERT INTO {CHANGES}
            SELECT ?, ?, CAST({key} AS VARCHAR), CAST({customer} AS VARCHAR), 'removed'
            FROM (SELECT {names} FROM _leaving EXCEPT ALL
                  SELECT {names} FROM _checked c WHERE {new_rows})
            UNION ALL
            SELECT ?, ?, CAST({key} AS VARCHAR), CAST({customer} AS VARCHAR), 'added'
            FROM (SELECT {names} FROM _checked c WHERE {new_rows} EXCEPT ALL
                  SELECT {names} FROM _leaving)""",
            [plan.load_id, source, plan.load_id, source],
        ).fetchall()[0][0]
    con.execute(f"DELETE FROM {QUARANTINE} WHERE source = ?", [source])
    con.execute(
        f"""INSERT INTO {QUARANTINE}
        SELECT ?, c._file, c._line, c._reason, c._field, c._detail,
               to_json(struct_pack({raw_cols})), ?, ?, now()::TIMESTAMP
        FROM _checked c JOIN _raw r USING (_row)
        WHERE c._reason IS NOT NULL AND c._reason <> 'deferred' ORDER BY c._file, c._line""",
        [source, as_of, run_id],
    )
    # accepted rows a newer row replaced keep their typed values as text: their original
    # text was read by an earlier load
    as_text = ", ".join(f"{ident(c)} := CAST(c.{ident(c)} AS VARCHAR)" for c in columns)
    con.execute(
        f"""INSERT INTO {QUARANTINE}
        SELECT ?, c._file, c._line, c._reason, c._field, c._detail,
               to_json(struct_pack({as_text})), ?, ?, now()::TIMESTAMP
        FROM _checked c WHERE c._existing AND c._reason IS NOT NULL ORDER BY c._file, c._line""",
        [source, as_of, run_id],
    )
    con.execute(f"DELETE FROM {DEFERRED} WHERE source = ?", [source])
    con.execute(
        f"""INSERT INTO {DEFERRED}
        SELECT ?, c._file, c._line, to_json(struct_pack({raw_cols})), ?, ?
        FROM _checked c JOIN _raw r USING (_row)
        WHERE c._reason = 'deferred' ORDER BY c._file, c._line""",
        [source, as_of, run_id],
    )
    return changed


def _audit_state(
    con, schema: pa.DataFrameSchema, plan: Plan, files, as_of, freshness_column, run_id
):
    """The landing audit of everything loaded now (accepted, quarantined and deferred), as a
    full load of the same files would measure it.

    Loads are the only writers of the accepted table, so when the audit of this source's
    previous load found no duplicate key, an increment can only have made its added keys
    repeat: only those are counted."""
    previous = None if plan.full else load_audit(con, schema.name)
    clean_before = (
        previous is not None
        and previous.load_id == plan.since_load
        and previous.accepted_key_duplicates == 0
    )
    key = ident(schema.metadata["key"])
    added = f"SELECT {key} FROM _checked WHERE NOT _existing AND _reason IS NULL"
    columns = list(schema.columns)
    typed = {c: f"r.{ident(c)}" for c in columns}
    joins, _, warned = _cross_table_rules(schema, typed)
    names = ", ".join(ident(c) for c in columns)
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW _state AS
        SELECT {", ".join(typed[c] for c in columns)}, NULL::VARCHAR AS _reason,
            NULL::VARCHAR AS _field, {warned} AS _ceiling_warned
        FROM {table(schema.name)} r {" ".join(joins) if warned != "FALSE" else ""}
        UNION ALL
        SELECT {names}, _reason, _field, _ceiling_warned FROM _checked
        WHERE _reason IS NOT NULL"""
    )
    rows = con.execute("SELECT count(*) FROM _state").fetchall()[0][0]
    audit = audit_judgement(
        con,
        schema,
        files,
        rows,
        as_of,
        freshness_column,
        run_id,
        relation="_state",
        duplicates_among=added if clean_before else None,
    )
    audit.rows_suppressed = suppressed_rows(con, schema.name)
    audit.load_id = plan.load_id
    return audit


def load_result(con, source, files, columns, schema, audit, plan, per_file, changed) -> LoadResult:
    accepted = con.execute(f"SELECT count(*) FROM {table(source)}").fetchall()[0][0]
    by_reason = dict(
        con.execute(
            f"SELECT reason, count(*) FROM {QUARANTINE} WHERE source = ? GROUP BY 1 ORDER BY 1",
            [source],
        ).fetchall()
    )
    return LoadResult(
        source=source,
        files=[str(p) for p in files.all],
        rows_read=audit.rows_read,
        rows_accepted=accepted,
        rows_quarantined=sum(by_reason.values()),
        rows_deferred=audit.rows_deferred,
        quarantined_by_reason=by_reason,
        columns={c: duckdb_type(schema.columns[c]) for c in columns},
        audit=audit,
        mode=plan.mode,
        reason=plan.reason,
        files_loaded=[f.path for f in plan.new],
        files_retracted=plan.gone,
        rows_loaded=sum(c[0] for c in per_file.values()),
        keys_changed=changed,
        load_id=plan.load_id,
        previous_load_id=plan.since_load,
    )

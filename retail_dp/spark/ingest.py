"""Load one source's landing files with Spark, judged by the same contract as on DuckDB.

The verdict SQL is the one `sources/ingest.py` runs on DuckDB (`verdicts_select`), transpiled
to Spark SQL, with Spark's own text parsers (`sources/rules.py`). Spark writes the accepted
rows, the quarantine and the deferred rows to the lake as Parquet; then the DuckDB warehouse
takes them in one transaction with the landing audit and the registry's record of the load
(`mirror_load`), so everything downstream (dbt's inputs on Spark, the checks, the audits, the
hub) sees the same tables whichever engine loaded them.

Every Spark load is a full load: an increment needs row deletes, which plain Parquet tables do
not have (docs/scale-out.md: with Delta or Iceberg, a MERGE would do it).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandera.pandas as pa

from retail_dp.resources import transaction
from retail_dp.sources.audit import audit_judgement, save_audit
from retail_dp.sources.contracts import country_spellings, upstream_sources
from retail_dp.sources.ingest import (
    DEFERRED,
    QUARANTINE,
    SUPPRESSED_COLUMN,
    LoadResult,
    duplicate_rule,
    ensure_schema,
    load_result,
    read_suppression_list,
    table,
    verdicts_select,
)
from retail_dp.sources.landing import check_file_columns, find_landing_files, in_source_folder
from retail_dp.sources.registry import LINEAGE, plan_load, record_load
from retail_dp.sources.rules import duckdb_type, ident, literal
from retail_dp.spark.lake import Lake
from retail_dp.spark.sql import to_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

WORK = "work"  # the lake's scratch schema: a load's judged rows, removed when it ends


class SparkSql:
    """A DuckDB-like `execute(sql).fetchall()` over Spark, for the code that only reads
    (the landing audit): DuckDB SQL in, rows out."""

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def execute(self, sql: str, params=None):
        if params:
            raise ValueError("SparkSql takes no parameters: quote values with `literal`")
        return _Rows([tuple(row) for row in self.spark.sql(to_spark(sql)).collect()])


@dataclasses.dataclass
class _Rows:
    rows: list[tuple]

    def fetchall(self) -> list[tuple]:
        return self.rows


def _read_file(spark: SparkSession, path: Path, columns: list[str]) -> DataFrame:
    """One landing file's rows, every contract column as text, with its row number."""
    from pyspark.sql import functions as F

    if path.suffix == ".csv":
        # RFC 4180 like DuckDB's reader: "" escapes a quote and a quoted field may span lines
        frame = spark.read.csv(
            str(path), header=True, inferSchema=False, multiLine=True, quote='"', escape='"'
        )
    else:
        frame = spark.read.parquet(str(path))
    frame = frame.select(
        *(F.col(f"`{c}`").cast("string").alias(c) for c in columns),
        F.monotonically_increasing_id().alias("_order"),
    )
    if frame.rdd.getNumPartitions() == 1:
        # every CSV (multiLine files are not split): the row number is the row's place in
        # the partition, the low 33 bits of monotonically_increasing_id, with no shuffle; a
        # window over the file would move every row into one partition and sort it
        line = F.col("_order").bitwiseAND(F.lit((1 << 33) - 1)) + F.lit(1)
    else:  # a Parquet file read in several partitions: numbered in their order
        from pyspark.sql import Window

        line = F.row_number().over(Window.orderBy("_order"))
    return frame.select(F.lit(str(path)).alias("_file"), line.alias("_line"), *columns)


def _raw(spark: SparkSession, schema: pa.DataFrameSchema, paths: list[Path], suppressed):
    """`_raw` (the rows to judge) and the rows of erased customers dropped, per file."""
    from pyspark.sql import functions as F

    columns = list(schema.columns)
    frames = [_read_file(spark, p, columns) for p in paths]
    raw = frames[0]
    for frame in frames[1:]:
        raw = raw.unionByName(frame)
    dropped: Counter = Counter()
    if suppressed and SUPPRESSED_COLUMN in columns:
        digest = F.sha2(F.trim(F.col(SUPPRESSED_COLUMN)), 256)
        erased = digest.isin(list(suppressed))
        dropped.update(dict(raw.where(erased).groupBy("_file").count().collect()))
        raw = raw.where(~erased | F.col(SUPPRESSED_COLUMN).isNull())
    raw = raw.withColumn("_row", F.monotonically_increasing_id())
    return raw, dropped


def _judge(spark: SparkSession, schema: pa.DataFrameSchema, as_of: datetime, lake: Lake) -> None:
    """The view `_checked`, materialised in the lake: `_raw` typed, with verdicts and
    duplicates decided."""
    if schema.metadata.get("normalise_country"):
        spark.createDataFrame(
            list(country_spellings().items()), "spelling string, alpha2 string"
        ).createOrReplaceTempView("_countries")
    for upstream in upstream_sources(schema):
        spark.read.parquet(str(lake.path("sources", upstream))).createOrReplaceTempView(
            f"_accepted_{upstream}"
        )
    as_of_sql = f"CAST({literal(as_of.isoformat(sep=' '))} AS TIMESTAMP)"
    select, duplicate = verdicts_select(
        schema, as_of_sql, engine="spark", accepted=lambda s: f"_accepted_{s}"
    )
    spark.sql(to_spark(select)).createOrReplaceTempView("_verdicts")
    key, newest_by = schema.metadata["key"], schema.metadata["newest_by"]
    dup = duplicate_rule(schema)
    # of the accepted rows sharing a key, the newest by `newest_by` (then file, then row) wins
    rank = (
        f"row_number() OVER (PARTITION BY {ident(key)}, _rule IS NULL "
        f"ORDER BY {ident(newest_by)} DESC, _file DESC, _line DESC)"
    )
    names = ", ".join(ident(c) for c in schema.columns)
    checked = spark.sql(
        to_spark(
            f"""SELECT _row, _file, _line, {names},
                CASE WHEN _dup THEN {duplicate} ELSE _rule END AS _rule,
                CASE WHEN _dup THEN {literal(dup.reason)} ELSE _reason END AS _reason,
                CASE WHEN _dup THEN {literal(dup.field)} ELSE _field END AS _field,
                CASE WHEN _dup THEN {dup.detail} ELSE _detail END AS _detail,
                _ceiling_warned, _existing
            FROM (SELECT *, _rule IS NULL AND {rank} > 1 AS _dup FROM _verdicts)"""
        )
    )
    # materialised once as compressed Parquet in the lake's work area rather than cached:
    # what a cache cannot hold in memory goes to local disk as serialized rows
    lake.write(checked, WORK, schema.name)
    spark.read.parquet(str(lake.path(WORK, schema.name))).createOrReplaceTempView("_checked")


def _spark_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _record(raw_columns: list[str]) -> str:
    """Spark SQL for the row as read, as JSON with every field (Spark leaves NULL fields out
    unless told), like DuckDB's `to_json(struct_pack(...))`."""
    fields = ", ".join(f"{literal(c)}, r.{_spark_ident(c)}" for c in raw_columns)
    return f"to_json(named_struct({fields}), map('ignoreNullFields', 'false'))"


def load_source(
    spark: SparkSession,
    con: duckdb.DuckDBPyConnection,
    schema: pa.DataFrameSchema,
    data_dir: Path,
    location: str,
    as_of: datetime,
    lake: Lake,
    run_id: str | None = None,
    freshness_column: str | None = None,
) -> LoadResult:
    """Judge and load one source with Spark; the DuckDB warehouse records it (see above)."""
    source = schema.name
    files = find_landing_files(data_dir, location, source)
    ensure_schema(con)
    suppressed = read_suppression_list(data_dir)
    plan = plan_load(
        con, schema, files.all, upstream_sources(schema), as_of, suppressed, full_refresh=True
    )
    plan = dataclasses.replace(plan, reason="the Spark engine loads in full")
    # the headers are checked before Spark starts reading (DuckDB reads the first line only)
    with duckdb.connect() as header_con:
        for path in files.all:
            check_file_columns(
                header_con,
                path,
                schema,
                rows_required=not in_source_folder(path, data_dir, location),
            )
    columns = list(schema.columns)
    raw, dropped = _raw(spark, schema, list(files.all), suppressed)
    raw.createOrReplaceTempView("_raw")
    _judge(spark, schema, as_of, lake)
    try:
        per_file = _per_file(spark, files.all, dropped)
        _write_lake(spark, schema, plan.load_id, as_of, run_id, lake)
        audit = audit_judgement(
            SparkSql(spark),
            schema,
            files,
            sum(p[0] for p in per_file.values()),
            as_of,
            freshness_column,
            run_id,
        )
        with transaction(con):
            changed = mirror_load(con, schema, lake)
            record_load(con, plan, schema, as_of, run_id, suppressed, per_file, changed)
            audit.rows_suppressed = sum(dropped.values())
            audit.load_id = plan.load_id
            save_audit(con, audit)
    finally:
        for view in ("_raw", "_verdicts", "_checked", "_countries"):
            spark.catalog.dropTempView(view)
        shutil.rmtree(lake.path(WORK, source), ignore_errors=True)
    return load_result(con, source, files, columns, schema, audit, plan, per_file, changed)


def _per_file(spark: SparkSession, paths, dropped: Counter) -> dict[str, tuple[int, ...]]:
    """Per file: rows read, accepted, quarantined, deferred and suppressed."""
    counts = {
        row[0]: tuple(row[1:])
        for row in spark.sql(
            """SELECT _file, count(*), count_if(_reason IS NULL),
                count_if(_reason <> 'deferred'), count_if(_reason = 'deferred')
            FROM _checked GROUP BY _file"""
        ).collect()
    }
    return {str(p): (*counts.get(str(p), (0, 0, 0, 0)), dropped.get(str(p), 0)) for p in paths}


def _write_lake(spark, schema: pa.DataFrameSchema, load_id: int, as_of, run_id, lake: Lake):
    """The accepted rows (with lineage), and this source's quarantined and deferred rows."""
    source = schema.name
    columns = list(schema.columns)
    names = ", ".join(ident(c) for c in columns)
    accepted = spark.sql(
        to_spark(
            f"SELECT {names}, _file AS _source_file, _line AS _source_row, "
            f"CAST({int(load_id)} AS BIGINT) AS _load_id FROM _checked WHERE _reason IS NULL"
        )
    )
    lake.write(accepted, "sources", source)
    # Spark SQL from here: the raw row is found again by its file and row in that file
    context = (
        f"CAST({literal(as_of.isoformat(sep=' '))} AS TIMESTAMP) AS as_of, "
        f"CAST({literal(run_id) if run_id else 'NULL'} AS STRING) AS run_id"
    )
    # the rows not accepted (a few percent) are broadcast to the raw rows, read once, rather
    # than every raw row shuffled to meet them; kept for the two writes that follow
    stored = spark.sql(
        f"""SELECT /*+ BROADCAST(c) */ {literal(source)} AS source, c._file AS source_file,
            c._line AS source_row, c._reason AS reason, c._field AS field,
            c._detail AS detail, {_record(columns)} AS record, {context}
        FROM (SELECT * FROM _checked WHERE _reason IS NOT NULL) c
        JOIN _raw r ON r._file = c._file AND r._line = c._line"""
    ).persist()
    try:
        stored.createOrReplaceTempView("_stored")
        quarantined = spark.sql(
            "SELECT *, current_timestamp() AS quarantined_at FROM _stored "
            "WHERE reason <> 'deferred'"
        )
        lake.write(quarantined, "quarantine", source)
        deferred = spark.sql(
            "SELECT source, source_file, source_row, record, as_of, run_id FROM _stored "
            "WHERE reason = 'deferred'"
        )
        lake.write(deferred, "deferred", source)
    finally:
        spark.catalog.dropTempView("_stored")
        stored.unpersist()


def mirror_load(con: duckdb.DuckDBPyConnection, schema: pa.DataFrameSchema, lake: Lake) -> int:
    """Take a Spark load into the DuckDB warehouse (inside the caller's transaction): the
    accepted table typed as the contract says, and the source's quarantined and deferred
    rows. Returns the accepted rows."""
    source = schema.name
    columns = [*schema.columns, *LINEAGE]
    types = {c: duckdb_type(col) for c, col in schema.columns.items()}
    types |= {"_source_file": "VARCHAR", "_source_row": "BIGINT", "_load_id": "BIGINT"}
    typed = ", ".join(f"CAST({ident(c)} AS {types[c]}) AS {ident(c)}" for c in columns)
    con.execute(
        f"CREATE OR REPLACE TABLE {table(source)} AS "
        f"SELECT {typed} FROM {lake.reader('sources', source)}"
    )
    for target, name in ((QUARANTINE, "quarantine"), (DEFERRED, "deferred")):
        con.execute(f"DELETE FROM {target} WHERE source = ?", [source])
        con.execute(
            f"INSERT INTO {target} BY NAME SELECT * FROM {lake.reader(name, source)} "
            "ORDER BY source_file, source_row"
        )
    return con.execute(f"SELECT count(*) FROM {table(source)}").fetchall()[0][0]

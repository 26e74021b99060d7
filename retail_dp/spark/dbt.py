"""A dbt step on Spark: its inputs go to the lake first, its tables come back to DuckDB after.

dbt-spark runs in its own process and JVM, with its own metastore, and cannot read the DuckDB
warehouse. Before each dbt call, the tables it reads (dbt_project.yml's `spark_lake_tables`)
are written to the lake from the DuckDB warehouse, unless Spark wrote them itself (the loaded
sources). After a successful call, every table it built is copied into the DuckDB warehouse,
typed as a DuckDB build types it, where the fits, the checks and publishing read it. A failed
call copies nothing, so the warehouse keeps the last good tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import yaml

from retail_dp.resources import transaction
from retail_dp.sources.rules import ident, literal
from retail_dp.spark.lake import Lake

SPARK_TARGET = "spark"
# what dbt-spark builds: managed Parquet tables under its warehouse folder
WAREHOUSE_FOLDER = "warehouse"
BUILT = ("table", "incremental", "seed")


def lake_tables(project_dir: Path) -> list[tuple[str, str]]:
    """The (schema, table) pairs dbt on Spark reads from the lake."""
    config = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
    return [tuple(name.split(".", 1)) for name in config["vars"]["spark_lake_tables"]]


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


def _lake_is_current(con: duckdb.DuckDBPyConnection, lake: Lake, schema: str, table: str):
    """Whether the lake holds the warehouse's load of a source (Spark loads write both)."""
    folder = lake.path(schema, table)
    if schema != "sources" or not any(folder.glob("*.parquet")):
        return False
    load = "SELECT max(_load_id) FROM {}"
    in_lake = con.execute(load.format(lake.reader(schema, table))).fetchall()[0][0]
    in_warehouse = con.execute(load.format(f"{ident(schema)}.{ident(table)}")).fetchall()[0][0]
    return in_lake == in_warehouse


def write_dbt_inputs(con: duckdb.DuckDBPyConnection, lake: Lake, project_dir: Path) -> list[str]:
    """Write to the lake every table dbt on Spark reads that the warehouse has and the lake
    lacks or holds an older copy of. Returns what it wrote."""
    written = []
    for schema, table in lake_tables(project_dir):
        if not _exists(con, schema, table) or _lake_is_current(con, lake, schema, table):
            continue
        folder = lake.path(schema, table)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*"):
            old.unlink()
        con.execute(
            f"COPY (SELECT * FROM {ident(schema)}.{ident(table)}) "
            f"TO {literal(str(folder / 'part-0.parquet'))} (FORMAT parquet)"
        )
        written.append(f"{schema}.{table}")
    return written


def _built_tables(manifest: dict, run_results: dict) -> list[dict]:
    """The manifest nodes of the tables a dbt call built successfully."""
    done = {r["unique_id"] for r in run_results["results"] if r["status"] == "success"}
    return [
        node
        for unique_id, node in manifest["nodes"].items()
        if unique_id in done and node["config"].get("materialized") in BUILT
    ]


def _duckdb_types(node: dict) -> dict[str, str]:
    """A model's declared column types (its contract), as the DuckDB manifest has them."""
    return {
        name: column["data_type"]
        for name, column in node.get("columns", {}).items()
        if column.get("data_type")
    }


def mirror_built_tables(
    con: duckdb.DuckDBPyConnection,
    spark_dir: Path,
    manifest_path: Path,
    run_results: dict,
) -> list[str]:
    """Copy the tables a dbt call built on Spark into the DuckDB warehouse, each replaced in
    one transaction. Timestamps come back as UTC wall-clock TIMESTAMP, declared columns with
    their declared types. Returns the tables copied."""
    manifest = json.loads(manifest_path.read_text())
    copied = []
    con.execute("SET TimeZone = 'UTC'")
    with transaction(con):
        for node in _built_tables(manifest, run_results):
            schema, name = node["schema"], node["alias"]
            folder = spark_dir / WAREHOUSE_FOLDER / f"{schema}.db" / name
            reader = f"read_parquet({literal(str(folder / '*.parquet'))})"
            found = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
            declared = _duckdb_types(node)
            columns = []
            for column, kind, *_ in found:
                target = declared.get(column)
                if target is None and kind.startswith("TIMESTAMP WITH TIME ZONE"):
                    target = "TIMESTAMP"
                columns.append(
                    f"CAST({ident(column)} AS {target}) AS {ident(column)}"
                    if target
                    else ident(column)
                )
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
            con.execute(
                f"CREATE OR REPLACE TABLE {ident(schema)}.{ident(name)} AS "
                f"SELECT {', '.join(columns)} FROM {reader}"
            )
            copied.append(f"{schema}.{name}")
    return copied

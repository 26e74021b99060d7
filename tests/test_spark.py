"""The Spark engine gives the numbers DuckDB gives: the same text parses the same way, a Spark
load accepts, quarantines and defers the same rows, and a Spark build publishes the same marts.

These need the `[spark]` extra (`make test-spark` installs it and runs them); without it they
skip, unless RETAIL_DP_REQUIRE_SPARK=1 says the run must have Spark (CI).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from retail_dp.descriptors import Catalog, SloCategory
from retail_dp.settings import Settings
from retail_dp.sources import ingest
from retail_dp.sources.contracts import build_contracts
from retail_dp.sources.rules import PARSERS

if os.environ.get("RETAIL_DP_REQUIRE_SPARK") != "1":
    pytest.importorskip("pyspark", reason="the [spark] extra is not installed (make test-spark)")

from retail_dp.spark import ingest as spark_ingest  # noqa: E402
from retail_dp.spark.lake import Lake  # noqa: E402
from retail_dp.spark.session import spark_session  # noqa: E402
from retail_dp.spark.sql import to_spark  # noqa: E402

AS_OF = datetime(2026, 7, 1, 6, 0, 0)

# text that the two engines' own casts read differently, and text that they agree on
AWKWARD = [
    "12", " 12 ", "12.0", "12.5", "-0", "+5", "1e3", "1E-2", "0x1F", "1_000", "1,5", "",
    " ", "abc", "NaN", "nan", "Infinity", "-inf", "inf", "9223372036854775807",
    "9223372036854775808", "-9223372036854775808", "1e30", "2026-01-05", "2026-1-5",
    "20260105", "2026-01-05 10:00:00", "2026-01-05T10:00:00Z", "2026-01-05 10:00:00+02",
    "2026-01-05 10:00:00+02:00", "2026-01-05 10:00:00-0500", "2026-01-05T10:00:00.123456",
    "2026-01-05 10:00", "2026-01-05 10:00:00 UTC", "2026-13-01", "2026-02-30",
    "2026-01-05 25:00:00", "05/01/2026", "infinity", "-infinity", "epoch", "true", "TRUE",
    "t", "yes", "1", "0", "False", " f", None,
]  # fmt: skip


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    return spark_session(tmp_path_factory.mktemp("spark"))


@pytest.mark.parametrize("kind", sorted(set(PARSERS["duckdb"]) - {"VARCHAR"}))
def test_the_engines_parse_text_alike(kind, spark):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE t (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(AWKWARD)))
    spark.createDataFrame(list(enumerate(AWKWARD)), "i int, x string").createOrReplaceTempView("t")
    query = "SELECT i, CAST({} AS VARCHAR) FROM t ORDER BY i"
    on_duckdb = con.execute(query.format(PARSERS["duckdb"][kind].format(x="x"))).fetchall()
    on_spark = spark.sql(to_spark(query.format(PARSERS["spark"][kind].format(x="x")))).collect()
    differ = [
        (AWKWARD[i], a, b)
        for (i, a), (_, b) in zip(on_duckdb, on_spark, strict=True)
        if _same_value(kind, a) != _same_value(kind, b)
    ]
    assert not differ, f"{kind}: (text, DuckDB, Spark) {differ}"
    parsed = sum(v is not None for _, v in on_duckdb)
    assert 0 < parsed < len(AWKWARD), f"{kind}: the cases must include text that does not parse"


def _same_value(kind: str, text: str | None):
    """The value a parser's text output stands for (the engines print doubles differently)."""
    if text is None:
        return None
    if kind == "DOUBLE":
        return float(text)
    if kind == "BOOLEAN":
        return text.lower() == "true"
    return text


def _load_everything(load, data_dir: Path) -> dict:
    settings = Settings.from_env(data_dir=data_dir)
    catalog = Catalog.load(settings.descriptors_dir)
    results = {}
    for name, schema in build_contracts(catalog).items():
        location = next(i for i in catalog[name].inputs if hasattr(i, "location")).location
        freshness = catalog[name].slos[SloCategory.freshness].column
        results[name] = load(schema, data_dir, location, freshness)
    return results


def _rows(con: duckdb.DuckDBPyConnection, table: str, order: str, leave_out=()) -> list:
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    kept = ", ".join(f'"{c}"' for c in columns if c not in leave_out)
    return con.execute(f"SELECT {kept} FROM {table} ORDER BY {order}").fetchall()


@pytest.mark.parametrize("shape", ["sample", "marketplace"])
def test_a_spark_load_judges_every_row_as_duckdb_does(shape, sample, marketplace, spark, tmp_path):
    """Accepted rows (with lineage), quarantine (file, row, reason, field, detail, the row as
    read), deferred rows and the landing audit are the same on both engines."""
    landing = sample[0] if shape == "sample" else marketplace[1].data_dir
    on_duckdb, on_spark = duckdb.connect(), duckdb.connect()
    lake = Lake.of(tmp_path / "spark")
    by_duckdb = _load_everything(
        lambda schema, data_dir, location, freshness: ingest.load_source(
            on_duckdb, schema, data_dir, location, AS_OF, "r", freshness
        ),
        landing,
    )
    by_spark = _load_everything(
        lambda schema, data_dir, location, freshness: spark_ingest.load_source(
            spark, on_spark, schema, data_dir, location, AS_OF, lake, "r", freshness
        ),
        landing,
    )
    quarantined = 0
    for name, result in by_duckdb.items():
        other = by_spark[name]
        assert other.mode == "full" and other.reason == "the Spark engine loads in full"
        assert other.reconciles and result.reconciles
        for field in ("rows_read", "rows_accepted", "rows_quarantined", "rows_deferred"):
            assert getattr(other, field) == getattr(result, field), (name, field)
        assert other.quarantined_by_reason == result.quarantined_by_reason, name
        audit, spark_audit = vars(result.audit), vars(other.audit)
        assert spark_audit == audit, name
        accepted = f"sources.{name}"
        order = "_source_file, _source_row"
        assert _rows(on_spark, accepted, order) == _rows(on_duckdb, accepted, order), name
        quarantined += result.rows_quarantined
    assert quarantined > 0, "the landing zone must exercise the quarantine"
    order = "source, source_file, source_row"
    for table, leave_out in (("sources.quarantine", ("quarantined_at",)), ("sources.deferred", ())):
        left = _rows(on_duckdb, table, order, (*leave_out, "record"))
        assert len(left) > 0, table
        assert _rows(on_spark, table, order, (*leave_out, "record")) == left, table
        # the row as read, as JSON: the same fields and values, whatever the spacing
        records = f"SELECT record FROM {table} ORDER BY {order}"
        assert [json.loads(r) for (r,) in on_spark.execute(records).fetchall()] == [
            json.loads(r) for (r,) in on_duckdb.execute(records).fetchall()
        ], table
    # the registry records the Spark loads like any other
    loads = on_spark.execute("SELECT source, mode FROM sources.loads ORDER BY load_id").fetchall()
    assert loads == [(name, "full") for name in by_spark]

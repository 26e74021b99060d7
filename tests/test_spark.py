"""The Spark engine gives the numbers DuckDB gives: the same text parses the same way, a Spark
load accepts, quarantines and defers the same rows, and a Spark build publishes the same marts.

These need the `[spark]` extra (`make test-spark` installs it and runs them); without it they
skip, unless RETAIL_DP_REQUIRE_SPARK=1 says the run must have Spark (CI).
"""

from __future__ import annotations

import json
import math
import os
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from retail_dp.descriptors import Catalog, SloCategory
from retail_dp.runner import run_refresh
from retail_dp.settings import Settings
from retail_dp.sources import ingest
from retail_dp.sources.contracts import build_contracts
from retail_dp.sources.ingest import add_to_suppression_list
from retail_dp.sources.rules import PARSERS

pytestmark = pytest.mark.spark

if os.environ.get("RETAIL_DP_REQUIRE_SPARK") != "1":
    pytest.importorskip("pyspark", reason="the [spark] extra is not installed (make test-spark)")

from retail_dp.spark import ingest as spark_ingest  # noqa: E402
from retail_dp.spark.lake import Lake  # noqa: E402
from retail_dp.spark.session import spark_session  # noqa: E402
from retail_dp.spark.sql import to_spark  # noqa: E402

from .conftest import AS_OF  # noqa: E402

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


def _with_erasures(landing: Path, out: Path, customers: int) -> Path:
    """The landing zone (linked, not copied) with the first buying customers erased."""
    out.mkdir()
    for path in landing.iterdir():
        (out / path.name).symlink_to(path)
    with duckdb.connect() as con:
        ids = con.execute(
            "SELECT DISTINCT trim(customer_id) FROM read_csv(?, all_varchar = true) "
            "WHERE customer_id IS NOT NULL ORDER BY 1 LIMIT ?",
            [str(landing / "purchase.csv"), customers],
        ).fetchall()
    for (customer_id,) in ids:
        add_to_suppression_list(out, customer_id)
    return out


def _rows(con: duckdb.DuckDBPyConnection, table: str, order: str, leave_out=()) -> list:
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    kept = ", ".join(f'"{c}"' for c in columns if c not in leave_out)
    return con.execute(f"SELECT {kept} FROM {table} ORDER BY {order}").fetchall()


@pytest.mark.parametrize("shape", ["sample", "marketplace"])
def test_a_spark_load_judges_every_row_as_duckdb_does(shape, sample, marketplace, spark, tmp_path):
    """Accepted rows (with lineage), quarantine (file, row, reason, field, detail, the row as
    read), deferred rows and the landing audit are the same on both engines; on the
    marketplace, with three customers erased (their rows dropped before judging)."""
    landing = sample[0] if shape == "sample" else marketplace[1].data_dir
    if shape == "marketplace":
        landing = _with_erasures(landing, tmp_path / "landing", 3)
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
    if shape == "marketplace":
        assert by_spark["purchase"].audit.rows_suppressed > 0
    # the registry records the Spark loads like any other
    loads = on_spark.execute("SELECT source, mode FROM sources.loads ORDER BY load_id").fetchall()
    assert loads == [(name, "full") for name in by_spark]


# DuckDB's bookkeeping of which customers an increment touches; a Spark build rebuilds all
INCREMENT_BOOKKEEPING = {"intermediate.int_refresh_scope", "intermediate.int_touched_customers"}


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        f"{schema}.{name}"
        for schema, name in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('intermediate', 'marts', 'semantic') ORDER BY 1, 2"
        ).fetchall()
        if f"{schema}.{name}" not in INCREMENT_BOOKKEEPING
    ]


def _equal(left, right) -> bool:
    """Text equal; numbers equal to 1e-9 relative (a DECIMAL and a DOUBLE may hold one)."""
    if isinstance(left, int | float | Decimal) and isinstance(right, int | float | Decimal):
        left, right = float(left), float(right)
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return abs(left - right) <= 1e-9 * max(abs(left), abs(right))
    return left == right


def assert_same_tables(expected: Path, actual: Path) -> dict[str, int]:
    """Every table of the DuckDB build is in the Spark build with the same columns and rows.
    Returns the rows compared per table."""
    compared = {}
    with (
        duckdb.connect(str(expected), read_only=True) as a,
        duckdb.connect(str(actual), read_only=True) as b,
    ):
        assert _tables(b) == _tables(a)
        for table in _tables(a):
            columns = [r[0] for r in a.execute(f"DESCRIBE {table}").fetchall()]
            assert [r[0] for r in b.execute(f"DESCRIBE {table}").fetchall()] == columns, table
            query = f"SELECT * FROM {table} ORDER BY ALL"
            left, right = a.execute(query).fetchall(), b.execute(query).fetchall()
            assert len(left) == len(right), f"{table}: {len(left)} rows, Spark {len(right)}"
            for x, y in zip(left, right, strict=True):
                differ = [c for c, u, v in zip(columns, x, y, strict=True) if not _equal(u, v)]
                assert not differ, f"{table}: {differ} differ in {x} and {y}"
            compared[table] = len(left)
    return compared


@pytest.mark.parametrize("shape", ["sample", "marketplace"])
def test_a_spark_build_publishes_what_a_duckdb_build_does(shape, built, marketplace, tmp_path):
    """The whole refresh on Spark (load, dbt, fits on the copied tables, the semantic layer,
    checks, publishing) gives the tables a DuckDB build gives, and publishes a snapshot the
    delivery service reads as it reads DuckDB's. A green dbt test is not enough: the numbers
    are compared (with TIMESTAMP_NTZ, dbt-spark once built empty tables under a green test)."""
    by_duckdb, on_duckdb = built[:2] if shape == "sample" else marketplace[:2]
    settings = Settings.from_env(
        engine="spark",
        data_dir=on_duckdb.data_dir,
        warehouse=tmp_path / "wh" / "retail_dp.duckdb",
        spark_dir=tmp_path / "spark",
    )
    report = run_refresh(settings, as_of=AS_OF, instance=dg.DagsterInstance.ephemeral())
    assert report.ok, report.failure or report.failed_error_checks
    assert not report.skipped
    compared = assert_same_tables(on_duckdb.warehouse, settings.warehouse)
    assert compared["marts.fct_purchase"] > 0 and compared["semantic.customer_value"] > 0
    assert all(compared[t] > 0 for t in compared if t.startswith("marts.")), compared
    # the checks (SLO checks on DuckDB's copies, dbt's tests on Spark) measure the same
    expected = {(c.asset, c.check): (c.passed, c.measured) for c in by_duckdb.checks}
    measured = {(c.asset, c.check): (c.passed, c.measured) for c in report.checks}
    assert measured.keys() == expected.keys()
    differ = {
        key: (expected[key], measured[key])
        for key in expected
        if expected[key][0] != measured[key][0] or not _equal(expected[key][1], measured[key][1])
    }
    assert not differ, differ
    assert len(expected) > 50
    # the marts were built by Spark: its tables are on disk, in Parquet
    built_by_spark = settings.spark_dir / "warehouse" / "marts.db" / "customer_purchase_metrics"
    assert any(built_by_spark.glob("*.parquet"))
    # and published for the delivery service like any build
    assert (settings.warehouse.parent / "published" / "CURRENT").exists()

"""Daily increments: after any sequence of them (late lines, corrections, a re-sent file, a
changed CRM extract) the warehouse equals a full rebuild of the same files at the same as_of,
row for row: at the sources (accepted, quarantined, deferred, the landing audit) and, through
the whole pipeline with real dbt incremental models, in every mart and semantic table."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from retail_dp.delivery.snapshots import current_name, parts_list, published_dir
from retail_dp.descriptors import Catalog, LandingInput
from retail_dp.generator.daily import daily_drops, end_of
from retail_dp.runner import run_refresh
from retail_dp.settings import PROJECT_ROOT, Settings
from retail_dp.sources.audit import audit_judgement
from retail_dp.sources.contracts import build_contracts
from retail_dp.sources.ingest import load_source, table
from retail_dp.sources.landing import find_landing_files
from retail_dp.sources.profile import profile_load, profile_table
from retail_dp.transform.assets import dbt_executable

from .conftest import AS_OF

CATALOG = Catalog.load(PROJECT_ROOT / "data_products")
CONTRACTS = build_contracts(CATALOG)
START = date(2026, 6, 20)  # the daily files begin here; the samples end on 2026-06-30


def _location(source: str) -> str:
    return next(i.location for i in CATALOG[source].inputs if isinstance(i, LandingInput))


def _load_all(con: duckdb.DuckDBPyConnection, data_dir: Path, as_of: str) -> dict:
    return {
        name: load_source(con, schema, data_dir, _location(name), datetime.fromisoformat(as_of))
        for name, schema in CONTRACTS.items()
    }


def _profile_all(con: duckdb.DuckDBPyConnection, loaded: dict) -> dict[str, bool]:
    """Profile every source as its asset does; a reused profile must be the one a fresh
    profile of the accepted table gives. Returns which were reused."""
    reused = {}
    for name, result in loaded.items():
        key = CONTRACTS[name].metadata["key"]
        profile, reused[name] = profile_load(
            con,
            name,
            table(name),
            result.columns,
            key,
            result.load_id,
            result.previous_load_id,
            unchanged=result.left_rows_unchanged,
        )
        if reused[name]:
            assert profile == profile_table(con, table(name), result.columns, key), name
    return reused


def _drop(days: list[Path], landing: Path, day: date) -> None:
    for path in days:
        if path.stem == day.isoformat():
            shutil.copy(path, landing / "purchase" / path.name)


def _edit_csv(path: Path, edit) -> None:
    """Rewrite a landing file through `edit(rows) -> rows` (a re-sent or changed extract)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    rows = edit(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _lay_out(landing: Path, tmp: Path) -> tuple[Path, list[Path]]:
    """The daily layout of a landing zone, and an increment landing zone holding its history."""
    full = tmp / "daily"
    days = [d for d in daily_drops(landing, full, START) if d.stem < AS_OF.date().isoformat()]
    inc = tmp / "landing"
    (inc / "purchase").mkdir(parents=True)
    for name in ("customer_info.csv", "product.csv"):
        shutil.copy(full / name, inc / name)
    shutil.copy(full / "purchase" / "history.csv", inc / "purchase" / "history.csv")
    return inc, days


def _changes_along_the_way(inc: Path, day: date) -> None:
    """What a real landing zone sees besides new files: on one day the order system re-sends
    an earlier day's file with a line dropped and another corrected in place, and the CRM
    extract changes a customer's country and drops a customer who had bought."""
    earlier = inc / "purchase" / f"{(day - timedelta(days=2)).isoformat()}.csv"
    if earlier.exists():

        def resend(rows):
            rows = rows[1:]
            if rows:
                rows[0]["quantity"] = str(int(float(rows[0]["quantity"] or 1)) + 5)
            return rows

        _edit_csv(earlier, resend)

    def crm(rows):
        rows[0]["country"] = "United States"
        return rows[:1] + rows[2:]

    _edit_csv(inc / "customer_info.csv", crm)


def _differences(con: duckdb.DuckDBPyConnection, left: str, right: str, columns: str) -> int:
    return con.execute(
        f"""SELECT (SELECT count(*) FROM (SELECT {columns} FROM {left} EXCEPT ALL
                                          SELECT {columns} FROM {right}))
                 + (SELECT count(*) FROM (SELECT {columns} FROM {right} EXCEPT ALL
                                          SELECT {columns} FROM {left}))"""
    ).fetchall()[0][0]


@pytest.mark.parametrize("shape", ["sample", "marketplace"])
def test_source_increments_equal_a_full_load(shape, sample, marketplace, tmp_path):
    landing = sample[0] if shape == "sample" else marketplace[1].data_dir
    inc, days = _lay_out(landing, tmp_path)
    con = duckdb.connect(str(tmp_path / "increments.duckdb"))
    first = _load_all(con, inc, end_of(START - timedelta(days=1)))
    assert all(r.mode == "full" for r in first.values())
    assert not any(_profile_all(con, first).values())
    modes, profiles_reused = [], 0
    for path in days:
        day = date.fromisoformat(path.stem)
        shutil.copy(path, inc / "purchase" / path.name)
        changing = day == START + timedelta(days=4)
        if changing:
            _changes_along_the_way(inc, day)
        loaded = _load_all(con, inc, end_of(day))
        modes.append(loaded["purchase"].mode)
        # a profile is reused exactly when the load left the accepted rows as they were
        reused = _profile_all(con, loaded)
        assert reused == {name: r.left_rows_unchanged for name, r in loaded.items()}
        assert not reused["purchase"] or not loaded["purchase"].rows_loaded
        if changing:
            assert not reused["customer_info"]
        profiles_reused += sum(reused.values())
        # an increment reads the new files only (and the one re-sent)
        resent = inc / "purchase" / f"{(day - timedelta(days=2)).isoformat()}.csv"
        expected = {str(inc / "purchase" / path.name)}
        if day == START + timedelta(days=4) and resent.exists():
            expected.add(str(resent))
        assert set(loaded["purchase"].files_loaded) == expected
        assert all(r.reconciles for r in loaded.values())
    assert set(modes) == {"increment"}
    assert profiles_reused > 0
    as_of = end_of(date.fromisoformat(days[-1].stem))

    full = tmp_path / "full.duckdb"
    with duckdb.connect(str(full)) as fcon:
        _load_all(fcon, inc, as_of)
    con.execute(f"ATTACH '{full}' AS f (READ_ONLY)")
    for name, schema in CONTRACTS.items():
        cols = ", ".join(f'"{c}"' for c in schema.columns)
        assert _differences(con, f"sources.{name}", f"f.sources.{name}", cols) == 0, name
    quarantined = "source, source_file, source_row, reason, field, detail"
    assert _differences(con, "sources.quarantine", "f.sources.quarantine", quarantined) == 0
    deferred = "source, source_file, source_row, record"
    assert _differences(con, "sources.deferred", "f.sources.deferred", deferred) == 0
    for name in CONTRACTS:
        audits = [
            json.loads(
                c.execute(
                    "SELECT audit FROM sources.landing_audit WHERE source = ?", [name]
                ).fetchall()[0][0]
            )
            for c in (con, duckdb.connect(str(full), read_only=True))
        ]
        for audit in audits:
            audit.pop("run_id")
            audit.pop("load_id")
        assert audits[0] == audits[1], name
    # changes are kept until every source has loaded since and dbt has caught up past them
    kept = con.execute("SELECT min(load_id), count(*) FROM sources.changes").fetchall()[0]
    assert kept[1] > 0
    con.execute("CREATE SCHEMA IF NOT EXISTS reference")
    con.execute("CREATE TABLE reference.refresh_watermark AS SELECT 10**6 AS through_load_id")
    _load_all(con, inc, as_of)
    oldest = con.execute("SELECT min(load_id) FROM sources.load_state").fetchall()[0][0]
    assert (
        con.execute("SELECT count(*) FROM sources.changes WHERE load_id <= ?", [oldest]).fetchall()[
            0
        ][0]
        == 0
    )
    # the registry: every daily file once, with its fingerprint and counts; the re-sent file
    # twice, the first time retracted
    files = con.execute(
        "SELECT path, sha256, rows_read, retracted_in FROM sources.landing_files "
        "WHERE source = 'purchase'"
    ).fetchall()
    assert len({p for p, *_ in files}) == len(days) + 1
    assert sum(r is not None for *_, r in files) == 1
    assert all(len(sha) == 64 and rows > 0 for _, sha, rows, _ in files)


TABLES = ("marts", "intermediate", "semantic")


def _assert_rescored(warehouse: Path, instance: dg.DagsterInstance) -> None:
    """A run between refits: no new fit, every customer scored with the last one at the new
    as_of, and the dbt models built only the as_of snapshot."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        fits = con.execute(
            "SELECT model, count(*) FROM reference.model_fits GROUP BY ALL"
        ).fetchall()
        snapshots = con.execute(
            "SELECT DISTINCT days_before_as_of FROM intermediate.int_cross_sell_features"
        ).fetchall()
        unscored = con.execute(
            "SELECT count(*) FROM marts.customer_lifetime_value l "
            "JOIN intermediate.int_customer_rfm USING (customer_id) "
            "WHERE l.expected_purchases_365d IS NULL"
        ).fetchall()[0][0]
    assert sorted(fits) == [("cross_sell", 1), ("customer_lifetime_value", 1)]
    assert snapshots == [(0,)]
    assert unscored == 0
    event = instance.get_latest_materialization_event(dg.AssetKey(["marts", "cross_sell_model"]))
    metadata = event.asset_materialization.metadata
    assert metadata["refit"].value is False and "re-scoring" in metadata["refit_reason"].value


@pytest.mark.parametrize("shape", ["sample", "marketplace"])
def test_incremental_refresh_equals_a_full_rebuild(shape, sample, marketplace, tmp_path):
    """Real Dagster runs with real dbt incremental models: a build, then two daily increments
    (one with a re-sent file and a changed CRM extract), against one full rebuild."""
    landing = sample[0] if shape == "sample" else marketplace[1].data_dir
    inc, days = _lay_out(landing, tmp_path)
    settings = Settings.from_env(data_dir=inc, warehouse=tmp_path / "inc" / "retail_dp.duckdb")
    instance = dg.DagsterInstance.ephemeral()
    base_days = [d for d in days if d.stem < "2026-06-26"]
    for path in base_days:
        shutil.copy(path, inc / "purchase" / path.name)
    first = run_refresh(
        settings, as_of=datetime.fromisoformat(end_of(date(2026, 6, 25))), instance=instance
    )
    assert first.ok, first.failure
    published = published_dir(settings.warehouse)
    first_parts = _published_parts(published)
    for day in (date(2026, 6, 26), date(2026, 6, 27)):
        _drop(days, inc, day)
        last = day == date(2026, 6, 27)
        if last:
            _changes_along_the_way(inc, day + timedelta(days=1))
        # the day between refits re-scores with the base run's fit; the last one refits, so
        # that the fitted marts can be compared with a full rebuild too
        report = run_refresh(
            settings,
            as_of=datetime.fromisoformat(end_of(day)),
            instance=instance,
            refit="always" if last else "auto",
        )
        assert report.ok, report.failure
        if not last:
            _assert_rescored(settings.warehouse, instance)
        modes = {s: m for s, m, *_ in report.loads}
        assert modes == {
            "customer_info": "increment",
            "product": "increment",
            "purchase": "increment",
        }
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        scope = con.execute(
            "SELECT all_customers, through_load_id, caught_up_to "
            "FROM intermediate.int_refresh_scope"
        ).fetchall()[0]
        touched = con.execute("SELECT count(*) FROM intermediate.int_touched_customers")
        touched = touched.fetchall()[0][0]
        customers = con.execute("SELECT count(*) FROM marts.dim_customer").fetchall()[0][0]
    # the last increment rebuilt only the customers it touched
    assert scope[0] is False and scope[1] > scope[2]
    assert 0 < touched < customers / 4
    _assert_published_parts_are_shared(settings.warehouse, first_parts)

    full_settings = Settings.from_env(
        data_dir=inc, warehouse=tmp_path / "full" / "retail_dp.duckdb"
    )
    full = run_refresh(
        full_settings,
        as_of=datetime.fromisoformat(end_of(date(2026, 6, 27))),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert full.ok, full.failure
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    con.execute(f"ATTACH '{full_settings.warehouse}' AS f (READ_ONLY)")
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema IN (SELECT unnest(?)) "
        "AND table_name NOT IN ('int_refresh_scope', 'int_touched_customers') ORDER BY ALL",
        [list(TABLES)],
    ).fetchall()
    assert len(tables) > 15
    compared = []
    for schema, name in tables:
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_catalog = "
                "current_database() AND table_schema = ? AND table_name = ?",
                [schema, name],
            ).fetchall()
        ]
        cols = ", ".join(f'"{c}"' for c in columns)
        assert _differences(con, f"{schema}.{name}", f"f.{schema}.{name}", cols) == 0, (
            f"{schema}.{name} differs from the full rebuild"
        )
        compared.append(f"{schema}.{name}")
    assert "marts.fct_purchase" in compared and "marts.customer_lifetime_value" in compared
    con.close()
    if shape == "sample":
        _assert_key_tests_read_the_refreshed_customers(settings.warehouse)
        _assert_source_key_test_reads_the_loaded_lines(settings.warehouse)


def _published_parts(published: Path) -> set[str]:
    """The Parquet parts the current snapshot's fct_purchase reads."""
    snapshot = published / "snapshots" / current_name(published)
    return set(json.loads(parts_list(snapshot).read_text()))


def _assert_published_parts_are_shared(warehouse: Path, first_parts: set[str]) -> None:
    """The increments published fct_purchase again as the months they changed, sharing the
    others with the first build's snapshot; the snapshot reads what the warehouse holds."""
    published = published_dir(warehouse)
    parts = _published_parts(published)
    assert parts & first_parts and parts - first_parts, (first_parts, parts)
    on_disk = {p.name for p in (published / "parts").glob("*.parquet")}
    listed = set()
    for listing in (published / "snapshots").glob("*.parts.json"):
        listed |= set(json.loads(listing.read_text()))
    assert on_disk == listed  # nothing kept that no snapshot reads
    snapshot = published / "snapshots" / current_name(published)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute(f"ATTACH '{snapshot}' AS s (READ_ONLY)")
        assert _differences(con, "marts.fct_purchase", "s.marts.fct_purchase", "*") == 0
        types = (
            "SELECT column_name, data_type FROM information_schema.columns WHERE "
            "table_catalog = ? AND table_schema = 'marts' AND table_name = 'fct_purchase'"
        )
        assert sorted(con.execute(types, ["s"]).fetchall()) == sorted(
            con.execute(
                types, [con.execute("SELECT current_database()").fetchall()[0][0]]
            ).fetchall()
        )


def _dbt(warehouse: Path, *args: str) -> subprocess.CompletedProcess:
    """Run dbt on `warehouse`, as a run does."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    vars_ = json.dumps({"warehouse": str(warehouse), "memory_limit": "2GB"})
    return subprocess.run(
        [
            dbt_executable(),
            *args,
            "--vars",
            vars_,
            "--target-path",
            str(warehouse.parent / "dbt_target"),
        ],
        cwd=PROJECT_ROOT / "dbt_project",
        env=env,
        capture_output=True,
        text=True,
    )


def _key_test_passes(warehouse: Path) -> bool:
    """Run fct_purchase's key test with dbt on `warehouse`, as a run does."""
    run = _dbt(warehouse, "test", "--select", "unique_fct_purchase_purchase_id")
    assert "unique_fct_purchase_purchase_id" in run.stdout, run.stdout + run.stderr
    return run.returncode == 0


def _assert_key_tests_read_the_refreshed_customers(warehouse: Path) -> None:
    """An increment tests the keys of the customers it rebuilt, not all of history: a
    duplicate line of a customer in scope fails fct_purchase's key test; one of a customer out
    of scope is left to the next full build."""

    def duplicate(touched: bool) -> None:
        with duckdb.connect(str(warehouse)) as con:
            con.execute(
                f"""INSERT INTO marts.fct_purchase SELECT * FROM marts.fct_purchase
                WHERE customer_id {"" if touched else "NOT"} IN (
                    SELECT customer_id FROM intermediate.int_touched_customers)
                LIMIT 1"""
            )

    assert _key_test_passes(warehouse)
    duplicate(touched=False)
    assert _key_test_passes(warehouse)
    duplicate(touched=True)
    assert not _key_test_passes(warehouse)
    # a --full-refresh rebuilds every customer, so its scope, and the key tests, are everyone
    run = _dbt(warehouse, "run", "--full-refresh", "--select", "int_refresh_scope")
    assert run.returncode == 0, run.stdout + run.stderr
    with duckdb.connect(str(warehouse), read_only=True) as con:
        scope = con.execute("SELECT all_customers FROM intermediate.int_refresh_scope")
        assert scope.fetchall() == [(True,)]


def _source_key_test(warehouse: Path) -> dict:
    """Run the key test of sources.purchase with dbt on `warehouse`, as the source checks do;
    its result (a warning test exits 0 either way)."""
    name = "source_unique_retail_purchase_purchase_id"
    run = _dbt(warehouse, "test", "--select", name)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((warehouse.parent / "dbt_target" / "run_results.json").read_text())
    [result] = [r for r in results["results"] if name in r["unique_id"]]
    return result


def _assert_source_key_test_reads_the_loaded_lines(warehouse: Path) -> None:
    """A daily run's key test on sources.purchase reads the keys of the lines loaded since the
    models last caught up, and finds them again among all the lines; lines loaded before were
    tested then. Without a watermark (a first build) it reads every line."""

    def copy_a_line(load_id: str) -> None:
        with duckdb.connect(str(warehouse)) as con:
            con.execute(
                f"""INSERT INTO sources.purchase
                SELECT * REPLACE ({load_id} AS _load_id) FROM sources.purchase
                WHERE purchase_id = (SELECT min(purchase_id) FROM sources.purchase)"""
            )

    assert _source_key_test(warehouse)["status"] == "pass"
    copy_a_line("_load_id")  # a duplicate among lines loaded before
    assert _source_key_test(warehouse)["status"] == "pass"
    copy_a_line("(SELECT max(through_load_id) + 1 FROM reference.refresh_watermark)")
    result = _source_key_test(warehouse)
    assert (result["status"], result["failures"]) == ("warn", 1)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "DELETE FROM sources.purchase WHERE _load_id > (SELECT max(through_load_id) "
            "FROM reference.refresh_watermark)"
        )
        con.execute("DROP TABLE reference.refresh_watermark")
    result = _source_key_test(warehouse)
    assert (result["status"], result["failures"]) == ("warn", 1)


def test_a_daily_drop_with_no_rows_loads_and_is_recorded(sample, tmp_path):
    """A day with no orders is a header-only file in the source's folder: it loads (and is
    registered with 0 rows); a header-only full extract still fails (tests/test_contracts.py)."""
    inc, days = _lay_out(sample[0], tmp_path)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    _load_all(con, inc, end_of(START - timedelta(days=1)))
    header = (inc / "purchase" / "history.csv").read_text().splitlines()[0]
    quiet = inc / "purchase" / f"{START.isoformat()}.csv"
    quiet.write_text(header + "\n")
    loaded = _load_all(con, inc, end_of(START))["purchase"]
    assert loaded.mode == "increment" and loaded.files_loaded == [str(quiet)]
    assert loaded.rows_loaded == 0 and loaded.reconciles
    assert con.execute(
        "SELECT rows_read FROM sources.landing_files WHERE path = ?", [str(quiet)]
    ).fetchall() == [(0,)]


def test_counting_duplicates_among_added_keys_equals_counting_them_all(sample, tmp_path):
    """An increment's landing audit counts duplicate keys among the keys it added only (the
    accepted rows before it had none). Over rows where two added keys repeat and one key is
    missing, that gives what a count over every row gives."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    _load_all(con, sample[0], AS_OF.isoformat())
    schema = CONTRACTS["purchase"]
    con.execute(
        """CREATE TABLE state AS SELECT * EXCLUDE (_source_file, _source_row, _load_id),
            NULL::VARCHAR AS _reason, NULL::VARCHAR AS _field, FALSE AS _ceiling_warned
        FROM sources.purchase"""
    )
    con.execute("CREATE TABLE added AS SELECT * FROM state ORDER BY purchase_id LIMIT 3")
    con.execute("INSERT INTO state SELECT * FROM added LIMIT 2")
    con.execute("INSERT INTO state SELECT * REPLACE (NULL AS purchase_id) FROM added LIMIT 1")
    files = find_landing_files(sample[0], _location("purchase"), "purchase")
    audits = [
        audit_judgement(
            con, schema, files, 0, AS_OF, "purchase_ts", None, "state", duplicates_among=among
        )
        for among in (None, "SELECT purchase_id FROM added")
    ]
    assert audits[0].accepted_key_duplicates == 3
    assert audits[1] == audits[0]

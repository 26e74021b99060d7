"""SLO checks, write-audit-publish, incidents and `retail-dp check`, on real Dagster runs."""

from __future__ import annotations

import json
import os
import shutil
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from retail_dp.delivery.snapshots import current_name, published_dir
from retail_dp.descriptors import Alerts, Catalog
from retail_dp.generator.landing import GenerateRequest, generate
from retail_dp.quality import incidents
from retail_dp.quality.marts import mart_checks
from retail_dp.quality.slo import MeasureContext
from retail_dp.runner import run_checks, run_refresh
from retail_dp.settings import Settings
from retail_dp.transform.marts import Mart

from .conftest import AS_OF, END_DATE, located, run_cli

MART_TABLES = (
    "fct_purchase",
    "dim_customer",
    "dim_product",
    "customer_purchase_metrics",
    "customer_category_profile",
    "category_affinity",
    "customer_lifetime_value",
    "cross_sell_recommendations",
)
SLO_CATEGORIES = ("completeness", "uniqueness", "freshness", "validity", "schema", "accuracy")


class Receiver:
    """A real webhook receiver on loopback that keeps what it is sent."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/retail"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()
    return f"http://127.0.0.1:{port}/down"


def mart_fingerprints(warehouse: Path) -> dict[str, str]:
    """Every mart's full contents, ordered, hashed: equal means byte-for-byte equal rows."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t: con.execute(
                f"SELECT md5(string_agg(CAST(m AS VARCHAR), '|' ORDER BY CAST(m AS VARCHAR))) "
                f"FROM marts.{t} m"
            ).fetchall()[0][0]
            for t in MART_TABLES
        }


@pytest.fixture(scope="module")
def defective(built, tmp_path_factory):
    """A landing zone with 6% planted defects of every kind, refreshed into a copy of the built
    warehouse with a webhook receiver listening: the customer_info SLOs fail and block."""
    _, settings, _ = built
    root = tmp_path_factory.mktemp("defective")
    landing = root / "landing"
    manifest = generate(
        GenerateRequest(customers=400, seed=7, end_date=END_DATE, out=landing, defect_rate=0.06)
    )
    warehouse = root / "wh" / "retail_dp.duckdb"
    warehouse.parent.mkdir()
    shutil.copy(settings.warehouse, warehouse)
    shutil.copytree(published_dir(settings.warehouse), published_dir(warehouse))
    before = mart_fingerprints(warehouse)
    receiver = Receiver()
    old = os.environ.get(incidents.WEBHOOK_ENV)
    os.environ[incidents.WEBHOOK_ENV] = receiver.url
    try:
        bad = Settings.from_env(data_dir=landing, warehouse=warehouse)
        report = run_refresh(bad, as_of=AS_OF, instance=dg.DagsterInstance.ephemeral())
    finally:
        receiver.close()
        if old is None:
            os.environ.pop(incidents.WEBHOOK_ENV)
        else:
            os.environ[incidents.WEBHOOK_ENV] = old
    yield report, bad, manifest, before, receiver.received


def outcome(report, asset: str, check: str):
    found = [c for c in report.checks if c.asset == asset and c.check == check]
    assert found, f"{asset}:{check} was not evaluated"
    return found[0]


def test_blocking_failure_stops_the_marts_and_keeps_them_byte_for_byte(defective):
    report, settings, _, before, _ = defective
    assert not report.ok
    assert "customer_info" in report.materialized
    assert not [a for a in report.materialized if a.startswith(("marts/", "staging/"))]
    assert "purchase" not in report.materialized  # it waits on customer_info's checks too
    assert mart_fingerprints(settings.warehouse) == before
    # consumers keep the last good snapshot: nothing was published
    assert "published/snapshot" not in report.materialized
    published = published_dir(settings.warehouse)
    assert len(list((published / "snapshots").glob("*.duckdb"))) == 1
    assert current_name(published) == next((published / "snapshots").glob("*.duckdb")).name


def test_customer_defects_trip_their_checks_with_the_measured_value(defective):
    report, _, manifest, _, _ = defective
    rows = manifest["rows"]["customer_info"]
    defects = manifest["defects"]
    expect = {
        "slo_completeness": 1 - defects["missing_customer_id"] / rows,
        "slo_uniqueness": 1 - defects["duplicate_customer_id"] / rows,
        "slo_validity": 1 - defects["malformed_email"] / rows,
    }
    for check, value in expect.items():
        result = outcome(report, "customer_info", check)
        assert not result.passed, check
        assert result.severity == "ERROR"
        assert result.measured == pytest.approx(value, abs=1e-6), check
    validity = outcome(report, "customer_info", "slo_validity").metadata
    assert sum(validity["kept_but_invalid"].values()) == defects["malformed_email"]
    assert validity["rows_read"] == rows
    # the checks of the other categories hold, and a WARN check never blocks
    assert outcome(report, "customer_info", "slo_schema").passed
    assert outcome(report, "customer_info", "slo_accuracy").passed


def test_purchase_defects_trip_validity_with_each_kind_counted(defective):
    """purchase never loaded (blocked); `retail-dp check` audits its landing files anyway."""
    _, settings, manifest, _, _ = defective
    checks = run_checks(
        settings,
        as_of=AS_OF,
        instance=dg.DagsterInstance.ephemeral(),
        select=["purchase"],
        categories=["validity", "completeness", "uniqueness"],
    )
    by_check = {r.check: r for r in checks.rows if r.asset == "purchase"}
    validity = by_check["slo_validity"]
    defects = manifest["defects"]
    kinds = (
        "nonpositive_quantity",
        "orphan_customer_id",
        "orphan_product_id",
        "bad_unit_price",
    )
    # lines after as_of are deferred: outside the denominator, never counted as invalid
    judged = manifest["rows"]["purchase"] - manifest["deferred_defects"]["future_purchase_ts"]
    expected = 1 - sum(defects[k] for k in kinds) / judged
    assert not validity.passed and validity.severity == "ERROR"
    assert float(validity.measured) == pytest.approx(expected, abs=1e-4)
    assert by_check["slo_completeness"].passed and by_check["slo_uniqueness"].passed
    assert not checks.ok
    assert validity.metadata["rejected_by_rule"] == {
        "out_of_range:quantity": defects["nonpositive_quantity"],
        "orphan_reference:customer_id": defects["orphan_customer_id"],
        "orphan_reference:product_id": defects["orphan_product_id"],
        "out_of_range:unit_price": defects["bad_unit_price"],
    }
    assert validity.metadata["measured_on"].startswith("landing files not loaded yet") or (
        "audited without loading" in validity.metadata["measured_on"]
    )


def test_failed_checks_open_incidents_and_reach_the_webhook(defective):
    report, settings, _, _, received = defective
    failed = {(c.asset, c.check) for c in report.checks if not c.passed}
    assert failed
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT asset, check_name, measured, target, run_id, delivered, slo_category "
            "FROM monitor.incidents WHERE run_id = ?",
            [report.run_id],
        ).fetchall()
    assert {(a, c) for a, c, *_ in rows} == failed
    assert all(delivered for *_, delivered, _ in rows)
    posted = {(e["asset"], e["check_name"]) for e in received if e["event"] == "incident.opened"}
    assert posted == failed
    event = next(e for e in received if e["check_name"] == "slo_uniqueness")
    assert event["run_id"] == report.run_id and event["slo_category"] == "uniqueness"
    assert event["target"] == 0.995 and float(event["measured"]) < 0.995


def test_incident_survives_a_receiver_that_is_down_and_resolves_once():
    con = duckdb.connect()
    down = Alerts(webhook_url=closed_port_url(), timeout_seconds=2)
    failing = incidents.Evaluation(
        "purchase", "slo_validity", False, "ERROR", "validity", 0.8, 0.95, ">="
    )
    events = incidents.record(con, [failing], "run-1", down)
    assert [e["event"] for e in events] == ["incident.opened"]
    row = con.execute(
        "SELECT status, delivered, delivery_error, occurrences FROM monitor.incidents"
    ).fetchall()[0]
    assert row[0] == "open" and row[1] is False and "Connection refused" in row[2]
    # a repeat failure is one more occurrence, not a second page
    assert incidents.record(con, [failing], "run-2", down) == []
    receiver = Receiver()
    try:
        passing = incidents.Evaluation(
            "purchase", "slo_validity", True, "ERROR", "validity", 0.99, 0.95, ">="
        )
        events = incidents.record(con, [passing], "run-3", Alerts(webhook_url=receiver.url))
    finally:
        receiver.close()
    assert [e["event"] for e in receiver.received] == ["incident.resolved"]
    status, occurrences, resolved_by = con.execute(
        "SELECT status, occurrences, resolved_by_run FROM monitor.incidents"
    ).fetchall()[0]
    assert (status, occurrences, resolved_by) == ("resolved", 2, "run-3")


def test_a_changed_mart_schema_is_caught(built, tmp_path):
    _, settings, _ = built
    warehouse = tmp_path / "retail_dp.duckdb"
    shutil.copy(settings.warehouse, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("ALTER TABLE marts.fct_purchase ALTER quantity TYPE DOUBLE")
        con.execute("ALTER TABLE marts.fct_purchase DROP COLUMN channel")
    changed = Settings.from_env(data_dir=settings.data_dir, warehouse=warehouse)
    checks = run_checks(
        changed,
        as_of=AS_OF,
        instance=dg.DagsterInstance.ephemeral(),
        select=["marts/fct_purchase"],
        categories=["schema"],
    )
    (row,) = checks.rows
    assert row.check == "slo_schema" and not row.passed and not checks.ok
    assert float(row.measured) == pytest.approx(1 - 2 / 13, abs=1e-4)


def test_check_cli_passes_on_the_built_sample_and_writes_junit(built, tmp_path):
    _, settings, _ = built
    junit = tmp_path / "checks.xml"
    warehouse = tmp_path / "retail_dp.duckdb"
    shutil.copy(settings.warehouse, warehouse)
    proc = run_cli(
        "check",
        *located(settings.data_dir, warehouse),
        "--junit-xml",
        str(junit),
        dagster_home=tmp_path / "h",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("check "))
    assert header.split() == ["check", "asset", "category", "measured", "target", "status"]
    table = [line.split() for line in lines if line.startswith("slo_")]
    assert {(r[0], r[1]) for r in table} >= {
        ("slo_validity", "purchase"),
        ("slo_accuracy", "marts/fct_purchase"),
    }
    assert {r[2] for r in table} == set(SLO_CATEGORIES)
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuites" and suite.get("failures") == "0"
    cases = suite.findall("./testsuite/testcase")
    assert len(cases) == int(suite.get("tests")) > 100
    assert all(c.get("classname") and c.get("name") for c in cases)
    # the run is recorded in the instance the UI reads
    instance = dg.DagsterInstance.from_config(str(tmp_path / "h"))
    assert instance.get_runs_count() == 1


def test_check_cli_fails_and_names_the_check_after_a_defect_lands(built, tmp_path):
    _, settings, _ = built
    landing = tmp_path / "landing"
    shutil.copytree(settings.data_dir, landing)
    warehouse = tmp_path / "retail_dp.duckdb"
    shutil.copy(settings.warehouse, warehouse)
    # the CRM export loses its email column
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * EXCLUDE (email) FROM read_csv('{landing}/customer_info.csv', "
            f"all_varchar = true)) TO '{landing}/customer_info.csv' (HEADER)"
        )
    junit = tmp_path / "checks.xml"
    proc = run_cli(
        "check",
        *located(landing, warehouse),
        "--select",
        "customer_info",
        "--junit-xml",
        str(junit),
        dagster_home=tmp_path / "h",
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED customer_info:slo_schema [schema]" in proc.stdout
    assert "'email' is missing" in proc.stdout
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert "customer_info:slo_schema" in {f.get("message").split(" ")[0] for f in failures}


def test_check_cli_rejects_an_unknown_selection(built, tmp_path):
    _, settings, _ = built
    proc = run_cli(
        "check",
        "--warehouse",
        str(settings.warehouse),
        "--select",
        "no_such_asset",
        dagster_home=tmp_path / "h",
    )
    assert proc.returncode == 2
    assert "'no_such_asset' matches no asset or check" in proc.stderr


def test_slo_report_shares_per_category(built, instance):
    from retail_dp.runner import slo_report

    _, settings, _ = built
    text = slo_report(settings, runs=5, instance=instance)
    lines = {line.split()[0]: line.split() for line in text.splitlines()[2:]}
    assert set(lines) == set(SLO_CATEGORIES)
    for category in SLO_CATEGORIES:
        checks, passed, share = int(lines[category][1]), int(lines[category][2]), lines[category][3]
        assert checks > 0 and passed == checks and share == "100.0%"
        assert lines[category][-1] == "MET"


def test_a_step_measures_a_figure_its_checks_repeat_once(tmp_path):
    """One step's checks share a figure they both ask for (fct_purchase's reconciliations ask
    for its distinct purchase_id twice); the next step measures it again."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    step = MeasureContext(con, AS_OF, tmp_path, None)
    assert step.scalar("SELECT count(*) FROM t") == 1
    con.execute("INSERT INTO t VALUES (2)")
    assert step.scalar("SELECT count(*) FROM t") == 1
    assert MeasureContext(con, AS_OF, tmp_path, None).scalar("SELECT count(*) FROM t") == 2
    # quoting a plain name or spacing does not make another query; a literal's quotes do
    assert step.scalar('SELECT  count(*) FROM "t"') == 1
    assert step.scalar("SELECT count(*) FROM t WHERE x = 2") == 1
    assert step.scalar("SELECT count(*) FROM t WHERE x::VARCHAR = '2'") == 1
    assert step.scalar("SELECT count(*) FROM t WHERE x::VARCHAR = ' 2'") == 0


@pytest.mark.parametrize("keys", [["a", "b", "b", None, None], ["a", "b", "c", None, "d"]])
def test_uniqueness_counts_a_missing_key_as_one_value_and_shares_the_distinct_count(tmp_path, keys):
    """A mart's uniqueness on one key column takes the distinct count the reconciliations
    also ask for; the missing keys count as one value, as SELECT DISTINCT counts them."""
    product = Catalog.load(Settings().descriptors_dir).consumer
    mart = Mart("t", {"k": "VARCHAR"}, {}, published=False, slo={"key": ["k"]})
    (check,) = [c for c in mart_checks(product, [mart]) if c.category == "uniqueness"]
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.t (k VARCHAR)")
    con.executemany("INSERT INTO marts.t VALUES (?)", [[k] for k in keys])
    expected = len(keys) - len(set(keys))  # None is one value in a Python set too
    step = MeasureContext(con, AS_OF, tmp_path, None)
    measured = check.measure(step)
    assert measured.metadata["duplicate_rows"] == expected and measured.metadata["rows"] == 5
    assert step.scalar("SELECT count(DISTINCT k) FROM marts.t") == len({k for k in keys if k})
    con.execute("INSERT INTO marts.t VALUES ('a')")  # measured once: the step does not see it
    assert step.scalar('SELECT count(DISTINCT "k") FROM marts."t"') == len({k for k in keys if k})

"""Governance of the delivery service (issue #12): architecture and governance SLOs, the
access review, erasure of a customer, and the typed contract."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
import yaml

from retail_dp.delivery.governance import masking_coverage
from retail_dp.delivery.policies import Policies
from retail_dp.delivery.semantic import SemanticModel, Table
from retail_dp.delivery.snapshots import current_name, published_dir
from retail_dp.settings import OPENAPI_DOC, PROJECT_ROOT

from .conftest import AS_OF, run_cli
from .delivery_server import Server

CONSUMER = "product_affinity_cross_sell"


def levels(server: Server) -> dict[str, dict]:
    product = server.client().get(f"/v1/data-products/{CONSUMER}").json()
    return {lv["name"]: lv for lv in product["status"]["service_levels"]}


# -- SLOs ------------------------------------------------------------------------------------


def test_architecture_and_governance_slos_are_measured_from_the_audit_log(server):
    client = server.client("marketing")
    for _ in range(3):
        client.post("/v1/load", json={"measures": ["purchase.total_spend"]})
    found = levels(server)
    availability = found["availability"]
    assert availability["kind"] == "architecture" and availability["target"] == 0.995
    audit = server.audit()
    requests = [e for e in audit if "seq" in e]
    share = sum(e["status"] < 500 for e in requests) / len(requests)
    assert availability["measured"] == pytest.approx(share, abs=0.01)
    p95 = found["p95 latency /v1/load"]
    assert p95["unit"] == "ms" and p95["target"] == 1000 and p95["measured"] > 0
    assert found["PII masking coverage"] == {**found["PII masking coverage"], "measured": 1.0,
                                             "met": True}  # fmt: skip
    assert found["requests audited"]["measured"] == 1.0 and found["requests audited"]["met"]
    # the repository's policies have not been reviewed by a person yet: breached, and said so
    review = found["access review age"]
    assert review["met"] is False and "access-review" in review["detail"]


def test_masking_coverage_finds_a_pii_member_without_a_rule(built, tmp_path):
    """A group that sees the phone and relies on the model's masking rule: covered while the
    model classifies the column, a gap once it does not."""
    _, settings, _ = built
    model = SemanticModel.load(settings.dbt_project_dir / "target")
    raw = yaml.safe_load(settings.policies.read_text())
    raw["groups"]["support"] = {"description": "Support desk", "members": ["customer.phone"]}
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(raw))
    policies = Policies.load(path, demo=True, serving=False)
    assert masking_coverage(model, policies).share == 1.0
    customer = model.tables["customer"]
    dims = tuple(replace(d, masking=None) if d.name == "phone" else d for d in customer.dimensions)
    stripped = {**model.tables, "customer": Table(**{**customer.__dict__, "dimensions": dims})}
    coverage = masking_coverage(SimpleNamespace(tables=stripped), policies)
    assert coverage.gaps == ["support: customer.phone"]
    assert coverage.share == pytest.approx(8 / 9)


def test_slo_command_prints_the_service_levels(server, tmp_path):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "retail-dp"), "slo", "--runs", "1"],
        env={**os.environ, "DAGSTER_HOME": str(tmp_path),
             "RETAIL_DP_AUDIT_LOG": str(server.audit_log)},
        capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Delivery service levels" in done.stdout
    for name in ("availability", "p95 latency /v1/load", "PII masking coverage",
                 "requests audited", "access review age"):  # fmt: skip
        assert name in done.stdout, done.stdout


# -- access review ---------------------------------------------------------------------------


def test_access_review_exports_who_sees_what_and_records_the_date(built, tmp_path):
    _, settings, _ = built
    policies = tmp_path / "access" / "policies.yaml"
    policies.parent.mkdir()
    shutil.copy(settings.policies, policies)
    out = tmp_path / "review"
    done = run_cli("access-review", "--policies", str(policies), "--out", str(out),
                   "--reviewer", "auditor@retail.example", dagster_home=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "## group `regional_manager_spain`" in done.stdout
    assert "## caller (demo) `demo-marketing-analyst`" in done.stdout
    rows = list(csv.DictReader(next(out.glob("*.csv")).open()))
    by = {(r["principal"], r["member"]): r for r in rows}
    assert by[("marketing_analysts", "customer.email")]["masking"] == "partial"
    assert by[("data_stewards", "customer.email")]["masking"] == "none"
    assert ("regional_manager_spain", "customer.email") not in by
    assert by[("regional_manager_spain", "purchase.total_spend")]["rows"] == (
        "customer.country_code in ['ES']"
    )
    assert by[("demo-sales-viewer", "customer.region")]["rows"] == "all"
    assert next(out.glob("*.md")).read_text().startswith("# Access review")
    record = json.loads((policies.parent / "access_reviews.jsonl").read_text().splitlines()[-1])
    assert record["reviewer"] == "auditor@retail.example"
    assert record["reviewed_at"][:10] == datetime.now(UTC).date().isoformat()
    assert record["masking_coverage"] == "8/8"


# -- erasure ---------------------------------------------------------------------------------


def _holding(path, needles: list[str]) -> list[str]:
    """Every (table.column) of a DuckDB file whose text contains any of `needles`."""
    found = []
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND data_type IN ('VARCHAR', 'JSON')"
        ).fetchall()
        for schema, table, column in columns:
            for needle in needles:
                hit = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" '
                    f'WHERE contains(CAST("{column}" AS VARCHAR), ?)', [needle]
                ).fetchall()[0][0]  # fmt: skip
                if hit:
                    found.append(f"{schema}.{table}.{column} has {needle!r}")
    return found


def _part_holds(path, needles: list[str]) -> bool:
    """Whether a published Parquet part has any of `needles` in a text column."""
    with duckdb.connect() as con:
        columns = con.execute(
            "SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet(?)) "
            "WHERE column_type = 'VARCHAR'", [str(path)]
        ).fetchall()  # fmt: skip
        return any(
            con.execute(
                f'SELECT count(*) FROM read_parquet(?) WHERE contains("{c}", ?)', [str(path), n]
            ).fetchall()[0][0]
            for (c,) in columns
            for n in needles
        )


def test_erasure_leaves_no_trace_in_tables_snapshots_exports_or_answers(built, sample, tmp_path):
    _, settings, _ = built
    landing = tmp_path / "landing"
    shutil.copytree(sample[0], landing)
    warehouse = tmp_path / "wh" / settings.warehouse.name
    shutil.copytree(settings.warehouse.parent, warehouse.parent,
                    ignore=shutil.ignore_patterns("*.tmp", "audit"))  # fmt: skip
    target = published_dir(warehouse)
    before = current_name(target)
    with duckdb.connect(str(target / "snapshots" / before), read_only=True) as con:
        customer, email, phone, lines = con.execute(
            "SELECT c.customer_id, c.email, c.phone, count(*) FROM marts.dim_customer c "
            "JOIN marts.fct_purchase f USING (customer_id) WHERE c.email IS NOT NULL "
            "AND c.phone IS NOT NULL GROUP BY ALL ORDER BY 4 DESC, 1 LIMIT 1"
        ).fetchall()[0]
    needles = [customer, email, phone]
    (tmp_path / "dagster").mkdir()
    assert _holding(target / "snapshots" / before, needles)  # it is there to begin with

    done = run_cli("erase", "--customer", customer, "--reason", "Art. 17 request #1",
                   "--data-dir", str(landing), "--warehouse", str(warehouse),
                   "--as-of", AS_OF.isoformat(), dagster_home=tmp_path / "dagster")  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "erased" in done.stdout

    after = current_name(target)
    assert after != before and not (target / "snapshots" / before).exists()
    for path in [warehouse, *sorted((target / "snapshots").glob("*.duckdb"))]:
        assert _holding(path, needles) == [], path
    # the months of the customer's lines were published again without them; the parts that
    # held them are gone, and the months they did not touch are still shared
    parts = sorted((target / "parts").glob("*.parquet"))
    assert parts and not [p for p in parts if _part_holds(p, needles)]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        audits = {s: json.loads(a) for s, a in con.execute(
            "SELECT source, audit FROM sources.landing_audit").fetchall()}  # fmt: skip
    assert audits["customer_info"]["rows_suppressed"] >= 1
    assert audits["purchase"]["rows_suppressed"] >= lines
    assert customer not in (landing / "_suppressed_customers.txt").read_text()

    served = Server(warehouse, tmp_path / "audit" / "access.jsonl")
    try:
        steward = served.client("steward")
        query = {"dimensions": ["customer.email", "customer.phone", "customer.country_code"],
                 "limit": 50000}  # fmt: skip
        answer = steward.post("/v1/load", json=query)
        export = steward.post("/v1/export?format=csv", json=query)
        asked = steward.post("/v1/load", json={"measures": ["customer.customer_count"], "filters": [
            {"member": "customer.email", "operator": "equals", "values": [email]}]})  # fmt: skip
        assert answer.status_code == export.status_code == asked.status_code == 200
        assert answer.json()["rows"] > 1000 and answer.json()["snapshot"]["id"] == after[:-7]
        for text in (answer.text, export.text):
            assert not [n for n in needles if n in text]
        assert asked.json()["data"][0]["customer.customer_count"] == 0
    finally:
        served.stop()
    log = (target / "audit" / "access.jsonl").read_text()
    erasure = [json.loads(x) for x in log.splitlines() if '"erasure"' in x][-1]
    assert erasure["outcome"] == "erased" and erasure["reason"] == "Art. 17 request #1"
    assert erasure["snapshots_deleted"] == [before] and customer not in log
    assert erasure["parts_deleted"] and not set(erasure["parts_deleted"]) & {p.name for p in parts}


# -- the typed contract ------------------------------------------------------------------------


def test_every_rest_operation_has_a_typed_response():
    """No operation answers an untyped object: every 200 response names a schema with
    properties (or is a file with its media type), and so do the errors."""
    document = json.loads(OPENAPI_DOC.read_text())
    schemas = document["components"]["schemas"]

    def typed(schema: dict) -> bool:
        if "$ref" in schema:
            target = schemas[schema["$ref"].split("/")[-1]]
            return bool(target.get("properties")) or "anyOf" in target
        if schema.get("type") == "array":
            return typed(schema["items"])
        return schema.get("type") == "string"  # a file (CSV, Parquet)

    operations = [(p, m, op) for p, ops in document["paths"].items() for m, op in ops.items()]
    assert len(operations) == 8  # with GET /v1/backtest/latest
    for path, method, op in operations:
        content = op["responses"]["200"]["content"]
        assert content and all(typed(c["schema"]) for c in content.values()), (method, path)
        for status, response in op["responses"].items():
            for c in response.get("content", {}).values():
                assert typed(c["schema"]), (method, path, status)

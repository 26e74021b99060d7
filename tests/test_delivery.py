"""The delivery service as a real process on loopback: governance, queries, snapshots."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import duckdb
import jwt
import pytest

from retail_dp.delivery.snapshots import _point_to, current_name, published_dir
from retail_dp.settings import OPENAPI_DOC

from .delivery_server import JWT_SECRET, Server

SPEND_BY_COUNTRY = {"measures": ["purchase.total_spend"], "dimensions": ["customer.country_code"]}


@pytest.fixture(scope="module")
def snapshot(built):
    """The published snapshot, read directly: the truth the API must agree with."""
    _, settings, _ = built
    target = published_dir(settings.warehouse)
    con = duckdb.connect(str(target / "snapshots" / current_name(target)), read_only=True)
    yield con
    con.close()


def scalar(con, sql, params=None):
    return con.execute(sql, params or []).fetchall()[0][0]


def signed(subject: str, groups: list[str]) -> str:
    """A JWT the service accepts: signed with its secret, for its audience, valid 5 minutes."""
    claims = {"sub": subject, "groups": groups, "aud": "retail_dp",
              "exp": datetime.now(UTC) + timedelta(minutes=5)}  # fmt: skip
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def load(client, query: dict):
    return client.post("/v1/load", json=query)


# -- authentication and authorization ----------------------------------------------------------


def test_no_or_unknown_credentials_get_401(server):
    assert load(server.client(), SPEND_BY_COUNTRY).status_code == 401
    response = load(server.client(token="rdp_not_a_key"), SPEND_BY_COUNTRY)
    assert response.status_code == 401
    assert response.json()["error"] == "unknown API key"
    forged = jwt.encode({"sub": "x", "groups": ["data_stewards"]}, "wrong", algorithm="HS256")
    assert load(server.client(token=forged), SPEND_BY_COUNTRY).status_code == 401
    assert server.client().get("/v1/meta").status_code == 401


def test_a_caller_without_a_grant_gets_403(server):
    response = load(
        server.client("sales"),
        {"measures": ["purchase.total_spend"], "dimensions": ["customer.email"]},
    )
    assert response.status_code == 403
    assert "customer.email" in response.json()["error"]
    no_group = signed("someone", ["not_a_group"])
    assert load(server.client(token=no_group), SPEND_BY_COUNTRY).status_code == 403


def test_a_signed_jwt_maps_to_its_groups(server, snapshot):
    token = signed("analyst@retail.example", ["marketing_analysts"])
    response = load(server.client(token=token), {"measures": ["purchase.total_spend"]})
    assert response.status_code == 200, response.text
    total = response.json()["data"][0]["purchase.total_spend"]
    assert total == pytest.approx(scalar(snapshot, "SELECT sum(amount) FROM marts.fct_purchase"))
    meta = server.client(token=token).get("/v1/meta").json()
    assert meta["caller"] == {"name": "analyst@retail.example", "groups": ["marketing_analysts"]}


# -- masking and row-level policies -------------------------------------------------------------


def test_masking_follows_the_group(server, snapshot):
    query = {
        "dimensions": ["customer.email", "customer.phone", "customer.first_name"],
        "filters": [{"member": "customer.country_code", "operator": "equals", "values": ["DE"]}],
        "limit": 50,
    }
    raw = load(server.client("steward"), query).json()
    masked = load(server.client("marketing"), query).json()
    assert raw["masked"] == {}
    assert masked["masked"] == {
        "customer.email": "partial",
        "customer.phone": "hash",
        "customer.first_name": "redact",
    }
    emails = {r[0] for r in snapshot.execute(
        "SELECT email FROM marts.dim_customer WHERE country_code = 'DE'").fetchall()}  # fmt: skip
    assert {r["customer.email"] for r in raw["data"]} <= emails
    for row in masked["data"]:
        assert row["customer.email"] is None or re.fullmatch(
            r".\*\*\*@[^@]+", row["customer.email"]
        )
        assert row["customer.email"] not in emails
        assert row["customer.phone"] is None or re.fullmatch(r"[0-9a-f]{16}", row["customer.phone"])
        assert row["customer.first_name"] == "[redacted]"
    # a regional manager cannot see contact data at all
    assert load(server.client("regional"), query).status_code == 403


def test_filters_and_order_on_masked_members_are_refused(server):
    response = load(
        server.client("marketing"),
        {
            "measures": ["purchase.total_spend"],
            "filters": [{"member": "customer.email", "operator": "contains", "values": ["@"]}],
        },
    )
    assert response.status_code == 400
    assert "masked" in response.json()["error"]
    response = load(
        server.client("marketing"),
        {"dimensions": ["customer.email"], "order": {"customer.email": "asc"}},
    )
    assert response.status_code == 400


def test_row_filter_holds_in_aggregates(server, snapshot):
    spain = scalar(
        snapshot,
        "SELECT sum(amount) FROM marts.fct_purchase f JOIN marts.dim_customer c USING "
        "(customer_id) WHERE c.country_code = 'ES'",
    )
    everyone = scalar(snapshot, "SELECT sum(amount) FROM marts.fct_purchase")
    regional = server.client("regional")
    by_country = load(regional, SPEND_BY_COUNTRY).json()["data"]
    assert [r["customer.country_code"] for r in by_country] == ["ES"]
    total = load(regional, {"measures": ["purchase.total_spend"]}).json()["data"]
    assert total[0]["purchase.total_spend"] == pytest.approx(spain)
    assert spain < everyone
    customers = load(regional, {"measures": ["customer.customer_count"]}).json()["data"]
    assert customers[0]["customer.customer_count"] == scalar(
        snapshot, "SELECT count(*) FROM marts.dim_customer WHERE country_code = 'ES'"
    )
    # asking for another country inside the policy gives nothing, not a wider view
    germany = {**SPEND_BY_COUNTRY, "filters": [
        {"member": "customer.country_code", "operator": "equals", "values": ["DE"]}]}  # fmt: skip
    assert load(regional, germany).json()["data"] == []
    assert "customer.country_code in ['ES']" in regional.get("/v1/meta").json()["rowFilter"]


def test_meta_shows_only_what_the_group_may_see(server):
    def members(who):
        meta = server.client(who).get("/v1/meta").json()
        return {m["name"] for t in meta["tables"] for kind in ("dimensions", "measures",
                "segments") for m in t[kind]}  # fmt: skip

    steward, regional, sales = members("steward"), members("regional"), members("sales")
    assert {
        "customer.email",
        "customer_value.predicted_clv",
        "customer_value.high_value",
    } <= steward
    assert "customer.email" not in regional and "customer.region" in regional
    assert sales == {m for m in steward if m.startswith(("purchase.", "product.", "category_"))} | {
        "customer.region", "customer.country_code", "customer.customer_count"}  # fmt: skip
    meta = server.client("marketing").get("/v1/meta").json()
    email = next(
        d for t in meta["tables"] for d in t["dimensions"] if d["name"] == "customer.email"
    )
    assert email["pii"] is True and email["masking"] == "partial"


# -- queries -----------------------------------------------------------------------------------


def test_spend_by_category_and_month_matches_duckdb(server, snapshot):
    query = {
        "measures": ["purchase.total_spend", "purchase.order_count"],
        "dimensions": ["product.category"],
        "timeDimensions": [{"dimension": "purchase.purchase_date", "granularity": "month",
                            "dateRange": ["2026-01-01", "2026-03-31"]}],
        "order": {"purchase.purchase_date.month": "asc", "purchase.total_spend": "desc"},
        "limit": 100,
    }  # fmt: skip
    body = load(server.client("marketing"), query).json()
    expected = snapshot.execute(
        "SELECT date_trunc('month', purchase_date), category, sum(amount), "
        "count(DISTINCT order_id) FROM marts.fct_purchase "
        "WHERE purchase_date BETWEEN DATE '2026-01-01' AND DATE '2026-03-31' "
        "GROUP BY ALL ORDER BY 1, 3 DESC"
    ).fetchall()
    got = [
        (r["purchase.purchase_date.month"][:10], r["product.category"],
         r["purchase.total_spend"], r["purchase.order_count"]) for r in body["data"]
    ]  # fmt: skip
    assert len(got) == len(expected) == 18
    for g, e in zip(got, expected, strict=True):
        assert g[0] == e[0].date().isoformat() and g[1] == e[1] and g[3] == e[3]
        assert g[2] == pytest.approx(e[2])
    assert body["annotation"]["measures"]["purchase.total_spend"]["unit"] == "currency"
    assert body["snapshot"]["id"]


def test_segments_limits_and_paging(server, snapshot):
    client = server.client("steward")
    query = {
        "measures": ["customer_value.cross_sell_opportunity_score"],
        "dimensions": ["customer.email", "customer_value.next_best_category"],
        "segments": ["customer_value.high_value"],
        "order": {"customer_value.cross_sell_opportunity_score": "desc"},
        "limit": 5,
    }
    first = load(client, query).json()["data"]
    second = load(client, {**query, "offset": 5}).json()["data"]
    expected = snapshot.execute(
        "SELECT c.email, v.cross_sell_opportunity_score FROM semantic.customer_value v "
        "JOIN marts.dim_customer c USING (customer_id) WHERE v.value_tier IN ('platinum', 'gold') "
        "ORDER BY 2 DESC LIMIT 10"
    ).fetchall()
    scores = [r["customer_value.cross_sell_opportunity_score"] for r in first + second]
    assert scores == pytest.approx([e[1] for e in expected], abs=1e-6)  # JSON rounds to 6
    assert len(load(client, {"measures": ["purchase.total_spend"], "dimensions":
                             ["customer.email"]}).json()["data"]) == 1000  # fmt: skip
    too_many = load(client, {"measures": ["purchase.total_spend"], "limit": 50001})
    assert too_many.status_code == 422


@pytest.mark.parametrize(
    "query",
    [
        {"measures": ["purchase.total_spend'; DROP TABLE marts.fct_purchase; --"]},
        {"measures": ["purchase.total_spend"], "dimensions": ["customer.country_code) --"]},
        {"measures": ["purchase.total_spend"], "order": {"1; DROP TABLE x": "asc"}},
        {"measures": ["purchase.total_spend"], "filters": [
            {"member": "customer.country_code OR 1=1", "operator": "equals", "values": ["ES"]}]},
    ],
)  # fmt: skip
def test_injection_in_member_names_is_rejected(server, query):
    response = load(server.client("steward"), query)
    assert response.status_code == 400, response.text


def where(member: str, operator: str, values: list) -> dict:
    return {**SPEND_BY_COUNTRY, "filters": [{"member": member, "operator": operator,
                                            "values": values}]}  # fmt: skip


def test_injection_in_filter_values_is_harmless(server, snapshot):
    client = server.client("regional")
    for value in ["ES' OR '1'='1", "ES'); DROP TABLE marts.fct_purchase; --", "' OR 1=1 --"]:
        response = load(client, where("customer.country_code", "equals", [value]))
        assert response.status_code == 200 and response.json()["data"] == []
    # a literal %, not a wildcard
    assert load(client, where("customer.country_code", "contains", ["%"])).json()["data"] == []
    assert load(client, where("customer.country_code", "startsWith", ["E"])).json()["data"]
    assert scalar(snapshot, "SELECT count(*) FROM marts.fct_purchase") > 0


def test_rest_and_graphql_agree(server):
    rest = load(
        server.client("marketing"),
        {"measures": ["purchase.total_spend", "customer.customer_count"],
         "dimensions": ["customer.region"], "segments": ["customer.contactable"]},
    ).json()  # fmt: skip
    graphql = server.client("marketing").post(
        "/graphql",
        json={
            "query": """query ($q: LoadInput!) { load(query: $q) {
                rows data snapshot { id } masked { member masking } } }""",
            "variables": {"q": {
                "measures": ["purchase.total_spend", "customer.customer_count"],
                "dimensions": ["customer.region"], "segments": ["customer.contactable"]}},
        },
    ).json()  # fmt: skip
    assert "errors" not in graphql, graphql
    assert graphql["data"]["load"]["data"] == rest["data"]
    assert graphql["data"]["load"]["snapshot"]["id"] == rest["snapshot"]["id"]
    # without credentials GraphQL is refused before the document is parsed
    denied = server.client().post("/graphql", json={"query": "{ meta { caller } }"})
    assert denied.status_code == 401 and "credentials required" in denied.json()["error"]


def test_csv_and_parquet_exports_hold_the_same_rows(server, tmp_path):
    query = {"measures": ["purchase.total_spend"], "dimensions": ["customer.region"]}
    client = server.client("marketing")
    rows = load(client, query).json()["data"]
    csv = client.post("/v1/export?format=csv", json=query)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "customer.region,purchase.total_spend"
    assert len(csv.text.splitlines()) == len(rows) + 1
    parquet = client.post("/v1/export?format=parquet", json=query)
    path = tmp_path / "result.parquet"
    path.write_bytes(parquet.content)
    with duckdb.connect() as con:
        got = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY 1").fetchall()
    assert [r[0] for r in got] == [r["customer.region"] for r in rows]


def test_data_products_carry_status_and_lineage(server):
    products = server.client().get("/v1/data-products").json()
    assert {p["name"] for p in products} == {
        "product_affinity_cross_sell", "customer_info", "purchase", "product"}  # fmt: skip
    consumer = server.client().get("/v1/data-products/product_affinity_cross_sell").json()
    assert consumer["status"]["last_refresh"]["snapshot_id"]
    assert consumer["status"]["slo"]["accuracy"]["failed"] == 0
    assert consumer["status"]["slo"]["accuracy"]["passed"] > 0
    assert {"kind": "data_product", "name": "purchase"} in consumer["lineage"]["inputs"]
    purchase = server.client().get("/v1/data-products/purchase").json()
    assert purchase["lineage"]["inputs"][0]["kind"] == "landing"
    assert {c["category"] for c in purchase["status"]["checks"]} >= {"validity", "schema"}
    assert server.client().get("/v1/data-products/nope").status_code == 404


def test_the_latest_backtest_report_is_served_and_never_stale(server, backtest_reports):
    """GET /v1/backtest/latest: signed in only, typed, and always the report made last (by
    its creation time, read at each request): not a cached one, not the latest as_of."""
    folder, write = backtest_reports
    client = server.client("marketing")
    assert server.client().get("/v1/backtest/latest").status_code == 401
    empty = client.get("/v1/backtest/latest").json()
    assert empty["report"] is None and "retail-dp backtest" in empty["detail"]
    now = datetime.now(UTC)
    first = write(datetime(2026, 4, 1), now - timedelta(hours=1))
    got = client.get("/v1/backtest/latest").json()
    assert got["name"] == "backtest-2026-04-01-90d.json"
    assert got["report"]["as_of"] == "2026-04-01 00:00:00"
    assert got["report"]["created_at"] == first["created_at"]
    assert got["report"]["horizon_days"] == 90
    assert got["report"]["opportunity"] == json.loads(json.dumps(first["opportunity"]))
    # a backtest at an earlier T, run later: now the latest, though its name sorts first
    second = write(datetime(2025, 11, 25), now)
    got = client.get("/v1/backtest/latest").json()
    assert got["name"] == "backtest-2025-11-25-90d.json"
    assert got["report"]["as_of"] == "2025-11-25 00:00:00"
    assert got["report"]["created_at"] == second["created_at"]
    # a report that breaks the contract is named, not served half-typed or as a 500
    (folder / "backtest-2024-01-01-90d.json").write_text(json.dumps({"as_of": "x",
        "created_at": (now + timedelta(minutes=1)).isoformat()}))  # fmt: skip
    broken = client.get("/v1/backtest/latest")
    assert broken.status_code == 200 and broken.json()["report"] is None
    assert "does not match" in broken.json()["detail"]
    entry = json.loads(server.audit_log.read_text().splitlines()[-1])
    assert entry["endpoint"] == "/v1/backtest/latest"
    assert entry["caller"] == "demo-marketing-analyst" and entry["report"].startswith("backtest-")


# -- audit, contract -----------------------------------------------------------------------------


def test_every_request_is_audited(server):
    before = len(server.audit_log.read_text().splitlines())
    load(server.client(), SPEND_BY_COUNTRY)  # 401
    load(server.client("sales"), {"dimensions": ["customer.email"]})  # 403
    load(server.client("regional"), SPEND_BY_COUNTRY)  # 200
    load(server.client("marketing"), {"measures": ["nope.nope"]})  # 400
    entries = [json.loads(x) for x in server.audit_log.read_text().splitlines()[before:]]
    assert [e["status"] for e in entries] == [401, 403, 200, 400]
    ok = entries[2]
    assert ok["caller"] == "demo-regional-manager-es" and ok["auth"] == "api_key"
    assert ok["groups"] == ["regional_manager_spain"]
    assert ok["client"] == "127.0.0.1" and ok["endpoint"] == "/v1/load"
    assert ok["query"]["measures"] == ["purchase.total_spend"]
    assert ok["query"]["dimensions"] == ["customer.country_code"]
    assert ok["query"]["limit"] == 1000 and ok["outcome"] == "ok"
    assert ok["rows"] == 1 and ok["snapshot"] and ok["time"] and ok["duration_ms"] > 0
    assert entries[0]["caller"] is None and "credentials" in entries[0]["error"]
    assert entries[1]["caller"] == "demo-sales-viewer" and entries[1]["outcome"] == "refused"


def test_openapi_document_is_the_committed_contract(server):
    live = server.client().get("/openapi.json").json()
    committed = json.loads(OPENAPI_DOC.read_text())
    assert live == committed, "the API changed: run `retail-dp openapi` and review the diff"
    sdl = server.client("steward").post(
        "/graphql", json={"query": "{ __schema { queryType { name } } }"}
    )
    assert sdl.json()["data"]["__schema"]["queryType"]["name"] == "Query"


def test_graphql_schema_is_the_committed_contract(built):
    from retail_dp.delivery.api import contract_documents

    _, settings, _ = built
    documents = contract_documents(settings)
    for name, text in documents.items():
        committed = (OPENAPI_DOC.parent / name).read_text()
        assert text == committed, f"docs/{name} is stale: run `retail-dp openapi`"


def test_schemathesis_finds_no_contract_violations(server):
    """Generated requests for every operation: no 5xx, and every response (errors included)
    conforms to the committed document's status codes and schemas."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": "Bearer rdp_demo_steward_2026"}
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    calls = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def exercise(case):
            response = case.call(base_url=server.url, headers=headers)
            calls.append(response.status_code)
            case.validate_response(response, checks=checks, headers=headers)  # raises on a failure

        exercise()
    assert len(calls) > 50  # every operation was exercised


# -- published snapshots -------------------------------------------------------------------------


def test_reads_during_snapshot_swaps_see_one_whole_snapshot(built, tmp_path):
    """Two snapshots with different totals, swapped back and forth under concurrent readers:
    every answer is one snapshot's total, and no request fails."""
    _, settings, _ = built
    source = published_dir(settings.warehouse)
    warehouse = tmp_path / "wh" / "retail_dp.duckdb"
    target = published_dir(warehouse)
    shutil.copytree(source, target)
    first = current_name(target)
    second = first.replace(".duckdb", "-doubled.duckdb")
    shutil.copy(target / "snapshots" / first, target / "snapshots" / second)
    with duckdb.connect(str(target / "snapshots" / second)) as con:
        # fct_purchase is a view over the published Parquet parts: the doubled one a table
        con.execute("CREATE TABLE marts.doubled AS SELECT * FROM marts.fct_purchase")
        con.execute("UPDATE marts.doubled SET amount = amount * 2")
        con.execute("DROP VIEW marts.fct_purchase")
        con.execute("ALTER TABLE marts.doubled RENAME TO fct_purchase")
        info = json.loads(con.execute("SELECT info FROM published.snapshot").fetchall()[0][0])
        info["snapshot_id"] = second.removesuffix(".duckdb")
        con.execute("UPDATE published.snapshot SET info = ?", [json.dumps(info)])
    with duckdb.connect(str(target / "snapshots" / first), read_only=True) as con:
        base = scalar(con, "SELECT sum(amount) FROM marts.fct_purchase")
    expected = {first.removesuffix(".duckdb"): base, second.removesuffix(".duckdb"): 2 * base}
    server = Server(warehouse, tmp_path / "access.jsonl")
    answers, errors = [], []
    stop = threading.Event()

    def reader():
        client = server.client("steward")
        while not stop.is_set():
            response = load(client, {"measures": ["purchase.total_spend"]})
            if response.status_code != 200:
                errors.append(response.text)
                continue
            body = response.json()
            answers.append((body["snapshot"]["id"], body["data"][0]["purchase.total_spend"]))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for i in range(20):
            _point_to(target, second if i % 2 == 0 else first)
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        server.stop()
    assert not errors, errors[:3]
    seen = {snapshot for snapshot, _ in answers}
    assert seen == set(expected), seen
    for snapshot_id, total in answers:
        assert total == pytest.approx(expected[snapshot_id])


def test_nothing_published_yet_is_a_clear_503(tmp_path):
    server = Server(tmp_path / "wh" / "retail_dp.duckdb", tmp_path / "access.jsonl")
    try:
        assert server.client().get("/health").json()["status"] == "no snapshot"
        response = load(server.client("steward"), SPEND_BY_COUNTRY)
        assert response.status_code == 503
        assert "nothing published yet" in response.json()["error"]
        catalogue = server.client().get("/v1/data-products").json()
        assert all(p["status"].get("last_refresh") is None for p in catalogue)
    finally:
        server.stop()


def test_rows_are_scoped_per_member_for_a_caller_in_several_groups(server):
    """Spain's manager who also views sales: members only the Spanish group grants keep its
    row filter; members an unrestricted group grants too are not filtered."""
    token = signed("both", ["regional_manager_spain", "sales_viewers"])
    client = server.client(token=token)
    clv = load(client, {"measures": ["customer_value.total_predicted_clv"],
                        "dimensions": ["customer.country_code"]}).json()["data"]  # fmt: skip
    assert [r["customer.country_code"] for r in clv] == ["ES"]
    spend = load(client, SPEND_BY_COUNTRY).json()["data"]
    assert len(spend) > 1  # purchase.total_spend and country_code: sales_viewers see all rows


def test_bad_values_and_fan_out_are_refused_not_500(server):
    client = server.client("steward")
    bad_date = load(client, where("purchase.purchase_date", "gt", ["yesterday"]))
    assert bad_date.status_code == 400 and "YYYY-MM-DD" in bad_date.json()["error"]
    aliases = " ".join(
        f'q{i}: load(query: {{measures: ["purchase.total_spend"]}}) {{ rows }}' for i in range(6)
    )
    fanned = client.post("/graphql", json={"query": f"{{ {aliases} }}"}).json()
    assert fanned.get("errors"), fanned

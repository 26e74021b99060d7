"""The delivery service under attack and load (issue #12), as a real process on loopback:
isolation and limits, secrets and exposure, a complete audit log."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import duckdb
import httpx
import jwt
import pytest
import yaml

from retail_dp.delivery.snapshots import current_name, published_dir
from retail_dp.settings import PROJECT_ROOT

from .delivery_server import JWT_SECRET, KEYS, Server, token

FORMULAS = ["=1+2", "+SUM(1,1)", "-2+3", "@cmd", '=HYPERLINK("http://evil.example")']
WEBHOOK = "https://hooks.example/services/T000/B000/secret-token-123"
ENGINE_WORDS = ["duckdb", "binder", "conversion error", "catalog error", "metricflow",
                "simplemetric", "__", "traceback", "select ", "/work/", ".duckdb"]  # fmt: skip
HEAVY = {
    "measures": ["purchase.total_spend", "purchase.order_count"],
    "dimensions": ["customer.email", "product.product_name"],
    "timeDimensions": [{"dimension": "purchase.purchase_date", "granularity": "day"}],
    "filters": [{"member": "customer.email", "operator": "notContains",
                 "values": [f"zz{i}-{j}-{'q' * 60}" for j in range(25)]} for i in range(20)],
    "limit": 10,
}  # fmt: skip
NORMAL = [
    {"measures": ["purchase.total_spend"], "dimensions": ["customer.country_code"]},
    {"measures": ["purchase.order_count"], "dimensions": ["product.category"]},
]


@pytest.fixture(scope="module")
def guarded(built, tmp_path_factory):
    """A server with tight limits (deadline 0.3 s, 5 failed sign-ins, a small audit log that
    rotates) on a copy of the published snapshot whose product names are spreadsheet formulas,
    and descriptors whose consumer posts incidents to a webhook with a token in its URL."""
    _, settings, _ = built
    tmp = tmp_path_factory.mktemp("guarded")
    warehouse = tmp / "wh" / "retail_dp.duckdb"
    target = published_dir(warehouse)
    shutil.copytree(published_dir(settings.warehouse), target)
    snapshot = target / "snapshots" / current_name(target)
    with duckdb.connect(str(snapshot)) as con:
        ids = [r[0] for r in con.execute(
            "SELECT product_id FROM marts.dim_product ORDER BY 1 LIMIT ?", [len(FORMULAS)]
        ).fetchall()]  # fmt: skip
        for product, name in zip(ids, FORMULAS, strict=True):
            sql = "UPDATE marts.dim_product SET product_name = ? WHERE product_id = ?"
            con.execute(sql, [name, product])
    descriptors = tmp / "data_products"
    shutil.copytree(settings.descriptors_dir, descriptors)
    consumer = descriptors / "product_affinity_cross_sell.yaml"
    raw = yaml.safe_load(consumer.read_text())
    raw["alerts"] = {"webhook_url": WEBHOOK}
    consumer.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {
        "RETAIL_DP_QUERY_TIMEOUT": "0.3",
        "RETAIL_DP_AUTH_FAILURES": "5",
        "RETAIL_DP_AUDIT_MAX_BYTES": "65536",
        "RETAIL_DP_DESCRIPTORS_DIR": str(descriptors),
    }
    running = Server(warehouse, tmp / "audit" / "access.jsonl", env=env)
    yield running
    running.stop()


def load(client: httpx.Client, query: dict) -> httpx.Response:
    return client.post("/v1/load", json=query)


def raw_request(server: Server, head: bytes, body: bytes = b"", timeout: float = 5) -> bytes:
    """Send bytes on a fresh socket and read the answer until the server closes or answers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        try:
            s.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b'"status"' in b"".join(chunks):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- isolation ---------------------------------------------------------------------------------


@pytest.mark.isolated
def test_an_expensive_caller_does_not_slow_the_others(server):
    """The issue's heavy caller beside three normal ones, with the service's default limits:
    the normal callers' p50 stays within 2x of an idle server, and /health answers."""

    def normal_run(n: int) -> list[float]:
        clients = [server.client(w) for w in ("marketing", "sales", "regional")]
        for c in clients:
            for q in NORMAL:
                assert load(c, q).status_code == 200
        took = []
        for i in range(n):
            start = time.perf_counter()
            response = load(clients[i % 3], NORMAL[i % 2])
            took.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text
        return took

    idle = normal_run(120)
    stop, heavy, health = threading.Event(), [], []

    def heavy_caller():
        client = server.client("steward")
        while not stop.is_set():
            start = time.perf_counter()
            heavy.append((load(client, HEAVY).status_code, time.perf_counter() - start))

    threads = [threading.Thread(target=heavy_caller) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the heavy caller is running
    busy = normal_run(120)
    for _ in range(5):
        start = time.perf_counter()
        assert server.client().get("/health").status_code == 200
        health.append(time.perf_counter() - start)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    figures = (f"normal callers idle p50 {statistics.median(idle):.1f} ms p99 "
               f"{quantile(idle, 0.99):.1f} ms; beside the heavy caller p50 "
               f"{statistics.median(busy):.1f} ms p99 {quantile(busy, 0.99):.1f} ms; heavy "
               f"queries {len(heavy)} (mean {statistics.mean(t for _, t in heavy):.2f} s); "
               f"/health max {max(health) * 1000:.0f} ms")  # fmt: skip
    print(figures)
    assert heavy and all(code in (200, 429, 504) for code, _ in heavy)
    assert statistics.median(busy) <= 2 * statistics.median(idle), figures
    assert max(health) < 1.0, figures


def test_a_query_past_its_deadline_is_stopped_with_504(guarded):
    started = time.perf_counter()
    response = load(guarded.client("steward"), HEAVY)
    assert response.status_code == 504, response.text
    assert "deadline" in response.json()["error"]
    assert time.perf_counter() - started < 5
    # the connection it ran on is usable again: the next query answers
    assert load(guarded.client("steward"), NORMAL[0]).status_code == 200


def test_query_size_limits_answer_400_naming_the_limit(guarded):
    client = guarded.client("steward")
    email = "customer.email"
    cases = {
        "max_members": {"measures": ["purchase.total_spend"] * 31},
        "max_filters": {"measures": ["purchase.total_spend"], "filters": [
            {"member": email, "operator": "equals", "values": ["x"]}] * 21},
        "max_values_per_filter": {"measures": ["purchase.total_spend"], "filters": [
            {"member": email, "operator": "in", "values": [str(i) for i in range(101)]}]},
        "max_values": {"measures": ["purchase.total_spend"], "filters": [
            {"member": email, "operator": "in", "values": [str(i) for i in range(100)]}] * 6},
        "max_string_length": {"measures": ["purchase.total_spend"], "filters": [
            {"member": email, "operator": "equals", "values": ["x" * 257]}]},
    }  # fmt: skip
    for limit, query in cases.items():
        response = load(client, query)
        assert response.status_code == 400, (limit, response.text)
        assert limit in response.json()["error"], response.text
    # the attack: 50 filters x ~990 `contains` values in a 520 KB body
    attack = {"measures": ["purchase.total_spend"], "filters": [
        {"member": "customer.country_code", "operator": "contains",
         "values": [f"v{j}" for j in range(990)]}] * 50}  # fmt: skip
    started = time.perf_counter()
    response = load(guarded.client("sales"), attack)
    assert response.status_code == 413 and time.perf_counter() - started < 2
    graphql = guarded.client("steward").post("/graphql", json={
        "query": "query ($q: LoadInput!) { load(query: $q) { rows } }",
        "variables": {"q": cases["max_filters"]}}).json()  # fmt: skip
    assert "max_filters" in graphql["errors"][0]["message"]


def test_non_finite_numbers_get_400(guarded):
    client = guarded.client("steward")
    bodies = [
        b'{"measures": ["purchase.total_spend"], "limit": NaN}',
        b'{"measures": ["purchase.total_spend"], "limit": Infinity}',
        b'{"measures": ["purchase.total_spend"], "filters": [{"member": "purchase.quantity",'
        b' "operator": "gt", "values": [-Infinity]}]}',
        b'{"measures": ["purchase.total_spend"], "offset": 1e999}',
    ]
    for path in ("/v1/load", "/v1/export"):
        for body in bodies:
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (path, body, response.text)
            assert "non-finite" in response.json()["error"]
    body = b'{"query": "{ __typename }", "variables": {"x": NaN}}'
    graphql = client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    assert graphql.status_code == 400


def test_bodies_and_headers_are_capped_before_they_are_read(guarded):
    # 200 MB announced, 1 KB sent: without a key the answer is 401, with one 413, at once
    head = (b"POST /v1/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200000000\r\n")  # fmt: skip
    key = f"Authorization: Bearer {KEYS['sales']}\r\n".encode()
    for extra, status in [(b"", b" 401 "), (key, b" 413 ")]:
        started = time.perf_counter()
        answer = raw_request(guarded, head + extra + b"\r\n", b"{" * 1024)
        assert status in answer.split(b"\r\n")[0], answer[:200]
        assert time.perf_counter() - started < 2
    # a chunked body with no length is read only up to the cap
    chunked = (b"POST /v1/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n" + key + b"\r\n")  # fmt: skip
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    answer = raw_request(guarded, chunked, chunk * 3)
    assert b" 413 " in answer.split(b"\r\n")[0], answer[:200]
    # 1 MB of headers (32 MB in the issue): 431 after the first 16 KB, the rest never read
    big = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 1_000_000 + b"\r\n\r\n"
    answer = raw_request(guarded, big)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert guarded.client().get("/health").status_code == 200


def test_graphql_is_authenticated_before_parsing_and_bounded(guarded):
    flood = "{ " + "__typename " * 50_000 + "}"  # 550 KB, as in the issue
    started = time.perf_counter()
    assert guarded.client().post("/graphql", json={"query": flood}).status_code == 401
    assert guarded.client("steward").post("/graphql", json={"query": flood}).status_code == 413
    assert time.perf_counter() - started < 2
    client = guarded.client("steward")
    tokens = client.post("/graphql", json={"query": "{ " + "__typename " * 5000 + "}"}).json()
    assert "token" in tokens["errors"][0]["message"].lower()
    # (the depth limit is set too, but no field of this schema nests deeper than 4 levels, and
    # introspection fields, which could, are exempt from it: their size is bounded by tokens)
    aliases = " ".join(f'q{i}: load(query: {{measures: ["purchase.total_spend"]}}) {{ rows }}'
                       for i in range(6))  # fmt: skip
    assert client.post("/graphql", json={"query": f"{{ {aliases} }}"}).json()["errors"]
    # no GraphiQL page (it loads from a CDN) and no queries over GET
    page = guarded.client("steward").get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code != 200 and "<script" not in page.text


def test_failed_sign_ins_are_throttled_per_client(guarded):
    attacker = guarded.client(token="rdp_guess_0000", source="127.0.0.2")
    codes = [load(attacker, NORMAL[0]).status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429], codes
    # the throttled address cannot try a right key either; other clients are unaffected
    right = guarded.client("sales", source="127.0.0.2")
    response = load(right, NORMAL[0])
    assert response.status_code == 429 and response.headers["retry-after"]
    assert load(guarded.client("sales"), NORMAL[0]).status_code == 200
    entries = [e for e in guarded.audit() if e.get("client") == "127.0.0.2"]
    assert [e["status"] for e in entries[-3:]] == [429, 429, 429]


def test_jwt_secret_length_and_token_lifetime(guarded, built, tmp_path):
    now = datetime.now(UTC)

    def signed(**claims) -> str:
        base = {"sub": "analyst", "groups": ["sales_viewers"], "aud": "retail_dp"}
        return jwt.encode({**base, **claims}, JWT_SECRET, algorithm="HS256")

    ok = signed(iat=now, exp=now + timedelta(minutes=30))
    assert load(guarded.client(token=ok), NORMAL[0]).status_code == 200
    for long_lived in (signed(iat=now, exp=now + timedelta(hours=2)),
                       signed(exp=now + timedelta(days=365))):  # fmt: skip
        response = load(guarded.client(token=long_lived), NORMAL[0])
        assert response.status_code == 401 and "60 minutes" in response.json()["error"]
    # a secret shorter than 32 bytes: the service refuses to start
    _, settings, _ = built
    started = subprocess.run(
        [sys.executable, "-m", "retail_dp.cli", "serve", "--warehouse", str(settings.warehouse),
         "--port", "1"],
        env={**os.environ, "RETAIL_DP_JWT_SECRET": "x"}, capture_output=True, text=True,
        timeout=120, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert started.returncode == 2 and "at least 32" in started.stderr, started.stderr


def test_demo_callers_only_with_demo(built, server, tmp_path):
    _, settings, _ = built
    plain = Server(settings.warehouse, tmp_path / "access.jsonl", args=())
    try:
        assert load(plain.client("marketing"), NORMAL[0]).status_code == 401
        assert load(plain.client(token=token("a", ["sales_viewers"])), NORMAL[0]).status_code == 200
    finally:
        plain.stop()
    said = plain.output.read_text()
    assert "demo callers off" in said and "--demo" in said
    # with --demo (as the tests and `make serve` run it) the server says so
    assert "demo mode" in server.output.read_text()


# -- secrets and exposure ----------------------------------------------------------------------


def test_the_public_catalogue_shows_no_secrets_or_row_counts(guarded):
    text = guarded.client().get("/v1/data-products").text
    consumer = guarded.client().get("/v1/data-products/product_affinity_cross_sell").json()
    for body in (text, json.dumps(consumer)):
        assert "secret-token" not in body and "hooks.example" not in body
        assert "webhook" not in body and '"contract"' not in body
    assert "tables" not in consumer["status"]["last_refresh"]
    assert all("detail" not in c for c in consumer["status"]["checks"])
    assert consumer["architecture_slos"]["availability"] == 0.995


def test_csv_export_escapes_formula_cells(guarded):
    query = {
        "dimensions": ["product.product_name"],
        "filters": [{"member": "product.product_name", "operator": "in", "values": FORMULAS}],
    }
    csv = guarded.client("steward").post("/v1/export?format=csv", json=query)
    cells = csv.text.splitlines()[1:]
    assert len(cells) == len(FORMULAS), csv.text
    for cell in cells:
        assert cell.strip('"').startswith("'"), cell
    # JSON answers are data, not spreadsheets: unchanged
    rows = load(guarded.client("steward"), query).json()["data"]
    assert {r["product.product_name"] for r in rows} == set(FORMULAS)


def test_errors_carry_no_engine_internals(guarded):
    client = guarded.client("steward")
    answers = [
        load(client, {"measures": ["purchase.total_spend"],
                      "dimensions": ["customer_value.value_tier"]}),
        load(client, {"measures": ["purchase.total_spend"], "filters": [
            {"member": "purchase.purchase_date", "operator": "gt", "values": [12]}]}),
        load(client, {"measures": ["purchase.total_spend"], "filters": [
            {"member": "customer.customer_id", "operator": "gt", "values": ["x"]}]}),
        load(client, {"measures": ["purchase.units_sold"], "filters": [
            {"member": "purchase.is_deal", "operator": "gt", "values": ["not a bool"]}]}),
        load(client, HEAVY),
        client.post("/graphql", json={"query": "{ load(query: {measures: [\"x.y\"]}) { rows } }"}),
        load(guarded.client(token="a.b.c"), NORMAL[0]),
    ]  # fmt: skip
    for response in answers:
        assert response.status_code in (200, 400, 401, 504), response.text
        text = response.text.lower()
        assert not [w for w in ENGINE_WORDS if w in text], response.text


def test_hub_and_api_send_security_headers(guarded):
    for path in ("/", "/hub/static/hub.js", "/v1/data-products", "/health"):
        headers = guarded.client().get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
    assert (
        guarded.client("sales").post("/v1/load", json=NORMAL[0]).headers["cache-control"]
        == "no-store"
    )
    page = guarded.client().get("/").text
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


def test_files_are_owner_only(guarded, built):
    _, settings, _ = built
    target = published_dir(settings.warehouse)
    snapshot = target / "snapshots" / current_name(target)
    [part, *_] = (target / "parts").glob("*.parquet")
    for path, mode in [(snapshot, 0o600), (target / "snapshots", 0o700), (target, 0o700),
                       (target / "parts", 0o700), (part, 0o600),
                       (guarded.audit_log, 0o600)]:  # fmt: skip
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))


# -- the audit log ---------------------------------------------------------------------------


def test_every_request_is_audited_completely_bounded_and_rotated(guarded):
    client = guarded.client("marketing")
    query = {"measures": ["purchase.total_spend"], "dimensions": ["product.category"],
             "timeDimensions": [{"dimension": "purchase.purchase_date", "granularity": "month",
                                 "dateRange": ["2026-01-01", "2026-03-31"]}],
             "order": {"purchase.total_spend": "desc"}, "limit": 7}  # fmt: skip
    assert load(client, query).status_code == 200
    assert client.post("/v1/load", json={"measures": "nope"}).status_code == 422
    assert (
        client.post(
            "/v1/load", content=b'{"limit": NaN}', headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    name = "m" * 60_000  # a 60 KB member name (the 10 MB one now stops at 64 KB)
    assert load(client, {"measures": [name]}).status_code == 400
    gql = client.post("/graphql", json={"query": "{ dataProducts }"})
    assert gql.status_code == 200
    for _ in range(40):  # enough to rotate a 64 KB log
        load(client, query)
    entries = guarded.audit()
    assert guarded.audit_log.with_name("access.jsonl.1").exists()
    mine = [e for e in entries if e.get("caller") == "demo-marketing-analyst"]
    ok, invalid, nan, huge, graphql = mine[:5]
    for e in mine:
        assert e["client"] == "127.0.0.1" and e["auth"] == "api_key" and e["duration_ms"] >= 0
        assert e["outcome"] in ("ok", "refused") and e["groups"] == ["marketing_analysts"]
    assert ok["query"]["timeDimensions"][0]["dateRange"] == ["2026-01-01", "2026-03-31"]
    assert ok["query"]["order"] == {"purchase.total_spend": "desc"} and ok["query"]["limit"] == 7
    assert ok["status"] == 200 and ok["rows"] > 0 and ok["snapshot"]
    assert invalid["status"] == 422 and invalid["body"] == {"measures": "nope"}
    assert nan["status"] == 400 and "NaN" in nan["body"]
    assert huge["status"] == 400 and "max_string_length" in huge["error"]
    assert huge["truncated"] == {"query.measures[0]": 60_000}
    line = next(x for x in _lines(guarded) if huge["request_id"] in x)
    assert len(line) < 8_000
    assert graphql["endpoint"] == "/graphql" and "dataProducts" in graphql["graphql"]["query"]
    # every request took a number from its server and every number is in the log
    numbers = sorted(e["seq"] for e in entries if e.get("server") == ok["server"])
    assert numbers == list(range(numbers[0], numbers[-1] + 1))


def _lines(server: Server) -> list[str]:
    files = sorted(server.audit_log.parent.glob("access.jsonl*"), reverse=True)
    return [line for f in files for line in f.read_text().splitlines()]

"""Latency of one query through the SQL endpoint, REST, and DuckDB directly, in one run.

On the published snapshot of the warehouse (`make run` builds it): starts `retail-dp serve`
and `retail-dp serve-sql` on loopback, then asks the same question, spend by channel for the
regional manager (row filter: Spain), R times one at a time through:
- the SQL endpoint: psycopg, one connection, `SELECT channel, SUM(total_spend) ... GROUP BY`;
- REST: POST /v1/load (httpx, keep-alive);
- DuckDB directly: the SQL the service runs for that query (`DeliveryService.prepare`:
  MetricFlow's compiled SQL with the row filter, ordered and paged), on the same snapshot in
  this process.
Prints p50 and p95 of each, and each path's p50 over DuckDB's.

    python benchmarks/sql_endpoint_bench.py [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from retail_dp.delivery.policies import Caller  # noqa: E402
from retail_dp.delivery.query import LoadQuery  # noqa: E402
from retail_dp.delivery.service import DeliveryService  # noqa: E402
from retail_dp.delivery.snapshots import current_name, published_dir  # noqa: E402
from retail_dp.settings import Settings  # noqa: E402
from tests.delivery_server import KEYS, Server, free_port  # noqa: E402

WHO = "regional"
USER = "demo-regional-manager-es"
QUERY = {
    "measures": ["purchase.total_spend"],
    "dimensions": ["purchase.channel"],
    "order": {"purchase.channel": "asc"},
    "limit": 1000,
}
SQL = "SELECT channel, SUM(total_spend) FROM purchase GROUP BY channel ORDER BY channel LIMIT 1000"


def timed(run, requests: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def start_sql(warehouse: Path, audit: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "RETAIL_DP_AUDIT_LOG": str(audit), "RETAIL_DP_MASKING_SALT": "bench"}
    process = subprocess.Popen(
        [sys.executable, "-m", "retail_dp.cli", "serve-sql", "--demo"]
        + ["--warehouse", str(warehouse), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve-sql did not start") from None
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    settings = Settings.from_env()
    target = published_dir(settings.warehouse)
    name = current_name(target)
    if name is None:
        print("nothing published: run `make run` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        audit = Path(tmp) / "access.jsonl"
        rest = Server(settings.warehouse, audit, env={"RETAIL_DP_MASKING_SALT": "bench"})
        sql_process, port = start_sql(settings.warehouse, audit)
        try:
            figures = measure(settings, target / "snapshots" / name, rest, port, args.requests)
        finally:
            rest.stop()
            sql_process.terminate()
            sql_process.wait(timeout=10)
    print(f"snapshot {name}; {args.requests} requests each, one at a time, as {USER}")
    print(f"{'path':<28}{'p50 ms':>10}{'p95 ms':>10}{'p50 / DuckDB':>14}")
    base = statistics.median(figures["DuckDB directly"])
    for path, samples in figures.items():
        p50 = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[-1]
        print(f"{path:<28}{p50:>10.2f}{p95:>10.2f}{p50 / base:>13.1f}x")
    return 0


def measure(settings: Settings, snapshot: Path, rest: Server, port: int, requests: int) -> dict:
    dsn = f"host=127.0.0.1 port={port} dbname=retail_dp user={USER} password={KEYS[WHO]}"
    figures = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        answer = conn.execute(SQL).fetchall()
        figures["SQL endpoint (psycopg)"] = timed(lambda: conn.execute(SQL).fetchall(), requests)
    with rest.client(WHO) as client:
        data = client.post("/v1/load", json=QUERY).json()["data"]
        assert [(r["purchase.channel"], r["purchase.total_spend"]) for r in data] == answer
        figures["REST /v1/load (httpx)"] = timed(
            lambda: client.post("/v1/load", json=QUERY).raise_for_status(), requests
        )
    service = DeliveryService(settings, demo=True)
    caller = Caller(USER, ("regional_manager_spain",), "api_key")
    prepared = service.prepare(caller, LoadQuery.model_validate(QUERY))
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{snapshot}' AS \"{service.model.database}\" (READ_ONLY)")
    con.execute(f'USE "{service.model.database}"')
    figures["DuckDB directly"] = timed(
        lambda: con.execute(prepared.sql, prepared.params or None).fetchall(), requests
    )
    con.close()
    return figures


if __name__ == "__main__":
    sys.exit(main())

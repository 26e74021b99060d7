"""Load on the delivery service: C clients on loopback for D seconds, while a new snapshot is
published halfway through.

Copies a built warehouse (default: the sample's, data/warehouse/, built by `make run`) to
data/bench/load/, starts `retail-dp serve` on it with the default limits, and runs C client
threads, each a caller of its own (a JWT per client, in one of the four groups), each sending
a mix of typical queries back to back over keep-alive. Halfway through, this process
publishes a new snapshot from the copied warehouse (`snapshots.publish`, as a refresh does).
Prints throughput, p50/p95/p99 latency, answers by status and the snapshots the answers came
from.

    python benchmarks/delivery_load.py [--warehouse FILE] [--clients 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from retail_dp.delivery.snapshots import current_name, publish, published_dir  # noqa: E402
from tests.delivery_server import Server, token  # noqa: E402

GROUPS = ["marketing_analysts", "regional_manager_spain", "sales_viewers", "data_stewards"]
QUERIES = [
    {"measures": ["purchase.total_spend"], "dimensions": ["customer.country_code"]},
    {"measures": ["purchase.total_spend", "purchase.order_count"],
     "dimensions": ["product.category"],
     "timeDimensions": [{"dimension": "purchase.purchase_date", "granularity": "month"}]},
    {"measures": ["customer_value.cross_sell_opportunity_score"],
     "dimensions": ["customer_value.next_best_category", "customer.region"],
     "segments": ["customer_value.high_value"],
     "order": {"customer_value.cross_sell_opportunity_score": "desc"}, "limit": 50},
    {"measures": ["purchase.purchase_frequency"], "dimensions": ["purchase.channel"]},
]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def copy_warehouse(source: Path) -> Path:
    folder = ROOT / "data" / "bench" / "load"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(source, folder / source.name)
    shutil.copytree(published_dir(source), published_dir(folder / source.name),
                    ignore=shutil.ignore_patterns("audit", "*.partial"))  # fmt: skip
    return folder / source.name


def publish_new(warehouse: Path) -> tuple[str, float]:
    """A new snapshot from the warehouse, as the refresh's last step publishes it."""
    target = published_dir(warehouse)
    started = time.perf_counter()
    with duckdb.connect(str(warehouse)) as con:
        _, info = publish(con, target, f"loadbench-{uuid.uuid4().hex}", datetime.now(), [])
    return info.snapshot_id, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warehouse", type=Path, default=ROOT / "data/warehouse/retail_dp.duckdb")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    if current_name(published_dir(args.warehouse)) is None:
        sys.exit(f"nothing published under {published_dir(args.warehouse)}: run `make run`")
    warehouse = copy_warehouse(args.warehouse)
    server = Server(warehouse, warehouse.parent / "audit" / "access.jsonl")
    results: list[tuple[float, float, int, str | None]] = []  # (at, ms, status, snapshot)
    lock = threading.Lock()
    stop = threading.Event()
    begin = time.perf_counter()

    def client(n: int) -> None:
        group = GROUPS[n % 4]
        auth = {"Authorization": f"Bearer {token(f'load-{n}', [group])}"}
        # sales viewers may not see customer value: they skip that query (no 403s by design)
        mine = [q for q in QUERIES if group != "sales_viewers" or "segments" not in q]
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as c:
            i = n
            while not stop.is_set():
                query = mine[i % len(mine)]
                i += 1
                started = time.perf_counter()
                try:
                    response = c.post("/v1/load", json=query)
                    status = response.status_code
                    snap = response.json()["snapshot"]["id"] if status == 200 else None
                except httpx.HTTPError:
                    status, snap = 0, None
                took = (time.perf_counter() - started) * 1000
                with lock:
                    results.append((started - begin, took, status, snap))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    try:
        for t in threads:
            t.start()
        time.sleep(args.seconds / 2)
        published_at = time.perf_counter() - begin
        new_id, publish_s = publish_new(warehouse)
        time.sleep(args.seconds / 2)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        wall = time.perf_counter() - begin
    finally:
        server.stop()
    latencies = [ms for _, ms, _, _ in results]
    statuses = Counter(status for _, _, status, _ in results)
    snapshots = Counter(snap for _, _, _, snap in results if snap)
    first_new = min((at for at, _, _, snap in results if snap == new_id), default=None)
    errors = sum(n for s, n in statuses.items() if s != 200)
    print(f"{datetime.now():%Y-%m-%d %H:%M} delivery load: {args.clients} clients (one caller "
          f"each), {wall:.1f} s on loopback, {warehouse}")  # fmt: skip
    print(f"requests {len(results):,}, throughput {len(results) / wall:.1f} req/s")
    print(f"latency p50 {statistics.median(latencies):.1f} ms, p95 "
          f"{percentile(latencies, 0.95):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
          f"max {max(latencies):.1f} ms")  # fmt: skip
    print(f"answers by status: {dict(sorted(statuses.items()))}; errors {errors} "
          f"({errors / len(results):.2%})")  # fmt: skip
    print(
        f"new snapshot {new_id} published at {published_at:.1f} s (took {publish_s:.2f} s), "
        f"first served at {first_new:.1f} s"
        if first_new is not None
        else "never served"
    )
    print(f"answers per snapshot: {dict(snapshots)}")


if __name__ == "__main__":
    main()

"""Erasure (GDPR Art. 17) of one customer: `retail-dp erase --customer ID`.

1. The customer's id goes on the landing zone's suppression list (as a SHA-256 digest, so
   the list itself does not hold the id): ingestion drops their rows from every source that
   has a `customer_id` before judging anything, so they reach no table, not even quarantine.
2. The product is rebuilt and published (the caller runs the refresh).
3. Every older snapshot that still holds the id is deleted, and the Parquet parts only such
   snapshots read; the new one must not hold it.
4. The erasure is audited (the digest, the reason, what was deleted), never the id.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import duckdb

from retail_dp.delivery.audit import AuditLog
from retail_dp.delivery.snapshots import current_name, prune_parts
from retail_dp.sources.ingest import SUPPRESSED_COLUMN, add_to_suppression_list


def suppress(data_dir: Path, customer_id: str) -> str:
    """Put the customer on the suppression list; returns the digest recorded."""
    return add_to_suppression_list(data_dir, customer_id)


def holds(path: Path, customer_id: str) -> bool:
    """Whether any table of the DuckDB file has the customer's id in a `customer_id` column."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.columns "
            "WHERE column_name = ? AND table_catalog = current_database()",
            [SUPPRESSED_COLUMN],
        ).fetchall()
        for schema, table in tables:
            found = con.execute(
                f'SELECT 1 FROM "{schema}"."{table}" '
                f'WHERE trim(CAST("{SUPPRESSED_COLUMN}" AS VARCHAR)) = ? LIMIT 1',
                [customer_id.strip()],
            ).fetchall()
            if found:
                return True
        return False
    finally:
        con.close()


def purge_snapshots(target: Path, customer_id: str) -> tuple[bool, list[str], list[str]]:
    """Delete every snapshot but the current one that holds the customer, then every Parquet
    part no remaining snapshot reads (a part is named by its content, so a part the current,
    clean snapshot reads cannot hold the customer). Returns whether the current snapshot is
    clean, the snapshots deleted and the parts deleted."""
    current = current_name(target)
    snapshots = target / "snapshots"
    clean = current is not None and not holds(snapshots / current, customer_id)
    deleted = []
    for path in sorted(snapshots.glob("*.duckdb")):
        if path.name != current and holds(path, customer_id):
            path.unlink()
            deleted.append(path.name)
    return clean, deleted, prune_parts(target)


def audit_erasure(log: AuditLog, now: str, digest: str, reason: str | None, **outcome) -> None:
    log.record(
        {
            "time": now,
            "kind": "erasure",
            "operator": getpass.getuser(),
            "customer_sha256": digest,
            "reason": reason,
            **outcome,
        }
    )

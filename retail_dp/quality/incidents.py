"""Incidents, in the manner of DataOS's Monitor and Pager.

A failed check opens an incident in `monitor.incidents` (one open incident per check: a repeat
failure adds an occurrence instead of paging again) and POSTs it as JSON to the webhook. A check
that passes again resolves its incident and posts that too. Delivery is best effort: a receiver
that is down or slow is recorded on the incident (`delivery_error`) and never fails the run.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from retail_dp.descriptors import Alerts

log = logging.getLogger(__name__)

WEBHOOK_ENV = "RETAIL_DP_WEBHOOK_URL"
INCIDENTS = "monitor.incidents"
INCIDENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {INCIDENTS} (
    incident_id VARCHAR PRIMARY KEY,
    status VARCHAR NOT NULL,            -- open | resolved
    opened_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP,
    occurrences INTEGER NOT NULL,
    data_product VARCHAR,
    asset VARCHAR NOT NULL,
    check_name VARCHAR NOT NULL,
    slo_category VARCHAR,
    severity VARCHAR NOT NULL,
    measured VARCHAR,
    target DOUBLE,
    comparison VARCHAR,
    detail VARCHAR,
    run_id VARCHAR,
    resolved_by_run VARCHAR,
    delivered BOOLEAN NOT NULL DEFAULT FALSE,
    delivery_error VARCHAR
)"""


@dataclass(frozen=True)
class Evaluation:
    """One check's outcome, as the incident log needs it."""

    asset: str
    check_name: str
    passed: bool
    severity: str
    slo_category: str | None = None
    measured: Any = None
    target: float | None = None
    comparison: str | None = None
    detail: str | None = None
    data_product: str | None = None


def webhook_url(configured: str | None) -> str | None:
    """The environment wins over the descriptor, so each deployment can page its own receiver."""
    return os.environ.get(WEBHOOK_ENV) or configured


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS monitor")
    con.execute(INCIDENTS_DDL)


def record(
    con: duckdb.DuckDBPyConnection,
    evaluations: list[Evaluation],
    run_id: str | None,
    alerts: Alerts,
) -> list[dict]:
    """Open, update or resolve incidents for `evaluations` and post them where `alerts` (or
    the environment) says; returns the events it posted."""
    url = webhook_url(alerts.webhook_url)
    ensure_table(con)
    now = datetime.now(UTC).replace(tzinfo=None)
    events: list[dict] = []
    for ev in evaluations:
        rows = con.execute(
            f"SELECT incident_id FROM {INCIDENTS} "
            "WHERE status = 'open' AND asset = ? AND check_name = ?",
            [ev.asset, ev.check_name],
        ).fetchall()
        open_id = rows[0][0] if rows else None
        measured = None if ev.measured is None else str(ev.measured)
        if not ev.passed and open_id is None:
            incident_id = str(uuid.uuid4())
            con.execute(
                f"INSERT INTO {INCIDENTS} (incident_id, status, opened_at, last_seen_at, "
                "occurrences, data_product, asset, check_name, slo_category, severity, measured, "
                "target, comparison, detail, run_id) "
                "VALUES (?, 'open', ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    incident_id,
                    now,
                    now,
                    ev.data_product,
                    ev.asset,
                    ev.check_name,
                    ev.slo_category,
                    ev.severity,
                    measured,
                    ev.target,
                    ev.comparison,
                    ev.detail,
                    run_id,
                ],
            )
            events.append(_event("incident.opened", incident_id, ev, run_id, now))
        elif not ev.passed:
            con.execute(
                f"UPDATE {INCIDENTS} SET last_seen_at = ?, occurrences = occurrences + 1, "
                "measured = ?, detail = ?, run_id = ? WHERE incident_id = ?",
                [now, measured, ev.detail, run_id, open_id],
            )
        elif open_id is not None:
            con.execute(
                f"UPDATE {INCIDENTS} SET status = 'resolved', resolved_at = ?, "
                "resolved_by_run = ?, measured = ? WHERE incident_id = ?",
                [now, run_id, measured, open_id],
            )
            events.append(_event("incident.resolved", open_id, ev, run_id, now))
    for event in events:
        error = deliver(url, event, alerts.timeout_seconds) if url else "no webhook configured"
        if event["event"] == "incident.opened":
            con.execute(
                f"UPDATE {INCIDENTS} SET delivered = ?, delivery_error = ? WHERE incident_id = ?",
                [error is None, error, event["incident_id"]],
            )
    return events


def _event(kind: str, incident_id: str, ev: Evaluation, run_id: str | None, at: datetime) -> dict:
    verdict = "failed" if kind == "incident.opened" else "passes again"
    return {
        "event": kind,
        "incident_id": incident_id,
        "at": at.isoformat(sep=" ", timespec="seconds"),
        "run_id": run_id,
        "summary": f"[{ev.severity}] {ev.asset} :: {ev.check_name} {verdict}"
        + (
            f" (measured {ev.measured}, target {ev.comparison} {ev.target})"
            if ev.target is not None
            else ""
        ),
        **asdict(ev),
    }


def deliver(url: str, event: dict, timeout: float) -> str | None:
    """POST one event; the error as text when it could not be delivered, else None."""
    request = urllib.request.Request(
        url,
        data=json.dumps(event, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "retail_dp-pager"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("incident %s not delivered to %s: %s", event["incident_id"], url, exc)
        return f"{type(exc).__name__}: {exc}"


def open_incidents(con: duckdb.DuckDBPyConnection) -> list[dict]:
    ensure_table(con)
    cursor = con.execute(f"SELECT * FROM {INCIDENTS} WHERE status = 'open' ORDER BY opened_at DESC")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]

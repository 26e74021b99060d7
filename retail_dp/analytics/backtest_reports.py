"""Where `retail-dp backtest` writes its reports and which one is the latest: the delivery
service reads them from here without loading the backtest itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

REPORT_PATTERN = "backtest-*.json"  # every report; latest.json is a copy of the newest


def default_warehouse(product_warehouse: Path) -> Path:
    """Where `retail-dp backtest` builds unless told otherwise: `backtest/` beside the
    product's warehouse, so the product itself is never rewound."""
    return product_warehouse.parent / "backtest" / product_warehouse.name


def reports_dir(backtest_warehouse: Path) -> Path:
    """The folder the reports of a backtest warehouse are written to."""
    return backtest_warehouse.parent / "reports"


def created_at(report: dict, path: Path) -> datetime:
    """When a report was made: its `created_at`, else (a report from before that field) the
    file's modification time; always timezone-aware UTC."""
    try:
        stamp = datetime.fromisoformat(str(report["created_at"]))
    except (KeyError, ValueError):
        stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def latest_report(folder: Path) -> tuple[dict, str] | None:
    """The most recently created report in `folder` and its file name, or None when there is
    none. Chosen by creation time, not by name or as_of: a backtest at an earlier T run today
    is the latest report. A file that is not a readable JSON object is skipped."""
    found = []
    for path in folder.glob(REPORT_PATTERN):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict):
            found.append((created_at(report, path), path.name, report))
    if not found:
        return None
    stamp, name, report = max(found, key=lambda f: (f[0], f[1]))
    return {**report, "created_at": stamp.isoformat(timespec="milliseconds")}, name

"""Reading check results back: one row per check, JUnit XML, and SLO attainment over runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from retail_dp.descriptors import DataProduct, SloCategory

SLO_CATEGORIES = [c.value for c in SloCategory]


@dataclass(frozen=True)
class CheckRow:
    asset: str
    check: str
    category: str
    measured: str
    target: str
    passed: bool
    severity: str
    detail: str | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.passed:
            return "PASSED"
        return "FAILED" if self.severity == "ERROR" else "WARNING"


def _value(meta: dict, key: str):
    item = meta.get(key)
    return getattr(item, "value", item)


def category_of(check_name: str, meta: dict) -> str:
    """Every check and result carries its SLO category; a result recorded before dbt test
    results did counts as accuracy, the category of a test of no known kind."""
    return _value(meta, "slo_category") or "accuracy"


def row_of(evaluation: dg.AssetCheckEvaluation) -> CheckRow:
    meta = dict(evaluation.metadata)
    measured = _value(meta, "measured")
    if measured is None:
        failed_rows = _value(meta, "dagster_dbt/failed_row_count")
        measured = f"{failed_rows} failing rows" if failed_rows is not None else "-"
    target = _value(meta, "target")
    comparison = _value(meta, "comparison") or ("failing rows =" if target == 0 else "")
    if target is None:
        target, comparison = 0, "failing rows ="
    unit = _value(meta, "unit") or ""
    return CheckRow(
        asset=evaluation.asset_key.to_user_string(),
        check=evaluation.check_name,
        category=category_of(evaluation.check_name, meta),
        measured=f"{measured:.4g}" if isinstance(measured, float) else str(measured),
        target=f"{comparison} {target:g} {unit}".strip()
        if isinstance(target, int | float)
        else str(target),
        passed=evaluation.passed,
        severity=evaluation.severity.value,
        detail=evaluation.description,
        metadata={k: _value(meta, k) for k in meta},
    )


def format_table(rows: list[CheckRow]) -> str:
    header = ("check", "asset", "category", "measured", "target", "status")
    cells = [header] + [
        (r.check, r.asset, r.category, r.measured, r.target, r.status) for r in rows
    ]
    widths = [min(max(len(c[i]) for c in cells), 60) for i in range(len(header))]
    lines = []
    for n, cell in enumerate(cells):
        lines.append(
            "  ".join(str(v)[:60].ljust(w) for v, w in zip(cell, widths, strict=False)).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def junit_xml(rows: list[CheckRow], path: Path, seconds: float) -> None:
    """One testcase per check (classname = asset). A failed ERROR check is a <failure>; a failed
    WARN check passes, with the warning in <system-out> and its properties."""
    failures = [r for r in rows if not r.passed and r.severity == "ERROR"]
    suites = ET.Element(
        "testsuites",
        name="retail_dp checks",
        tests=str(len(rows)),
        failures=str(len(failures)),
        errors="0",
        time=f"{seconds:.3f}",
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="retail_dp.asset_checks",
        tests=str(len(rows)),
        failures=str(len(failures)),
        errors="0",
        skipped="0",
        time=f"{seconds:.3f}",
    )
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=r.asset, name=r.check, time="0")
        props = ET.SubElement(case, "properties")
        for name, value in (
            ("slo_category", r.category),
            ("measured", r.measured),
            ("target", r.target),
            ("severity", r.severity),
            ("status", r.status),
        ):
            ET.SubElement(props, "property", name=name, value=value)
        message = f"{r.asset}:{r.check} [{r.category}] measured {r.measured}, target {r.target}"
        if not r.passed and r.severity == "ERROR":
            failure = ET.SubElement(case, "failure", message=message, type=r.severity)
            failure.text = r.detail or message
        elif not r.passed:
            ET.SubElement(case, "system-out").text = f"WARNING: {message}"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


@dataclass(frozen=True)
class Attainment:
    category: str
    runs: int
    evaluations: int
    passed: int
    objective: float

    @property
    def share(self) -> float | None:
        return self.passed / self.evaluations if self.evaluations else None

    @property
    def met(self) -> bool | None:
        return None if self.share is None else self.share >= self.objective


def evaluations_of(instance: dg.DagsterInstance, key: dg.AssetCheckKey, limit: int) -> list:
    """The check's last `limit` finished evaluations, newest first, with their records."""
    done = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=limit, status=done
    )
    return [
        (r, r.event.asset_check_evaluation)
        for r in records
        if r.event and r.event.asset_check_evaluation
    ]


def slo_attainment(
    instance: dg.DagsterInstance,
    check_keys: list[dg.AssetCheckKey],
    consumer: DataProduct,
    runs: int,
) -> list[Attainment]:
    """Per SLO category, the share of check evaluations that passed in the last `runs` runs
    that evaluated checks, against the descriptor's attainment objective."""
    records = [
        (record.create_timestamp, record.run_id, evaluation)
        for key in check_keys
        for record, evaluation in evaluations_of(instance, key, runs)
    ]
    ordered = sorted({(t, r) for t, r, _ in records}, reverse=True)
    recent_runs = []
    for _, run_id in ordered:
        if run_id not in recent_runs:
            recent_runs.append(run_id)
    window = set(recent_runs[:runs])
    tally: dict[str, list[bool]] = defaultdict(list)
    for _, run_id, evaluation in records:
        if run_id in window:
            tally[category_of(evaluation.check_name, dict(evaluation.metadata))].append(
                evaluation.passed
            )
    return [
        Attainment(
            category=category,
            runs=len(window),
            evaluations=len(tally[category]),
            passed=sum(tally[category]),
            objective=consumer.slos[SloCategory(category)].attainment
            if SloCategory(category) in consumer.slos
            else 0.95,
        )
        for category in SLO_CATEGORIES
    ]


def format_attainment(rows: list[Attainment], runs: int) -> str:
    lines = [
        f"SLO attainment over the last {runs} runs that evaluated checks",
        f"{'category':<14} {'checks':>7} {'passed':>7} {'share':>8} {'objective':>10}  status",
    ]
    for a in rows:
        share = f"{a.share:.1%}" if a.share is not None else "-"
        status = {True: "MET", False: "BREACHED", None: "NO DATA"}[a.met]
        lines.append(
            f"{a.category:<14} {a.evaluations:>7} {a.passed:>7} {share:>8} "
            f"{a.objective:>10.1%}  {status}"
        )
    return "\n".join(lines)


def latest_checks(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey], history: int = 10
) -> list[dict]:
    """The latest evaluation of every check, with the statuses of its last `history`
    evaluations (oldest first), as plain rows (what a snapshot publishes)."""
    rows = []
    for key in check_keys:
        evaluated = evaluations_of(instance, key, history)
        if not evaluated:
            continue
        latest, evaluation = evaluated[0]
        row = row_of(evaluation)
        rows.append(
            {
                "asset": row.asset,
                "check": row.check,
                "category": row.category,
                "measured": row.measured,
                "target": row.target,
                "severity": row.severity,
                "status": row.status,
                "detail": row.detail,
                "run_id": latest.run_id,
                "evaluated_at": latest.create_timestamp,
                "history": [
                    {
                        "run_id": r.run_id,
                        "at": r.create_timestamp,
                        "status": row_of(e).status,
                        "measured": row_of(e).measured,
                    }
                    for r, e in reversed(evaluated)
                ],  # fmt: skip
            }
        )
    return sorted(rows, key=lambda r: (r["asset"], r["check"]))


@dataclass(frozen=True)
class ServiceLevel:
    """An architecture or governance SLO of the delivery service, measured against its
    target (the delivery layer measures them; this is how `retail-dp slo` shows them)."""

    kind: str  # architecture | governance
    name: str
    measured: float | None
    target: float
    comparison: str  # >= | <=
    unit: str
    detail: str = ""

    @property
    def met(self) -> bool | None:
        """None when there is nothing to measure yet (no requests); a governance level with
        nothing to show for it (never reviewed) is breached."""
        if self.measured is None:
            return False if self.kind == "governance" else None
        if self.comparison == ">=":
            return self.measured >= self.target
        return self.measured <= self.target


def format_service_levels(rows: list[ServiceLevel], window: str) -> str:
    lines = [
        f"Delivery service levels ({window})",
        f"{'kind':<13} {'slo':<36} {'measured':>10} {'target':>12}  status    detail",
    ]
    for r in rows:
        measured = "-" if r.measured is None else _level(r.measured, r.unit)
        target = f"{r.comparison} {_level(r.target, r.unit)}"
        status = {True: "MET", False: "BREACHED", None: "NO DATA"}[r.met]
        lines.append(
            f"{r.kind:<13} {r.name[:36]:<36} {measured:>10} {target:>12}  {status:<8}  {r.detail}"
        )
    return "\n".join(lines)


def _level(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2%}"
    if unit == "ms":
        return f"{value:,.0f} ms"
    return f"{value:g} {unit}"

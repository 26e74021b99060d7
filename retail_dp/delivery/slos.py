"""The delivery service's architecture and governance SLOs, measured from what it records:
the audit log (availability, p95 latency per endpoint, every request audited), the policies
and the semantic model (PII masking coverage) and the access reviews (review age).

Targets come from the consumer descriptor (`architecture_slos`, `governance_slos`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from retail_dp.delivery.governance import last_review, masking_coverage
from retail_dp.delivery.policies import Policies
from retail_dp.delivery.semantic import SemanticModel
from retail_dp.descriptors import ArchitectureSlos, DataProduct, GovernanceSlos
from retail_dp.quality.report import ServiceLevel


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def requests_in_window(entries: Iterable[dict], days: int, now: datetime) -> list[dict]:
    since = (now - timedelta(days=days)).isoformat(timespec="milliseconds")
    return [e for e in entries if "status" in e and "seq" in e and str(e.get("time")) >= since]


def architecture_levels(requests: list[dict], targets: ArchitectureSlos) -> list[ServiceLevel]:
    total = len(requests)
    ok = sum(1 for e in requests if int(e["status"]) < 500)
    levels = [
        ServiceLevel(
            "architecture", "availability", ok / total if total else None, targets.availability,
            ">=", "ratio", f"{total - ok} of {total} answers were 5xx",
        )
    ]  # fmt: skip
    durations: dict[str, list[float]] = defaultdict(list)
    for e in requests:
        durations[e.get("endpoint") or "unmatched"].append(float(e.get("duration_ms", 0)))
    endpoints = sorted(set(durations) | (set(targets.latency_p95_ms) - {"*"}))
    default = targets.latency_p95_ms.get("*")
    for endpoint in endpoints:
        target = targets.latency_p95_ms.get(endpoint, default)
        if target is None or endpoint == "unmatched":
            continue
        seen = durations.get(endpoint, [])
        levels.append(
            ServiceLevel(
                "architecture", f"p95 latency {endpoint}", p95(seen) if seen else None, target,
                "<=", "ms", f"{len(seen)} requests",
            )
        )  # fmt: skip
    return levels


def audit_coverage(requests: list[dict]) -> tuple[float | None, str]:
    """Every request takes a sequence number from its server when it arrives and is audited
    with it; numbers missing between a server's first and last entry were never audited."""
    by_server: dict[str, set[int]] = defaultdict(set)
    for e in requests:
        by_server[e["server"]].add(int(e["seq"]))
    audited = sum(len(s) for s in by_server.values())
    expected = sum(max(s) - min(s) + 1 for s in by_server.values())
    if not expected:
        return None, "no requests yet"
    return audited / expected, f"{audited} of {expected} requests audited"


def governance_levels(
    requests: list[dict],
    targets: GovernanceSlos,
    model: SemanticModel,
    policies: Policies,
    now: datetime,
) -> list[ServiceLevel]:
    coverage = masking_coverage(model, policies)
    gaps = f"; gaps: {', '.join(coverage.gaps[:5])}" if coverage.gaps else ""
    audited, audit_detail = audit_coverage(requests)
    review = last_review(policies.source)
    if review is None:
        age, review_detail = None, "never reviewed: run `retail-dp access-review`"
    else:
        reviewed = datetime.fromisoformat(review["reviewed_at"])
        age = round((now - reviewed).total_seconds() / 86400, 1)
        review_detail = f"last reviewed {review['reviewed_at'][:10]} by {review['reviewer']}"
    return [
        ServiceLevel("governance", "PII masking coverage", coverage.share,
                     targets.pii_masking_coverage, ">=", "ratio",
                     f"{coverage.covered} of {coverage.total} (group, PII member) pairs{gaps}"),
        ServiceLevel("governance", "requests audited", audited, targets.audit_coverage, ">=",
                     "ratio", audit_detail),
        ServiceLevel("governance", "access review age", age,
                     float(targets.access_review_max_age_days), "<=", "days", review_detail),
    ]  # fmt: skip


def service_levels(
    consumer: DataProduct,
    entries: Iterable[dict],
    model: SemanticModel,
    policies: Policies,
    now: datetime | None = None,
) -> list[ServiceLevel]:
    now = now or datetime.now(UTC)
    arch = consumer.architecture_slos or ArchitectureSlos()
    gov = consumer.governance_slos or GovernanceSlos()
    requests = requests_in_window(entries, arch.window_days, now)
    return architecture_levels(requests, arch) + governance_levels(
        requests, gov, model, policies, now
    )


def as_rows(levels: list[ServiceLevel]) -> list[dict]:
    return [
        {"kind": lv.kind, "name": lv.name, "measured": lv.measured, "target": lv.target,
         "comparison": lv.comparison, "unit": lv.unit, "met": lv.met, "detail": lv.detail}
        for lv in levels
    ]  # fmt: skip


def service_level_report(settings) -> str:
    """`retail-dp slo`'s second table: the service levels from the audit log on disk."""
    from retail_dp.delivery.audit import AuditLog
    from retail_dp.delivery.service import audit_log_path
    from retail_dp.descriptors import Catalog
    from retail_dp.quality.report import format_service_levels

    consumer = Catalog.load(settings.descriptors_dir).consumer
    model = SemanticModel.load(settings.dbt_project_dir / "target")
    policies = Policies.load(settings.policies, demo=True, serving=False)
    log = AuditLog(audit_log_path(settings))
    levels = service_levels(consumer, log.entries(), model, policies)
    days = (consumer.architecture_slos or ArchitectureSlos()).window_days
    return format_service_levels(levels, f"audit log {log.path}, last {days} days")

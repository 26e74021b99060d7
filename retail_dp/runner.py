"""Run the refresh job in-process, recorded in a Dagster instance, and summarise it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from retail_dp.definitions import REFRESH_JOB, build_definitions
from retail_dp.quality.report import CheckRow, category_of, format_table, row_of
from retail_dp.resources import connect_warehouse, probe_warehouse
from retail_dp.settings import Settings

LAYER_SCHEMAS = ("sources", "reference", "staging", "intermediate", "marts", "monitor")
AD_HOC_CHECK_JOB = "retail_dp_check"


class SelectionError(ValueError):
    """`--select` or `--category` matches no check."""


@dataclass
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str
    metadata: dict = field(default_factory=dict)

    @property
    def measured(self):
        return self.metadata.get("measured")


@dataclass
class RunReport:
    run_id: str
    success: bool
    as_of: datetime
    seconds: float
    warehouse: Path
    dagster_home: Path
    materialized: list[str]
    checks: list[CheckOutcome]
    step_seconds: dict[str, float] = field(default_factory=dict)
    table_rows: dict[str, int] = field(default_factory=dict)
    quarantine: list[tuple[str, str, str, int]] = field(default_factory=list)
    # source -> rows dated after as_of: not loaded this run, rejected by no rule
    deferred: dict[str, int] = field(default_factory=dict)
    # the newest load of each source: (source, mode, reason, files, rows read, rows changed)
    loads: list[tuple] = field(default_factory=list)
    failure: str | None = None
    # steps Dagster skipped because an output upstream never came: the run did not do its job
    skipped: list[str] = field(default_factory=list)

    @property
    def failed_error_checks(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed and c.severity == "ERROR"]

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_error_checks and not self.skipped


def instance_for(home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def _run_config(
    as_of: datetime, log_level: str = "INFO", full_refresh: bool = False, refit: str = "auto"
) -> dict:
    return {
        "resources": {
            "reference_time": {"config": {"as_of": as_of.isoformat()}},
            "refresh_mode": {"config": {"full_refresh": full_refresh, "refit": refit}},
        },
        # progress on the console; every event stays in the instance for the UI
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }


def _failure(result, ignore_failed_checks: bool = False) -> str | None:
    """The root cause of each failed step. A step that failed only because a blocking check
    failed can be left out: the check table already says so."""
    if result.success:
        return None
    failures = [
        e
        for e in result.all_events
        if e.is_step_failure
        and not (
            ignore_failed_checks
            and e.step_failure_data
            and e.step_failure_data.error
            and _root_class(e.step_failure_data.error) == "DagsterAssetCheckFailedError"
        )
    ]
    if ignore_failed_checks and not failures:
        return None
    return (
        "; ".join(
            f"{e.step_key}: {_reason(e.step_failure_data)}"
            for e in failures
            if e.step_failure_data and e.step_failure_data.error
        )
        or "the run failed"
    )


def run_refresh(
    settings: Settings,
    as_of: datetime | None = None,
    instance: dg.DagsterInstance | None = None,
    selection: list[str] | None = None,
    full_refresh: bool = False,
    refit: str = "auto",
) -> RunReport:
    """Run the refresh job (or the assets named in `selection`) and report on it; incremental
    unless `full_refresh`; the models refit on their cadence unless `refit` says always or
    never."""
    started = time.perf_counter()
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    defs = build_definitions(settings)
    job = defs.resolve_job_def(REFRESH_JOB)
    instance = instance or instance_for(settings.dagster_home)
    result = job.execute_in_process(
        instance=instance,
        run_config=_run_config(as_of, full_refresh=full_refresh, refit=refit),
        raise_on_error=False,
        asset_selection=[dg.AssetKey.from_user_string(k) for k in selection] if selection else None,
        tags={"retail_dp/as_of": as_of.isoformat(sep=" ")},
    )
    failure = _failure(result)
    report = RunReport(
        run_id=result.run_id,
        success=result.success,
        as_of=as_of,
        seconds=time.perf_counter() - started,
        warehouse=settings.warehouse,
        dagster_home=Path(instance.root_directory) if instance.root_directory else None,
        materialized=sorted(
            {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        ),
        checks=[
            CheckOutcome(
                asset=e.asset_key.to_user_string(),
                check=e.check_name,
                passed=e.passed,
                severity=e.severity.value,
                metadata={k: getattr(v, "value", v) for k, v in e.metadata.items()},
            )
            for e in result.get_asset_check_evaluations()
        ],
        step_seconds={
            e.step_key: e.event_specific_data.duration_ms / 1000
            for e in result.all_events
            if e.is_step_success
        },
        failure=failure,
        skipped=sorted({e.step_key for e in result.all_events if e.is_step_skipped}),
    )
    if report.skipped and not report.failure:
        report.failure = (
            f"{len(report.skipped)} step(s) skipped because an upstream output never came: "
            + ", ".join(report.skipped[:5])
            + (" ..." if len(report.skipped) > 5 else "")
        )
    if settings.warehouse.exists():
        _read_warehouse(report)
    return report


def _root_class(error) -> str:
    while error.cause is not None:
        error = error.cause
    return error.cls_name or ""


def _reason(data) -> str:
    """A dagster.Failure's own description (its message would lead with the class name),
    else the root cause."""
    described = data.user_failure_data and data.user_failure_data.description
    return described or _root_cause(data.error)


def _root_cause(error) -> str:
    """The innermost error's message: what went wrong, not Dagster's wrapper around it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _read_warehouse(report: RunReport) -> None:
    with connect_warehouse(report.warehouse, read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN (SELECT unnest(?)) ORDER BY 1, 2",
            [list(LAYER_SCHEMAS)],
        ).fetchall()
        for schema, name in tables:
            rows = con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchall()[0][0]
            report.table_rows[f"{schema}.{name}"] = rows
        if ("sources", "quarantine") in tables:
            report.quarantine = con.execute(
                "SELECT source, reason, field, count(*) FROM sources.quarantine "
                "GROUP BY ALL ORDER BY 1, 2, 3"
            ).fetchall()
        if ("sources", "loads") in tables:
            # this run's loads: the newest one per source
            report.loads = con.execute(
                "SELECT source, mode, reason, files_loaded, rows_read, keys_changed "
                "FROM sources.loads QUALIFY row_number() OVER (PARTITION BY source "
                "ORDER BY load_id DESC) = 1 ORDER BY source"
            ).fetchall()
        if ("sources", "landing_audit") in tables:
            report.deferred = dict(
                con.execute(
                    "SELECT source, CAST(audit->>'rows_deferred' AS BIGINT) "
                    "FROM sources.landing_audit ORDER BY 1"
                ).fetchall()
            )


def format_report(report: RunReport) -> str:
    status = "SUCCESS" if report.ok else "FAILED"
    lines = [
        f"retail_dp refresh {status}  run {report.run_id}",
        f"  as_of {report.as_of.isoformat(sep=' ')} UTC, took {report.seconds:.1f} s",
    ]
    if report.failure:
        lines.append(f"  failure: {report.failure}")
    if report.step_seconds:
        lines.append(
            "  steps: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(report.step_seconds.items()))
        )
    if report.loads:
        lines.append("\nLoads (only new or changed landing files are read):")
        lines += [
            f"  {s:<14} {m:<9} {f:>5} file(s) {r:>12,} rows read {k:>10,} rows changed  ({why})"
            for s, m, why, f, r, k in report.loads
        ]
    lines.append(f"\nAssets materialized: {len(report.materialized)}")
    lines += [f"  {a}" for a in report.materialized]
    lines.append("\nRows per table:")
    width = max((len(t) for t in report.table_rows), default=10)
    lines += [f"  {t:<{width}}  {n:>10,}" for t, n in report.table_rows.items()]
    total_q = sum(n for *_, n in report.quarantine)
    lines.append(f"\nRows quarantined: {total_q:,} (sources.quarantine)")
    lines += [f"  {s:<14} {r:<18} {f:<14} {n:>8,}" for s, r, f, n in report.quarantine]
    deferred = {s: n for s, n in report.deferred.items() if n}
    if deferred:
        lines.append(f"Rows deferred (dated after as_of, not loaded): {sum(deferred.values()):,}")
        lines += [f"  {s:<14} {n:>8,}" for s, n in deferred.items()]
    passed = sum(c.passed for c in report.checks)
    failed = [c for c in report.checks if not c.passed]
    lines.append(f"\nChecks: {passed} passed, {len(failed)} failed")
    lines += [f"  FAILED [{c.severity}] {c.asset} :: {c.check}" for c in failed]
    lines += [
        f"\nWarehouse: {report.warehouse}",
        f"Dagster instance: {report.dagster_home}",
        "Open the UI: make dev, then http://127.0.0.1:3000 (lineage, checks and this run)",
    ]
    return "\n".join(lines)


@dataclass
class CheckReport:
    run_id: str
    success: bool
    as_of: datetime
    seconds: float
    rows: list[CheckRow]
    failure: str | None = None

    @property
    def failed_error_checks(self) -> list[CheckRow]:
        return [r for r in self.rows if not r.passed and r.severity == "ERROR"]

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_error_checks


def select_checks(
    defs: dg.Definitions, select: list[str] | None, categories: list[str] | None
) -> list[dg.AssetCheckKey]:
    """Check keys matching `select` (an asset key, `asset:check` or a check name) and
    `categories` (SLO categories)."""
    graph = defs.resolve_asset_graph()
    keys = sorted(graph.asset_check_keys, key=lambda k: k.to_user_string())
    if select:
        wanted = []
        for key in keys:
            asset, full = key.asset_key.to_user_string(), key.to_user_string()
            if any(s in (asset, full, key.name) for s in select):
                wanted.append(key)
        unknown = [
            s
            for s in select
            if not any(
                s in (k.asset_key.to_user_string(), k.to_user_string(), k.name) for k in keys
            )
        ]
        if unknown:
            raise SelectionError(f"--select {unknown[0]!r} matches no asset or check")
        keys = wanted
    if categories:
        keys = [
            k
            for k in keys
            if category_of(k.name, dict(graph.get_check_spec(k).metadata or {})) in categories
        ]
    if not keys:
        raise SelectionError("the selection matches no check")
    return keys


def run_checks(
    settings: Settings,
    as_of: datetime | None = None,
    instance: dg.DagsterInstance | None = None,
    select: list[str] | None = None,
    categories: list[str] | None = None,
) -> CheckReport:
    """Run asset checks against the warehouse as it stands: no asset is materialized. The
    evaluations are recorded in the instance, so the UI shows them beside the refresh runs'."""
    started = time.perf_counter()
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    # missing or held by another process: refuse before the checks' run starts
    probe_warehouse(settings.warehouse, create=False)
    defs = build_definitions(settings)
    keys = select_checks(defs, select, categories)
    job = dg.define_asset_job(AD_HOC_CHECK_JOB, selection=dg.AssetSelection.checks(*keys))
    defs = build_definitions(settings, extra_jobs=[job])
    instance = instance or instance_for(settings.dagster_home)
    result = defs.resolve_job_def(AD_HOC_CHECK_JOB).execute_in_process(
        instance=instance,
        run_config=_run_config(as_of, log_level="CRITICAL"),
        raise_on_error=False,
        tags={"retail_dp/as_of": as_of.isoformat(sep=" "), "retail_dp/trigger": "check"},
    )
    rows = sorted(
        (row_of(e) for e in result.get_asset_check_evaluations()),
        key=lambda r: (r.asset, r.check),
    )
    return CheckReport(
        run_id=result.run_id,
        success=result.success,
        as_of=as_of,
        seconds=time.perf_counter() - started,
        rows=rows,
        failure=_failure(result, ignore_failed_checks=True),
    )


def format_check_report(report: CheckReport) -> str:
    failed = [r for r in report.rows if not r.passed]
    lines = [
        format_table(report.rows),
        "",
        f"{len(report.rows)} checks: {len(report.rows) - len(failed)} passed, "
        f"{len(report.failed_error_checks)} failed (ERROR), "
        f"{len(failed) - len(report.failed_error_checks)} warnings; as_of "
        f"{report.as_of.isoformat(sep=' ')} UTC; {report.seconds:.1f} s; run {report.run_id}",
    ]
    for r in report.failed_error_checks:
        lines.append(
            f"FAILED {r.asset}:{r.check} [{r.category}] measured {r.measured}, "
            f"target {r.target}" + (f" - {r.detail}" if r.detail else "")
        )
    if report.failure:
        lines.append(f"error: {report.failure}")
    return "\n".join(lines)


def slo_report(settings: Settings, runs: int, instance: dg.DagsterInstance | None = None) -> str:
    from retail_dp.descriptors import Catalog
    from retail_dp.quality.report import format_attainment, slo_attainment

    defs = build_definitions(settings)
    keys = list(defs.resolve_asset_graph().asset_check_keys)
    consumer = Catalog.load(settings.descriptors_dir).consumer
    rows = slo_attainment(instance or instance_for(settings.dagster_home), keys, consumer, runs)
    return format_attainment(rows, runs)

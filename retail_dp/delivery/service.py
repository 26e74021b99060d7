"""The service layer under REST and GraphQL: policies enforced, queries compiled by MetricFlow
and run on the published snapshot, PII masked, every request audited."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from retail_dp.analytics.backtest_reports import default_warehouse, latest_report, reports_dir
from retail_dp.delivery.audit import AuditLog
from retail_dp.delivery.limits import ServiceLimits
from retail_dp.delivery.policies import Caller, Forbidden, Policies, RowFilter, mask
from retail_dp.delivery.query import DEFAULT_LIMIT, LoadQuery, Plan, filter_sql, plan_query
from retail_dp.delivery.semantic import (
    GRANULARITIES,
    CannotCombine,
    Dimension,
    Measure,
    SemanticError,
    SemanticModel,
    Table,
)
from retail_dp.delivery.snapshots import NoSnapshot, Snapshot, SnapshotReader, published_dir
from retail_dp.descriptors import Catalog, LandingInput
from retail_dp.settings import Settings

logger = logging.getLogger(__name__)


class QueryTimeout(Exception):
    """A query past its deadline, interrupted in DuckDB (HTTP 504)."""


class ServiceBusy(Exception):
    """The service cannot take this query now, e.g. short of memory (HTTP 503)."""


def audit_log_path(settings: Settings) -> Path:
    """$RETAIL_DP_AUDIT_LOG, else `published/audit/access.jsonl` beside the warehouse."""
    env = os.environ.get("RETAIL_DP_AUDIT_LOG")
    return Path(env) if env else published_dir(settings.warehouse) / "audit" / "access.jsonl"


@dataclass
class LoadResult:
    data: list[dict[str, Any]]
    annotation: dict[str, dict[str, dict]]
    masked: dict[str, str]
    snapshot: dict[str, str]
    sql_ms: float
    rows: int


@dataclass(frozen=True)
class Prepared:
    """A query ready to run: SQL with its bound parameters, where each member's value sits
    in the output, and which members to mask."""

    sql: str
    params: dict[str, Any]
    outputs: list[tuple[str, str]]  # (output column, API member)
    masking: dict[str, str]
    plan: Plan


def _salt(path: Path) -> bytes:
    """The masking salt: RETAIL_DP_MASKING_SALT, else one generated once per installation
    (written whole to a temp file, then linked into place, so no reader sees it half-made)."""
    env = os.environ.get("RETAIL_DP_MASKING_SALT")
    if env:
        return env.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
        try:
            os.link(tmp, path)  # fails if another process got there first: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    salt = path.read_text().strip()
    if not salt:
        raise ValueError(f"{path}: the masking salt is empty")
    return salt.encode()


def _rows(cur: duckdb.DuckDBPyConnection, sql: str, params=None) -> list[dict]:
    cur.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [{n: _json_value(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _json_value(value):
    """JSON-ready: decimals and doubles rounded to 6 places (cents and probabilities survive,
    binary noise such as 29410.070000000032 does not), dates and times in ISO 8601."""
    if isinstance(value, Decimal | float):
        return round(float(value), 6)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# what the public catalogue leaves out of a descriptor: webhook URLs (they carry tokens) and
# the landing contracts (internal rules of the source systems)
PRIVATE_SECTIONS = {"alerts", "contract"}
# what it shows of a check: its result, not its free-text detail (which may quote data)
PUBLIC_CHECK_FIELDS = ("asset", "check", "category", "measured", "target", "severity",
                       "status", "evaluated_at", "history")  # fmt: skip


class DeliveryService:
    def __init__(
        self,
        settings: Settings,
        policies_path: Path | None = None,
        demo: bool = False,
        limits: ServiceLimits | None = None,
    ):
        self.settings = settings
        self.limits = limits or ServiceLimits()
        self.catalog = Catalog.load(settings.descriptors_dir)
        self.model = SemanticModel.load(settings.dbt_project_dir / "target")
        self.policies = Policies.load(policies_path or settings.policies, demo=demo)
        self.policies.check_members(self.model)
        target = published_dir(settings.warehouse)
        self.reader = SnapshotReader(
            target, self.model.database, self.limits.memory_limit, self.limits.duckdb_threads
        )
        self.audit = AuditLog(
            audit_log_path(settings), self.limits.audit_max_bytes, self.limits.audit_backups
        )
        self.salt = _salt(target / "masking.salt")
        # where `retail-dp backtest` writes by default (beside the product's warehouse)
        self.backtest_reports = reports_dir(default_warehouse(settings.warehouse))
        self._levels: tuple[float, list[dict]] | None = None
        self._levels_lock = threading.Lock()

    # -- meta ----------------------------------------------------------------------------

    def meta(self, caller: Caller) -> dict:
        """The semantic model as this caller may see it."""

        def visible(item) -> bool:
            return bool(self.policies.grants(caller, item.member))

        tables = []
        for table in self.model.tables.values():
            described = self._describe_table(
                table,
                dims=[d for d in table.dimensions if visible(d)],
                measures=[m for m in table.measures if visible(m)],
                segments=[
                    s
                    for s in table.segments
                    if visible(s) and self._may_filter(caller, s.filter["member"])
                ],
                masking=lambda d: self.policies.masking(caller, d),
            )
            if described["dimensions"] or described["measures"] or described["segments"]:
                described["rowsAvailable"] = self._rows_available(caller, described["dimensions"])
                tables.append(described)
        return {
            "caller": {"name": caller.name, "groups": list(caller.groups)},
            "tables": tables,
            "rowFilter": self._row_filter_text(caller),
        }

    def definitions(self) -> dict:
        """The whole semantic model and the access groups, without data and without any
        caller: what the hub shows before anyone signs in. Masking is the model's default."""
        tables = [
            self._describe_table(
                t, t.dimensions, t.measures, t.segments, masking=lambda d: d.masking
            )
            for t in self.model.tables.values()
        ]
        groups = [
            {
                "name": name,
                "description": group.description,
                "members": group.members,
                "exclude": group.exclude,
                "masking": group.masking,
                "row_filter": str(group.row_filter) if group.row_filter else None,
            }
            for name, group in self.policies.file.groups.items()
        ]
        return {"data_product": self.catalog.consumer.name, "tables": tables, "groups": groups}

    def _describe_table(self, table: Table, dims, measures, segments, masking) -> dict:
        return {
            "name": table.name,
            "title": table.label,
            "description": table.description,
            "dimensions": [self._describe_dim(d, masking(d)) for d in dims],
            "measures": [self._describe_measure(m) for m in measures],
            "segments": [
                {"name": s.member, "title": s.name, "description": s.description} for s in segments
            ],
        }

    def _rows_available(self, caller: Caller, dims: list[dict]) -> bool:
        """Whether the caller can list this table's dimension values at all: false when their
        row policy cannot be applied to it (compiled, not run)."""
        plain = [d["name"] for d in dims if d["type"] != "time"]
        if not plain:
            return False
        try:
            self._compile(caller, plan_query(self.model, LoadQuery(dimensions=plain[:1])))
        except (SemanticError, Forbidden):
            return False
        return True

    @staticmethod
    def _describe_dim(d: Dimension, masking: str | None) -> dict:
        described = {
            "name": d.member,
            "title": d.label,
            "description": d.description,
            "type": "time" if d.type == "time" else "string",
            "pii": d.pii,
            "masking": masking,
        }
        if d.type == "time":
            described["granularities"] = list(GRANULARITIES)
        return described

    @staticmethod
    def _describe_measure(m: Measure) -> dict:
        return {
            "name": m.member,
            "title": m.label,
            "description": m.description,
            "type": "number",
            "unit": m.unit,
            "kind": m.kind,
        }

    def _row_filter_text(self, caller: Caller) -> str | None:
        filters = self.policies.row_filters(caller)
        if filters is None:
            return None
        return " OR ".join(str(f) for f in filters) or "no rows"

    # -- load ----------------------------------------------------------------------------

    def prepare(self, caller: Caller, query: LoadQuery) -> Prepared:
        """Everything but running it: grants checked, masked members kept out of filters and
        ordering, the caller's rows applied, compiled by MetricFlow, wrapped with a total
        order and the page. (The delivery benchmark runs this same SQL on DuckDB directly.)"""
        self.limits.query.check(query)
        plan = plan_query(self.model, query)
        for member in plan.members:
            self.policies.require(caller, member)
        masking = {
            member: how
            for member, dim in plan.dimensions.items()
            if (how := self.policies.masking(caller, dim)) != "none"
        }
        for member in plan.filtered:  # filters, date ranges and segments alike
            self._refuse_masked(caller, member, "filter on")
        for member in query.order:
            if member in masking:
                raise SemanticError(f"cannot order by {member!r}: it is masked for your group")
        compiled = self._compile(caller, plan)
        # a total order, so pages never overlap: what was asked, then the unmasked dimensions,
        # the measures, and masked dimensions by a salted hash (their raw order would leak)
        order = list(plan.order)
        order += [(mf, "asc") for mf, m in plan.group_by if m not in masking]
        order += [(mf, "asc") for mf in plan.measures]
        terms = [f'"{col}" {d.upper()} NULLS LAST' for col, d in order]
        hidden = [mf for mf, m in plan.group_by if m in masking]
        terms += [f'md5($salt || CAST("{mf}" AS VARCHAR)) NULLS LAST' for mf in hidden]
        params = dict(plan.params)
        if hidden:
            params["salt"] = self.salt.decode()
        sql = (
            f"SELECT * FROM (\n{compiled}\n) AS q"
            + (f" ORDER BY {', '.join(dict.fromkeys(terms))}" if terms else "")
            + f" LIMIT {int(query.limit or DEFAULT_LIMIT)} OFFSET {int(query.offset)}"
        )
        # output columns, in the order asked: dimensions, time dimensions, then measures
        outputs = list(plan.group_by)
        outputs += [(self.model.measure(m).name, m) for m in query.measures]
        return Prepared(sql, params, outputs, masking, plan)

    def load(self, caller: Caller, query: LoadQuery) -> LoadResult:
        prepared = self.prepare(caller, query)
        snapshot = self.reader.current()
        started = time.perf_counter()
        rows, names = self._execute(snapshot, prepared)
        sql_ms = (time.perf_counter() - started) * 1000
        columns = [(names.index(mf), member) for mf, member in prepared.outputs]
        masking = prepared.masking
        data = []
        for row in rows:
            record = {}
            for i, member in columns:
                how = masking.get(member)
                record[member] = mask(row[i], how, self.salt) if how else _json_value(row[i])
            data.append(record)
        return LoadResult(
            data=data,
            annotation=self._annotation(query, prepared.plan),
            masked=masking,
            snapshot=self._snapshot_ref(snapshot),
            sql_ms=round(sql_ms, 2),
            rows=len(data),
        )

    def _execute(self, snapshot: Snapshot, prepared: Prepared) -> tuple[list, list[str]]:
        """Run the SQL on its own cursor, interrupted at the deadline. DuckDB's messages stay
        in the server's log; the caller gets what went wrong in the API's terms."""
        cur = snapshot.cursor()
        deadline = threading.Timer(self.limits.query_timeout_s, cur.interrupt)
        deadline.start()
        try:
            rows = cur.execute(prepared.sql, prepared.params or None).fetchall()
            return rows, [d[0] for d in cur.description]
        except duckdb.InterruptException:
            raise QueryTimeout(
                f"the query ran past the {self.limits.query_timeout_s:g} s deadline and was "
                "stopped; narrow it (fewer members, filters or rows)"
            ) from None
        except duckdb.OutOfMemoryException:
            raise ServiceBusy(
                "the query needs more memory than the service has free; narrow it or retry"
            ) from None
        except (
            duckdb.ConversionException,
            duckdb.InvalidInputException,
            duckdb.OutOfRangeException,
        ) as exc:
            logger.info("query refused by DuckDB: %s", exc)
            raise SemanticError(
                "a filter value does not fit its member (a number, date or text as the "
                "member's type requires)"
            ) from None
        except duckdb.BinderException as exc:
            logger.info("query refused by DuckDB: %s", exc)
            raise SemanticError("cannot answer this combination of members and filters") from None
        except duckdb.CatalogException as exc:  # a snapshot older than the semantic model
            logger.error("the snapshot lacks a table: %s", exc)
            raise NoSnapshot("the published snapshot lacks a table the model needs") from None
        finally:
            deadline.cancel()
            cur.close()

    def _compile(self, caller: Caller, plan: Plan) -> str:
        """Compile the plan within the caller's rows; a query the model answers, but not
        within those rows, is refused (403) rather than widened."""
        unrestricted = list(plan.where)
        restricted = self._apply_row_policy(caller, plan)
        group_by = [mf for mf, _ in plan.group_by]
        try:
            try:
                return self.model.compile(plan.measures, group_by, plan.where)
            except CannotCombine:
                if restricted:
                    self.model.compile(plan.measures, group_by, unrestricted)
                    raise Forbidden(
                        f"your group's row policy ({self._row_filter_text(caller)}) cannot be "
                        "applied to this query's members"
                    ) from None
                raise
        except CannotCombine:
            asked = ", ".join(dict.fromkeys(plan.members))
            raise SemanticError(
                f"the semantic model has no way to answer these members together: {asked}"
            ) from None

    def _may_filter(self, caller: Caller, member: str) -> bool:
        dim = self.model.dimension(member)
        granted = bool(self.policies.grants(caller, member))
        return granted and self.policies.masking(caller, dim) == "none"

    def _refuse_masked(self, caller: Caller, member: str, what: str) -> None:
        dim = self.model.dimension(member)
        if self.policies.masking(caller, dim) != "none":
            raise SemanticError(f"cannot {what} {member!r}: it is masked for your group")

    def _apply_row_policy(self, caller: Caller, plan: Plan) -> bool:
        """Add the row filters that govern the query's members; False when every member is
        unrestricted. Each member brings the rows its granting groups allow (any of them);
        the query sees the rows every member allows."""
        clauses = []
        for member in dict.fromkeys(plan.members):
            filters: list[RowFilter] | None = self.policies.row_filters(caller, member)
            if filters is None:
                continue
            if not filters:
                raise Forbidden(f"caller {caller.name!r} may see no rows of {member!r}")
            key = tuple(sorted(f.model_dump_json() for f in filters))
            clauses.append((key, filters))
        for filters in dict(clauses).values():  # one clause per distinct policy
            parts = [
                filter_sql(plan, self.model.dimension(f.member), f.operator, list(f.values))
                for f in filters
            ]
            plan.where.append("(" + " OR ".join(parts) + ")")
        return bool(clauses)

    def _annotation(self, query: LoadQuery, plan: Plan) -> dict:
        measures = {m: self._describe_measure(self.model.measure(m)) for m in query.measures}
        dims, times = {}, {}
        for member, dim in plan.dimensions.items():
            entry = {"title": dim.label, "description": dim.description, "pii": dim.pii}
            if dim.type == "time":
                times[member] = {**entry, "type": "time"}
            else:
                dims[member] = {**entry, "type": "string"}
        return {"measures": measures, "dimensions": dims, "timeDimensions": times}

    @staticmethod
    def _snapshot_ref(snapshot: Snapshot) -> dict[str, str]:
        info = snapshot.info
        return {
            "id": info.snapshot_id,
            "as_of": info.as_of,
            "published_at": info.published_at,
            "run_id": info.run_id,
        }

    # -- data products -------------------------------------------------------------------

    def data_products(self) -> list[dict]:
        snapshot = self._current_or_none()
        return [self._product(p, snapshot) for p in self.catalog.products.values()]

    def data_product(self, name: str) -> dict:
        if name not in self.catalog.products:
            raise KeyError(name)
        return self._product(self.catalog.products[name], self._current_or_none())

    def _current_or_none(self) -> Snapshot | None:
        """The catalogue answers before anything is published, with no status."""
        try:
            return self.reader.current()
        except NoSnapshot:
            return None

    def _product(self, product, snapshot: Snapshot | None) -> dict:
        """The public catalogue entry (no sign-in): the descriptor without its private
        sections (PRIVATE_SECTIONS: alert webhooks, landing contracts), and the status as
        aggregates: when it was refreshed, check results and incidents without their
        free-text details. No row counts, no data values, no secrets."""
        described = json.loads(product.model_dump_json(exclude_none=True, exclude=PRIVATE_SECTIONS))
        own_assets = self._assets_of(product, snapshot.info.checks if snapshot else [])
        checks = []
        if snapshot is not None:
            checks = [
                {k: v for k, v in c.items() if k in PUBLIC_CHECK_FIELDS}
                for c in snapshot.info.checks
                if c["asset"] in own_assets
            ]
        by_category: dict[str, dict] = {}
        for c in checks:
            entry = by_category.setdefault(c["category"], {"passed": 0, "failed": 0, "warned": 0})
            key = {"PASSED": "passed", "FAILED": "failed"}.get(c["status"], "warned")
            entry[key] += 1
        inputs = []
        for item in product.inputs:
            if isinstance(item, LandingInput):
                inputs.append({"kind": "landing", "location": item.location})
            else:
                inputs.append({"kind": "data_product", "name": item.data_product})
        refresh = None
        if snapshot is not None:
            info = snapshot.info
            refresh = {"snapshot_id": info.snapshot_id, "run_id": info.run_id,
                       "as_of": info.as_of, "published_at": info.published_at}  # fmt: skip
        described["status"] = {"last_refresh": refresh, "slo": by_category, "checks": checks}
        if snapshot is not None:
            described["status"].update(self._monitoring(product, snapshot))
        described["lineage"] = {
            "inputs": inputs,
            "outputs": [o.table for o in product.outputs],
            "assets": sorted(own_assets),
        }
        return described

    def _monitoring(self, product, snapshot: Snapshot) -> dict:
        """Open incidents and, for the consumer-aligned product, SLO attainment over recent
        runs and the cross-sell model's backtest, from the snapshot."""
        cur = snapshot.cursor()
        try:
            found = {"open_incidents": _rows(cur, (
                "SELECT opened_at, last_seen_at, occurrences, asset, check_name, slo_category, "
                "severity, measured, target, comparison FROM monitor.incidents "
                "WHERE status = 'open' AND data_product = ? ORDER BY last_seen_at DESC"
            ), [product.name])}  # fmt: skip
            if product.name == self.catalog.consumer.name:
                found["slo_attainment"] = _rows(
                    cur, "SELECT category, runs, evaluations, passed, share, objective, met "
                    "FROM monitor.slo_attainment"
                )  # fmt: skip
                found["model_quality"] = dict(cur.execute(
                    "SELECT name, value FROM marts.cross_sell_model WHERE kind = 'backtest'"
                ).fetchall())  # fmt: skip
                found["service_levels"] = self.service_levels()
            return found
        except duckdb.CatalogException:  # an older snapshot without the monitor tables
            return {"open_incidents": []}
        finally:
            cur.close()

    def latest_backtest(self) -> dict:
        """The report `retail-dp backtest` wrote most recently (by its creation time), read
        from disk on every call, so a new report shows at the next request: never cached, never
        the one published with the last run."""
        found = latest_report(self.backtest_reports)
        if found is None:
            return {"report": None, "name": None,
                    "detail": "no backtest report yet: run retail-dp backtest"}  # fmt: skip
        report, name = found
        return {"report": report, "name": name, "detail": None}

    def service_levels(self, max_age_s: float = 60.0) -> list[dict]:
        """The delivery service's architecture and governance SLOs, from its audit log;
        recomputed at most once a minute (the log may be large)."""
        from retail_dp.delivery.slos import as_rows, service_levels

        with self._levels_lock:
            if self._levels is None or time.monotonic() - self._levels[0] > max_age_s:
                levels = service_levels(
                    self.catalog.consumer, self.audit.entries(), self.model, self.policies
                )
                self._levels = (time.monotonic(), as_rows(levels))
            return self._levels[1]

    def _assets_of(self, product, checks: list[dict]) -> set[str]:
        if product.name == self.catalog.consumer.name:
            return {c["asset"] for c in checks if c["asset"] not in self.catalog.products}
        return {product.name}

    def now(self) -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds")

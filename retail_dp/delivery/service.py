"""The service layer under REST and GraphQL: policies enforced, queries compiled by MetricFlow
and run on the published snapshot, PII masked, every request audited."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from retail_dp.delivery.policies import Caller, Forbidden, Policies, RowFilter, mask
from retail_dp.delivery.query import DEFAULT_LIMIT, LoadQuery, Plan, filter_sql, plan_query
from retail_dp.delivery.semantic import Dimension, Measure, SemanticError, SemanticModel
from retail_dp.delivery.snapshots import Snapshot, SnapshotReader, published_dir
from retail_dp.descriptors import Catalog, LandingInput
from retail_dp.settings import Settings


@dataclass
class LoadResult:
    data: list[dict[str, Any]]
    annotation: dict[str, dict[str, dict]]
    masked: dict[str, str]
    snapshot: dict[str, str]
    sql_ms: float
    rows: int


class AuditLog:
    """Append-only JSON Lines: one record per request, whatever its outcome."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, entry: dict) -> None:
        line = json.dumps(entry, default=str, separators=(",", ":"))
        with self._lock, open(self.path, "a") as f:
            f.write(line + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def _salt(path: Path) -> bytes:
    """The masking salt: RETAIL_DP_MASKING_SALT, else one generated once per installation."""
    env = os.environ.get("RETAIL_DP_MASKING_SALT")
    if env:
        return env.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
    return path.read_text().strip().encode()


def _json_value(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class DeliveryService:
    def __init__(self, settings: Settings, policies_path: Path | None = None):
        self.settings = settings
        self.catalog = Catalog.load(settings.descriptors_dir)
        self.model = SemanticModel.load(settings.dbt_project_dir / "target")
        self.policies = Policies.load(policies_path or settings.policies)
        self.policies.check_members(self.model)
        target = published_dir(settings.warehouse)
        self.reader = SnapshotReader(target, self.model.database)
        self.audit = AuditLog(
            Path(os.environ.get("RETAIL_DP_AUDIT_LOG", target / "audit" / "access.jsonl"))
        )
        self.salt = _salt(target / "masking.salt")

    # -- meta ----------------------------------------------------------------------------

    def meta(self, caller: Caller) -> dict:
        """The semantic model as this caller may see it."""
        tables = []
        for table in self.model.tables.values():

            def visible(item):
                return bool(self.policies.grants(caller, item.member))

            dims = [self._describe_dim(caller, d) for d in table.dimensions if visible(d)]
            measures = [self._describe_measure(m) for m in table.measures if visible(m)]
            segments = [
                {"name": s.member, "title": s.name, "description": s.description}
                for s in table.segments
                if visible(s)
            ]
            if dims or measures or segments:
                tables.append(
                    {
                        "name": table.name,
                        "title": table.label,
                        "description": table.description,
                        "dimensions": dims,
                        "measures": measures,
                        "segments": segments,
                    }
                )
        return {
            "caller": {"name": caller.name, "groups": list(caller.groups)},
            "tables": tables,
            "rowFilter": self._row_filter_text(caller),
        }

    def _describe_dim(self, caller: Caller, d: Dimension) -> dict:
        described = {
            "name": d.member,
            "title": d.label,
            "description": d.description,
            "type": "time" if d.type == "time" else "string",
            "pii": d.pii,
            "masking": self.policies.masking(caller, d),
        }
        if d.type == "time":
            described["granularities"] = ["day", "week", "month", "quarter", "year"]
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
        return " OR ".join(f"{f.member} {f.operator} {f.values}" for f in filters) or "no rows"

    # -- load ----------------------------------------------------------------------------

    def load(self, caller: Caller, query: LoadQuery) -> LoadResult:
        plan = plan_query(self.model, query)
        for member in plan.members:
            self.policies.require(caller, member)
        masking = {
            member: how
            for member, dim in plan.dimensions.items()
            if (how := self.policies.masking(caller, dim)) != "none"
        }
        for f in query.filters:
            self._refuse_masked(caller, f.member, "filter on")
        for member in query.order:
            base = member if member in plan.dimensions else None
            if base and base in masking:
                raise SemanticError(f"cannot order by {member!r}: it is masked for your group")
        for td in query.timeDimensions:
            if td.dateRange:
                self._refuse_masked(caller, td.dimension, "filter on")
        unrestricted = list(plan.where)
        restricted = self._apply_row_policy(caller, plan)
        try:
            compiled = self.model.compile(plan.measures, plan.group_by, plan.where, [], None)
        except SemanticError:
            if restricted:  # answerable, but not within the caller's rows: refuse, don't widen
                self.model.compile(plan.measures, plan.group_by, unrestricted, [], None)
                raise Forbidden(
                    f"your group's row policy ({self._row_filter_text(caller)}) cannot be "
                    "applied to this query's members"
                ) from None
            raise
        limit = query.limit or DEFAULT_LIMIT
        # default order: the unmasked dimensions (ordering by a masked one would leak it)
        order = plan.order or [(mf, "asc") for mf, m in plan.group_by if m not in masking]
        order_sql = ", ".join(f'"{col}" {d.upper()} NULLS LAST' for col, d in order)
        sql = (
            f"SELECT * FROM (\n{compiled.sql}\n) AS q"
            + (f" ORDER BY {order_sql}" if order_sql else "")
            + f" LIMIT {int(limit)} OFFSET {int(query.offset)}"
        )
        snapshot = self.reader.current()
        started = time.perf_counter()
        cur = snapshot.cursor()
        try:
            rows = cur.execute(sql, plan.params or None).fetchall()
            names = [d[0] for d in cur.description]
        except duckdb.ConversionException as exc:
            raise SemanticError(f"a filter value does not fit its member: {exc}") from exc
        except duckdb.BinderException as exc:
            raise SemanticError(f"cannot answer this query: {str(exc).splitlines()[0]}") from exc
        finally:
            cur.close()
        sql_ms = (time.perf_counter() - started) * 1000
        member_of = dict(compiled.columns)
        members = [member_of.get(n, n) for n in names]
        measures_by_mf = {self.model.measure(m).name: m for m in query.measures}
        members = [measures_by_mf.get(m, m) for m in members]
        data = []
        for row in rows:
            record = {}
            for member, value in zip(members, row, strict=True):
                how = masking.get(member)
                record[member] = mask(value, how, self.salt) if how else _json_value(value)
            data.append(record)
        return LoadResult(
            data=data,
            annotation=self._annotation(query, plan),
            masked=masking,
            snapshot=self._snapshot_ref(snapshot),
            sql_ms=round(sql_ms, 2),
            rows=len(data),
        )

    def _refuse_masked(self, caller: Caller, member: str, what: str) -> None:
        dim = self.model.dimension(member)
        if self.policies.masking(caller, dim) != "none":
            raise SemanticError(f"cannot {what} {member!r}: it is masked for your group")

    def _apply_row_policy(self, caller: Caller, plan: Plan) -> bool:
        """Add the caller's row filters to the query; False when every row is allowed."""
        filters: list[RowFilter] | None = self.policies.row_filters(caller)
        if filters is None:
            return False
        if not filters:
            raise Forbidden(f"caller {caller.name!r} may see no rows")
        clauses = [
            filter_sql(plan, self.model.dimension(f.member), f.operator, list(f.values))
            for f in filters
        ]
        plan.where.append("(" + " OR ".join(clauses) + ")")
        return True

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
        try:
            snapshot = self.reader.current()
        except Exception:  # nothing published: the catalogue still answers
            snapshot = None
        return [self._product(p, snapshot) for p in self.catalog.products.values()]

    def data_product(self, name: str) -> dict:
        if name not in self.catalog.products:
            raise KeyError(name)
        try:
            snapshot = self.reader.current()
        except Exception:
            snapshot = None
        return self._product(self.catalog.products[name], snapshot)

    def _product(self, product, snapshot: Snapshot | None) -> dict:
        described = json.loads(product.model_dump_json(exclude_none=True))
        own_assets = self._assets_of(product)
        checks = []
        if snapshot is not None:
            checks = [c for c in snapshot.info.checks if c["asset"] in own_assets]
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
            refresh = {k: v for k, v in asdict(snapshot.info).items() if k != "checks"}
        described["status"] = {"last_refresh": refresh, "slo": by_category, "checks": checks}
        described["lineage"] = {
            "inputs": inputs,
            "outputs": [o.table for o in product.outputs],
            "assets": sorted(own_assets),
        }
        return described

    def _assets_of(self, product) -> set[str]:
        if product.name == self.catalog.consumer.name:
            return {
                c["asset"]
                for c in (self._checks_or_empty())
                if c["asset"] not in self.catalog.products
            }
        return {product.name}

    def _checks_or_empty(self) -> list[dict]:
        try:
            return self.reader.current().info.checks
        except Exception:
            return []

    def now(self) -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds")

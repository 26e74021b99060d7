"""The semantic model as the delivery service sees it: MetricFlow's compiled manifest, named in
the API's members (`table.member`), with the PII classification from the dbt models' column
meta. Every query is compiled to SQL by MetricFlow; values are never part of the SQL text.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metricflow.engine.metricflow_engine import MetricFlowEngine, MetricFlowQueryRequest
from metricflow.protocols.sql_client import SqlEngine
from metricflow.sql.render.duckdb_renderer import DuckDbSqlPlanRenderer
from metricflow_semantics.model.dbt_manifest_parser import (
    parse_manifest_from_dbt_generated_manifest,
)
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup

logger = logging.getLogger(__name__)

GRANULARITIES = ("day", "week", "month", "quarter", "year")
COMPILE_CACHE = 512  # compiled query shapes kept
COMPILERS = 3  # MetricFlow engines: new shapes compile side by side, never behind one lock


class SemanticError(ValueError):
    """A query the semantic model cannot answer; the message says why (HTTP 400)."""


class CannotCombine(SemanticError):
    """MetricFlow found no way to answer the members together. The message is ours; the
    engine's own text (its internal names) stays in `detail`, for the server's log only."""

    def __init__(self, detail: str):
        super().__init__("the semantic model cannot answer these members together")
        self.detail = detail


class _Named:
    """A member of a logical table, named `table.member` in the API."""

    table: str
    name: str

    @property
    def member(self) -> str:
        return f"{self.table}.{self.name}"


@dataclass(frozen=True)
class Dimension(_Named):
    table: str
    name: str
    label: str
    description: str
    type: str  # categorical | time
    entity: str  # MetricFlow entity path
    pii: bool = False
    masking: str | None = None  # redact | hash | partial

    def mf_name(self, granularity: str | None = None) -> str:
        base = f"{self.entity}__{self.name}"
        return f"{base}__{granularity}" if granularity else base


@dataclass(frozen=True)
class Measure(_Named):
    table: str
    name: str  # the MetricFlow metric
    label: str
    description: str
    unit: str | None
    kind: str  # simple | ratio | ...


@dataclass(frozen=True)
class Segment(_Named):
    table: str
    name: str
    description: str
    filter: dict


@dataclass(frozen=True)
class Table:
    name: str
    label: str
    description: str
    dimensions: tuple[Dimension, ...]
    measures: tuple[Measure, ...]
    segments: tuple[Segment, ...]


class _CompileOnly:
    """MetricFlow's SqlClient protocol for compiling: DuckDB's dialect, no execution (the
    service runs the SQL itself on the published snapshot, with bound parameters)."""

    sql_engine_type = SqlEngine.DUCKDB
    sql_plan_renderer = DuckDbSqlPlanRenderer()

    def query(self, stmt, sql_bind_parameter_set=None):
        raise NotImplementedError("compile only")

    execute = dry_run = query

    def close(self) -> None:
        pass

    def render_bind_parameter_key(self, bind_parameter_key: str) -> str:
        return f"${bind_parameter_key}"


class _Compilers:
    """A few MetricFlow engines, each used by one thread at a time (the engine is not
    documented as thread-safe): a slow compile holds one engine, not every caller."""

    def __init__(self, make: Callable[[], MetricFlowEngine], size: int):
        self._make = make
        self._idle: queue.LifoQueue[MetricFlowEngine] = queue.LifoQueue()
        self._made = 0
        self._size = size
        self._lock = threading.Lock()

    def explain(self, request: MetricFlowQueryRequest) -> str:
        engine = self._take()
        try:
            return engine.explain(request).sql_statement.sql
        finally:
            self._idle.put(engine)

    def _take(self) -> MetricFlowEngine:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._made < self._size
            self._made += grow
        return self._make() if grow else self._idle.get()


@dataclass
class SemanticModel:
    tables: dict[str, Table]
    database: str  # the catalog MetricFlow's SQL names; the snapshot is attached under it
    compilers: _Compilers = field(repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, target_dir: Path) -> SemanticModel:
        """From dbt's target/ (semantic_manifest.json and manifest.json, written by dbt parse)."""
        semantic_path = target_dir / "semantic_manifest.json"
        if not semantic_path.exists():
            raise FileNotFoundError(f"{semantic_path}: missing; run `retail-dp prepare`")
        raw = json.loads(semantic_path.read_text())
        columns_meta = _column_meta(json.loads((target_dir / "manifest.json").read_text()))
        metrics_by_table: dict[str, list[Measure]] = {}
        for metric in raw["metrics"]:
            meta = (metric.get("config") or {}).get("meta") or {}
            if "table" not in meta:
                raise ValueError(f"metric {metric['name']}: config.meta.table is required")
            metrics_by_table.setdefault(meta["table"], []).append(
                Measure(
                    table=meta["table"],
                    name=metric["name"],
                    label=metric.get("label") or metric["name"],
                    description=metric.get("description") or "",
                    unit=meta.get("unit"),
                    kind=metric["type"],
                )
            )
        tables = {}
        databases = set()
        for sm in raw["semantic_models"]:
            relation = sm["node_relation"]
            databases.add(relation["database"])
            primary = next(e["name"] for e in sm["entities"] if e["type"] == "primary")
            pii = columns_meta.get((relation["schema_name"], relation["alias"]), {})
            dims = []
            for d in sm["dimensions"]:
                meta = _classification(d.get("expr") or d["name"], pii)
                dims.append(
                    Dimension(
                        table=sm["name"],
                        name=d["name"],
                        label=d.get("label") or d["name"],
                        description=d.get("description") or "",
                        type=d["type"],
                        entity=primary,
                        pii=bool(meta.get("pii")),
                        masking=meta.get("masking") if meta.get("pii") else None,
                    )
                )
            segments = [
                Segment(sm["name"], s["name"], s.get("description", ""), s["filter"])
                for s in ((sm.get("config") or {}).get("meta") or {}).get("segments", [])
            ]
            tables[sm["name"]] = Table(
                name=sm["name"],
                label=sm.get("label") or sm["name"],
                description=sm.get("description") or "",
                dimensions=tuple(dims),
                measures=tuple(metrics_by_table.pop(sm["name"], [])),
                segments=tuple(segments),
            )
        if metrics_by_table:
            raise ValueError(f"metrics name unknown tables: {sorted(metrics_by_table)}")
        if len(databases) != 1:
            raise ValueError(f"the semantic models span several databases: {sorted(databases)}")
        manifest = parse_manifest_from_dbt_generated_manifest(semantic_path.read_text())

        def engine() -> MetricFlowEngine:
            return MetricFlowEngine(SemanticManifestLookup(manifest), _CompileOnly())

        return cls(tables=tables, database=databases.pop(), compilers=_Compilers(engine, COMPILERS))

    # -- members -------------------------------------------------------------------------

    def member(self, name: str) -> Dimension | Measure | Segment:
        table, _, member = name.partition(".")
        found = self.tables.get(table)
        if found is not None:
            for item in (*found.dimensions, *found.measures, *found.segments):
                if item.name == member:
                    return item
        raise SemanticError(f"unknown member {name!r}; GET /v1/meta lists the members")

    def dimension(self, name: str) -> Dimension:
        item = self.member(name)
        if not isinstance(item, Dimension):
            raise SemanticError(f"{name!r} is not a dimension")
        return item

    def measure(self, name: str) -> Measure:
        item = self.member(name)
        if not isinstance(item, Measure):
            raise SemanticError(f"{name!r} is not a measure")
        return item

    def segment(self, name: str) -> Segment:
        item = self.member(name)
        if not isinstance(item, Segment):
            raise SemanticError(f"{name!r} is not a segment")
        return item

    def all_members(self) -> list[Dimension | Measure | Segment]:
        return [m for t in self.tables.values() for m in (*t.dimensions, *t.measures, *t.segments)]

    # -- compiling -----------------------------------------------------------------------

    def compile(self, measures: list[str], group_by: list[str], where: list[str]) -> str:
        """MetricFlow's SQL for the query's shape: metrics by MetricFlow group-by names, with
        MetricFlow filters whose values are `$pN` placeholders, so one shape compiles once
        whatever the values. Output columns are named after the metrics and group-bys.

        The lock guards only the cache; compiling runs outside it, on one of a few engines,
        and its cost is bounded by the query limits (`query.QueryLimits`)."""
        key = (tuple(measures), tuple(group_by), tuple(where))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        request = MetricFlowQueryRequest.create(
            metric_names=measures, group_by_names=group_by, where_constraints=where or None
        )
        try:
            sql = self.compilers.explain(request)
        except Exception as exc:  # MetricFlow's errors name its internals: keep them inside
            logger.info("MetricFlow cannot compile %s by %s: %s", measures, group_by, exc)
            raise CannotCombine(_first_line(exc)) from exc
        with self._lock:
            self._cache[key] = sql
            while len(self._cache) > COMPILE_CACHE:
                self._cache.popitem(last=False)
        return sql


def _classification(expr: str, columns: dict[str, dict]) -> dict:
    """A dimension's PII meta: its column's, or for an expression, that of any PII column it
    names (the heaviest masking), so `lower(email)` stays as private as `email`."""
    if expr in columns:
        return columns[expr]
    named = [columns[t] for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expr) if t in columns]
    private = [m for m in named if m.get("pii")]
    if not private:
        return {}
    order = ["partial", "hash", "redact"]
    heaviest = max(private, key=lambda m: order.index(m.get("masking", "redact")))
    return {"pii": True, "masking": heaviest.get("masking", "redact")}


def _first_line(exc: Exception) -> str:
    """MetricFlow's resolution errors, shortened to what and why (in MetricFlow's names:
    entity__dimension for table.dimension)."""
    text = str(exc)
    if "Message:" in text:
        message = text.split("Message:", 1)[1].split("Common issues", 1)[0]
        message = message.split("Suggestions:", 1)[0]
        said = " ".join(message.split())
        if "Query Input:" in text:
            given = text.split("Query Input:", 1)[1].split("Issue Location:", 1)[0]
            said += f" (asked: {' '.join(given.split())})"
        return said[:500]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:500] or type(exc).__name__


def _column_meta(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, dict]]:
    """(schema, alias) -> column -> meta, for every dbt model."""
    found = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        found[(node["schema"], node["alias"])] = {
            name: {**col.get("meta", {}), **(col.get("config") or {}).get("meta", {})}
            for name, col in node["columns"].items()
        }
    return found

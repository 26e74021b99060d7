"""A caller's SQL, read with sqlglot and never run as given.

A SELECT over the caller's relations (one per semantic table, only the members their groups
grant) becomes the `/v1/load` query it means: columns are dimensions and measures, an
aggregate of a measure column is the measure, DATE_TRUNC of a time column is a granularity,
WHERE is a conjunction of filters. DeliveryService then checks, masks, filters rows and runs
it, exactly as for REST. A SELECT over `pg_catalog` or `information_schema` only (schema
discovery) is checked here and answered from the caller's shadow catalog. Anything else is
refused with a message that says what is accepted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from retail_dp.delivery.query import MAX_LIMIT, LoadQuery
from retail_dp.delivery.semantic import GRANULARITIES, SemanticError

# sqlglot warns on SQL it parses as a bare command; we refuse those ourselves
logging.getLogger("sqlglot").setLevel(logging.ERROR)

SCHEMA = "public"  # where the caller's relations live (BI tools look there first)
CATALOG_SCHEMAS = {"pg_catalog", "information_schema"}
# pg_catalog relations a client may name without their schema
PG_CATALOG_TABLES = {
    "pg_am", "pg_attrdef", "pg_attribute", "pg_class", "pg_collation", "pg_constraint",
    "pg_database", "pg_depend", "pg_description", "pg_enum", "pg_index", "pg_indexes",
    "pg_inherits", "pg_matviews", "pg_namespace", "pg_proc", "pg_range", "pg_roles",
    "pg_sequence", "pg_sequences", "pg_settings", "pg_tables", "pg_tablespace", "pg_type",
    "pg_user", "pg_views",
}  # fmt: skip
# functions sqlglot does not know that catalog queries of BI tools use (all answered from
# the shadow catalog); any other unknown function is refused
CATALOG_FUNCTIONS = {
    "array_to_string", "col_description", "current_schemas", "format_type",
    "generate_series", "generate_subscripts", "has_database_privilege",
    "has_schema_privilege", "has_table_privilege", "obj_description", "pg_backend_pid",
    "pg_encoding_to_char", "pg_get_constraintdef", "pg_get_expr", "pg_get_indexdef",
    "pg_get_partkeydef", "pg_get_userbyid", "pg_get_viewdef", "pg_is_in_recovery",
    "pg_postmaster_start_time", "pg_relation_size", "pg_table_is_visible",
    "pg_total_relation_size", "pg_type_is_visible", "quote_ident", "shobj_description",
    "to_regclass", "to_regtype", "txid_current", "unnest", "version", "current_database",
    "current_user", "session_user", "current_role", "user", "json_build_object",
    "pg_get_serial_sequence", "pg_collation_is_visible",
}  # fmt: skip
# function names refused wherever they appear: files, settings, the engine's own catalog
FORBIDDEN_FUNCTIONS = re.compile(
    r"^(read_|pg_read|pg_ls|pg_stat_file|duckdb_|glob$|getenv$|current_setting$|sniff_|"
    r"parquet_|query$|query_table$|sql_auto_complete$|which_secret$|load_|install_|lo_)"
)
AGGREGATES = (exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Count, exp.AnyValue)
UNSUPPORTED = (exp.Subquery, exp.Window, exp.Lateral, exp.Union, exp.Intersect, exp.Except)


class Refused(SemanticError):
    """SQL the endpoint does not accept; `sqlstate` is the PostgreSQL error code to send."""

    def __init__(self, message: str, sqlstate: str = "0A000"):
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True)
class Column:
    name: str
    member: str  # table.member
    kind: str  # dimension | time | measure
    pg_type: str  # text | date | double precision


@dataclass(frozen=True)
class Relation:
    name: str
    description: str
    columns: dict[str, Column]


def relations_from_meta(meta: dict) -> dict[str, Relation]:
    """The caller's relations, from the semantic model as the caller may see it."""
    found = {}
    for table in meta["tables"]:
        columns = {}
        for d in table["dimensions"]:
            name = d["name"].split(".", 1)[1]
            time = d["type"] == "time"
            columns[name] = Column(name, d["name"], "time" if time else "dimension",
                                   "date" if time else "text")  # fmt: skip
        for m in table["measures"]:
            name = m["name"].split(".", 1)[1]
            columns[name] = Column(name, m["name"], "measure", "double precision")
        if columns:
            found[table["name"]] = Relation(table["name"], table["description"], columns)
    return found


@dataclass
class Output:
    name: str  # the output column
    key: str  # where its value sits in a load result's rows
    pg_type: str


@dataclass
class SemanticQuery:
    query: LoadQuery
    outputs: list[Output]


@dataclass
class CatalogQuery:
    tree: exp.Expression


@dataclass
class _Select:
    relations: dict[str, Relation]  # alias -> relation
    measures: list[str] = field(default_factory=list)
    dimensions: list[str] = field(default_factory=list)
    times: dict[str, str | None] = field(default_factory=dict)  # member -> granularity
    outputs: list[Output] = field(default_factory=list)
    exprs: list[tuple[exp.Expression, Output]] = field(default_factory=list)


def parse(sql: str, params: list[Any] | None = None) -> exp.Expression:
    """One statement, with `$n` parameters replaced by literals (values never become SQL
    text: they are sqlglot literal nodes, rendered quoted)."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="postgres") if t is not None]
    except ParseError as exc:
        raise Refused(f"syntax error: {str(exc).splitlines()[0][:200]}", "42601") from None
    if len(trees) != 1:
        raise Refused("send one statement at a time", "42601")
    tree = trees[0]
    values = params or []

    def bind(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Parameter | exp.Placeholder):
            index = node.name or (node.this.name if isinstance(node.this, exp.Expression) else "")
            if not str(index).isdigit() or not 1 <= int(index) <= len(values):
                raise Refused(f"parameter ${index} has no value", "08P01")
            return literal(values[int(index) - 1])
        return node

    return tree.transform(bind) if values or tree.find(exp.Parameter) else tree


def literal(value: Any) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def classify(tree: exp.Expression, relations: dict[str, Relation]) -> SemanticQuery | CatalogQuery:
    """What the statement is: a query of the semantic model, a catalog query, or refused."""
    if not isinstance(tree, exp.Select | exp.Union):
        raise Refused(
            "this endpoint is read-only: only SELECT over your relations (or pg_catalog and "
            "information_schema) is accepted",
            "25006",
        )
    _refuse_functions(tree)
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    tables = [t for t in tree.find_all(exp.Table) if t.name.lower() not in ctes or t.db]
    for table in tables:
        if not isinstance(table.this, exp.Identifier):
            raise Refused("table functions are not accepted", "42501")
    catalog = [t for t in tables if _is_catalog(t)]
    if tables and len(catalog) == len(tables) or not tables:
        return CatalogQuery(tree)
    if catalog:
        raise Refused("a query reads either your relations or the catalog, not both")
    return SemanticQuery(*_translate(tree, relations))


def _is_catalog(table: exp.Table) -> bool:
    db = table.db.lower()
    return db in CATALOG_SCHEMAS or (not db and table.name.lower() in PG_CATALOG_TABLES)


def _refuse_functions(tree: exp.Expression) -> None:
    for fn in tree.find_all(exp.Func):
        name = (fn.name if isinstance(fn, exp.Anonymous) else fn.sql_name()).lower()
        if FORBIDDEN_FUNCTIONS.match(name) or type(fn).__name__.startswith("Read"):
            raise Refused(f"function {name}() is not available here", "42501")
        if isinstance(fn, exp.Anonymous) and name not in CATALOG_FUNCTIONS:
            raise Refused(f"function {name}() is not available here", "42883")


# -- a query of the semantic model ------------------------------------------------------------


def _translate(tree: exp.Expression, relations: dict[str, Relation]) -> tuple[LoadQuery, list]:
    if not isinstance(tree, exp.Select):
        raise Refused("UNION, INTERSECT and EXCEPT are not supported over your relations")
    for kind in UNSUPPORTED:
        if tree.find(kind):
            raise Refused(f"{kind.__name__.upper()} is not supported over your relations; "
                          "send one SELECT over one relation")  # fmt: skip
    for clause in ("with", "having", "qualify", "locks", "into"):
        if tree.args.get(clause):
            raise Refused(f"{clause.upper()} is not supported over your relations")
    select = _Select(_from(tree, relations))
    for item in tree.expressions:
        _select_item(select, item)
    if not select.outputs:
        raise Refused("select at least one column of the relation")
    for item in (tree.args.get("group") or exp.Group()).expressions:
        _output_of(select, item)  # every selected dimension is grouped by: a relation is a cube
    filters, ranges = _where(select, tree.args.get("where"))
    order = {}
    for item in (tree.args.get("order") or exp.Order()).expressions:
        order[_output_of(select, item.this).key] = "desc" if item.args.get("desc") else "asc"
    raw = {
        "measures": select.measures,
        "dimensions": select.dimensions,
        "timeDimensions": [
            {"dimension": m, **({"granularity": g} if g else {}),
             **({"dateRange": ranges.pop(m)} if m in ranges else {})}
            for m, g in select.times.items()
        ]
        + [{"dimension": m, "dateRange": r} for m, r in ranges.items()],
        "filters": filters,
        "order": order,
        "limit": _count(tree, "limit", MAX_LIMIT),
        "offset": _count(tree, "offset", 0),
    }  # fmt: skip
    try:
        return LoadQuery.model_validate(raw), select.outputs
    except ValueError as exc:
        raise SemanticError(str(exc).splitlines()[-1].strip()) from None


def _from(tree: exp.Select, relations: dict[str, Relation]) -> dict[str, Relation]:
    source = tree.args.get("from_") or tree.args.get("from")
    tables = [source.this] if source else []
    for join in tree.args.get("joins") or []:
        if join.args.get("on") or join.args.get("using") or join.side:
            raise Refused("relations combine with CROSS JOIN only (the semantic model joins them)")
        tables.append(join.this)
    found = {}
    for table in tables:
        if not isinstance(table, exp.Table):
            raise Refused("FROM takes your relations only")
        db = table.db.lower()
        name = table.name.lower()
        if db not in ("", SCHEMA) or name not in relations:
            shown = f"{table.db}.{table.name}" if table.db else table.name
            raise Refused(f'relation "{shown}" does not exist or is not granted to you', "42P01")
        found[(table.alias or table.name).lower()] = relations[name]
        found.setdefault(name, relations[name])
    return found


def _column(select: _Select, col: exp.Column) -> Column:
    name = col.name.lower()
    table = col.table.lower()
    if table:
        relation = select.relations.get(table)
        if relation is None:
            raise Refused(f'missing FROM-clause entry for table "{col.table}"', "42P01")
        candidates = [relation]
    else:
        candidates = list({id(r): r for r in select.relations.values()}.values())
    hits = [r.columns[name] for r in candidates if name in r.columns]
    if not hits:
        raise Refused(f'column "{col.name}" does not exist or is not granted to you', "42703")
    if len(hits) > 1:
        raise Refused(f'column reference "{col.name}" is ambiguous', "42702")
    return hits[0]


def _select_item(select: _Select, item: exp.Expression) -> None:
    if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and item.is_star):
        relations = select.relations.values()
        if isinstance(item, exp.Column) and item.table:
            relations = [select.relations[item.table.lower()]]
        for relation in {id(r): r for r in relations}.values():
            for column in relation.columns.values():
                _add(select, exp.column(column.name, relation.name), column.name)
        return
    name = item.alias if isinstance(item, exp.Alias) else None
    _add(select, item.this if isinstance(item, exp.Alias) else item, name)


def _add(select: _Select, node: exp.Expression, name: str | None) -> None:
    column, granularity, default = _resolve(select, node)
    if column.kind == "measure":
        if column.member not in select.measures:
            select.measures.append(column.member)
        out = Output(name or default, column.member, column.pg_type)
    elif column.kind == "time":
        granularity = granularity or "day"
        if select.times.get(column.member, granularity) != granularity:
            raise Refused(f"{column.name}: one granularity per time column")
        select.times[column.member] = granularity
        out = Output(name or default, f"{column.member}.{granularity}", "date")
    else:
        if column.member not in select.dimensions:
            select.dimensions.append(column.member)
        out = Output(name or default, column.member, column.pg_type)
    select.outputs.append(out)
    select.exprs.append((node, out))


def _resolve(select: _Select, node: exp.Expression) -> tuple[Column, str | None, str]:
    """(column, granularity, default output name) of a select item."""
    while isinstance(node, exp.Cast) and node.to.this in (
        exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ
    ):  # fmt: skip
        node = node.this
    if isinstance(node, exp.Column):
        column = _column(select, node)
        return column, None, column.name
    if isinstance(node, AGGREGATES) and isinstance(node.this, exp.Column):
        column = _column(select, node.this)
        if column.kind != "measure":
            raise Refused(f"{node.key}({column.name}): aggregate measures only; "
                          f"{column.name} is a dimension")  # fmt: skip
        return column, None, node.key.lower()
    if isinstance(node, exp.Anonymous) and node.name.lower() == "measure" and node.expressions:
        column = _column(select, node.expressions[0])
        return column, None, "measure"
    if isinstance(node, exp.TimestampTrunc | exp.DateTrunc | exp.TimeTrunc):
        inner = node.this
        unit = node.args.get("unit")
        if isinstance(inner, exp.Literal) and isinstance(unit, exp.Column | exp.Var):
            inner, unit = unit, inner  # DATE_TRUNC(col, 'unit') read the other way round
        column = _column(select, inner) if isinstance(inner, exp.Column) else None
        granularity = unit.name.lower() if unit is not None else ""
        if column is None or column.kind != "time" or granularity not in GRANULARITIES:
            raise Refused(f"DATE_TRUNC takes one of {', '.join(GRANULARITIES)} and a time column")
        return column, granularity, "date_trunc"
    raise Refused(
        "the select list takes columns, an aggregate of a measure column (SUM, AVG, MIN, MAX, "
        f"COUNT or MEASURE) and DATE_TRUNC of a time column; not {node.sql('postgres')[:80]}"
    )


def _output_of(select: _Select, node: exp.Expression) -> Output:
    """An output column named by GROUP BY or ORDER BY: position, name or the same expression."""
    if isinstance(node, exp.Literal) and not node.is_string:
        position = int(node.name)
        if not 1 <= position <= len(select.outputs):
            raise Refused(f"position {position} is not in the select list", "42P10")
        return select.outputs[position - 1]
    if isinstance(node, exp.Column) and not node.table:
        for out in select.outputs:
            if out.name.lower() == node.name.lower():
                return out
    for expr, out in select.exprs:
        if expr == node:
            return out
    column, granularity, _ = _resolve(select, node)
    for out in select.outputs:
        if out.key in (column.member, f"{column.member}.{granularity or 'day'}"):
            return out
    raise Refused(f"{node.sql('postgres')[:80]}: group and order by selected columns only")


OPERATORS = {exp.EQ: "equals", exp.NEQ: "notEquals", exp.GT: "gt", exp.GTE: "gte",
             exp.LT: "lt", exp.LTE: "lte"}  # fmt: skip
FLIPPED = {"gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}


def _where(select: _Select, where: exp.Where | None) -> tuple[list[dict], dict[str, list]]:
    """The WHERE clause as /v1/load filters (and date ranges of time columns)."""
    if where is None:
        return [], {}
    filters: list[dict] = []
    ranges: dict[str, list] = {}
    for term in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
        filters.append(_filter(select, term.unnest(), ranges))
    return [f for f in filters if f], ranges


def _filter(select: _Select, term: exp.Expression, ranges: dict[str, list]) -> dict:
    negated = isinstance(term, exp.Not)
    inner = term.this.unnest() if negated else term
    if isinstance(term, exp.Or):
        raise Refused("OR is not supported in WHERE; use IN, or send two queries")
    if type(inner) in OPERATORS and not negated:
        left, right = inner.this, inner.expression
        operator = OPERATORS[type(inner)]
        if not _is_column(left):
            left, right = right, left
            operator = FLIPPED.get(operator, operator)
        return _on(select, left, operator, [_value(right)])
    if isinstance(inner, exp.In):
        if inner.args.get("query"):
            raise Refused("IN takes a list of values, not a subquery")
        values = [_value(v) for v in inner.expressions]
        return _on(select, inner.this, "notIn" if negated else "in", values)
    if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
        return _on(select, inner.this, "set" if negated else "notSet", [])
    if isinstance(inner, exp.Between) and not negated:
        column = _filter_column(select, inner.this)
        low, high = _value(inner.args["low"]), _value(inner.args["high"])
        if column.kind == "time":
            ranges[column.member] = [low, high]
            return {}
        raise Refused("BETWEEN is for time columns; use >= and <= on other columns")
    if isinstance(inner, exp.Like | exp.ILike):
        pattern = _value(inner.expression)
        text = str(pattern)
        core = text.strip("%")
        if "%" in core or "_" in core or not text.endswith("%"):
            raise Refused("LIKE takes 'text%' (starts with) or '%text%' (contains)")
        if text.startswith("%"):
            return _on(select, inner.this, "notContains" if negated else "contains", [core])
        if negated:
            raise Refused("NOT LIKE 'text%' is not supported; use NOT LIKE '%text%'")
        return _on(select, inner.this, "startsWith", [core])
    raise Refused(
        "WHERE takes comparisons, IN, BETWEEN, IS [NOT] NULL and [I]LIKE of a column and "
        f"values, joined by AND; not {term.sql('postgres')[:80]}"
    )


def _is_column(node: exp.Expression) -> bool:
    while isinstance(node, exp.Cast):
        node = node.this
    return isinstance(node, exp.Column)


def _filter_column(select: _Select, node: exp.Expression) -> Column:
    while isinstance(node, exp.Cast):
        node = node.this
    if not isinstance(node, exp.Column):
        raise Refused(f"filter on a column, not {node.sql('postgres')[:80]}")
    column = _column(select, node)
    if column.kind == "measure":
        raise Refused(f"{column.name} is a measure: filter on dimensions (HAVING is not supported)")
    return column


def _on(select: _Select, node: exp.Expression, operator: str, values: list) -> dict:
    column = _filter_column(select, node)
    if None in values:
        raise Refused("compare with NULL through IS NULL or IS NOT NULL")
    return {"member": column.member, "operator": operator, "values": values}


def _value(node: exp.Expression) -> Any:
    while isinstance(node, exp.Cast):
        node = node.this
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        return -_value(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.name
        number = float(node.name)
        return int(number) if number.is_integer() and "." not in node.name else number
    if isinstance(node, exp.Boolean):
        return node.this
    if isinstance(node, exp.Null):
        return None
    raise Refused(f"filters compare with literal values, not {node.sql('postgres')[:80]}")


def _count(tree: exp.Select, clause: str, default: int) -> int:
    node = tree.args.get(clause)
    if node is None:
        return default
    value = node.expression if isinstance(node, exp.Limit | exp.Offset) else node
    if isinstance(value, exp.Null):
        return default
    try:
        number = int(_value(value))
    except (TypeError, ValueError):
        raise Refused(f"{clause.upper()} takes a number") from None
    if clause == "limit" and number > MAX_LIMIT:
        raise Refused(f"LIMIT {number} is over the service's limit of {MAX_LIMIT} rows", "54000")
    return number

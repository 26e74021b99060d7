"""The shadow catalog: what `pg_catalog` and `information_schema` show one caller.

An in-memory DuckDB holding one empty table per relation the caller may read, with only the
columns their groups grant, and nothing else: no data, no snapshot attached, no access to
files or extensions. DuckDB's own `pg_catalog` and `information_schema` views over it answer
the schema discovery of BI tools, so a caller discovers exactly what they may query.
"""

from __future__ import annotations

import threading

import duckdb
from sqlglot import exp

from retail_dp.delivery.sql_endpoint.translate import SCHEMA, Relation

DATABASE = "retail_dp"
SERVER_VERSION = "16.0"
VERSION_TEXT = f"PostgreSQL {SERVER_VERSION} (retail_dp serve-sql, read-only semantic model)"
# pg_catalog relations DuckDB lacks, or has without columns that SQLAlchemy's reflection
# (get_columns, get_pk_constraint, get_indexes) binds. DuckDB's system catalog takes no new
# views, so a query naming one gets it as a CTE. The shadow tables have no collations,
# operator classes, indexes or keys: each is empty, only its shape matters.
PG_CATALOG_ADDITIONS = {
    "pg_collation": "oid OID, collname VARCHAR, collnamespace OID, collprovider VARCHAR",
    "pg_opclass": "oid OID, opcmethod OID, opcname VARCHAR, opcnamespace OID, opcdefault BOOLEAN",
    "pg_index": "indexrelid OID, indrelid OID, indnatts SMALLINT, indnkeyatts SMALLINT, "
    "indisunique BOOLEAN, indnullsnotdistinct BOOLEAN, indisprimary BOOLEAN, "
    "indisexclusion BOOLEAN, indimmediate BOOLEAN, indisclustered BOOLEAN, "
    "indisvalid BOOLEAN, indcheckxmin BOOLEAN, indisready BOOLEAN, indislive BOOLEAN, "
    "indisreplident BOOLEAN, indkey SMALLINT[], indcollation OID[], indclass OID[], "
    "indoption SMALLINT[], indexprs VARCHAR, indpred VARCHAR",
}
# DuckDB's format_type names -> PostgreSQL's, which SQLAlchemy maps to its types
PG_TYPE_NAMES = {"varchar": "text", "float8": "double precision", "float4": "real",
                 "int2": "smallint", "int4": "integer", "int8": "bigint", "bool": "boolean",
                 "timestamp": "timestamp without time zone",
                 "timestamptz": "timestamp with time zone", "time": "time without time zone",
                 "timetz": "time with time zone"}  # fmt: skip


class ShadowCatalog:
    def __init__(self, relations: dict[str, Relation], threads: int = 1):
        self.relations = relations
        self.con = duckdb.connect(":memory:", config={"threads": threads,
                                                      "memory_limit": "64MB"})  # fmt: skip
        self.con.execute(f"ATTACH ':memory:' AS {DATABASE}")
        self.con.execute(f"USE {DATABASE}")
        self.con.execute(f"CREATE SCHEMA {SCHEMA}")
        for relation in relations.values():
            columns = ", ".join(
                f'"{c.name}" {c.pg_type.upper()}' for c in relation.columns.values()
            )
            self.con.execute(f'CREATE TABLE {SCHEMA}."{relation.name}" ({columns})')
            said = relation.description.replace("'", "''")
            self.con.execute(f"COMMENT ON TABLE {SCHEMA}.\"{relation.name}\" IS '{said}'")
        self.con.execute(f"USE {DATABASE}.{SCHEMA}")
        # from here on the connection can reach nothing outside itself, and cannot be changed
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET autoload_known_extensions = false")
        self.con.execute("SET autoinstall_known_extensions = false")
        self.con.execute("SET lock_configuration = true")
        self._lock = threading.Lock()

    def run(
        self, tree: exp.Expression, caller: str, timeout_s: float, max_rows: int
    ) -> tuple[list[tuple[str, str]], list[tuple]]:
        """(columns as (name, DuckDB type), rows) of a checked catalog query."""
        sql = _for_duckdb(tree, caller)
        # the connection itself, not a cursor: a cursor starts in another default schema,
        # whose pg_catalog views would describe nothing of the caller's
        with self._lock:
            deadline = threading.Timer(timeout_s, self.con.interrupt)
            deadline.start()
            try:
                self.con.execute(sql)
                rows = self.con.fetchmany(max_rows)
                return [(d[0], str(d[1])) for d in self.con.description], rows
            finally:
                deadline.cancel()

    def close(self) -> None:
        self.con.close()


def _for_duckdb(tree: exp.Expression, caller: str) -> str:
    """The query in DuckDB's dialect, with the session functions answered as PostgreSQL
    would for this caller."""
    answers = {
        "version": VERSION_TEXT,
        "current_database": DATABASE,
        "current_user": caller,
        "session_user": caller,
        "current_role": caller,
        "user": caller,
    }

    typed = {exp.CurrentVersion: VERSION_TEXT, exp.CurrentDatabase: DATABASE,
             exp.CurrentUser: caller, exp.SessionUser: caller}  # fmt: skip

    def answer(node: exp.Expression) -> exp.Expression:
        parent = node.parent
        if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            node = node.expression  # pg_catalog.version() -> version()
        if isinstance(node, exp.Column) and node.args.get("db"):
            node = node.copy()
            node.set("db", None)  # pg_catalog.pg_class.oid: DuckDB binds pg_class.oid
            return node
        if isinstance(node, exp.Cast) and node.to.sql("postgres").lower().startswith("reg"):
            # regtype, regclass, ...: DuckDB has none; the oid stands in (a replaced node's
            # children are not visited again, so answer them here)
            return node.this.transform(answer)
        name = node.name.lower() if isinstance(node, exp.Anonymous) else None
        if name in ("to_regtype", "to_regclass", "pg_get_serial_sequence"):
            return exp.cast(exp.Null(), "INTEGER")  # no types, classes or sequences of ours
        if name == "json_build_object":
            return exp.Anonymous(this="json_object", expressions=node.expressions).transform(answer)
        if name == "pg_collation_is_visible":
            return exp.true()
        if name == "pg_get_indexdef":
            return exp.cast(exp.Null(), "TEXT")  # the shadow tables have no indexes
        if name == "format_type":
            args = [a.transform(answer) for a in node.expressions]
            found = _pg_type_name(exp.Anonymous(this="format_type", expressions=args))
            return exp.alias_(found, name) if isinstance(parent, exp.Select) else found
        value = answers.get(name) if name else typed.get(type(node))
        if value is None:
            return node
        fn = name or node.sql_name().lower()
        named = "version" if fn == "current_version" else fn
        keep = isinstance(parent, exp.Select)  # a bare call keeps PostgreSQL's column name
        found = exp.Literal.string(value)
        return exp.alias_(found, named) if keep else found

    return _with_additions(tree.transform(answer)).sql(dialect="duckdb")


def _pg_type_name(duckdb_name: exp.Expression) -> exp.Expression:
    """PostgreSQL's name of a type from DuckDB's; a map lookup, not a CASE, so that
    format_type (a subquery in DuckDB) runs twice rather than once per name."""
    names = exp.Map(
        keys=exp.Array(expressions=[exp.Literal.string(k) for k in PG_TYPE_NAMES]),
        values=exp.Array(expressions=[exp.Literal.string(v) for v in PG_TYPE_NAMES.values()]),
    )
    found = exp.Bracket(this=names, expressions=[duckdb_name])
    return exp.Coalesce(this=found, expressions=[duckdb_name.copy()])


def _with_additions(tree: exp.Expression) -> exp.Expression:
    """The query with the pg_catalog relations it names from PG_CATALOG_ADDITIONS as CTEs."""
    for column in tree.find_all(exp.Column):
        column.set("db", None)  # also inside calls `answer` replaced without visiting
    named = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    added = set()
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if name in PG_CATALOG_ADDITIONS and table.db.lower() in ("", "pg_catalog"):
            table.set("db", None)
            table.set("catalog", None)
            added.add(name)
    if not isinstance(tree, exp.Query):
        return tree
    for name in sorted(added - named):
        tree = tree.with_(name, as_=_empty_relation(PG_CATALOG_ADDITIONS[name]))
    return tree


def _empty_relation(columns: str) -> str:
    typed = ", ".join(
        f"CAST(NULL AS {kind}) AS {column}"
        for column, kind in (c.strip().split(" ", 1) for c in columns.split(","))
    )
    return f"SELECT {typed} WHERE FALSE"

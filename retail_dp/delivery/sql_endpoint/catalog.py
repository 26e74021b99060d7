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
        value = answers.get(name) if name else typed.get(type(node))
        if value is None:
            return node
        fn = name or node.sql_name().lower()
        named = "version" if fn == "current_version" else fn
        keep = isinstance(parent, exp.Select)  # a bare call keeps PostgreSQL's column name
        found = exp.Literal.string(value)
        return exp.alias_(found, named) if keep else found

    return tree.transform(answer).sql(dialect="duckdb")

"""`retail-dp serve-sql` as a real process, through real clients (psycopg, and SQLAlchemy's
postgresql+psycopg dialect as BI tools use it): what a caller sees, masking and row filters
equal to the REST answers, refusals, limits and the audit log."""

from __future__ import annotations

import json
import socket

import psycopg
import pytest
import sqlalchemy as sa

from .delivery_server import KEYS, ServerProcess

CALLERS = {
    "marketing": "demo-marketing-analyst",
    "regional": "demo-regional-manager-es",
    "sales": "demo-sales-viewer",
    "steward": "demo-data-steward",
}


class SqlServer(ServerProcess):
    """`retail-dp serve-sql --demo` on a free loopback port."""

    command = "serve-sql"
    startup_seconds = 60

    def ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def dsn(self, who: str) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname=retail_dp user={CALLERS[who]} "
            f"password={KEYS[who]} connect_timeout=10"
        )

    def connect(self, who: str) -> psycopg.Connection:
        return psycopg.connect(self.dsn(who), autocommit=True)

    def engine(self, who: str) -> sa.Engine:
        url = sa.URL.create(
            "postgresql+psycopg",
            username=CALLERS[who],
            password=KEYS[who],
            host="127.0.0.1",
            port=self.port,
            database="retail_dp",
        )
        return sa.create_engine(url, poolclass=sa.pool.NullPool)


@pytest.fixture(scope="module")
def sql(built, tmp_path_factory):
    _, settings, _ = built
    running = SqlServer(settings.warehouse, tmp_path_factory.mktemp("sql") / "access.jsonl")
    yield running
    running.stop()


def rest(server, who: str, query: dict) -> list[dict]:
    response = server.client(who).post("/v1/load", json=query)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def rows(conn, sql_text: str, params=None) -> list[tuple]:
    return conn.execute(sql_text, params).fetchall()


# -- what a caller sees -----------------------------------------------------------------------


def test_each_caller_lists_only_the_relations_and_columns_granted(sql):
    with sql.connect("steward") as conn:
        tables = rows(
            conn,
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY table_name",
        )
        assert tables == [
            ("public", t)
            for t in ["category_affinity", "customer", "customer_value", "product", "purchase"]
        ]
    with sql.connect("sales") as conn:
        names = [t for (t,) in rows(conn, "SELECT table_name FROM information_schema.tables")]
        assert sorted(names) == ["category_affinity", "customer", "product", "purchase"]
        columns = rows(
            conn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY column_name",
            ["customer"],
        )
        assert columns == [
            ("country_code", "VARCHAR"),
            ("customer_count", "DOUBLE"),
            ("region", "VARCHAR"),
        ]


def test_sqlalchemy_lists_tables_and_queries_with_group_by(sql, server):
    engine = sql.engine("regional")
    assert sa.inspect(engine).get_table_names() == [
        "customer",
        "customer_value",
        "product",
        "purchase",
    ]
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT channel, SUM(total_spend) AS spend FROM purchase "
                "WHERE channel IN (:a, :b, :c) GROUP BY channel ORDER BY channel"
            ),
            {"a": "web", "b": "store", "c": "catalog"},
        ).fetchall()
    expected = rest(
        server,
        "regional",
        {
            "measures": ["purchase.total_spend"],
            "dimensions": ["purchase.channel"],
            "order": {"purchase.channel": "asc"},
        },
    )
    assert [tuple(r) for r in found] == [
        (r["purchase.channel"], r["purchase.total_spend"]) for r in expected
    ]
    engine.dispose()


CONTACT = {"email", "phone", "first_name", "last_name"}


@pytest.mark.parametrize(
    ("who", "customer_columns"),
    [
        ("sales", ["country_code", "region", "customer_count"]),
        ("regional", ["signup_date", "country_code", "country_name", "region", "age_group",
                      "income_band", "education", "marital_status", "has_valid_email",
                      "customer_count"]),
        ("steward", ["signup_date", "country_code", "country_name", "region", "age_group",
                     "income_band", "education", "marital_status", "has_valid_email",
                     "first_name", "last_name", "email", "phone", "customer_count"]),
    ],
)  # fmt: skip
def test_sqlalchemy_reflects_exactly_the_granted_columns(sql, who, customer_columns):
    """What Superset does to add a dataset: get_columns, get_pk_constraint, get_indexes."""
    with sql.connect(who) as conn:
        granted = rows(
            conn,
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
        )
    engine = sql.engine(who)
    inspector = sa.inspect(engine)
    reflected = {}
    for table in inspector.get_table_names(schema="public"):
        for column in inspector.get_columns(table, schema="public"):
            reflected[table, column["name"]] = type(column["type"])
        assert inspector.get_pk_constraint(table, schema="public")["constrained_columns"] == []
        assert inspector.get_indexes(table, schema="public") == []
    engine.dispose()
    assert list(reflected) == granted
    customer = {name: kind for (table, name), kind in reflected.items() if table == "customer"}
    assert list(customer) == customer_columns
    assert customer["country_code"] is sa.TEXT
    assert customer["customer_count"] is sa.DOUBLE_PRECISION
    assert reflected["purchase", "purchase_date"] is sa.DATE
    if who != "steward":  # excluded by the policy: not in the catalog, not reflected
        assert not CONTACT & customer.keys()


# -- governance: row filters and masking equal REST --------------------------------------------


def test_row_filters_apply_before_aggregation_as_in_rest(sql, server):
    query = "SELECT country_code, customer_count FROM customer GROUP BY country_code"
    with sql.connect("regional") as conn:
        assert rows(conn, query) == [
            (
                "ES",
                pytest.approx(
                    rest(
                        server,
                        "regional",
                        {
                            "measures": ["customer.customer_count"],
                            "dimensions": ["customer.country_code"],
                        },
                    )[0]["customer.customer_count"]
                ),
            )
        ]
        (regional,) = rows(conn, "SELECT SUM(total_spend) FROM purchase")
    with sql.connect("steward") as conn:
        (everyone,) = rows(conn, "SELECT SUM(total_spend) FROM purchase")
    total = rest(server, "regional", {"measures": ["purchase.total_spend"]})
    assert regional[0] == pytest.approx(total[0]["purchase.total_spend"])
    assert regional[0] < everyone[0]


def test_masking_is_the_same_as_in_rest(sql, server):
    query = {
        "dimensions": ["customer.email", "customer.phone", "customer.first_name"],
        "filters": [{"member": "customer.country_code", "operator": "equals", "values": ["DE"]}],
        "limit": 50,
    }
    expected = [tuple(r[m] for m in query["dimensions"]) for r in rest(server, "marketing", query)]
    with sql.connect("marketing") as conn:
        found = rows(
            conn,
            "SELECT email, phone, first_name FROM customer WHERE country_code = %s LIMIT 50",
            ["DE"],
        )
    assert found == expected
    assert all(first == "[redacted]" for _, _, first in found)
    with sql.engine("marketing").connect() as conn:
        via_sqlalchemy = conn.execute(
            sa.text(
                "SELECT email, phone, first_name FROM public.customer "
                "WHERE country_code = 'DE' LIMIT 50"
            )
        ).fetchall()
    assert [tuple(r) for r in via_sqlalchemy] == expected
    with sql.connect("marketing") as conn, pytest.raises(psycopg.Error, match="masked"):
        conn.execute("SELECT customer_count FROM customer WHERE email ILIKE '%@mail%'")


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "42501"),
        ("SELECT pg_read_file('/etc/passwd')", "42501"),
        ("SELECT * FROM main.fct_purchase", "42P01"),
        ("SELECT * FROM marts.fct_purchase", "42P01"),
        ("SELECT * FROM fct_purchase", "42P01"),
        ("SELECT * FROM duckdb_tables()", "42501"),
        ("SELECT * FROM published.snapshot", "42P01"),
        ("SELECT current_setting('memory_limit')", "42501"),
        ("DELETE FROM purchase", "25006"),
        ("CREATE TABLE t AS SELECT 1", "25006"),
        ("ATTACH '/tmp/x.duckdb' AS x", "42601"),  # not PostgreSQL
        ("COPY purchase TO '/tmp/out.csv'", "25006"),
        ("SELECT channel FROM purchase UNION SELECT region FROM customer", "0A000"),
        ("SELECT email FROM customer", "42703"),  # not granted to sales viewers
        ("SELECT total_spend FROM purchase LIMIT 60000", "54000"),
    ],
)
def test_anything_but_a_governed_select_is_refused(sql, statement, code):
    with sql.connect("sales") as conn:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(statement)
        assert raised.value.sqlstate == code, raised.value
        assert rows(conn, "SELECT 1") == [(1,)]  # the session goes on


def test_information_schema_shows_no_warehouse_table(sql):
    with sql.connect("steward") as conn:
        schemas = {
            s for (s,) in rows(conn, "SELECT DISTINCT table_schema FROM information_schema.tables")
        }
        assert schemas == {"public"}
        names = {n for (n,) in rows(conn, "SELECT relname FROM pg_catalog.pg_class")}
        assert not names & {"fct_purchase", "dim_customer", "snapshot", "incidents"}


def test_size_limits_are_the_services(sql):
    values = ", ".join(f"'v{i}'" for i in range(101))
    with sql.connect("sales") as conn, pytest.raises(psycopg.Error, match="max_values_per_filter"):
        conn.execute(f"SELECT total_spend FROM purchase WHERE channel IN ({values})")


def test_a_wrong_password_or_user_is_refused(sql):
    with pytest.raises(psycopg.OperationalError, match="unknown API key"):
        psycopg.connect(sql.dsn("sales").replace(KEYS["sales"], "rdp_wrong"))
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        psycopg.connect(sql.dsn("sales").replace(CALLERS["sales"], "someone-else"))


def test_every_query_is_audited(sql):
    with sql.connect("sales") as conn:
        rows(conn, "SELECT channel, total_spend FROM purchase GROUP BY 1")
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT * FROM read_csv('/etc/passwd')")
    entries = [e for e in sql.audit() if e["endpoint"] == "sql" and e["method"] == "query"]
    answered = next(e for e in reversed(entries) if "purchase.channel" in json.dumps(e))
    assert answered["caller"] == CALLERS["sales"] and answered["status"] == 200
    assert answered["query"]["measures"] == ["purchase.total_spend"] and answered["rows"] == 3
    refused = next(e for e in reversed(entries) if "read_csv" in e["sql"])
    assert refused["status"] == 400 and refused["outcome"] == "refused" and refused["error"]
    seqs = [e["seq"] for e in sql.audit() if e["endpoint"] == "sql"]
    assert seqs == list(range(1, len(seqs) + 1))  # none missing

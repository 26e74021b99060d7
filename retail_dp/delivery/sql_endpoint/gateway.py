"""What the SQL endpoint does with a statement, whatever the wire: sign-in with the callers of
the policies, session commands answered in place, SELECTs translated (translate.py) and run
through DeliveryService or the caller's shadow catalog, every query audited like the API's.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from retail_dp.delivery.api import REFUSALS, answered, asked, refusal_status
from retail_dp.delivery.gate import Sequencer
from retail_dp.delivery.limits import AuthThrottle, CallerShare, TooMany
from retail_dp.delivery.policies import Caller, Forbidden, Unauthorized
from retail_dp.delivery.query import MAX_LIMIT
from retail_dp.delivery.semantic import SemanticError
from retail_dp.delivery.service import DeliveryService, QueryTimeout, ServiceBusy
from retail_dp.delivery.snapshots import NoSnapshot
from retail_dp.delivery.sql_endpoint.catalog import DATABASE, SERVER_VERSION, ShadowCatalog
from retail_dp.delivery.sql_endpoint.translate import (
    Refused,
    SemanticQuery,
    classify,
    parse,
    relations_from_meta,
)

ENDPOINT = "sql"
# PostgreSQL type OIDs of the types the endpoint sends
OIDS = {"text": 25, "date": 1082, "double precision": 701, "bigint": 20, "integer": 23,
        "smallint": 21, "boolean": 16, "timestamp": 1114, "numeric": 1700, "text[]": 1009,
        "bigint[]": 1016, "integer[]": 1007, "oid": 26}  # fmt: skip
DUCKDB_TYPES = {"VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint",
                "TINYINT": "smallint", "UBIGINT": "numeric", "UINTEGER": "bigint",
                "BOOLEAN": "boolean", "DOUBLE": "double precision", "FLOAT": "double precision",
                "DATE": "date", "TIMESTAMP": "timestamp", "HUGEINT": "numeric"}  # fmt: skip
# PostgreSQL error codes of the service's refusals
SQLSTATES = {Unauthorized: "28P01", Forbidden: "42501", TooMany: "53400", NoSnapshot: "57P03",
             ServiceBusy: "53200", QueryTimeout: "57014", SemanticError: "22023"}  # fmt: skip
# what SHOW answers (clients ask for these while connecting)
SETTINGS = {
    "server_version": SERVER_VERSION,
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "timezone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "intervalstyle": "postgres",
    "search_path": "public",
    "transaction isolation level": "read committed",
    "transaction_isolation": "read committed",
    "transaction_read_only": "on",
    "default_transaction_read_only": "on",
    "max_identifier_length": "63",
    "lc_collate": "C",
}
SESSION = re.compile(
    r"^\s*(?P<verb>begin|start\s+transaction|commit|end|rollback\s+to|rollback|abort|set|"
    r"reset|discard|deallocate|close|show|savepoint|release)\b\s*(?P<rest>.*?)[\s;]*$",
    re.IGNORECASE | re.DOTALL,
)


class SqlError(Exception):
    """An error to send to the client: its message and PostgreSQL error code."""

    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class Result:
    columns: list[tuple[str, int]]  # (name, type OID)
    rows: list[list[str | None]]  # text format
    tag: str


@dataclass
class Session:
    caller: Caller
    client: str
    catalog: ShadowCatalog
    relations: dict = field(default_factory=dict)
    in_transaction: bool = False
    failed: bool = False

    @property
    def status(self) -> str:
        return "E" if self.failed else "T" if self.in_transaction else "I"


class Gateway:
    """One per server: the service, the sign-in throttle, the callers' shares, the audit."""

    def __init__(self, service: DeliveryService):
        self.service = service
        self.limits = service.limits
        self.sequencer = Sequencer()
        self.throttle = AuthThrottle(self.limits.auth_failures, self.limits.auth_window_s)
        self.share = CallerShare(
            self.limits.caller_concurrency,
            self.limits.caller_query_seconds,
            self.limits.caller_queue_s,
        )

    # -- sign-in --------------------------------------------------------------------------

    def sign_in(self, user: str, password: str, client: str) -> Session:
        """The caller whose API key (or JWT) is the password; the user must name them."""
        started = time.perf_counter()
        entry: dict[str, Any] = {"user": user[:64]}
        try:
            self.throttle.check(client)
            try:
                caller = self.service.policies.authenticate(password or None)
            except Unauthorized:
                self.throttle.failed(client)
                raise
            if user != caller.name:
                self.throttle.failed(client)
                raise Unauthorized(f"password authentication failed for user {user!r}")
            relations = relations_from_meta(self.service.meta(caller))
            session = Session(caller, client, ShadowCatalog(relations), relations)
            self._audit(client, caller, "connect", started, 200, entry)
            return session
        except tuple(REFUSALS) as exc:
            entry["error"] = str(exc)
            self._audit(client, None, "connect", started, refusal_status(exc), entry)
            raise SqlError(str(exc), "28P01" if isinstance(exc, Unauthorized) else
                           SQLSTATES.get(type(exc), "53400")) from None  # fmt: skip

    # -- statements -----------------------------------------------------------------------

    async def execute(self, session: Session, sql: str, params: list | None = None) -> Result:
        """Answer one statement. Refusals raise SqlError; the session stays usable."""
        import asyncio

        if not sql.strip().strip(";").strip():
            return Result([], [], "")
        command = SESSION.match(sql)
        if command and not params:
            return self._session_command(session, command["verb"].lower(), command["rest"])
        if session.failed:
            raise SqlError("current transaction is aborted, commands ignored until end of "
                           "transaction block", "25P02")  # fmt: skip
        started = time.perf_counter()
        entry: dict[str, Any] = {"sql": sql[: self.limits.max_body_bytes]}
        status = 200
        admitted = False
        try:
            if len(sql.encode()) > self.limits.max_body_bytes:
                raise Refused(f"the statement exceeds {self.limits.max_body_bytes} bytes", "54000")
            await self.share.enter(session.caller.name)
            admitted = True
            return await asyncio.to_thread(self._select, session, sql, params, entry)
        except Refused as exc:
            status = 400
            entry["error"] = str(exc)
            raise SqlError(str(exc), exc.sqlstate) from None
        except tuple(REFUSALS) as exc:
            status = refusal_status(exc)
            entry["error"] = str(exc)
            code = next((c for k, c in SQLSTATES.items() if isinstance(exc, k)), "XX000")
            raise SqlError(str(exc), code) from None
        except Exception as exc:
            status = 500
            entry["error"] = f"internal error ({type(exc).__name__})"
            raise SqlError("internal error; the server's log has the details", "XX000") from exc
        finally:
            if admitted:
                self.share.leave(session.caller.name, time.perf_counter() - started)
            if status >= 400 and session.in_transaction:
                session.failed = True
            self._audit(session.client, session.caller, "query", started, status, entry)

    def _select(self, session: Session, sql: str, params: list | None, entry: dict) -> Result:
        found = classify(parse(sql, params), session.relations)
        if isinstance(found, SemanticQuery):
            entry.update(asked(found.query))
            result = self.service.load(session.caller, found.query)
            entry.update(answered(result))
            rows = [[_cell(row.get(o.key), o.pg_type) for o in found.outputs]
                    for row in result.data]  # fmt: skip
            columns = [(o.name, OIDS[o.pg_type]) for o in found.outputs]
            return Result(columns, rows, f"SELECT {len(rows)}")
        entry["members"] = ["catalog"]
        try:
            described, raw = session.catalog.run(
                found.tree, session.caller.name, self.limits.query_timeout_s, MAX_LIMIT
            )
        except Exception as exc:  # DuckDB's words about the shadow catalog; no data there
            import duckdb

            if isinstance(exc, duckdb.InterruptException):
                raise QueryTimeout("the catalog query ran past its deadline") from None
            if isinstance(exc, duckdb.Error):
                raise Refused(f"catalog query failed: {str(exc).splitlines()[0][:300]}",
                              "42883") from None  # fmt: skip
            raise
        types = [_pg_type(t) for _, t in described]
        rows = [[_text(v) for v in row] for row in raw]
        entry["rows"] = len(rows)
        return Result([(n, OIDS[t]) for (n, _), t in zip(described, types, strict=True)], rows,
                      f"SELECT {len(rows)}")  # fmt: skip

    def _session_command(self, session: Session, verb: str, rest: str) -> Result:
        """Transactions are no-ops on a read-only snapshot; SET is accepted and ignored."""
        verb = " ".join(verb.split())
        if verb in ("begin", "start transaction"):
            session.in_transaction = True
            return Result([], [], "BEGIN")
        if verb in ("commit", "end", "rollback", "abort"):
            done = "ROLLBACK" if verb in ("rollback", "abort") or session.failed else "COMMIT"
            session.in_transaction = session.failed = False
            return Result([], [], done)
        if verb in ("savepoint", "release"):
            return Result([], [], verb.upper())
        if verb == "rollback to":  # back to a savepoint: the transaction may go on
            session.failed = False
            return Result([], [], "ROLLBACK")
        if verb == "show":
            name = " ".join(rest.lower().split())
            if name not in SETTINGS:
                raise SqlError(f'unrecognized configuration parameter "{rest}"', "42704")
            return Result([(name, OIDS["text"])], [[SETTINGS[name]]], "SHOW")
        return Result([], [], verb.upper() if verb != "discard" else "DISCARD ALL")

    # -- audit ----------------------------------------------------------------------------

    def _audit(self, client: str, caller: Caller | None, method: str, started: float,
               status: int, detail: dict) -> None:  # fmt: skip
        outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
        entry = {
            "time": self.service.now(),
            "server": self.sequencer.instance,
            "seq": self.sequencer.next(),
            "request_id": uuid.uuid4().hex,
            "method": method,
            "path": "postgresql",
            "endpoint": ENDPOINT,
            "client": client,
            "caller": caller.name if caller else None,
            "auth": caller.via if caller else None,
            "groups": list(caller.groups) if caller else None,
            "status": status,
            "outcome": "timeout" if status == 504 else outcome,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "database": DATABASE,
            **detail,
        }
        self.service.audit.record(entry)


def _pg_type(duckdb_type: str) -> str:
    if duckdb_type.endswith("[]"):
        inner = DUCKDB_TYPES.get(duckdb_type[:-2], "text")
        return f"{inner}[]" if f"{inner}[]" in OIDS else "text[]"
    return DUCKDB_TYPES.get(duckdb_type.split("(")[0], "text")


def _cell(value: Any, pg_type: str) -> str | None:
    """A load result's JSON-ready value as its column's type: ISO dates, true/false."""
    if value is None:
        return None
    if pg_type == "date":
        return str(value)[:10]
    if isinstance(value, bool):
        return "true" if value else "false"
    return _text(value)


def _text(value: Any) -> str | None:
    """A value in PostgreSQL's text format."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float | Decimal):
        return repr(float(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        items = ["NULL" if v is None else '"' + str(_text(v)).replace('"', '\\"') + '"'
                 for v in value]  # fmt: skip
        return "{" + ",".join(items) + "}"
    return str(value)

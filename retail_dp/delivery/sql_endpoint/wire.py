"""The PostgreSQL wire: pygwire encodes and decodes every message and tracks the connection's
phase; this module only says which messages answer which, and hands statements to the
Gateway. Simple and extended query protocols, cleartext password sign-in (the password is an
API key: put TLS in front when it leaves the machine), text format only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from dataclasses import dataclass, field
from datetime import date, timedelta

from pygwire import BackendConnection, PygwireError, TransactionStatus
from pygwire import messages as m

from retail_dp.delivery.sql_endpoint.gateway import SETTINGS, Gateway, Result, Session, SqlError

logger = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
UNKNOWN_OID = 705


@dataclass
class _Portal:
    sql: str
    params: list
    formats: list[int] = field(default_factory=list)  # result formats, as Bind gave them
    result: Result | None = None
    sent: int = 0

    def row(self, values: list[str | None]) -> m.DataRow:
        assert self.result is not None
        formats = self.formats or [0]
        columns = []
        for i, value in enumerate(values):
            binary = (formats[i] if len(formats) > 1 else formats[0]) == 1
            oid = self.result.columns[i][1]
            columns.append(_binary(value, oid) if binary else _encode(value))
        return m.DataRow(columns=columns)


@dataclass
class _Connection:
    """One client: its pygwire connection, session, prepared statements and portals."""

    gateway: Gateway
    client: str
    wire: BackendConnection = field(default_factory=lambda: BackendConnection(strict=False))
    params: dict = field(default_factory=dict)
    session: Session | None = None
    statements: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    portals: dict[str, _Portal] = field(default_factory=dict)
    skipping: bool = False  # after an error in an extended query, until Sync
    closing: bool = False

    async def on(self, msg: m.PGMessage) -> list[m.PGMessage]:
        if isinstance(msg, m.SSLRequest):
            return [m.SSLResponse(accepted=False)]
        if isinstance(msg, m.GSSEncRequest):
            return [m.GSSResponse(accepted=False)]
        if isinstance(msg, m.CancelRequest | m.Terminate):
            self.closing = True
            return []
        if isinstance(msg, m.StartupMessage):
            self.params = dict(msg.params)
            return [m.AuthenticationCleartextPassword()]
        if isinstance(msg, m.PasswordMessage):
            return self._sign_in(msg.password)
        if self.session is None:
            self.closing = True
            return [_error(SqlError("sign in first", "28000"), fatal=True)]
        if isinstance(msg, m.Query):
            return await self._simple(msg.query_string)
        if isinstance(msg, m.Sync):
            self.skipping = False
            return [self._ready()]
        if self.skipping:
            return []
        try:
            return await self._extended(msg)
        except SqlError as exc:
            self.skipping = True
            return [_error(exc)]

    def _sign_in(self, password: str | bytes) -> list[m.PGMessage]:
        text = password.decode("utf-8", "replace") if isinstance(password, bytes) else password
        try:
            self.session = self.gateway.sign_in(self.params.get("user", ""), text, self.client)
        except SqlError as exc:
            self.closing = True
            return [_error(exc, fatal=True)]
        status = {**{k: SETTINGS[k.lower()] for k in ("server_version", "server_encoding",
                  "client_encoding", "DateStyle", "TimeZone", "integer_datetimes",
                  "standard_conforming_strings", "IntervalStyle")},
                  "application_name": self.params.get("application_name", ""),
                  "is_superuser": "off", "session_authorization": self.session.caller.name,
                  "default_transaction_read_only": "on"}  # fmt: skip
        return [
            m.AuthenticationOk(),
            *(m.ParameterStatus(name=k, value=v) for k, v in status.items()),
            m.BackendKeyData(process_id=secrets.randbits(31), secret_key=secrets.token_bytes(4)),
            self._ready(),
        ]

    def _ready(self) -> m.ReadyForQuery:
        status = self.session.status if self.session else "I"
        return m.ReadyForQuery(status=TransactionStatus(status))

    async def _simple(self, sql: str) -> list[m.PGMessage]:
        try:
            result = await self.gateway.execute(self.session, sql)
        except SqlError as exc:
            return [_error(exc), self._ready()]
        if not result.tag:
            return [m.EmptyQueryResponse(), self._ready()]
        out: list[m.PGMessage] = []
        if result.columns:
            out.append(_description(result))
            out += [m.DataRow(columns=_encoded(row)) for row in result.rows]
        return [*out, m.CommandComplete(tag=result.tag), self._ready()]

    async def _extended(self, msg: m.PGMessage) -> list[m.PGMessage]:
        if isinstance(msg, m.Parse):
            self.statements[msg.statement] = (msg.query, list(msg.param_types))
            return [m.ParseComplete()]
        if isinstance(msg, m.Bind):
            return [self._bind(msg)]
        if isinstance(msg, m.Describe):
            return await self._describe(msg)
        if isinstance(msg, m.Execute):
            return await self._execute(msg)
        if isinstance(msg, m.Close):
            (self.statements if msg.kind == "S" else self.portals).pop(msg.name, None)
            return [m.CloseComplete()]
        if isinstance(msg, m.Flush):
            return []
        raise SqlError(f"{type(msg).__name__} is not supported by this endpoint", "0A000")

    def _bind(self, msg: m.Bind) -> m.BindComplete:
        if msg.statement not in self.statements:
            raise SqlError(f'prepared statement "{msg.statement}" does not exist', "26000")
        sql, types = self.statements[msg.statement]
        formats = list(msg.param_formats) or [0]
        params = []
        for i, value in enumerate(msg.param_values):
            binary = (formats[i] if len(formats) > 1 else formats[0]) == 1
            oid = types[i] if i < len(types) else 0
            params.append(_decoded(bytes(value), oid, binary) if value is not None else None)
        self.portals[msg.portal] = _Portal(sql, params, list(msg.result_formats))
        return m.BindComplete()

    async def _run(self, portal: _Portal) -> Result:
        if portal.result is None:
            portal.result = await self.gateway.execute(self.session, portal.sql, portal.params)
        return portal.result

    async def _describe(self, msg: m.Describe) -> list[m.PGMessage]:
        if msg.kind == "S":
            if msg.name not in self.statements:
                raise SqlError(f'prepared statement "{msg.name}" does not exist', "26000")
            sql, types = self.statements[msg.name]
            count = _placeholders(sql)
            oids = (types + [UNKNOWN_OID] * count)[:count]
            # the row shape without parameter values: run it with NULLs
            result = await self.gateway.execute(self.session, sql, [None] * count)
            return [m.ParameterDescription(type_oids=[o or UNKNOWN_OID for o in oids]),
                    _description(result) if result.columns else m.NoData()]  # fmt: skip
        portal = self.portals.get(msg.name)
        if portal is None:
            raise SqlError(f'portal "{msg.name}" does not exist', "34000")
        result = await self._run(portal)
        return [_description(result, portal.formats) if result.columns else m.NoData()]

    async def _execute(self, msg: m.Execute) -> list[m.PGMessage]:
        portal = self.portals.get(msg.portal)
        if portal is None:
            raise SqlError(f'portal "{msg.portal}" does not exist', "34000")
        result = await self._run(portal)
        if not result.tag:
            return [m.EmptyQueryResponse()]
        end = len(result.rows) if msg.max_rows <= 0 else portal.sent + msg.max_rows
        rows = result.rows[portal.sent : end]
        portal.sent += len(rows)
        out: list[m.PGMessage] = [portal.row(r) for r in rows]
        if portal.sent < len(result.rows):
            return [*out, m.PortalSuspended()]
        tag = f"SELECT {len(result.rows)}" if result.columns else result.tag
        return [*out, m.CommandComplete(tag=tag)]


def _placeholders(sql: str) -> int:
    import re

    return max((int(n) for n in re.findall(r"\$(\d+)", sql)), default=0)


def _description(result: Result, formats: list[int] | None = None) -> m.RowDescription:
    formats = formats or [0]
    return m.RowDescription(
        fields=[
            m.FieldDescription(
                name=name,
                type_oid=oid,
                type_size=-1,
                type_modifier=-1,
                format_code=formats[i] if len(formats) > 1 else formats[0],
            )
            for i, (name, oid) in enumerate(result.columns)
        ]
    )


def _encoded(row: list[str | None]) -> list[bytes | None]:
    return [_encode(v) for v in row]


def _encode(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8")


EPOCH = date(2000, 1, 1)
BINARY_OUT = {20: "!q", 21: "!h", 23: "!i", 26: "!I", 701: "!d", 700: "!f"}


def _binary(value: str | None, oid: int) -> bytes | None:
    """A text-format value in PostgreSQL's binary format, for the types the endpoint sends
    (psycopg asks for binary results for some catalog queries)."""
    if value is None:
        return None
    if oid in BINARY_OUT:
        number = float(value) if oid in (700, 701) else int(value)
        return struct.pack(BINARY_OUT[oid], number)
    if oid == 16:
        return b"\x01" if value in ("t", "true") else b"\x00"
    if oid == 1082:
        return struct.pack("!i", (date.fromisoformat(value) - EPOCH).days)
    if oid in (25, 1043, 19, 18, 705):
        return value.encode("utf-8")
    raise SqlError(f"binary format is not supported for type {oid}; use text format", "0A000")


BINARY_IN = {20: "!q", 21: "!h", 23: "!i", 26: "!I", 701: "!d", 700: "!f"}


def _decoded(raw: bytes, oid: int, binary: bool):
    """A bound parameter as a Python value."""
    if not binary:
        text = raw.decode("utf-8")
        if oid in (20, 21, 23, 26):
            return int(text)
        if oid in (700, 701):
            return float(text)
        return text in ("t", "true") if oid == 16 else text
    if oid in BINARY_IN:
        return struct.unpack(BINARY_IN[oid], raw)[0]
    if oid == 16:
        return raw == b"\x01"
    if oid == 1082:
        return (EPOCH + timedelta(days=struct.unpack("!i", raw)[0])).isoformat()
    if oid in (25, 1043, 19, 18, 705, 0):
        return raw.decode("utf-8")
    raise SqlError(f"binary parameters of type {oid} are not supported; send text", "0A000")


def _error(exc: SqlError, fatal: bool = False) -> m.ErrorResponse:
    severity = "FATAL" if fatal else "ERROR"
    return m.ErrorResponse(fields={"S": severity, "V": severity, "C": exc.sqlstate, "M": str(exc)})


async def _serve_client(gateway: Gateway, reader: asyncio.StreamReader, writer) -> None:
    peer = writer.get_extra_info("peername") or ("unknown", 0)
    conn = _Connection(gateway, str(peer[0]))
    try:
        while not conn.closing:
            data = await reader.read(READ_BYTES)
            if not data:
                break
            for msg in conn.wire.receive(data):
                for reply in await conn.on(msg):
                    writer.write(conn.wire.send(reply))
                if conn.closing:
                    break
            await writer.drain()
    except PygwireError as exc:
        logger.info("protocol error from %s: %s", conn.client, exc)
        writer.write(_error(SqlError("protocol error", "08P01"), fatal=True).to_wire())
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    except Exception:
        logger.exception("unexpected error serving %s", conn.client)
        writer.write(_error(SqlError("internal error", "XX000"), fatal=True).to_wire())
    finally:
        if conn.session is not None:
            conn.session.catalog.close()
        writer.close()


async def serve(gateway: Gateway, host: str, port: int, ready: asyncio.Event | None = None):
    server = await asyncio.start_server(
        lambda r, w: _serve_client(gateway, r, w), host, port, limit=READ_BYTES
    )
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()

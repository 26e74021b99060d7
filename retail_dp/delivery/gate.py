"""The gate every HTTP request passes, before FastAPI or GraphQL sees it (an ASGI middleware).

In order: headers over the cap -> 431; on a protected path, a client throttled for failed
sign-ins -> 429, then the caller is authenticated from the header (401), and a caller over
its share of queries -> 429; then the body, refused by its declared length (413) before a
byte is read, read up to the cap (413), and a JSON body with NaN or Infinity -> 400. Only
then does the application parse anything: an unauthenticated or oversized request never
reaches JSON or GraphQL parsing.

On the way out: security headers on every answer, and one audit entry per request, written
before the answer is sent (an answer that cannot be audited becomes a 500).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retail_dp.delivery.limits import AuthThrottle, CallerShare, ServiceLimits, TooMany
from retail_dp.delivery.policies import Caller, Unauthorized

logger = logging.getLogger(__name__)

# paths anyone may read: the hub, the public catalogue and definitions, health, the contract
PUBLIC_PREFIXES = ("/hub/", "/v1/data-products")
PUBLIC_PATHS = {"/", "/hub", "/health", "/openapi.json", "/v1/definitions"}
# protected paths that run queries: they take a share of the caller's query time
QUERY_PATHS = {"/v1/load", "/v1/export", "/v1/meta", "/graphql"}

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
]


class NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFinite(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str):
    raise NotFinite(f"{name} is not a number JSON allows")


def check_json(body: bytes) -> tuple[str | None, Any]:
    """(why a JSON body is unacceptable or None, the parsed body or None). Malformed JSON is
    left to the application (422); non-finite numbers, oversized integers and runaway
    nesting are refused here."""
    try:
        return None, json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except NotFinite as exc:
        return f"non-finite numbers are not accepted: {exc}", None
    except json.JSONDecodeError:
        return None, None
    except (ValueError, RecursionError) as exc:
        return f"the JSON body is not acceptable: {type(exc).__name__}", None


def is_protected(path: str) -> bool:
    return not (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


class Sequencer:
    """This server's identity and request numbers: every request takes the next number when
    it arrives, and its audit entry carries it (a gap is a request that was not audited)."""

    def __init__(self):
        self.instance = uuid.uuid4().hex[:12]
        self._numbers = itertools.count(1)

    def next(self) -> int:
        return next(self._numbers)


def record_refused(service: Any, sequencer: Sequencer, client: str, status: int, detail: dict):
    """A request the HTTP layer refused before the application saw it (headers too large):
    audited like any other."""
    service.audit.record(
        {"time": service.now(), "server": sequencer.instance, "seq": sequencer.next(),
         "request_id": uuid.uuid4().hex, "method": None, "path": None, "endpoint": "unmatched",
         "client": client, "caller": None, "auth": None, "status": status,
         "outcome": "refused", "duration_ms": 0.0, **detail}
    )  # fmt: skip


class Gate:
    """ASGI middleware; `service` gives the policies, the audit log and the clock."""

    def __init__(self, app: ASGIApp, service: Any, limits: ServiceLimits, sequencer: Sequencer):
        self.app = app
        self.service = service
        self.limits = limits
        self.sequencer = sequencer
        self.throttle = AuthThrottle(limits.auth_failures, limits.auth_window_s)
        self.share = CallerShare(
            limits.caller_concurrency, limits.caller_query_seconds, limits.caller_queue_s
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _Request(self, scope, receive, send)
        await request.run()


class _Request:
    def __init__(self, gate: Gate, scope: Scope, receive: Receive, send: Send):
        self.gate = gate
        self.scope = scope
        self.receive = receive
        self.send = send
        self.seq = gate.sequencer.next()
        self.started = time.perf_counter()
        self.request_id = uuid.uuid4().hex
        self.client = (scope.get("client") or ("unknown", 0))[0]
        self.path: str = scope["path"]
        self.audit: dict = {}
        self.caller: Caller | None = None
        self.admitted = False
        self.held: list[Message] = []
        self.status = 500
        self.body_bytes = 0
        self.parsed: Any = None
        state = scope.setdefault("state", {})
        state["audit"] = self.audit

    async def run(self) -> None:
        try:
            refusal = await self._admit()
            if refusal is None:
                await self._call_app()
            else:
                self._answer(*refusal)
        finally:
            if self.admitted and self.caller is not None:
                self.gate.share.leave(self.caller.name, time.perf_counter() - self.started)
        await self._audit_and_send()

    async def _admit(self) -> tuple | None:
        limits = self.gate.limits
        header_bytes = sum(len(k) + len(v) for k, v in self.scope["headers"])
        if header_bytes > limits.max_header_bytes:
            return 431, f"the request headers exceed {limits.max_header_bytes} bytes"
        if is_protected(self.path):
            refusal = await self._authenticate()
            if refusal is not None:
                return refusal
        return await self._read_body()

    async def _authenticate(self) -> tuple | None:
        scheme, _, token = self._header(b"authorization").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        try:
            self.gate.throttle.check(self.client)
        except TooMany as exc:
            return 429, str(exc), [(b"retry-after", str(exc.retry_after).encode())]
        try:
            caller = self.gate.service.policies.authenticate(token or None)
        except Unauthorized as exc:
            if token:
                self.gate.throttle.failed(self.client)
            return 401, str(exc), [(b"www-authenticate", b"Bearer")]
        self.caller = caller
        self.scope["state"]["caller"] = caller
        self.audit.update(caller=caller.name, auth=caller.via, groups=list(caller.groups))
        if self.path in QUERY_PATHS:
            try:
                await self.gate.share.enter(caller.name)
            except TooMany as exc:
                return 429, str(exc), [(b"retry-after", str(exc.retry_after).encode())]
            self.admitted = True
        return None

    async def _read_body(self) -> tuple | None:
        cap = self.gate.limits.max_body_bytes
        declared = self._header(b"content-length")
        if declared:
            if not declared.isdigit():
                return 400, "Content-Length is not a number"
            if int(declared) > cap:
                self.audit["body_bytes"] = int(declared)
                return 413, f"the request body exceeds {cap} bytes"
        chunks: list[bytes] = []
        more = self.scope["method"] not in ("GET", "HEAD") or bool(declared)
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return 400, "the client went away"
            chunk = message.get("body", b"")
            self.body_bytes += len(chunk)
            if self.body_bytes > cap:
                self.audit["body_bytes"] = f"more than {cap}"
                return 413, f"the request body exceeds {cap} bytes"
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and "json" in self._header(b"content-type"):
            problem, self.parsed = check_json(body)
            if problem:
                self.audit["body"] = body[:4096].decode("utf-8", "replace")
                return 400, problem
            if self.path == "/graphql" and isinstance(self.parsed, dict):
                self.audit["graphql"] = {k: self.parsed.get(k) for k in
                                         ("operationName", "query", "variables")}  # fmt: skip
        self._replay(body)
        return None

    def _replay(self, body: bytes) -> None:
        sent = False
        original = self.receive

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await original()

        self.receive = receive

    async def _call_app(self) -> None:
        async def hold(message: Message) -> None:
            self.held.append(message)

        try:
            await self.gate.app(self.scope, self.receive, hold)
        except Exception as exc:  # answered 500, and audited like any other request
            logger.exception("unexpected error on %s", self.path)
            self.audit["error"] = f"internal error ({type(exc).__name__})"
            if not any(m["type"] == "http.response.start" for m in self.held):
                self.held.clear()
                self._answer(500, "internal error")

    def _answer(self, status: int, message: str, headers: list | None = None) -> None:
        self.audit.setdefault("error", message)
        body = json.dumps({"error": message, "status": status}).encode()
        self.held = [
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            },  # fmt: skip
            {"type": "http.response.body", "body": body},
        ]

    async def _audit_and_send(self) -> None:
        start = next((m for m in self.held if m["type"] == "http.response.start"), None)
        self.status = start["status"] if start else 500
        try:
            self.gate.service.audit.record(self._entry())
        except Exception:
            logger.exception("cannot write the audit log; refusing to answer")
            self.held.clear()
            self._answer(500, "the request could not be audited")
        for message in self.held:
            if message["type"] == "http.response.start":
                message = {**message, "headers": self._headers_out(message)}
            await self.send(message)

    def _headers_out(self, start: Message) -> list:
        headers = [h for h in start.get("headers", []) if h[0].lower() != b"x-request-id"]
        headers.append((b"x-request-id", self.request_id.encode()))
        have = {h[0].lower() for h in headers}
        headers += [h for h in SECURITY_HEADERS if h[0] not in have]
        if is_protected(self.path) and b"cache-control" not in have:
            headers.append((b"cache-control", b"no-store"))
        return headers

    def _entry(self) -> dict:
        route = self.scope.get("route")
        status = self.status
        outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
        if status == 504:
            outcome = "timeout"
        entry = {
            "time": self.gate.service.now(),
            "server": self.gate.sequencer.instance,
            "seq": self.seq,
            "request_id": self.request_id,
            "method": self.scope["method"],
            "path": self.path,
            "endpoint": getattr(route, "path", None) or "unmatched",
            "client": self.client,
            "caller": None,
            "auth": None,
            "status": status,
            "outcome": outcome,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 2),
            "body_bytes": self.body_bytes,
        }
        if self.scope.get("query_string"):
            entry["query_string"] = self.scope["query_string"].decode("latin-1")
        entry.update(self.audit)
        if self.parsed is not None and "query" not in entry and "graphql" not in entry:
            entry["body"] = self.parsed  # a body the application refused, as it came
        return entry

    def _header(self, name: bytes) -> str:
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return ""


def header_guard(limit: int, on_refused: Callable[[str, int, dict], None]):
    """A uvicorn HTTP protocol (httptools) that stops reading a request whose headers exceed
    `limit` bytes and answers 431: the bytes past the cap are never buffered."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    body = b'{"error": "the request headers are too large", "status": 431}'
    answer = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        + b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip

    class HeaderCappedProtocol(HttpToolsProtocol):
        _header_bytes = 0  # bytes received since the current request's headers began
        _in_headers = True
        _headers_done = 0

        def data_received(self, data: bytes) -> None:
            began_in_headers, done = self._in_headers, self._headers_done
            super().data_received(data)
            # all of this chunk was headers only if they were and still are incomplete
            if began_in_headers and self._headers_done == done:
                self._header_bytes += len(data)
                if self._header_bytes > limit and not self.transport.is_closing():
                    peer = (self.client or ("unknown", 0))[0]
                    on_refused(peer, 431, {"error": f"request headers over {limit} bytes"})
                    self.transport.write(answer)
                    self.transport.close()

        def on_headers_complete(self) -> None:
            self._in_headers, self._headers_done = False, self._headers_done + 1
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_headers, self._header_bytes = True, 0

    return HeaderCappedProtocol

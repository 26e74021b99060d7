"""What one request, one caller and one client may cost the service: the query deadline, the
sizes of a request, concurrency and query time per caller, and failed sign-ins per client.

One validated configuration (`ServiceLimits`), read from RETAIL_DP_* variables in one place.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from retail_dp.delivery.query import QueryLimits

# the variable that sets each limit (all optional)
LIMIT_VARS = {
    "query_timeout_s": "RETAIL_DP_QUERY_TIMEOUT",
    "memory_limit": "RETAIL_DP_SERVE_MEMORY_LIMIT",
    "duckdb_threads": "RETAIL_DP_SERVE_THREADS",
    "max_body_bytes": "RETAIL_DP_MAX_BODY_BYTES",
    "max_header_bytes": "RETAIL_DP_MAX_HEADER_BYTES",
    "caller_concurrency": "RETAIL_DP_CALLER_CONCURRENCY",
    "caller_query_seconds": "RETAIL_DP_CALLER_QUERY_SECONDS",
    "auth_failures": "RETAIL_DP_AUTH_FAILURES",
    "auth_window_s": "RETAIL_DP_AUTH_WINDOW",
    "audit_max_bytes": "RETAIL_DP_AUDIT_MAX_BYTES",
    "audit_backups": "RETAIL_DP_AUDIT_BACKUPS",
}


class ServiceLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # a query running longer is interrupted in DuckDB and answered 504
    query_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # DuckDB's memory for all queries together; a query that needs more is refused (503)
    memory_limit: str = "1GB"
    # DuckDB's threads for all queries together: half the cores, so that one caller's query
    # (a caller runs one at a time) always leaves cores to the others
    duckdb_threads: int = Field(default=max(1, (os.cpu_count() or 2) // 2), ge=1, le=64)
    # the request body (JSON or a GraphQL document) and all request headers together
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # queries one caller may run at once; more wait their turn, up to caller_queue_s (then 429)
    caller_concurrency: int = Field(default=1, ge=1)
    caller_queue_s: float = Field(default=15.0, gt=0)
    # query time one caller may spend per minute, as a bucket refilled evenly (429 when empty)
    caller_query_seconds: float = Field(default=30.0, gt=0)
    # failed sign-ins one client address may make per window before it is answered 429
    auth_failures: int = Field(default=10, ge=1)
    auth_window_s: float = Field(default=60.0, gt=0)
    # the audit log rotates past this size, keeping this many old files
    audit_max_bytes: int = Field(default=50 * 1024 * 1024, ge=4096)
    audit_backups: int = Field(default=10, ge=1)
    # GraphQL documents
    graphql_max_tokens: int = Field(default=2000, ge=10)
    graphql_max_depth: int = Field(default=8, ge=2)
    graphql_max_aliases: int = Field(default=5, ge=1)
    query: QueryLimits = QueryLimits()

    @classmethod
    def from_env(cls) -> ServiceLimits:
        values = {name: os.environ[var] for name, var in LIMIT_VARS.items() if os.environ.get(var)}
        return cls(**values)


class TooMany(Exception):
    """A caller or client over its share (HTTP 429); `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


@dataclass
class _Bucket:
    level: float
    at: float


@dataclass
class AuthThrottle:
    """Failed sign-ins per client address: after `failures` in `window` seconds, the client
    is refused (429) without its credentials being checked, until the window has passed."""

    failures: int
    window: float
    _failed: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failed.get(client, []) if now - t < self.window]
            if recent:
                self._failed[client] = recent
            else:
                self._failed.pop(client, None)
            if len(recent) >= self.failures:
                raise TooMany(
                    f"too many failed sign-ins from {client}; try again later",
                    self.window - (now - recent[0]),
                )

    def failed(self, client: str) -> None:
        with self._lock:
            self._failed.setdefault(client, []).append(time.monotonic())
            if len(self._failed) > 100_000:  # bounded: forget the oldest clients
                for key in list(self._failed)[:50_000]:
                    del self._failed[key]


class CallerShare:
    """Per caller: at most `concurrency` queries at once (more wait, on the event loop, up
    to `queue_s`), and query time from a bucket of `seconds` refilled at `seconds` per
    minute. A heavy caller waits on its own share; the others keep theirs. Used from the
    event loop only."""

    def __init__(self, concurrency: int, seconds: float, queue_s: float):
        self.concurrency = concurrency
        self.seconds = seconds
        self.queue_s = queue_s
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._buckets: dict[str, _Bucket] = {}

    async def enter(self, caller: str) -> None:
        bucket = self._refilled(caller, time.monotonic())
        if bucket.level <= 0:
            raise TooMany(
                f"caller {caller!r} has used its query time for now; retry later",
                -bucket.level / (self.seconds / 60) + 1,
            )
        slots = self._slots.setdefault(caller, asyncio.Semaphore(self.concurrency))
        try:
            await asyncio.wait_for(slots.acquire(), self.queue_s)
        except TimeoutError:
            raise TooMany(
                f"caller {caller!r} already has {self.concurrency} queries running and more "
                "waiting",
                1,
            ) from None

    def leave(self, caller: str, seconds: float) -> None:
        self._slots[caller].release()
        self._refilled(caller, time.monotonic()).level -= seconds

    def _refilled(self, caller: str, now: float) -> _Bucket:
        bucket = self._buckets.setdefault(caller, _Bucket(self.seconds, now))
        bucket.level = min(self.seconds, bucket.level + (now - bucket.at) * self.seconds / 60)
        bucket.at = now
        return bucket

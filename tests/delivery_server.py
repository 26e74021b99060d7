"""A real delivery service process on loopback, for the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

JWT_SECRET = "test-secret-for-signing-jwts-0123456789"

KEYS = {
    "marketing": "rdp_demo_marketing_2026",
    "regional": "rdp_demo_regional_es_2026",
    "sales": "rdp_demo_sales_2026",
    "steward": "rdp_demo_steward_2026",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`retail-dp <command> --warehouse W --port P [args]` on a free loopback port, with the
    tests' secrets; `env` sets limits (RETAIL_DP_*). Subclasses say when it is ready."""

    command = "serve"
    startup_seconds = 90

    def __init__(
        self,
        warehouse: Path,
        audit_log: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = ("--demo",),
    ):
        self.port = free_port()
        self.audit_log = audit_log
        env = {
            **os.environ,
            "RETAIL_DP_JWT_SECRET": JWT_SECRET,
            "RETAIL_DP_AUDIT_LOG": str(audit_log),
            "RETAIL_DP_MASKING_SALT": "test-salt",
            **(env or {}),
        }
        audit_log.parent.mkdir(parents=True, exist_ok=True)
        self.output = audit_log.parent / f"{self.command}-{self.port}.log"
        self.log = open(self.output, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "retail_dp.cli", self.command, "--warehouse", str(warehouse)]
            + ["--port", str(self.port), *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_seconds
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command} exited: {self.output.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.command} did not start in {self.startup_seconds} s")
            time.sleep(0.3)

    def ready(self) -> bool:
        raise NotImplementedError

    def audit(self) -> list[dict]:
        """Every audit entry, rotated files included, oldest first."""
        import json

        rotated = sorted(self.audit_log.parent.glob(f"{self.audit_log.name}.*"),
                         key=lambda p: int(p.suffix[1:]), reverse=True)  # fmt: skip
        files = [*rotated, self.audit_log]
        return [json.loads(x) for f in files if f.exists() for x in f.read_text().splitlines() if x]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Server(ServerProcess):
    """The delivery service (REST, GraphQL, hub)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(
        self, who: str | None = None, token: str | None = None, source: str | None = None
    ) -> httpx.Client:
        """A client as `who` (a demo caller) or with `token`; `source` is a loopback address
        to connect from (127.0.0.2, ...), so the server sees another client."""
        token = token or (KEYS[who] if who else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.HTTPTransport(local_address=source) if source else None
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, transport=transport)


def token(subject: str, groups: list[str], minutes: int = 30) -> str:
    """A JWT the test servers accept: a caller of its own (per-caller limits apply per
    subject), in `groups`."""
    from datetime import UTC, datetime, timedelta

    import jwt

    now = datetime.now(UTC)
    claims = {"sub": subject, "groups": groups, "aud": "retail_dp", "iat": now,
              "exp": now + timedelta(minutes=minutes)}  # fmt: skip
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")

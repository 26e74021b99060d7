"""Published snapshots: what consumers read.

A run whose blocking checks passed copies the consumer-facing schemas into a new DuckDB file
and swaps a pointer (`CURRENT`) to it with an atomic rename. The service reads only the file
the pointer names, read-only, and moves to a new one between requests: a request runs on one
snapshot from start to end, a failed or running build never shows, and the pipeline never
waits on a reader (the files it writes are new; the ones readers hold are never rewritten).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

logger = logging.getLogger(__name__)

POINTER = "CURRENT"
PUBLISHED_SCHEMAS = ("marts", "semantic", "monitor")
KEEP = 3  # snapshots kept on disk, the current one included


def published_dir(warehouse: Path) -> Path:
    return warehouse.parent / "published"


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    run_id: str
    as_of: str
    published_at: str
    tables: dict[str, int]
    checks: list[dict]


def publish(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    run_id: str,
    as_of: datetime,
    checks: list[dict],
) -> tuple[Path, SnapshotInfo]:
    """Copy the published schemas from the warehouse `con` into a new file under `target` and
    point CURRENT at it. Returns the file and what it holds."""
    snapshots = target / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    # snapshots hold unmasked PII: owner-only, whatever the umask
    for folder in (target, snapshots):
        folder.chmod(0o700)
    published_at = datetime.now(UTC).replace(tzinfo=None)
    snapshot_id = f"{published_at:%Y%m%dT%H%M%S}-{run_id[:8]}-{uuid.uuid4().hex[:4]}"
    final = snapshots / f"{snapshot_id}.duckdb"
    partial = final.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    alias = "publishing"
    tables = {}
    con.execute(f"ATTACH '{partial}' AS {alias}")
    try:
        rows = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_type = 'BASE TABLE' "
            f"AND table_schema IN ({', '.join('?' for _ in PUBLISHED_SCHEMAS)}) ORDER BY 1, 2",
            list(PUBLISHED_SCHEMAS),
        ).fetchall()
        for schema in sorted({s for s, _ in rows}):
            con.execute(f'CREATE SCHEMA {alias}."{schema}"')
        for schema, name in rows:
            con.execute(
                f'CREATE TABLE {alias}."{schema}"."{name}" AS SELECT * FROM "{schema}"."{name}"'
            )
            count = con.execute(f'SELECT count(*) FROM {alias}."{schema}"."{name}"').fetchall()
            tables[f"{schema}.{name}"] = count[0][0]
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            run_id=run_id,
            as_of=as_of.isoformat(sep=" "),
            published_at=published_at.isoformat(sep=" ", timespec="seconds"),
            tables=tables,
            checks=checks,
        )
        con.execute(f"CREATE SCHEMA {alias}.published")
        con.execute(f"CREATE TABLE {alias}.published.snapshot (info JSON)")
        con.execute(
            f"INSERT INTO {alias}.published.snapshot VALUES (?)", [json.dumps(info.__dict__)]
        )
    except BaseException:
        con.execute(f"DETACH {alias}")
        partial.unlink(missing_ok=True)
        raise
    con.execute(f"DETACH {alias}")
    partial.chmod(0o600)
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, final)
    _point_to(target, final.name)
    _prune(snapshots, keep=final.name)
    return final, info


def _point_to(target: Path, name: str) -> None:
    tmp = target / f".{POINTER}.{uuid.uuid4().hex}"
    tmp.write_text(name + "\n")
    with open(tmp) as f:
        os.fsync(f.fileno())
    os.replace(tmp, target / POINTER)  # atomic: readers see the old name or the new one


def _prune(snapshots: Path, keep: str) -> None:
    """Keep the newest KEEP snapshots; a reader still holding an older file keeps reading it
    (an unlinked file stays readable while open)."""
    files = sorted(snapshots.glob("*.duckdb"), key=lambda p: p.name, reverse=True)
    for old in files[KEEP:]:
        if old.name != keep:
            old.unlink(missing_ok=True)


def current_name(target: Path) -> str | None:
    try:
        return (target / POINTER).read_text().strip() or None
    except FileNotFoundError:
        return None


class Snapshot:
    """One published file, opened read-only under the catalog name the SQL expects.

    DuckDB's memory for all of its queries is bounded and nothing spills to disk (no temp
    directory): a query that needs more is refused, it never takes the machine."""

    def __init__(self, path: Path, database: str, memory_limit: str = "1GB", threads: int = 2):
        self.path = path
        self.database = database
        self.con = duckdb.connect(
            ":memory:",
            config={"threads": threads, "memory_limit": memory_limit, "temp_directory": ""},
        )
        self.con.execute(f"ATTACH '{path}' AS \"{database}\" (READ_ONLY)")
        self.con.execute(f'USE "{database}"')
        raw = self.con.execute("SELECT info FROM published.snapshot").fetchall()[0][0]
        self.info = SnapshotInfo(**json.loads(raw))

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """One per request (cursors of one connection are thread-safe), reading the snapshot
        by default (a cursor starts in the in-memory catalog)."""
        cur = self.con.cursor()
        cur.execute(f'USE "{self.database}"')
        return cur

    def close(self) -> None:
        self.con.close()


class NoSnapshot(Exception):
    """Nothing has been published yet (HTTP 503)."""


class SnapshotReader:
    """The service's view of the published directory: the current snapshot, reopened when the
    pointer moves. Callers take `current()` once per request and use only that."""

    def __init__(self, target: Path, database: str, memory_limit: str = "1GB", threads: int = 2):
        self.target = target
        self.database = database
        self.memory_limit = memory_limit
        self.threads = threads
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._name: str | None = None
        self._broken: str | None = None

    def current(self) -> Snapshot:
        name = current_name(self.target)
        if name is None:
            if self._snapshot is not None:
                return self._snapshot  # the pointer vanished: keep serving what we have
            raise NoSnapshot("nothing published yet; run `retail-dp run` (or make run)")
        if name == self._name and self._snapshot is not None:
            return self._snapshot
        with self._lock:
            if name != self._name and name != self._broken:
                try:
                    opened = Snapshot(
                        self.target / "snapshots" / name,
                        self.database,
                        self.memory_limit,
                        self.threads,
                    )
                except (duckdb.Error, OSError, KeyError, IndexError, TypeError) as exc:
                    # keep serving the snapshot we have; try the broken one no more
                    self._broken = name
                    logger.error("cannot open snapshot %s, keeping the current one: %s", name, exc)
                    if self._snapshot is None:
                        raise NoSnapshot(f"the published snapshot {name} cannot be read") from exc
                    return self._snapshot
                # the previous snapshot's connection closes when its last request lets go
                self._snapshot, self._name = opened, name
            if self._snapshot is None:
                raise NoSnapshot(f"the published snapshot {name} cannot be read")
            return self._snapshot

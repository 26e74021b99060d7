"""Published snapshots: what consumers read.

A run whose blocking checks passed copies the consumer-facing schemas into a new DuckDB file
and swaps a pointer (`CURRENT`) to it with an atomic rename. The service reads only the file
the pointer names, read-only, and moves to a new one between requests: a request runs on one
snapshot from start to end, a failed or running build never shows, and the pipeline never
waits on a reader (the files it writes are new; the ones readers hold are never rewritten).

A big table whose dbt YAML names a column in `meta.publish_parts_by` (fct_purchase, by month) is
published as Parquet parts, one per value of that column, under `parts/`, and the snapshot
holds a view over them. A part's name is its content's fingerprint (row count and the sum of
the rows' hashes), so a daily run writes only the months it changed and shares the rest with
the snapshots before it. Each snapshot lists its parts beside it (`<id>.parts.json`); a part
no kept snapshot lists is deleted. The views name the parts by absolute path: a copy of the
published folder elsewhere still reads the originals.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from retail_dp.sources.rules import ident, literal

logger = logging.getLogger(__name__)

POINTER = "CURRENT"
PUBLISHED_SCHEMAS = ("marts", "semantic", "monitor")
KEEP = 3  # snapshots kept on disk, the current one included
PARTS = "parts"
PARTS_LIST = ".parts.json"  # beside each snapshot: the parts its views read


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
    parts: dict[str, list[str]] = field(default_factory=dict)  # table -> its Parquet parts


def publish(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    run_id: str,
    as_of: datetime,
    checks: list[dict],
    parts_by: dict[str, str] | None = None,
) -> tuple[Path, SnapshotInfo]:
    """Copy the published schemas from the warehouse `con` into a new file under `target` and
    point CURRENT at it. Returns the file and what it holds. `parts_by`: the tables
    (`schema.name`) published as Parquet parts, by the column that splits them."""
    parts_by = parts_by or {}
    snapshots = target / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    (target / PARTS).mkdir(exist_ok=True)
    # snapshots hold unmasked PII: owner-only, whatever the umask
    for folder in (target, snapshots, target / PARTS):
        folder.chmod(0o700)
    published_at = datetime.now(UTC).replace(tzinfo=None)
    snapshot_id = f"{published_at:%Y%m%dT%H%M%S}-{run_id[:8]}-{uuid.uuid4().hex[:4]}"
    final = snapshots / f"{snapshot_id}.duckdb"
    partial = final.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    alias = "publishing"
    tables, parts = {}, {}
    con.execute(f"ATTACH {literal(partial)} AS {alias}")
    try:
        rows = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_type = 'BASE TABLE' "
            f"AND table_schema IN ({', '.join('?' for _ in PUBLISHED_SCHEMAS)}) ORDER BY 1, 2",
            list(PUBLISHED_SCHEMAS),
        ).fetchall()
        for schema in sorted({s for s, _ in rows}):
            con.execute(f"CREATE SCHEMA {alias}.{ident(schema)}")
        for schema, name in rows:
            source = f"{ident(schema)}.{ident(name)}"
            table, copy = f"{schema}.{name}", f"{alias}.{source}"
            files = []
            if table in parts_by:
                files = write_parts(con, target / PARTS, source, parts_by[table])
            if files:
                paths = ", ".join(literal(target / PARTS / f) for f in files)
                con.execute(f"CREATE VIEW {copy} AS SELECT * FROM read_parquet([{paths}])")
                parts[table] = files
            else:  # not split, or no rows to split
                con.execute(f"CREATE TABLE {copy} AS SELECT * FROM {source}")
            tables[table] = con.execute(f"SELECT count(*) FROM {copy}").fetchall()[0][0]
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            run_id=run_id,
            as_of=as_of.isoformat(sep=" "),
            published_at=published_at.isoformat(sep=" ", timespec="seconds"),
            tables=tables,
            checks=checks,
            parts=parts,
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
    _write_atomically(
        parts_list(final), json.dumps(sorted({f for fs in parts.values() for f in fs}))
    )
    os.replace(partial, final)
    _point_to(target, final.name)
    _prune(snapshots, keep=final.name)
    prune_parts(target)
    return final, info


def write_parts(con: duckdb.DuckDBPyConnection, folder: Path, table: str, column: str) -> list[str]:
    """The Parquet parts of `table`, one per value of `column`, named by their content; writes
    the ones not on disk yet (in one pass over the table). Returns the parts' file names."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _publish_parts AS
        SELECT t.{ident(column)} AS value,
            regexp_replace(
                coalesce(CAST(t.{ident(column)} AS VARCHAR), 'null'), '[^0-9A-Za-z]+', '-', 'g'
            )
            || '-' || left(md5(count(*)::VARCHAR || ':' || sum(hash(t)::HUGEINT)::VARCHAR), 16)
            || '.parquet' AS part
        FROM {table} t GROUP BY 1"""
    )
    try:
        names = [r[0] for r in con.execute("SELECT part FROM _publish_parts ORDER BY 1").fetchall()]
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            scratch = folder / f".writing-{uuid.uuid4().hex}"
            try:
                con.execute(
                    f"""COPY (
                        SELECT t.*, p.part AS _part FROM {table} t
                        JOIN _publish_parts p ON t.{ident(column)} IS NOT DISTINCT FROM p.value
                        WHERE list_contains(?, p.part)
                    ) TO {literal(scratch)} (FORMAT parquet, PARTITION_BY (_part))""",
                    [missing],
                )
                for name in missing:
                    [written] = (scratch / f"_part={name}").glob("*.parquet")
                    written.chmod(0o600)
                    with open(written, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(written, folder / name)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return names
    finally:
        con.execute("DROP TABLE IF EXISTS _publish_parts")


def parts_list(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.stem + PARTS_LIST)


def prune_parts(target: Path) -> list[str]:
    """Delete the parts no snapshot on disk lists (and the lists of snapshots gone). Returns
    the parts deleted."""
    snapshots, folder = target / "snapshots", target / PARTS
    kept = set()
    for listing in snapshots.glob(f"*{PARTS_LIST}"):
        snapshot = listing.with_name(listing.name.removesuffix(PARTS_LIST) + ".duckdb")
        if snapshot.exists():
            kept.update(json.loads(listing.read_text()))
        else:
            listing.unlink(missing_ok=True)
    deleted = []
    for part in folder.glob("*.parquet") if folder.exists() else []:
        if part.name not in kept:
            part.unlink(missing_ok=True)
            deleted.append(part.name)
    for scratch in folder.glob(".writing-*") if folder.exists() else []:
        shutil.rmtree(scratch, ignore_errors=True)  # left by a publish that was killed
    return sorted(deleted)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text)
    tmp.chmod(0o600)
    with open(tmp) as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _point_to(target: Path, name: str) -> None:
    _write_atomically(target / POINTER, name + "\n")  # readers see the old name or the new one


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

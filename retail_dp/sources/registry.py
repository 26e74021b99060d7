"""What each source's loads took from the landing zone, and what the next load must do.

A refresh loads only the landing files that are new or changed since the last load; every row
already loaded stays where it is (accepted, quarantined or deferred). The warehouse records:

- `sources.loads`: one row per load, with its mode (`full` or `increment`) and why;
- `sources.landing_files`: every file loaded, by path, size, modification time and SHA-256,
  with its row counts, and the load that retracted it when it changed or disappeared;
- `sources.changes`: the keys whose accepted row a load added or removed (an update is both),
  with the customer they belong to: what the dbt models downstream refresh;
- `sources.load_state`: per source, the last load and what a full reload depends on (the
  contract, the erasure list, as_of).

A load is full when nothing was loaded before, the contract or the erasure list changed, as_of
moved back, an upstream source was fully reloaded, or a full refresh was asked for. Otherwise
it is an increment, and after any sequence of increments the accepted table equals a full
load at the same as_of (tested).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandera.pandas as pa

from retail_dp.sources.rules import describe_check

LOADS = "sources.loads"
FILES = "sources.landing_files"
CHANGES = "sources.changes"
STATE = "sources.load_state"
# the columns every accepted table carries beside its contract's: where each row came from
# (file and row within it) and the load that accepted it
LINEAGE = {"_source_file": "VARCHAR", "_source_row": "BIGINT", "_load_id": "BIGINT"}

DDL = (
    f"""CREATE TABLE IF NOT EXISTS {LOADS} (
        load_id BIGINT PRIMARY KEY,
        source VARCHAR NOT NULL,
        mode VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        as_of TIMESTAMP NOT NULL,
        run_id VARCHAR,
        files_loaded INTEGER NOT NULL,
        files_retracted INTEGER NOT NULL,
        rows_read BIGINT NOT NULL,
        keys_changed BIGINT NOT NULL,
        loaded_at TIMESTAMP NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {FILES} (
        source VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        rows_read BIGINT NOT NULL,
        rows_accepted BIGINT NOT NULL,
        rows_quarantined BIGINT NOT NULL,
        rows_deferred BIGINT NOT NULL,
        rows_suppressed BIGINT NOT NULL,
        load_id BIGINT NOT NULL,
        retracted_in BIGINT
    )""",
    f"""CREATE TABLE IF NOT EXISTS {CHANGES} (
        load_id BIGINT NOT NULL,
        source VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        customer_id VARCHAR,
        change VARCHAR NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {STATE} (
        source VARCHAR PRIMARY KEY,
        load_id BIGINT NOT NULL,
        contract_digest VARCHAR NOT NULL,
        suppression_digest VARCHAR NOT NULL,
        as_of TIMESTAMP NOT NULL
    )""",
)


def ensure_registry(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in DDL:
        con.execute(ddl)


@dataclass(frozen=True)
class LandingFile:
    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> LandingFile:
        stat = path.stat()
        return cls(str(path), stat.st_size, stat.st_mtime_ns)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
        return digest.hexdigest()


@dataclass
class Plan:
    """What one load of a source does."""

    source: str
    load_id: int
    mode: str  # "full" or "increment"
    reason: str
    new: list[LandingFile]
    # files loaded before that changed or disappeared: their rows are taken back
    gone: list[str] = field(default_factory=list)
    retained: list[str] = field(default_factory=list)
    # this source's previous load: upstream keys whose accepted row was removed or changed
    # since then are looked up again for every accepted row that references them
    since_load: int = 0

    @property
    def full(self) -> bool:
        return self.mode == "full"


def contract_digest(schema: pa.DataFrameSchema) -> str:
    """Changes whenever the contract would judge a row differently."""
    described = {
        name: [str(column.dtype), column.nullable, [describe_check(c) for c in column.checks]]
        for name, column in schema.columns.items()
    }
    text = json.dumps([described, schema.metadata], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def suppression_digest(digests: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()[:16]


def _table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return {r[0] for r in rows}


def plan_load(
    con: duckdb.DuckDBPyConnection,
    schema: pa.DataFrameSchema,
    paths: tuple[Path, ...],
    upstream: list[str],
    as_of: datetime,
    suppressed: list[str],
    full_refresh: bool = False,
) -> Plan:
    """Compare the landing files with what the warehouse loaded and decide the load (the
    registry's tables exist: `ensure_registry`)."""
    source = schema.name
    load_id = con.execute(f"SELECT coalesce(max(load_id), 0) + 1 FROM {LOADS}").fetchall()[0][0]
    current = [LandingFile.of(p) for p in paths]
    state = con.execute(
        f"SELECT load_id, contract_digest, suppression_digest, as_of FROM {STATE} WHERE source = ?",
        [source],
    ).fetchall()
    full_because = None
    if full_refresh:
        full_because = "a full refresh was asked for"
    elif not state:
        full_because = "nothing was loaded before"
    elif not set(LINEAGE) <= _table_columns(con, "sources", source):
        full_because = "the accepted table predates row lineage"
    else:
        last_load, last_contract, last_suppression, last_as_of = state[0]
        if last_contract != contract_digest(schema):
            full_because = "the contract changed"
        elif last_suppression != suppression_digest(suppressed):
            full_because = "the erasure list changed"
        elif as_of < last_as_of:
            full_because = f"as_of moved back from {last_as_of} to {as_of}"
        else:
            for name in upstream:
                fully = con.execute(
                    f"SELECT count(*) FROM {LOADS} WHERE source = ? AND mode = 'full' "
                    "AND load_id > ?",
                    [name, last_load],
                ).fetchall()[0][0]
                if fully:
                    full_because = f"{name} was fully reloaded"
                    break
    if full_because:
        return Plan(source, load_id, "full", full_because, new=current)
    last_load = state[0][0]
    loaded = {
        path: (size, mtime)
        for path, size, mtime in con.execute(
            f"SELECT path, size, mtime_ns FROM {FILES} WHERE source = ? AND retracted_in IS NULL",
            [source],
        ).fetchall()
    }
    now = {f.path: f for f in current}
    new = [f for f in current if loaded.get(f.path) != (f.size, f.mtime_ns)]
    gone = sorted(p for p in loaded if p not in now or loaded[p] != (now[p].size, now[p].mtime_ns))
    retained = sorted(p for p in loaded if p not in gone)
    reason = f"{len(new)} new or changed file(s), {len(gone)} retracted"
    return Plan(source, load_id, "increment", reason, new, gone, retained, int(last_load))


def record_load(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    schema: pa.DataFrameSchema,
    as_of: datetime,
    run_id: str | None,
    suppressed: list[str],
    per_file: dict[str, tuple[int, int, int, int, int]],
    keys_changed: int,
) -> None:
    """Write the load, its files and the source's state (inside the load's transaction)."""
    source = plan.source
    if plan.full:
        con.execute(
            f"UPDATE {FILES} SET retracted_in = ? WHERE source = ? AND retracted_in IS NULL",
            [plan.load_id, source],
        )
    elif plan.gone:
        con.execute(
            f"UPDATE {FILES} SET retracted_in = ? WHERE source = ? AND retracted_in IS NULL "
            "AND list_contains(?, path)",
            [plan.load_id, source, plan.gone],
        )
    for f in plan.new:
        counts = per_file.get(f.path, (0, 0, 0, 0, 0))
        con.execute(
            f"INSERT INTO {FILES} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            [source, f.path, f.size, f.mtime_ns, f.sha256(), *counts, plan.load_id],
        )
    con.execute(
        f"INSERT INTO {LOADS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
        [
            plan.load_id,
            source,
            plan.mode,
            plan.reason,
            as_of,
            run_id,
            len(plan.new),
            len(plan.gone),
            sum(c[0] for c in per_file.values()),
            keys_changed,
        ],
    )
    con.execute(
        f"INSERT OR REPLACE INTO {STATE} VALUES (?, ?, ?, ?, ?)",
        [source, plan.load_id, contract_digest(schema), suppression_digest(suppressed), as_of],
    )
    _prune_changes(con)


# where the incremental dbt models record the load they have caught up to
REFRESH_WATERMARK = "reference.refresh_watermark"


def _prune_changes(con: duckdb.DuckDBPyConnection) -> None:
    """Forget the changes every reader has consumed: each source has loaded since (they
    judge their references against upstream changes newer than their own last load) and the
    incremental dbt models have caught up past them. Nothing is pruned before dbt has run."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'reference' AND table_name = 'refresh_watermark'"
    ).fetchall()[0][0]
    if not exists:
        return
    con.execute(
        f"""DELETE FROM {CHANGES}
        WHERE load_id <= (SELECT min(load_id) FROM {STATE})
        AND load_id <= (SELECT max(through_load_id) FROM {REFRESH_WATERMARK})"""
    )


def suppressed_rows(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """Rows of erased customers in the files loaded now (dropped before judging)."""
    return con.execute(
        f"SELECT coalesce(sum(rows_suppressed), 0) FROM {FILES} "
        "WHERE source = ? AND retracted_in IS NULL",
        [source],
    ).fetchall()[0][0]

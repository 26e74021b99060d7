"""Dagster resources shared by the source-aligned and consumer-aligned assets."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from retail_dp.settings import ENV_VARS

SPARK_DIR_VAR = ENV_VARS["spark_dir"]


def parse_as_of(value: str) -> datetime:
    """An ISO date or timestamp, read as UTC and kept naive (the warehouse's convention)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"as_of: {value!r} is not an ISO date or timestamp") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.replace(microsecond=0)


class ReferenceTime(dg.ConfigurableResource):
    """The run's one reference time. Unset, it is the run's start, the same for every step."""

    as_of: str | None = None

    def resolve(
        self, context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext
    ) -> datetime:
        if self.as_of:
            return parse_as_of(self.as_of)
        record = context.instance.get_run_record_by_id(context.run.run_id)
        started = record.create_timestamp if record else datetime.now(UTC)
        return started.astimezone(UTC).replace(tzinfo=None, microsecond=0)


class RefreshMode(dg.ConfigurableResource):
    """How a run refreshes. By default it is incremental: sources read only new or changed
    landing files and the per-customer dbt models rebuild only the customers whose lines
    changed. `full_refresh` reloads every source and rebuilds every model from scratch (after
    a change to an incremental model's columns, for instance)."""

    full_refresh: bool = False
    # "auto": refit the models when the last fit is `refit_every_days` old (the consumer
    # descriptor's refresh), else re-score with it; "always" or "never" force the choice
    refit: str = "auto"

    def refit_due(
        self, con: duckdb.DuckDBPyConnection, as_of: datetime, every_days: int
    ) -> tuple[bool, str]:
        """Whether this run refits the models, and why."""
        if self.refit not in ("auto", "always", "never"):
            raise ValueError(f"refit: expected auto, always or never, got {self.refit!r}")
        last = last_fit(con)
        if self.refit == "always" or self.full_refresh:
            return True, "a refit was asked for" if self.refit == "always" else "full refresh"
        if last is None:
            return True, "no fit yet"
        if self.refit == "never":
            return False, f"re-scoring with the fit at {last} (refits switched off)"
        if as_of < last:
            return True, f"as_of is before the last fit at {last}"
        age = (as_of - last).total_seconds() / 86400
        if age >= every_days:
            return True, f"the last fit at {last} is {age:.1f} days old (refit every {every_days})"
        return False, f"re-scoring with the fit at {last} ({age:.1f} days old)"


# one row per model fit: what daily runs re-score with (written by the analytics layer)
MODEL_FITS = "reference.model_fits"
FITTED_MODELS = ("customer_lifetime_value", "cross_sell")


def last_fit(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The as_of of the oldest of the models' newest fits, or None when a model has none."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'reference' AND table_name = 'model_fits'"
    ).fetchall()[0][0]
    if not exists:
        return None
    newest = dict(
        con.execute(f"SELECT model, max(as_of) FROM {MODEL_FITS} GROUP BY model").fetchall()
    )
    if any(model not in newest for model in FITTED_MODELS):
        return None
    return min(newest[model] for model in FITTED_MODELS)


class LandingZone(dg.ConfigurableResource):
    """The folder the sources drop their files into."""

    data_dir: str

    @property
    def path(self) -> Path:
        return Path(self.data_dir)


# DuckDB's message when another process has the file open, e.g. "... Conflicting lock is held
# in /usr/bin/python3.11 (PID 4242). See also ..."
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_CANNOT_OPEN = re.compile(r'Cannot open file "[^"]*": (?P<reason>.+)')


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything in the block is written, or nothing is: a failed load or copy leaves the
    warehouse as it was."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


class WarehouseUnavailable(Exception):
    """The warehouse file cannot be opened. The message is one line, fit for a terminal."""

    def __init__(self, path: Path | str, reason: str, holder: tuple[str, int] | None = None):
        self.path = Path(path)
        self.holder = holder
        if holder:
            program, pid = holder
            message = (
                f"the warehouse {path} is in use by {program} (PID {pid}); "
                "wait for it to finish or stop it"
            )
        else:
            message = f"cannot open warehouse {path}: {reason}"
        super().__init__(message)


def _unavailable(path: Path | str, exc: duckdb.Error) -> WarehouseUnavailable:
    text = str(exc).removeprefix("IO Error: ").strip()
    held = _LOCK_HOLDER.search(text)
    if held:
        return WarehouseUnavailable(path, text, (held["program"], int(held["pid"])))
    cannot = _CANNOT_OPEN.search(text)
    return WarehouseUnavailable(path, cannot["reason"] if cannot else text.splitlines()[0])


def connect_warehouse(
    path: Path | str, read_only: bool = False, config: dict | None = None
) -> duckdb.DuckDBPyConnection:
    """`duckdb.connect`, raising WarehouseUnavailable instead of DuckDB's IOException when
    the file is locked by another process or cannot be opened."""
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config or {})
    except duckdb.IOException as exc:
        raise _unavailable(path, exc) from exc


def probe_warehouse(path: Path, create: bool = True) -> None:
    """Open the warehouse read-write and close it at once, so a run that could not write it
    stops before it starts. `create`: make the file (and its folder) when missing, as a run
    would; otherwise a missing file is refused."""
    if not create and not path.exists():
        raise WarehouseUnavailable(path, "no such file; build it first (retail-dp run)")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise WarehouseUnavailable(path, f"{parent} is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseUnavailable(path, f"{exc.strerror}: {exc.filename}") from exc
    if path.is_dir():
        raise WarehouseUnavailable(path, "it is a directory")
    connect_warehouse(path).close()


def share_of(memory_limit: str, share: float) -> str:
    """`share` of a DuckDB memory limit such as "2GB" or "512MiB", in MiB ("1024MiB");
    the limit itself when the share is 1."""
    if share == 1:
        return memory_limit
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?)B\s*", memory_limit, re.IGNORECASE)
    if not found or not 0 < share < 1:
        raise ValueError(f"cannot take {share} of the DuckDB memory limit {memory_limit!r}")
    number, prefix, binary = found.groups()
    base = 1024 if binary else 1000
    size = float(number) * base ** "BKMGT".index(prefix.upper() or "B")
    return f"{max(1, int(size * share / 2**20))}MiB"


class Warehouse(DuckDBResource):
    """The DuckDB warehouse file. Unlike the stock resource, it closes its connection when the
    asset body raises too, so a failed step never keeps the file's write lock; and a file
    another process holds fails the step with one line naming that process."""

    memory_limit: str = "2GB"

    @contextmanager
    def get_connection(self, memory_share: float = 1.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """`memory_share`: the part of `memory_limit` DuckDB may use, for a step whose own
        frames need the rest."""
        try:
            con = connect_warehouse(
                self.database,
                config={
                    "custom_user_agent": "retail_dp",
                    "memory_limit": share_of(self.memory_limit, memory_share),
                },
            )
        except WarehouseUnavailable as exc:
            # from None: the message says it all; DuckDB's stack would only bury it
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        try:
            yield con
        finally:
            con.close()


class Engine(dg.ConfigurableResource):
    """Which engine loads and transforms: DuckDB (the default) or Spark (retail_dp/spark).
    Whichever it is, the DuckDB warehouse ends up with the same tables and serves them."""

    name: str = "duckdb"
    # the Spark engine's lake, tables and metastore (Settings.spark_dir)
    spark_dir: str = ""

    @property
    def is_spark(self) -> bool:
        return self.name == "spark"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.is_spark:
            # dbt-spark's profile reads it (dbt_project/profiles.yml); dbt inherits the env
            os.environ[SPARK_DIR_VAR] = str(Path(self.spark_dir).resolve())

    def spark(self):
        """This process's Spark session (pyspark from the [spark] extra)."""
        from retail_dp.spark.session import spark_session

        return spark_session(Path(self.spark_dir).resolve())

"""Dagster resources shared by the source-aligned and consumer-aligned assets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource


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


class LandingZone(dg.ConfigurableResource):
    """The folder the sources drop their files into."""

    data_dir: str

    @property
    def path(self) -> Path:
        return Path(self.data_dir)


class Warehouse(DuckDBResource):
    """The DuckDB warehouse file. Unlike the stock resource, it closes its connection when the
    asset body raises too, so a failed step never keeps the file's write lock."""

    memory_limit: str = "2GB"

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(
            self.database,
            config={"custom_user_agent": "retail_dp", "memory_limit": self.memory_limit},
        )
        try:
            yield con
        finally:
            con.close()

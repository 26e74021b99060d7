"""The lake: the Spark engine's tables as Parquet folders, `<spark_dir>/lake/<schema>/<table>`.

The Python steps write dbt's inputs here (the accepted sources, the run context, the fitted
marts); dbt-spark registers them as external tables before it builds (dbt_project's
`register_lake` hook) and writes its own tables under `<spark_dir>/warehouse`. DuckDB reads
both with `read_parquet`, which is how a Spark build reaches the DuckDB warehouse that serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from retail_dp.sources.rules import literal

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class Lake:
    root: Path

    @classmethod
    def of(cls, spark_dir: Path) -> Lake:
        return cls(spark_dir / "lake")

    def path(self, schema: str, table: str) -> Path:
        return self.root / schema / table

    def write(self, frame: DataFrame, schema: str, table: str) -> None:
        frame.write.mode("overwrite").parquet(str(self.path(schema, table)))

    def reader(self, schema: str, table: str) -> str:
        """DuckDB's reader of a lake table."""
        return f"read_parquet({literal(str(self.path(schema, table) / '*.parquet'))})"

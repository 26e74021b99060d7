"""The Spark session the product's Python steps use, configured like dbt-spark's.

Spark runs in local mode by default, using every core. A cluster is reached the standard way:
`RETAIL_DP_SPARK_MASTER` (a `spark://`, `yarn` or `k8s://` master URL) or Spark Connect's
`SPARK_REMOTE` (`sc://host:15002`), read by pyspark itself. This session keeps its catalog in
memory: it reads landing files and writes Parquet to the lake, while the tables dbt builds are
registered in dbt-spark's own metastore (dbt_project/profiles.yml), which one JVM at a time
can open.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_VAR = "RETAIL_DP_SPARK_MASTER"
# the settings both this session and dbt-spark's run with: timestamps are UTC instants
# (TIMESTAMP, never TIMESTAMP_NTZ) and Parquet stores them as microseconds, which DuckDB reads
COMMON_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.inferTimestampNTZ.enabled": "false",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.shuffle.partitions": os.environ.get("RETAIL_DP_SPARK_SHUFFLE_PARTITIONS", "4"),
    "spark.driver.memory": os.environ.get("RETAIL_DP_SPARK_DRIVER_MEMORY", "2g"),
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


class SparkNotInstalled(RuntimeError):
    """The Spark engine was asked for without the `[spark]` extra."""


@cache
def spark_session(spark_dir: Path) -> SparkSession:
    """The process's Spark session (one per process, as Spark allows)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkNotInstalled(
            "the Spark engine needs pyspark: `make install-spark` "
            "(pip install -c requirements.lock -e '.[spark]')"
        ) from exc
    builder = SparkSession.builder.appName("retail_dp")
    if not os.environ.get("SPARK_REMOTE"):
        builder = builder.master(os.environ.get(MASTER_VAR, "local[*]")).config(
            "spark.sql.catalogImplementation", "in-memory"
        )
        builder = builder.config("spark.sql.warehouse.dir", str(spark_dir / "scratch"))
    for key, value in COMMON_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session

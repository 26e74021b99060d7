"""Where things live: one validated configuration, loaded in one place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# the delivery service's API contract, committed; a test fails when the app drifts from it
OPENAPI_DOC = PROJECT_ROOT / "docs" / "openapi.json"

# the settings a deployment may move, and the environment variable that moves each
ENV_VARS: dict[str, str] = {
    "data_dir": "RETAIL_DP_DATA_DIR",
    "warehouse": "RETAIL_DP_WAREHOUSE",
    "descriptors_dir": "RETAIL_DP_DESCRIPTORS_DIR",
    "policies": "RETAIL_DP_POLICIES",
    "dagster_home": "DAGSTER_HOME",
    "spark_dir": "RETAIL_DP_SPARK_DIR",
}
MEMORY_LIMIT_VAR = "RETAIL_DP_DUCKDB_MEMORY_LIMIT"
# which engine transforms the data: DuckDB (the default) or Spark (retail_dp/spark)
ENGINE_VAR = "RETAIL_DP_ENGINE"
ENGINES = ("duckdb", "spark")


class Settings(BaseModel):
    # extra="forbid": a misspelt override fails loudly instead of falling back to a default
    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = PROJECT_ROOT / "data" / "landing"
    warehouse: Path = PROJECT_ROOT / "data" / "warehouse" / "retail_dp.duckdb"
    descriptors_dir: Path = PROJECT_ROOT / "data_products"
    # the delivery service's access policies (groups, callers, masking, row filters)
    policies: Path = PROJECT_ROOT / "data_products" / "access" / "policies.yaml"
    dbt_project_dir: Path = PROJECT_ROOT / "dbt_project"
    dagster_home: Path = PROJECT_ROOT / "dagster_home"
    # DuckDB's own default is 80% of RAM; bounded, it spills large joins to <warehouse>.tmp
    duckdb_memory_limit: str = "2GB"
    # DuckDB does everything by default; with "spark", Spark loads and transforms, and DuckDB
    # keeps serving (the `[spark]` extra installs it)
    engine: Literal["duckdb", "spark"] = "duckdb"
    # the Spark engine's files: its lake of inputs, its tables and its metastore
    spark_dir: Path = PROJECT_ROOT / "data" / "spark"

    @classmethod
    def from_env(cls, engine: str | None = None, **overrides: Path | str | None) -> Settings:
        """Each setting from its override if given (not None), else from its environment
        variable (see ENV_VARS, ENGINE_VAR) if set and not empty, else the default."""
        unknown = sorted(set(overrides) - set(ENV_VARS))
        if unknown:
            raise TypeError(f"Settings.from_env: no such setting {unknown[0]!r}")
        values: dict[str, Path | str] = {}
        for name, var in ENV_VARS.items():
            value = overrides.get(name)
            if value is None:
                # an empty variable counts as unset: Path("") would silently mean the cwd
                value = os.environ.get(var) or None
            if value is not None:
                values[name] = Path(value).expanduser().resolve()
        memory = os.environ.get(MEMORY_LIMIT_VAR)
        if memory:
            values["duckdb_memory_limit"] = memory
        engine = engine or os.environ.get(ENGINE_VAR) or None
        if engine is not None:
            if engine not in ENGINES:
                raise ValueError(
                    f"{ENGINE_VAR}={engine!r}: the engine is one of {', '.join(ENGINES)}"
                )
            values["engine"] = engine
        return cls(**values)


def env_help(name: str, what: str) -> str:
    """A `--help` text naming the setting's environment variable and its default."""
    default = Settings.model_fields[name].default
    return f"{what} (default: ${ENV_VARS[name]}, else {default})"

"""Where things live: one validated configuration, loaded in one place."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# the delivery service's API contract, committed; a test fails when the app drifts from it
OPENAPI_DOC = PROJECT_ROOT / "docs" / "openapi.json"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_dir: Path = PROJECT_ROOT / "data" / "landing"
    warehouse: Path = PROJECT_ROOT / "data" / "warehouse" / "retail_dp.duckdb"
    descriptors_dir: Path = PROJECT_ROOT / "data_products"
    # the delivery service's access policies (groups, callers, masking, row filters)
    policies: Path = PROJECT_ROOT / "data_products" / "access" / "policies.yaml"
    dbt_project_dir: Path = PROJECT_ROOT / "dbt_project"
    dagster_home: Path = PROJECT_ROOT / "dagster_home"
    # DuckDB's own default is 80% of RAM; bounded, it spills large joins to <warehouse>.tmp
    duckdb_memory_limit: str = "2GB"

    @classmethod
    def from_env(cls, **overrides: Path | str | None) -> Settings:
        """Defaults, then RETAIL_DP_* / DAGSTER_HOME from the environment, then overrides."""
        env = {
            "data_dir": os.environ.get("RETAIL_DP_DATA_DIR"),
            "warehouse": os.environ.get("RETAIL_DP_WAREHOUSE"),
            "descriptors_dir": os.environ.get("RETAIL_DP_DESCRIPTORS_DIR"),
            "policies": os.environ.get("RETAIL_DP_POLICIES"),
            "dagster_home": os.environ.get("DAGSTER_HOME"),
        }
        values = {k: v for k, v in {**env, **overrides}.items() if v is not None}
        paths = {k: Path(v).expanduser().resolve() for k, v in values.items()}
        memory = os.environ.get("RETAIL_DP_DUCKDB_MEMORY_LIMIT")
        return cls(**paths, **({"duckdb_memory_limit": memory} if memory else {}))

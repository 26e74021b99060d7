"""The code location: the one place that builds the Definitions."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from retail_dp.analytics.assets import build_clv_assets, build_cross_sell_assets
from retail_dp.descriptors import Catalog
from retail_dp.resources import LandingZone, ReferenceTime, Warehouse
from retail_dp.settings import Settings
from retail_dp.sources.assets import build_source_assets
from retail_dp.transform.assets import build_dbt_assets, dbt_executable, dbt_project

REFRESH_JOB = "refresh_cross_sell"


def build_definitions(settings: Settings) -> dg.Definitions:
    catalog = Catalog.load(settings.descriptors_dir)
    project = dbt_project(settings.dbt_project_dir)
    refresh = dg.define_asset_job(
        REFRESH_JOB,
        selection=dg.AssetSelection.all(),
        description="Load the landing zone, build every mart and run every check.",
    )
    consumer = catalog.consumer
    return dg.Definitions(
        assets=[
            *build_source_assets(catalog),
            build_dbt_assets(project, catalog),
            build_clv_assets(consumer),
            build_cross_sell_assets(consumer),
        ],
        jobs=[refresh],
        schedules=[
            dg.ScheduleDefinition(
                name=f"{consumer.name}_refresh",
                job=refresh,
                cron_schedule=consumer.refresh.cron,
                execution_timezone=consumer.refresh.timezone,
                description=f"Refresh {consumer.title} as its descriptor declares.",
            )
        ],
        resources={
            "warehouse": Warehouse(
                database=str(settings.warehouse), memory_limit=settings.duckdb_memory_limit
            ),
            "landing_zone": LandingZone(data_dir=str(settings.data_dir)),
            "reference_time": ReferenceTime(),
            "dbt": DbtCliResource(
                project_dir=str(project.project_dir),
                profiles_dir=str(project.profiles_dir),
                dbt_executable=dbt_executable(),
            ),
        },
        # one DuckDB file admits one writer: run steps in one process, one after another
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())

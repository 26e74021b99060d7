"""The code location: the one place that builds the Definitions."""

from __future__ import annotations

import dagster as dg

from retail_dp.analytics.assets import build_clv_assets, build_cross_sell_assets
from retail_dp.analytics.checks import model_output_checks
from retail_dp.automation import automation_sensor, landing_sensor, refresh_schedule, with_policies
from retail_dp.delivery.assets import build_publish_asset
from retail_dp.descriptors import Catalog
from retail_dp.quality.assets import build_slo_attainment_asset
from retail_dp.quality.checks import build_slo_checks, dbt_test_incidents
from retail_dp.quality.dbt_sources import build_source_test_checks
from retail_dp.resources import Engine, LandingZone, ReferenceTime, RefreshMode, Warehouse
from retail_dp.settings import Settings
from retail_dp.sources.assets import build_source_assets
from retail_dp.spark.dbt import SPARK_TARGET
from retail_dp.transform.assets import (
    LocalDbtCliResource,
    build_dbt_assets,
    dbt_executable,
    dbt_project,
)
from retail_dp.transform.marts import check_outputs, load_marts, semantic_tables

REFRESH_JOB = "refresh_cross_sell"
CHECK_JOB = "check_cross_sell"


def build_definitions(settings: Settings, extra_jobs=()) -> dg.Definitions:
    catalog = Catalog.load(settings.descriptors_dir)
    project = dbt_project(settings.dbt_project_dir)
    marts = load_marts(project.manifest_path)
    check_outputs(catalog.consumer, marts, settings.descriptors_dir)
    published_marts = [m for m in marts if m.published]
    published = [m.asset for m in published_marts]
    refresh = dg.define_asset_job(
        REFRESH_JOB,
        selection=dg.AssetSelection.all(),
        description="Load the landing zone, build every mart and run every check.",
    )
    checks_only = dg.define_asset_job(
        CHECK_JOB,
        selection=dg.AssetSelection.all_asset_checks(),
        description="Run every check against the warehouse as it stands, materializing nothing "
        "(what `retail-dp check` runs).",
    )
    consumer = catalog.consumer
    sources = [with_policies(a, catalog, eager=False) for a in build_source_assets(catalog)]
    downstream = [
        with_policies(a, catalog, eager=True)
        for a in (
            *build_dbt_assets(project, catalog, dbt_test_incidents(catalog)),
            build_clv_assets(consumer, marts),
            build_cross_sell_assets(consumer, marts),
        )
    ]
    checks = [
        *build_slo_checks(catalog, marts),
        *filter(None, [build_source_test_checks(project, consumer.alerts)]),
        *model_output_checks(consumer),
    ]
    check_keys = [k for d in [*sources, *downstream, *checks] for k in d.check_keys]
    downstream += [
        with_policies(
            build_slo_attainment_asset(consumer, check_keys, published), catalog, eager=True
        ),
        with_policies(
            build_publish_asset(
                consumer,
                check_keys,
                [*published, *semantic_tables(project.manifest_path)],
                {m.asset.replace("/", "."): m.parts_by for m in published_marts if m.parts_by},
            ),
            catalog,
            eager=True,
        ),
    ]
    return dg.Definitions(
        assets=[*sources, *downstream],
        asset_checks=checks,
        jobs=[refresh, checks_only, *extra_jobs],
        schedules=[refresh_schedule(catalog, refresh)],
        sensors=[landing_sensor(catalog, refresh), automation_sensor()],
        resources={
            "warehouse": Warehouse(
                database=str(settings.warehouse), memory_limit=settings.duckdb_memory_limit
            ),
            "landing_zone": LandingZone(data_dir=str(settings.data_dir)),
            "reference_time": ReferenceTime(),
            "refresh_mode": RefreshMode(),
            "engine": Engine(name=settings.engine, spark_dir=str(settings.spark_dir)),
            # the dbt target matches the engine (dbt_project/profiles.yml)
            "dbt": LocalDbtCliResource(
                project_dir=str(project.project_dir),
                profiles_dir=str(project.profiles_dir),
                dbt_executable=dbt_executable(),
                target=SPARK_TARGET if settings.engine == "spark" else None,
            ),
        },
        # one DuckDB file admits one writer: run steps in one process, one after another
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())

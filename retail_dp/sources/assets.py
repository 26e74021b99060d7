"""Source-aligned assets: customer_info, purchase and product, declared by their descriptors."""

from pathlib import Path

import dagster as dg
import pandera.pandas as pa

from retail_dp.descriptors import Catalog, DataProduct, LandingInput, SloCategory
from retail_dp.resources import Engine, LandingZone, ReferenceTime, RefreshMode, Warehouse
from retail_dp.sources.contracts import build_contracts, upstream_sources
from retail_dp.sources.ingest import LoadResult, load_source, table
from retail_dp.sources.profile import profile_load, profile_markdown


def _table_schema(contract: pa.DataFrameSchema, result: LoadResult) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=result.columns[name],
                constraints=dg.TableColumnConstraints(nullable=column.nullable),
            )
            for name, column in contract.columns.items()
        ]
    )


def build_source_asset(product: DataProduct, contract: pa.DataFrameSchema) -> dg.AssetsDefinition:
    landing = next(i for i in product.inputs if isinstance(i, LandingInput))

    @dg.asset(
        name=contract.name,
        group_name=product.name,
        owners=product.owners,
        tags=product.dagster_tags,
        description=product.description,
        kinds={"duckdb"},
        deps=[dg.AssetKey(s) for s in upstream_sources(contract)],
        metadata={
            "landing_location": landing.location,
            "landing_formats": ", ".join(landing.formats),
            "contract_key": contract.metadata["key"],
            "warehouse_table": f"sources.{contract.name}",
        },
    )
    def _source(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        landing_zone: LandingZone,
        reference_time: ReferenceTime,
        refresh_mode: RefreshMode,
        engine: Engine,
    ) -> dg.MaterializeResult:
        as_of = reference_time.resolve(context)
        freshness = product.slos[SloCategory.freshness].column
        with warehouse.get_connection() as con:
            if engine.is_spark:
                from retail_dp.spark.ingest import load_source as spark_load_source
                from retail_dp.spark.lake import Lake

                result = spark_load_source(
                    engine.spark(),
                    con,
                    contract,
                    Path(landing_zone.data_dir),
                    landing.location,
                    as_of,
                    Lake.of(Path(engine.spark_dir)),
                    context.run_id,
                    freshness_column=freshness,
                )
            else:
                result = load_source(
                    con,
                    contract,
                    Path(landing_zone.data_dir),
                    landing.location,
                    as_of,
                    context.run_id,
                    freshness_column=freshness,
                    full_refresh=refresh_mode.full_refresh,
                )
            profile, profile_reused = profile_load(
                con,
                contract.name,
                table(contract.name),
                result.columns,
                contract.metadata["key"],
                result.load_id,
                result.previous_load_id,
                unchanged=result.left_rows_unchanged,
            )
        if not result.reconciles:
            raise dg.Failure(
                f"{contract.name}: read {result.rows_read} rows but accepted "
                f"{result.rows_accepted}, quarantined {result.rows_quarantined} and deferred "
                f"{result.rows_deferred}"
            )
        context.log.info(
            f"{contract.name}: {result.mode} load ({result.reason}): read {result.rows_loaded} "
            f"rows from {len(result.files_loaded)} file(s), {result.keys_changed} accepted "
            f"rows added or removed; now accepted {result.rows_accepted}, quarantined "
            f"{result.rows_quarantined} {result.quarantined_by_reason}, deferred "
            f"{result.rows_deferred} (dated after as_of)"
        )
        return dg.MaterializeResult(
            metadata={
                "as_of": as_of.isoformat(sep=" "),
                "files": result.files,
                "engine": engine.name,
                "load_mode": result.mode,
                "load_reason": result.reason,
                "files_loaded": result.files_loaded,
                "files_retracted": result.files_retracted,
                "files_read_as_text": result.files_read_as_text,
                "rows_loaded": result.rows_loaded,
                "rows_changed": result.keys_changed,
                "landing_fingerprint": result.audit.fingerprint,
                "rows_read": result.rows_read,
                "rows_accepted": result.rows_accepted,
                "rows_quarantined": result.rows_quarantined,
                "rows_deferred": result.rows_deferred,
                "quarantined_by_reason": dg.MetadataValue.json(result.quarantined_by_reason),
                "reconciles": result.reconciles,
                "dagster/row_count": result.rows_accepted,
                "dagster/column_schema": _table_schema(contract, result),
                "column_profile": dg.MetadataValue.json(profile),
                "column_profile_reused": profile_reused,
                "column_profile_table": dg.MetadataValue.md(profile_markdown(profile)),
            }
        )

    return _source


def build_source_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    contracts = build_contracts(catalog)
    return [build_source_asset(catalog[name], contract) for name, contract in contracts.items()]


__all__ = ["build_source_assets"]

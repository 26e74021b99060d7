"""`published/snapshot`: the write-audit-publish step that consumers see.

It runs after every mart, the semantic layer's tables and the SLO report, so Dagster runs it
only when their blocking checks passed; a failed check leaves the previous snapshot serving.
"""

from pathlib import Path

import dagster as dg

from retail_dp.delivery.snapshots import PUBLISHED_SCHEMAS, publish, published_dir
from retail_dp.descriptors import DataProduct
from retail_dp.quality.report import latest_checks
from retail_dp.resources import ReferenceTime, Warehouse

SNAPSHOT_KEY = dg.AssetKey(["published", "snapshot"])
SLO_REPORT = "monitor/slo_attainment"


def build_publish_asset(
    consumer: DataProduct,
    check_keys: list[dg.AssetCheckKey],
    inputs: list[str],
    parts_by: dict[str, str] | None = None,
) -> dg.AssetsDefinition:
    """`inputs`: the published marts and the semantic tables (asset keys), from the manifest;
    `parts_by`: the tables (`schema.name`) published as Parquet parts, by their split column."""

    @dg.asset(
        key=SNAPSHOT_KEY,
        deps=[dg.AssetKey.from_user_string(k) for k in [*inputs, SLO_REPORT]],
        group_name=consumer.name,
        owners=consumer.owners,
        tags={**consumer.dagster_tags, "layer": "published"},
        kinds={"duckdb"},
        description="A read-only copy of the schemas consumers read ("
        + ", ".join(PUBLISHED_SCHEMAS)
        + ") with the latest check results, swapped in atomically for the delivery service.",
    )
    def published_snapshot(
        context: dg.AssetExecutionContext, warehouse: Warehouse, reference_time: ReferenceTime
    ) -> dg.MaterializeResult:
        checks = latest_checks(context.instance, check_keys)
        failed = [c for c in checks if c["status"] == "FAILED"]
        if failed:  # e.g. this asset materialized on its own after a failed refresh
            raise dg.Failure(
                description=f"not publishing: {len(failed)} ERROR checks failed their latest "
                "evaluation, first " + ", ".join(f"{c['asset']}:{c['check']}" for c in failed[:3]),
                metadata={"failed_checks": [f"{c['asset']}:{c['check']}" for c in failed]},
            )
        target = published_dir(Path(warehouse.database))
        with warehouse.get_connection() as con:
            path, info = publish(
                con, target, context.run_id, reference_time.resolve(context), checks, parts_by
            )
        context.log.info(f"published {path.name}: {len(info.tables)} tables, {len(checks)} checks")
        return dg.MaterializeResult(
            metadata={
                "snapshot": info.snapshot_id,
                "path": dg.MetadataValue.path(str(path)),
                "tables": dg.MetadataValue.json(info.tables),
                "parts": dg.MetadataValue.json(info.parts),
                "checks": len(checks),
            }
        )

    return published_snapshot

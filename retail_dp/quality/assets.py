"""`monitor/slo_attainment`: the SLO report as an asset, after the marts and their checks.

Per SLO category, the share of check evaluations that passed over the last runs, against the
descriptor's attainment objective: the same figures as `retail-dp slo`, as materialization
metadata (the UI plots them over time) and as the table `monitor.slo_attainment` (the API and
the hub read it)."""

import dagster as dg
import pandas as pd

from retail_dp.descriptors import DataProduct
from retail_dp.quality.report import slo_attainment
from retail_dp.resources import Warehouse

RUNS = 10


def build_slo_attainment_asset(
    consumer: DataProduct, check_keys: list[dg.AssetCheckKey], published: list[str]
) -> dg.AssetsDefinition:
    """`published`: the published marts' asset keys, whose checks the report follows."""

    @dg.asset(
        key=dg.AssetKey(["monitor", "slo_attainment"]),
        deps=[dg.AssetKey.from_user_string(k) for k in published],
        group_name=consumer.name,
        owners=consumer.owners,
        tags={**consumer.dagster_tags, "layer": "monitor"},
        kinds={"python", "duckdb"},
        description=f"SLO attainment per category over the last {RUNS} runs that evaluated "
        "checks, against the descriptor's objective.",
    )
    def slo_attainment_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        rows = slo_attainment(context.instance, check_keys, consumer, RUNS)
        frame = pd.DataFrame(
            {
                "category": [a.category for a in rows],
                "runs": [a.runs for a in rows],
                "evaluations": [a.evaluations for a in rows],
                "passed": [a.passed for a in rows],
                "share": [a.share for a in rows],
                "objective": [a.objective for a in rows],
                "met": [a.met for a in rows],
            }
        )
        with warehouse.get_connection() as con:
            con.execute("CREATE SCHEMA IF NOT EXISTS monitor")
            con.register("frame", frame)
            try:
                con.execute(
                    "CREATE OR REPLACE TABLE monitor.slo_attainment AS "
                    "SELECT *, now()::TIMESTAMP AS computed_at FROM frame"
                )
            finally:
                con.unregister("frame")
        metadata = {
            f"{a.category}_share": a.share if a.share is not None else "no data" for a in rows
        }
        metadata.update({f"{a.category}_objective": a.objective for a in rows})
        metadata["breached"] = ", ".join(a.category for a in rows if a.met is False) or "none"
        metadata["dagster/row_count"] = len(rows)
        return dg.MaterializeResult(metadata=metadata)

    return slo_attainment_asset

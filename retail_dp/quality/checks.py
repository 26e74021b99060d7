"""The SLO checks as Dagster asset checks: one check op per asset, one check per SLO category.

Each check is its own op step after its asset, so it can run alone (`retail-dp check`) and a
blocking one stops the work downstream of its asset when it fails with ERROR severity. Severity
and blocking come from the owning data product's descriptor. Failures open incidents.
"""

from collections import defaultdict

import dagster as dg

from retail_dp.descriptors import Catalog
from retail_dp.quality import incidents
from retail_dp.quality.marts import mart_checks
from retail_dp.quality.slo import MeasureContext, SloCheck
from retail_dp.quality.sources import source_checks
from retail_dp.resources import LandingZone, ReferenceTime, Warehouse
from retail_dp.transform.marts import Mart


def all_slo_checks(catalog: Catalog, marts: list[Mart]) -> list[SloCheck]:
    return source_checks(catalog) + mart_checks(catalog.consumer, marts)


def evaluation(check: SloCheck, result: dg.AssetCheckResult) -> incidents.Evaluation:
    meta = result.metadata
    measured = meta.get("measured")
    return incidents.Evaluation(
        asset=check.asset.to_user_string(),
        check_name=check.name,
        passed=result.passed,
        severity=check.slo.severity,
        slo_category=check.category.value,
        measured=getattr(measured, "value", measured),
        target=check.slo.target,
        comparison=check.slo.comparison,
        detail=result.description,
        data_product=check.product.name,
    )


def dbt_test_evaluation(result: dg.AssetCheckResult, data_product: str) -> incidents.Evaluation:
    failed_rows = result.metadata.get("dagster_dbt/failed_row_count")
    category = result.metadata.get("slo_category")
    return incidents.Evaluation(
        asset=result.asset_key.to_user_string(),
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity.value,
        slo_category=getattr(category, "value", category) or "accuracy",
        measured=getattr(failed_rows, "value", failed_rows),
        target=0,
        comparison="failing rows =",
        detail="dbt test",
        data_product=data_product,
    )


def dbt_test_incidents(catalog: Catalog):
    """What the dbt steps do with their test results: open or resolve incidents."""
    consumer = catalog.consumer

    def record(con, results: list[dg.AssetCheckResult], run_id: str) -> None:
        evaluations = [dbt_test_evaluation(r, consumer.name) for r in results]
        incidents.record(con, evaluations, run_id, consumer.alerts)

    return record


def _checks_for(asset: dg.AssetKey, checks: list[SloCheck]) -> dg.AssetChecksDefinition:
    product = checks[0].product

    @dg.multi_asset_check(
        name="slo_checks_" + "__".join(asset.path),
        specs=[c.spec() for c in checks],
        can_subset=True,
        description=f"The {product.title} SLOs measured on {asset.to_user_string()}.",
    )
    def _run(
        context: dg.AssetCheckExecutionContext,
        warehouse: Warehouse,
        landing_zone: LandingZone,
        reference_time: ReferenceTime,
    ):
        as_of = reference_time.resolve(context)
        selected = [c for c in checks if c.key in context.selected_asset_check_keys]
        with warehouse.get_connection() as con:
            ctx = MeasureContext(con, as_of, landing_zone.path, context.run.run_id)
            results = [c.evaluate(ctx) for c in selected]
            evaluations = [evaluation(c, r) for c, r in zip(selected, results, strict=False)]
            incidents.record(
                con,
                evaluations,
                context.run.run_id,
                product.alerts,
            )
        log_evaluations(context, evaluations)
        yield from results

    return _run


def log_evaluations(context: dg.AssetCheckExecutionContext, evaluations) -> None:
    for ev in evaluations:
        level = context.log.info if ev.passed else context.log.warning
        level(
            f"{ev.asset}:{ev.check_name} [{ev.slo_category}] "
            f"{'passed' if ev.passed else 'FAILED'}: measured {ev.measured}, "
            f"target {ev.comparison} {ev.target}"
        )


def build_slo_checks(catalog: Catalog, marts: list[Mart]) -> list[dg.AssetChecksDefinition]:
    by_asset: dict[dg.AssetKey, list[SloCheck]] = defaultdict(list)
    for check in all_slo_checks(catalog, marts):
        by_asset[check.asset].append(check)
    return [_checks_for(asset, checks) for asset, checks in by_asset.items()]

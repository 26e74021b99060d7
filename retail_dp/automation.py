"""What keeps the product fresh, all visible and switchable in the UI (Automation tab):

- the daily schedule, on the consumer-aligned descriptor's cron;
- a sensor on the landing zone that starts a refresh when new or changed files arrive, and
  never twice for the same files;
- declarative automation: downstream assets update when their parents do (eager), once the
  parents' blocking checks have passed;
- freshness policies (process freshness): each asset must materialize by its product's cron
  deadline, within the freshness SLO's hours.
"""

import hashlib
import json
from datetime import timedelta

import dagster as dg

from retail_dp.descriptors import Catalog, LandingInput, SloCategory
from retail_dp.resources import LandingZone
from retail_dp.sources.audit import fingerprint
from retail_dp.sources.landing import LandingError, find_landing_files

LANDING_SENSOR = "landing_zone_sensor"
FINGERPRINT_KEY = "landing_fingerprint"


def refresh_schedule(catalog: Catalog, job) -> dg.ScheduleDefinition:
    consumer = catalog.consumer
    return dg.ScheduleDefinition(
        name=f"{consumer.name}_refresh",
        job=job,
        cron_schedule=consumer.refresh.cron,
        execution_timezone=consumer.refresh.timezone,
        description=f"Refresh {consumer.title} daily, as its descriptor declares.",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


def landing_fingerprints(catalog: Catalog, landing_zone: LandingZone) -> dict[str, str]:
    """source -> fingerprint of its landing files; sources with no files are left out."""
    found = {}
    for product in catalog.products.values():
        for item in product.inputs:
            if isinstance(item, LandingInput):
                try:
                    files = find_landing_files(landing_zone.path, item.location, product.name)
                except LandingError:
                    continue
                found[product.name] = fingerprint(files)
    return found


def _last_loaded(instance: dg.DagsterInstance, sources: list[str]) -> dict[str, str]:
    """The fingerprints the sources' latest materializations loaded (whoever launched them)."""
    loaded = {}
    for source in sources:
        event = instance.get_latest_materialization_event(dg.AssetKey(source))
        meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
        if FINGERPRINT_KEY in meta:
            loaded[source] = meta[FINGERPRINT_KEY].value
    return loaded


def landing_sensor(catalog: Catalog, job) -> dg.SensorDefinition:
    @dg.sensor(
        name=LANDING_SENSOR,
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Start a refresh when new or changed files land in the landing zone. The "
        "cursor holds the fingerprints of the files already processed.",
    )
    def _sensor(context: dg.SensorEvaluationContext, landing_zone: LandingZone):
        current = landing_fingerprints(catalog, landing_zone)
        if not current:
            return dg.SkipReason(f"no landing files in {landing_zone.path}")
        seen = (
            json.loads(context.cursor)
            if context.cursor
            else _last_loaded(context.instance, list(current))
        )
        changed = sorted(s for s, fp in current.items() if seen.get(s) != fp)
        if not changed:
            return dg.SkipReason("no new landing files since the last processed ones")
        context.update_cursor(json.dumps(current, sort_keys=True))
        run_key = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:16]
        return dg.RunRequest(
            run_key=run_key,
            tags={"retail_dp/trigger": "landing_zone", "retail_dp/changed": ",".join(changed)},
        )

    return _sensor


def downstream_automation() -> dg.AutomationCondition:
    return (
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("eager, once upstream blocking checks pass")


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "downstream_update_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description="Updates downstream assets when their parents materialize.",
    )


def with_policies(
    assets: dg.AssetsDefinition, catalog: Catalog, eager: bool
) -> dg.AssetsDefinition:
    """Attach each asset's freshness policy (from its product) and, downstream, eager updates."""

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        product = catalog[spec.tags["data_product"]]
        hours = product.slos[SloCategory.freshness].target
        spec = dg.apply_freshness_policy(
            spec,
            dg.FreshnessPolicy.cron(
                deadline_cron=product.refresh.cron,
                lower_bound_delta=timedelta(hours=hours),
                timezone=product.refresh.timezone,
            ),
        )
        if eager:
            spec = spec.replace_attributes(automation_condition=downstream_automation())
        return spec

    return assets.map_asset_specs(apply)

"""Schedules, the landing-zone sensor, declarative automation and freshness policies."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime

import dagster as dg
import pytest

from retail_dp.automation import LANDING_SENSOR
from retail_dp.definitions import REFRESH_JOB, build_definitions
from retail_dp.descriptors import Catalog
from retail_dp.resources import LandingZone
from retail_dp.settings import Settings


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())


def test_daily_schedule_follows_the_consumer_descriptor(defs):
    consumer = Catalog.load(Settings().descriptors_dir).consumer
    schedule = defs.resolve_schedule_def(f"{consumer.name}_refresh")
    assert schedule.cron_schedule == consumer.refresh.cron
    assert schedule.job_name == REFRESH_JOB
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    tick = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1


def _tick(sensor, instance, landing, cursor):
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"landing_zone": LandingZone(data_dir=str(landing))},
    ) as context:
        return sensor.evaluate_tick(context)


def test_landing_sensor_runs_once_per_new_files(defs, sample, tmp_path):
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    landing = tmp_path / "landing"
    shutil.copytree(sample[0], landing)
    instance = dg.DagsterInstance.ephemeral()

    first = _tick(sensor, instance, landing, None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.tags["retail_dp/changed"] == "customer_info,product,purchase"

    again = _tick(sensor, instance, landing, first.cursor)
    assert again.run_requests == [] and "no new landing files" in again.skip_message

    # a new file for one source: one more run, keyed differently
    (landing / "purchase").mkdir()
    shutil.copy(landing / "purchase.csv", landing / "purchase" / "2026-07-02.csv")
    later = _tick(sensor, instance, landing, again.cursor or first.cursor)
    assert len(later.run_requests) == 1
    assert later.run_requests[0].tags["retail_dp/changed"] == "purchase"
    assert later.run_requests[0].run_key != request.run_key

    # a file rewritten in place counts as new too
    stat = (landing / "product.csv").stat()
    os.utime(landing / "product.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = _tick(sensor, instance, landing, later.cursor)
    assert touched.run_requests[0].tags["retail_dp/changed"] == "product"


def test_landing_sensor_knows_files_a_run_already_loaded(built, instance):
    """With no cursor yet (a fresh deployment), files the last materializations loaded are not
    new: the sensor reads their fingerprints from the instance."""
    _, settings, _ = built
    sensor = build_definitions(settings).resolve_sensor_def(LANDING_SENSOR)
    result = _tick(sensor, instance, settings.data_dir, None)
    assert result.run_requests == []


def test_downstream_assets_update_eagerly_and_every_asset_has_a_freshness_policy(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.freshness_policy is not None, key
        if key.path[0] in ("marts", "intermediate", "staging", "monitor"):
            assert node.automation_condition is not None, key
            assert "eager" in node.automation_condition.get_label(), key
    sensors = {s.name for s in defs.sensors}
    assert {LANDING_SENSOR, "downstream_update_sensor"} <= sensors


def test_dbt_checks_take_their_category_from_the_tests_kind(defs):
    graph = defs.resolve_asset_graph()
    kinds = {
        "unique_combination_category_affinity_basket_level__antecedent__consequent": "uniqueness",
        "accepted_values_category_affinity_basket_level__customer__order": "validity",
        "not_null_fct_purchase_channel": "completeness",
    }
    found = {
        k.name: graph.get_check_spec(k).metadata["slo_category"] for k in graph.asset_check_keys
    }
    assert {name: found.get(name) for name in kinds} == kinds


def test_every_check_carries_its_slo_category_and_descriptor_flags(defs):
    graph = defs.resolve_asset_graph()
    catalog = Catalog.load(Settings().descriptors_dir)
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        meta = spec.metadata or {}
        assert meta.get("slo_category") in {c.value for c in catalog.consumer.slos}, key
        if key.name.startswith("slo_"):
            product = catalog[meta["data_product"]]
            slo = product.slos[meta["slo_category"]]
            if key.asset_key == dg.AssetKey(["marts", "customer_category_profile"]):
                # the compatibility profile reports and never blocks (its dbt meta: warn_only)
                assert not spec.blocking and meta["severity"] == "WARN", key
                continue
            assert spec.blocking == slo.blocking and meta["severity"] == slo.severity, key
            assert spec.description.startswith(f"[{meta['slo_category']}]")


def test_a_custom_named_dbt_test_is_classified_by_its_kind():
    from retail_dp.transform.dbt_tests import test_category

    node = {"name": "every_order_counted_once", "test_metadata": {"name": "unique"}}
    assert test_category(node).value == "uniqueness"
    assert test_category({"name": "not_null_looking_singular_test"}).value == "accuracy"

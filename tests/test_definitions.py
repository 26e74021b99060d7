"""The code location loads, and the catalog shows each product as its descriptor declares."""

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import dagster as dg

from retail_dp.definitions import REFRESH_JOB, defs
from retail_dp.descriptors import Catalog
from retail_dp.settings import PROJECT_ROOT, Settings

K = dg.AssetKey.from_user_string


def test_definitions_validate_with_the_dagster_cli():
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_lineage_runs_from_sources_through_staging_to_marts():
    graph = defs.resolve_asset_graph()
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert parents["purchase"] == {"customer_info", "product"}
    assert parents["staging/stg_customer_info"] == {"customer_info"}
    assert parents["staging/stg_purchase"] == {"purchase"}
    assert parents["staging/stg_product"] == {"product"}
    assert parents["marts/dim_customer"] == {
        "staging/stg_customer_info",
        "reference/country_regions",
    }


def test_owners_tags_groups_and_descriptions_come_from_descriptors():
    catalog = Catalog.load(Settings().descriptors_dir)
    graph = defs.resolve_asset_graph()
    for source in ("customer_info", "purchase", "product"):
        node, product = graph.get(K(source)), catalog[source]
        assert node.group_name == source
        assert node.owners == [product.owner.email]
        assert node.tags["tier"] == "source-aligned"
        assert node.description == product.description
    consumer = catalog.consumer
    mart = graph.get(K("marts/dim_customer"))
    assert mart.group_name == consumer.name
    assert mart.owners == [consumer.owner.email]
    assert mart.tags["use_case"] == consumer.tags.use_case
    assert mart.tags["layer"] == "marts"
    columns = mart.metadata["dagster/column_schema"].columns
    described = {c.name: c.description for c in columns}
    assert described["age_group"] and described["region"]
    assert all(described.values()), [n for n, d in described.items() if not d]


def test_dbt_tests_become_checks_on_sources_and_models():
    checks = {
        (k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys
    }
    assert ("marts/dim_customer", "unique_dim_customer_customer_id") in checks
    assert any(a == "customer_info" and "unique" in n for a, n in checks)
    assert ("purchase", "source_unique_retail_purchase_purchase_id") in checks
    assert any(a == "staging/stg_purchase" and "relationships" in n for a, n in checks)


def test_refresh_schedule_follows_the_consumer_descriptor():
    catalog = Catalog.load(Settings().descriptors_dir)
    schedule = defs.resolve_schedule_def(f"{catalog.consumer.name}_refresh")
    assert schedule.cron_schedule == catalog.consumer.refresh.cron
    assert schedule.job_name == REFRESH_JOB


def test_the_dbt_resource_knows_dbt_s_version_without_running_dbt(monkeypatch, tmp_path):
    """dagster-dbt would run `dbt --version`, which asks PyPI for the latest release, and
    load a dbt adapter in this process on every call."""
    import dagster_dbt.core.resource as upstream

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args[0]}")

    monkeypatch.setattr(upstream, "check_output", no_subprocess)
    dbt = defs.resources["dbt"]
    fresh = type(dbt)(
        **{k: getattr(dbt, k) for k in ("project_dir", "profiles_dir", "dbt_executable")}
    )
    assert str(fresh._cli_version) == metadata.version("dbt-core")
    invocation = fresh.cli(["parse", "--quiet"], target_path=tmp_path).wait()
    assert invocation.is_successful() and invocation.adapter is None

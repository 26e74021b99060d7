"""Materialize everything with real dbt and real DuckDB, and reconcile with the manifest."""

from datetime import datetime

import dagster as dg
import duckdb

from retail_dp.runner import run_refresh
from retail_dp.settings import Settings

from .conftest import AS_OF, located, run_cli

ALL_ASSETS = {
    "customer_info",
    "product",
    "purchase",
    "reference/country_regions",
    "staging/stg_customer_info",
    "staging/stg_product",
    "staging/stg_purchase",
    "intermediate/int_refresh_scope",
    "intermediate/int_touched_customers",
    "intermediate/int_orders",
    "intermediate/int_customer_history",
    "intermediate/int_customer_categories",
    "intermediate/int_customer_order_categories",
    "intermediate/int_customer_rfm",
    "intermediate/int_cross_sell_affinity",
    "intermediate/int_cross_sell_features",
    "intermediate/int_cross_sell_snapshots",
    "marts/dim_customer",
    "marts/dim_product",
    "marts/fct_purchase",
    "marts/customer_purchase_metrics",
    "marts/customer_category_profile",
    "marts/category_affinity",
    "marts/customer_lifetime_value",
    "marts/clv_model_parameters",
    "marts/cross_sell_recommendations",
    "marts/cross_sell_model",
    "monitor/slo_attainment",
    "semantic/customer_value",
    "semantic/category_pairs",
    "semantic/metricflow_time_spine",
    "published/snapshot",
}


def test_every_asset_materializes_and_every_check_passes(built):
    report, _, _ = built
    assert report.ok, report.failure
    assert set(report.materialized) == ALL_ASSETS
    assert len(report.checks) >= 100
    categories = {c.metadata.get("slo_category") for c in report.checks}
    assert categories >= {
        "completeness",
        "uniqueness",
        "freshness",
        "validity",
        "schema",
        "accuracy",
    }
    assert all(c.passed for c in report.checks), [c for c in report.checks if not c.passed]


def test_row_counts_reconcile_with_the_manifest(built):
    report, settings, manifest = built
    quarantined = {}
    for source, _, _, n in report.quarantine:
        quarantined[source] = quarantined.get(source, 0) + n
    for source, read in manifest["rows"].items():
        accepted = report.table_rows[f"sources.{source}"]
        deferred = manifest["deferred_defects"]["future_purchase_ts"] if source == "purchase" else 0
        assert accepted + quarantined.get(source, 0) + deferred == read, source
    assert sum(quarantined.values()) == sum(manifest["quarantined_defects"].values())
    assert report.table_rows["marts.dim_customer"] == report.table_rows["sources.customer_info"]
    assert report.table_rows["staging.stg_purchase"] == report.table_rows["sources.purchase"]


def test_marts_respect_as_of_and_enrich_customers(built):
    _, settings, _ = built
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        latest = con.execute("SELECT max(purchase_ts) FROM staging.stg_purchase").fetchall()[0][0]
        assert latest <= AS_OF
        unknown = con.execute(
            "SELECT count(*) FILTER (WHERE region = 'unknown'), "
            "count(*) FILTER (WHERE age_group = 'unknown') FROM marts.dim_customer"
        ).fetchall()[0]
        assert unknown == (0, 0)
        ages = con.execute("SELECT min(age), max(age) FROM marts.dim_customer").fetchall()[0]
        assert ages[0] >= AS_OF.year - 2010 and ages[1] <= AS_OF.year - 1900


def test_materialization_metadata_records_reconciliation_and_schema(built, instance):
    _, _, manifest = built
    for source in ("customer_info", "product", "purchase"):
        event = instance.get_latest_materialization_event(dg.AssetKey(source))
        meta = event.asset_materialization.metadata
        read, accepted = meta["rows_read"].value, meta["rows_accepted"].value
        assert read == manifest["rows"][source]
        assert read == accepted + meta["rows_quarantined"].value + meta["rows_deferred"].value
        assert meta["dagster/row_count"].value == accepted
        columns = [c.name for c in meta["dagster/column_schema"].value.columns]
        assert (
            columns[0]
            == {"customer_info": "customer_id", "product": "product_id", "purchase": "purchase_id"}[
                source
            ]
        )
    purchase = instance.get_latest_materialization_event(dg.AssetKey("purchase"))
    reasons = purchase.asset_materialization.metadata["quarantined_by_reason"].value
    assert "after_as_of" not in reasons
    deferred = purchase.asset_materialization.metadata["rows_deferred"].value
    assert deferred == manifest["deferred_defects"]["future_purchase_ts"]


def test_sources_record_a_column_profile(built, instance):
    _, settings, _ = built
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("purchase")
    ).asset_materialization.metadata
    profile = meta["column_profile"].value
    assert set(profile) == {
        "purchase_id",
        "order_id",
        "customer_id",
        "product_id",
        "purchase_ts",
        "quantity",
        "unit_price",
        "channel",
        "is_deal",
        "updated_at",
    }
    quantity = profile["quantity"]
    assert quantity["null_pct"] == 0 and int(quantity["min"]) >= 1
    assert quantity["q1"] <= quantity["q3"] and quantity["outliers_iqr"] >= 0
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        low, high = quantity["iqr_fences"]
        outliers = con.execute(
            "SELECT count(*) FROM sources.purchase WHERE quantity < ? OR quantity > ?", [low, high]
        ).fetchall()[0][0]
        channels = dict(
            con.execute("SELECT channel, count(*) FROM sources.purchase GROUP BY 1").fetchall()
        )
    assert quantity["outliers_iqr"] == outliers
    assert {t["value"]: t["count"] for t in profile["channel"]["top_values"]} == channels
    # the key's values are each counted once: none are listed as frequent
    assert profile["purchase_id"]["top_values"] == [] and profile["order_id"]["top_values"]
    income = (
        instance.get_latest_materialization_event(dg.AssetKey("customer_info"))
        .asset_materialization.metadata["column_profile"]
        .value["income"]
    )
    assert 0 < income["null_pct"] < 2  # the generator leaves about 0.5% of incomes unknown
    assert "| quantity | BIGINT |" in meta["column_profile_table"].value


def test_a_missing_source_fails_the_run_with_the_file_named(sample, tmp_path):
    data_dir, _ = sample
    for name in ("customer_info.csv", "product.csv"):
        (tmp_path / name).write_bytes((data_dir / name).read_bytes())
    settings = Settings.from_env(data_dir=tmp_path, warehouse=tmp_path / "wh.duckdb")
    report = run_refresh(settings, as_of=AS_OF, instance=dg.DagsterInstance.ephemeral())
    assert not report.ok
    assert f"no landing files at {tmp_path}/purchase" in report.failure
    assert "marts/dim_customer" not in report.materialized


def test_cli_run_records_the_run_and_reproduces_the_same_tables(built, tmp_path):
    _, settings, manifest = built
    home = tmp_path / "dagster_home"
    warehouse = tmp_path / "again.duckdb"
    result = run_cli(
        "run",
        *located(settings.data_dir, warehouse),
        dagster_home=home,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "retail_dp refresh SUCCESS" in out
    assert f"Warehouse: {warehouse}" in out
    assert "Rows quarantined:" in out and "Checks:" in out and "make dev" in out
    deferred = manifest["deferred_defects"]["future_purchase_ts"]
    assert f"Rows deferred (dated after as_of, not loaded): {deferred:,}" in out
    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].tags["retail_dp/as_of"] == str(AS_OF)
    query = "SELECT * FROM marts.dim_customer ORDER BY customer_id"
    with (
        duckdb.connect(str(settings.warehouse), read_only=True) as first,
        duckdb.connect(str(warehouse), read_only=True) as second,
    ):
        assert first.execute(query).fetchall() == second.execute(query).fetchall()


def test_as_of_is_parsed_as_utc():
    from retail_dp.resources import parse_as_of

    assert parse_as_of("2026-07-01T08:00:00+02:00") == datetime(2026, 7, 1, 6, 0, 0)
    assert parse_as_of("2026-07-01") == datetime(2026, 7, 1)


def test_a_model_dbt_built_that_never_reached_dagster_fails_the_run(built, tmp_path, monkeypatch):
    """When dbt's log lines cannot be read (once, a Spark progress bar written into them),
    dagster-dbt emits no output for the models dbt built and every step downstream is skipped:
    the dbt step fails naming them, and the run is not ok, instead of exiting 0."""
    from dagster_dbt import DbtCliInvocation

    real = DbtCliInvocation.stream

    def unreadable(self, *args, **kwargs):
        return (e for e in real(self, *args, **kwargs) if not isinstance(e, dg.Output))

    monkeypatch.setattr(DbtCliInvocation, "stream", unreadable)
    settings = built[1]
    copy = tmp_path / "retail_dp.duckdb"
    copy.write_bytes(settings.warehouse.read_bytes())
    report = run_refresh(
        Settings.from_env(data_dir=settings.data_dir, warehouse=copy),
        as_of=AS_OF,
        instance=dg.DagsterInstance.ephemeral(),
        selection=["marts/dim_product", "marts/customer_category_profile"],
    )
    assert not report.ok
    assert "whose results Dagster did not receive" in report.failure
    assert "marts/dim_product" in report.failure

"""dbt's tests on the sources, as asset checks on the source-aligned assets.

dagster-dbt can attach source tests to the dbt op, but then that op counts as checking the
sources itself and Dagster lets it run even when a blocking check on a source has failed. So
the source tests run here instead, in one check op of their own after the three sources load
(one `dbt test` invocation), and the dbt op stays behind the sources' blocking checks. They are
a second line behind the landing contracts, so they warn rather than block.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from retail_dp.descriptors import Alerts, SloCategory
from retail_dp.quality.incidents import Evaluation, record
from retail_dp.resources import Engine, ReferenceTime, Warehouse
from retail_dp.transform.assets import prepare_dbt_run
from retail_dp.transform.dbt_tests import test_category

SOURCE_SCHEMA = "sources"


@dataclass(frozen=True)
class SourceTest:
    unique_id: str
    group: str  # the dbt source name
    source: str  # the table, which is also the source-aligned asset
    name: str
    severity: str  # ERROR | WARN, from the test's config
    category: SloCategory  # from the test's kind (test_metadata.name)

    @property
    def key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(dg.AssetKey(self.source), self.name)

    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            self.name,
            asset=self.source,
            description=f"[{self.category.value}] dbt test {self.name} on source "
            f"{SOURCE_SCHEMA}.{self.source}.",
            blocking=self.severity == "ERROR",
            metadata={
                "slo_category": self.category.value,
                "severity": self.severity,
                "dbt_unique_id": self.unique_id,
            },
        )


def source_tests(manifest_path: Path) -> dict[str, list[SourceTest]]:
    """source table -> the dbt tests declared on it (a relationships test between two sources
    belongs to the table that declares it)."""
    manifest = json.loads(manifest_path.read_text())
    found: dict[str, list[SourceTest]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or node.get("attached_node"):
            continue
        declared_on = re.search(
            r"source\(\s*'(\w+)'\s*,\s*'(\w+)'\s*\)",
            str(node.get("test_metadata", {}).get("kwargs", {}).get("model", "")),
        )
        if not declared_on:
            continue
        group, table = declared_on.groups()
        severity = str(node["config"].get("severity", "ERROR")).upper()
        found.setdefault(table, []).append(
            SourceTest(node["unique_id"], group, table, node["name"], severity, test_category(node))
        )
    for tests in found.values():
        tests.sort(key=lambda t: t.name)
    return found


def build_source_test_checks(
    project: DbtProject, alerts: Alerts
) -> dg.AssetChecksDefinition | None:
    manifest_path = Path(project.manifest_path)
    tests = [t for ts in source_tests(manifest_path).values() for t in ts]
    if not tests:
        return None

    @dg.multi_asset_check(
        name="dbt_source_tests",
        specs=[t.spec() for t in tests],
        can_subset=True,
        description="dbt's tests on the sources (dbt test --select source:...).",
    )
    def _run(
        context: dg.AssetCheckExecutionContext,
        dbt: DbtCliResource,
        warehouse: Warehouse,
        reference_time: ReferenceTime,
        engine: Engine,
    ):
        selected = [t for t in tests if t.key in context.selected_asset_check_keys]
        dbt_vars, target_path = prepare_dbt_run(
            warehouse, reference_time.resolve(context), project, engine=engine
        )
        results, evaluations = run_source_tests(dbt, manifest_path, selected, dbt_vars, target_path)
        with warehouse.get_connection() as con:
            record(
                con,
                evaluations,
                context.run.run_id,
                alerts,
            )
        yield from results

    return _run


def run_source_tests(
    dbt: DbtCliResource,
    manifest_path: Path,
    tests: list[SourceTest],
    dbt_vars: list[str],
    target_path: Path,
) -> tuple[list[dg.AssetCheckResult], list[Evaluation]]:
    invocation = dbt.cli(
        ["test", "--select", " ".join(t.name for t in tests), *dbt_vars],
        manifest=manifest_path,
        raise_on_error=False,
        target_path=target_path,
    ).wait()
    outcomes = {r["unique_id"]: r for r in invocation.get_artifact("run_results.json")["results"]}
    results, evaluations = [], []
    for test in tests:
        outcome = outcomes.get(test.unique_id) or {}
        status = outcome.get("status", "not run")
        failures = outcome.get("failures")
        passed = status == "pass"
        severity = "WARN" if status == "warn" else test.severity
        results.append(
            dg.AssetCheckResult(
                asset_key=test.key.asset_key,
                check_name=test.name,
                passed=passed,
                severity=dg.AssetCheckSeverity(severity),
                description=None if passed else outcome.get("message") or status,
                metadata={
                    "slo_category": test.category.value,
                    "measured": failures if failures is not None else status,
                    "target": 0,
                    "dbt_status": status,
                },
            )
        )
        evaluations.append(
            Evaluation(
                asset=test.source,
                check_name=test.name,
                passed=passed,
                severity=severity,
                slo_category=test.category.value,
                measured=failures,
                target=0,
                comparison="failing rows =",
                detail=f"dbt test: {status}",
                data_product=test.source,
            )
        )
    return results, evaluations

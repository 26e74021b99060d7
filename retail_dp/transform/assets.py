"""The consumer-aligned layer: dbt models (staging and marts) as Dagster assets.

A translator driven by dbt `meta` (`data_product`) and the descriptors puts the owning data
product's group, owners and tags on every model, so the catalog shows products as declared.
dbt tests on the models become asset checks; the tests on sources run in the sources' own check
ops (quality/dbt_sources.py), so the sources' blocking checks gate this op.
"""

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliInvocation,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from packaging import version

from retail_dp.descriptors import Catalog, SloCategory
from retail_dp.resources import Engine, ReferenceTime, RefreshMode, Warehouse
from retail_dp.transform.dbt_tests import test_categories, test_category

# what the quality layer does with a step's dbt test results once dbt has released the
# warehouse (open or resolve incidents): injected, so this layer never imports quality
TestResultsHandler = Callable[[duckdb.DuckDBPyConnection, list[dg.AssetCheckResult], str], None]

DBT_INPUTS = ("models", "macros", "seeds", "dbt_project.yml", "profiles.yml")


class DataProductTranslator(DagsterDbtTranslator):
    def __init__(self, catalog: Catalog):
        super().__init__(
            settings=DagsterDbtTranslatorSettings(
                enable_asset_checks=True, enable_source_tests_as_checks=False
            )
        )
        self.catalog = catalog

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec  # the source-aligned assets own these keys
        meta = {**props.get("meta", {}), **props.get("config", {}).get("meta", {})}
        name = meta.get("data_product")
        if name is None:
            raise ValueError(f"dbt node {unique_id} has no meta.data_product")
        product = self.catalog[name]
        layer = props.get("fqn", ["", ""])[1] if props["resource_type"] == "model" else "seed"
        return spec.replace_attributes(
            group_name=product.name,
            owners=product.owners,
            tags={**spec.tags, **product.dagster_tags, "layer": layer},
        )

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        category = test_category(manifest["nodes"][unique_id]).value
        return dg.AssetCheckSpec(
            spec.name,
            asset=spec.asset_key,
            description=f"[{category}] dbt test {spec.name}. {spec.description or ''}".strip(),
            additional_deps=spec.additional_deps,
            blocking=spec.blocking,
            metadata={**(spec.metadata or {}), "slo_category": category},
        )


RUN_CONTEXT = "reference.run_context"


def prepare_dbt_run(
    warehouse: Warehouse,
    as_of: datetime,
    project: DbtProject,
    refresh_mode: RefreshMode | None = None,
    refit_every_days: int = 7,
    engine: Engine | None = None,
) -> tuple[list[str], Path]:
    """Write the run's as_of and whether it refits the models where the models read them
    (`as_of()` and `refit()` read RUN_CONTEXT), and return the `--vars` arguments and the
    target folder for this warehouse and engine (the dbt resource names the engine's dbt
    target). On Spark, the tables dbt reads go to the lake first (spark/dbt.py).

    Neither changes from one run to the next on the same warehouse, so dbt keeps its partial
    parse there instead of re-parsing the project on every call."""
    with warehouse.get_connection() as con:
        if refresh_mode is not None:
            refit, why = refresh_mode.refit_due(con, as_of, refit_every_days)
        else:
            # the dbt source tests: the model step decides; until then, a refit
            refit, why = True, "not decided yet (the model step decides)"
        con.execute("CREATE SCHEMA IF NOT EXISTS reference")
        con.execute(
            f"CREATE OR REPLACE TABLE {RUN_CONTEXT} AS SELECT CAST(? AS TIMESTAMP) AS as_of, "
            "CAST(? AS BOOLEAN) AS refit, CAST(? AS VARCHAR) AS refit_reason",
            [as_of, refit, why],
        )
        if engine is not None and engine.is_spark:
            from retail_dp.spark.dbt import write_dbt_inputs
            from retail_dp.spark.lake import Lake

            write_dbt_inputs(con, Lake.of(Path(engine.spark_dir)), Path(project.project_dir))
    dbt_vars = json.dumps(
        {"warehouse": warehouse.database, "memory_limit": warehouse.memory_limit}, sort_keys=True
    )
    digest = hashlib.sha256(dbt_vars.encode()).hexdigest()[:12]
    if engine is not None and engine.is_spark:
        spark = hashlib.sha256(str(Path(engine.spark_dir).resolve()).encode()).hexdigest()[:12]
        return ["--vars", dbt_vars], Path(project.target_path) / f"spark-{spark}"
    return ["--vars", dbt_vars], Path(project.target_path) / f"warehouse-{digest}"


def dbt_executable() -> str:
    """The dbt installed beside this interpreter, so an unactivated venv works too."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


class LocalDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt resource, without two costs of each run that this project gets
    nothing for.

    - dbt's version: dagster-dbt learns it by running `dbt --version` once per run, and that
      command asks PyPI for the latest release (a network call with a 1 s timeout, 2-3 s in
      all here). A scheduled run should not call the internet. When the executable is the
      dbt installed beside this interpreter (`dbt_executable()`), its version is the
      installed dbt-core's.
    - A dbt adapter in Dagster's own process, loaded on every dbt call (about 1 s each,
      three calls a run): dagster-dbt uses it only to fetch row counts and column metadata,
      which this project does not ask for (`fetch_row_counts` and `fetch_column_metadata`
      would say there is no adapter)."""

    def _initialize_dbt_core_adapter(self, args):
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        beside = Path(sys.executable).parent / "dbt"
        if Path(self.dbt_executable) == beside:
            return version.parse(metadata.version("dbt-core"))
        return super()._cli_version


def dbt_project(project_dir: Path) -> DbtProject:
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    manifest = project.manifest_path
    newest = max(
        (p.stat().st_mtime for name in DBT_INPUTS for p in _files(project_dir / name)),
        default=0.0,
    )
    if not manifest.exists() or manifest.stat().st_mtime < newest:
        # the manifest is what the code location is built from: keep it in step with the models
        dbt = LocalDbtCliResource(
            project_dir=str(project_dir),
            profiles_dir=str(project_dir),
            dbt_executable=dbt_executable(),
        )
        dbt.cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project


def _files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file())


SEMANTIC_TAG = "tag:semantic"


def build_dbt_assets(
    project: DbtProject, catalog: Catalog, on_test_results: TestResultsHandler | None = None
) -> list[dg.AssetsDefinition]:
    """Two dbt steps: the models up to the marts, then the semantic layer's tables, which read
    the marts the model fits write in between."""
    return [
        _dbt_step(
            project,
            catalog,
            "cross_sell_dbt_models",
            on_test_results,
            # the sources' tests run once, in their own op (quality/dbt_sources.py)
            exclude=f"{SEMANTIC_TAG} source:*",
        ),
        _dbt_step(
            project, catalog, "semantic_layer_dbt_models", on_test_results, select=SEMANTIC_TAG
        ),
    ]


def _dbt_step(
    project: DbtProject,
    catalog: Catalog,
    name: str,
    on_test_results: TestResultsHandler | None,
    select: str = "fqn:*",
    exclude: str | None = None,
) -> dg.AssetsDefinition:
    categories = test_categories(project.manifest_path)
    translator = DataProductTranslator(catalog)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator,
        name=name,
        select=select,
        exclude=exclude,
    )
    def _models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        warehouse: Warehouse,
        reference_time: ReferenceTime,
        refresh_mode: RefreshMode,
        engine: Engine,
    ):
        dbt_vars, target_path = prepare_dbt_run(
            warehouse,
            reference_time.resolve(context),
            project,
            refresh_mode,
            catalog.consumer.refresh.refit_every_days,
            engine,
        )
        results: list[dg.AssetCheckResult] = []
        # incremental models rebuild only the customers whose lines changed, unless asked
        full = ["--full-refresh"] if refresh_mode.full_refresh else []
        build = dbt.cli(["build", *dbt_vars, *full], context=context, target_path=target_path)
        outputs = set()
        for event in build.stream():
            if isinstance(event, dg.AssetCheckResult):
                event = _with_category(event, categories)
                results.append(event)
            elif isinstance(event, dg.Output):
                outputs.add(event.output_name)
            yield event
        _require_outputs(context, build, translator, project, outputs)
        if engine.is_spark:
            # the tables dbt built on Spark, into the warehouse the fits and checks read
            from retail_dp.spark.dbt import mirror_built_tables

            with warehouse.get_connection() as con:
                copied = mirror_built_tables(
                    con,
                    Path(engine.spark_dir),
                    project.manifest_path,
                    build.get_artifact("run_results.json"),
                )
            context.log.info(f"copied {len(copied)} Spark tables into DuckDB: {copied}")
        if on_test_results and results:
            # dbt has exited and released the warehouse
            with warehouse.get_connection() as con:
                on_test_results(con, results, context.run_id)

    return _models


def _require_outputs(
    context: dg.AssetExecutionContext,
    build: DbtCliInvocation,
    translator: DagsterDbtTranslator,
    project: DbtProject,
    outputs: set[str],
) -> None:
    """Fail when dbt built a model whose result never reached Dagster: its log line could not
    be read (once, a Spark progress bar written into it), and the steps downstream would be
    skipped in a run that still looked green."""
    manifest = build.manifest
    built = {
        translator.get_asset_spec(manifest, r["unique_id"], project).key
        for r in build.get_artifact("run_results.json")["results"]
        if r["status"] == "success" and r["unique_id"].startswith(("model.", "seed."))
    }
    missing = sorted(
        key.to_user_string()
        for key in built & context.selected_asset_keys
        if context.assets_def.get_output_name_for_asset_key(key) not in outputs
    )
    if missing:
        raise dg.Failure(
            f"dbt built {len(missing)} model(s) whose results Dagster did not receive: "
            f"{', '.join(missing)} (dbt's JSON log lines were unreadable)"
        )


def _with_category(
    result: dg.AssetCheckResult, categories: dict[str, SloCategory]
) -> dg.AssetCheckResult:
    """The result with its SLO category in the metadata, as the check's spec has it."""
    category = categories.get(result.check_name, SloCategory.accuracy)
    return dg.AssetCheckResult(
        passed=result.passed,
        asset_key=result.asset_key,
        check_name=result.check_name,
        metadata={**result.metadata, "slo_category": category.value},
        severity=result.severity,
        description=result.description,
    )

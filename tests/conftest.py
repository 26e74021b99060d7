"""Shared fixtures: one small generated landing zone and one warehouse built per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from retail_dp.generator.landing import GenerateRequest, generate  # noqa: E402
from retail_dp.runner import RunReport, run_refresh  # noqa: E402
from retail_dp.settings import PROJECT_ROOT, Settings  # noqa: E402

END_DATE = date(2026, 6, 30)
AS_OF = datetime(2026, 7, 1, 6, 0, 0)


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    """The default sample (2,240 customers, 0.3% planted defects of every kind): every kind
    is planted, and the landing data still meets its SLOs, so the marts get built."""
    out = tmp_path_factory.mktemp("landing")
    manifest = generate(
        GenerateRequest(customers=2240, seed=42, end_date=END_DATE, out=out, defect_rate=0.003)
    )
    assert all(n > 0 for n in manifest["defects"].values()), manifest["defects"]
    return out, manifest


@pytest.fixture(scope="session")
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="session")
def built(sample, instance, tmp_path_factory) -> tuple[RunReport, Settings, dict]:
    """The sample, materialized once with real dbt and DuckDB, recorded in `instance`."""
    data_dir, manifest = sample
    settings = Settings.from_env(
        data_dir=data_dir, warehouse=tmp_path_factory.mktemp("wh") / "retail_dp.duckdb"
    )
    report = run_refresh(settings, as_of=AS_OF, instance=instance)
    return report, settings, manifest


def build(data_dir: Path, warehouse: Path, as_of: datetime = AS_OF) -> tuple[RunReport, Settings]:
    """A landing zone through the whole refresh into a new warehouse, in its own instance."""
    settings = Settings.from_env(data_dir=data_dir, warehouse=warehouse)
    return run_refresh(settings, as_of=as_of, instance=dg.DagsterInstance.ephemeral()), settings


@pytest.fixture(scope="session")
def marketplace(tmp_path_factory) -> tuple[RunReport, Settings, dict]:
    """A marketplace's shape (32-hex ids, 70 categories, ~3% repeat buyers, no names), built
    once through the whole pipeline: every feature is tested on it as well as on the sample."""
    from retail_dp.generator.profiles import MarketplaceProfile

    landing = tmp_path_factory.mktemp("marketplace")
    manifest = generate(
        GenerateRequest(
            customers=2240, seed=7, end_date=END_DATE, out=landing, profile=MarketplaceProfile()
        )
    )
    report, settings = build(landing, tmp_path_factory.mktemp("mwh") / "retail_dp.duckdb")
    return report, settings, manifest


def run_cli(*args: str, dagster_home: Path) -> subprocess.CompletedProcess:
    """The installed `retail-dp` console script, in its own process and Dagster instance."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "retail-dp"), *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
        timeout=600,
    )


def located(data_dir: Path, warehouse: Path) -> list[str]:
    """The CLI's location options for a landing zone and warehouse, at the tests' AS_OF."""
    return [
        "--data-dir",
        str(data_dir),
        "--warehouse",
        str(warehouse),
        "--as-of",
        AS_OF.isoformat(),
    ]


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="session")
def server(built, tmp_path_factory):
    """The delivery service on loopback, serving the built sample's published snapshot."""
    from .delivery_server import Server

    _, settings, _ = built
    running = Server(settings.warehouse, tmp_path_factory.mktemp("audit") / "access.jsonl")
    yield running
    running.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def backtest_reports(built):
    """Where the delivery service looks for `retail-dp backtest`'s reports (the default
    backtest warehouse beside the built one), and a writer of real reports there: one built
    by `backtest.build_report` from the built warehouse, with the as_of and creation time
    given. The folder is removed afterwards, so no other test sees a report."""
    import shutil
    from datetime import timedelta

    from retail_dp.analytics import backtest, backtest_reports

    _, settings, _ = built
    folder = backtest_reports.reports_dir(backtest_reports.default_warehouse(settings.warehouse))
    window = backtest.Window(AS_OF - timedelta(days=90), 90)
    outcomes = backtest.read_outcomes(settings.data_dir, settings.descriptors_dir, window)
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        real = backtest.build_report(con, outcomes, window)

    def write(as_of: datetime, created_at: datetime) -> dict:
        report = {**real, "as_of": as_of.isoformat(sep=" "),
                  "created_at": created_at.isoformat(timespec="milliseconds")}  # fmt: skip
        backtest.write_report(report, folder)
        return report

    yield folder, write
    shutil.rmtree(folder.parent, ignore_errors=True)

"""Where `retail-dp` looks: flag, else environment variable, else default; and the one-line
refusals when the landing zone or the warehouse cannot be used."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from retail_dp.cli import build_parser, main, settings_from_args
from retail_dp.resources import Warehouse, share_of
from retail_dp.settings import ENV_VARS, MEMORY_LIMIT_VAR, PROJECT_ROOT, Settings

from .conftest import run_cli

# written out rather than read from Settings, so a changed default fails here
DEFAULTS = {
    "data_dir": PROJECT_ROOT / "data" / "landing",
    "warehouse": PROJECT_ROOT / "data" / "warehouse" / "retail_dp.duckdb",
    "policies": PROJECT_ROOT / "data_products" / "access" / "policies.yaml",
    "descriptors_dir": PROJECT_ROOT / "data_products",
    "dagster_home": PROJECT_ROOT / "dagster_home",
}
# (command, setting, flag): every flag that names a setting
FLAGGED = [
    ("run", "data_dir", "--data-dir"),
    ("run", "warehouse", "--warehouse"),
    ("check", "data_dir", "--data-dir"),
    ("check", "warehouse", "--warehouse"),
    ("serve", "warehouse", "--warehouse"),
    ("serve", "policies", "--policies"),
]
# (command, setting): settings only the environment moves
ENV_ONLY = [("run", "dagster_home"), ("check", "dagster_home"), ("serve", "descriptors_dir")]
HOLDER = "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); print('ok', flush=True); " + (
    "time.sleep(30)"
)
IN_USE = re.compile(
    r"the warehouse (?P<path>.+) is in use by (?P<program>.+) \(PID (?P<pid>\d+)\); "
    r"wait for it to finish or stop it"
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch) -> None:
    """No RETAIL_DP_* or DAGSTER_HOME from the shell running the tests."""
    for var in [*ENV_VARS.values(), MEMORY_LIMIT_VAR]:
        monkeypatch.delenv(var, raising=False)


def resolve(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(list(argv)))


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text.strip()


@pytest.mark.parametrize(("command", "name", "flag"), FLAGGED)
def test_env_var_is_used_when_no_flag_is_given(monkeypatch, tmp_path, command, name, flag):
    monkeypatch.setenv(ENV_VARS[name], str(tmp_path / "from-env"))
    assert getattr(resolve(command), name) == tmp_path / "from-env"


@pytest.mark.parametrize(("command", "name", "flag"), FLAGGED)
def test_flag_beats_env_var(monkeypatch, tmp_path, command, name, flag):
    monkeypatch.setenv(ENV_VARS[name], str(tmp_path / "from-env"))
    assert getattr(resolve(command, flag, str(tmp_path / "from-flag")), name) == (
        tmp_path / "from-flag"
    )


@pytest.mark.parametrize(("command", "name", "flag"), FLAGGED)
def test_default_when_neither_flag_nor_env_var(command, name, flag):
    assert getattr(resolve(command), name) == DEFAULTS[name]


@pytest.mark.parametrize(("command", "name"), ENV_ONLY)
def test_env_only_settings_follow_the_environment(monkeypatch, tmp_path, command, name):
    assert getattr(resolve(command), name) == DEFAULTS[name]
    monkeypatch.setenv(ENV_VARS[name], str(tmp_path / "from-env"))
    assert getattr(resolve(command), name) == tmp_path / "from-env"


def test_a_flag_for_one_setting_leaves_the_others_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RETAIL_DP_WAREHOUSE", str(tmp_path / "env.duckdb"))
    monkeypatch.setenv("RETAIL_DP_DATA_DIR", str(tmp_path / "env-landing"))
    settings = resolve("run", "--data-dir", str(tmp_path / "flag-landing"))
    assert settings.data_dir == tmp_path / "flag-landing"
    assert settings.warehouse == tmp_path / "env.duckdb"


def test_an_empty_env_var_counts_as_unset(monkeypatch):
    monkeypatch.setenv("RETAIL_DP_WAREHOUSE", "")
    assert resolve("check").warehouse == DEFAULTS["warehouse"]


def test_relative_flags_resolve_against_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert resolve("run", "--warehouse", "w.duckdb").warehouse == tmp_path / "w.duckdb"


def test_a_misspelt_override_is_refused():
    with pytest.raises(TypeError, match="warehous"):
        Settings.from_env(warehous="x.duckdb")


@pytest.mark.parametrize("command", ["run", "check"])
def test_the_engine_comes_from_the_flag_else_the_environment(monkeypatch, command):
    assert resolve(command).engine == "duckdb"
    monkeypatch.setenv("RETAIL_DP_ENGINE", "spark")
    assert resolve(command).engine == "spark"
    assert resolve(command, "--engine", "duckdb").engine == "duckdb"


def test_an_unknown_engine_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("RETAIL_DP_ENGINE", "snowflake")
    with pytest.raises(ValueError, match="RETAIL_DP_ENGINE='snowflake': the engine is one of"):
        Settings.from_env()


def test_run_on_spark_without_the_extra_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real(name, *a)
    )
    landing = tmp_path / "landing"
    landing.mkdir()
    args = ["run", "--engine", "spark", "--data-dir", str(landing)]
    assert main([*args, "--warehouse", str(tmp_path / "w.duckdb")]) == 2
    assert "make install-spark" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("run", ["$RETAIL_DP_DATA_DIR", "$RETAIL_DP_WAREHOUSE"]),
        ("check", ["$RETAIL_DP_DATA_DIR", "$RETAIL_DP_WAREHOUSE"]),
        ("serve", ["$RETAIL_DP_WAREHOUSE", "$RETAIL_DP_POLICIES"]),
    ],
)
def test_help_names_the_env_vars(capsys, command, expected):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(var in text for var in expected), text


# the refusals, in process: each stops before the runner (and Dagster) is involved


def test_run_refuses_the_missing_data_dir_named_by_the_environment(monkeypatch, tmp_path, capsys):
    missing = tmp_path / "no-such-landing"
    monkeypatch.setenv("RETAIL_DP_DATA_DIR", str(missing))
    monkeypatch.setenv("RETAIL_DP_WAREHOUSE", str(tmp_path / "w.duckdb"))
    assert main(["run"]) == 2
    err = one_line(capsys.readouterr().err)
    assert err == f"retail-dp run: the landing zone {missing} does not exist"
    assert not (tmp_path / "w.duckdb").exists()


def test_run_refuses_a_data_dir_that_is_a_file(tmp_path, capsys):
    landing = tmp_path / "landing.csv"
    landing.write_text("id\n1\n")
    assert main(["run", "--data-dir", str(landing), "--warehouse", str(tmp_path / "w")]) == 2
    err = one_line(capsys.readouterr().err)
    assert err == f"retail-dp run: the landing zone {landing} is not a directory"


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("a-file/w.duckdb", "{tmp}/a-file is not a directory"),
        ("a-file/sub/w.duckdb", "Not a directory: {tmp}/a-file/sub"),
        ("a-dir", "it is a directory"),
    ],
)
def test_run_refuses_a_warehouse_it_cannot_open(tmp_path, capsys, where, reason):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-dir").mkdir()
    warehouse = tmp_path / where
    argv = ["run", "--data-dir", str(tmp_path), "--warehouse", str(warehouse)]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert err == f"retail-dp run: cannot open warehouse {warehouse}: " + reason.format(
        tmp=tmp_path
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_run_refuses_a_warehouse_in_a_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    warehouse = folder / "w.duckdb"
    try:
        assert main(["run", "--data-dir", str(tmp_path), "--warehouse", str(warehouse)]) == 2
    finally:
        folder.chmod(0o755)
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"retail-dp run: cannot open warehouse {warehouse}: ")
    assert "Permission denied" in err


# the lock: another process holds the DuckDB file read-write


@pytest.fixture
def held(tmp_path) -> Iterator[tuple[Path, int]]:
    """A warehouse file held open read-write by another process, and that process's PID."""
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        yield path, holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_run_names_the_process_holding_the_warehouse(held, tmp_path):
    path, pid = held
    landing = tmp_path / "landing"
    landing.mkdir()
    home = tmp_path / "home"
    proc = run_cli("run", "--data-dir", str(landing), "--warehouse", str(path), dagster_home=home)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = one_line(proc.stderr)
    assert err.startswith("retail-dp run: "), err
    match = IN_USE.fullmatch(err.removeprefix("retail-dp run: "))
    assert match, err
    assert (match["path"], int(match["pid"])) == (str(path), pid)
    assert "python" in match["program"]
    # refused before any Dagster run: no instance was even created
    assert not home.exists()


def test_check_names_the_process_holding_the_warehouse(held, capsys):
    path, pid = held
    assert main(["check", "--warehouse", str(path)]) == 2
    err = one_line(capsys.readouterr().err)
    match = IN_USE.fullmatch(err.removeprefix("retail-dp check: "))
    assert match and int(match["pid"]) == pid, err


def test_warehouse_resource_fails_the_step_with_one_line(held):
    from retail_dp.runner import _failure

    path, pid = held

    @dg.asset
    def touches_the_warehouse(warehouse: Warehouse) -> None:
        with warehouse.get_connection() as con:
            con.execute("SELECT 1")

    result = dg.materialize(
        [touches_the_warehouse],
        resources={"warehouse": Warehouse(database=str(path))},
        raise_on_error=False,
    )
    assert not result.success
    failure = _failure(result)
    assert failure.startswith("touches_the_warehouse: the warehouse "), failure
    match = IN_USE.fullmatch(failure.removeprefix("touches_the_warehouse: "))
    assert match and int(match["pid"]) == pid, failure
    # a dagster.Failure of its own, not DuckDB's IOException underneath
    (event,) = [e for e in result.all_events if e.is_step_failure]
    assert event.step_failure_data.user_failure_data is not None
    assert event.step_failure_data.error.cause is None


# end to end: the environment reaches `retail-dp check` in its own process


def test_check_reports_the_warehouse_named_by_the_environment(monkeypatch, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    warehouse = tmp_path / "elsewhere" / "retail_dp.duckdb"
    monkeypatch.setenv("RETAIL_DP_DATA_DIR", str(landing))
    monkeypatch.setenv("RETAIL_DP_WAREHOUSE", str(warehouse))
    proc = run_cli("check", dagster_home=tmp_path / "home")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert one_line(proc.stderr) == (
        f"retail-dp check: cannot open warehouse {warehouse}: "
        "no such file; build it first (retail-dp run)"
    )
    assert not warehouse.parent.exists()


def test_a_step_can_give_duckdb_a_share_of_the_warehouse_memory_limit(tmp_path):
    # the model fits keep half for their own frames (retail_dp/analytics/assets.py)
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"), memory_limit="2GiB")
    limits = {}
    for share in (1.0, 0.5, 0.25):
        with warehouse.get_connection(memory_share=share) as con:
            (limits[share],) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert limits == {1.0: "2.0 GiB", 0.5: "1.0 GiB", 0.25: "512.0 MiB"}
    assert share_of("2GB", 0.5) == "953MiB"  # DuckDB's GB is 1000^3 bytes, its GiB 1024^3
    for limit, share in (("lots", 0.5), ("2GB", 1.5), ("2GB", 0)):
        with pytest.raises(ValueError, match="cannot take"):
            share_of(limit, share)

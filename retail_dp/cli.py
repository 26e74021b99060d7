"""`retail-dp`: generate sample data, refresh the data product, prepare the dbt manifest."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from retail_dp.quality.report import SLO_CATEGORIES
from retail_dp.resources import WarehouseUnavailable, parse_as_of, probe_warehouse
from retail_dp.settings import OPENAPI_DOC, Settings, env_help


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a YYYY-MM-DD date") from exc


def _as_of(value: str) -> datetime:
    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


class UsageError(Exception):
    """A setting the command cannot work with; the message is one line for stderr."""


# the flags that name a setting; a flag not given is None, so the environment or default wins
SETTING_FLAGS = ("data_dir", "warehouse", "policies")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The command's settings: a flag given wins, else its environment variable, else the
    default (Settings.from_env applies the last two)."""
    return Settings.from_env(**{name: getattr(args, name, None) for name in SETTING_FLAGS})


def _require_data_dir(settings: Settings) -> None:
    if not settings.data_dir.exists():
        raise UsageError(f"the landing zone {settings.data_dir} does not exist")
    if not settings.data_dir.is_dir():
        raise UsageError(f"the landing zone {settings.data_dir} is not a directory")


def _preflight_run(settings: Settings) -> None:
    _require_data_dir(settings)
    probe_warehouse(settings.warehouse)


def _preflight_check(settings: Settings) -> None:
    # not the landing zone: checks of the marts need none, and a source check names the files
    # it misses
    probe_warehouse(settings.warehouse, create=False)


def _preflight(command: str, settings: Settings, check: Callable[[Settings], None]) -> bool:
    """Run `check` before any Dagster run starts; print its one-line refusal, if any."""
    try:
        check(settings)
    except (UsageError, WarehouseUnavailable) as exc:
        print(f"retail-dp {command}: {exc}", file=sys.stderr)
        return False
    return True


def _location_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help=env_help("data_dir", "landing zone"))
    parser.add_argument("--warehouse", type=Path, help=env_help("warehouse", "DuckDB file"))
    parser.add_argument(
        "--as-of",
        type=_as_of,
        help="reference time, ISO date or timestamp in UTC (default: the run's start)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail-dp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a realistic sample landing zone")
    gen.add_argument("--customers", type=int, default=2240)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument(
        "--end-date",
        type=_date,
        default=datetime.now(UTC).date() - timedelta(days=1),
        help="last day the purchases cover (default: yesterday, UTC)",
    )
    gen.add_argument("--out", type=Path, default=Settings().data_dir)
    gen.add_argument("--format", choices=["csv", "parquet"], default="csv")
    gen.add_argument(
        "--defect-rate",
        type=float,
        default=0.003,
        help="planted defects per row, per kind; a rate within an SLO's allowance never breaks it",
    )
    gen.add_argument(
        "--profile",
        default="grocery",
        help="shape of the data: grocery (default; planted affinities) or marketplace "
        "(hashed ids, no contact details, ~70 categories, ~3%% repeat buyers)",
    )

    run = sub.add_parser("run", help="materialize every asset and run every check")
    _location_args(run)

    check = sub.add_parser(
        "check",
        help="run the asset checks against the warehouse as it stands (no materialization)",
        description="Run the asset checks (SLO checks and dbt tests) against the warehouse as "
        "it stands, record them in the Dagster instance and print one row per check. Exit "
        "status: 0 if no ERROR check failed, 1 if one did (or a check could not run), 2 on "
        "a bad selection or a missing warehouse.",
    )
    _location_args(check)
    check.add_argument(
        "--select",
        nargs="+",
        metavar="ASSET_OR_CHECK",
        help="asset keys (purchase, marts/fct_purchase), asset:check keys or check names",
    )
    check.add_argument(
        "--category", nargs="+", choices=SLO_CATEGORIES, help="only checks of these SLO categories"
    )
    check.add_argument("--junit-xml", type=Path, metavar="FILE", help="also write JUnit XML")

    slo = sub.add_parser("slo", help="SLO attainment per category over the last runs")
    slo.add_argument("--runs", type=int, default=10, help="how many recent runs (default 10)")

    serve = sub.add_parser(
        "serve", help="the delivery service (REST, GraphQL) on the published snapshot"
    )
    serve.add_argument(
        "--warehouse",
        type=Path,
        help=env_help("warehouse", "the warehouse whose published/ snapshots to serve"),
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="default 8000")
    serve.add_argument("--policies", type=Path, help=env_help("policies", "access policies"))

    openapi = sub.add_parser(
        "openapi", help="write the delivery service's contracts (OpenAPI, GraphQL SDL)"
    )
    openapi.add_argument("--out", type=Path, default=OPENAPI_DOC.parent, help="a folder")

    sub.add_parser("prepare", help="parse the dbt project so the code location can load")
    return parser


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # refuse before importing the runner: loading Dagster and dbt takes seconds
    if not _preflight("run", settings, _preflight_run):
        return 2
    from retail_dp.runner import format_report, run_refresh

    try:
        report = run_refresh(settings, as_of=args.as_of)
    except WarehouseUnavailable as exc:
        # taken between the preflight and the end of the run (the report reads it last)
        print(f"retail-dp run: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.ok else 1


def _check(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not _preflight("check", settings, _preflight_check):
        return 2
    from retail_dp.quality.report import junit_xml
    from retail_dp.runner import SelectionError, format_check_report, run_checks

    try:
        report = run_checks(
            settings, as_of=args.as_of, select=args.select, categories=args.category
        )
    except (SelectionError, WarehouseUnavailable) as exc:
        print(f"retail-dp check: {exc}", file=sys.stderr)
        return 2
    print(format_check_report(report))
    if args.junit_xml:
        junit_xml(report.rows, args.junit_xml, report.seconds)
        print(f"JUnit XML: {args.junit_xml}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        from retail_dp.generator.landing import GenerateRequest, generate
        from retail_dp.generator.profiles import PROFILES

        if args.profile not in PROFILES:
            print(
                f"retail-dp generate: no profile {args.profile!r}; choose {', '.join(PROFILES)}",
                file=sys.stderr,
            )
            return 2
        manifest = generate(
            GenerateRequest(
                customers=args.customers,
                seed=args.seed,
                end_date=args.end_date,
                out=args.out,
                format=args.format,
                defect_rate=args.defect_rate,
                profile=PROFILES[args.profile],
            )
        )
        print(f"wrote {args.out} ({args.profile}): " + json.dumps(manifest["rows"]))
        print("planted defects: " + json.dumps(manifest["defects"]))
        return 0
    if args.command == "prepare":
        from retail_dp.transform.assets import dbt_project

        project = dbt_project(Settings().dbt_project_dir)
        print(f"dbt manifest ready: {project.manifest_path}")
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "check":
        return _check(args)
    if args.command == "slo":
        from retail_dp.runner import slo_report

        print(slo_report(Settings.from_env(), args.runs))
        return 0
    if args.command == "serve":
        import uvicorn

        from retail_dp.delivery.api import create_app
        from retail_dp.delivery.service import DeliveryService

        settings = settings_from_args(args)
        service = DeliveryService(settings)
        app = create_app(service)
        demo = [c.name for c in service.policies.file.callers if c.name.startswith("demo-")]
        if demo:
            print(
                f"warning: the demo callers ({', '.join(demo)}) are enabled, and their keys "
                f"are in the README; replace them in {settings.policies} before exposing the "
                "service beyond this machine",
                file=sys.stderr,
            )
        print(f"retail_dp delivery service: http://{args.host}:{args.port}/ (docs at /docs)")
        print(f"serving the snapshots published under {settings.warehouse.parent / 'published'}")
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    if args.command == "openapi":
        from retail_dp.delivery.api import contract_documents

        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in contract_documents(Settings.from_env()).items():
            (args.out / name).write_text(text)
            print(f"wrote {args.out / name}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

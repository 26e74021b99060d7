"""`retail-dp`: generate sample data, refresh the data product, prepare the dbt manifest."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from retail_dp.quality.report import SLO_CATEGORIES
from retail_dp.resources import WarehouseUnavailable, parse_as_of, probe_warehouse
from retail_dp.settings import ENGINE_VAR, ENGINES, OPENAPI_DOC, Settings, env_help


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


def _days(value: str) -> int:
    text = value.strip().lower().removesuffix("d")
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days such as 90d")
    return int(text)


class UsageError(Exception):
    """A setting the command cannot work with; the message is one line for stderr."""


# the flags that name a setting; a flag not given is None, so the environment or default wins
SETTING_FLAGS = ("data_dir", "warehouse", "policies")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The command's settings: a flag given wins, else its environment variable, else the
    default (Settings.from_env applies the last two)."""
    return Settings.from_env(
        engine=getattr(args, "engine", None),
        **{name: getattr(args, name, None) for name in SETTING_FLAGS},
    )


def _require_data_dir(settings: Settings) -> None:
    if not settings.data_dir.exists():
        raise UsageError(f"the landing zone {settings.data_dir} does not exist")
    if not settings.data_dir.is_dir():
        raise UsageError(f"the landing zone {settings.data_dir} is not a directory")


def _preflight_run(settings: Settings) -> None:
    _require_data_dir(settings)
    probe_warehouse(settings.warehouse)
    if settings.engine == "spark" and importlib.util.find_spec("pyspark") is None:
        raise UsageError(
            "the Spark engine needs the [spark] extra: make install-spark "
            "(pip install -c requirements.lock -e '.[spark]')"
        )


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


def _engine_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"what loads and transforms (default: ${ENGINE_VAR}, else duckdb); spark needs "
        "the [spark] extra, and DuckDB serves either way",
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
        help="shape of the data: grocery (default; planted affinities), marketplace "
        "(hashed ids, no contact details, ~70 categories, ~3%% repeat buyers) or sequential "
        "(planted adoption chains: X, then Y 30-120 days later)",
    )
    gen.add_argument(
        "--daily-from",
        type=_date,
        help="lay purchases out as daily drops (CSV only): purchase/history.csv before this "
        "day, then purchase/YYYY-MM-DD.csv per day, with late lines and corrections",
    )

    run = sub.add_parser(
        "run",
        help="materialize every asset and run every check",
        description="Refresh the data product. Incremental by default: only new or changed "
        "landing files are read and only the customers whose purchase lines changed are "
        "rebuilt; the result equals a full rebuild at the same as_of.",
    )
    _location_args(run)
    _engine_arg(run)
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="reload every landing file and rebuild every model from scratch",
    )
    run.add_argument(
        "--refit",
        choices=["auto", "always", "never"],
        default="auto",
        help="refit CLV and cross-sell: auto (default) when the last fit is the consumer "
        "descriptor's refresh.refit_every_days old, else re-score every customer with it",
    )

    check = sub.add_parser(
        "check",
        help="run the asset checks against the warehouse as it stands (no materialization)",
        description="Run the asset checks (SLO checks and dbt tests) against the warehouse as "
        "it stands, record them in the Dagster instance and print one row per check. Exit "
        "status: 0 if no ERROR check failed, 1 if one did (or a check could not run), 2 on "
        "a bad selection or a missing warehouse.",
    )
    _location_args(check)
    _engine_arg(check)
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
    serve.add_argument(
        "--demo",
        action="store_true",
        help="enable the demo callers of the policy file (their keys are in the README); "
        "for a local trial only",
    )

    serve_sql = sub.add_parser(
        "serve-sql",
        help="a read-only PostgreSQL-wire endpoint for BI tools, governed like the service",
    )
    _serving_args(serve_sql, port=5433)
    mcp = sub.add_parser(
        "mcp", help="a Model Context Protocol server for LLM assistants (stdio or HTTP)"
    )
    _serving_args(mcp, port=8765)
    mcp.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (the caller's API key in $RETAIL_DP_API_KEY) or streamable HTTP (the key "
        "in each request's Authorization: Bearer header); default stdio",
    )

    review = sub.add_parser(
        "access-review",
        help="who can see which members, with which masking and rows; records the review",
        description="Print who can see which members of the semantic model, with which "
        "masking and which rows, per group and per caller; write it as CSV and Markdown and "
        "record the review's date beside the policy file (access_reviews.jsonl), which the "
        "governance SLO 'access reviewed within 90 days' reads.",
    )
    review.add_argument("--policies", type=Path, help=env_help("policies", "access policies"))
    review.add_argument(
        "--out", type=Path, help="folder for the CSV and Markdown (default: beside the policies)"
    )
    review.add_argument("--reviewer", help="who reviewed (default: the current user)")

    erase = sub.add_parser(
        "erase",
        help="erase a customer (GDPR Art. 17): suppress, rebuild, publish, purge snapshots",
        description="Add the customer to the landing zone's suppression list (as a SHA-256 "
        "digest), rebuild and publish the product without them, delete every older snapshot "
        "that still holds them, and audit the erasure. Exit 1 if the rebuild fails (the "
        "suppression stays; run it again) or the new snapshot still holds the customer.",
    )
    erase.add_argument("--customer", required=True, metavar="ID", help="the customer_id")
    erase.add_argument("--reason", help="why (kept in the audit log)")
    _location_args(erase)

    backtest = sub.add_parser(
        "backtest",
        help="build the product at --as-of and measure its models on what happened next",
        description="Build the product at --as-of from the full landing zone (later rows are "
        "deferred), read what really happened in (as_of, as_of + horizon] from the same "
        "landing files, and write the models' figures against simple baselines as JSON and "
        "Markdown under reports/ next to the warehouse. The warehouse defaults to backtest/ "
        "beside the product's, so the product itself is never rewound.",
    )
    backtest.add_argument("--data-dir", type=Path, help=env_help("data_dir", "landing zone"))
    backtest.add_argument(
        "--warehouse", type=Path, help="DuckDB file to build at as_of (default: backtest/ "
        "beside the product's warehouse)"
    )  # fmt: skip
    backtest.add_argument("--as-of", type=_as_of, required=True, help="T, ISO date or timestamp")
    backtest.add_argument(
        "--horizon", type=_days, default=90, help="how far to look after T, e.g. 90d (default)"
    )

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
        report = run_refresh(
            settings, as_of=args.as_of, full_refresh=args.full_refresh, refit=args.refit
        )
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


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from retail_dp.delivery.limits import ServiceLimits
    from retail_dp.delivery.policies import PolicyError
    from retail_dp.delivery.server import run
    from retail_dp.delivery.service import DeliveryService

    settings = settings_from_args(args)
    try:
        limits = ServiceLimits.from_env()
        service = DeliveryService(settings, demo=args.demo, limits=limits)
    except (PolicyError, ValidationError) as exc:
        print(f"retail-dp serve: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    callers = service.policies.file.callers
    if args.demo:
        demo = [c.name for c in callers if c.demo]
        print(
            f"warning: demo mode: the demo callers ({', '.join(demo) or 'none'}) are enabled and "
            "their keys are in the README; never expose this service beyond this machine",
            file=sys.stderr,
        )
    else:
        print(
            f"demo callers off ({len(callers)} API-key callers"
            + (", JWTs accepted" if service.policies.jwt_secret else ", no JWT secret")
            + "); `--demo` enables the README's demo keys",
            file=sys.stderr,
        )
    print(f"retail_dp delivery service: http://{args.host}:{args.port}/ (contract: /openapi.json)")
    print(f"serving the snapshots published under {settings.warehouse.parent / 'published'}")
    run(service, args.host, args.port)
    return 0


def _serving_args(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument(
        "--warehouse",
        type=Path,
        help=env_help("warehouse", "the warehouse whose published/ snapshots to serve"),
    )
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument("--port", type=int, default=port, help=f"default {port}")
    parser.add_argument("--policies", type=Path, help=env_help("policies", "access policies"))
    parser.add_argument(
        "--demo", action="store_true", help="enable the demo callers of the policy file"
    )


def _delivery_service(command: str, args: argparse.Namespace):
    """The service under serve-sql and mcp, as under serve; None (said on stderr) if the
    policies or limits are wrong."""
    from pydantic import ValidationError

    from retail_dp.delivery.limits import ServiceLimits
    from retail_dp.delivery.policies import PolicyError
    from retail_dp.delivery.service import DeliveryService

    try:
        return DeliveryService(
            settings_from_args(args), demo=args.demo, limits=ServiceLimits.from_env()
        )
    except (PolicyError, ValidationError, FileNotFoundError) as exc:
        print(f"retail-dp {command}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None


def _serve_sql(args: argparse.Namespace) -> int:
    from retail_dp.delivery.sql_endpoint import run

    service = _delivery_service("serve-sql", args)
    if service is None:
        return 2
    if args.demo:
        print("warning: demo mode: the README's demo keys sign in", file=sys.stderr)
    print(
        f"retail_dp SQL endpoint: postgresql://<caller>:<API key>@{args.host}:{args.port}/"
        "retail_dp (read-only; one relation per semantic table)",
        flush=True,
    )
    run(service, args.host, args.port)
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from retail_dp.delivery.mcp_server import run

    service = _delivery_service("mcp", args)
    if service is None:
        return 2
    return run(service, args.transport, args.host, args.port)


def _access_review(args: argparse.Namespace) -> int:
    import getpass

    from retail_dp.delivery.governance import access_matrix, markdown, masking_coverage, review
    from retail_dp.delivery.policies import Policies, PolicyError
    from retail_dp.delivery.semantic import SemanticModel

    settings = settings_from_args(args)
    try:
        policies = Policies.load(settings.policies, demo=True, serving=False)
        model = SemanticModel.load(settings.dbt_project_dir / "target")
        policies.check_members(model)
    except (PolicyError, FileNotFoundError) as exc:
        print(f"retail-dp access-review: {exc}", file=sys.stderr)
        return 2
    record = review(
        model, policies, args.out or settings.policies.parent / "reviews",
        args.reviewer or getpass.getuser(),
    )  # fmt: skip
    rows = access_matrix(model, policies)
    print(markdown(rows, record["reviewed_at"], policies.source, masking_coverage(model, policies)))
    print(f"CSV: {record['csv']}\nMarkdown: {record['markdown']}")
    print(f"review recorded: {record['reviewed_at']} by {record['reviewer']}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    from retail_dp.delivery.audit import AuditLog
    from retail_dp.delivery.erasure import audit_erasure, purge_snapshots, suppress
    from retail_dp.delivery.service import audit_log_path
    from retail_dp.delivery.snapshots import current_name, published_dir

    settings = settings_from_args(args)
    if not args.customer.strip():
        print("retail-dp erase: --customer is empty", file=sys.stderr)
        return 2
    if not _preflight("erase", settings, _preflight_run):
        return 2
    from retail_dp.runner import format_report, run_refresh

    log = AuditLog(audit_log_path(settings))
    now = lambda: datetime.now(UTC).isoformat(timespec="milliseconds")  # noqa: E731
    digest = suppress(settings.data_dir, args.customer)
    print(f"suppressed customer sha256 {digest[:16]}… in {settings.data_dir}; rebuilding")
    try:
        # the models are refitted too: none keeps learning from the erased customer's rows
        report = run_refresh(settings, as_of=args.as_of, refit="always")
    except WarehouseUnavailable as exc:
        print(f"retail-dp erase: {exc}", file=sys.stderr)
        audit_erasure(log, now(), digest, args.reason, outcome="failed", error=str(exc))
        return 2
    print(format_report(report))
    target = published_dir(settings.warehouse)
    if not report.ok:
        audit_erasure(log, now(), digest, args.reason, outcome="failed", run_id=report.run_id)
        print("retail-dp erase: the rebuild failed; the customer stays suppressed and older "
              "snapshots are kept: fix the run and erase again", file=sys.stderr)  # fmt: skip
        return 1
    clean, deleted, parts = purge_snapshots(target, args.customer)
    outcome = "erased" if clean else "failed"
    audit_erasure(log, now(), digest, args.reason, outcome=outcome, run_id=report.run_id,
                  snapshot=current_name(target), snapshots_deleted=deleted,
                  parts_deleted=parts)  # fmt: skip
    if not clean:
        print("retail-dp erase: the new snapshot still holds the customer", file=sys.stderr)
        return 1
    print(f"erased: snapshot {current_name(target)} is clean; deleted {len(deleted)} older "
          f"snapshot(s) that held the customer: {', '.join(deleted) or '-'}, and {len(parts)} "
          "Parquet part(s) only they read")  # fmt: skip
    return 0


def _backtest(args: argparse.Namespace) -> int:
    product = settings_from_args(argparse.Namespace(data_dir=args.data_dir))
    from retail_dp.analytics import backtest_reports

    warehouse = args.warehouse or backtest_reports.default_warehouse(product.warehouse)
    settings = product.model_copy(update={"warehouse": warehouse})
    if not _preflight("backtest", settings, _preflight_run):
        return 2
    import duckdb

    from retail_dp.analytics import backtest
    from retail_dp.runner import format_report, run_refresh

    # the backtest measures models fitted at T, never a fit saved by an earlier backtest
    built = run_refresh(settings, as_of=args.as_of, refit="always")
    if not built.ok:
        print(format_report(built))
        print("retail-dp backtest: the build at as_of failed; no report", file=sys.stderr)
        return 1
    window = backtest.Window(args.as_of, args.horizon)
    outcomes = backtest.read_outcomes(settings.data_dir, settings.descriptors_dir, window)
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        report = backtest.build_report(con, outcomes, window)
    paths = backtest.write_report(report, backtest_reports.reports_dir(settings.warehouse))
    print(backtest.markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


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
        if args.daily_from:
            from retail_dp.generator.daily import daily_drops

            if args.format != "csv":
                print("retail-dp generate: --daily-from needs --format csv", file=sys.stderr)
                return 2
            days = daily_drops(args.out, args.out, args.daily_from)
            print(f"laid out as daily drops: purchase/history.csv and {len(days)} daily files")
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
        from retail_dp.delivery.slos import service_level_report
        from retail_dp.runner import slo_report

        print(slo_report(Settings.from_env(), args.runs))
        print()
        print(service_level_report(Settings.from_env()))
        return 0
    if args.command == "serve":
        return _serve(args)
    if args.command == "serve-sql":
        return _serve_sql(args)
    if args.command == "mcp":
        return _mcp(args)
    if args.command == "access-review":
        return _access_review(args)
    if args.command == "erase":
        return _erase(args)
    if args.command == "backtest":
        return _backtest(args)
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

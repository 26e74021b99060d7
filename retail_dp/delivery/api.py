"""The delivery service's HTTP face: REST under /v1, GraphQL at /graphql, both over the same
DeliveryService. Every request, whatever its outcome, is written to the audit log."""

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
import pandas as pd
import strawberry
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError, WithJsonSchema
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import GraphQLRouter
from strawberry.scalars import JSON

from retail_dp import __version__
from retail_dp.delivery.gate import Gate, Sequencer
from retail_dp.delivery.limits import TooMany
from retail_dp.delivery.policies import Caller, Forbidden, Unauthorized
from retail_dp.delivery.query import DEFAULT_LIMIT, MAX_LIMIT, LoadQuery
from retail_dp.delivery.semantic import SemanticError
from retail_dp.delivery.service import DeliveryService, LoadResult, QueryTimeout, ServiceBusy
from retail_dp.delivery.snapshots import NoSnapshot
from retail_dp.descriptors import (
    ArchitectureSlos,
    GovernanceSlos,
    LandingInput,
    Metric,
    Output,
    Person,
    ProductInput,
    Refresh,
    Slo,
    SloCategory,
    Tags,
    UseCase,
)

HUB_DIR = Path(__file__).parent / "hub"

DESCRIPTION = f"""Governed delivery of the Product Affinity & Cross-Sell data product.

Ask in business terms (measures, dimensions, segments of the semantic model); every query is
compiled by MetricFlow and runs on the latest published snapshot, whose blocking checks
passed. Authenticate with `Authorization: Bearer <API key or JWT>`. What a caller sees, how
PII is masked and which rows are in scope follow the caller's groups.

`/v1/load` returns at most `limit` rows (default {DEFAULT_LIMIT}, max {MAX_LIMIT}); page with
`offset`. A query has a deadline (504 past it) and size limits (400 naming the limit); a
caller has a share of concurrent queries and query time (429 past it).
"""


# -- response models (the OpenAPI contract) ---------------------------------------------------

# a cell of a result row: rows are keyed by the members asked for, so their keys are dynamic,
# their values are not (validated by the contract tests, not per cell at run time)
Cell = Annotated[
    Any,
    WithJsonSchema(
        {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
    ),
]


class SnapshotRef(BaseModel):
    id: str
    as_of: str
    published_at: str
    run_id: str


class MemberInfo(BaseModel):
    name: str | None = None
    title: str
    description: str
    type: Literal["string", "time", "number"]
    pii: bool | None = None
    masking: str | None = None
    granularities: list[str] | None = None
    unit: str | None = None
    kind: str | None = None


class SegmentInfo(BaseModel):
    name: str
    title: str
    description: str


class TableInfo(BaseModel):
    name: str
    title: str
    description: str
    dimensions: list[MemberInfo]
    measures: list[MemberInfo]
    segments: list[SegmentInfo]
    rowsAvailable: bool | None = None


class Annotation(BaseModel):
    measures: dict[str, MemberInfo]
    dimensions: dict[str, MemberInfo]
    timeDimensions: dict[str, MemberInfo]


class LoadResponse(BaseModel):
    query: LoadQuery
    data: list[dict[str, Cell]]
    annotation: Annotation
    masked: dict[str, str]
    snapshot: SnapshotRef
    rows: int


class CallerInfo(BaseModel):
    name: str
    groups: list[str]


class MetaResponse(BaseModel):
    caller: CallerInfo
    tables: list[TableInfo]
    rowFilter: str | None = None


class GroupInfo(BaseModel):
    name: str
    description: str
    members: list[str]
    exclude: list[str]
    masking: dict[str, str]
    row_filter: str | None = None


class DefinitionsResponse(BaseModel):
    data_product: str
    tables: list[TableInfo]
    groups: list[GroupInfo]


class Health(BaseModel):
    status: Literal["ok", "no snapshot"]
    snapshot: str | None = None
    as_of: str | None = None
    detail: str | None = None


class RefreshInfo(BaseModel):
    snapshot_id: str
    run_id: str
    as_of: str
    published_at: str


class CheckRun(BaseModel):
    run_id: str
    at: float | None = None
    status: str
    measured: str


class CheckResult(BaseModel):
    asset: str
    check: str
    category: str
    measured: str
    target: str
    severity: str
    status: str
    evaluated_at: float | None = None
    history: list[CheckRun]


class SloTally(BaseModel):
    passed: int
    failed: int
    warned: int


class Incident(BaseModel):
    opened_at: Cell = None
    last_seen_at: Cell = None
    occurrences: int
    asset: str
    check_name: str
    slo_category: str | None = None
    severity: str | None = None
    measured: Cell = None
    target: Cell = None
    comparison: str | None = None


class AttainmentRow(BaseModel):
    category: str
    runs: int
    evaluations: int
    passed: int
    share: float | None = None
    objective: float
    met: bool | None = None


class ServiceLevelRow(BaseModel):
    kind: Literal["architecture", "governance"]
    name: str
    measured: float | None = None
    target: float
    comparison: Literal[">=", "<="]
    unit: str
    met: bool | None = None
    detail: str


class ProductStatus(BaseModel):
    last_refresh: RefreshInfo | None = None
    slo: dict[str, SloTally]
    checks: list[CheckResult]
    open_incidents: list[Incident] = []
    slo_attainment: list[AttainmentRow] | None = None
    model_quality: dict[str, Cell] | None = None
    service_levels: list[ServiceLevelRow] | None = None


class LineageInput(BaseModel):
    kind: Literal["landing", "data_product"]
    location: str | None = None
    name: str | None = None


class Lineage(BaseModel):
    inputs: list[LineageInput]
    outputs: list[str]
    assets: list[str]


class PublicProduct(BaseModel):
    """What the public catalogue shows of a data product (see the README, "The public
    catalogue"): the descriptor without its alert webhooks or landing contracts, and its
    status as aggregates."""

    name: str
    title: str
    version: str
    domain: str
    kind: str
    description: str
    owner: Person
    collaborators: list[Person]
    tags: Tags
    use_cases: list[UseCase]
    metrics: list[Metric]
    inputs: list[LandingInput | ProductInput]
    outputs: list[Output]
    slos: dict[SloCategory, Slo]
    refresh: Refresh
    architecture_slos: ArchitectureSlos | None = None
    governance_slos: GovernanceSlos | None = None
    status: ProductStatus
    lineage: Lineage


# the latest report of `retail-dp backtest` (retail_dp.analytics.backtest): a figure is null
# when it is undefined in that window (e.g. an AUC with one class)
class RankingFigures(BaseModel):
    auc: float | None = None
    top_decile_lift: float | None = None


class CalibrationDecile(BaseModel):
    decile: int
    customers: int
    predicted: float | None = None
    observed: float | None = None


class HeldOutCalibration(BaseModel):
    customers: float | None = None
    observed_rate: float | None = None
    mean_before: float | None = None
    mean_after: float | None = None
    log_loss_before: float | None = None
    log_loss_after: float | None = None


class CalibrationFit(BaseModel):
    method: str
    status: str
    hazard_scale: float
    held_out: HeldOutCalibration


class OpportunityBacktest(BaseModel):
    customers: int
    new_category_buyers: int
    base_rate: float | None = None
    mean_predicted: float | None = None
    mean_predicted_before_calibration: float | None = None
    scores: dict[str, RankingFigures]
    calibration: list[CalibrationDecile]
    calibration_before: list[CalibrationDecile] | None = None
    calibration_fit: CalibrationFit | None = None


class HitFigures(BaseModel):
    hit_at_1: float | None = None
    hit_at_3: float | None = None


class RankingUsed(BaseModel):
    chosen: str
    detail: str
    validation_customers: float | None = None
    validation_hit_at_1_model: float | None = None
    validation_hit_at_1_popularity: float | None = None


class CategoryBacktest(BaseModel):
    customers: int
    rankers: dict[str, HitFigures]
    ranking: RankingUsed | None = None


class ClvTotals(BaseModel):
    predicted_purchases: float | None = None
    actual_purchases: float | None = None
    purchases_ratio: float | None = None
    # the ratio's 95% interval over resampled buyers: [low, high]
    purchases_ratio_interval: list[float] | None = None
    predicted_spend: float | None = None
    actual_spend: float | None = None
    spend_ratio: float | None = None
    spend_ratio_interval: list[float] | None = None
    spearman_purchases: float | None = None
    spearman_spend: float | None = None


class ClvDecile(BaseModel):
    decile: int
    customers: int
    predicted_purchases: float | None = None
    actual_purchases: float | None = None
    predicted_spend: float | None = None
    actual_spend: float | None = None


class OneTimeBuyers(BaseModel):
    customers: int
    mean_probability_alive: float | None = None
    share_who_bought_again: float | None = None


class TierShare(BaseModel):
    value_tier: str
    customers: int
    share_of_customers: float | None = None
    share_of_spend: float | None = None


class SpendModelChoice(BaseModel):
    chosen: str
    holdout_error: dict[str, float | None]
    holdout_customers: int
    holdout_purchase_days: int
    holdout_days: int


class ClvBacktest(BaseModel):
    customers: int
    purchase_model: str
    spend_model: SpendModelChoice | None = None
    predictors: dict[str, ClvTotals]
    deciles: list[ClvDecile]
    one_time_buyers: OneTimeBuyers
    value_tiers: list[TierShare]


class BacktestReport(BaseModel):
    as_of: str
    horizon_days: int
    horizon_end: str
    created_at: str
    outcome_lines: int
    opportunity: OpportunityBacktest
    next_best_category: CategoryBacktest
    clv: ClvBacktest


class LatestBacktest(BaseModel):
    """The report `retail-dp backtest` wrote most recently; `report` is null, with the reason
    in `detail`, when there is none (or it does not match this contract)."""

    report: BacktestReport | None = None
    name: str | None = None
    detail: str | None = None


class ErrorResponse(BaseModel):
    error: str
    status: int


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


ERRORS = {
    400: _error("A query the model cannot answer, over a size limit, or with NaN/Infinity"),
    401: _error("No or unknown credentials"),
    403: _error("A member or rows the caller may not see"),
    413: _error("The request body is over the size limit"),
    429: _error("Too many failed sign-ins from this client, or the caller is over its share"),
    503: _error("Nothing published yet, or no memory for this query now"),
    504: _error("The query ran past its deadline and was stopped"),
}
PUBLIC_ERRORS = {413: ERRORS[413]}


# the service's refusals, as HTTP statuses (REST answers with them; GraphQL audits them)
REFUSALS: dict[type[Exception], int] = {
    SemanticError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    TooMany: 429,
    NoSnapshot: 503,
    ServiceBusy: 503,
    QueryTimeout: 504,
}


def refusal_status(exc: Exception) -> int:
    return next(status for kind, status in REFUSALS.items() if isinstance(exc, kind))


def identified(request: Request) -> Caller:
    """The caller the gate authenticated (every protected path passes it first)."""
    found = getattr(request.state, "caller", None)
    if found is None:
        raise Unauthorized("credentials required: Authorization: Bearer <API key or JWT>")
    return found


def asked(query: LoadQuery) -> dict:
    """What a load asked for, as the audit log records it: the whole normalized query."""
    normalized = query.model_dump(mode="json")
    normalized["limit"] = query.limit or DEFAULT_LIMIT
    return {"query": normalized}


def answered(result: LoadResult) -> dict:
    return {"rows": result.rows, "snapshot": result.snapshot["id"], "sql_ms": result.sql_ms}


# a text cell that a spreadsheet would run as a formula is written with a leading quote
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    safe = frame.copy()
    for column in safe.columns:
        safe[column] = safe[column].map(
            lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v
        )
    return safe


def create_app(service: DeliveryService) -> FastAPI:
    # no /docs or /redoc: their pages load scripts from a CDN; the contract is /openapi.json
    app = FastAPI(
        title="retail_dp delivery service",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.sequencer = Sequencer()
    app.add_middleware(Gate, service=service, limits=service.limits, sequencer=app.state.sequencer)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        request.state.audit["error"] = str(exc.detail)
        return error(exc.status_code, str(exc.detail))

    async def refused(request: Request, exc: Exception):
        request.state.audit["error"] = str(exc)
        response = error(refusal_status(exc), str(exc))
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, TooMany):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    for refusal in REFUSALS:
        app.add_exception_handler(refusal, refused)

    CallerDep = Annotated[Caller, Depends(identified)]

    def run_load(request: Request, who: Caller, query: LoadQuery) -> LoadResult:
        request.state.audit.update(asked(query))
        result = service.load(who, query)
        request.state.audit.update(answered(result))
        return result

    @app.get(
        "/health",
        response_model=Health,
        response_model_exclude_none=True,
        tags=["service"],
        summary="Liveness and the snapshot being served",
        responses=PUBLIC_ERRORS,
    )
    async def health() -> dict[str, Any]:
        # on the event loop, never behind the query threads: it answers while queries run
        try:
            info = service.reader.current().info
            return {"status": "ok", "snapshot": info.snapshot_id, "as_of": info.as_of}
        except NoSnapshot as exc:
            return {"status": "no snapshot", "detail": str(exc)}

    @app.get(
        "/v1/meta",
        response_model=MetaResponse,
        response_model_exclude_none=True,
        tags=["semantic model"],
        summary="The semantic model as the caller may see it",
        responses=ERRORS,
    )
    def meta(request: Request, who: CallerDep) -> dict:
        return service.meta(who)

    @app.post(
        "/v1/load",
        response_model=LoadResponse,
        response_model_exclude_none=True,
        tags=["semantic model"],
        summary="Query measures by dimensions, with filters, segments, order and paging",
        responses=ERRORS,
    )
    def load(request: Request, query: LoadQuery, who: CallerDep) -> dict:
        result = run_load(request, who, query)
        return {
            "query": query,
            "data": result.data,
            "annotation": result.annotation,
            "masked": result.masked,
            "snapshot": result.snapshot,
            "rows": result.rows,
        }

    @app.post(
        "/v1/export",
        tags=["semantic model"],
        summary="The same query as /v1/load, as a CSV or Parquet file",
        response_class=Response,
        responses={
            **ERRORS,
            200: {
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/vnd.apache.parquet": {
                        "schema": {"type": "string", "format": "binary"}
                    },
                },
                "description": "The rows, masked as in /v1/load; in CSV, a text cell that "
                "starts with = + - @ or a control character is written with a leading '",
            },
        },
    )
    def export(
        request: Request,
        query: LoadQuery,
        who: CallerDep,
        format: Annotated[str, Query(pattern="^(csv|parquet)$")] = "csv",
    ) -> Response:
        result = run_load(request, who, query)
        frame = pd.DataFrame(result.data)
        name = f"retail_dp_{result.snapshot['id']}"
        if format == "csv":
            return Response(
                csv_safe(frame).to_csv(index=False),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        return Response(
            _parquet(frame),
            media_type="application/vnd.apache.parquet",
            headers={"Content-Disposition": f'attachment; filename="{name}.parquet"'},
        )

    @app.get(
        "/v1/definitions",
        response_model=DefinitionsResponse,
        response_model_exclude_none=True,
        tags=["semantic model"],
        summary="The whole semantic model and the access groups, without data (no sign-in)",
        responses=PUBLIC_ERRORS,
    )
    def definitions(request: Request) -> dict[str, Any]:
        request.state.audit["members"] = ["definitions"]
        return service.definitions()

    @app.get(
        "/v1/data-products",
        response_model=list[PublicProduct],
        response_model_exclude_none=True,
        tags=["data products"],
        summary="Every data product with its live status: last refresh, SLO results, lineage",
        responses=PUBLIC_ERRORS,
    )
    def data_products(request: Request) -> list[dict[str, Any]]:
        request.state.audit["members"] = ["data-products"]
        return service.data_products()

    @app.get(
        "/v1/data-products/{name}",
        response_model=PublicProduct,
        response_model_exclude_none=True,
        tags=["data products"],
        summary="One data product with its live status",
        responses={**PUBLIC_ERRORS, 404: _error("No data product of that name")},
    )
    def data_product(request: Request, name: str) -> dict[str, Any]:
        request.state.audit["members"] = [f"data-products/{name}"]
        try:
            return service.data_product(name)
        except KeyError:
            raise HTTPException(404, f"no data product named {name!r}") from None

    @app.get(
        "/v1/backtest/latest",
        response_model=LatestBacktest,
        tags=["data products"],
        summary="The latest report of retail-dp backtest: ours against the baselines",
        responses={k: ERRORS[k] for k in (400, 401, 413, 429)},
    )
    def latest_backtest(request: Request, who: CallerDep) -> dict[str, Any]:
        request.state.audit["members"] = ["backtest/latest"]
        found = service.latest_backtest()
        request.state.audit["report"] = found["name"]
        try:
            return LatestBacktest.model_validate(found).model_dump()
        except ValidationError as exc:
            detail = (
                f"{found['name']} does not match the report contract: {exc.error_count()} errors"
            )
            return {"report": None, "name": found["name"], "detail": detail}

    mount_hub(app)

    # GraphQL's contract is its own schema (docs/schema.graphql), not the OpenAPI document.
    # No IDE page (GraphiQL loads from a CDN), no queries over GET, no websockets: the schema
    # has no subscriptions, and every request passes the gate and is audited
    app.include_router(
        GraphQLRouter(
            build_schema(service),
            path="/graphql",
            graphql_ide=None,
            allow_queries_via_get=False,
            subscription_protocols=(),
        ),
        include_in_schema=False,
    )
    return app


def mount_hub(app: FastAPI) -> None:
    """The Data Product Hub: a static page served by the service itself (no CDN), which reads
    the same API with the visitor's credentials."""
    index = (HUB_DIR / "index.html").read_text()

    @app.get("/", include_in_schema=False)
    @app.get("/hub", include_in_schema=False)
    def hub() -> HTMLResponse:
        return HTMLResponse(index, headers={"Cache-Control": "no-cache"})

    app.mount("/hub/static", StaticFiles(directory=HUB_DIR), name="hub-static")


def contract_documents(settings) -> dict[str, str]:
    """The service's contracts as committed under docs/: OpenAPI (REST) and SDL (GraphQL)."""
    service = DeliveryService(settings)
    app = create_app(service)
    return {
        "openapi.json": json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n",
        "schema.graphql": str(build_schema(service)) + "\n",
    }


def _parquet(frame: pd.DataFrame) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.parquet"
        con = duckdb.connect()
        try:
            con.register("result", frame)
            con.execute(f"COPY result TO '{path}' (FORMAT parquet)")
        finally:
            con.close()
        return path.read_bytes()


# -- GraphQL ----------------------------------------------------------------------------------


@strawberry.input
class FilterInput:
    member: str
    operator: str
    values: list[JSON] = strawberry.field(default_factory=list)


@strawberry.input
class TimeDimensionInput:
    dimension: str
    granularity: str | None = None
    date_range: list[str] | None = strawberry.field(default=None, name="dateRange")


@strawberry.input
class OrderInput:
    member: str
    direction: str = "asc"


@strawberry.input
class LoadInput:
    measures: list[str] = strawberry.field(default_factory=list)
    dimensions: list[str] = strawberry.field(default_factory=list)
    time_dimensions: list[TimeDimensionInput] = strawberry.field(
        default_factory=list, name="timeDimensions"
    )
    filters: list[FilterInput] = strawberry.field(default_factory=list)
    segments: list[str] = strawberry.field(default_factory=list)
    order: list[OrderInput] = strawberry.field(default_factory=list)
    limit: int | None = None
    offset: int = 0


@strawberry.type
class Snapshot:
    id: str
    as_of: str
    published_at: str
    run_id: str


@strawberry.type
class MaskedMember:
    member: str
    masking: str


@strawberry.type
class LoadOutput:
    data: list[JSON]
    rows: int
    masked: list[MaskedMember]
    snapshot: Snapshot
    annotation: JSON


@strawberry.type
class Member:
    name: str
    title: str
    description: str
    type: str
    pii: bool = False
    masking: str | None = None
    unit: str | None = None


@strawberry.type
class Segment:
    name: str
    title: str
    description: str


@strawberry.type
class Table:
    name: str
    title: str
    description: str
    dimensions: list[Member]
    measures: list[Member]
    segments: list[Segment]


@strawberry.type
class Meta:
    caller: str
    groups: list[str]
    row_filter: str | None
    tables: list[Table]


def _to_query(q: LoadInput) -> LoadQuery:
    raw = {
        "measures": q.measures,
        "dimensions": q.dimensions,
        "timeDimensions": [
            {
                "dimension": t.dimension,
                **({"granularity": t.granularity} if t.granularity else {}),
                **({"dateRange": t.date_range} if t.date_range else {}),
            }
            for t in q.time_dimensions
        ],
        "filters": [
            {"member": f.member, "operator": f.operator, "values": f.values} for f in q.filters
        ],
        "segments": q.segments,
        "order": {o.member: o.direction for o in q.order},
        "limit": q.limit,
        "offset": q.offset,
    }
    try:
        return LoadQuery.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SemanticError(f"{where}: {err['msg']}") from exc


def build_schema(service: DeliveryService) -> strawberry.Schema:
    limits = service.limits

    def who(info: strawberry.Info) -> Caller:
        return identified(info.context["request"])

    def audited(info: strawberry.Info, call, field: dict | None = None):
        """GraphQL answers 200 with errors; the audit log still gets the refusal and why."""
        try:
            return call()
        except tuple(REFUSALS) as exc:
            audit = info.context["request"].state.audit
            if field is not None:
                field["error"] = f"{type(exc).__name__}: {exc}"
            audit["error"] = f"{type(exc).__name__}: {exc}"
            audit["graphql_status"] = refusal_status(exc)
            raise

    def member(d: dict) -> Member:
        return Member(
            name=d["name"],
            title=d["title"],
            description=d["description"],
            type=d["type"],
            pii=d.get("pii", False),
            masking=d.get("masking"),
            unit=d.get("unit"),
        )

    @strawberry.type
    class Query:
        @strawberry.field(description="The semantic model as the caller may see it.")
        async def meta(self, info: strawberry.Info) -> Meta:
            found = await run_in_threadpool(audited, info, lambda: service.meta(who(info)))
            return Meta(
                caller=found["caller"]["name"],
                groups=found["caller"]["groups"],
                row_filter=found["rowFilter"],
                tables=[
                    Table(
                        name=t["name"],
                        title=t["title"],
                        description=t["description"],
                        dimensions=[member(d) for d in t["dimensions"]],
                        measures=[member(m) for m in t["measures"]],
                        segments=[Segment(**s) for s in t["segments"]],
                    )
                    for t in found["tables"]
                ],
            )

        @strawberry.field(description="Query measures by dimensions, as POST /v1/load.")
        async def load(self, info: strawberry.Info, query: LoadInput) -> LoadOutput:
            caller = audited(info, lambda: who(info))
            parsed = audited(info, lambda: _to_query(query))
            field = asked(parsed)["query"]
            # one entry per load field: a request may alias several
            info.context["request"].state.audit.setdefault("fields", []).append(field)
            result = await run_in_threadpool(
                audited, info, lambda: service.load(caller, parsed), field
            )
            field["answer"] = answered(result)
            return LoadOutput(
                data=result.data,
                rows=result.rows,
                masked=[MaskedMember(member=m, masking=h) for m, h in result.masked.items()],
                snapshot=Snapshot(**result.snapshot),
                annotation=result.annotation,
            )

        @strawberry.field(description="Every data product with its live status.")
        async def data_products(self) -> list[JSON]:
            return await run_in_threadpool(service.data_products)

    def masked(error) -> bool:
        """Only the service's own refusals and GraphQL's validation reach the caller; any other
        error (an engine's, say) is masked as 'Unexpected error.'"""
        original = getattr(error, "original_error", None)
        return original is not None and not isinstance(original, tuple(REFUSALS))

    # the gate caps the document's bytes; these cap its tokens (parsing stops there), its
    # depth and its aliases (one request cannot fan out into many queries)
    return strawberry.Schema(
        query=Query,
        extensions=[
            MaxTokensLimiter(max_token_count=limits.graphql_max_tokens),
            QueryDepthLimiter(max_depth=limits.graphql_max_depth),
            MaxAliasesLimiter(max_alias_count=limits.graphql_max_aliases),
            MaskErrors(should_mask_error=masked),
        ],
    )

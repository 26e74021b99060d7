"""The delivery service's HTTP face: REST under /v1, GraphQL at /graphql, both over the same
DeliveryService. Every request, whatever its outcome, is written to the audit log."""

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pandas as pd
import strawberry
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from strawberry.extensions import MaxAliasesLimiter
from strawberry.fastapi import GraphQLRouter
from strawberry.scalars import JSON

from retail_dp import __version__
from retail_dp.delivery.policies import Caller, Forbidden, Unauthorized
from retail_dp.delivery.query import DEFAULT_LIMIT, MAX_LIMIT, LoadQuery
from retail_dp.delivery.semantic import SemanticError
from retail_dp.delivery.service import DeliveryService, LoadResult
from retail_dp.delivery.snapshots import NoSnapshot

HUB_DIR = Path(__file__).parent / "hub"

DESCRIPTION = f"""Governed delivery of the Product Affinity & Cross-Sell data product.

Ask in business terms (measures, dimensions, segments of the semantic model); every query is
compiled by MetricFlow and runs on the latest published snapshot, whose blocking checks
passed. Authenticate with `Authorization: Bearer <API key or JWT>`. What a caller sees, how
PII is masked and which rows are in scope follow the caller's groups.

`/v1/load` returns at most `limit` rows (default {DEFAULT_LIMIT}, max {MAX_LIMIT}); page with
`offset`.
"""


# -- response models (the OpenAPI contract) ---------------------------------------------------


class SnapshotRef(BaseModel):
    id: str
    as_of: str
    published_at: str
    run_id: str


class LoadResponse(BaseModel):
    query: LoadQuery
    data: list[dict[str, Any]]
    annotation: dict[str, dict[str, dict[str, Any]]]
    masked: dict[str, str]
    snapshot: SnapshotRef
    rows: int


class MetaResponse(BaseModel):
    caller: dict[str, Any]
    tables: list[dict[str, Any]]
    rowFilter: str | None


class ErrorResponse(BaseModel):
    error: str
    status: int


ERRORS = {
    400: {"model": ErrorResponse, "description": "A query the model cannot answer"},
    401: {"model": ErrorResponse, "description": "No or unknown credentials"},
    403: {"model": ErrorResponse, "description": "A member or rows the caller may not see"},
    503: {"model": ErrorResponse, "description": "Nothing published yet"},
}


# the service's refusals, as HTTP statuses (REST answers with them; GraphQL audits them)
REFUSALS: dict[type[Exception], int] = {
    SemanticError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NoSnapshot: 503,
}


def identify(service: DeliveryService, request: Request) -> Caller:
    """The caller behind `Authorization: Bearer <API key or JWT>`, noted in the audit entry."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    found = service.policies.authenticate(token.strip() if scheme.lower() == "bearer" else None)
    request.state.audit.update({"caller": found.name, "groups": list(found.groups)})
    return found


def asked(query: LoadQuery) -> dict:
    """What a load asked for, as the audit log records it."""
    return {
        "members": [*query.measures, *query.dimensions]
        + [t.dimension for t in query.timeDimensions],
        "filters": [f.model_dump() for f in query.filters],
        "segments": query.segments,
    }


def answered(result: LoadResult) -> dict:
    return {"rows": result.rows, "snapshot": result.snapshot["id"], "sql_ms": result.sql_ms}


def create_app(service: DeliveryService) -> FastAPI:
    app = FastAPI(
        title="retail_dp delivery service",
        version=__version__,
        description=DESCRIPTION,
        responses={401: ERRORS[401]},
    )
    app.state.service = service

    @app.middleware("http")
    async def audit(request: Request, call_next):
        request.state.audit = {}
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # an unexpected error is a 500, and audited like any other
            request.state.audit["error"] = f"{type(exc).__name__}: {exc}"
            response = JSONResponse({"error": "internal error", "status": 500}, status_code=500)
        entry = {
            "time": service.now(),
            "request_id": uuid.uuid4().hex,
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            **request.state.audit,
        }
        entry.setdefault("caller", None)
        service.audit.record(entry)
        response.headers["X-Request-Id"] = entry["request_id"]
        return response

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        request.state.audit["error"] = str(exc.detail)
        return error(exc.status_code, str(exc.detail))

    async def refused(request: Request, exc: Exception):
        request.state.audit["error"] = str(exc)
        response = error(REFUSALS[type(exc)], str(exc))
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    for refusal in REFUSALS:
        app.add_exception_handler(refusal, refused)

    def caller(request: Request) -> Caller:
        return identify(service, request)

    CallerDep = Annotated[Caller, Depends(caller)]

    def run_load(request: Request, who: Caller, query: LoadQuery) -> LoadResult:
        request.state.audit.update(asked(query))
        result = service.load(who, query)
        request.state.audit.update(answered(result))
        return result

    @app.get("/health", tags=["service"], summary="Liveness and the snapshot being served")
    def health() -> dict[str, Any]:
        try:
            info = service.reader.current().info
            return {"status": "ok", "snapshot": info.snapshot_id, "as_of": info.as_of}
        except NoSnapshot as exc:
            return {"status": "no snapshot", "detail": str(exc)}

    @app.get(
        "/v1/meta",
        response_model=MetaResponse,
        tags=["semantic model"],
        summary="The semantic model as the caller may see it",
        responses=ERRORS,
    )
    def meta(request: Request, who: CallerDep) -> dict:
        return service.meta(who)

    @app.post(
        "/v1/load",
        response_model=LoadResponse,
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
        responses={
            **ERRORS,
            200: {
                "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
                "description": "The rows, masked as in /v1/load",
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
                frame.to_csv(index=False),
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
        tags=["semantic model"],
        summary="The whole semantic model and the access groups, without data (no sign-in)",
    )
    def definitions(request: Request) -> dict[str, Any]:
        request.state.audit["members"] = ["definitions"]
        return service.definitions()

    @app.get(
        "/v1/data-products",
        tags=["data products"],
        summary="Every data product with its live status: last refresh, SLO results, lineage",
    )
    def data_products(request: Request) -> list[dict[str, Any]]:
        request.state.audit["members"] = ["data-products"]
        return service.data_products()

    @app.get(
        "/v1/data-products/{name}",
        tags=["data products"],
        summary="One data product with its live status",
        responses={404: {"model": ErrorResponse}},
    )
    def data_product(request: Request, name: str) -> dict[str, Any]:
        request.state.audit["members"] = [f"data-products/{name}"]
        try:
            return service.data_product(name)
        except KeyError:
            raise HTTPException(404, f"no data product named {name!r}") from None

    mount_hub(app)

    # GraphQL's contract is its own schema (docs/schema.graphql), not the OpenAPI document
    # no websocket protocols: the schema has no subscriptions, and every request is audited
    app.include_router(
        GraphQLRouter(build_schema(service), path="/graphql", subscription_protocols=()),
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
    def who(info: strawberry.Info) -> Caller:
        return identify(service, info.context["request"])

    def audited(info: strawberry.Info, call, field: dict | None = None):
        """GraphQL answers 200 with errors; the audit log still gets the refusal and why."""
        try:
            return call()
        except tuple(REFUSALS) as exc:
            audit = info.context["request"].state.audit
            if field is not None:
                field["error"] = f"{type(exc).__name__}: {exc}"
            audit["error"] = f"{type(exc).__name__}: {exc}"
            audit["graphql_status"] = REFUSALS[type(exc)]
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
            field = asked(parsed)
            # one entry per load field: a request may alias several
            info.context["request"].state.audit.setdefault("fields", []).append(field)
            result = await run_in_threadpool(
                audited, info, lambda: service.load(caller, parsed), field
            )
            field.update(answered(result))
            return LoadOutput(
                data=result.data,
                rows=result.rows,
                masked=[MaskedMember(member=m, masking=h) for m, h in result.masked.items()],
                snapshot=Snapshot(**result.snapshot),
                annotation=result.annotation,
            )

        @strawberry.field(description="Every data product with its live status.")
        def data_products(self) -> list[JSON]:
            return service.data_products()

    # at most 5 aliased fields a request: one request cannot fan out into many queries
    return strawberry.Schema(query=Query, extensions=[MaxAliasesLimiter(max_alias_count=5)])

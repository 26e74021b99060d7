"""`retail-dp mcp`: the semantic model for LLM assistants, over the Model Context Protocol
(the official `mcp` SDK; stdio or streamable HTTP).

Thin, like the REST routes: every tool goes through DeliveryService, so grants, masking, row
filters, the query deadline and size limits are the API's own, and every call is audited
like an API request. The caller is the API key (or JWT) in $RETAIL_DP_API_KEY on stdio, or in
each HTTP request's `Authorization: Bearer` header.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from retail_dp import __version__
from retail_dp.delivery.api import REFUSALS, answered, asked, refusal_status
from retail_dp.delivery.gate import Sequencer
from retail_dp.delivery.limits import AuthThrottle, CallerShare
from retail_dp.delivery.policies import Caller, Unauthorized
from retail_dp.delivery.query import MAX_LIMIT, Filter, LoadQuery, TimeDimension
from retail_dp.delivery.semantic import SemanticError
from retail_dp.delivery.service import DeliveryService

API_KEY_VAR = "RETAIL_DP_API_KEY"
DEFINITIONS_URI = "retail-dp://semantic-model"
INSTRUCTIONS = (
    "Governed access to the Product Affinity & Cross-Sell data product. Call describe() first: "
    "it lists the measures and dimensions you may query, their business definitions, which "
    "are PII and how they are masked for you. query() takes the same shape as the REST "
    "API's /v1/load; quality() says how fresh and trustworthy the data is."
)


class _Governed:
    """Who is calling, their share of query time, and the audit entry of each call."""

    def __init__(self, service: DeliveryService, api_key: str | None):
        self.service = service
        self.api_key = api_key
        self.sequencer = Sequencer()
        limits = service.limits
        self.throttle = AuthThrottle(limits.auth_failures, limits.auth_window_s)
        self.share = CallerShare(
            limits.caller_concurrency, limits.caller_query_seconds, limits.caller_queue_s
        )

    def caller(self, ctx: Context | None, client: str) -> Caller:
        token = self.api_key
        headers = ctx.headers if ctx is not None else None
        if headers is not None:  # over HTTP only the request's own credentials count
            scheme, _, given = (headers.get("authorization") or "").partition(" ")
            token = given.strip() if scheme.lower() == "bearer" else None
        self.throttle.check(client)
        try:
            return self.service.policies.authenticate(token)
        except Unauthorized:
            if token:
                self.throttle.failed(client)
            raise

    async def call(
        self,
        name: str,
        ctx: Context | None,
        work: Callable[[Caller | None, dict], Any],
        public: bool = False,
        query: bool = False,
    ) -> Any:
        """Run `work(caller, audit_entry)` in a thread; refusals become tool errors."""
        started = time.perf_counter()
        seq = self.sequencer.next()
        client = _client(ctx)
        entry: dict[str, Any] = {}
        caller = None
        status = 200
        admitted = False
        try:
            if not public:
                caller = self.caller(ctx, client)
                entry.update(caller=caller.name, auth=caller.via, groups=list(caller.groups))
            if query and caller is not None:
                await self.share.enter(caller.name)
                admitted = True
            return await asyncio.to_thread(work, caller, entry)
        except tuple(REFUSALS) as exc:
            status = refusal_status(exc)
            entry["error"] = str(exc)
            raise ToolError(f"{_REFUSAL_NAMES.get(status, 'refused')} ({status}): {exc}") from None
        except KeyError as exc:
            status = 404
            entry["error"] = f"no data product named {exc}"
            raise ToolError(f"not found (404): no data product named {exc}") from None
        except Exception as exc:
            status = 500
            entry["error"] = f"internal error ({type(exc).__name__})"
            raise
        finally:
            if admitted and caller is not None:
                self.share.leave(caller.name, time.perf_counter() - started)
            outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
            self.service.audit.record(
                {"time": self.service.now(), "server": self.sequencer.instance, "seq": seq,
                 "request_id": uuid.uuid4().hex, "method": "mcp", "path": name,
                 "endpoint": f"mcp:{name}", "client": client, "caller": None, "auth": None,
                 "status": status, "outcome": "timeout" if status == 504 else outcome,
                 "duration_ms": round((time.perf_counter() - started) * 1000, 2), **entry}
            )  # fmt: skip


_REFUSAL_NAMES = {400: "bad query", 401: "unauthorized", 403: "forbidden", 429: "too many",
                  503: "unavailable", 504: "timeout"}  # fmt: skip


def _client(ctx: Context | None) -> str:
    request = getattr(getattr(ctx, "request_context", None), "request", None)
    peer = getattr(request, "client", None)
    return getattr(peer, "host", None) or "stdio"


def build_server(service: DeliveryService, api_key: str | None = None) -> MCPServer:
    """The MCP server over `service`; `api_key` identifies the caller where the transport
    carries no headers (stdio, in-process)."""
    governed = _Governed(service, api_key)
    mcp = MCPServer(name="retail_dp", version=__version__, instructions=INSTRUCTIONS)

    @mcp.tool(description="Every data product: name, title, description and last refresh.")
    async def list_data_products(ctx: Context) -> dict:
        def work(_caller, entry):
            entry["members"] = ["data-products"]
            return {"data_products": [_summary(p) for p in service.data_products()]}

        return await governed.call("list_data_products", ctx, work)

    @mcp.tool(
        description="A data product's metrics with their business definitions; for the "
        "consumer-aligned product also the measures and dimensions you may query, which are "
        "PII and how they are masked for you, and the rows your groups allow."
    )
    async def describe(product: str, ctx: Context) -> dict:
        def work(caller, entry):
            entry["members"] = [f"describe/{product[:64]}"]
            found = service.data_product(product)
            described = {k: v for k, v in found.items() if k not in ("status",)}
            if product == service.catalog.consumer.name:
                described["semantic_model"] = service.meta(caller)
            return described

        return await governed.call("describe", ctx, work)

    @mcp.tool(
        description="Query measures by dimensions, as the REST API's POST /v1/load: members "
        "are `table.member` names from describe(); filters take an operator (equals, in, "
        "contains, gt, inDateRange, ...) and values; time groups or ranges a time dimension."
    )
    async def query(
        ctx: Context,
        measures: list[str] | None = None,
        dimensions: list[str] | None = None,
        filters: list[Filter] | None = None,
        time: list[TimeDimension] | None = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 100,
    ) -> dict:
        def work(caller, entry):
            try:
                load = LoadQuery(measures=measures or [], dimensions=dimensions or [],
                                 filters=filters or [], timeDimensions=time or [],
                                 limit=limit)  # fmt: skip
            except ValueError as exc:
                raise SemanticError(str(exc).splitlines()[-1].strip()) from None
            entry.update(asked(load))
            result = service.load(caller, load)
            entry.update(answered(result))
            return {"data": result.data, "rows": result.rows, "masked": result.masked,
                    "snapshot": result.snapshot}  # fmt: skip

        return await governed.call("query", ctx, work, query=True)

    @mcp.tool(description="A data product's latest SLO attainment, check results and open "
              "incidents, and when it was last refreshed.")  # fmt: skip
    async def quality(product: str, ctx: Context) -> dict:
        def work(_caller, entry):
            entry["members"] = [f"quality/{product[:64]}"]
            status = service.data_product(product)["status"]
            keys = ("last_refresh", "slo", "slo_attainment", "open_incidents", "model_quality",
                    "service_levels")  # fmt: skip
            return {k: status[k] for k in keys if k in status}

        return await governed.call("quality", ctx, work)

    @mcp.resource(DEFINITIONS_URI, name="semantic-model", mime_type="application/json",
                  description="The semantic model's tables, measures, dimensions and segments "
                  "with their definitions, and the access groups (no data).")  # fmt: skip
    async def definitions() -> str:
        def work(_caller, entry):
            entry["members"] = ["definitions"]
            return json.dumps(service.definitions(), indent=2)

        return await governed.call("semantic-model", None, work, public=True)

    for name in service.catalog.products:
        _descriptor_resource(mcp, governed, name)
    return mcp


def _descriptor_resource(mcp: MCPServer, governed: _Governed, name: str) -> None:
    service = governed.service

    @mcp.resource(f"retail-dp://descriptors/{name}", name=f"descriptor-{name}",
                  mime_type="application/json",
                  description=f"The descriptor of {name} (its public sections).")  # fmt: skip
    async def descriptor() -> str:
        def work(_caller, entry):
            entry["members"] = [f"descriptors/{name}"]
            found = service.data_product(name)
            return json.dumps({k: v for k, v in found.items() if k != "status"}, indent=2)

        return await governed.call(f"descriptor/{name}", None, work, public=True)


def _summary(product: dict) -> dict:
    refresh = product.get("status", {}).get("last_refresh") or {}
    return {"name": product["name"], "title": product["title"], "kind": product["kind"],
            "domain": product["domain"], "description": product["description"],
            "as_of": refresh.get("as_of"), "published_at": refresh.get("published_at")}  # fmt: skip


def run(service: DeliveryService, transport: str, host: str, port: int) -> int:
    if transport == "stdio":
        key = os.environ.get(API_KEY_VAR)
        if not key:
            print(f"retail-dp mcp: set ${API_KEY_VAR} to the caller's API key", file=sys.stderr)
            return 2
        build_server(service, key).run("stdio")
        return 0
    print(f"retail_dp MCP server: http://{host}:{port}/mcp (Authorization: Bearer <API key>)",
          file=sys.stderr)  # fmt: skip
    build_server(service).run("streamable-http", host=host, port=port)
    return 0

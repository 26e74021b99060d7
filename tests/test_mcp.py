"""`retail-dp mcp` through the official SDK's client, in-process: the tools, queries whose
masking and row filters equal the REST answers, refusals as tool errors, the resources and
the audit log."""

from __future__ import annotations

import asyncio
import json

import pytest
from mcp import Client

from retail_dp.delivery.mcp_server import DEFINITIONS_URI, build_server
from retail_dp.delivery.service import DeliveryService

from .delivery_server import JWT_SECRET, KEYS


@pytest.fixture(scope="module")
def service(built, tmp_path_factory):
    """The service as `retail-dp mcp` builds it, with the REST test server's masking salt."""
    _, settings, _ = built
    audit = tmp_path_factory.mktemp("mcp") / "access.jsonl"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RETAIL_DP_MASKING_SALT", "test-salt")
        env.setenv("RETAIL_DP_AUDIT_LOG", str(audit))
        env.setenv("RETAIL_DP_JWT_SECRET", JWT_SECRET)
        yield DeliveryService(settings, demo=True)


def call(service, who: str | None, tool: str, arguments: dict | None = None):
    """One tool call as `who` (a demo caller's API key in the server's environment)."""

    async def go():
        async with Client(build_server(service, KEYS[who] if who else None)) as client:
            return await client.call_tool(tool, arguments or {})

    return asyncio.run(go())


def answer(result) -> dict | list:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def rest(server, who: str, query: dict) -> list[dict]:
    response = server.client(who).post("/v1/load", json=query)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_the_tools_and_resources_are_listed(service):
    async def go():
        async with Client(build_server(service, KEYS["sales"])) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            resources = [r.uri for r in (await client.list_resources()).resources]
            definitions = await client.read_resource(DEFINITIONS_URI)
            return tools, resources, json.loads(definitions.contents[0].text)

    tools, resources, definitions = asyncio.run(go())
    assert set(tools) == {"list_data_products", "describe", "query", "quality"}
    assert set(tools["query"].input_schema["properties"]) == {
        "measures",
        "dimensions",
        "filters",
        "time",
        "limit",
    }
    assert DEFINITIONS_URI in resources
    assert "retail-dp://descriptors/product_affinity_cross_sell" in resources
    assert {t["name"] for t in definitions["tables"]} >= {"purchase", "customer"}


def test_describe_shows_the_callers_grants_and_pii(service):
    described = answer(
        call(service, "marketing", "describe", {"product": "product_affinity_cross_sell"})
    )
    assert described["metrics"] and "contract" not in described
    model = described["semantic_model"]
    assert model["caller"]["groups"] == ["marketing_analysts"]
    dims = {d["name"]: d for t in model["tables"] for d in t["dimensions"]}
    assert dims["customer.email"]["pii"] and dims["customer.email"]["masking"] == "partial"
    sales = answer(call(service, "sales", "describe", {"product": "product_affinity_cross_sell"}))
    sales_dims = {d["name"] for t in sales["semantic_model"]["tables"] for d in t["dimensions"]}
    assert "customer.email" not in sales_dims


def test_row_filters_hold_as_in_rest(service, server):
    query = {"measures": ["purchase.total_spend"], "dimensions": ["customer.country_code"]}
    found = answer(call(service, "regional", "query", query))
    assert found["data"] == rest(server, "regional", {**query, "limit": 100})
    assert [r["customer.country_code"] for r in found["data"]] == ["ES"]


def test_masking_holds_as_in_rest(service, server):
    query = {
        "dimensions": ["customer.email", "customer.phone", "customer.first_name"],
        "filters": [{"member": "customer.country_code", "operator": "equals", "values": ["DE"]}],
        "limit": 50,
    }
    found = answer(call(service, "marketing", "query", query))
    assert found["masked"] == {
        "customer.email": "partial",
        "customer.phone": "hash",
        "customer.first_name": "redact",
    }
    assert found["data"] == rest(server, "marketing", query)


@pytest.mark.parametrize(
    ("who", "tool", "arguments", "said"),
    [
        ("sales", "query", {"dimensions": ["customer.email"]}, "forbidden (403)"),
        ("sales", "query", {"measures": ["purchase.nothing"]}, "bad query (400)"),
        (
            "marketing",
            "query",
            {
                "measures": ["purchase.total_spend"],
                "filters": [{"member": "customer.email", "operator": "contains", "values": ["@"]}],
            },
            "masked",
        ),
        (
            "sales",
            "query",
            {
                "measures": ["purchase.total_spend"],
                "filters": [
                    {
                        "member": "purchase.channel",
                        "operator": "in",
                        "values": [f"v{i}" for i in range(101)],
                    }
                ],
            },
            "max_values_per_filter",
        ),
        (None, "query", {"measures": ["purchase.total_spend"]}, "unauthorized (401)"),
        ("sales", "describe", {"product": "nope"}, "not found (404)"),
    ],
)
def test_refusals_come_back_as_tool_errors(service, who, tool, arguments, said):
    result = call(service, who, tool, arguments)
    assert result.is_error
    assert said in result.content[0].text


def test_quality_and_the_catalogue(service):
    products = answer(call(service, "sales", "list_data_products"))
    assert "product_affinity_cross_sell" in {p["name"] for p in products["data_products"]}
    quality = answer(call(service, "sales", "quality", {"product": "product_affinity_cross_sell"}))
    assert quality["last_refresh"]["snapshot_id"]
    assert {a["category"] for a in quality["slo_attainment"]}
    assert "open_incidents" in quality


def test_every_call_is_audited_like_the_apis(service):
    call(service, "sales", "query", {"measures": ["purchase.total_spend"]})
    call(service, "sales", "query", {"dimensions": ["customer.email"]})
    entries = [e for e in service.audit.read() if e["endpoint"] == "mcp:query"]
    ok, refused = entries[-2], entries[-1]
    assert ok["caller"] == "demo-sales-viewer" and ok["status"] == 200 and ok["rows"] == 1
    assert ok["query"]["measures"] == ["purchase.total_spend"] and ok["snapshot"]
    assert refused["status"] == 403 and refused["outcome"] == "refused"
    assert "customer.email" in refused["error"]

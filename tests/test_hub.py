"""The Data Product Hub in a real browser: headless Chromium (Debian's, /usr/bin/chromium)
driven by Playwright against the delivery service on loopback."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CONSUMER = "product_affinity_cross_sell"
TABS = ["overview", "lineage", "model", "metrics", "quality", "access"]

if not CHROMIUM.exists():
    if os.environ.get("RETAIL_DP_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing; `make test` installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh page on the hub; fails the test on any console error or page error, and saves
    a screenshot to test-artifacts/ when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    # with the script's stack, so that an error names the line that threw
    page.on("pageerror", lambda e: problems.append(f"{e}\n{e.stack}"))
    page.base = server.url
    page.problems = problems
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()
    assert not problems, problems


def open_hub(page: Page, path: str = "/") -> None:
    page.goto(page.base + path)
    expect(page.locator(".card, #panel").first).to_be_visible()


def sign_in(page: Page, key: str) -> None:
    page.fill("#apikey", key)
    page.click("#signin-button")
    expect(page.locator("#signout")).to_be_visible()


def test_catalogue_lists_every_product_and_filters_by_tag_search_and_owner(page):
    open_hub(page)
    cards = page.locator(".card")
    expect(cards).to_have_count(4)
    assert cards.first.get_attribute("data-product") == CONSUMER  # consumer-aligned first
    page.click("button.chip[data-tag='cross-sell']")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-product", CONSUMER)
    page.click("button.chip[data-tag='cross-sell']")
    page.fill("#search", "catalogue")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-product", "product")
    page.fill("#search", "")
    page.select_option("#owner", "CRM Team")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-product", "customer_info")
    expect(page.locator(".card .badge.ok").first).to_be_visible()  # SLO badges


def test_every_tab_of_the_cross_sell_product_works(page):
    open_hub(page)
    sign_in(page, "rdp_demo_marketing_2026")
    page.click(f".card[data-product='{CONSUMER}'] h2 a")
    expect(page.locator("h1")).to_have_text("Product Affinity & Cross-Sell")
    for tab in TABS:
        page.click(f"#tab-{tab}")
        expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")
        panel = page.locator("#panel")
        if tab == "overview":
            expect(panel.locator("#slo-badges .badge")).to_have_count(6)
            expect(panel).to_contain_text("Customer Analytics")
        elif tab == "lineage":
            svg = panel.locator("#lineage svg")
            expect(svg).to_have_attribute("role", "img")
            assert svg.locator("rect").count() >= 6  # landing, three sources, outputs
            assert "customer_info" in svg.get_attribute("aria-label")
        elif tab == "model":
            expect(panel.locator("tr[data-member='customer.email'] .pii")).to_be_visible()
            expect(panel.locator("[data-sample='customer'] table")).to_be_visible()
        elif tab == "metrics":
            charts = panel.locator("figure.chart svg")
            expect(charts).to_have_count(5)  # the backtest and four from the API
            for i in range(5):
                chart = charts.nth(i)
                assert chart.get_attribute("aria-label")  # a text alternative
                assert chart.locator("rect, polyline").count() > 0  # something was drawn
            expect(panel.locator(".notice")).to_have_count(0)
        elif tab == "quality":
            assert panel.locator("#checks tbody tr").count() > 50
            expect(panel.locator("#checks .history span").first).to_be_visible()
            expect(panel.locator("#incidents")).to_be_visible()
            levels = panel.locator("#service-levels")
            expect(levels).to_contain_text("availability")
            expect(levels).to_contain_text("p95 latency /v1/load")
            expect(levels).to_contain_text("PII masking coverage")
            expect(levels).to_contain_text("access review age")
        elif tab == "access":
            expect(panel.locator("pre")).to_have_count(4)
            expect(panel.locator("#groups")).to_contain_text("regional_manager_spain")


def test_tabs_work_with_the_keyboard(page):
    open_hub(page, f"/#/product/{CONSUMER}/overview")
    page.locator("#tab-overview").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-lineage")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tab-lineage")).to_be_focused()
    page.keyboard.press("End")
    expect(page.locator("#tab-access")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Home")
    expect(page.locator("#tab-overview")).to_have_attribute("aria-selected", "true")


def test_masking_holds_for_a_restricted_caller(page):
    open_hub(page)
    sign_in(page, "rdp_demo_marketing_2026")
    page.goto(f"{page.base}/#/product/{CONSUMER}/model")
    sample = page.locator("[data-sample='customer'] table")
    expect(sample).to_be_visible()
    header = sample.locator("th").all_inner_texts()
    assert "customer.email" in header
    column = header.index("customer.email")
    emails = [
        row.locator("td").nth(column).inner_text() for row in sample.locator("tbody tr").all()
    ]
    assert emails and all(re.fullmatch(r".\*\*\*@[^@]+", e) for e in emails), emails
    # the regional manager may not see contact data at all, and only Spanish rows
    page.click("#signout")
    sign_in(page, "rdp_demo_regional_es_2026")
    page.goto(f"{page.base}/#/product/{CONSUMER}/model")
    expect(page.locator("tr[data-member='customer.email'] td").last).to_have_text("no")
    sample = page.locator("[data-sample='customer'] table")
    expect(sample).to_be_visible()
    assert "customer.email" not in sample.locator("th").all_inner_texts()
    assert "@" not in sample.inner_text()


def test_without_credentials_definitions_but_no_data(page):
    loads = []
    page.on("request", lambda r: loads.append(r.url) if "/v1/load" in r.url else None)
    open_hub(page, f"/#/product/{CONSUMER}/model")
    expect(page.locator("tr[data-member='customer.email']")).to_be_visible()
    expect(page.locator("[data-sample]")).to_have_count(0)
    page.click("#tab-metrics")
    expect(page.locator("#panel .notice")).to_contain_text("Sign in")
    expect(page.locator("#panel figure.chart")).to_have_count(1)  # the backtest, no customer data
    assert loads == []


def test_signing_in_before_the_catalogue_has_loaded_waits_for_it(page):
    """A caller who signs in while the service is still answering the catalogue's request gets
    the catalogue when it comes, not a script error (seen under a busy machine in CI)."""
    held = []
    page.route("**/v1/data-products", lambda route: held.append(route))  # answered when released
    page.goto(page.base + "/")
    sign_in(page, "rdp_demo_marketing_2026")
    expect(page.locator("#who")).to_contain_text("Signed in as")
    assert len(held) == 1 and page.locator(".card").count() == 0
    held[0].continue_()
    expect(page.locator(".card")).to_have_count(4)
    page.goto(f"{page.base}/#/product/{CONSUMER}/model")
    expect(page.locator("#tab-model")).to_have_attribute("aria-selected", "true")


def test_the_hub_runs_under_its_content_security_policy(page):
    """Security headers on the page; every tab renders under the CSP (a violation would be a
    console error, which fails the test) and nothing is fetched from another origin."""
    elsewhere = []
    page.on("request", lambda r: None if r.url.startswith((page.base, "data:"))
            else elsewhere.append(r.url))  # fmt: skip
    response = page.goto(page.base + "/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    sign_in(page, "rdp_demo_marketing_2026")
    for tab in TABS:
        page.goto(f"{page.base}/#/product/{CONSUMER}/{tab}")
        expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")
    assert elsewhere == []


def test_the_metrics_tab_shows_the_latest_backtest_report_never_a_stale_one(page, backtest_reports):
    """The Metrics tab reads GET /v1/backtest/latest at each visit: its as_of, horizon and
    creation time are the report made last, also when that one has an earlier as_of."""
    _, write = backtest_reports
    now = datetime.now(UTC)
    first = write(datetime(2026, 4, 1), now - timedelta(hours=1))
    open_hub(page)
    sign_in(page, "rdp_demo_marketing_2026")
    page.goto(f"{page.base}/#/product/{CONSUMER}/metrics")
    facts = page.locator("#latest-backtest-facts")
    expect(facts.locator("[data-field='as_of']")).to_have_text("2026-04-01 00:00:00")
    expect(facts.locator("[data-field='created_at']")).to_have_text(first["created_at"])
    expect(facts.locator("[data-field='horizon_days']")).to_contain_text("90 days")
    rows = page.locator("#latest-backtest .latest-scores tbody tr")
    expect(rows).to_have_count(len(first["opportunity"]["scores"]))
    expect(page.locator("#latest-backtest .latest-clv")).to_contain_text("same_as_last_period")
    ours = first["clv"]["predictors"]["ours"]
    low, high = ours["spend_ratio_interval"]
    expect(page.locator("#latest-backtest .latest-clv")).to_contain_text(
        f"{ours['spend_ratio']:.3f} [{low:.3f}, {high:.3f}]"
    )
    k = first["opportunity"]["calibration_fit"]["hazard_scale"]
    expect(page.locator("#latest-calibration-fit")).to_contain_text(f"k = {k:.4f}")
    expect(page.locator("#latest-backtest .latest-calibration tbody tr")).to_have_count(10)
    second = write(datetime(2025, 11, 25), now)
    page.goto(f"{page.base}/#/product/{CONSUMER}/overview")
    page.click("#tab-metrics")
    expect(facts.locator("[data-field='as_of']")).to_have_text("2025-11-25 00:00:00")
    expect(facts.locator("[data-field='created_at']")).to_have_text(second["created_at"])


@pytest.fixture(scope="module")
def market_server(marketplace, tmp_path_factory):
    from .delivery_server import Server

    _, settings, _ = marketplace
    running = Server(settings.warehouse, tmp_path_factory.mktemp("maudit") / "access.jsonl")
    yield running
    running.stop()


def test_the_affinity_heatmap_stays_readable_at_seventy_categories(browser, market_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.base = market_server.url
    try:
        open_hub(page)
        sign_in(page, "rdp_demo_marketing_2026")
        page.goto(f"{page.base}/#/product/{CONSUMER}/metrics")
        figure = page.locator("figure", has_text="Category affinity")
        expect(figure).to_be_visible()
        # the 12 categories bought together most often, out of all of them
        expect(figure.locator("desc, figcaption, p").first).to_be_attached()
        assert figure.locator("svg rect").count() == 12 * 12
        expect(page.locator("#affinity-search")).to_be_visible()
        page.fill("#affinity-search", "bed")
        labels = page.locator("figure", has_text="Category affinity").locator("svg text")
        names = {t for t in labels.all_text_contents() if "bed" in t}
        assert names and all("bed" in n for n in names)
        assert page.locator("figure", has_text="Category affinity").locator("svg rect").count() == (
            len(names) ** 2
        )
    finally:
        context.close()

"""The overview in a real Chromium: bob (viewer) signs in and sees the pygal charts drawn
with data (bars with a height, lines with points), switches the time window with the
keyboard, and the page fits a 390 px phone screen. Screenshots go to test-artifacts/."""

from __future__ import annotations

import datetime

import pytest
from playwright.sync_api import expect

from runs.choices import RunStatus
from tests.agents.registry_factories import make_agent
from tests.browser.conftest import shot
from tests.browser.test_login_flow import PHONE, fits_width, sign_in
from tests.dashboard.test_overview import add_run
from tests.dashboard.test_run_pages import make_workflow

pytestmark = pytest.mark.browser


@pytest.fixture
def overview_runs(transactional_db, world):
    """A fortnight of runs in acme (committed, so the server sees them)."""
    workflow = make_workflow(world.acme)
    flaky = make_agent(world.acme, "flaky")
    statuses = [RunStatus.SUCCEEDED] * 3 + [RunStatus.FAILED, RunStatus.CANCELLED]
    for i in range(30):
        status = statuses[i % len(statuses)]
        add_run(
            world.acme,
            workflow,
            status=status,
            ago=datetime.timedelta(days=i % 10, hours=i % 7),
            seconds=1 + (i % 6),
            cost=f"0.{i % 9 + 1:02d}",
            tokens=(200 + 10 * i, 40 + i),
            failed_agent=flaky if status == RunStatus.FAILED else None,
            failed_tool="kb-search" if status == RunStatus.FAILED else None,
        )
    add_run(world.acme, workflow, status=RunStatus.RUNNING, seconds=None)


def test_overview_charts_render_with_data(overview_runs, page, live_url, request):
    sign_in(page, live_url, "bob")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    expect(page.get_by_role("heading", name="Runs · Last 14 days")).to_be_visible()
    charts = page.locator("figure.chart svg.pygal-chart")
    expect(charts).to_have_count(5)
    for chart in charts.all():
        expect(chart).to_have_attribute("role", "img")
        box = chart.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150, box

    # runs by status: one bar per status present, each with a height, named by an axis label
    bars = page.locator("#chart-status svg rect.rect")
    heights = bars.evaluate_all("els => els.map(e => e.getBBox().height)")
    assert len(heights) == 4 and all(h > 0 for h in heights), heights
    labels = page.locator("#chart-status svg .axis.x text").all_text_contents()
    assert {"Running", "Succeeded", "Failed", "Cancelled"} <= set(labels), labels
    # over time: stacked bars, the two percentile lines, cost bars, token bars
    assert page.locator("#chart-runs svg rect.rect").count() >= 10
    lines = page.locator("#chart-duration svg g.series path.line")
    expect(lines).to_have_count(2)
    assert all(len(d) > 20 for d in lines.evaluate_all("els => els.map(e => e.getAttribute('d'))"))
    assert page.locator("#chart-cost svg rect.rect").count() >= 10
    assert page.locator("#chart-tokens svg rect.rect").count() >= 20
    # beside them, the words and the table
    expect(page.locator("#chart-status figcaption")).to_have_text(
        "31 runs: 1 running, 18 succeeded, 6 failed, 6 cancelled."
    )
    expect(page.locator("#failing-agents")).to_contain_text("flaky")
    expect(page.locator("#failing-tools")).to_contain_text("kb-search")
    path = shot(page, request, "overview")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the window switch is reachable with the keyboard
    link = page.get_by_role("navigation", name="Time window").get_by_role(
        "link", name="Last 7 days"
    )
    link.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_url}/t/acme/?window=7d")
    expect(page.get_by_role("heading", name="Runs · Last 7 days")).to_be_visible()
    expect(link).to_have_attribute("aria-current", "true")
    page.keyboard.press("Tab")  # focus moves on from the top of the page
    assert page.evaluate("document.activeElement !== document.body")

    # a phone: everything fits, the charts shrink to the screen
    page.set_viewport_size(PHONE)
    page.goto(f"{live_url}/t/acme/")
    page.locator("#series-table summary").click()
    width, inner, outside = fits_width(page)
    assert width <= inner + 1, (width, inner)
    assert not outside, outside
    box = page.locator("#chart-status svg").bounding_box()
    assert box and box["width"] <= PHONE["width"]
    shot(page, request, "overview-phone")


def test_overview_empty_state_leads_to_a_workflow(page, live_url, world, request):
    sign_in(page, live_url, "oscar")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    empty = page.locator("#runs-empty")
    expect(empty).to_contain_text("No runs yet.")
    expect(page.locator("svg.pygal-chart")).to_have_count(0)
    shot(page, request, "overview-empty")

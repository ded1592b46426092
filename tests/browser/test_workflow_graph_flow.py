"""The workflow page's step graph in a real Chromium: the SVG drawing (boxes with the step
type written on them, arrows, route names) beside the definition at 1280 px, above the
text list, and still inside a 390 px phone screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.test_login_flow import PHONE, fits_width, sign_in
from tests.dashboard.test_run_pages import make_workflow

pytestmark = pytest.mark.browser


@pytest.fixture
def refunds(transactional_db, world):
    return make_workflow(world.acme)  # check -> triage (router) -> refund | later


def test_graph_is_drawn_beside_the_definition(refunds, page, live_url, request):
    sign_in(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/workflows/refunds/")
    svg = page.locator("#workflow-graph-svg svg")
    expect(svg).to_be_visible()
    nodes = svg.locator("g.graph-node")
    expect(nodes).to_have_count(4)
    expect(svg.locator('g.graph-node[data-step="triage"] text').nth(1)).to_have_text(
        "router · inline rules"
    )
    expect(svg.locator("path.edge")).to_have_count(3)
    expect(svg.locator("path.edge.routed")).to_have_count(2)
    # drawn in layers: check above triage above refund and later (side by side)
    boxes = {n.get_attribute("data-step"): n.bounding_box() for n in nodes.all()}
    assert boxes["check"]["y"] < boxes["triage"]["y"] < boxes["refund"]["y"]
    assert boxes["refund"]["y"] == boxes["later"]["y"]
    assert boxes["refund"]["x"] + boxes["refund"]["width"] <= boxes["later"]["x"]
    # beside the JSON definition at 1280 px
    graph = page.locator("#graph").bounding_box()
    definition = page.locator("#workflow-definition").bounding_box()
    assert graph["x"] + graph["width"] <= definition["x"]
    expect(page.locator("#workflow-graph .node")).to_have_count(4)  # the text list too
    shot(page, request, "workflow-graph")

    page.set_viewport_size(PHONE)
    page.reload()
    width, inner, outside = fits_width(page)
    assert width <= inner + 1 and not outside, (width, inner, outside)
    assert svg.bounding_box()["width"] <= PHONE["width"]
    shot(page, request, "workflow-graph-phone")

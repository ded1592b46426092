"""Starting a run from the form generated from a workflow's input schema, in a real
Chromium and by keyboard: a text area for a long string, JSON text areas for an object and
an array (with an error shown next to its field), a yes / no select, then the run page.
No worker runs: the run is created and stays queued."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from runs.models import Run
from tests.browser.conftest import orm, shot
from tests.browser.test_login_flow import PHONE, fits_width, sign_in
from tests.dashboard.test_run_pages import make_workflow

pytestmark = pytest.mark.browser

SCHEMA = {
    "type": "object",
    "required": ["note", "order"],
    "properties": {
        "note": {
            "type": "string",
            "maxLength": 1000,
            "title": "Note",
            "description": "Anything the team should know.",
        },
        "order": {"type": "object", "required": ["id"], "title": "Order"},
        "tags": {"type": "array", "items": {"type": "string"}, "title": "Tags"},
        "speed": {"enum": ["standard", "express"], "title": "Speed"},
        "gift": {"type": "boolean", "title": "Gift"},
    },
}


@pytest.fixture
def orders(transactional_db, world):
    return make_workflow(
        world.acme,
        slug="orders",
        name="Orders",
        definition={
            "input_schema": SCHEMA,
            "example_input": {"note": "Fragile", "order": {"id": 7}},
            "steps": [{"id": "ok", "type": "approval", "title": "Ship {{ input.order.id }}?"}],
        },
    )


def tab_to(page, name: str, limit: int = 40) -> None:
    """Press Tab until the element named ``name`` has the focus (it is keyboard reachable)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement;"
            " return (e.labels && e.labels[0] ? e.labels[0].textContent : e.textContent)"
            ".trim(); }"
        )
        if focused.startswith(name):
            return
    raise AssertionError(f"{name!r} not reached with Tab")


def test_oscar_starts_a_run_from_the_generated_form(orders, page, live_url, request):
    sign_in(page, live_url, "oscar")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    page.goto(f"{live_url}/t/acme/workflows/orders/start/")
    form = page.locator("#start-form")
    note = form.get_by_label("Note")
    expect(note).to_have_value("Fragile")
    assert note.evaluate("e => e.tagName") == "TEXTAREA"
    expect(form.get_by_label("Order")).to_have_value('{\n  "id": 7\n}')
    expect(form.locator("#field-input-speed select")).to_have_count(1)
    expect(form.locator("#field-input-order")).to_contain_text("JSON: an object")

    # typed by keyboard; a wrong object is refused next to its field and nothing starts
    form.get_by_label("Order").fill('{"number": 7}')
    form.get_by_label("Tags").fill('["fragile"]')
    form.get_by_label("Speed").select_option("express")
    tab_to(page, "Start run")
    page.keyboard.press("Enter")
    expect(page.locator("#field-input-order .error")).to_have_text("'id' is a required property")
    expect(page.locator(".error-box")).to_contain_text("No run was started.")
    assert orm(lambda: Run.objects.unscoped().filter(workflow=orders).count()) == 0
    expect(form.get_by_label("Speed")).to_have_value("express")  # what was typed stays
    shot(page, request, "start-form-error")

    form.get_by_label("Order").fill('{"id": 42}')
    form.get_by_label("Gift").select_option("true")
    form.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(rf"{live_url}/t/acme/runs/\d+/$"))
    expect(page.locator("main")).to_contain_text("of orders v1 started")
    run = orm(lambda: Run.objects.unscoped().get(workflow=orders))
    assert run.input == {
        "note": "Fragile",
        "order": {"id": 42},
        "tags": ["fragile"],
        "speed": "express",
        "gift": True,
    }
    assert page.url.endswith(f"/t/acme/runs/{run.pk}/")


def test_the_input_can_be_typed_as_json_on_a_phone(orders, page, live_url, request):
    page.set_viewport_size(PHONE)
    sign_in(page, live_url, "oscar")
    page.goto(f"{live_url}/t/acme/workflows/orders/start/")
    page.get_by_role("link", name="Type the input as JSON instead").click()
    expect(page).to_have_url(f"{live_url}/t/acme/workflows/orders/start/?input_mode=json#start")
    box = page.get_by_label("Input")
    expect(box).to_contain_text('"note": "Fragile"')
    width, inner, outside = fits_width(page)
    assert width <= inner + 1 and not outside, (width, inner, outside)
    shot(page, request, "start-json-phone")
    box.fill('{"note": "by JSON", "order": {"id": 5}, "extra": true}')
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(rf"{live_url}/t/acme/runs/\d+/$"))
    run = orm(lambda: Run.objects.unscoped().get(workflow=orders))
    assert run.input == {"note": "by JSON", "order": {"id": 5}, "extra": True}

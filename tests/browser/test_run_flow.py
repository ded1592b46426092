"""The run engine in a real Chromium: oliver (operator) starts the seeded support workflow
from its generated form and watches the run page follow it without a reload until it
waits for a refund approval; alice (owner) approves in the inbox; oliver's page, still
not reloaded, shows the run succeeded; the decision is on the audit page.

Everything is real: the ASGI server (``conftest.asgi_server``) dispatches the steps to a
Celery queue of this session, where a real worker process (``conftest.celery_worker``)
executes them against the test database on the simulated provider.
"""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from runs.approvals.models import ApprovalRequest
from runs.models import Run, StepRun
from tests.browser.conftest import orm, shot
from tests.browser.test_login_flow import PHONE, fits_width, sign_in
from tests.factories import TEST_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.worker]

RUN_SECONDS = 60_000  # ms: a whole support ticket on the simulated provider takes a few seconds


@pytest.fixture
def demo(transactional_db, world, settings, tmp_path):
    """The demo registry and workflows (oliver, operator, among the users); committed."""
    settings.DATA_DIR = tmp_path
    settings.DEMO_PASSWORD = TEST_PASSWORD
    call_command("seed_demo", stdout=io.StringIO())
    return world.acme


def no_reload_marker(page) -> None:
    """Mark the document: a reload or a navigation would lose the mark."""
    page.evaluate("() => { window.__notReloaded = true; }")


def still_same_document(page) -> bool:
    return page.evaluate("() => window.__notReloaded === true")


def test_oliver_runs_the_support_workflow_through_alices_approval(
    demo, start_celery_worker, page, live_url, world, request
):
    # oliver opens the seeded workflow ---------------------------------------------------------
    sign_in(page, live_url, "oliver")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    nav = page.get_by_role("navigation", name="Tenant sections")
    expect(nav.get_by_role("link", name="Approvals")).to_have_text("Approvals")  # none to decide
    nav.get_by_role("link", name="Workflows").click()
    expect(page).to_have_url(f"{live_url}/t/acme/workflows/")
    shot(page, request, "workflows")
    page.locator("#workflows").get_by_role("link", name="Support ticket").click()
    expect(page).to_have_url(f"{live_url}/t/acme/workflows/support-ticket/")
    graph = page.locator("#workflow-graph")
    expect(graph.locator(".layer")).to_have_count(6)
    expect(page.locator("#node-approve_refund")).to_contain_text("billing")  # what it needs
    expect(page.locator("#node-triage")).to_contain_text("billing → billing")
    expect(page.locator("#publish")).to_have_count(0)  # operators do not edit workflows

    # the start form is generated from the input schema and prefilled with the example -------
    form = page.locator("#start-form")
    expect(form.get_by_label("Customer message")).to_have_value(
        "I was charged twice, please refund me."
    )
    expect(form.get_by_label("Customer", exact=True)).to_have_value("Dana Scully")
    expect(form.get_by_label("Refund amount (EUR)")).to_have_value("120")
    shot(page, request, "workflow")

    # a bad value is refused next to its field, and nothing starts -----------------------------
    form.get_by_label("Customer", exact=True).fill("")
    form.get_by_role("button", name="Start run").click()
    expect(page.locator("#field-input-customer .error")).to_have_text("This field is required.")
    expect(page.locator(".error-box")).to_contain_text("No run was started.")
    assert orm(lambda: Run.objects.for_tenant(world.acme).count()) == 0
    shot(page, request, "start-error")

    page.locator("#start-form").get_by_label("Customer", exact=True).fill("Dana Scully")
    page.locator("#start-form").get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(rf"{live_url}/t/acme/runs/\d+/$"))
    run_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    expect(page.locator(".messages")).to_contain_text(f"Run #{run_id} of support-ticket v1")
    run = orm(
        lambda: Run.objects.for_tenant(world.acme).select_related("created_by").get(pk=run_id)
    )
    assert run.created_by.username == "oliver"
    assert run.input == {
        "message": "I was charged twice, please refund me.",
        "customer": "Dana Scully",
        "amount": 120,
    }

    # no worker yet: the run waits in the queue, and its page follows it over a websocket -----
    status = page.locator("#run-status")
    timeline = page.locator("#timeline-events")
    expect(status).to_have_text("Queued")
    expect(page.locator("#live-note")).to_contain_text("Live: this page follows the run")
    expect(page.locator("#live-status")).to_have_text("Live: new events appear as they happen.")
    polls: list[int] = []  # htmx polls (?after=<seq>): only a fallback when the socket is down
    page.on(
        "response",
        lambda r: polls.append(r.status) if "after=" in r.url and "/ws/" not in r.url else None,
    )
    page.wait_for_function("() => window.htmx !== undefined")
    no_reload_marker(page)
    queued_events = timeline.locator("li.event").count()
    shot(page, request, "run-queued")

    # the worker starts: the page follows the run, without a reload, until it waits -----------
    start_celery_worker()
    expect(status).to_contain_text("Waiting for a person", timeout=RUN_SECONDS)
    expect(timeline).to_contain_text("Tool call: ticket-create")
    expect(timeline).to_contain_text("Route chosen: billing")
    expect(timeline).to_contain_text("Model call by billing-support")
    expect(timeline).to_contain_text("Step approve_refund waits for a person")
    expect(page.locator("#step-technical")).to_contain_text("Skipped")
    expect(page.locator("#run-approvals")).to_contain_text("Refund 120 EUR to Dana Scully?")
    expect(page.locator("#run-approvals")).to_contain_text("Your role (operator) cannot decide it.")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    assert still_same_document(page)
    waiting_events = timeline.locator("li.event").count()
    assert waiting_events > queued_events
    assert polls == [], polls  # the websocket brought the events
    shot(page, request, "run-waiting")

    # alice approves in her inbox (another browser session) -------------------------------------
    alice_context = page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    alice_context.set_default_timeout(15_000)
    alice = alice_context.new_page()
    sign_in(alice, live_url, "alice")
    expect(alice).to_have_url(f"{live_url}/t/acme/")
    alice_nav = alice.get_by_role("navigation", name="Tenant sections")
    expect(alice_nav.locator("#nav-approvals-count")).to_contain_text("1")
    alice_nav.get_by_role("link", name="Approvals").click()
    expect(alice).to_have_url(f"{live_url}/t/acme/approvals/")
    approval = orm(lambda: ApprovalRequest.objects.for_tenant(world.acme).get(run_id=run_id))
    card = alice.locator(f"#approval-{approval.pk}")
    expect(card).to_contain_text("Refund 120 EUR to Dana Scully?")
    expect(card.locator(".approval-details")).to_contain_text('"customer": "Dana Scully"')
    expect(card.get_by_role("link", name=f"#{run_id}")).to_be_visible()
    card.get_by_label("Comment").fill("Duplicate charge confirmed.")
    shot(alice, request, "inbox")
    card.get_by_role("button", name="Approve").click()
    expect(alice.locator(".messages")).to_contain_text(
        f"Approved: “Refund 120 EUR to Dana Scully?”. Run #{run_id} continues."
    )
    expect(alice.locator(f"#approval-{approval.pk} .decision")).to_contain_text("Approved by alice")
    expect(alice_nav.locator("#nav-approvals-count")).to_have_count(0)
    shot(alice, request, "approved")

    # oliver's page, never reloaded, shows the run succeeded -----------------------------------
    expect(status).to_contain_text("Succeeded", timeout=RUN_SECONDS)
    assert still_same_document(page)
    expect(page.locator("#progress-text")).to_have_text("7 of 7 steps finished (100%)")
    expect(page.locator("#live-note")).to_have_text("The run has ended; nothing more will change.")
    expect(timeline).to_contain_text("Step approve_refund succeeded")
    expect(timeline).to_contain_text("Tool call: issue-refund")
    expect(timeline).to_contain_text("Run succeeded")
    expect(page.locator("#run-approvals .decision")).to_contain_text("Approved by alice")
    expect(page.locator("#run-output")).to_contain_text('"route": "billing"')
    assert timeline.locator("li.event").count() > waiting_events
    expect(page.locator("#live-status")).to_have_text("The run has ended: every event is shown.")
    assert polls == [], polls
    # each event once, in order: the fragments appended exactly what was new
    seqs = [
        int(s.split("-")[1])
        for s in timeline.locator("li.event").evaluate_all("items => items.map(i => i.id)")
    ]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    shot(page, request, "run-succeeded")
    finished = orm(lambda: Run.objects.for_tenant(world.acme).get(pk=run_id))
    assert finished.status == "succeeded", finished.status_reason
    assert finished.event_seq == len(seqs)
    steps = orm(
        lambda: dict(
            StepRun.objects.for_tenant(world.acme)
            .filter(run_id=run_id)
            .values_list("step_key", "status")
        )
    )
    assert steps["refund"] == "succeeded" and steps["technical"] == "skipped"

    # the decision is on the audit page ---------------------------------------------------------
    alice.goto(f"{live_url}/t/acme/audit/?action=approval.")
    rows = alice.locator("#audit-events tbody tr")
    expect(rows.first).to_contain_text("approval.approved")
    expect(rows.first).to_contain_text("alice")
    expect(rows.first).to_contain_text("Refund 120 EUR to Dana Scully?")
    rows.first.get_by_text("show").click()
    expect(rows.first).to_contain_text("Duplicate charge confirmed.")
    shot(alice, request, "audit")
    alice_context.close()


def test_run_pages_fit_a_phone_screen(demo, page, live_url, world, request):
    """No worker here: a queued run and a pending request are enough to lay the pages out."""
    from controlplane import context
    from runs import services
    from runs.approvals.services import approval_create
    from runs.models import Workflow

    def prepare():
        with context.system_context("tests", tenant=world.acme):
            workflow = Workflow.objects.get(slug="support-ticket")
            run, _ = services.run_start(
                tenant=world.acme, workflow=workflow, input={"message": "Hi", "customer": "Fox"}
            )
            step = StepRun.objects.get(run=run, step_key="open_ticket")
            approval_create(
                run=run,
                step_run=step,
                kind="approval",
                title="Refund 120 EUR to Fox?",
                details={"customer": "Fox", "message": "A long message " * 20},
            )
            return run.pk

    run_id = orm(prepare)
    page.set_viewport_size(PHONE)
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    checked = {}
    pages = {
        "workflows": "/t/acme/workflows/",
        "workflow": "/t/acme/workflows/support-ticket/",
        "workflow-new": "/t/acme/workflows/new/",
        "start": "/t/acme/workflows/support-ticket/start/",
        "runs": "/t/acme/runs/",
        "run": f"/t/acme/runs/{run_id}/",
        "approvals": "/t/acme/approvals/",
    }
    for name, path in pages.items():
        response = page.goto(f"{live_url}{path}")
        assert response.status == 200, (name, response.status)
        for summary in page.locator("main summary").all()[:4]:
            summary.click()
        checked[name] = fits_width(page)
        shot(page, request, name)
    too_wide = {name: w[:2] for name, w in checked.items() if w[0] > w[1] + 1}
    assert not too_wide, f"horizontal overflow at 390 px (scrollWidth, innerWidth): {too_wide}"
    outside = {name: w[2] for name, w in checked.items() if w[2]}
    assert not outside, f"elements outside the 390 px viewport: {outside}"
    # the navigation, with the pending count, still wraps onto a few short lines
    expect(page.locator("#nav-approvals-count")).to_contain_text("1")
    nav_height = page.locator("nav.sections").bounding_box()["height"]
    assert nav_height < 120, nav_height

"""A policy from draft to enforcement in a real Chromium.

Set up in Python (the server uses the same committed test database): a tool ``refund``
(risk write, input schema with ``amount``) granted to two llm agents on the simulated
provider, whose system prompts script a ``refund`` call with 50 and 150 (the simulated
provider cannot template its script from the run input), and a workflow ``refunds`` whose
router sends a run to the agent of its amount. Two past runs (50 and 150) go through a
real worker before any policy exists, so their decisions are recorded.

Then alice (owner) writes a policy holding ``refund`` calls with ``args.amount > 100``
for approval, keeps it a draft, simulates it and sees the 150 call go allow ->
require_approval, and activates it. oscar (operator) starts a run of 150: its page shows
it waiting. bob (viewer) opens the request and has no button to decide it, and a forged
POST is refused (403). alice approves; the run succeeds; the audit log has the policy's
require_approval and the approval.

``refund`` is an HTTP tool (a GET of the server's own /healthz standing in for a payment
API): the built-in tools refuse arguments outside their own schema, such as ``amount``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from controlplane import context
from policies.models import Policy, PolicyDecision
from runs import services as run_services
from runs import workflow_services
from runs.approvals.models import ApprovalRequest
from runs.models import Run, Workflow
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.browser.conftest import orm
from tests.browser.test_login_flow import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "test" / "screenshots"
RUN_SECONDS = 60
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POLICY = """{
  "rules": [
    {
      "id": "big-refunds",
      "description": "Refunds above 100 need an admin",
      "effect": "require_approval",
      "actions": ["call_tool"],
      "tools": ["refund"],
      "condition": "args.amount > 100",
      "approvers": {"role": "admin", "quorum": 1}
    }
  ]
}"""


def screenshot(page, request, step: str) -> Path:
    """A full-page PNG under var/test/screenshots/, checked to be a non-empty PNG."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{request.node.name}--{step}.png"
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert len(data) > len(PNG_MAGIC) and data.startswith(PNG_MAGIC), path
    return path


def refund_agent(tenant, provider, slug: str, amount: int):
    return make_agent(
        tenant,
        slug=slug,
        provider=provider,
        tags=["refunds"],
        config={
            "provider": provider.slug,
            "model": "sim-1",
            "system_prompt": (
                f"You refund customers. Refund exactly {amount} EUR.\n"
                f'SIMULATE call refund {{"amount": {amount}, "currency": "EUR"}}'
            ),
        },
    )


def wait_for_status(tenant, run_id: int, status: str) -> Run:
    deadline = time.monotonic() + RUN_SECONDS
    while True:
        run = Run.objects.for_tenant(tenant).get(pk=run_id)
        if run.status == status:
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"run #{run_id} is {run.status}, not {status}: {run.status_reason}")
        time.sleep(0.2)


@pytest.fixture
def refunds(live_url, world, start_celery_worker):
    """The registry, the workflow and two past runs (50 and 150) with recorded decisions."""
    acme = world.acme
    tool = make_tool(
        acme,
        slug="refund",
        kind="http",
        builtin="",
        url=f"{live_url}/healthz",
        method="GET",
        allowed_hosts=[live_url.removeprefix("http://")],
        risk="write",
        input_schema={
            "type": "object",
            "required": ["amount"],
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "currency": {"type": "string"},
            },
        },
    )
    with context.system_context("tests", tenant=acme):
        from agents.services.tools import tool_grant_create

        tool_grant_create(tool=tool, agent_tag="refunds")
    provider = make_provider(acme, slug="sim")
    refund_agent(acme, provider, "refund-small", 50)
    refund_agent(acme, provider, "refund-large", 150)
    definition = {
        "input_schema": {
            "type": "object",
            "required": ["amount"],
            "properties": {"amount": {"type": "number", "minimum": 0, "title": "Refund amount"}},
        },
        "example_input": {"amount": 150},
        "steps": [
            {
                "id": "size",
                "type": "router",
                "needs": [],
                "input": "{{ input }}",
                "rules": [
                    {"when": {"path": "input.amount", "op": "gt", "value": 100}, "route": "large"}
                ],
                "default_route": "small",
                "routes": {"large": ["pay_large"], "small": ["pay_small"]},
            },
            {
                "id": "pay_large",
                "type": "agent",
                "agent": "refund-large",
                "needs": ["size"],
                "input": "Refund {{ input.amount }} EUR",
            },
            {
                "id": "pay_small",
                "type": "agent",
                "agent": "refund-small",
                "needs": ["size"],
                "input": "Refund {{ input.amount }} EUR",
            },
        ],
    }
    with context.system_context("tests", tenant=acme):
        workflow = workflow_services.workflow_create(
            tenant=acme, slug="refunds", name="Refunds", definition=definition
        )
    start_celery_worker()
    past = []
    for amount in (50, 150):
        with context.system_context("tests", tenant=acme):
            run, _ = run_services.run_start(
                tenant=acme, workflow=workflow, input={"amount": amount}
            )
        past.append(wait_for_status(acme, run.pk, "succeeded"))
    calls = PolicyDecision.objects.for_tenant(acme).filter(action="call_tool", tool="refund")
    assert sorted(d.inputs["arguments"]["amount"] for d in calls) == [50, 150]
    assert {d.effect for d in calls} == {"allow"}
    return {"workflow": workflow, "small": past[0], "large": past[1]}


def new_session(page, live_url: str, username: str):
    context_ = page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    context_.set_default_timeout(15_000)
    other = context_.new_page()
    sign_in(other, live_url, username)
    expect(other).to_have_url(f"{live_url}/t/acme/")
    return other


def test_a_draft_policy_is_simulated_activated_and_enforced(
    refunds, page, live_url, world, request
):
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    # alice writes the policy as a draft -------------------------------------------------------
    page.on("dialog", accept)
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    nav = page.get_by_role("navigation", name="Tenant sections")
    nav.get_by_role("link", name="Policies").click()
    expect(page).to_have_url(f"{live_url}/t/acme/policies/")
    expect(page.locator("main .empty")).to_contain_text("No policies yet: every call is allowed.")
    page.get_by_role("link", name="New policy").click()
    expect(page).to_have_url(f"{live_url}/t/acme/policies/new/")
    form = page.locator("#policy-form")
    expect(form.get_by_label("Activate now")).not_to_be_checked()
    expect(page.locator("#condition-variables")).to_contain_text("the call's arguments")
    form.get_by_label("Slug").fill("refund-guard")
    form.get_by_label("Name").fill("Refund guard")
    # a mistake first: the problem is shown under its path, nothing is saved
    form.get_by_label("Definition").fill(POLICY.replace("args.amount", "arguments.amount"))
    form.get_by_role("button", name="Create policy").click()
    expect(page.locator("#field-definition .error")).to_contain_text(
        "rules[0].condition: Unknown variable arguments"
    )
    screenshot(page, request, "create-error")
    assert orm(lambda: Policy.objects.for_tenant(world.acme).count()) == 0
    page.locator("#policy-form").get_by_label("Definition").fill(POLICY)
    page.locator("#policy-form").get_by_role("button", name="Create policy").click()
    expect(page).to_have_url(f"{live_url}/t/acme/policies/refund-guard/")
    expect(page.locator(".messages")).to_contain_text("v1 is a draft")
    expect(page.locator("#no-active")).to_contain_text("No version is active: v1 is a draft.")
    screenshot(page, request, "draft")

    # she simulates it against the recorded decisions ------------------------------------------
    page.get_by_role("link", name="Simulate", exact=True).click()
    expect(page).to_have_url(f"{live_url}/t/acme/policies/refund-guard/simulate/")
    expect(page.get_by_label("Recorded decisions")).to_have_value("200")
    page.get_by_role("button", name="Run simulation").click()
    expect(page.locator("#simulation-summary")).to_contain_text("1 decision would change")
    transition = page.locator("#transition-allow-require_approval")
    expect(transition).to_contain_text("allow")
    expect(transition).to_contain_text("require_approval")
    expect(transition.locator('td[data-label="Decisions"]')).to_have_text("1")
    changes = page.locator("#changes tbody tr")
    expect(changes).to_have_count(1)
    large = refunds["large"]
    expect(changes.first.get_by_role("link", name=f"#{large.pk}")).to_be_visible()
    expect(changes.first).to_contain_text("refund-large")
    expect(changes.first).to_contain_text('"amount": 150')
    expect(changes.first.locator('td[data-label="Before"]')).to_have_text("allow")
    expect(changes.first.locator('td[data-label="After"]')).to_have_text("require_approval")
    expect(changes.first).to_contain_text("big-refunds")
    screenshot(page, request, "simulation")

    # ... and activates it (after a confirmation) ---------------------------------------------
    page.get_by_role("button", name="Activate v1").click()
    expect(page).to_have_url(f"{live_url}/t/acme/policies/refund-guard/#versions")
    assert dialogs and dialogs[-1].startswith("Activate v1 of refund-guard?"), dialogs
    expect(page.locator(".messages")).to_contain_text("Activated v1")
    expect(page.locator("#active-version")).to_contain_text("v1")
    expect(page.locator("#rule-big-refunds")).to_contain_text("args.amount > 100")
    screenshot(page, request, "active")
    policy = orm(lambda: Policy.objects.for_tenant(world.acme).get(slug="refund-guard"))
    assert policy.active_version_id is not None

    # oscar (operator) starts a run of 150; it waits for a person ------------------------------
    oscar = new_session(page, live_url, "oscar")
    oscar.goto(f"{live_url}/t/acme/workflows/refunds/")
    start = oscar.locator("#start-form")
    expect(start.get_by_label("Refund amount")).to_have_value("150")
    start.get_by_role("button", name="Start run").click()
    expect(oscar).to_have_url(re.compile(rf"{live_url}/t/acme/runs/\d+/$"))
    run_id = int(oscar.url.rstrip("/").rsplit("/", 1)[1])
    expect(oscar.locator("#run-status")).to_contain_text(
        "Waiting for a person", timeout=RUN_SECONDS * 1000
    )
    expect(oscar.locator("#run-approvals")).to_contain_text("refund")
    expect(oscar.locator("#run-approvals")).to_contain_text(
        "Your role (operator) cannot decide it."
    )
    screenshot(oscar, request, "run-waiting")
    approval = orm(
        lambda: ApprovalRequest.objects.for_tenant(world.acme).get(run_id=run_id, kind="policy")
    )
    assert approval.policy_id == policy.pk and approval.rule == "big-refunds"
    assert approval.details["arguments"] == {"amount": 150, "currency": "EUR"}

    # bob (viewer) sees the request but cannot decide it, not even with a forged POST ---------
    bob = new_session(page, live_url, "bob")
    expect(bob.locator("#nav-approvals-count")).to_have_count(0)
    bob.goto(f"{live_url}/t/acme/approvals/{approval.pk}/")
    card = bob.locator(f"#approval-{approval.pk}")
    expect(card.locator(".asked-by")).to_contain_text("Refund guard")
    expect(card.locator(".asked-by")).to_contain_text("big-refunds")
    expect(card.locator(".approval-arguments")).to_contain_text('"amount": 150')
    expect(card.locator(".cannot-decide")).to_contain_text("Your role (viewer) cannot decide it.")
    expect(bob.get_by_role("button", name="Approve")).to_have_count(0)
    screenshot(bob, request, "viewer")
    status = bob.evaluate(
        """async ([url, prefix]) => {
            const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
            const body = new URLSearchParams({[prefix + "-decision"]: "approve"});
            const r = await fetch(url, {method: "POST", body, headers: {"X-CSRFToken": token}});
            return r.status;
        }""",
        [f"/t/acme/approvals/{approval.pk}/", f"approval-{approval.pk}"],
    )
    assert status == 403
    assert (
        orm(lambda: ApprovalRequest.objects.for_tenant(world.acme).get(pk=approval.pk).status)
        == "pending"
    )

    # alice approves; the run goes on and succeeds ----------------------------------------------
    # her page is older than the request, and its count followed without a reload
    expect(nav.locator("#nav-approvals-count")).to_contain_text("1")
    page.goto(f"{live_url}/t/acme/approvals/")
    expect(nav.locator("#nav-approvals-count")).to_contain_text("1")
    card = page.locator(f"#approval-{approval.pk}")
    card.get_by_label("Comment").fill("Checked the order.")
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".messages")).to_contain_text(f"Run #{run_id} continues.")
    expect(page.locator(f"#approval-{approval.pk} .decision")).to_contain_text("Approved by alice")
    oscar.goto(f"{live_url}/t/acme/runs/{run_id}/")
    expect(oscar.locator("#run-status")).to_contain_text("Succeeded", timeout=RUN_SECONDS * 1000)
    expect(oscar.locator("#timeline-events")).to_contain_text("refund")
    screenshot(oscar, request, "run-succeeded")
    finished = orm(lambda: Run.objects.for_tenant(world.acme).get(pk=run_id))
    assert finished.status == "succeeded", finished.status_reason
    effects = orm(
        lambda: list(
            PolicyDecision.objects.for_tenant(world.acme)
            .filter(run_id=run_id, tool="refund")
            .order_by("id")
            .values_list("effect", flat=True)
        )
    )
    assert effects == ["require_approval", "allow"], effects

    # the audit log has the policy's decision and the approval ---------------------------------
    page.goto(f"{live_url}/t/acme/audit/?action=policy.")
    rows = page.locator("#audit-events tbody tr")
    expect(rows.filter(has_text="policy.require_approval")).to_have_count(1)
    expect(rows.filter(has_text="policy.activate")).to_have_count(1)
    screenshot(page, request, "audit-policy")
    page.goto(f"{live_url}/t/acme/audit/?action=approval.")
    approved = rows.filter(has_text="approval.approved")
    expect(approved).to_have_count(1)
    expect(approved).to_contain_text("alice")
    screenshot(page, request, "audit-approval")

    # the decisions page lists the run's decisions, filtered by tool ----------------------------
    page.goto(f"{live_url}/t/acme/policies/decisions/?tool=refund")
    decisions = page.locator("#decisions tbody tr")
    expect(decisions).to_have_count(4)  # two past calls, the held one, the approved one
    expect(decisions.first).to_contain_text(f"#{run_id}")
    screenshot(page, request, "decisions")
    for other in (oscar, bob):
        other.context.close()
    assert orm(lambda: Workflow.objects.for_tenant(world.acme).count()) == 1


def test_policy_pages_fit_a_phone_screen(live_url, world, request, page):
    """No worker: a policy with a draft, and recorded decisions, are enough to lay out."""
    from policies import services as policy_services
    from tests.browser.test_login_flow import PHONE, fits_width

    def prepare():
        acme = world.acme
        rule = {
            "id": "big-refunds",
            "description": "Refunds above 100 need an admin " * 3,
            "effect": "require_approval",
            "actions": ["call_tool"],
            "tools": ["refund", "tag:payments", "risk:destructive"],
            "condition": "args.amount > 100 && input.customer != 'internal-test-account'",
        }
        make_tool(acme, slug="refund")  # a policy names only tools that exist
        with context.system_context("tests", tenant=acme):
            policy = policy_services.policy_create(
                tenant=acme, slug="refund-guard", name="Refund guard", definition={"rules": []}
            )
            policy_services.policy_save_version(policy=policy, definition={"rules": [rule]})
        for amount in (50, 150):
            PolicyDecision.objects.for_tenant(acme).create(
                tenant=acme,
                action="call_tool",
                agent="refund-large-agent-with-a-long-name",
                tool="refund",
                effect="allow",
                reason="no rule matched: allowed by default",
                inputs_hash=f"h{amount}",
                inputs={
                    "action": "call_tool",
                    "agent": "refund-large-agent-with-a-long-name",
                    "tool": "refund",
                    "arguments": {"amount": amount, "note": "a long note " * 8},
                },
            )

    orm(prepare)
    page.set_viewport_size(PHONE)
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    pages = {
        "policies": "/t/acme/policies/",
        "policy-new": "/t/acme/policies/new/",
        "policy": "/t/acme/policies/refund-guard/?from=1&to=2",
        "simulate": "/t/acme/policies/refund-guard/simulate/?version=2&limit=200",
        "decisions": "/t/acme/policies/decisions/",
    }
    checked = {}
    for name, path in pages.items():
        response = page.goto(f"{live_url}{path}")
        assert response.status == 200, (name, response.status)
        for summary in page.locator("main summary").all()[:4]:
            summary.click()
        checked[name] = fits_width(page)
        screenshot(page, request, name)
    expect(page.locator("#decisions tbody tr")).to_have_count(2)
    too_wide = {name: w[:2] for name, w in checked.items() if w[0] > w[1] + 1}
    assert not too_wide, f"horizontal overflow at 390 px (scrollWidth, innerWidth): {too_wide}"
    outside = {name: w[2] for name, w in checked.items() if w[2]}
    assert not outside, f"elements outside the 390 px viewport: {outside}"

"""The seeded demo workflows run to completion offline, on a real worker."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from agents.models import Ticket
from controlplane import context
from controlplane.tenancy.models import Tenant
from runs import services
from runs.approvals.models import ApprovalRequest
from runs.demo import WORKFLOWS
from runs.models import StepRun, Workflow
from tests.runs.conftest import wait_for_run
from tests.runs.test_engine import _approval, _decide


@pytest.fixture
def demo(worker, settings, tmp_path, world):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo")
    return Tenant.objects.get(slug="acme")


def _start(tenant, slug, input=None):
    workflow = Workflow.objects.for_tenant(tenant).select_related("current_version").get(slug=slug)
    with context.system_context("tests", tenant=tenant):
        run, _ = services.run_start(
            tenant=tenant,
            workflow=workflow,
            input=input or workflow.current_version.definition["example_input"],
        )
        return run


def test_support_ticket_runs_through_the_refund_approval(demo, world):
    from django.contrib.auth import get_user_model

    world.alice = get_user_model().objects.get(username="alice")
    run = _start(demo, "support-ticket")
    approval = _approval(run)
    assert approval.title == "Refund 120 EUR to Dana Scully?"
    _decide(world, approval, comment="within policy")
    run = wait_for_run(run)
    assert run.status == "succeeded", run.status_reason
    steps = {s.step_key: s for s in StepRun.objects.unscoped().filter(run_id=run.pk)}
    assert steps["triage"].output == {"route": "billing"}
    assert steps["technical"].status == "skipped"
    assert steps["refund"].status == "succeeded"
    ticket = Ticket.objects.for_tenant(demo).get(number=run.output["ticket"])
    assert ticket.status == "resolved"
    assert set(run.output["summary"]) == {"summary", "sentiment"}
    from runs.models import RunEvent

    tool_calls = [
        e.payload for e in RunEvent.objects.unscoped().filter(run_id=run.pk, type="tool.call")
    ]
    assert {c["tool"] for c in tool_calls} >= {"ticket-create", "kb-search", "issue-refund"}
    assert all("error" not in c for c in tool_calls), tool_calls


def test_technical_tickets_skip_the_refund(demo):
    run = wait_for_run(
        _start(demo, "support-ticket", {"message": "The API returns an error", "customer": "Fox"})
    )
    assert run.status == "succeeded", run.status_reason
    steps = {s.step_key: s.status for s in StepRun.objects.unscoped().filter(run_id=run.pk)}
    assert steps["billing"] == steps["approve_refund"] == steps["refund"] == "skipped"
    assert not ApprovalRequest.objects.unscoped().filter(run_id=run.pk).exists()


@pytest.mark.parametrize("slug", [w["slug"] for w in WORKFLOWS if w["slug"] != "support-ticket"])
def test_every_other_demo_workflow_succeeds(demo, slug):
    run = wait_for_run(_start(demo, slug), timeout=90)
    assert run.status == "succeeded", run.status_reason
    assert run.output is not None

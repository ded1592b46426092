"""A tool registered on ticket_update below its floor (a row older than the registration
check) is still destructive when an agent calls it: the default policy holds the call."""

from __future__ import annotations

import json

import pytest

from agents.models import Ticket, Tool
from agents.services.tools import tool_grant_create
from controlplane import context
from policies.models import PolicyDecision
from policies.services import ensure_default_policy
from runs.approvals.models import ApprovalRequest
from tests.agents.registry_factories import make_agent, make_provider, make_ticket, make_tool
from tests.runs.test_engine import _approval, _start, _workflow


@pytest.fixture
def acme(world):
    with context.tenant_context(world.acme):
        make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
        ensure_default_policy(world.acme)
        yield world


def test_an_agent_calling_ticket_update_stored_as_write_waits_for_approval(acme, worker):
    """The row predates the registration check (stored "write"); the default policy still
    holds the refund for an admin, and the ticket is untouched."""
    world = acme
    ticket = make_ticket(world.acme)
    tool = make_tool(world.acme, slug="ticket-update", builtin="ticket_update")
    Tool.objects.for_tenant(world.acme).filter(pk=tool.pk).update(risk="write")
    with context.system_context("tests", tenant=world.acme):
        tool_grant_create(tool=tool, agent_tag="billing")
    arguments = {"number": ticket.number, "status": "resolved", "note": "Refund of 99999 EUR"}
    make_agent(
        world.acme,
        slug="refunder",
        tags=["billing"],
        config={
            "provider": "sim",
            "model": "sim-1",
            "system_prompt": "SIMULATE call ticket-update " + json.dumps(arguments),
        },
    )
    run = _start(
        world, _workflow(world, "refund", [{"id": "pay", "type": "agent", "agent": "refunder"}])
    )
    approval = _approval(run)
    assert approval.kind == "policy" and approval.rule == "destructive-tools-need-approval"
    decision = PolicyDecision.objects.for_tenant(world.acme).get(
        run_id=run.pk, tool="ticket-update"
    )
    assert decision.effect == "require_approval" and decision.inputs["risk"] == "destructive"
    ticket = Ticket.objects.for_tenant(world.acme).get(pk=ticket.pk)
    assert ticket.status == "open" and not (ticket.data or {}).get("notes")
    assert ApprovalRequest.objects.unscoped().filter(run_id=run.pk, status="pending").count() == 1

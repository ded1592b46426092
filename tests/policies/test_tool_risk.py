"""A tool's risk follows what its calls do, not the name it was registered under: a tool
on a built-in is at least as risky as the built-in (registration refuses less), policies
see that risk at decision time (rows stored lower before the check included), and the demo
grants no route to a refund without approval."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from agents.models import Agent, Tool, ToolGrant
from agents.services.tools import tool_create, tool_update
from agents.tools.builtin import BUILTINS, effective_risk
from controlplane import context
from tests.agents.registry_factories import make_tool

TOOLS_URL = "/api/v1/t/acme/tools/"


def _ticket_update_body(**extra):
    return {"slug": "ticket-update", "name": "Update ticket", "kind": "builtin", **extra}


class TestRegistration:
    def test_ticket_update_registered_as_write_is_refused_with_the_reason(self, world, api):
        client = api(world.alice, world.acme)
        response = client.post(
            TOOLS_URL, _ticket_update_body(builtin="ticket_update", risk="write"), format="json"
        )
        assert response.status_code == 400, response.content
        message = json.dumps(response.json())
        assert "at least 'destructive'" in message and "resolve or close" in message
        assert not Tool.objects.for_tenant(world.acme).filter(slug="ticket-update").exists()

    def test_without_a_risk_it_is_registered_destructive_and_shown_so(self, world, api):
        client = api(world.alice, world.acme)
        response = client.post(
            TOOLS_URL, _ticket_update_body(builtin="ticket_update"), format="json"
        )
        assert response.status_code == 201, response.content
        assert response.json()["risk"] == "destructive"
        assert Tool.objects.for_tenant(world.acme).get(slug="ticket-update").risk == "destructive"

    def test_lowering_an_existing_tools_risk_is_refused(self, world, api):
        make_tool(world.acme, slug="ticket-update", builtin="ticket_update")
        client = api(world.alice, world.acme)
        response = client.patch(f"{TOOLS_URL}ticket-update/", {"risk": "read"}, format="json")
        assert response.status_code == 400
        assert "risk" in response.json()["errors"] or "risk" in json.dumps(response.json())

    def test_a_risk_may_be_raised(self, world):
        tool = make_tool(world.acme, slug="calc", builtin="calculator", risk="destructive")
        assert tool.risk == "destructive"

    def test_switching_to_a_riskier_builtin_raises_the_risk(self, world):
        tool = make_tool(world.acme, slug="notes", builtin="calculator")
        with context.system_context("tests", tenant=world.acme):
            tool = tool_update(tool=tool, builtin="ticket_update")
        assert tool.risk == "destructive"

    def test_an_older_row_stored_below_the_floor_is_shown_at_the_floor(self, world, api):
        tool = make_tool(world.acme, slug="ticket-update", builtin="ticket_update")
        Tool.objects.for_tenant(world.acme).filter(pk=tool.pk).update(risk="write")
        client = api(world.alice, world.acme)
        assert client.get(f"{TOOLS_URL}ticket-update/").json()["risk"] == "destructive"

    def test_every_builtin_floor_is_a_known_risk(self):
        for spec in BUILTINS.values():
            assert effective_risk(kind="builtin", builtin=spec.name, risk="read") == spec.risk


@pytest.mark.django_db
def test_the_demo_grants_no_tool_that_reaches_a_refund_without_approval(settings, tmp_path):
    """Every granted tool of the seeded demo: a built-in that can resolve a ticket (refund)
    is destructive, and the default policy holds an agent's destructive calls."""
    from controlplane.tenancy.models import Tenant
    from policies.decision import PolicyRequest, decide, policy_set_for

    settings.DATA_DIR = tmp_path
    call_command("seed_demo")
    acme = Tenant.objects.get(slug="acme")
    policies = policy_set_for(acme)
    with context.tenant_context(acme):
        granted = {g.tool for g in ToolGrant.objects.select_related("tool")}
        assert granted
        for tool in granted:
            risk = effective_risk(kind=tool.kind, builtin=tool.builtin, risk=tool.risk)
            assert risk == tool.risk  # stored as the policies see it
            if tool.builtin == "ticket_update":
                assert risk == "destructive"
                request = PolicyRequest(
                    tenant_id=acme.pk,
                    action="call_tool",
                    agent=Agent.objects.filter(tags__contains=["billing"]).first().slug,
                    tool=tool.slug,
                    risk=risk,
                    arguments={"number": 1, "status": "resolved", "note": "Refund"},
                )
                assert decide(request, policies).effect == "require_approval"
        # the only built-ins that can reach a refund are ticket_update based
        assert {t.builtin for t in granted} <= {
            "kb_search",
            "ticket_create",
            "ticket_update",
            "calculator",
            "http_request",
        }


def test_registering_a_builtin_below_its_floor_raises_a_field_error(world):
    with pytest.raises(ValidationError) as info, context.system_context("t", tenant=world.acme):
        tool_create(
            tenant=world.acme,
            slug="status",
            name="Status",
            kind="builtin",
            builtin="http_request",
            allowed_hosts=["status.example.com"],
            risk="read",
        )
    assert "risk" in info.value.message_dict

"""Every agent invocation passes the policy decision point, whatever the agent's kind.

On a real worker (PostgreSQL, Redis, Celery): a policy that denies ``invoke_agent`` for a
rules router, a human agent, an http agent or an llm agent stops the step before the agent
does anything, the step fails with ``policy_denied``, and the decision is in the run's
timeline as a ``policy.decision`` event and in the decision log.
"""

from __future__ import annotations

import pytest

from controlplane import context
from policies import services as policies
from policies.models import PolicyDecision
from runs.approvals.models import ApprovalRequest
from runs.models import RunEvent
from tests.agents.registry_factories import make_agent, make_provider
from tests.runs.conftest import wait_for_run
from tests.runs.loopback import Loopback
from tests.runs.test_engine import _start, _steps, _workflow


@pytest.fixture
def acme(world):
    with context.tenant_context(world.acme):
        make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
        yield world


@pytest.fixture
def loopback():
    server = Loopback()
    yield server
    server.close()


def _deny_invoking(world, slug):
    with context.system_context("tests", tenant=world.acme):
        policies.policy_create(
            tenant=world.acme,
            slug="no-agent",
            name="no-agent",
            definition={
                "rules": [
                    {
                        "id": "frozen",
                        "effect": "deny",
                        "actions": ["invoke_agent"],
                        "agents": [slug],
                    }
                ]
            },
        )


def _router(world):
    make_agent(world.acme, slug="answerer")
    make_agent(
        world.acme,
        slug="support-triage",
        kind="router",
        config={
            "mode": "rules",
            "default_route": "done",
            "rules": [{"when": {"path": "input.message", "op": "exists"}, "route": "done"}],
        },
    )
    return [
        {
            "id": "triage",
            "type": "router",
            "agent": "support-triage",
            "routes": {"done": ["answer"]},
        },
        {"id": "answer", "type": "agent", "agent": "answerer", "needs": ["triage"]},
    ]


def _human(world):
    make_agent(world.acme, slug="support-triage", kind="human", config={"instructions": "Pick one"})
    return [{"id": "triage", "type": "agent", "agent": "support-triage"}]


def _http(world, loopback):
    loopback.script["/agent"] = [(200, {"output": "answered"}, 0)]
    make_agent(
        world.acme,
        slug="support-triage",
        kind="http",
        config={"url": loopback.url("/agent"), "timeout_seconds": 5},
    )
    return [{"id": "triage", "type": "agent", "agent": "support-triage"}]


def _llm(world):
    make_agent(world.acme, slug="support-triage")
    return [{"id": "triage", "type": "agent", "agent": "support-triage"}]


@pytest.mark.parametrize("kind", ["router", "human", "http", "llm"])
def test_denying_invoke_agent_stops_every_kind(acme, worker, loopback, kind):
    world = acme
    steps = {
        "router": lambda: _router(world),
        "human": lambda: _human(world),
        "http": lambda: _http(world, loopback),
        "llm": lambda: _llm(world),
    }[kind]()
    _deny_invoking(world, "support-triage")
    run = wait_for_run(_start(world, _workflow(world, f"wf-{kind}", steps)))

    assert run.status == "failed", run.status_reason
    triage = _steps(run)["triage"]
    assert triage.status == "failed"
    assert triage.error["code"] == "policy_denied"
    assert "denied invoking agent 'support-triage'" in triage.error["message"]
    (decision,) = [
        e.payload for e in RunEvent.objects.unscoped().filter(run_id=run.pk, type="policy.decision")
    ]
    assert decision["action"] == "invoke_agent"
    assert decision["agent"] == "support-triage"
    assert (decision["effect"], decision["rule"]) == ("deny", "frozen")
    stored = PolicyDecision.objects.for_tenant(world.acme).filter(run_id=run.pk)
    assert list(stored.values_list("action", "effect")) == [("invoke_agent", "deny")]
    # the agent did nothing: no answer asked of a person, no request sent, no model called
    assert not ApprovalRequest.objects.for_tenant(world.acme).filter(run=run).exists()
    assert loopback.ledger == []
    assert not RunEvent.objects.unscoped().filter(run_id=run.pk, type="model.call").exists()


def test_an_allowed_rules_router_records_its_decision(acme, worker, loopback):
    world = acme
    run = wait_for_run(_start(world, _workflow(world, "wf-allowed", _router(world))))

    assert run.status == "succeeded", run.status_reason
    invocations = [
        (e.step_key, e.payload["agent"], e.payload["effect"])
        for e in RunEvent.objects.unscoped()
        .filter(run_id=run.pk, type="policy.decision", payload__action="invoke_agent")
        .order_by("seq")
    ]
    assert invocations == [("triage", "support-triage", "allow"), ("answer", "answerer", "allow")]

"""Token budgets around model calls in real runs (PostgreSQL, Redis, a real Celery worker):
the pre-call estimate is the request's size, not the agent's whole max_tokens (issue 12,
item 8), and a soft limit is asked about as soon as the reconciled spend crosses it, even
by the run's last call (item 7)."""

from __future__ import annotations

import json

import pytest

from agents.providers.base import Message, ToolSpec
from controlplane import context
from policies import services as policies
from runs.approvals.models import ApprovalRequest
from runs.execution.conversation import estimate_input_tokens
from runs.models import RunEvent
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.runs.conftest import wait_for_run
from tests.runs.test_engine import _approval, _decide, _start, _steps, _workflow


@pytest.fixture
def acme(world):
    with context.tenant_context(world.acme):
        make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
        yield world


def _budget(world, run_budget):
    with context.system_context("tests", tenant=world.acme):
        policies.policy_create(
            tenant=world.acme,
            slug="budget",
            name="Budget",
            definition={"budgets": {"run": run_budget}},
        )


def _calculating_workflow(world, *, max_tokens=2000):
    """One llm step of two model calls (a calculator call, then the answer); the agent asks
    for up to ``max_tokens`` output tokens, as the dashboard's form suggests 1,024."""
    tool = make_tool(world.acme, slug="calc", builtin="calculator")
    with context.system_context("tests", tenant=world.acme):
        from agents.services.tools import tool_grant_create

        tool_grant_create(tool=tool, agent_tag="maths")
    make_agent(
        world.acme,
        slug="counter",
        tags=["maths"],
        config={
            "provider": "sim",
            "model": "sim-1",
            "max_tokens": max_tokens,
            "system_prompt": "SIMULATE call calc " + json.dumps({"expression": "6*7"}),
        },
    )
    return _workflow(world, "count", [{"id": "count", "type": "agent", "agent": "counter"}])


def _model_calls(run):
    return [
        e.payload
        for e in RunEvent.objects.unscoped()
        .filter(run_id=run.pk, type="model.call")
        .order_by("seq")
    ]


def _tokens(call):
    return call["input_tokens"] + call["output_tokens"]


class TestEstimate:
    def test_the_estimate_is_the_request_size(self):
        messages = [Message("system", "x" * 400), Message("user", "y" * 400)]
        tools = [ToolSpec("calc", "Calculate", {"type": "object"})]
        estimate = estimate_input_tokens(messages, tools)
        assert 200 <= estimate <= 260  # 800 characters of text, plus the JSON around it

    def test_a_run_far_inside_its_budget_runs_to_completion(self, acme, worker):
        world = acme
        _budget(world, {"tokens": 1500})
        run = wait_for_run(_start(world, _calculating_workflow(world)))
        assert run.status == "succeeded", run.status_reason
        calls = _model_calls(run)
        used = sum(_tokens(c) for c in calls)
        assert len(calls) == 2 and used == run.input_tokens + run.output_tokens
        # before: the first call alone reserved max_tokens (2,000) and the run was stopped
        assert used < 1500 - 2000 // 2

    def test_a_budget_the_calls_really_exceed_still_stops_the_run(self, acme, worker):
        world = acme
        workflow = _calculating_workflow(world)
        # what the first run's calls use, measured without a budget
        measured = wait_for_run(_start(world, workflow))
        first, second = (_tokens(c) for c in _model_calls(measured))
        _budget(world, {"tokens": first + second - 1})
        run = wait_for_run(_start(world, workflow))
        assert run.status == "failed"
        assert _steps(run)["count"].error["code"] == "budget_exceeded"
        assert "Budget exceeded: run" in run.status_reason
        # refused before a call that would have gone past it was sent
        assert sum(_tokens(c) for c in _model_calls(run)) <= first + second - 1


class TestSoftLimitAfterTheCall:
    def test_a_call_that_crosses_a_soft_limit_is_asked_about_at_once(self, acme, worker):
        world = acme
        # short words: the provider counts more tokens than the 4-characters estimate, so
        # the estimate passes the soft limit and the actual usage crosses it
        make_agent(
            world.acme,
            slug="talker",
            config={
                "provider": "sim",
                "model": "sim-1",
                "max_tokens": 1,
                "system_prompt": " ".join(["a"] * 300),
            },
        )
        workflow = _workflow(world, "talk", [{"id": "talk", "type": "agent", "agent": "talker"}])
        _budget(world, {"soft_tokens": 300})
        run = _start(world, workflow)
        approval = _approval(run)
        assert approval.rule == f"budget:run:{run.pk}:tokens"
        assert "has reached" in approval.title and "past its soft limit of 300 tokens" in (
            approval.title
        )
        waiting = wait_for_run(run, statuses=("waiting",))
        calls = _model_calls(waiting)
        assert len(calls) == 1 and _tokens(calls[0]) > 300  # the call that crossed it is shown
        assert _steps(waiting)["talk"].status == "waiting"

        _decide(world, approval, approve=True)
        run = wait_for_run(run)
        assert run.status == "succeeded", run.status_reason
        assert ApprovalRequest.objects.for_tenant(world.acme).filter(run=run).count() == 1

    def test_denying_it_fails_the_run(self, acme, worker):
        world = acme
        make_agent(
            world.acme,
            slug="talker",
            config={
                "provider": "sim",
                "model": "sim-1",
                "max_tokens": 1,
                "system_prompt": " ".join(["a"] * 300),
            },
        )
        workflow = _workflow(world, "talk", [{"id": "talk", "type": "agent", "agent": "talker"}])
        _budget(world, {"soft_tokens": 300})
        run = _start(world, workflow)
        _decide(world, _approval(run), approve=False, comment="too expensive")
        run = wait_for_run(run)
        assert run.status == "failed"
        assert _steps(run)["talk"].error["code"] == "budget_exceeded"
        assert "alice refused to go past it" in run.status_reason
        assert ApprovalRequest.objects.for_tenant(world.acme).filter(run=run).count() == 1

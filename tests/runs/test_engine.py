"""Every orchestration pattern end to end on PostgreSQL + Redis + a real Celery worker."""

from __future__ import annotations

import pytest

from agents.models import Ticket, Tool
from agents.services.tools import tool_create, tool_grant_create
from controlplane import context
from runs import services, workflow_services
from runs.approvals.models import ApprovalRequest
from runs.approvals.services import approval_decide
from runs.models import Run, RunEvent, StepRun
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.runs.conftest import wait_for_run
from tests.runs.loopback import Loopback

SIMPLE_SCHEMA = {"type": "object", "properties": {"message": {"type": "string"}}}


@pytest.fixture
def loopback():
    server = Loopback()
    yield server
    server.close()


@pytest.fixture
def acme(world):
    with context.tenant_context(world.acme):
        make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
        yield world


def _agent(tenant, slug, prompt="You help.", **config):
    return make_agent(
        tenant,
        slug=slug,
        config={"provider": "sim", "model": "sim-1", "system_prompt": prompt, **config},
    )


def _workflow(world, slug, steps, **extra):
    with context.system_context("tests", tenant=world.acme):
        return workflow_services.workflow_create(
            tenant=world.acme,
            slug=slug,
            name=slug,
            definition={
                "input_schema": SIMPLE_SCHEMA,
                "example_input": {"message": "hi"},
                "steps": steps,
                **extra,
            },
        )


def _start(world, workflow, input=None, **kwargs):
    with context.system_context("tests", tenant=world.acme):
        run, _ = services.run_start(
            tenant=world.acme,
            workflow=workflow,
            input=input if input is not None else {"message": "hello"},
            **kwargs,
        )
        return run


def _steps(run):
    return {s.step_key: s for s in StepRun.objects.unscoped().filter(run_id=run.pk)}


def _events(run):
    return list(RunEvent.objects.unscoped().filter(run_id=run.pk).order_by("seq"))


def _approval(run, timeout=30):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        approval = (
            ApprovalRequest.objects.unscoped().filter(run_id=run.pk, status="pending").first()
        )
        if approval:
            return approval
        time.sleep(0.1)
    raise AssertionError("no pending approval")


def _decide(world, approval, approve=True, **kwargs):
    from controlplane.rbac.access import resolve_access

    access = resolve_access(user=world.alice, tenant_slug="acme")
    with context.using(tenant=world.acme, user=world.alice):
        return approval_decide(
            approval=approval, approve=approve, user=world.alice, access=access, **kwargs
        )


class TestPatterns:
    def test_pipeline_of_tools_and_an_agent(self, acme, worker):
        world = acme
        make_tool(world.acme, slug="calc")
        _agent(world.acme, "writer")
        wf = _workflow(
            world,
            "pipe",
            [
                {
                    "id": "add",
                    "type": "tool",
                    "tool": "calc",
                    "arguments": {"expression": "40 + 2"},
                },
                {
                    "id": "write",
                    "type": "agent",
                    "agent": "writer",
                    "input": "The answer is {{ steps.add.output.result }}",
                },
            ],
            output={"sum": "{{ steps.add.output.result }}", "text": "{{ steps.write.output }}"},
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "succeeded", run.status_reason
        assert run.output["sum"] == 42
        assert "simulated" in run.output["text"]
        events = _events(run)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        types = [e.type for e in events]
        assert types[0] == "run.created" and types[-1] == "run.succeeded"
        assert {"tool.call", "model.call", "policy.decision"} <= set(types)
        assert _steps(run)["write"].agent_version.number == 1
        # the run's outcome is the worker's doing in the audit log, not "anonymous"
        from controlplane.audit.models import AuditEvent

        outcome = AuditEvent.objects.get(tenant=world.acme, action="run.succeeded")
        assert outcome.actor_type == "system"
        assert outcome.actor_name.startswith("system:worker:")

    def test_router_takes_one_branch_and_joins(self, acme, worker):
        world = acme
        for slug in ("billing", "technical", "summary"):
            _agent(world.acme, slug)
        make_agent(
            world.acme,
            slug="triage",
            kind="router",
            config={
                "mode": "rules",
                "default_route": "technical",
                "rules": [
                    {
                        "when": {"path": "input.message", "op": "matches", "value": "(?i)refund"},
                        "route": "billing",
                    }
                ],
            },
        )
        wf = _workflow(
            world,
            "support",
            [
                {
                    "id": "triage",
                    "type": "router",
                    "agent": "triage",
                    "input": "{{ input }}",
                    "routes": {"billing": ["billing"], "technical": ["technical"]},
                },
                {"id": "billing", "type": "agent", "agent": "billing", "needs": ["triage"]},
                {"id": "technical", "type": "agent", "agent": "technical", "needs": ["triage"]},
                {
                    "id": "summary",
                    "type": "agent",
                    "agent": "summary",
                    "needs": ["billing", "technical"],
                },
            ],
        )
        run = wait_for_run(_start(world, wf, {"message": "I want a refund"}))
        assert run.status == "succeeded", run.status_reason
        steps = _steps(run)
        assert steps["triage"].output == {"route": "billing"}
        assert steps["billing"].status == "succeeded"
        assert steps["technical"].status == "skipped"
        assert steps["summary"].status == "succeeded"

    def test_parallel_fan_out_and_merge(self, acme, worker):
        world = acme
        _agent(world.acme, "researcher")
        wf = _workflow(
            world,
            "research",
            [
                {
                    "id": "fan",
                    "type": "parallel",
                    "merge": "object",
                    "branches": [
                        {"name": "shipping", "agent": "researcher", "input": "shipping times"},
                        {"name": "refunds", "agent": "researcher", "input": "refund policy"},
                    ],
                },
                {
                    "id": "each",
                    "type": "parallel",
                    "agent": "researcher",
                    "merge": "list",
                    "for_each": "{{ input.topics }}",
                    "input": "about {{ item }}",
                    "needs": [],
                },
            ],
        )
        run = wait_for_run(_start(world, wf, {"message": "x", "topics": ["a", "b", "c"]}))
        assert run.status == "succeeded", run.status_reason
        steps = _steps(run)
        assert set(steps["fan"].output) == {"shipping", "refunds"}
        assert len(steps["each"].output) == 3 and "about b" in steps["each"].output[1]

    def test_loop_stops_on_its_condition(self, acme, worker):
        world = acme
        _agent(world.acme, "drafter")
        wf = _workflow(
            world,
            "loop",
            [
                {
                    "id": "draft",
                    "type": "loop",
                    "agent": "drafter",
                    "max_iterations": 5,
                    "input": "iteration {{ iteration }} after {{ previous | default('nothing') }}",
                    "until": {"path": "iteration", "op": "gte", "value": 3},
                },
            ],
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "succeeded", run.status_reason
        output = _steps(run)["draft"].output
        assert output["iterations"] == 3 and output["stopped_by"] == "condition"

    def test_approval_approved_then_denied(self, acme, worker):
        world = acme
        make_tool(world.acme, slug="calc")
        wf = _workflow(
            world,
            "approve",
            [
                {
                    "id": "ask",
                    "type": "approval",
                    "title": "Refund {{ input.message }}?",
                    "approvers": "admin",
                },
                {"id": "after", "type": "tool", "tool": "calc", "arguments": {"expression": "1+1"}},
            ],
        )
        run = _start(world, wf)
        approval = _approval(run)
        assert approval.title == "Refund hello?"
        assert wait_for_run(run, {"waiting"}).status == "waiting"
        _decide(world, approval, comment="fine")
        run = wait_for_run(run)
        assert run.status == "succeeded"
        assert _steps(run)["ask"].output["approved"] is True
        denied = _start(world, wf)
        _decide(world, _approval(denied), approve=False, comment="too much")
        denied = wait_for_run(denied)
        assert denied.status == "failed" and "too much" in denied.status_reason

    def test_human_agent_answers(self, acme, worker):
        world = acme
        make_agent(
            world.acme,
            slug="person",
            kind="human",
            config={
                "instructions": "Pick a colour",
                "response_schema": {
                    "type": "object",
                    "required": ["colour"],
                    "properties": {"colour": {"type": "string"}},
                },
            },
        )
        wf = _workflow(world, "human", [{"id": "ask", "type": "agent", "agent": "person"}])
        run = _start(world, wf)
        approval = _approval(run)
        from django.core.exceptions import ValidationError

        with pytest.raises(ValidationError):
            _decide(world, approval, response={"color": "red"})
        _decide(world, approval, response={"colour": "red"})
        run = wait_for_run(run)
        assert run.status == "succeeded"
        assert _steps(run)["ask"].output == {"colour": "red"}


class TestErrorHandling:
    def _http_tool(self, world, loopback, slug="flaky", path="/flaky"):
        with context.system_context("tests", tenant=world.acme):
            return tool_create(
                tenant=world.acme,
                slug=slug,
                name=slug,
                kind="http",
                url=loopback.url(path),
                method="POST",
                allowed_hosts=[loopback.host],
            )

    def test_retry_with_backoff_then_success(self, acme, worker, loopback):
        world = acme
        loopback.script["/flaky"] = [(500, {"e": 1}, 0), (500, {"e": 2}, 0), (200, {"ok": 1}, 0)]
        self._http_tool(world, loopback)
        wf = _workflow(
            world,
            "retry",
            [
                {
                    "id": "call",
                    "type": "tool",
                    "tool": "flaky",
                    "arguments": {},
                    "retry": {"attempts": 3, "backoff_seconds": 0.1, "jitter": False},
                }
            ],
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "succeeded", run.status_reason
        assert _steps(run)["call"].attempt == 3
        assert [e.type for e in _events(run)].count("step.retrying") == 2
        assert len(loopback.calls("/flaky")) == 3

    def test_fallback_agent_after_failure(self, acme, worker, loopback):
        world = acme
        loopback.script["/agent"] = [(400, {"error": "bad input"}, 0)]
        make_agent(
            world.acme,
            slug="external",
            kind="http",
            config={"url": loopback.url("/agent"), "timeout_seconds": 5},
        )
        _agent(world.acme, "backup")
        wf = _workflow(
            world,
            "fallback",
            [
                {
                    "id": "answer",
                    "type": "agent",
                    "agent": "external",
                    "on_error": {"fallback": "backup"},
                }
            ],
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "succeeded", run.status_reason
        step = _steps(run)["answer"]
        assert step.state["fallback_agent"] == "backup" and "simulated" in step.output
        assert "step.fallback" in [e.type for e in _events(run)]

    def test_continue_tolerates_a_failure(self, acme, worker, loopback):
        world = acme
        loopback.script["/flaky"] = [(500, {}, 0)]
        self._http_tool(world, loopback)
        make_tool(world.acme, slug="calc")
        wf = _workflow(
            world,
            "continue",
            [
                {
                    "id": "call",
                    "type": "tool",
                    "tool": "flaky",
                    "arguments": {},
                    "on_error": "continue",
                },
                {"id": "next", "type": "tool", "tool": "calc", "arguments": {"expression": "2*3"}},
            ],
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "succeeded"
        steps = _steps(run)
        assert steps["call"].status == "failed" and steps["call"].tolerated
        assert steps["next"].output == {"result": 6}

    def test_escalate_to_a_person(self, acme, worker, loopback):
        world = acme
        loopback.script["/flaky"] = [(500, {}, 0)]
        self._http_tool(world, loopback)
        wf = _workflow(
            world,
            "escalate",
            [
                {
                    "id": "call",
                    "type": "tool",
                    "tool": "flaky",
                    "arguments": {},
                    "on_error": "escalate",
                }
            ],
        )
        run = _start(world, wf)
        approval = _approval(run)
        assert approval.kind == "escalation"
        _decide(world, approval, response={"manual": True})
        run = wait_for_run(run)
        assert run.status == "succeeded"
        assert _steps(run)["call"].output == {"manual": True}

    def test_step_timeout(self, acme, worker, loopback):
        world = acme
        loopback.script["/slow"] = [(200, {"output": "late"}, 5)]
        make_agent(
            world.acme,
            slug="slow",
            kind="http",
            config={"url": loopback.url("/slow"), "timeout_seconds": 30},
        )
        wf = _workflow(
            world,
            "timeout",
            [{"id": "wait", "type": "agent", "agent": "slow", "timeout_seconds": 1}],
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "failed"
        assert _steps(run)["wait"].error["code"] == "timeout"

    def test_cancel_while_waiting(self, acme, worker):
        world = acme
        wf = _workflow(world, "cancel", [{"id": "ask", "type": "approval", "title": "ok?"}])
        run = _start(world, wf)
        approval = _approval(run)
        with context.system_context("tests", tenant=world.acme):
            services.run_cancel(run=run)
        run = wait_for_run(run)
        assert run.status == "cancelled"
        approval.refresh_from_db()
        assert approval.status == "cancelled"

    def test_resume_from_the_failed_step_reuses_outputs(self, acme, worker, loopback):
        world = acme
        make_tool(world.acme, slug="calc")
        loopback.script["/flaky"] = [(500, {}, 0)]
        self._http_tool(world, loopback)
        wf = _workflow(
            world,
            "resume",
            [
                {"id": "first", "type": "tool", "tool": "calc", "arguments": {"expression": "1+1"}},
                {
                    "id": "call",
                    "type": "tool",
                    "tool": "flaky",
                    "arguments": {"n": "{{ steps.first.output.result }}"},
                },
            ],
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "failed"
        first_finished = _steps(run)["first"].finished_at
        loopback.script["/flaky"] = [(200, {"fixed": True}, 0)]
        with context.system_context("tests", tenant=world.acme):
            services.run_resume(run=run)
        run = wait_for_run(run)
        assert run.status == "succeeded", run.status_reason
        steps = _steps(run)
        assert steps["first"].finished_at == first_finished and steps["first"].attempt == 1
        assert steps["call"].output == {"fixed": True}
        assert loopback.calls("/flaky")[-1]["body"] == {"n": 2}

    def test_rerun_with_edited_input(self, acme, worker):
        world = acme
        make_tool(world.acme, slug="calc")
        wf = _workflow(
            world,
            "rerun",
            [
                {
                    "id": "calc",
                    "type": "tool",
                    "tool": "calc",
                    "arguments": {"expression": "{{ input.message }}"},
                }
            ],
        )
        run = wait_for_run(_start(world, wf, {"message": "2+2"}))
        with context.system_context("tests", tenant=world.acme):
            again = services.run_rerun(run=run, input={"message": "3*3"})
        again = wait_for_run(again)
        assert again.rerun_of_id == run.pk and _steps(again)["calc"].output == {"result": 9}


class TestSideEffects:
    def test_idempotency_key_prevents_duplicate_tickets_on_retry(self, acme, worker, loopback):
        world = acme
        make_tool(world.acme, slug="ticket-create", builtin="ticket_create")
        loopback.script["/flaky"] = [(500, {}, 0), (200, {"ok": True}, 0)]
        TestErrorHandling()._http_tool(world, loopback)
        with context.system_context("tests", tenant=world.acme):
            tool_grant_create(tool=Tool.objects.get(slug="ticket-create"), agent_tag="support")
            tool_grant_create(tool=Tool.objects.get(slug="flaky"), agent_tag="support")
        make_agent(
            world.acme,
            slug="agent",
            tags=["support"],
            config={
                "provider": "sim",
                "model": "sim-1",
                "system_prompt": 'SIMULATE call ticket-create {"title": "Refund"}\n'
                "SIMULATE call flaky {}",
            },
        )
        wf = _workflow(
            world,
            "side",
            [
                {
                    "id": "act",
                    "type": "agent",
                    "agent": "agent",
                    "retry": {"attempts": 2, "backoff_seconds": 0.1},
                }
            ],
        )
        run = wait_for_run(_start(world, wf))
        assert run.status == "succeeded", run.status_reason
        assert Ticket.objects.for_tenant(world.acme).count() == 1
        keys = [e.payload.get("idempotency_key") for e in _events(run) if e.type == "tool.call"]
        assert keys and keys[0].endswith("call-0")


def test_idempotent_start_through_the_api(acme, worker, api):
    world = acme
    make_tool(world.acme, slug="calc")
    _workflow(
        world,
        "api",
        [{"id": "c", "type": "tool", "tool": "calc", "arguments": {"expression": "1"}}],
    )
    client = api(world.oscar, world.acme, scope="write")
    first = client.post(
        "/api/v1/t/acme/runs/",
        {"workflow": "api", "input": {"message": "x"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="abc-123",
    )
    second = client.post(
        "/api/v1/t/acme/runs/",
        {"workflow": "api", "input": {"message": "x"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="abc-123",
    )
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert Run.objects.for_tenant(world.acme).count() == 1
    done = wait_for_run(Run.objects.unscoped().get(pk=first.json()["id"]))
    detail = client.get(f"/api/v1/t/acme/runs/{done.pk}/").json()
    assert detail["status"] == "succeeded" and detail["steps"][0]["output"] == {"result": 1}
    events = client.get(f"/api/v1/t/acme/runs/{done.pk}/events/?after=2").json()
    assert events[0]["seq"] == 3


class TestRunLimits:
    def test_cancel_mid_run_stops_a_running_loop(self, acme, worker, loopback):
        world = acme
        loopback.script["/tick"] = [(200, {"output": "tick"}, 0.5)]
        make_agent(
            world.acme,
            slug="ticker",
            kind="http",
            config={"url": loopback.url("/tick"), "timeout_seconds": 5},
        )
        wf = _workflow(
            world, "long", [{"id": "loop", "type": "loop", "agent": "ticker", "max_iterations": 40}]
        )
        run = _start(world, wf)
        import time

        deadline = time.monotonic() + 30
        while len(loopback.calls("/tick")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        with context.system_context("tests", tenant=world.acme):
            services.run_cancel(run=run)
        run = wait_for_run(run)
        assert run.status == "cancelled"
        time.sleep(2)  # the loop notices at its next check and stops calling
        calls = len(loopback.calls("/tick"))
        time.sleep(1.5)
        assert len(loopback.calls("/tick")) == calls < 40
        assert _steps(run)["loop"].status == "cancelled"

    def test_maximum_step_count(self, acme, worker):
        world = acme
        make_tool(world.acme, slug="calc")
        wf = _workflow(
            world,
            "many",
            [
                {"id": f"s{i}", "type": "tool", "tool": "calc", "arguments": {"expression": "1"}}
                for i in range(4)
            ],
        )
        run = wait_for_run(_start(world, wf, max_steps=2))
        assert run.status == "failed"
        assert "maximum of 2 steps" in run.status_reason
        assert len(_steps(run)) == 2

    def test_run_deadline_times_out_a_waiting_run(self, acme, worker):
        import time

        from runs.execution import sweeper

        world = acme
        wf = _workflow(world, "slowpoke", [{"id": "ask", "type": "approval", "title": "ok?"}])
        run = _start(world, wf, deadline_seconds=1)
        approval = _approval(run)
        time.sleep(1.2)
        assert sweeper.sweep()["timed_out"] == 1
        run = wait_for_run(run)
        assert run.status == "timed_out"
        approval.refresh_from_db()
        assert approval.status == "cancelled"

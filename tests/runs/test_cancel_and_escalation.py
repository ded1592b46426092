"""Run-level endings on a real worker: a denied escalation fails the step (once, with the
denier's comment), and a run cancelled while a step waits on a slow HTTP server never
records that step's late success: the cancel closes the step's in-flight HTTP call at once."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controlplane import context
from runs import services
from runs.approvals.models import ApprovalRequest
from runs.models import Run, RunEvent, StepRun
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.runs.conftest import wait_for_run
from tests.runs.loopback import Loopback
from tests.runs.test_engine import _approval, _decide, _events, _start, _steps, _workflow


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


class GatedAgent:
    """An HTTP agent on 127.0.0.1 that answers only once the test opens the gate."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.gate = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.arrived.set()
                outer.gate.wait(60)
                data = json.dumps({"output": "refund sent"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/agent"

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def _wait_step_left_running(step: StepRun, timeout: float = 60) -> StepRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = StepRun.objects.unscoped().get(pk=step.pk)
        if current.status != "running":
            return current
        time.sleep(0.05)
    raise AssertionError(f"step {step.step_key} still running after {timeout}s")


def _escalating_workflow(world, loopback):
    loopback.script["/agent"] = [(503, {"error": "overloaded"}, 0)]
    make_tool(world.acme, slug="calc")
    make_agent(
        world.acme,
        slug="external",
        kind="http",
        config={"url": loopback.url("/agent"), "timeout_seconds": 5},
    )
    return _workflow(
        world,
        "escalating",
        [
            {"id": "call", "type": "agent", "agent": "external", "on_error": "escalate"},
            {"id": "after", "type": "tool", "tool": "calc", "arguments": {"expression": "1+1"}},
        ],
    )


class TestDeniedEscalation:
    def test_denying_an_escalation_fails_the_step_and_the_run_with_the_comment(
        self, acme, worker, loopback
    ):
        world = acme
        wf = _escalating_workflow(world, loopback)
        run = _start(world, wf)
        approval = _approval(run)
        assert approval.kind == "escalation"
        _decide(world, approval, approve=False, comment="the partner API is down for good")
        run = wait_for_run(run)
        assert run.status == "failed"
        assert "the partner API is down for good" in run.status_reason
        step = _steps(run)["call"]
        assert step.status == "failed" and not step.tolerated
        assert "alice denied: the partner API is down for good" in step.error["message"]
        assert "after" not in _steps(run)
        # exactly one escalation: the denial did not open a second one
        assert ApprovalRequest.objects.unscoped().filter(run_id=run.pk).count() == 1
        types = [e.type for e in _events(run)]
        assert types.count("step.escalated") == 1
        assert types[-1] == "run.failed"

    def test_an_escalation_answered_with_an_output_still_continues(self, acme, worker, loopback):
        world = acme
        wf = _escalating_workflow(world, loopback)
        run = _start(world, wf)
        _decide(world, _approval(run), response={"output": "done by hand"})
        run = wait_for_run(run)
        assert run.status == "succeeded"
        assert _steps(run)["call"].output == {"output": "done by hand"}


class TestCancelDuringAStep:
    def test_cancel_aborts_the_steps_http_call_and_the_step_ends_cancelled(self, acme, worker):
        world = acme
        agent = GatedAgent()
        try:
            make_agent(
                world.acme,
                slug="slow",
                kind="http",
                config={"url": agent.url(), "timeout_seconds": 60},
            )
            make_tool(world.acme, slug="calc")
            wf = _workflow(
                world,
                "cancel-mid-step",
                [
                    {"id": "call", "type": "agent", "agent": "slow"},
                    {
                        "id": "after",
                        "type": "tool",
                        "tool": "calc",
                        "arguments": {"expression": "1+1"},
                    },
                ],
            )
            run = _start(world, wf)
            assert agent.arrived.wait(60), "the step never reached the HTTP agent"
            with context.system_context("tests", tenant=world.acme):
                services.run_cancel(run=Run.objects.unscoped().get(pk=run.pk), reason="stop")
            cancelled_at = time.monotonic()
            step = StepRun.objects.unscoped().get(run_id=run.pk, step_key="call")
            # the agent has not answered (its gate is shut): the call itself was aborted
            step = _wait_step_left_running(step, timeout=10)
            assert time.monotonic() - cancelled_at < 5
            assert not agent.gate.is_set()
        finally:
            agent.close()
        run = Run.objects.unscoped().get(pk=run.pk)
        assert run.status == "cancelled" and run.output is None
        assert step.status == "cancelled"
        assert step.output is None
        assert set(_steps(run)) == {"call"}  # no next step was planned
        events = _events(run)
        types = [e.type for e in events]
        assert "step.succeeded" not in types
        assert types[-1] == "step.cancelled"
        assert events[-1].payload["reason"] == "the run is cancelled"
        assert not RunEvent.objects.unscoped().filter(run_id=run.pk, type="run.succeeded")


def test_cancel_aborts_an_http_tool_call_and_the_tool_is_not_reported_broken(acme, worker):
    """A cancelled run's HTTP tool call is closed at once; the step ends cancelled, and the
    tool's call is not recorded as an internal failure of the tool (it was the run that
    stopped). Before: the cancellation went through the tool pipeline's catch-all."""
    from agents.services.tools import tool_create

    world = acme
    slow = Loopback()
    try:
        slow.script["/slow"] = [(200, {"ok": True}, 30)]
        with context.system_context("tests", tenant=world.acme):
            tool_create(
                tenant=world.acme,
                slug="slowhttp",
                name="slowhttp",
                kind="http",
                url=slow.url("/slow"),
                method="POST",
                allowed_hosts=[slow.host],
            )
        wf = _workflow(world, "slow-tool", [{"id": "call", "type": "tool", "tool": "slowhttp"}])
        run = _start(world, wf)
        deadline = time.monotonic() + 30
        while not slow.calls("/slow") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.calls("/slow"), "the step never reached the HTTP tool"
        with context.system_context("tests", tenant=world.acme):
            services.run_cancel(run=Run.objects.unscoped().get(pk=run.pk), reason="stop")
        cancelled_at = time.monotonic()
        step = _wait_step_left_running(
            StepRun.objects.unscoped().get(run_id=run.pk, step_key="call"), timeout=10
        )
        # the tool's server would answer after 30 s: the call itself was aborted
        assert time.monotonic() - cancelled_at < 5
    finally:
        slow.close()
    assert step.status == "cancelled"
    events = _events(run)
    assert not [e for e in events if e.type == "tool.call" and e.payload.get("code")]
    assert "step.succeeded" not in [e.type for e in events]

"""A step's timeout holds whatever the step does (issue 11 item 2), on a real worker.

A pure-Python CPU-bound executor (``tests.runs.cpu_tools.spin``) ends timed out at its
deadline, once: its lease is renewed while it burns CPU (so the sweeper never reclaims it and
it is not run three times), its thread is stopped (not left burning the worker's CPU), and
the same single-process worker then runs the next run.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from agents.tools.builtin import BUILTINS
from controlplane import context
from controlplane.celery import app
from runs import services, workflow_services
from runs.execution import sweeper
from runs.models import RunEvent, StepRun
from tests.agents.registry_factories import make_tool
from tests.processes import Worker
from tests.runs.conftest import wait_for_run
from tests.runs.cpu_tools import SPIN


def _wait(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _workflow(world, slug, step):
    with context.system_context("tests", tenant=world.acme):
        return workflow_services.workflow_create(
            tenant=world.acme,
            slug=slug,
            name=slug,
            definition={"input_schema": {"type": "object"}, "example_input": {}, "steps": [step]},
        )


def _start(world, workflow):
    with context.system_context("tests", tenant=world.acme):
        run, _ = services.run_start(tenant=world.acme, workflow=workflow, input={})
        return run


def _marker(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.django_db(transaction=True)
def test_a_cpu_bound_step_times_out_once_at_its_deadline_and_is_stopped(
    world, tmp_path, monkeypatch
):
    monkeypatch.setitem(BUILTINS, "spin", SPIN)
    queue = f"cpu-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    # a 2 s lease is renewed every second: three missed beats and the sweeper would take it
    worker = Worker(
        queue,
        concurrency=1,
        extra_env={"STEP_LEASE_SECONDS": "2"},
        include=["tests.runs.cpu_tools"],
    )
    try:
        worker.wait_ready()
        marker = tmp_path / "spin"
        with context.tenant_context(world.acme):
            make_tool(world.acme, slug="spin", builtin="spin")
            make_tool(world.acme, slug="calc", builtin="calculator")
            burn = _workflow(
                world,
                "burn",
                {
                    "id": "burn",
                    "type": "tool",
                    "tool": "spin",
                    "arguments": {"marker": str(marker)},
                    "timeout_seconds": 6,
                },
            )
            calc = _workflow(
                world,
                "calc",
                {"id": "add", "type": "tool", "tool": "calc", "arguments": {"expression": "1+2"}},
            )
        run = _start(world, burn)
        _wait(lambda: _marker(marker) == "started", "the step to start burning CPU")
        step = StepRun.objects.unscoped().get(run_id=run.pk)
        first_lease = step.lease_expires_at

        def renewed():
            current = StepRun.objects.unscoped().get(pk=step.pk)
            return current.lease_expires_at is not None and (
                current.lease_expires_at >= first_lease + timedelta(seconds=2)
            )

        _wait(renewed, "the heartbeat to renew the lease during the CPU-bound step")
        assert StepRun.objects.unscoped().get(pk=step.pk).status == "running"
        assert sweeper.sweep()["reclaimed"] == 0  # past the first lease, not past the renewed one

        run = wait_for_run(run)
        step.refresh_from_db()
        assert run.status == "failed", run.status_reason
        assert step.error["code"] == "timeout", step.error
        assert step.error["message"] == "the step timed out after 6 s"
        assert (step.attempt, step.delivery_count) == (1, 1)
        events = RunEvent.objects.unscoped().filter(run_id=run.pk)
        assert not events.filter(type="step.reclaimed").exists()
        assert events.filter(type="step.started").count() == 1
        # the executor thread was interrupted: its finally ran
        _wait(lambda: _marker(marker) == "stopped", "the CPU-bound executor to be stopped")

        # the single worker process is free and well: the next run goes through
        after = wait_for_run(_start(world, calc))
        assert after.status == "succeeded", after.status_reason
        assert StepRun.objects.unscoped().get(run_id=after.pk).output == {"result": 3}
    finally:
        app.conf.task_default_queue = previous
        worker.stop()

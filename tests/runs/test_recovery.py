"""No run is lost: worker killed mid-step, lost dispatch, expired leases, poison steps."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from agents.models import Ticket, Tool
from agents.services.tools import tool_create, tool_grant_create
from controlplane import context
from controlplane.celery import app
from runs import services, workflow_services
from runs.execution import claim, progress, sweeper
from runs.models import RunEvent, StepRun
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.processes import Worker
from tests.runs.conftest import wait_for_run
from tests.runs.loopback import Loopback


@pytest.fixture
def loopback():
    server = Loopback()
    yield server
    server.close()


def _workflow(world, slug, steps):
    with context.system_context("tests", tenant=world.acme):
        return workflow_services.workflow_create(
            tenant=world.acme,
            slug=slug,
            name=slug,
            definition={"input_schema": {"type": "object"}, "example_input": {}, "steps": steps},
        )


def _start(world, workflow):
    with context.system_context("tests", tenant=world.acme):
        run, _ = services.run_start(tenant=world.acme, workflow=workflow, input={})
        return run


def _wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_step_loses_nothing_and_repeats_no_side_effect(world, loopback):
    """SIGKILL the worker while a step waits on a slow tool; another worker finishes the run
    after the sweeper reclaims the lease, and the ticket written before the crash is not
    written twice (idempotency key)."""
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    first = Worker(queue, concurrency=1, extra_env={"STEP_LEASE_SECONDS": "2"})
    second = None
    try:
        first.wait_ready()
        loopback.script["/slow"] = [(200, {"ok": "first"}, 30), (200, {"ok": "second"}, 0)]
        with context.tenant_context(world.acme):
            make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
            make_tool(world.acme, slug="ticket-create", builtin="ticket_create")
            with context.system_context("tests", tenant=world.acme):
                tool_create(
                    tenant=world.acme,
                    slug="slow",
                    name="slow",
                    kind="http",
                    url=loopback.url("/slow"),
                    method="POST",
                    allowed_hosts=[loopback.host],
                    timeout_seconds=60,
                )
                for slug in ("ticket-create", "slow"):
                    tool_grant_create(tool=Tool.objects.get(slug=slug), agent_tag="ops")
            make_agent(
                world.acme,
                slug="ops",
                tags=["ops"],
                config={
                    "provider": "sim",
                    "model": "sim-1",
                    "system_prompt": 'SIMULATE call ticket-create {"title": "Crash test"}\n'
                    "SIMULATE call slow {}",
                },
            )
            wf = _workflow(world, "crash", [{"id": "act", "type": "agent", "agent": "ops"}])
        run = _start(world, wf)
        _wait(lambda: len(loopback.calls("/slow")) == 1, what="the slow call to start")
        assert Ticket.objects.for_tenant(world.acme).count() == 1
        first.kill()
        second = Worker(queue, concurrency=1, extra_env={"STEP_LEASE_SECONDS": "2"})
        second.wait_ready()
        _wait(
            lambda: (
                not StepRun.objects.unscoped()
                .filter(run_id=run.pk, lease_expires_at__gt=timezone.now())
                .exists()
            ),
            what="the lease to expire",
        )
        counts = sweeper.sweep()
        assert counts["reclaimed"] == 1
        run = wait_for_run(run, timeout=60)
        assert run.status == "succeeded", run.status_reason
        assert Ticket.objects.for_tenant(world.acme).count() == 1
        step = StepRun.objects.unscoped().get(run_id=run.pk)
        assert step.delivery_count == 2
        assert RunEvent.objects.unscoped().filter(run_id=run.pk, type="step.reclaimed").exists()
        ticket_calls = [
            e
            for e in RunEvent.objects.unscoped().filter(run_id=run.pk, type="tool.call")
            if e.payload.get("tool") == "ticket-create"
        ]
        assert len(ticket_calls) == 2  # called on both attempts...
        assert ticket_calls[1].payload["result"]["created"] is False  # ...written once
    finally:
        app.conf.task_default_queue = previous
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.django_db(transaction=True)
def test_lost_dispatch_is_redispatched_by_the_sweeper(world, worker, settings):
    with context.tenant_context(world.acme):
        make_tool(world.acme, slug="calc")
        wf = _workflow(
            world,
            "lost",
            [{"id": "c", "type": "tool", "tool": "calc", "arguments": {"expression": "6*7"}}],
        )
    with mock.patch.object(progress, "dispatch"):  # the message never reaches the broker
        run = _start(world, wf)
    step = StepRun.objects.unscoped().get(run_id=run.pk)
    assert step.status == "queued"
    time.sleep(1.0)
    assert StepRun.objects.unscoped().get(pk=step.pk).status == "queued"
    settings.SWEEP_REDISPATCH_AFTER_SECONDS = 0
    assert sweeper.sweep()["redispatched"] == 1
    run = wait_for_run(run)
    assert run.status == "succeeded" and run.output == {"result": 42}


@pytest.mark.django_db
def test_a_step_that_keeps_killing_its_worker_fails_after_its_attempts(world):
    with context.tenant_context(world.acme):
        make_tool(world.acme, slug="calc")
        wf = _workflow(
            world,
            "poison",
            [{"id": "c", "type": "tool", "tool": "calc", "arguments": {"expression": "1"}}],
        )
    with mock.patch.object(progress, "dispatch"):
        run = _start(world, wf)
    step = StepRun.objects.unscoped().get(run_id=run.pk)
    for delivery in range(1, sweeper.CRASH_ATTEMPTS + 1):
        # what a worker dying mid-step leaves behind: running, lease expired
        StepRun.objects.unscoped().filter(pk=step.pk).update(
            status="running",
            delivery_count=delivery,
            attempt=delivery,
            claim_token="x",
            lease_expires_at=timezone.now() - timedelta(seconds=1),
        )
        with mock.patch.object(progress, "dispatch"):
            counts = sweeper.sweep()
        if delivery < sweeper.CRASH_ATTEMPTS:
            assert counts["reclaimed"] == 1
            assert StepRun.objects.unscoped().get(pk=step.pk).status == "queued"
    assert counts["failed"] == 1
    step.refresh_from_db()
    assert step.status == "failed" and step.error["code"] == "worker_lost"
    run.refresh_from_db()
    assert run.status == "failed" and "lost 3 times" in run.status_reason


@pytest.mark.django_db
def test_duplicate_delivery_does_nothing(world):
    with context.tenant_context(world.acme):
        make_tool(world.acme, slug="calc")
        wf = _workflow(
            world,
            "dup",
            [{"id": "c", "type": "tool", "tool": "calc", "arguments": {"expression": "1"}}],
        )
    with mock.patch.object(progress, "dispatch"):
        run = _start(world, wf)
    step = StepRun.objects.unscoped().get(run_id=run.pk)
    assert claim.claim(step.pk, "a") is not None
    assert claim.claim(step.pk, "b") is None  # second delivery: the conditional UPDATE misses

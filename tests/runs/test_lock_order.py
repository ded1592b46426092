"""Cancel, resume and rerun racing running steps on a real worker on PostgreSQL: every
transaction takes the run's row first (then steps, approvals, the audit chain), so no
deadlock kills a step or an operation, and every run ends in a consistent state."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from controlplane import context
from runs import services
from runs.choices import TERMINAL_RUN_STATUSES
from runs.execution import sweeper
from runs.models import Run, RunEvent, StepRun
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.runs.conftest import wait_for_run
from tests.runs.test_engine import _start, _workflow
from tests.runs.test_policy_enforcement import _policy

CALLS = 25  # calculator calls per busy step: each is a decision, an audit row and events
ROUNDS = 5


@pytest.fixture
def acme(world):
    with context.tenant_context(world.acme):
        make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
        yield world


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _wait(predicate, what: str, describe=None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}: {describe() if describe else ''}")


def _running(run: Run, step_key: str | None = None) -> bool:
    steps = StepRun.objects.unscoped().filter(run_id=run.pk, status="running")
    return steps.filter(step_key=step_key).exists() if step_key else steps.exists()


def _status(run: Run) -> str:
    return Run.objects.unscoped().values_list("status", flat=True).get(pk=run.pk)


def _setup(world):
    make_tool(world.acme, slug="calc")
    # log-only: every calculator call is allowed, stored, audited and put in the timeline
    _policy(
        world,
        {"rules": [{"id": "watch", "effect": "deny", "actions": ["call_tool"], "tools": ["calc"]}]},
        slug="watch",
        mode="log_only",
    )
    script = "\n".join(f'SIMULATE call calc {{"expression": "{i} + {i}"}}' for i in range(CALLS))
    make_agent(
        world.acme,
        slug="busy",
        config={"provider": "sim", "model": "sim-1", "system_prompt": script},
    )
    return _workflow(
        world,
        "busy",
        [
            {"id": "first", "type": "agent", "agent": "busy"},
            {"id": "second", "type": "agent", "agent": "busy"},
        ],
    )


def _race(world, operations, errors: list[BaseException]) -> list[Run]:
    """Each (service, run) in its own thread, released at the same moment by a barrier."""
    barrier = threading.Barrier(len(operations))
    results: list[Run] = []

    def call(service, run):
        try:
            barrier.wait(timeout=10)
            with context.system_context("tests", tenant=world.acme):
                results.append(service(run=Run.objects.unscoped().get(pk=run.pk)))
        except ValidationError:
            pass  # the run ended before this operation: refused, as it should be
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=operation) for operation in operations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_cancel_resume_and_rerun_racing_running_steps_never_deadlock(acme, worker):
    world = acme
    busy = _setup(world)
    before = _deadlocks()
    errors: list[BaseException] = []
    runs: list[Run] = []
    for _ in range(ROUNDS):
        timed_out = _start(world, busy)
        _wait(lambda r=timed_out: _running(r), "a running step")
        # time the run out while its step runs (the sweeper's deadline path), to resume it
        Run.objects.unscoped().filter(pk=timed_out.pk).update(deadline=timezone.now())
        sweeper.sweep()
        assert _status(timed_out) == "timed_out"
        executing = _start(world, busy)
        _wait(lambda r=executing: _running(r), "a running step")
        runs += _race(
            world,
            [
                (services.run_cancel, executing),
                (services.run_rerun, executing),
                (services.run_resume, timed_out),
            ],
            errors,
        )
        runs += [timed_out, executing]
    assert not errors, [str(e) for e in errors]
    ids = {run.pk for run in runs}
    for run in runs:
        wait_for_run(run, timeout=120)
    _wait(
        lambda: not StepRun.objects.unscoped().filter(run_id__in=ids, status="running").exists(),
        "late steps to finish",
        timeout=120,
    )
    crashed = [
        (e.run_id, e.type, e.payload)
        for e in RunEvent.objects.unscoped().filter(run_id__in=ids)
        if "deadlock" in str(e.payload).lower() or "internal error" in str(e.payload).lower()
    ]
    assert not crashed, crashed
    for run in Run.objects.unscoped().filter(pk__in=ids):
        assert run.status in TERMINAL_RUN_STATUSES
        steps = StepRun.objects.unscoped().filter(run_id=run.pk)
        assert not steps.filter(status__in=["queued", "running", "waiting"]).exists()
        if run.status == "cancelled":
            assert not steps.filter(status="succeeded", finished_at__gt=run.finished_at).exists()
        if run.status == "succeeded":
            assert set(steps.values_list("status", flat=True)) <= {"succeeded", "skipped"}
    assert _deadlocks() == before

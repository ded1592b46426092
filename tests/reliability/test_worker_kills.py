"""Workers SIGKILLed under load lose no run and repeat no keyed side effect; a step that
kills its worker every time fails after its attempts instead of being requeued forever."""

from __future__ import annotations

import io
import os
import random
import signal
import time
from collections import Counter
from datetime import datetime

import pytest
from django.core.management import call_command

from agents.services.tools import tool_create
from controlplane import context
from runs.execution.sweeper import CRASH_ATTEMPTS
from runs.models import Run, StepRun
from tests.reliability.faults import ARTIFACTS, children_of, parent_pid, pid_of_client, wait_until
from tests.reliability.scenario import (
    LEDGER_PATH,
    check_exactly_once,
    delivery_figures,
    explain,
    ledger_definition,
    make_tools,
    make_workflow,
    start_runs,
    statuses,
    wait_terminal,
)

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

RUNS = 100
STEPS = 5
WORKERS = 3  # live at any time; each with 2 pool processes
# The runs finish in some 15 s now: a kill every second keeps at least 8 landing in that time.
KILL_EVERY_SECONDS = 1.0
# A step is failed once its worker was lost max(CRASH_ATTEMPTS, retry.attempts) times. At this
# kill rate a step is hit on some 5% of its deliveries (more on a loaded machine), so with
# the default 3 one of 500 steps is now and then hit three times in a row, and legitimately
# fails; 5 keeps this test about losing runs, not about that limit (tested below).
CRASH_TOLERANCE = 5


def test_sigkilled_workers_lose_no_run_and_repeat_no_side_effect(world, cluster, ledger, figures):
    """100 concurrent 5-step runs (tickets and keyed HTTP calls) while a worker process is
    SIGKILLed every second: every third kill a whole worker (main process and its pool at once,
    replaced by a new worker, which takes seconds to boot), the others one pool process
    (replaced by its main process). Beat runs the sweeper every second. Every run succeeds,
    every step's side effect happened exactly once, the audit chains verify."""
    ledger.delays[LEDGER_PATH] = 0.1
    make_tools(world, ledger)
    workflow = make_workflow(
        world, "kill-load", ledger_definition(STEPS, retry_attempts=CRASH_TOLERANCE)
    )
    cluster.redispatch_after_seconds = 3
    fleet = [cluster.start_worker(wait=False) for _ in range(WORKERS)]
    for worker in fleet:
        worker.wait_ready()
    cluster.start_beat()

    rng = random.Random(20240607)
    kills: Counter = Counter()
    kill_log: list[str] = []
    killed: list = []
    died: list[str] = []
    next_kill = time.monotonic() + 1.0

    def ready(worker) -> bool:
        return worker.process.poll() is None and b"ready." in worker.log.read_bytes()

    def kill_something() -> None:
        nonlocal next_kill
        if time.monotonic() < next_kill:
            return
        next_kill = time.monotonic() + KILL_EVERY_SECONDS
        for worker in [w for w in fleet if w.process.poll() is not None]:
            # none should die unasked; if one does, keep the fleet and say so in the figures
            fleet.remove(worker)
            fleet.append(cluster.start_worker(wait=False))
            died.append(worker.log.name)
        candidates = [w for w in fleet if ready(w)]
        if not candidates:
            return
        victim = rng.choice(candidates)
        if sum(kills.values()) % 3 == 0:
            pids = [victim.process.pid, *children_of(victim.process.pid)]
            victim.kill(signal.SIGKILL)  # the main process and its pool, at once
            fleet.remove(victim)
            fleet.append(cluster.start_worker(wait=False))
            killed.append(victim)
            kills["whole_worker"] += 1
            kill_log.append(f"{datetime.now():%H:%M:%S.%f} worker {pids} {victim.log.name}")
        else:
            pool = children_of(victim.process.pid)
            if pool:
                pid = rng.choice(pool)
                os.kill(pid, signal.SIGKILL)
                kills["pool_process"] += 1
                kill_log.append(f"{datetime.now():%H:%M:%S.%f} pool {pid} {victim.log.name}")

    started = time.monotonic()
    run_ids = start_runs(world, workflow, RUNS)
    try:
        elapsed = wait_terminal(run_ids, timeout=300, on_tick=kill_something)
    finally:
        (ARTIFACTS / "reliability-kills.log").write_text("\n".join(kill_log) + "\n")
    total = time.monotonic() - started

    assert statuses(run_ids) == {"succeeded": RUNS}, explain(run_ids)
    assert StepRun.objects.unscoped().filter(run_id__in=run_ids, status="succeeded").count() == (
        RUNS * STEPS
    )
    once = check_exactly_once(world, run_ids, ledger, STEPS)
    deliveries = delivery_figures(run_ids)
    out = io.StringIO()
    call_command("audit_verify", stdout=out)  # raises CommandError on a broken chain
    assert "OK:" in out.getvalue()

    assert sum(kills.values()) >= 8, kills
    assert deliveries["steps_reclaimed_after_lost_worker"] >= 1  # kills did land mid-step
    max_deliveries = max(
        StepRun.objects.unscoped()
        .filter(run_id__in=run_ids)
        .values_list("delivery_count", flat=True)
    )
    durations = [
        (r.finished_at - r.created_at).total_seconds()
        for r in Run.objects.unscoped().filter(pk__in=run_ids)
    ]
    figures.update(
        runs=RUNS,
        steps_per_run=STEPS,
        runs_succeeded=RUNS,
        kills_total=sum(kills.values()),
        kills_whole_worker=kills["whole_worker"],
        kills_pool_process=kills["pool_process"],
        kill_interval_s=KILL_EVERY_SECONDS,
        crash_tolerance_per_step=CRASH_TOLERANCE,
        max_deliveries_of_one_step=max_deliveries,
        lease_s=cluster.lease_seconds,
        sweep_interval_s=cluster.sweep_interval_seconds,
        redispatch_after_s=cluster.redispatch_after_seconds,
        workers_died_unasked=len(died),
        seconds_to_finish_all=round(total, 1),
        seconds_waiting_after_start=round(elapsed, 1),
        max_run_duration_s=round(max(durations), 1),
        duplicate_side_effects=0,
        audit_verify="OK",
        **once,
        **deliveries,
    )
    for worker in killed:  # their logs only matter when the test fails
        worker.stop()
        worker.log.unlink(missing_ok=True)


def test_a_step_that_kills_its_worker_every_time_fails_after_its_attempts(
    world, cluster, ledger, figures
):
    """The step's HTTP call makes the loopback server SIGKILL the pool process that sent it,
    on every delivery. The step fails with worker_lost after CRASH_ATTEMPTS deliveries (or its
    retry attempts when more), within a bounded time; afterwards nothing redelivers it and
    the worker goes on running other steps."""
    worker = cluster.start_worker(concurrency=1)
    cluster.start_beat()
    killed: list[int] = []
    problems: list[str] = []

    last_kill = [0.0]
    died_with_sibling: list[int] = []

    def kill_the_caller(entry) -> bool:
        pid = pid_of_client(entry.client_port, ledger.port)
        if pid is None and time.monotonic() - last_kill[0] < 5:
            # A pool process runs many steps at once: both poison steps were in the one
            # just killed, and this request's sender died with it.
            died_with_sibling.append(entry.client_port)
            return False
        if pid is None or parent_pid(pid) != worker.process.pid:
            problems.append(f"request from pid {pid}, not a pool process of the worker")
            return False
        killed.append(pid)
        last_kill[0] = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        return False

    ledger.hooks["/poison"] = kill_the_caller
    make_tools(world, ledger)
    with context.system_context("tests", tenant=world.acme):
        tool_create(
            tenant=world.acme,
            slug="poison",
            name="poison",
            kind="http",
            url=ledger.url("/poison"),
            method="POST",
            allowed_hosts=[ledger.host],
        )
    plain = make_workflow(
        world,
        "poison",
        {
            "input_schema": {"type": "object"},
            "example_input": {},
            "steps": [{"id": "boom", "type": "tool", "tool": "poison", "arguments": {"r": 1}}],
        },
    )
    retried = make_workflow(
        world,
        "poison-retried",
        {
            "input_schema": {"type": "object"},
            "example_input": {},
            "steps": [
                {
                    "id": "boom",
                    "type": "tool",
                    "tool": "poison",
                    "arguments": {"r": 4},
                    "retry": {"attempts": 4, "backoff_seconds": 0.1},
                }
            ],
        },
    )
    started = time.monotonic()
    [plain_run] = start_runs(world, plain, 1)
    [retried_run] = start_runs(world, retried, 1)
    # each delivery: the pool process dies at once, the lease expires, the sweeper requeues
    per_delivery = cluster.lease_seconds + cluster.sweep_interval_seconds + 3
    bound = 4 * per_delivery + 10
    elapsed = wait_terminal([plain_run, retried_run], timeout=bound)
    assert not problems, problems

    expected = {plain_run: CRASH_ATTEMPTS, retried_run: 4}
    for run_id, deliveries in expected.items():
        run = Run.objects.unscoped().get(pk=run_id)
        assert run.status == "failed", (run.status, run.status_reason)
        assert f"lost {deliveries} times" in run.status_reason
        step = StepRun.objects.unscoped().get(run_id=run_id)
        assert step.status == "failed" and step.error["code"] == "worker_lost"
        assert step.delivery_count == deliveries
    # each delivery executed the step once: the message Celery requeued after each death
    # found the step running and did nothing
    calls = Counter(e.body["r"] for e in ledger.calls("/poison"))
    assert calls == {1: CRASH_ATTEMPTS, 4: 4}
    # every delivery died: by its own kill, or with the other poison step that shared its
    # pool process (one process runs many steps at once)
    assert len(killed) + len(died_with_sibling) == CRASH_ATTEMPTS + 4

    # no endless requeue: quiet for a few lease + sweep periods, nothing left in the queue
    time.sleep(2 * (cluster.lease_seconds + cluster.sweep_interval_seconds))
    assert len(ledger.calls("/poison")) == CRASH_ATTEMPTS + 4
    assert {
        s.run_id: s.delivery_count for s in StepRun.objects.unscoped().filter(run_id__in=expected)
    } == expected
    wait_until(lambda: cluster.queue_length() == 0, 10, "the queue to drain")

    # the worker (same main process) goes on consuming
    assert worker.process.poll() is None
    healthy = make_workflow(world, "after-poison", ledger_definition(1))
    [after] = start_runs(world, healthy, 1)
    wait_terminal([after], timeout=30)
    assert Run.objects.unscoped().get(pk=after).status == "succeeded"

    figures.update(
        crash_attempts=CRASH_ATTEMPTS,
        deliveries_default_step=CRASH_ATTEMPTS,
        deliveries_step_with_4_attempts=4,
        pool_processes_killed=len(set(killed)),
        deliveries_died_with_a_sibling=len(died_with_sibling),
        seconds_until_both_runs_failed=round(elapsed, 1),
        bound_s=bound,
        seconds_since_start=round(time.monotonic() - started, 1),
        lease_s=cluster.lease_seconds,
        sweep_interval_s=cluster.sweep_interval_seconds,
    )

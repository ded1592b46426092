"""Redis (broker, cache, channel layer) restarted under load: every queued message is lost,
yet every run completes, and the same worker processes go on consuming."""

from __future__ import annotations

import time

import pytest

from runs.models import Run, StepRun
from tests.reliability.faults import wait_until
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

RUNS = 60
LATER_RUNS = 20
STEPS = 5
DOWN_SECONDS = 3


def test_redis_restart_during_load_loses_no_run(world, cluster, ledger, figures):
    """60 five-step runs; once 10 have finished, Redis is SIGKILLed (no persistence: the
    queue, unacked messages and cache are gone) and started again 3 s later on the same port.
    All 60 runs succeed, 20 runs started after the restart too, each side effect once, and
    both original worker processes received tasks after the restart."""
    ledger.delays[LEDGER_PATH] = 0.1
    make_tools(world, ledger)
    workflow = make_workflow(world, "redis-load", ledger_definition(STEPS))
    workers = [cluster.start_worker(wait=False) for _ in range(2)]
    for worker in workers:
        worker.wait_ready()
    cluster.start_beat()

    started = time.monotonic()
    run_ids = start_runs(world, workflow, RUNS)

    def succeeded() -> int:
        return Run.objects.unscoped().filter(pk__in=run_ids, status="succeeded").count()

    wait_until(lambda: succeeded() >= 10, 120, "10 runs to finish before the restart")
    done_before = succeeded()
    in_flight = StepRun.objects.unscoped().filter(run_id__in=run_ids, status="running").count()
    messages_lost = cluster.queue_length()
    log_offsets = [worker.log.stat().st_size for worker in workers]
    cluster.redis.restart(down_seconds=DOWN_SECONDS)
    restarted = time.monotonic()

    later = start_runs(world, workflow, LATER_RUNS)  # the producer reconnects too
    try:
        elapsed = wait_terminal(run_ids + later, timeout=180)
    finally:
        logs_after = [
            worker.log.read_bytes()[offset:]
            for worker, offset in zip(workers, log_offsets, strict=True)
        ]
    assert statuses(run_ids + later) == {"succeeded": RUNS + LATER_RUNS}, explain(run_ids + later)
    once = check_exactly_once(world, run_ids + later, ledger, STEPS)

    # the same worker processes, still alive, reconnected to the new Redis and took tasks
    # from it (a worker hands steps off and takes the next message at once, so one of the
    # two may take every message after the restart: the pair together must have)
    for worker, log in zip(workers, logs_after, strict=True):
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert b"Connected to redis" in log, log[-3000:]
    assert any(b"runs.execute_step" in log and b"received" in log for log in logs_after)

    figures.update(
        runs_before_restart=RUNS,
        runs_after_restart=LATER_RUNS,
        runs_succeeded=RUNS + LATER_RUNS,
        runs_finished_before_restart=done_before,
        steps_running_at_restart=in_flight,
        queued_messages_lost=messages_lost,
        redis_down_s=DOWN_SECONDS,
        seconds_after_restart_until_all_finished=round(elapsed, 1),
        seconds_total=round(time.monotonic() - started, 1),
        seconds_from_restart_to_start_later_runs=round(time.monotonic() - restarted - elapsed, 1),
        worker_processes_restarted=0,
        **once,
        **delivery_figures(run_ids + later),
    )

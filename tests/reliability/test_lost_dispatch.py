"""A crash between commit and dispatch (the StepRun row is committed, its message never
sent): the sweeper, run by a real beat, picks every such step up within
SWEEP_REDISPATCH_AFTER_SECONDS + SWEEP_INTERVAL_SECONDS."""

from __future__ import annotations

import time
from unittest import mock

import pytest

from runs.execution import progress
from runs.models import RunEvent, StepRun
from tests.reliability.faults import wait_until
from tests.reliability.scenario import (
    check_exactly_once,
    explain,
    ledger_definition,
    make_tools,
    make_workflow,
    start_runs,
    statuses,
    wait_terminal,
)

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

RUNS = 20
STEPS = 1  # a ticket: the pickup delay measures the sweeper, not a queue of long runs
SLACK_SECONDS = 2.0  # broker round trip, queueing behind the other re-sent steps, claim


def test_steps_committed_but_never_dispatched_are_picked_up_within_the_sweep_bound(
    world, cluster, ledger, figures
):
    make_tools(world, ledger)
    workflow = make_workflow(world, "lost-dispatch", ledger_definition(STEPS))
    cluster.start_worker()
    beat = cluster.start_beat()
    wait_until(lambda: b"runs.sweep" in beat.log.read_bytes(), 60, "beat to send a sweep")

    run_ids = []
    # the process "dies" after each run's commit and before its first step is sent: the
    # dispatch (a transaction.on_commit send) never happens. Spread over a few sweep
    # intervals, so the steps meet the sweeper at every phase of its cycle.
    with mock.patch.object(progress, "dispatch") as lost:
        for _ in range(RUNS):
            run_ids += start_runs(world, workflow, 1)
            time.sleep(0.3)
    assert lost.call_count == RUNS
    elapsed = wait_terminal(run_ids, timeout=60)
    assert statuses(run_ids) == {"succeeded": RUNS}, explain(run_ids)
    check_exactly_once(world, run_ids, ledger, STEPS)

    first = StepRun.objects.unscoped().filter(run_id__in=run_ids, step_key="s1")
    assert [s.delivery_count for s in first] == [1] * RUNS
    delays = [(s.started_at - s.created_at).total_seconds() for s in first]
    floor = cluster.redispatch_after_seconds
    bound = cluster.redispatch_after_seconds + cluster.sweep_interval_seconds
    # nobody ran a step before the sweeper re-sent it (the dispatch really was lost)...
    assert min(delays) >= floor - 0.05, sorted(delays)
    # ...and the sweeper re-sent every one within its bound
    assert max(delays) <= bound + SLACK_SECONDS, sorted(delays)
    assert not RunEvent.objects.unscoped().filter(run_id__in=run_ids, type="step.reclaimed")

    figures.update(
        runs=RUNS,
        lost_dispatches=RUNS,
        sweep_interval_s=cluster.sweep_interval_seconds,
        redispatch_after_s=cluster.redispatch_after_seconds,
        bound_s=bound,
        asserted_max_s=bound + SLACK_SECONDS,
        min_pickup_delay_s=round(min(delays), 2),
        mean_pickup_delay_s=round(sum(delays) / len(delays), 2),
        max_pickup_delay_s=round(max(delays), 2),
        seconds_to_finish_all=round(elapsed, 1),
    )

"""A worker process SIGKILLed with 200 steps in flight (issue 14) loses none of them and
repeats no keyed side effect: their leases expire, the sweeper re-queues them, a new worker
runs them again, every run succeeds."""

from __future__ import annotations

import time

import pytest

from runs.models import RunEvent, StepRun
from tests.fakes.openai_server import FakeOpenAI
from tests.reliability.faults import wait_until
from tests.reliability.scenario import (
    LEDGER_TOOL,
    TICKET_TOOL,
    check_exactly_once,
    delivery_figures,
    explain,
    make_tools,
    make_workflow,
    start_runs,
    statuses,
    wait_terminal,
)
from tests.runs.concurrency_support import AGENT, forget_slots, llm_agent

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

RUNS = 200  # one llm step of each in flight at the kill
LEASE_SECONDS = 5
LATENCY_AFTER_KILL = 3.0


def _definition() -> dict:
    """An llm step, then a keyed ticket and a keyed HTTP call to the ledger (the names fit
    scenario.check_exactly_once with 2 steps: s1 the ticket, s2 the ledger call)."""
    return {
        "input_schema": {"type": "object"},
        "example_input": {},
        "steps": [
            {"id": "think", "type": "agent", "agent": AGENT, "input": "hi"},
            {
                "id": "s1",
                "type": "tool",
                "tool": TICKET_TOOL,
                "arguments": {"title": "after the kill", "data": {"step": "s1"}},
            },
            {"id": "s2", "type": "tool", "tool": LEDGER_TOOL, "arguments": {"step": "s2"}},
        ],
    }


def test_a_worker_killed_with_200_steps_in_flight_loses_none(world, cluster, ledger, figures):
    """One worker process (STEP_MAX_IN_FLIGHT 200) takes the llm steps of 200 runs; the
    provider holds every first call, so all 200 are provably in flight when the worker
    (main process and pool at once) is SIGKILLed. A new worker and beat finish them all
    (3 s model latency from then on): every run succeeds, each llm step recorded one model
    call, then one ticket and one keyed ledger call per run, none repeated."""
    cluster.lease_seconds = LEASE_SECONDS
    cluster.redispatch_after_seconds = 3
    make_tools(world, ledger)
    with FakeOpenAI(latency=90) as fake:  # first calls: held until the kill
        provider = llm_agent(world, fake, max_concurrency=1000)
        workflow = make_workflow(world, "inflight-kill", _definition())
        try:
            run_ids = start_runs(world, workflow, RUNS)
            env = {"EGRESS_ALLOWED_NETWORKS": "127.0.0.0/8", "STEP_MAX_IN_FLIGHT": "200"}
            victim = cluster.start_worker(concurrency=1, **env)
            cluster.start_beat()

            seen: dict = {}

            def all_in_flight() -> bool:
                seen.update(
                    at_provider=fake.stats()["current"],
                    running=StepRun.objects.unscoped()
                    .filter(run_id__in=run_ids, status="running")
                    .count(),
                )
                return seen == {"at_provider": RUNS, "running": RUNS}

            try:
                wait_until(all_in_flight, 90, "200 steps in flight in the worker", interval=0.2)
            except AssertionError as timed_out:
                raise AssertionError(f"{timed_out}: {seen}\n{explain(run_ids)}") from None
            victim.kill()  # SIGKILL, the main process and its pool process at once
            killed_at = time.monotonic()
            fake.configure(latency=LATENCY_AFTER_KILL)
            cluster.start_worker(concurrency=1, **env)
            waited = wait_terminal(run_ids, timeout=120)
            recovered = time.monotonic() - killed_at
        finally:
            forget_slots(provider)
        stats = fake.stats()

    # a step lost with its worker (no lease, not swept, never redispatched) would leave its
    # run running; one failed by the kill would fail it
    assert statuses(run_ids) == {"succeeded": RUNS}, explain(run_ids)
    assert (
        StepRun.objects.unscoped().filter(run_id__in=run_ids, status="succeeded").count()
        == 3 * RUNS
    )
    # one ticket per run, every ledger request of a step with that step's one key, and one
    # ledger request per run: a step run twice after the restart (a stale claim finishing,
    # a reclaim racing the new worker) or a re-run with a new key fails here
    once = check_exactly_once(world, run_ids, ledger, 2)
    assert once["ledger_requests"] == RUNS, once
    # the kill landed mid-call: the provider saw all 200 first calls cut off
    assert stats["aborted"] == RUNS, stats
    # each llm step recorded exactly one model call: the cut-off call left nothing behind,
    # and no step was run twice after the restart
    model_calls = RunEvent.objects.unscoped().filter(run_id__in=run_ids, type="model.call")
    assert model_calls.count() == RUNS
    deliveries = delivery_figures(run_ids)
    # every one of the 200 was reclaimed after its lease expired (none finished by the victim)
    assert deliveries["steps_reclaimed_after_lost_worker"] >= RUNS, deliveries

    figures.update(
        runs=RUNS,
        steps_in_flight_at_kill=RUNS,
        lease_s=LEASE_SECONDS,
        sweep_interval_s=cluster.sweep_interval_seconds,
        model_latency_after_kill_s=LATENCY_AFTER_KILL,
        provider_requests=stats["total"],
        provider_requests_aborted_by_kill=stats["aborted"],
        seconds_from_kill_to_all_succeeded=round(recovered, 1),
        seconds_waiting_after_kill=round(waited, 1),
        **once,
        **deliveries,
    )

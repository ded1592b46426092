"""The workload of the fault tests: runs of N idempotency-keyed tool steps, and the ledgers
that prove each step's side effect happened exactly once."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from agents.models import Ticket
from agents.services.tools import tool_create
from controlplane import context
from runs import services, workflow_services
from runs.choices import TERMINAL_RUN_STATUSES
from runs.models import Run, RunEvent, StepRun
from tests.agents.registry_factories import make_tool
from tests.reliability.faults import Ledger

TICKET_TOOL = "ticket-create"
LEDGER_TOOL = "ledger"
LEDGER_PATH = "/ledger"


def step_key_of(run_id: int, step: str) -> str:
    """The idempotency key the engine gives the first (only) tool call of a tool step."""
    return f"run-{run_id}-step-{step}-call-0"


def make_tools(world, ledger: Ledger, timeout_seconds: int = 30) -> None:
    """A built-in ticket tool (Ticket rows are its side effect, unique per idempotency key)
    and an HTTP tool calling the loopback ledger (which records every Idempotency-Key)."""
    with context.tenant_context(world.acme):
        make_tool(world.acme, slug=TICKET_TOOL, builtin="ticket_create")
        with context.system_context("tests", tenant=world.acme):
            tool_create(
                tenant=world.acme,
                slug=LEDGER_TOOL,
                name=LEDGER_TOOL,
                kind="http",
                url=ledger.url(LEDGER_PATH),
                method="POST",
                allowed_hosts=[ledger.host],
                timeout_seconds=timeout_seconds,
            )


def step_names(count: int) -> list[str]:
    return [f"s{i}" for i in range(1, count + 1)]


def ticket_steps(count: int) -> list[str]:
    return step_names(count)[0::2]  # s1, s3, s5


def http_steps(count: int) -> list[str]:
    return step_names(count)[1::2]  # s2, s4


def ledger_definition(count: int = 5, retry_attempts: int = 3) -> dict[str, Any]:
    """A pipeline of ``count`` tool steps alternating ticket and ledger calls."""
    steps = []
    for name in step_names(count):
        retry = {"attempts": retry_attempts, "backoff_seconds": 0.2}
        if name in ticket_steps(count):
            steps.append(
                {
                    "id": name,
                    "type": "tool",
                    "tool": TICKET_TOOL,
                    "arguments": {"title": f"reliability {name}", "data": {"step": name}},
                    "retry": retry,
                }
            )
        else:
            steps.append(
                {
                    "id": name,
                    "type": "tool",
                    "tool": LEDGER_TOOL,
                    "arguments": {"step": name},
                    "retry": retry,
                }
            )
    return {"input_schema": {"type": "object"}, "example_input": {}, "steps": steps}


def make_workflow(world, slug: str, definition: dict[str, Any]):
    with context.system_context("tests", tenant=world.acme):
        return workflow_services.workflow_create(
            tenant=world.acme, slug=slug, name=slug, definition=definition
        )


def start_runs(world, workflow, count: int) -> list[int]:
    ids = []
    with context.system_context("tests", tenant=world.acme):
        for _ in range(count):
            run, _ = services.run_start(tenant=world.acme, workflow=workflow, input={})
            ids.append(run.pk)
    return ids


def explain(run_ids: list[int], limit: int = 3) -> str:
    """The event history of the first runs that did not succeed (for assertion messages)."""
    lines = []
    for run in Run.objects.unscoped().filter(pk__in=run_ids).exclude(status="succeeded")[:limit]:
        lines.append(f"run {run.pk} {run.status}: {run.status_reason}")
        for event in RunEvent.objects.unscoped().filter(run_id=run.pk).order_by("seq"):
            lines.append(
                f"  {event.created_at:%H:%M:%S.%f} {event.type} {event.step_key} "
                f"{str(event.payload)[:160]}"
            )
        for step in StepRun.objects.unscoped().filter(run_id=run.pk).order_by("position"):
            lines.append(
                f"  step {step.step_key} {step.status} deliveries={step.delivery_count} "
                f"attempt={step.attempt} by={step.claimed_by} lease={step.lease_expires_at}"
            )
    return "\n".join(lines)


def statuses(run_ids: list[int]) -> Counter:
    return Counter(Run.objects.unscoped().filter(pk__in=run_ids).values_list("status", flat=True))


def wait_terminal(run_ids: list[int], timeout: float, on_tick=None) -> float:
    """Wait until every run has ended; seconds waited. ``on_tick`` runs every poll."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if on_tick is not None:
            on_tick()
        active = (
            Run.objects.unscoped()
            .filter(pk__in=run_ids)
            .exclude(status__in=TERMINAL_RUN_STATUSES)
            .count()
        )
        if active == 0:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            stuck = list(
                StepRun.objects.unscoped()
                .filter(run_id__in=run_ids)
                .exclude(status__in=("succeeded", "failed", "skipped", "cancelled"))
                .values_list("run_id", "step_key", "status", "delivery_count")[:20]
            )
            raise AssertionError(
                f"{active} of {len(run_ids)} runs still active after {timeout:g}s: "
                f"{statuses(run_ids)}; unfinished steps: {stuck}\n{explain(run_ids)}"
            )
        time.sleep(0.25)


def check_exactly_once(world, run_ids: list[int], ledger: Ledger, count: int) -> dict[str, int]:
    """Every keyed side effect happened exactly once per (run, step); the figures.

    Tickets: one row per ticket step of every run (the key is unique in the table, so the
    proof is that each step's retries reused its key: no second ticket, none missing).
    Ledger: every request of a step carried that step's one key, and every step called.
    """
    expected_tickets = {step_key_of(r, s) for r in run_ids for s in ticket_steps(count)}
    tickets = Counter(
        Ticket.objects.for_tenant(world.acme)
        .filter(idempotency_key__startswith="run-")
        .values_list("idempotency_key", flat=True)
    )
    relevant = {k: n for k, n in tickets.items() if int(k.split("-")[1]) in set(run_ids)}
    assert set(relevant) == expected_tickets, (
        f"missing tickets: {sorted(expected_tickets - set(relevant))[:5]}, "
        f"unexpected: {sorted(set(relevant) - expected_tickets)[:5]}"
    )
    assert max(relevant.values()) == 1

    by_step: dict[tuple[int, str], set[str]] = defaultdict(set)
    requests = 0
    for entry in ledger.calls(LEDGER_PATH):
        run_id = int(entry.key.split("-")[1]) if entry.key.startswith("run-") else -1
        if run_id not in run_ids:
            continue
        requests += 1
        by_step[(run_id, entry.body["step"])].add(entry.key)
    expected_calls = {(r, s) for r in run_ids for s in http_steps(count)}
    assert set(by_step) == expected_calls, "an HTTP step never reached the ledger"
    for (run_id, step), keys in by_step.items():
        assert keys == {step_key_of(run_id, step)}, (run_id, step, keys)

    ticket_replays = sum(
        1
        for e in RunEvent.objects.unscoped().filter(run_id__in=run_ids, type="tool.call")
        if e.payload.get("tool") == TICKET_TOOL
        and e.payload.get("result", {}).get("created") is False
    )
    return {
        "tickets": sum(relevant.values()),
        "ticket_calls_replayed_from_key": ticket_replays,
        "ledger_requests": requests,
        "ledger_requests_repeating_a_key": requests - len(expected_calls),
        "ledger_requests_cut_off_by_a_kill": ledger.cut_off,
    }


def delivery_figures(run_ids: list[int]) -> dict[str, int]:
    steps = StepRun.objects.unscoped().filter(run_id__in=run_ids)
    deliveries = sum(steps.values_list("delivery_count", flat=True))
    return {
        "steps": steps.count(),
        "step_deliveries": deliveries,
        "steps_reclaimed_after_lost_worker": RunEvent.objects.unscoped()
        .filter(run_id__in=run_ids, type="step.reclaimed")
        .count(),
    }

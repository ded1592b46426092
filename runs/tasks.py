"""Thin Celery tasks: load by id, call the engine. JSON messages, late acks (settings)."""

from __future__ import annotations

import socket

from celery import current_task, shared_task

from controlplane import context
from runs.approvals.services import approvals_expire
from runs.execution import sweeper, worker


@shared_task(name="runs.execute_step", ignore_result=True)
def execute_step(step_id: int) -> None:
    """Claim and execute one step (and the single next one, if any)."""
    hostname = getattr(current_task.request, "hostname", None) or socket.gethostname()
    # what the step's finish writes to the audit log is the worker's doing, not "anonymous"
    with context.system_context(f"worker:{hostname}"):
        worker.execute_step(int(step_id), hostname)


@shared_task(name="runs.sweep", ignore_result=True)
def sweep() -> dict:
    """Re-dispatch lost work, reclaim expired leases, expire approvals and runs."""
    with context.system_context("sweeper"):
        counts = sweeper.sweep()
        counts["approvals_expired"] = approvals_expire()
    return counts

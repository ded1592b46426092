"""Thin Celery tasks: load by id, call the engine. JSON messages, late acks (settings)."""

from __future__ import annotations

import logging
import socket

from celery import current_task, shared_task
from celery.signals import worker_process_shutdown, worker_shutdown
from django.conf import settings

from controlplane import context
from runs.approvals.services import approvals_expire
from runs.execution import sweeper, worker
from runs.execution.inflight import inflight


@shared_task(name="runs.execute_step", ignore_result=True)
def execute_step(step_id: int) -> None:
    """Hand the step to this process's runner pool (claim, execute, finish, and the single
    next one, if any); blocks while the process has ``STEP_MAX_IN_FLIGHT`` steps going."""
    hostname = getattr(current_task.request, "hostname", None) or socket.gethostname()
    step_id = int(step_id)

    def body() -> None:
        # what the step's finish writes to the audit log is the worker's doing, not "anonymous"
        with context.system_context(f"worker:{hostname}"):
            worker.execute_step(step_id, hostname)

    inflight.submit(body)


@shared_task(name="runs.sweep", ignore_result=True)
def sweep() -> dict:
    """Re-dispatch lost work, reclaim expired leases, expire approvals and runs."""
    with context.system_context("sweeper"):
        counts = sweeper.sweep()
        counts["approvals_expired"] = approvals_expire()
    return counts


@worker_process_shutdown.connect
@worker_shutdown.connect
def drain_steps(**kwargs) -> None:
    """On a warm shutdown, let the steps in flight finish (up to ``STEP_DRAIN_SECONDS``);
    what is still running then is re-queued by the sweeper when its lease expires."""
    if inflight.count and not inflight.drain(settings.STEP_DRAIN_SECONDS):
        logging.getLogger(__name__).warning(
            "%s steps still in flight at shutdown: their leases will expire", inflight.count
        )

"""Run-level transitions, always with the run row locked: lock order, finish, waiting, resumed."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.payloads import clip
from runs.approvals.services import approvals_cancel_for_run
from runs.choices import TERMINAL_RUN_STATUSES, RunStatus, StepStatus
from runs.events import emit
from runs.execution.inflight import announce_run_ended
from runs.models import Run, StepRun

ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)


def lock_run(run_id: int) -> Run:
    """Lock a run's row for the current transaction and return it (with its tenant).

    The one lock order, so that cancel, resume, rerun, decisions and finishing steps never
    deadlock: a transaction that changes a run takes its row FIRST, then its steps, its
    approvals, and the audit chain last. FOR NO KEY UPDATE: rows that only reference the
    run (events, steps, decisions, a rerun) do not wait for it, nor it for them.
    """
    return (
        Run.objects.unscoped()
        .select_for_update(of=("self",), no_key=True)
        .select_related("tenant")
        .get(pk=run_id)
    )


def finish_run(run: Run, status: str, reason: str = "", output: Any = None) -> None:
    """End the run (in the caller's transaction, run row locked): cancel what never ran and
    pending approvals, emit the final event and audit it."""
    now = timezone.now()
    Run.objects.for_tenant(run.tenant_id).filter(pk=run.pk).update(
        status=status, status_reason=reason[:2000], output=output, finished_at=now, updated_at=now
    )
    run.status, run.status_reason, run.output, run.finished_at = status, reason, output, now
    if status != RunStatus.SUCCEEDED:  # a run succeeds only once nothing waits or queues
        # steps that never ran are cancelled; pending approvals too
        StepRun.objects.for_tenant(run.tenant_id).filter(
            run=run, status__in=[StepStatus.QUEUED, StepStatus.WAITING]
        ).update(status=StepStatus.CANCELLED, finished_at=now, updated_at=now)
        approvals_cancel_for_run(run=run)
    # its steps still in flight, in any worker process, stop now (their I/O is closed)
    transaction.on_commit(lambda: announce_run_ended(run.pk, status), robust=True)
    emit(run=run, type=f"run.{status}", payload={"reason": reason, "output": clip(output)})
    with context.tenant_context(run.tenant):
        audit_record(
            action=f"run.{status}",
            target=run,
            tenant=run.tenant,
            metadata={
                "reason": reason[:500],
                "steps": run.step_count,
                "cost_usd": str(run.cost_usd),
            },
        )


def mark_waiting(run: Run) -> None:
    if run.status != RunStatus.WAITING:
        Run.objects.unscoped().filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.WAITING, updated_at=timezone.now()
        )
        run.status = RunStatus.WAITING
        emit(run=run, type="run.waiting", payload={})


def restore_running(run: Run) -> None:
    still_waiting = StepRun.objects.unscoped().filter(run=run, status=StepStatus.WAITING).exists()
    if run.status == RunStatus.WAITING and not still_waiting:
        Run.objects.unscoped().filter(pk=run.pk).update(
            status=RunStatus.RUNNING, updated_at=timezone.now()
        )
        run.status = RunStatus.RUNNING
        emit(run=run, type="run.resumed", payload={"by": "decision"})


def is_terminal(status: str) -> bool:
    return status in TERMINAL_RUN_STATUSES

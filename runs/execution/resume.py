"""A person answered what a waiting step asked: finish it, or run it again."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from controlplane.payloads import clip
from runs.choices import StepStatus
from runs.events import emit
from runs.execution import progress
from runs.execution.finish import apply_on_error
from runs.execution.outcomes import StepFailure
from runs.execution.step_context import definition_of
from runs.execution.transitions import ACTIVE_RUN, lock_run, restore_running
from runs.models import StepRun


def resolve_waiting_step(
    *, step: StepRun, output: Any = None, failure: StepFailure | None = None
) -> None:
    """A person answered: finish the waiting step and advance (inside the caller's atomic)."""
    run = lock_run(step.run_id)
    if run.status not in ACTIVE_RUN:
        return
    now = timezone.now()
    current = StepRun.objects.unscoped().get(pk=step.pk)
    if current.status != StepStatus.WAITING:
        return
    if failure is not None:
        StepRun.objects.unscoped().filter(pk=step.pk).update(status=StepStatus.RUNNING)
        current.status = StepStatus.RUNNING
        restore_running(run)
        # A person's "no" is final: escalating it again would ask the same question forever.
        apply_on_error(
            run, current, definition_of(run).step(step.step_key), failure, escalate=False
        )
        return
    StepRun.objects.unscoped().filter(pk=step.pk).update(
        status=StepStatus.SUCCEEDED, output=output, finished_at=now, updated_at=now, error=None
    )
    restore_running(run)
    emit(
        run=run,
        type="step.succeeded",
        step_key=step.step_key,
        payload={"output": clip(output), "decided": True},
    )
    progress.dispatch(progress.advance(run, [step.step_key]))


def requeue_waiting_step(*, step: StepRun, reason: str) -> None:
    """A decision the step waited on was made: run the step again (inside the caller's atomic).

    Used for approvals a policy asked for in the middle of a step: the step starts over,
    its calls keep their idempotency keys (so tools that honour them do not repeat side
    effects) and the policy check finds the decision.
    """
    run = lock_run(step.run_id)
    if run.status not in ACTIVE_RUN:
        return
    updated = (
        StepRun.objects.unscoped()
        .filter(pk=step.pk, status=StepStatus.WAITING)
        .update(
            status=StepStatus.QUEUED,
            claim_token="",
            lease_expires_at=None,
            not_before=None,
            updated_at=timezone.now(),
        )
    )
    if updated != 1:
        return
    restore_running(run)
    emit(run=run, type="step.requeued", step_key=step.step_key, payload={"reason": reason})
    progress.dispatch([step.pk])

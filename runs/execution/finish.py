"""Finishing a step: the four ends (success, failure, waiting, cancelled), on_error,
and the late result of a step whose run already ended."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from controlplane.payloads import clip
from runs.approvals.services import approval_create, approvals_cancel_for_run
from runs.choices import RunStatus, StepStatus
from runs.engine.definition import StepDef
from runs.events import emit
from runs.execution import progress
from runs.execution.claim import claim_in_hand
from runs.execution.outcomes import StepFailure, StepOutcome, StepWaiting
from runs.execution.step_context import definition_of
from runs.execution.transitions import ACTIVE_RUN, finish_run, lock_run, mark_waiting
from runs.models import Run, StepRun


def _lock_run(step: StepRun) -> Run:
    return lock_run(step.run_id)


def _still_ours(step: StepRun, token: str) -> QuerySet[StepRun]:
    """The step's row while this worker still holds it (running, with its claim token);
    empty once the sweeper re-queued it or the run's end cancelled it."""
    return StepRun.objects.unscoped().filter(
        pk=step.pk, status=StepStatus.RUNNING, claim_token=token
    )


def finish_success(
    step: StepRun, token: str, outcome: StepOutcome, worker: str
) -> tuple[StepRun, str] | None:
    """Record the step's success and plan what is next; when exactly one step is next, this
    worker claims it in the same transaction (the fast path) and gets it back to run."""
    with transaction.atomic():
        run = _lock_run(step)
        if run.status not in ACTIVE_RUN:
            # the run ended while the step ran: its late result is discarded, never recorded
            cancel_late_step(run, step, token, outcome)
            return None
        now = timezone.now()
        updated = _still_ours(step, token).update(
            status=StepStatus.SUCCEEDED,
            output=outcome.output,
            route=outcome.route or "",
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
            error=None,
            input_tokens=F("input_tokens") + outcome.input_tokens,
            output_tokens=F("output_tokens") + outcome.output_tokens,
            cost_usd=F("cost_usd") + Decimal(str(round(outcome.cost_usd, 6))),
            **({"state": outcome.state} if outcome.state is not None else {}),
        )
        if updated != 1:
            return None  # our lease was taken over (the sweeper re-queued the step)
        _account(run, outcome)
        emit(
            run=run,
            type="step.succeeded",
            step_key=step.step_key,
            payload={
                "output": clip(outcome.output),
                "route": outcome.route,
                "attempt": step.attempt,
                "duration_ms": round((now - step.started_at).total_seconds() * 1000, 1),
            },
        )
        created: list[StepRun] = []
        new_ids = progress.advance(run, [step.step_key], created)
        fast = claim_in_hand(run, created[0], worker) if len(created) == 1 else None
        # If this worker dies before running the fast step, its lease expires and the
        # sweeper re-queues it, as for any claimed step.
        progress.dispatch([i for i in new_ids if fast is None or i != fast[0].pk])
    return fast


def cancel_late_step(
    run: Run, step: StepRun, token: str, outcome: StepOutcome | StepWaiting | None = None
) -> None:
    """The run ended while ``step`` ran (run row locked): the step ends cancelled.

    Its late result (output, route, context, next steps) is discarded; the tokens and cost
    it spent are still counted, because they were spent.
    """
    now = timezone.now()
    spent: dict[str, Any] = {}
    if outcome is not None and (outcome.input_tokens or outcome.output_tokens or outcome.cost_usd):
        cost = Decimal(str(round(outcome.cost_usd, 6)))
        spent = {
            "input_tokens": F("input_tokens") + outcome.input_tokens,
            "output_tokens": F("output_tokens") + outcome.output_tokens,
            "cost_usd": F("cost_usd") + cost,
        }
    updated = _still_ours(step, token).update(
        status=StepStatus.CANCELLED,
        lease_expires_at=None,
        claim_token="",
        finished_at=now,
        updated_at=now,
        **spent,
    )
    if updated != 1:
        return
    if spent:
        Run.objects.unscoped().filter(pk=run.pk).update(**spent)
    emit(
        run=run,
        type="step.cancelled",
        step_key=step.step_key,
        payload={"reason": f"the run is {run.status}: the step's late result was discarded"},
    )


def _account(run: Run, outcome: StepOutcome) -> None:
    changes: dict[str, Any] = {"updated_at": timezone.now()}
    if outcome.input_tokens or outcome.output_tokens or outcome.cost_usd:
        changes["input_tokens"] = F("input_tokens") + outcome.input_tokens
        changes["output_tokens"] = F("output_tokens") + outcome.output_tokens
        changes["cost_usd"] = F("cost_usd") + Decimal(str(round(outcome.cost_usd, 6)))
    if outcome.context_updates:
        run.context = {**run.context, **outcome.context_updates}
        changes["context"] = run.context
    Run.objects.unscoped().filter(pk=run.pk).update(**changes)


def backoff_delay(step_def: StepDef, attempt: int) -> float:
    """Exponential backoff with full jitter, bounded by the step's maximum."""
    retry = step_def.retry
    delay = min(retry.max_backoff_seconds, retry.backoff_seconds * (2 ** max(0, attempt - 1)))
    return random.uniform(0, delay) if retry.jitter else delay  # noqa: S311 (not crypto)


def finish_failure(step: StepRun, token: str, failure: StepFailure) -> None:
    with transaction.atomic():
        run = _lock_run(step)
        if run.status not in ACTIVE_RUN:
            cancel_late_step(run, step, token)
            return
        current = _still_ours(step, token).first()
        if current is None:
            return
        step_def = definition_of(run).step(step.step_key)
        now = timezone.now()
        if failure.retryable and current.attempt < current.max_attempts:
            delay = backoff_delay(step_def, current.attempt)
            StepRun.objects.unscoped().filter(pk=step.pk).update(
                status=StepStatus.QUEUED,
                claim_token="",
                lease_expires_at=None,
                not_before=now + timedelta(seconds=delay),
                error=failure.as_dict(),
                updated_at=now,
            )
            emit(
                run=run,
                type="step.retrying",
                step_key=step.step_key,
                payload={
                    **failure.as_dict(),
                    "attempt": current.attempt,
                    "max_attempts": current.max_attempts,
                    "delay_s": round(delay, 3),
                },
            )
            progress.dispatch([step.pk], countdown=delay)
            return
        apply_on_error(run, current, step_def, failure)


def apply_on_error(
    run: Run, step: StepRun, step_def: StepDef, failure: StepFailure, *, escalate: bool = True
) -> None:
    """Apply the step's on_error to ``failure`` (run row locked); with ``escalate=False``
    (a person denied the step) an ``escalate`` step fails instead of asking again."""
    now = timezone.now()
    on_error = step_def.on_error
    error = failure.as_dict()
    if failure.code == "budget_exceeded":
        # a hard budget stops the run whatever the step's on_error says
        StepRun.objects.unscoped().filter(pk=step.pk).update(
            status=StepStatus.FAILED,
            error=error,
            finished_at=now,
            lease_expires_at=None,
            claim_token="",
            updated_at=now,
        )
        emit(run=run, type="step.failed", step_key=step.step_key, payload={**error})
        finish_run(run, RunStatus.FAILED, failure.message)
        return
    if (
        isinstance(on_error, dict)
        and on_error.get("fallback")
        and not step.state.get("fallback_agent")
    ):
        StepRun.objects.unscoped().filter(pk=step.pk).update(
            status=StepStatus.QUEUED,
            claim_token="",
            lease_expires_at=None,
            not_before=None,
            error=error,
            state={**step.state, "fallback_agent": on_error["fallback"]},
            max_attempts=F("attempt") + 1,
            updated_at=now,
        )
        emit(
            run=run,
            type="step.fallback",
            step_key=step.step_key,
            payload={**error, "fallback_agent": on_error["fallback"]},
        )
        progress.dispatch([step.pk])
        return
    if on_error == "escalate" and escalate:
        approval = approval_create(
            run=run,
            step_run=step,
            kind="escalation",
            title=f"Step {step.step_key} failed: provide its output or fail the run",
            details={"error": error, "input": clip(step.input)},
        )
        StepRun.objects.unscoped().filter(pk=step.pk).update(
            status=StepStatus.WAITING,
            claim_token="",
            lease_expires_at=None,
            error=error,
            updated_at=now,
        )
        mark_waiting(run)
        emit(
            run=run,
            type="step.escalated",
            step_key=step.step_key,
            payload={**error, "approval": approval.pk},
        )
        return
    tolerated = on_error == "continue"
    StepRun.objects.unscoped().filter(pk=step.pk).update(
        status=StepStatus.FAILED,
        tolerated=tolerated,
        error=error,
        finished_at=now,
        lease_expires_at=None,
        claim_token="",
        updated_at=now,
    )
    emit(
        run=run,
        type="step.failed",
        step_key=step.step_key,
        payload={**error, "attempt": step.attempt, "tolerated": tolerated},
    )
    progress.dispatch(progress.advance(run, [step.step_key]))


def _account_waiting(run: Run, step: StepRun, waiting: StepWaiting) -> None:
    if not (waiting.input_tokens or waiting.output_tokens or waiting.cost_usd):
        return
    cost = Decimal(str(round(waiting.cost_usd, 6)))
    StepRun.objects.unscoped().filter(pk=step.pk).update(
        input_tokens=F("input_tokens") + waiting.input_tokens,
        output_tokens=F("output_tokens") + waiting.output_tokens,
        cost_usd=F("cost_usd") + cost,
    )
    Run.objects.unscoped().filter(pk=run.pk).update(
        input_tokens=F("input_tokens") + waiting.input_tokens,
        output_tokens=F("output_tokens") + waiting.output_tokens,
        cost_usd=F("cost_usd") + cost,
    )


def finish_waiting(step: StepRun, token: str, waiting: StepWaiting) -> None:
    approval = waiting.approval
    with transaction.atomic():
        run = _lock_run(step)
        if run.status not in ACTIVE_RUN:
            cancel_late_step(run, step, token, waiting)
            approvals_cancel_for_run(run=run)  # opened by the step after the run ended
            return
        updated = _still_ours(step, token).update(
            status=StepStatus.WAITING,
            lease_expires_at=None,
            claim_token="",
            updated_at=timezone.now(),
        )
        if updated != 1:
            return
        _account_waiting(run, step, waiting)
        mark_waiting(run)
        emit(
            run=run,
            type="step.waiting",
            step_key=step.step_key,
            payload={"approval": approval.pk, "title": approval.title, "kind": approval.kind},
        )


def finish_cancelled(step: StepRun, token: str, reason: str) -> None:
    with transaction.atomic():
        run = _lock_run(step)
        updated = _still_ours(step, token).update(
            status=StepStatus.CANCELLED,
            lease_expires_at=None,
            claim_token="",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if updated == 1:
            emit(run=run, type="step.cancelled", step_key=step.step_key, payload={"reason": reason})

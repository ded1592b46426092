"""Advancing a run: the pure scheduler's actions applied to the database, and dispatch.

``advance`` creates the next StepRuns inside the transaction that recorded a change;
``dispatch`` sends them to the workers after commit.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from runs.choices import RunStatus, StepStatus
from runs.engine import scheduler
from runs.engine.definition import StepDef
from runs.engine.templating import TemplateError, render
from runs.events import emit
from runs.execution.step_context import definition_of
from runs.execution.transitions import finish_run
from runs.models import Run, StepRun


def _snapshot(run: Run) -> tuple[dict[str, scheduler.StepState], dict[str, Any]]:
    """Every step's scheduler state and template data, in one query."""
    rows = (
        StepRun.objects.for_tenant(run.tenant_id)
        .filter(run=run)
        .values_list("step_key", "status", "route", "tolerated", "output", "error")
    )
    states, outputs = {}, {}
    for key, status, route, tolerated, output, error in rows:
        states[key] = scheduler.StepState(status, route or None, tolerated)
        outputs[key] = {"output": output, "status": status, "error": error}
    return states, outputs


def template_scope(run: Run, outputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    if outputs is None:
        outputs = _snapshot(run)[1]
    return {"input": run.input, "steps": outputs, "context": run.context, **extra}


def render_step_input(run: Run, step_def: StepDef, outputs: dict[str, Any] | None = None) -> Any:
    """The step's templated input (agent/router/manager/handoff/loop) or arguments (tool)."""
    spec = step_def.spec
    scope = template_scope(run, outputs)
    if step_def.type == "tool":
        return render(spec.get("arguments", {}), scope)
    if step_def.type == "approval":
        return {
            "title": render(spec.get("title", f"Approve {step_def.id}"), scope),
            "details": render(spec.get("details", {}), scope),
        }
    if step_def.type == "parallel":
        return None  # branches are rendered by the executor (item/index in scope)
    if step_def.type == "loop":
        return None  # rendered per iteration (previous/iteration in scope)
    return render(spec.get("input", "{{ input }}"), scope)


def advance(run: Run, changed: list[str] | None, created: list[StepRun] | None = None) -> list[int]:
    """Apply the scheduler's actions after ``changed`` steps; returns StepRuns to dispatch
    (and appends them to ``created``, when given, as the rows in hand).

    Must run inside the transaction that recorded the change, with the run row locked.
    """
    definition = definition_of(run)
    new_ids: list[int] = []
    pending_changes: list[str] | None = changed
    while True:
        states, outputs = _snapshot(run)
        actions = scheduler.plan(definition, states, pending_changes)
        pending_changes = []
        for action in actions:
            if isinstance(action, scheduler.CompleteRun):
                try:
                    output = (
                        render(definition.output, template_scope(run, outputs))
                        if definition.output is not None
                        else _last_output(run)
                    )
                except TemplateError as exc:
                    finish_run(run, RunStatus.FAILED, f"run output: {exc}")
                    return []
                finish_run(run, RunStatus.SUCCEEDED, "", output)
                return []
            if isinstance(action, scheduler.FailRun):
                step = (
                    StepRun.objects.for_tenant(run.tenant_id)
                    .filter(run=run, step_key=action.step_id)
                    .first()
                )
                message = (step.error or {}).get("message", "") if step else ""
                finish_run(
                    run, RunStatus.FAILED, f"step {action.step_id} failed: {message}".strip()
                )
                return []
            step_def = definition.step(action.step_id)
            position = definition.steps.index(step_def)
            if isinstance(action, scheduler.SkipStep):
                StepRun.objects.for_tenant(run.tenant_id).create(
                    tenant_id=run.tenant_id,
                    run=run,
                    step_key=step_def.id,
                    step_type=step_def.type,
                    position=position,
                    status=StepStatus.SKIPPED,
                    error={"message": action.reason, "code": "skipped"},
                    finished_at=timezone.now(),
                )
                emit(
                    run=run,
                    type="step.skipped",
                    step_key=step_def.id,
                    payload={"reason": action.reason},
                )
                continue
            if run.step_count >= run.max_steps:
                finish_run(
                    run, RunStatus.FAILED, f"the run reached its maximum of {run.max_steps} steps"
                )
                return []
            status, error, step_input = StepStatus.QUEUED, None, None
            try:
                step_input = render_step_input(run, step_def, outputs)
            except TemplateError as exc:
                status = StepStatus.FAILED
                error = {
                    "message": f"input template: {exc}",
                    "code": "template_error",
                    "retryable": False,
                }
            step = StepRun.objects.for_tenant(run.tenant_id).create(
                tenant_id=run.tenant_id,
                run=run,
                step_key=step_def.id,
                step_type=step_def.type,
                position=position,
                status=status,
                input=step_input,
                error=error,
                max_attempts=max(1, step_def.retry.attempts),
                finished_at=timezone.now() if error else None,
            )
            run.step_count += 1
            Run.objects.for_tenant(run.tenant_id).filter(pk=run.pk).update(
                step_count=F("step_count") + 1
            )
            if error:
                emit(run=run, type="step.failed", step_key=step_def.id, payload=error)
                pending_changes.append(step_def.id)
            else:
                emit(
                    run=run,
                    type="step.queued",
                    step_key=step_def.id,
                    payload={"type": step_def.type},
                )
                new_ids.append(step.pk)
                if created is not None:
                    created.append(step)
        if not pending_changes:
            return new_ids


def _last_output(run: Run) -> Any:
    step = (
        StepRun.objects.for_tenant(run.tenant_id)
        .filter(run=run, status=StepStatus.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .first()
    )
    return step.output if step else None


def dispatch(step_ids: list[int], countdown: float | None = None) -> None:
    """Send steps to the workers once the current transaction commits."""
    if not step_ids:
        return

    def send() -> None:
        # runs.tasks imports the execution modules: import it when a step is sent
        from runs.tasks import execute_step

        for step_id in step_ids:
            if countdown:
                execute_step.apply_async((step_id,), countdown=countdown)
            else:
                execute_step.delay(step_id)

    transaction.on_commit(send, robust=True)

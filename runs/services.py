"""Run services: start, cancel, resume and re-run; write, audit, and dispatch after commit.

Workflow writes are ``runs.workflow_services``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agents.models import Agent
from controlplane.audit.services import audit_record
from controlplane.choices import Status
from runs.choices import RunStatus, StepStatus
from runs.engine.definition import parse_definition
from runs.events import emit
from runs.execution import progress
from runs.execution.step_context import definition_of
from runs.execution.transitions import finish_run, is_terminal, lock_run
from runs.models import Run, StepRun, Workflow
from runs.pins import VERSION_CHOICES, pin_agent_versions


def single_agent_definition(agent: Agent) -> dict[str, Any]:
    """The one-step workflow that runs an agent on its own."""
    return {
        "input_schema": {},
        "example_input": {},
        "steps": [{"id": "agent", "type": "agent", "agent": agent.slug, "input": "{{ input }}"}],
        "output": "{{ steps.agent.output }}",
    }


def _check_input(schema: dict, data: Any) -> None:
    if not schema:
        return
    try:
        errors = sorted(
            Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path)
        )
    except SchemaError as exc:  # e.g. a pattern saved before patterns were checked
        raise ValidationError(
            {"input": [f"The workflow's input schema cannot be used: {exc}"]}
        ) from None
    if errors:
        grouped: dict[str, list[str]] = {}
        for error in errors:
            path = "input" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
            )
            grouped.setdefault(path, []).append(error.message)
        raise ValidationError(grouped)


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key already started a run with a different request."""

    def __init__(self, run: Run):
        self.run = run
        super().__init__(
            f"This Idempotency-Key already started run {run.pk} with a different request "
            "(workflow, agent or input). Use a new key for a new run, or repeat the first "
            f"request exactly to get run {run.pk} back."
        )


def _same_request(run: Run, *, input: Any, workflow: Any, agent: Any) -> bool:
    return (
        run.workflow_id == (workflow.pk if workflow is not None else None)
        and run.agent_id == (agent.pk if agent is not None else None)
        and run.input == input
    )


def run_start(
    *,
    tenant: Any,
    input: Any,
    workflow: Workflow | None = None,
    agent: Agent | None = None,
    created_by: Any = None,
    idempotency_key: str = "",
    deadline_seconds: float | None = None,
    max_steps: int | None = None,
) -> tuple[Run, bool]:
    """Start a run of a workflow's current version or of one agent; idempotent per key.

    Returns ``(run, created)``. The one place an idempotency key is checked: a key seen
    before with the same workflow or agent and input returns its run (``created`` False);
    with a different request, ``IdempotencyKeyReused``.
    """

    def existing_run() -> Run | None:
        found = Run.objects.for_tenant(tenant).filter(idempotency_key=idempotency_key).first()
        if found is not None and not _same_request(
            found, input=input, workflow=workflow, agent=agent
        ):
            raise IdempotencyKeyReused(found)
        return found

    if idempotency_key:
        existing = existing_run()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            run = _create_run(
                tenant=tenant,
                input=input,
                workflow=workflow,
                agent=agent,
                created_by=created_by,
                idempotency_key=idempotency_key,
                deadline_seconds=deadline_seconds,
                max_steps=max_steps,
            )
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            existing = existing_run()
            if existing is not None:
                return existing, False
        raise
    return run, True


def _create_run(
    *, tenant, input, workflow, agent, created_by, idempotency_key, deadline_seconds, max_steps
) -> Run:
    if (workflow is None) == (agent is None):
        raise ValidationError({"workflow": "Give exactly one of 'workflow' or 'agent'."})
    if workflow is not None:
        if workflow.status != Status.ACTIVE or workflow.current_version is None:
            raise ValidationError({"workflow": f"Workflow {workflow.slug!r} is disabled."})
        definition = workflow.current_version.definition
        version = workflow.current_version
    else:
        if agent.status != Status.ACTIVE:
            raise ValidationError({"agent": f"Agent {agent.slug!r} is disabled."})
        definition = single_agent_definition(agent)
        version = None
    parsed = parse_definition(definition)
    _check_input(definition.get("input_schema") or {}, input)
    seconds = deadline_seconds or parsed.deadline_seconds or settings.RUN_DEFAULT_DEADLINE_SECONDS
    run = Run.objects.for_tenant(tenant).create(
        tenant=tenant,
        workflow=workflow,
        workflow_version=version,
        agent=agent,
        definition=definition,
        agent_versions=pin_agent_versions(tenant=tenant, definition=definition),
        input=input,
        created_by=created_by,
        idempotency_key=idempotency_key,
        max_steps=max_steps or parsed.max_steps,
        deadline=timezone.now() + timedelta(seconds=seconds),
    )
    emit(
        run=run,
        type="run.created",
        payload={
            "workflow": workflow.slug if workflow else None,
            "version": version.number if version else None,
            "agent": agent.slug if agent else None,
        },
        fresh=True,
    )
    audit_record(
        action="run.start",
        target=run,
        tenant=tenant,
        after={
            "workflow": workflow.slug if workflow else None,
            "version": version.number if version else None,
            "agent": agent.slug if agent else None,
        },
    )
    # no lock_run: the row was inserted by this transaction, so nobody else can see it yet
    progress.dispatch(progress.advance(run, None))
    return run


@transaction.atomic
def run_cancel(*, run: Run, reason: str = "") -> Run:
    """Cancel a run that has not finished; running steps stop at their next check."""
    run = lock_run(run.pk)
    if is_terminal(run.status):
        raise ValidationError({"status": f"The run already ended ({run.status})."})
    audit_record(action="run.cancel", target=run, tenant=run.tenant, metadata={"reason": reason})
    finish_run(run, RunStatus.CANCELLED, reason or "cancelled")
    return run


@transaction.atomic
def run_resume(*, run: Run) -> Run:
    """Resume a failed or timed-out run from its failed steps, reusing earlier outputs."""
    run = lock_run(run.pk)
    if run.status not in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        raise ValidationError(
            {"status": f"Only failed or timed-out runs resume; this one is {run.status}."}
        )
    steps = StepRun.objects.filter(run=run)
    # A step still running when the run timed out is run again too: a new claim token, so
    # its old executor's late finish (success or cancel) matches nothing and cannot strand
    # the resumed run with no step left to run.
    failed = list(
        steps.filter(
            Q(status=StepStatus.FAILED, tolerated=False) | Q(status=StepStatus.RUNNING)
        ).order_by("id")
    )
    # Steps cancelled when the run ended never produced output: plan them afresh.
    steps.filter(status__in=[StepStatus.CANCELLED, StepStatus.QUEUED]).delete()
    now = timezone.now()
    steps.filter(pk__in=[s.pk for s in failed]).update(
        status=StepStatus.QUEUED,
        attempt=0,
        delivery_count=0,
        error=None,
        claim_token="",
        not_before=None,
        lease_expires_at=None,
        finished_at=None,
        updated_at=now,
    )
    definition = definition_of(run)
    extend = timedelta(seconds=definition.deadline_seconds or settings.RUN_DEFAULT_DEADLINE_SECONDS)
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        status_reason="",
        finished_at=None,
        updated_at=now,
        resume_count=run.resume_count + 1,
        deadline=now + extend,
        step_count=steps.count(),
    )
    run.refresh_from_db()
    emit(run=run, type="run.resumed", payload={"steps": [s.step_key for s in failed]})
    audit_record(
        action="run.resume",
        target=run,
        tenant=run.tenant,
        metadata={"steps": [s.step_key for s in failed]},
    )
    progress.dispatch([s.pk for s in failed] + progress.advance(run, None))
    return run


def run_rerun(
    *, run: Run, input: Any = None, created_by: Any = None, versions: str = "same"
) -> Run:
    """Start a new run of the same definition with the same or an edited input.

    ``versions`` "same" runs the agent versions the first run pinned (agents it did not
    pin get their current version); "current" pins the versions current now.
    """
    if versions not in VERSION_CHOICES:
        raise ValidationError({"versions": "Choose 'same' or 'current'."})
    new_input = run.input if input is None else input
    with transaction.atomic():
        _check_input(run.definition.get("input_schema") or {}, new_input)
        rerun = Run.objects.for_tenant(run.tenant).create(
            tenant=run.tenant,
            workflow=run.workflow,
            workflow_version=run.workflow_version,
            agent=run.agent,
            definition=run.definition,
            agent_versions=pin_agent_versions(
                tenant=run.tenant,
                definition=run.definition,
                keep=run.agent_versions if versions == "same" else None,
            ),
            input=new_input,
            created_by=created_by,
            rerun_of=run,
            max_steps=run.max_steps,
            deadline=timezone.now()
            + timedelta(
                seconds=parse_definition(run.definition).deadline_seconds
                or settings.RUN_DEFAULT_DEADLINE_SECONDS
            ),
        )
        emit(run=rerun, type="run.created", payload={"rerun_of": run.pk})
        audit_record(
            action="run.rerun",
            target=rerun,
            tenant=run.tenant,
            metadata={
                "rerun_of": run.pk,
                "input_changed": input is not None,
                "versions": versions,
            },
        )
        progress.dispatch(progress.advance(rerun, None))
    return rerun

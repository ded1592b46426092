"""The Django side of the engine: claiming, executing and finishing steps, advancing runs.

Sequence for every step (DESIGN.md section 6):

1. ``claim``: a conditional UPDATE queued -> running with a fresh claim token and a lease;
   exactly one row or nothing (a duplicate delivery does nothing).
2. the executor runs outside any transaction, in a thread bounded by the step timeout,
   while a heartbeat renews the lease;
3. ``finish_*``: one transaction stores the output, events and audit, asks the pure
   scheduler what is next and creates those StepRuns; they are dispatched after commit.
   A worker that finds exactly one next step runs it in the same task (fast path).

A worker that dies loses nothing: the StepRun row says what is queued or running, and
the sweeper re-dispatches queued steps and re-queues running steps whose lease expired.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import itertools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.crypto import SecretDecryptionError
from runs.choices import TERMINAL_RUN_STATUSES, RunStatus, StepStatus
from runs.engine import scheduler
from runs.engine.calls import StepCancelled, StepFailure
from runs.engine.definition import Definition, StepDef, parse_definition
from runs.events import clip, emit
from runs.models import Run, StepRun

logger = logging.getLogger(__name__)

ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)
CRASH_ATTEMPTS = 3  # lease expiries tolerated before a step is failed


class StepWaiting(Exception):
    """The step now waits for a person (an ApprovalRequest was created)."""

    def __init__(self, approval: Any) -> None:
        super().__init__(approval.title)
        self.approval = approval
        # tokens and cost already spent by the attempt that now waits (kept on the step)
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0


@dataclasses.dataclass
class StepOutcome:
    """What an executor produced for a step."""

    output: Any = None
    route: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    context_updates: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: dict[str, Any] | None = None


@dataclasses.dataclass
class StepContext:
    """Everything an executor may use; created per claimed step."""

    run: Run
    step: StepRun
    step_def: StepDef
    definition: Definition
    run_context: dict[str, Any]
    deadline: float | None
    emit: Callable[[str, dict[str, Any]], None]
    check_cancel: Callable[[], None]
    next_call_index: Callable[[], int]
    save_state: Callable[[dict[str, Any]], None]
    _policy: Any = None

    def policy(self) -> Any:
        """The step's policy enforcement (``policies.enforcement.StepPolicy``), made once."""
        if self._policy is None:
            from policies.enforcement import StepPolicy

            self._policy = StepPolicy(self)
        return self._policy


def lease_seconds() -> int:
    return settings.STEP_LEASE_SECONDS


@lru_cache(maxsize=512)
def _parsed(run_id: int, definition_json: str) -> Definition:
    import json

    return parse_definition(json.loads(definition_json))


def definition_of(run: Run) -> Definition:
    import json

    return _parsed(run.pk, json.dumps(run.definition, sort_keys=True))


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
    from runs.engine.templating import render

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


# Run transitions --------------------------------------------------------------------------


def finish_run(run: Run, status: str, reason: str = "", output: Any = None) -> None:
    """End the run (in the caller's transaction, run row locked): cancel what never ran and
    pending approvals, emit the final event and audit it."""
    now = timezone.now()
    Run.objects.for_tenant(run.tenant_id).filter(pk=run.pk).update(
        status=status, status_reason=reason[:2000], output=output, finished_at=now, updated_at=now
    )
    run.status, run.status_reason, run.output, run.finished_at = status, reason, output, now
    # steps that never ran are cancelled; pending approvals too
    StepRun.objects.for_tenant(run.tenant_id).filter(
        run=run, status__in=[StepStatus.QUEUED, StepStatus.WAITING]
    ).update(status=StepStatus.CANCELLED, finished_at=now, updated_at=now)
    from policies.services import approvals_cancel_for_run

    approvals_cancel_for_run(run=run)
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


def advance(run: Run, changed: list[str] | None) -> list[int]:
    """Apply the scheduler's actions after ``changed`` steps; returns StepRuns to dispatch.

    Must run inside the transaction that recorded the change, with the run row locked.
    """
    from runs.engine.templating import TemplateError

    definition = definition_of(run)
    new_ids: list[int] = []
    pending_changes: list[str] | None = changed
    while True:
        states, outputs = _snapshot(run)
        actions = scheduler.plan(definition, states, pending_changes)
        pending_changes = []
        for action in actions:
            if isinstance(action, scheduler.CompleteRun):
                from runs.engine.templating import render

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
        from runs.tasks import execute_step

        for step_id in step_ids:
            if countdown:
                execute_step.apply_async((step_id,), countdown=countdown)
            else:
                execute_step.delay(step_id)

    transaction.on_commit(send, robust=True)


# Claiming and executing ------------------------------------------------------------------


def claim(step_id: int, worker: str) -> tuple[StepRun, str] | None:
    """Take a queued step (queued -> running) for this worker; None if someone else has it."""
    token = uuid.uuid4().hex
    now = timezone.now()
    claimed = (
        StepRun.objects.unscoped()
        .filter(
            Q(not_before__isnull=True) | Q(not_before__lte=now),
            pk=step_id,
            status=StepStatus.QUEUED,
            run__status__in=ACTIVE_RUN,
        )
        .update(
            status=StepStatus.RUNNING,
            claim_token=token,
            claimed_by=worker[:200],
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
            attempt=F("attempt") + 1,
            delivery_count=F("delivery_count") + 1,
            started_at=now,
            updated_at=now,
        )
    )
    if claimed != 1:
        return None
    step = StepRun.objects.unscoped().select_related("run", "run__tenant").get(pk=step_id)
    run = step.run
    with transaction.atomic():
        if run.status == RunStatus.QUEUED:
            Run.objects.unscoped().filter(pk=run.pk, status=RunStatus.QUEUED).update(
                status=RunStatus.RUNNING, started_at=now, updated_at=now
            )
            run.status = RunStatus.RUNNING
            emit(run=run, type="run.started", payload={})
        if run.deadline and run.deadline <= now:
            run = lock_run(run.pk)
            if run.status in ACTIVE_RUN:
                finish_run(run, RunStatus.TIMED_OUT, "the run passed its deadline")
            return None
        emit(
            run=run,
            type="step.started",
            step_key=step.step_key,
            payload={"attempt": step.attempt, "worker": worker},
        )
    return step, token


class _Leases:
    """One heartbeat thread per process renews the lease of every step it is running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, str] = {}
        self._pid: int | None = None

    def hold(self, step_id: int, token: str) -> None:
        with self._lock:
            self._active[step_id] = token
            if self._pid != os.getpid():  # first use in this (possibly forked) process
                self._pid = os.getpid()
                threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True).start()

    def release(self, step_id: int) -> None:
        with self._lock:
            self._active.pop(step_id, None)

    def _beat(self) -> None:
        while True:
            time.sleep(max(1.0, lease_seconds() / 3))
            with self._lock:
                active = list(self._active.items())
            for step_id, token in active:
                try:
                    StepRun.objects.unscoped().filter(
                        pk=step_id, claim_token=token, status=StepStatus.RUNNING
                    ).update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds()))
                except Exception:  # the database is away: the sweeper will sort it out
                    logger.warning("lease of step %s not renewed", step_id, exc_info=True)
                    connection.close()


leases = _Leases()
_pool_lock = threading.Lock()
_pool: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _executor_pool() -> concurrent.futures.ThreadPoolExecutor:
    """A per-process pool whose threads keep their database connection between steps."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (
                os.getpid(),
                concurrent.futures.ThreadPoolExecutor(
                    max_workers=settings.STEP_EXECUTOR_THREADS, thread_name_prefix="step"
                ),
            )
        return _pool[1]


class StepAbandoned(BaseException):
    """Raised inside an executor thread still running past its step's timeout, to stop it.

    A BaseException, so an executor's ``except Exception`` cannot swallow it; the executor
    pool's work item catches it and the thread goes back to the pool.
    """


class _ExecutorThread:
    """Which pool thread runs one step's executor, so a timeout can stop that thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None

    def enter(self) -> None:
        with self._lock:
            self._ident = threading.get_ident()

    def leave(self) -> None:
        with self._lock:
            self._ident = None

    def stop(self) -> bool:
        """Raise ``StepAbandoned`` in the thread if it still runs this step; whether it did.

        Python delivers it at the thread's next bytecode, so pure-Python work (a loop, a
        parser) stops at once and blocking I/O when it returns. C code holding the
        interpreter cannot be interrupted by anything in the process: what a tenant can make
        C code do is bounded where it runs (RE2 regexes, template and calculator limits,
        no CEL comprehensions).
        """
        with self._lock:  # leave() cannot run meanwhile: the thread is still in the step
            ident, self._ident = self._ident, None
            if ident is None:
                return False
            done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(StepAbandoned)
            )
            return done == 1


def _usable_connection() -> None:
    if connection.connection is not None and not connection.is_usable():
        connection.close()


def _run_executor(step: StepRun, token: str) -> StepOutcome:
    from runs.engine.executors import execute

    run = step.run
    definition = definition_of(run)
    step_def = definition.step(step.step_key)
    timeout = step_def.timeout_seconds or settings.STEP_DEFAULT_TIMEOUT_SECONDS
    started = time.monotonic()
    deadline = started + timeout
    if run.deadline is not None:
        deadline = min(deadline, started + (run.deadline - timezone.now()).total_seconds())
    abandoned = threading.Event()
    counter = itertools.count(step.state.get("calls_started", 0) if step.state else 0)

    def check_cancel() -> None:
        if abandoned.is_set():
            raise StepCancelled("the step was abandoned after its timeout")
        status = Run.objects.unscoped().filter(pk=run.pk).values_list("status", flat=True).first()
        if status not in ACTIVE_RUN:
            raise StepCancelled(f"the run is {status}")

    def emit_now(type: str, payload: dict[str, Any]) -> None:
        if abandoned.is_set():
            raise StepCancelled("the step was abandoned after its timeout")
        emit(run=run, type=type, step_key=step.step_key, payload=clip(payload))

    def save_state(state: dict[str, Any]) -> None:
        StepRun.objects.unscoped().filter(pk=step.pk, claim_token=token).update(state=state)

    ctx = StepContext(
        run=run,
        step=step,
        step_def=step_def,
        definition=definition,
        run_context=dict(run.context),
        deadline=deadline,
        emit=emit_now,
        check_cancel=check_cancel,
        next_call_index=lambda: next(counter),
        save_state=save_state,
    )
    current = context.current()
    thread = _ExecutorThread()

    def target() -> StepOutcome:
        thread.enter()
        token_ctx = context.set_context(
            dataclasses.replace(current, tenant=run.tenant, system=f"worker:{step.claimed_by}")
        )
        try:
            if abandoned.is_set():  # started only after its timeout (every thread was busy)
                raise StepCancelled("the step was abandoned after its timeout")
            _usable_connection()
            if ctx.policy().policy_set.budgets:
                ctx.policy().step_started()
            return execute(ctx)
        finally:
            # leave() first: a StepAbandoned sent before it lands in this frame (the Python
            # call below), never in the pool's code after it
            thread.leave()
            context.reset_context(token_ctx)

    leases.hold(step.pk, token)
    try:
        future = _executor_pool().submit(target)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            abandoned.set()
            future.cancel()  # not started yet: it never will
            if thread.stop():
                logger.warning("step %s passed its timeout: its executor was stopped", step.pk)
            raise StepFailure(
                f"the step timed out after {timeout:g} s", code="timeout", retryable=True
            ) from None
    finally:
        leases.release(step.pk)


def execute_step(step_id: int, worker: str) -> None:
    """Task body: claim, execute, finish; continue with the single next step when there is one."""
    next_id: int | None = step_id
    while next_id is not None:
        claimed = claim(next_id, worker)
        if claimed is None:
            return
        step, token = claimed
        next_id = None
        try:
            outcome = _run_executor(step, token)
        except StepCancelled as exc:
            _finish_cancelled(step, token, str(exc))
        except StepWaiting as waiting:
            _finish_waiting(step, token, waiting)
        except StepFailure as failure:
            _finish_failure(step, token, failure)
        except SecretDecryptionError as exc:  # keys rotated without this worker: say so
            _finish_failure(step, token, StepFailure(str(exc), code="secrets_unusable"))
        except Exception as exc:  # a bug in an executor must not kill the worker loop
            logger.exception("step %s crashed", step.pk)
            _finish_failure(
                step,
                token,
                StepFailure(
                    f"internal error: {type(exc).__name__}: {exc}",
                    code="internal_error",
                    retryable=True,
                ),
            )
        else:
            new_ids = _finish_success(step, token, outcome)
            if len(new_ids) == 1:
                next_id = new_ids[0]
    # once per task, not per step: the fast path keeps its connection between steps
    close_old_connections()


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


def _lock_run(step: StepRun) -> Run:
    return lock_run(step.run_id)


def _finish_success(step: StepRun, token: str, outcome: StepOutcome) -> list[int]:
    with transaction.atomic():
        run = _lock_run(step)
        if run.status not in ACTIVE_RUN:
            # the run ended while the step ran: its late result is discarded, never recorded
            _cancel_late_step(run, step, token, outcome)
            return []
        now = timezone.now()
        updated = (
            StepRun.objects.unscoped()
            .filter(pk=step.pk, status=StepStatus.RUNNING, claim_token=token)
            .update(
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
        )
        if updated != 1:
            return []  # our lease was taken over (the sweeper re-queued the step)
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
        new_ids = advance(run, [step.step_key])
    fast = new_ids[0] if len(new_ids) == 1 else None
    dispatch([i for i in new_ids if i != fast])
    if fast is not None:
        # Safety net for the fast path: if this worker dies before claiming it, the
        # sweeper re-dispatches the queued step.
        return [fast]
    return []


def _cancel_late_step(
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
    updated = (
        StepRun.objects.unscoped()
        .filter(pk=step.pk, status=StepStatus.RUNNING, claim_token=token)
        .update(
            status=StepStatus.CANCELLED,
            lease_expires_at=None,
            claim_token="",
            finished_at=now,
            updated_at=now,
            **spent,
        )
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


def _finish_failure(step: StepRun, token: str, failure: StepFailure) -> None:
    with transaction.atomic():
        run = _lock_run(step)
        if run.status not in ACTIVE_RUN:
            _cancel_late_step(run, step, token)
            return
        current = (
            StepRun.objects.unscoped()
            .filter(pk=step.pk, status=StepStatus.RUNNING, claim_token=token)
            .first()
        )
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
            dispatch([step.pk], countdown=delay)
            return
        _apply_on_error(run, current, step_def, failure)


def _apply_on_error(
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
        dispatch([step.pk])
        return
    if on_error == "escalate" and escalate:
        from policies.services import approval_create

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
        _mark_waiting(run)
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
    dispatch(advance(run, [step.step_key]))


def _mark_waiting(run: Run) -> None:
    if run.status != RunStatus.WAITING:
        Run.objects.unscoped().filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.WAITING, updated_at=timezone.now()
        )
        run.status = RunStatus.WAITING
        emit(run=run, type="run.waiting", payload={})


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


def _finish_waiting(step: StepRun, token: str, waiting: StepWaiting) -> None:
    approval = waiting.approval
    with transaction.atomic():
        run = _lock_run(step)
        if run.status not in ACTIVE_RUN:
            _cancel_late_step(run, step, token, waiting)
            from policies.services import approvals_cancel_for_run

            approvals_cancel_for_run(run=run)  # opened by the step after the run ended
            return
        updated = (
            StepRun.objects.unscoped()
            .filter(pk=step.pk, status=StepStatus.RUNNING, claim_token=token)
            .update(
                status=StepStatus.WAITING,
                lease_expires_at=None,
                claim_token="",
                updated_at=timezone.now(),
            )
        )
        if updated != 1:
            return
        _account_waiting(run, step, waiting)
        _mark_waiting(run)
        emit(
            run=run,
            type="step.waiting",
            step_key=step.step_key,
            payload={"approval": approval.pk, "title": approval.title, "kind": approval.kind},
        )


def _finish_cancelled(step: StepRun, token: str, reason: str) -> None:
    with transaction.atomic():
        run = _lock_run(step)
        updated = (
            StepRun.objects.unscoped()
            .filter(pk=step.pk, status=StepStatus.RUNNING, claim_token=token)
            .update(
                status=StepStatus.CANCELLED,
                lease_expires_at=None,
                claim_token="",
                finished_at=timezone.now(),
                updated_at=timezone.now(),
            )
        )
        if updated == 1:
            emit(run=run, type="step.cancelled", step_key=step.step_key, payload={"reason": reason})


def resolve_waiting_step(
    *, step: StepRun, output: Any = None, failure: StepFailure | None = None
) -> None:
    """A person answered: finish the waiting step and advance (inside the caller's atomic)."""
    run = _lock_run(step)
    if run.status not in ACTIVE_RUN:
        return
    now = timezone.now()
    current = StepRun.objects.unscoped().get(pk=step.pk)
    if current.status != StepStatus.WAITING:
        return
    if failure is not None:
        StepRun.objects.unscoped().filter(pk=step.pk).update(status=StepStatus.RUNNING)
        current.status = StepStatus.RUNNING
        _restore_running(run)
        # A person's "no" is final: escalating it again would ask the same question forever.
        _apply_on_error(
            run, current, definition_of(run).step(step.step_key), failure, escalate=False
        )
        return
    StepRun.objects.unscoped().filter(pk=step.pk).update(
        status=StepStatus.SUCCEEDED, output=output, finished_at=now, updated_at=now, error=None
    )
    _restore_running(run)
    emit(
        run=run,
        type="step.succeeded",
        step_key=step.step_key,
        payload={"output": clip(output), "decided": True},
    )
    dispatch(advance(run, [step.step_key]))


def requeue_waiting_step(*, step: StepRun, reason: str) -> None:
    """A decision the step waited on was made: run the step again (inside the caller's atomic).

    Used for approvals a policy asked for in the middle of a step: the step starts over,
    its calls keep their idempotency keys (so tools that honour them do not repeat side
    effects) and the policy check finds the decision.
    """
    run = _lock_run(step)
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
    _restore_running(run)
    emit(run=run, type="step.requeued", step_key=step.step_key, payload={"reason": reason})
    dispatch([step.pk])


def _restore_running(run: Run) -> None:
    still_waiting = StepRun.objects.unscoped().filter(run=run, status=StepStatus.WAITING).exists()
    if run.status == RunStatus.WAITING and not still_waiting:
        Run.objects.unscoped().filter(pk=run.pk).update(
            status=RunStatus.RUNNING, updated_at=timezone.now()
        )
        run.status = RunStatus.RUNNING
        emit(run=run, type="run.resumed", payload={"by": "decision"})


# Sweeper ----------------------------------------------------------------------------------


def sweep(now: Any = None) -> dict[str, int]:
    """Re-dispatch lost queued steps, reclaim expired leases, time out runs past deadline."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.SWEEP_REDISPATCH_AFTER_SECONDS)
    counts = {"redispatched": 0, "reclaimed": 0, "failed": 0, "timed_out": 0}
    queued = list(
        StepRun.objects.unscoped()
        .filter(
            Q(not_before__isnull=True) | Q(not_before__lte=now),
            status=StepStatus.QUEUED,
            updated_at__lt=stale,
            run__status__in=ACTIVE_RUN,
        )
        .values_list("pk", flat=True)[:1000]
    )
    if queued:
        StepRun.objects.unscoped().filter(pk__in=queued).update(updated_at=now)
        from runs.tasks import execute_step as task

        for step_id in queued:
            task.delay(step_id)
        counts["redispatched"] = len(queued)
    expired = (
        StepRun.objects.unscoped()
        .filter(status=StepStatus.RUNNING, lease_expires_at__lt=now)
        .select_related("run")[:1000]
    )
    for step in expired:
        with transaction.atomic():
            run = _lock_run(step)
            current = (
                StepRun.objects.unscoped()
                .filter(pk=step.pk, status=StepStatus.RUNNING, lease_expires_at__lt=now)
                .first()
            )
            if current is None:
                continue
            limit = max(CRASH_ATTEMPTS, current.max_attempts)
            if run.status not in ACTIVE_RUN:
                StepRun.objects.unscoped().filter(pk=step.pk).update(
                    status=StepStatus.CANCELLED,
                    claim_token="",
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                )
                continue
            if current.delivery_count >= limit:
                counts["failed"] += 1
                _apply_on_error(
                    run,
                    current,
                    definition_of(run).step(current.step_key),
                    StepFailure(
                        f"the worker running this step was lost {current.delivery_count} times",
                        code="worker_lost",
                        retryable=False,
                    ),
                )
                continue
            StepRun.objects.unscoped().filter(pk=step.pk).update(
                status=StepStatus.QUEUED,
                claim_token="",
                lease_expires_at=None,
                not_before=None,
                updated_at=now,
            )
            emit(
                run=run,
                type="step.reclaimed",
                step_key=current.step_key,
                payload={"worker": current.claimed_by, "deliveries": current.delivery_count},
            )
            dispatch([current.pk])
            counts["reclaimed"] += 1
    overdue = Run.objects.unscoped().filter(status__in=ACTIVE_RUN, deadline__lt=now)[:500]
    for run in overdue:
        with transaction.atomic():
            run = lock_run(run.pk)
            if run.status in ACTIVE_RUN:
                finish_run(run, RunStatus.TIMED_OUT, "the run passed its deadline")
                counts["timed_out"] += 1
    return counts


def is_terminal(status: str) -> bool:
    return status in TERMINAL_RUN_STATUSES

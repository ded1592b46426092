"""Claiming a step and running its executor: the conditional claim, the lease heartbeat,
the per-process executor pool, the step timeout and the step's cancel scope."""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import itertools
import logging
import os
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane import aio, context
from controlplane.payloads import clip
from runs.choices import RunStatus, StepStatus
from runs.events import emit
from runs.execution.executors import execute
from runs.execution.inflight import scopes
from runs.execution.outcomes import StepAbandoned, StepCancelled, StepFailure, StepOutcome
from runs.execution.policy_guard import StepPolicy
from runs.execution.step_context import StepContext, definition_of, lease_seconds
from runs.execution.transitions import ACTIVE_RUN, finish_run, lock_run
from runs.models import Run, StepRun

logger = logging.getLogger(__name__)
# how often an executor's check_cancel reads the run's status itself (the run-ended
# announcement normally tells it at once)
CANCEL_POLL_SECONDS = 1.0


def _claim_values(token: str, worker: str, now: Any) -> dict[str, Any]:
    return {
        "status": StepStatus.RUNNING,
        "claim_token": token,
        "claimed_by": worker[:200],
        "lease_expires_at": now + timedelta(seconds=lease_seconds()),
        "attempt": F("attempt") + 1,
        "delivery_count": F("delivery_count") + 1,
        "started_at": now,
        "updated_at": now,
    }


def _started(run: Run, step: StepRun, worker: str) -> None:
    emit(
        run=run,
        type="step.started",
        step_key=step.step_key,
        payload={"attempt": step.attempt, "worker": worker},
    )


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
        .update(**_claim_values(token, worker, now))
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
        _started(run, step, worker)
    return step, token


def claim_in_hand(run: Run, step: StepRun, worker: str) -> tuple[StepRun, str] | None:
    """The fast path: claim ``step``, just created by the transaction that finished its
    predecessor (run row locked, run running), in that same transaction: no second read of
    the step or the run. None when the step must wait (``not_before``) or the run is past
    its deadline (the ordinary claim then sorts it out)."""
    now = timezone.now()
    if step.not_before is not None or (run.deadline and run.deadline <= now):
        return None
    token = uuid.uuid4().hex
    values = _claim_values(token, worker, now)
    if (
        StepRun.objects.unscoped().filter(pk=step.pk, status=StepStatus.QUEUED).update(**values)
        != 1
    ):
        return None
    values.pop("attempt"), values.pop("delivery_count")
    for name, value in values.items():
        setattr(step, name, value)
    step.attempt += 1
    step.delivery_count += 1
    step.run = run
    _started(run, step, worker)
    return step, token


class _Leases:
    """One heartbeat thread per process renews the lease of every step it is running, and
    stops those whose run ended (the fallback for a lost run-ended announcement)."""

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
            # every lease in one statement: with hundreds of steps in flight, one UPDATE each
            # took longer than a short lease. Tokens are random and unique, so a row
            # re-claimed by another worker (a new token) is never renewed by this one.
            for start in range(0, len(active), 1000):
                batch = active[start : start + 1000]
                try:
                    StepRun.objects.unscoped().filter(
                        pk__in=[step_id for step_id, _ in batch],
                        claim_token__in=[token for _, token in batch],
                        status=StepStatus.RUNNING,
                    ).update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds()))
                except Exception:  # the database is away: the sweeper will sort it out
                    logger.warning("leases of %s steps not renewed", len(batch), exc_info=True)
                    connection.close()
            try:
                run_ids = scopes.run_ids()
                if run_ids:
                    ended = (
                        Run.objects.unscoped().filter(pk__in=run_ids).exclude(status__in=ACTIVE_RUN)
                    )
                    for run_id, status in ended.values_list("pk", "status"):
                        scopes.cancel_run(run_id, f"the run is {status}")
            except Exception:
                logger.warning("run status check failed", exc_info=True)
                connection.close()
            aio.release_db()


leases = _Leases()
_pool_lock = threading.Lock()
_pool: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _executor_pool() -> concurrent.futures.ThreadPoolExecutor:
    """A per-process pool for executors: one thread per step in flight (inflight.py bounds
    them), so a step never queues behind another's executor."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (
                os.getpid(),
                concurrent.futures.ThreadPoolExecutor(
                    max_workers=settings.STEP_MAX_IN_FLIGHT, thread_name_prefix="step"
                ),
            )
        return _pool[1]


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


def run_executor(step: StepRun, token: str) -> StepOutcome:
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
    # cancelled by the run-ended announcement (inflight.py) or the timeout: aborts the I/O
    scope = aio.CancelScope(StepCancelled)
    checked = [time.monotonic()]  # the claim just saw the run active

    def check_cancel() -> None:
        if abandoned.is_set():
            raise StepCancelled("the step was abandoned after its timeout")
        scope.check()
        # the announcement can be lost (Redis away): read the status now and then
        if time.monotonic() - checked[0] >= CANCEL_POLL_SECONDS:
            checked[0] = time.monotonic()
            status = (
                Run.objects.unscoped().filter(pk=run.pk).values_list("status", flat=True).first()
            )
            if status not in ACTIVE_RUN:
                scope.cancel(f"the run is {status}")
                scope.check()

    def emit_now(type: str, payload: dict[str, Any], also: Any = None) -> None:
        if abandoned.is_set():
            raise StepCancelled("the step was abandoned after its timeout")
        emit(run=run, type=type, step_key=step.step_key, payload=clip(payload), also=also)

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
        make_policy=StepPolicy,
    )
    current = context.current()
    thread = _ExecutorThread()

    def target() -> StepOutcome:
        thread.enter()
        token_ctx = context.set_context(
            dataclasses.replace(current, tenant=run.tenant, system=f"worker:{step.claimed_by}")
        )
        try:
            with scope.bound():
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
            aio.release_db()

    leases.hold(step.pk, token)
    scopes.add(run.pk, scope)
    try:
        future = _executor_pool().submit(target)
        aio.release_db()  # this thread only waits now; the executor needs a connection
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            abandoned.set()
            future.cancel()  # not started yet: it never will
            scope.cancel("the step was abandoned after its timeout")  # closes its I/O
            if thread.stop():
                logger.warning("step %s passed its timeout: its executor was stopped", step.pk)
            raise StepFailure(
                f"the step timed out after {timeout:g} s", code="timeout", retryable=True
            ) from None
    finally:
        scopes.remove(run.pk, scope)
        leases.release(step.pk)

"""The sweeper: re-dispatch lost queued steps, reclaim expired leases, time out overdue runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runs.choices import RunStatus, StepStatus
from runs.events import emit
from runs.execution import progress
from runs.execution.finish import apply_on_error
from runs.execution.outcomes import StepFailure
from runs.execution.step_context import definition_of
from runs.execution.transitions import ACTIVE_RUN, finish_run, lock_run
from runs.models import Run, StepRun

CRASH_ATTEMPTS = 3  # lease expiries tolerated before a step is failed


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
        # runs.tasks imports the execution modules: import it when a step is sent
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
            run = lock_run(step.run_id)
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
                apply_on_error(
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
            progress.dispatch([current.pk])
            counts["reclaimed"] += 1
    overdue = Run.objects.unscoped().filter(status__in=ACTIVE_RUN, deadline__lt=now)[:500]
    for run in overdue:
        with transaction.atomic():
            run = lock_run(run.pk)
            if run.status in ACTIVE_RUN:
                finish_run(run, RunStatus.TIMED_OUT, "the run passed its deadline")
                counts["timed_out"] += 1
    return counts

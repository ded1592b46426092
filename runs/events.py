"""Run events: gapless per-run sequence numbers, written in the caller's transaction and
published to the run's and the tenant's websocket groups after commit."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from controlplane.realtime.events import LiveEvent, publish_on_commit
from controlplane.realtime.groups import run_group, tenant_group
from runs.models import Run, RunEvent

MAX_PAYLOAD_TEXT = 4000


def _next_seq(run_id: int) -> int:
    # One statement takes the row lock and returns the new number: no gap, no duplicate.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Run._meta.db_table} SET event_seq = event_seq + 1 WHERE id = %s "  # noqa: S608
            "RETURNING event_seq",
            [run_id],
        )
        return cursor.fetchone()[0]


_RUN = Run._meta.db_table
_EVENT = RunEvent._meta.db_table
# PostgreSQL: number and insert in one statement (a data-modifying CTE holds the run row
# lock until commit, so numbers stay gapless and ordered).
_PG_INSERT = (
    f"WITH s AS (UPDATE {_RUN} SET event_seq = event_seq + 1 WHERE id = %s "  # noqa: S608
    "RETURNING event_seq) "
    f"INSERT INTO {_EVENT} (tenant_id, run_id, seq, type, step_key, payload, created_at) "
    "SELECT %s, %s, s.event_seq, %s, %s, %s, %s FROM s RETURNING id, seq"
)


def _insert(run: Run, type: str, payload: dict[str, Any] | None, step_key: str) -> RunEvent:
    event = RunEvent(
        tenant_id=run.tenant_id,
        run_id=run.pk,
        type=type,
        step_key=step_key,
        payload=payload or {},
        created_at=timezone.now(),
    )
    if connection.vendor == "postgresql":
        field = RunEvent._meta.get_field("payload")
        with connection.cursor() as cursor:
            cursor.execute(
                _PG_INSERT,
                [
                    run.pk,
                    run.tenant_id,
                    run.pk,
                    type,
                    step_key,
                    field.get_db_prep_save(event.payload, connection),
                    event.created_at,
                ],
            )
            event.pk, event.seq = cursor.fetchone()
        event._state.adding = False
        return event
    event.seq = _next_seq(run.pk)
    event.save(force_insert=True)
    return event


def emit(
    *, run: Run, type: str, payload: dict[str, Any] | None = None, step_key: str = ""
) -> RunEvent:
    """Append an event to ``run`` (atomic with the caller) and publish it after commit."""
    if connection.in_atomic_block:  # inside the caller's transaction: no savepoint needed
        event = _insert(run, type, payload, step_key)
    else:
        with transaction.atomic():
            event = _insert(run, type, payload, step_key)
    seq = event.seq
    data = {
        "run": run.pk,
        "seq": seq,
        "type": type,
        "step": step_key,
        "payload": event.payload,
        "created_at": event.created_at.isoformat(),
        "run_status": run.status,
    }
    live = LiveEvent(
        type="live.event", kind="run.event", tenant=run.tenant.slug, seq=seq, data=data
    )
    publish_on_commit(run_group(run.tenant_id, run.pk), live)
    publish_on_commit(tenant_group(run.tenant_id), live)
    return event


def clip(value: Any, limit: int = MAX_PAYLOAD_TEXT) -> Any:
    """Shorten long strings inside an event payload (the full data stays on the step)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… ({len(value)} chars)"
    if isinstance(value, dict):
        return {k: clip(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clip(v, limit) for v in value[:200]]
    return value

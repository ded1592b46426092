"""Run events: gapless per-run sequence numbers, written in the caller's transaction and
published to the run's and the tenant's websocket groups after commit.

An event that changes what a runs list shows (a run's status, its finished steps) also
publishes a small ``run.updated`` snapshot of the run to the tenant's runs group.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypedDict

from django.db import connection, transaction
from django.db.models import Model
from django.db.models.sql import InsertQuery
from django.utils import timezone

from controlplane.realtime.events import LiveEvent, publish_on_commit
from controlplane.realtime.groups import run_group, runs_group, tenant_group
from runs.models import Run, RunEvent
from runs.selectors import with_finished_steps

# events after which a runs list row changes: every run.* event, and a step's end (progress)
PROGRESS_EVENT_TYPES = frozenset({"step.succeeded", "step.failed", "step.skipped"})


class RunEventData(TypedDict):
    """``data`` of a ``run.event`` message: one RunEvent as stored."""

    run: int
    seq: int
    type: str
    step: str
    payload: Any
    created_at: str  # ISO 8601
    run_status: str


class RunUpdateData(TypedDict):
    """``data`` of a ``run.updated`` message: the run as its list row shows it, after ``seq``."""

    run: int
    seq: int
    event: str
    status: str
    finished_steps: int
    total_steps: int
    input_tokens: int
    output_tokens: int
    cost_usd: str
    created_at: str
    finished_at: str | None


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


def _insert_sql(row: Model) -> tuple[str, list[Any]]:
    """The INSERT of an unsaved row, as Django would send it (defaults, auto fields)."""
    fields = [f for f in row._meta.local_concrete_fields if not f.primary_key]
    query = InsertQuery(type(row))
    query.insert_values(fields, [row])
    sql, params = query.get_compiler(connection=connection).as_sql()[0]
    return sql, list(params)


def _insert(
    run: Run, type: str, payload: dict[str, Any] | None, step_key: str, also: Model | None
) -> RunEvent:
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
        sql = _PG_INSERT
        params = [
            run.pk,
            run.tenant_id,
            run.pk,
            type,
            step_key,
            field.get_db_prep_save(event.payload, connection),
            event.created_at,
        ]
        if also is not None:  # one more row, written by the same statement
            also_sql, also_params = _insert_sql(also)
            sql = f"WITH also AS ({also_sql}), {_PG_INSERT.removeprefix('WITH ')}"
            params = also_params + params
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            event.pk, event.seq = cursor.fetchone()
        event._state.adding = False
        return event
    if also is not None:
        also.save(force_insert=True)
    event.seq = _next_seq(run.pk)
    event.save(force_insert=True)
    return event


def emit(
    *,
    run: Run,
    type: str,
    payload: dict[str, Any] | None = None,
    step_key: str = "",
    also: Model | None = None,
    fresh: bool = False,
) -> RunEvent:
    """Append an event to ``run`` (atomic with the caller) and publish it after commit.

    ``fresh``: ``run`` in hand is exactly the stored row with no finished step (a run just
    created), so its ``run.updated`` snapshot is built from it, not read again.

    ``also``: an unsaved row (a policy decision) stored with the event; on PostgreSQL in
    the same statement, so a step's decision costs one round trip and no transaction.
    """
    if connection.vendor == "postgresql" or connection.in_atomic_block:
        # one statement is atomic by itself; inside the caller's transaction: no savepoint
        event = _insert(run, type, payload, step_key, also)
    else:
        with transaction.atomic():
            event = _insert(run, type, payload, step_key, also)
    seq = event.seq
    data = RunEventData(
        run=run.pk,
        seq=seq,
        type=type,
        step=step_key,
        payload=event.payload,
        created_at=event.created_at.isoformat(),
        run_status=run.status,
    )
    live = LiveEvent(
        type="live.event", kind="run.event", tenant=run.tenant.slug, seq=seq, data=dict(data)
    )
    publish_on_commit(run_group(run.tenant_id, run.pk), live)
    publish_on_commit(tenant_group(run.tenant_id), live)
    if type.startswith("run.") or type in PROGRESS_EVENT_TYPES:
        update = LiveEvent(
            type="live.event",
            kind="run.updated",
            tenant=run.tenant.slug,
            seq=seq,
            data=dict(_run_update(run, seq, type, fresh)),
        )
        publish_on_commit(runs_group(run.tenant_id), update)
    return event


_MICRO = Decimal("0.000001")
_SNAPSHOT = (
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "created_at",
    "finished_at",
    "finished_steps",
)


def _run_update(run: Run, seq: int, type: str, fresh: bool = False) -> RunUpdateData:
    if fresh:
        row = {**{f: getattr(run, f) for f in _SNAPSHOT[:-1]}, "finished_steps": 0}
        row["cost_usd"] = Decimal(row["cost_usd"]).quantize(_MICRO)  # as the column reads back
    else:
        # read in the caller's transaction, so the snapshot is exactly the state after ``seq``
        row = with_finished_steps(Run.objects.unscoped().filter(pk=run.pk)).values(*_SNAPSHOT).get()
    return RunUpdateData(
        run=run.pk,
        seq=seq,
        event=type,
        status=row["status"],
        finished_steps=row["finished_steps"],
        total_steps=len((run.definition or {}).get("steps") or []),
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cost_usd=str(row["cost_usd"]),
        created_at=row["created_at"].isoformat(),
        finished_at=row["finished_at"].isoformat() if row["finished_at"] else None,
    )

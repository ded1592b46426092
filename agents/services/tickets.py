"""Ticket writes: open and update a tenant's tickets (the ticket built-in tools call these).

Each is atomic with its audit event and idempotent per key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from agents.choices import TicketPriority
from agents.models import Ticket
from agents.tools.base import ToolError
from controlplane.audit.services import audit_record, snapshot

TICKET_AUDIT_FIELDS = ["number", "title", "status", "priority", "customer", "data"]
MAX_REMEMBERED_UPDATE_KEYS = 100


_NUMBER_LOCK = 0x7469636B  # advisory lock class of ticket numbering ("tick")


def _stored_key(key: str | None) -> str:
    if not key:
        return ""
    if len(key) <= 200:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def ticket_create(
    *,
    tenant: Any,
    title: str,
    description: str = "",
    priority: str = TicketPriority.NORMAL,
    customer: str = "",
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    caller: str = "",
) -> tuple[Ticket, bool]:
    """Open a ticket with the tenant's next number; ``(ticket, created)``.

    Atomic with its ``ticket.create`` audit event. Idempotent per key: when a ticket with
    ``idempotency_key`` exists, it is returned unchanged with ``created=False`` and nothing
    is written. Safe under concurrency: a clash on the number or the key retries.
    """
    key = _stored_key(idempotency_key)
    tickets = Ticket.objects.for_tenant(tenant)
    if connection.vendor == "postgresql":
        # One number at a time per tenant, until commit: with hundreds of steps opening
        # tickets at once, "the largest number + 1, retry on a clash" ran out of retries
        # (27 of 200 concurrent creates failed). SQLite already serialises writers.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_NUMBER_LOCK, tenant.pk])
    for _attempt in range(10):
        if key:
            existing = tickets.filter(idempotency_key=key).first()
            if existing is not None:
                return existing, False
        number = (tickets.aggregate(n=Max("number"))["n"] or 0) + 1
        try:
            with transaction.atomic():
                ticket = Ticket.objects.for_tenant(tenant).create(
                    tenant=tenant,
                    number=number,
                    title=title,
                    description=description,
                    priority=priority,
                    customer=customer,
                    data=dict(data or {}),
                    idempotency_key=key,
                )
        except IntegrityError:
            continue  # another transaction took the number or the key: look again
        audit_record(
            action="ticket.create",
            target=ticket,
            tenant=tenant,
            after=snapshot(ticket, TICKET_AUDIT_FIELDS),
            metadata={"caller": caller, "idempotency_key": key},
        )
        return ticket, True
    raise ToolError(
        "Could not allocate a ticket number; try again.", code="upstream_error", retryable=True
    )


@transaction.atomic
def ticket_update(
    *,
    tenant: Any,
    number: int,
    status: str | None = None,
    priority: str | None = None,
    note: str | None = None,
    idempotency_key: str | None = None,
    caller: str = "",
) -> tuple[Ticket, list[str], bool]:
    """Change a ticket's status or priority and/or add a note; ``(ticket, changed, replayed)``.

    Atomic with its ``ticket.update`` audit event (written only when something changed).
    Idempotent per key: a key already applied to this ticket changes nothing and returns
    ``replayed=True``. Raises ``Ticket.DoesNotExist`` for an unknown number.
    """
    ticket = Ticket.objects.for_tenant(tenant).select_for_update().get(number=number)
    key = _stored_key(idempotency_key)
    data = dict(ticket.data or {})
    applied = list(data.get("update_keys") or [])
    if key and key in applied:
        return ticket, [], True
    before = snapshot(ticket, TICKET_AUDIT_FIELDS)
    changed: list[str] = []
    if status is not None and status != ticket.status:
        ticket.status = status
        changed.append("status")
    if priority is not None and priority != ticket.priority:
        ticket.priority = priority
        changed.append("priority")
    if note:
        notes = data.get("notes") if isinstance(data.get("notes"), list) else []
        data["notes"] = [
            *notes,
            {"text": note, "by": caller, "at": timezone.now().isoformat()},
        ]
        changed.append("notes")
    if not changed:
        return ticket, [], False
    if key:
        data["update_keys"] = [*applied, key][-MAX_REMEMBERED_UPDATE_KEYS:]
    ticket.data = data
    ticket.save(update_fields=["status", "priority", "data", "updated_at"])
    audit_record(
        action="ticket.update",
        target=ticket,
        tenant=tenant,
        before=before,
        after=snapshot(ticket, TICKET_AUDIT_FIELDS),
        metadata={"caller": caller, "idempotency_key": key, "changed": changed},
    )
    return ticket, changed, False

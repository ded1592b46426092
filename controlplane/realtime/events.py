"""Typed live-event payloads shared by the publisher and the consumer; published after commit."""

from __future__ import annotations

from typing import Any, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from controlplane.realtime.groups import tenant_group


class LiveEvent(TypedDict):
    """One message pushed to browsers: what happened, to what, with its sequence number."""

    type: str  # the consumer method that forwards it
    kind: str  # e.g. "audit.event", "run.updated"
    tenant: str
    seq: int
    data: dict[str, Any]


def publish_on_commit(group: str, event: LiveEvent) -> None:
    """Send ``event`` to ``group`` once the current transaction commits (never before)."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, event)

    transaction.on_commit(send, robust=True)


def publish_tenant_event(*, tenant: Any, kind: str, seq: int, data: dict[str, Any]) -> None:
    publish_on_commit(
        tenant_group(tenant.pk),
        LiveEvent(type="live.event", kind=kind, tenant=tenant.slug, seq=seq, data=data),
    )

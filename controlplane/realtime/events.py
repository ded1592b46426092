"""Typed live-event payloads shared by the publisher and the consumer; published after commit."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from controlplane.realtime.groups import tenant_group


class LiveEvent(TypedDict):
    """One message pushed to browsers: what happened, to what, with its sequence number."""

    type: str  # the consumer method that forwards it
    kind: str  # e.g. "audit.event", "run.updated"
    tenant: str
    seq: int
    data: dict[str, Any]


logger = logging.getLogger(__name__)


class _Publisher:
    """Sends to a network channel layer from one background event loop per process.

    A publish never blocks the caller (a worker finishing a step) and the layer's
    connection pool, which belongs to one event loop, is reused instead of being rebuilt
    for every message. Events are also in the database, so a publish lost with a dying
    process costs a client nothing: it resumes from the last sequence number it saw.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._pid: int | None = None

    def _running(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue]:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # new process after fork
                loop = asyncio.new_event_loop()
                queue: asyncio.Queue = asyncio.Queue()
                threading.Thread(
                    target=self._serve, args=(loop, queue), name="live-publisher", daemon=True
                ).start()
                self._loop, self._queue, self._pid = loop, queue, os.getpid()
            return self._loop, self._queue

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        async def drain() -> None:
            while True:
                group, message = await queue.get()
                try:
                    # one at a time: events of a run reach its group in commit order
                    await get_channel_layer().group_send(group, message)
                except Exception as exc:
                    logger.warning("live event not published: %s", exc)

        asyncio.set_event_loop(loop)
        loop.run_until_complete(drain())

    def send(self, group: str, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer):
            # in-process layer (embedded mode): deliver synchronously, nothing to reuse
            async_to_sync(layer.group_send)(group, message)
            return
        loop, queue = self._running()
        loop.call_soon_threadsafe(queue.put_nowait, (group, message))


publisher = _Publisher()


def publish_on_commit(group: str, event: LiveEvent) -> None:
    """Send ``event`` to ``group`` once the current transaction commits (never before)."""
    transaction.on_commit(lambda: publisher.send(group, event), robust=True)


def publish_tenant_event(*, tenant: Any, kind: str, seq: int, data: dict[str, Any]) -> None:
    publish_on_commit(
        tenant_group(tenant.pk),
        LiveEvent(type="live.event", kind=kind, tenant=tenant.slug, seq=seq, data=data),
    )

"""Websockets of runs: one run's events (``/ws/t/<tenant>/runs/<id>/``, the live timeline)
and a tenant's run updates (``/ws/t/<tenant>/runs/``, the runs list).

Both need ``runs.view_run`` in the tenant (``TenantConsumer``); a run of another tenant
and a run that does not exist both close with 4404.

A run socket loses and repeats no event. It joins the run's group before it reads the
database, then sends the stored events after the client's sequence number (``?after=<seq>``
in the URL, or a ``{"resume_from": <seq>}`` message), then the live ones: a live message at
or below the last number sent was already sent from the database and is dropped; one beyond
the next number means a message was lost or overtaken, and the gap is read from the
database. The consumer handles one message at a time, so live messages that arrive while
the backlog is sent wait in its channel until the backlog is out. ``run.synced`` says the
client has every event up to its ``seq``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.template.loader import render_to_string
from django.utils.dateparse import parse_datetime

from controlplane.rbac.access import Access
from controlplane.realtime.consumers import NOT_FOUND, TenantConsumer
from controlplane.realtime.groups import run_group, runs_group
from runs.events import RunEventData, RunUpdateData
from runs.models import Run, RunEvent
from runs.presenters import duration, event_line, usd

REPLAY_BATCH = 500  # stored events read per query while catching up
MAX_ID = 2**63 - 1


def _seq(value: Any) -> int | None:
    """A sequence number sent by a client (0 or more), or None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= MAX_ID else None


def event_html(event: Any, tenant_slug: str) -> str:
    """The timeline entry of a RunEvent (or of the same fields from a live message)."""
    return render_to_string(
        "runs/_event.html", {"line": event_line(event), "tenant": {"slug": tenant_slug}}
    )


def row_cells(data: RunUpdateData) -> dict[str, str]:
    """What a runs list row shows of a run update (the status badge as HTML, the rest text)."""
    created = parse_datetime(data["created_at"])
    finished = parse_datetime(data["finished_at"]) if data["finished_at"] else None
    return {
        "status": render_to_string("runs/_status.html", {"status": data["status"]}),
        "progress": f"{data['finished_steps']} of {data['total_steps']} steps",
        "took": duration(created, finished) if finished else "\u2013",
        "tokens": f"{data['input_tokens']} in / {data['output_tokens']} out",
        "cost": usd(data["cost_usd"]),
    }


class RunEventsConsumer(TenantConsumer):
    """One run's events, in order, each once, with its timeline entry rendered as HTML."""

    required_permission = "runs.view_run"

    async def opened(self, access: Access) -> None:
        run = await self._run(access, self.scope["url_route"]["kwargs"]["run"])
        if run is None:
            await self.refuse(NOT_FOUND)
            return
        self.tenant_slug = access.tenant.slug
        self.tenant_id = access.tenant.pk
        self.run_id = run.pk
        self.last_seq = 0
        # join first, read second: an event committed after the read arrives live
        await self.join(run_group(run.tenant_id, run.pk))
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        after = _seq((query.get("after") or [None])[0])
        if after is None:  # follows from now on
            self.last_seq = await self._last_stored_seq()
            await self._synced()
        else:
            await self.resume(after)

    async def receive_json(self, content, **kwargs):
        after = _seq(content.get("resume_from")) if isinstance(content, dict) else None
        if after is None:
            await self.send_json(
                {"kind": "error", "error": 'Send {"resume_from": <sequence number>}.'}
            )
            return
        await self.resume(after)

    async def resume(self, after: int) -> None:
        """Send every stored event after ``after``, then say the client is in sync."""
        self.last_seq = after
        await self._catch_up()
        await self._synced()

    async def live_event(self, event):
        if event.get("kind") != "run.event":
            return
        seq = event["seq"]
        if seq <= self.last_seq:
            return  # already sent from the database
        if seq > self.last_seq + 1:
            await self._catch_up()  # committed, so stored: the gap and this one come from there
            return
        data: RunEventData = event["data"]
        stored = SimpleNamespace(
            seq=seq,
            type=data["type"],
            step_key=data["step"],
            payload=data["payload"],
            created_at=parse_datetime(data["created_at"]),
        )
        await self.send_json(self._message(data, event_html(stored, self.tenant_slug)))
        self.last_seq = seq

    # helpers ---------------------------------------------------------------------------------

    def _message(self, data: RunEventData, html: str) -> dict[str, Any]:
        return {
            "kind": "run.event",
            "tenant": self.tenant_slug,
            "seq": data["seq"],
            "data": data,
            "html": html,
        }

    async def _synced(self) -> None:
        await self.send_json(
            {
                "kind": "run.synced",
                "tenant": self.tenant_slug,
                "seq": self.last_seq,
                "data": {"run": self.run_id},
            }
        )

    async def _catch_up(self) -> None:
        while True:
            messages = await self._stored_after(self.last_seq)
            for message in messages:
                await self.send_json(message)
                self.last_seq = message["seq"]
            if len(messages) < REPLAY_BATCH:
                return

    @database_sync_to_async
    def _run(self, access, pk: int) -> Run | None:
        if not 0 < pk <= MAX_ID:
            return None
        run = Run.objects.for_tenant(access.tenant).filter(pk=pk).first()
        if run is None or not access.has_perm(self.required_permission, run):
            return None
        return run

    @database_sync_to_async
    def _last_stored_seq(self) -> int:
        return (
            Run.objects.for_tenant(self.tenant_id)
            .filter(pk=self.run_id)
            .values_list("event_seq", flat=True)
            .first()
            or 0
        )

    @database_sync_to_async
    def _stored_after(self, after: int) -> list[dict[str, Any]]:
        events = RunEvent.objects.for_tenant(self.tenant_id).filter(
            run_id=self.run_id, seq__gt=after
        )
        status = (
            Run.objects.for_tenant(self.tenant_id)
            .filter(pk=self.run_id)
            .values_list("status", flat=True)
            .first()
        )
        return [
            self._message(
                RunEventData(
                    run=self.run_id,
                    seq=e.seq,
                    type=e.type,
                    step=e.step_key,
                    payload=e.payload,
                    created_at=e.created_at.isoformat(),
                    run_status=status or "",  # replayed: the run's status now
                ),
                event_html(e, self.tenant_slug),
            )
            for e in events.order_by("seq")[:REPLAY_BATCH]
        ]


class RunListConsumer(TenantConsumer):
    """A tenant's run updates (created, status changed, progress): the runs list follows it.

    Carries each run's latest state, not a stream to replay: a client that reconnects
    reloads its list, and keeps a row's update only if its ``seq`` is newer than the row's.
    """

    required_permission = "runs.view_run"

    async def opened(self, access: Access) -> None:
        self.tenant_slug = access.tenant.slug
        await self.join(runs_group(access.tenant.pk))
        await self.accept()
        await self.send_json({"kind": "runs.synced", "tenant": self.tenant_slug, "seq": 0})

    async def live_event(self, event):
        if event.get("kind") != "run.updated":
            return
        data: RunUpdateData = event["data"]
        await self.send_json(
            {
                "kind": "run.updated",
                "tenant": self.tenant_slug,
                "seq": event["seq"],
                "data": data,
                "cells": row_cells(data),
            }
        )

"""Run events reach the run's and the tenant's channel groups after commit, in order."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from controlplane import context
from controlplane.realtime.groups import run_group, tenant_group
from runs import services, workflow_services
from runs.models import RunEvent
from tests.agents.registry_factories import make_tool
from tests.runs.conftest import wait_for_run


async def _collect(layer, channel, count, timeout=15.0):
    messages = []
    try:
        while len(messages) < count:
            messages.append(await asyncio.wait_for(layer.receive(channel), timeout))
    except TimeoutError:
        pass
    return messages


def test_events_are_published_to_run_and_tenant_groups(world, worker):
    layer = get_channel_layer()
    with context.tenant_context(world.acme):
        make_tool(world.acme, slug="calc")
    with context.system_context("tests", tenant=world.acme):
        workflow = workflow_services.workflow_create(
            tenant=world.acme,
            slug="live",
            name="live",
            definition={
                "input_schema": {"type": "object"},
                "example_input": {},
                "steps": [
                    {
                        "id": f"s{i}",
                        "type": "tool",
                        "tool": "calc",
                        "arguments": {"expression": f"{i}+1"},
                    }
                    for i in range(3)
                ],
            },
        )

    def run_it():
        with context.system_context("tests", tenant=world.acme):
            run, _ = services.run_start(tenant=world.acme, workflow=workflow, input={})
        run = wait_for_run(run)
        stored = list(
            RunEvent.objects.unscoped()
            .filter(run_id=run.pk)
            .order_by("seq")
            .values_list("seq", "type")
        )
        return run, stored

    async def follow():
        # one event loop throughout: a pub/sub layer's subscriptions belong to their loop
        tenant_channel = await layer.new_channel()
        await layer.group_add(tenant_group(world.acme.pk), tenant_channel)
        run, stored = await database_sync_to_async(run_it)()
        received = await _collect(layer, tenant_channel, len(stored))
        # a late subscriber to the run group misses nothing: it fetches by seq from the API
        run_channel = await layer.new_channel()
        await layer.group_add(run_group(world.acme.pk, run.pk), run_channel)
        return stored, received, await _collect(layer, run_channel, 1, timeout=1.0)

    stored, received, late = async_to_sync(follow)()
    assert [(m["data"]["seq"], m["data"]["type"]) for m in received] == stored
    assert all(m["kind"] == "run.event" and m["tenant"] == "acme" for m in received)
    assert late == []

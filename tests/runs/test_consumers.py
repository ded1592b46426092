"""The run websockets (``runs.consumers``) over the real channel layer of the settings:
who may connect, and a run's events sent in order, each once, across resumes and lost
messages."""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from controlplane import context
from controlplane.asgi import application
from controlplane.realtime import events as realtime_events
from controlplane.realtime.groups import run_group
from runs import services, workflow_services
from runs.choices import RunStatus
from runs.events import emit
from runs.execution import progress
from runs.models import Run
from tests.agents.registry_factories import make_tool

pytestmark = pytest.mark.django_db(transaction=True)

DEFINITION = {
    "input_schema": {"type": "object"},
    "example_input": {},
    "steps": [{"id": "calc", "type": "tool", "tool": "calc", "arguments": {"expression": "1+1"}}],
}


@pytest.fixture(autouse=True)
def _no_broker():
    # runs stay queued: these tests emit their events themselves
    with mock.patch.object(progress, "dispatch"):
        yield


def _run(tenant) -> Run:
    make_tool(tenant, slug="calc")
    with context.system_context("tests", tenant=tenant):
        workflow = workflow_services.workflow_create(
            tenant=tenant, slug="wf", name="WF", definition=DEFINITION
        )
        run, _ = services.run_start(tenant=tenant, workflow=workflow, input={})
        return run


def _emit(run: Run, count: int = 1, step: str = "calc") -> None:
    """``count`` events, each in its own transaction (published after its commit)."""
    for _ in range(count):
        with transaction.atomic():
            emit(run=run, type="step.started", step_key=step, payload={})


def _cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _open(path: str, user=None, origin: bytes = b"http://127.0.0.1"):
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(_cookie_for)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def _refusal(path: str, user=None) -> int:
    """The close code of a refused socket (refusals accept, then close with their code)."""
    communicator = await _open(path, user)
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    await communicator.wait()
    return message["code"]


async def _messages(communicator, count: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=5) for _ in range(count)]


def _seqs(messages: list[dict]) -> list[tuple[str, int]]:
    return [(m["kind"], m["seq"]) for m in messages]


class TestRunSocketAccess:
    covered_websocket_routes = ["ws/t/<slug:tenant>/runs/<int:run>/", "ws/t/<slug:tenant>/runs/"]

    def test_anonymous_is_refused_with_4401(self, world):
        run = _run(world.acme)

        async def scenario():
            return [
                await _refusal(f"/ws/t/acme/runs/{run.pk}/"),
                await _refusal("/ws/t/acme/runs/"),
            ]

        assert async_to_sync(scenario)() == [4401, 4401]

    def test_non_member_is_refused(self, world):
        run = _run(world.acme)

        async def scenario():
            return [
                await _refusal(f"/ws/t/acme/runs/{run.pk}/", world.charlie),
                await _refusal("/ws/t/acme/runs/", world.charlie),
                await _refusal(f"/ws/t/no-such-tenant/runs/{run.pk}/", world.alice),
            ]

        assert async_to_sync(scenario)() == [4403, 4403, 4403]

    def test_another_tenants_run_is_refused_like_a_missing_run(self, world):
        acme_run = _run(world.acme)
        globex_run = _run(world.globex)

        async def scenario():
            return [
                await _refusal(f"/ws/t/acme/runs/{globex_run.pk}/", world.alice),
                await _refusal(f"/ws/t/globex/runs/{acme_run.pk}/", world.charlie),
                await _refusal(f"/ws/t/acme/runs/{globex_run.pk + 1000}/", world.alice),
                await _refusal(f"/ws/t/acme/runs/{2**64}/", world.alice),
            ]

        assert async_to_sync(scenario)() == [4404, 4404, 4404, 4404]

    def test_foreign_origin_is_refused(self, world):
        run = _run(world.acme)

        async def scenario():
            headers = [
                (b"origin", b"https://evil.example"),
                (b"host", b"127.0.0.1"),
                (b"cookie", await database_sync_to_async(_cookie_for)(world.bob)),
            ]
            communicator = WebsocketCommunicator(
                application, f"/ws/t/acme/runs/{run.pk}/", headers=headers
            )
            connected, _ = await communicator.connect(timeout=5)
            await communicator.disconnect()
            return connected

        assert async_to_sync(scenario)() is False


class TestRunSocket:
    def test_viewer_follows_a_run_from_now_on(self, world):
        run = _run(world.acme)  # events 1 and 2: run.created, step.queued

        async def scenario():
            communicator = await _open(f"/ws/t/acme/runs/{run.pk}/", world.bob)
            synced = await communicator.receive_json_from(timeout=5)
            await database_sync_to_async(_emit)(run)
            event = await communicator.receive_json_from(timeout=5)
            await communicator.disconnect()
            return synced, event

        synced, event = async_to_sync(scenario)()
        assert synced == {
            "kind": "run.synced",
            "tenant": "acme",
            "seq": 2,
            "data": {"run": run.pk},
        }
        assert event["kind"] == "run.event" and event["seq"] == 3
        assert event["data"]["type"] == "step.started" and event["data"]["step"] == "calc"
        assert 'id="event-3"' in event["html"] and "Step calc started" in event["html"]

    def test_resume_replays_missed_events_in_order_without_duplicates(self, world):
        run = _run(world.acme)
        _emit(run, 3)  # events 1..5 stored; nobody listened

        async def scenario():
            got = []
            communicator = await _open(f"/ws/t/acme/runs/{run.pk}/?after=2", world.bob)
            got += await _messages(communicator, 4)  # 3, 4, 5 from the database, then synced
            # a late copy of an event already sent (a slow publisher) is dropped
            late = {
                "type": "live.event",
                "kind": "run.event",
                "tenant": "acme",
                "seq": 4,
                "data": got[1]["data"],
            }
            await get_channel_layer().group_send(run_group(world.acme.pk, run.pk), late)
            await database_sync_to_async(_emit)(run)  # 6, live
            got += await _messages(communicator, 1)
            await communicator.send_json_to({"resume_from": 3})  # the client lost 4..6
            got += await _messages(communicator, 4)
            await database_sync_to_async(_emit)(run)  # 7, live, once
            got += await _messages(communicator, 1)
            assert await communicator.receive_nothing(timeout=0.5)
            await communicator.disconnect()
            return got

        got = async_to_sync(scenario)()
        assert _seqs(got) == [
            ("run.event", 3),
            ("run.event", 4),
            ("run.event", 5),
            ("run.synced", 5),
            ("run.event", 6),
            ("run.event", 4),
            ("run.event", 5),
            ("run.event", 6),
            ("run.synced", 6),
            ("run.event", 7),
        ]
        assert all(f'id="event-{m["seq"]}"' in m["html"] for m in got if m["kind"] == "run.event")

    def test_a_lost_live_message_is_read_from_the_database(self, world):
        run = _run(world.acme)

        def emit_two_lost_then_one():
            with mock.patch.object(realtime_events.publisher, "send"):
                _emit(run, 2)  # 3 and 4 never reach the channel layer
            _emit(run)  # 5 does

        async def scenario():
            communicator = await _open(f"/ws/t/acme/runs/{run.pk}/?after=2", world.bob)
            got = await _messages(communicator, 1)  # synced at 2
            await database_sync_to_async(emit_two_lost_then_one)()
            got += await _messages(communicator, 3)
            assert await communicator.receive_nothing(timeout=0.3)
            await communicator.disconnect()
            return got

        assert _seqs(async_to_sync(scenario)()) == [
            ("run.synced", 2),
            ("run.event", 3),
            ("run.event", 4),
            ("run.event", 5),
        ]

    def test_a_message_that_is_not_a_resume_is_answered_with_an_error(self, world):
        run = _run(world.acme)

        async def scenario():
            communicator = await _open(f"/ws/t/acme/runs/{run.pk}/", world.bob)
            await communicator.receive_json_from(timeout=5)
            await communicator.send_json_to({"resume_from": "soon"})
            answer = await communicator.receive_json_from(timeout=5)
            await communicator.disconnect()
            return answer

        assert async_to_sync(scenario)()["kind"] == "error"


class TestRunListSocket:
    def test_viewer_sees_runs_created_and_changing_status_in_its_tenant_only(self, world):
        run = _run(world.acme)

        def start_run():
            with transaction.atomic():
                Run.objects.unscoped().filter(pk=run.pk).update(status=RunStatus.RUNNING)
                run.status = RunStatus.RUNNING
                emit(run=run, type="run.started", payload={})
            _emit(run)  # not a list change: nothing sent

        def other_tenant_run():
            _run(world.globex)

        async def scenario():
            communicator = await _open("/ws/t/acme/runs/", world.bob)
            synced = await communicator.receive_json_from(timeout=5)
            await database_sync_to_async(start_run)()
            started = await communicator.receive_json_from(timeout=5)
            await database_sync_to_async(other_tenant_run)()
            assert await communicator.receive_nothing(timeout=0.5)
            await communicator.disconnect()
            return synced, started

        synced, started = async_to_sync(scenario)()
        assert synced["kind"] == "runs.synced"
        assert started["kind"] == "run.updated" and started["seq"] == 3
        assert started["data"]["run"] == run.pk and started["data"]["status"] == "running"
        assert started["data"]["event"] == "run.started"
        assert started["cells"]["progress"] == "0 of 1 steps"
        assert "status-running" in started["cells"]["status"]
        assert started["cells"]["tokens"] == "0 in / 0 out"

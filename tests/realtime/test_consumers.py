"""The tenant websocket: session auth, origin check, members only; events after commit."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from controlplane import context
from controlplane.asgi import application
from controlplane.realtime.events import publish_tenant_event


def _cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _connect(path: str, cookie: bytes | None, origin: bytes = b"http://127.0.0.1"):
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def _refusal(path: str, cookie: bytes | None) -> int:
    """The close code of a refused socket (refusals accept, then close with their code)."""
    communicator, connected, _ = await _connect(path, cookie)
    assert connected
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    await communicator.wait()
    return message["code"]


@pytest.mark.django_db(transaction=True)
class TestTenantEventsSocket:
    covered_websocket_routes = ["ws/t/<slug:tenant>/events/"]

    def test_member_receives_events_published_after_commit(self, world):
        cookie = _cookie_for(world.bob)

        async def scenario():
            communicator, connected, _ = await _connect("/ws/t/acme/events/", cookie)
            assert connected
            from channels.db import database_sync_to_async
            from django.db import transaction

            @database_sync_to_async
            def publish():
                with transaction.atomic(), context.tenant_context(world.acme):
                    publish_tenant_event(
                        tenant=world.acme, kind="audit.event", seq=7, data={"action": "x"}
                    )
                    # nothing leaves before commit
                    return True

            await publish()
            message = await communicator.receive_json_from(timeout=5)
            await communicator.disconnect()
            return message

        message = async_to_sync(scenario)()
        assert message == {
            "kind": "audit.event",
            "tenant": "acme",
            "seq": 7,
            "data": {"action": "x"},
        }

    def test_outsider_is_refused(self, world):
        cookie = _cookie_for(world.charlie)

        async def scenario():
            return await _refusal("/ws/t/acme/events/", cookie)

        # accepted, then closed: a browser sees 4403 ("refused, stop"), not 1006
        assert async_to_sync(scenario)() == 4403

    def test_anonymous_is_refused(self, world):
        async def scenario():
            return await _refusal("/ws/t/acme/events/", None)

        assert async_to_sync(scenario)() == 4401

    def test_foreign_origin_is_refused(self, world):
        cookie = _cookie_for(world.bob)

        async def scenario():
            communicator, connected, _ = await _connect(
                "/ws/t/acme/events/", cookie, origin=b"https://evil.example"
            )
            await communicator.disconnect()
            return connected

        assert async_to_sync(scenario)() is False

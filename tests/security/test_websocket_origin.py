"""Every websocket route checks the Origin of the handshake before anything else.

A signed-in member's browser session is not enough: a page on another site (cross-site
websocket hijacking), a look-alike host, a missing or "null" Origin are all refused at the
handshake, before the consumer runs. The same session from the site's own origin connects,
so the refusals are the origin check's and not the consumer's.
"""

from __future__ import annotations

import re
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from controlplane.asgi import application
from controlplane.routing import websocket_urlpatterns
from runs.execution import progress
from tests.test_tenant_matrix import Objects

pytestmark = pytest.mark.django_db(transaction=True)

FOREIGN_ORIGINS = [
    b"https://evil.example",
    b"http://127.0.0.1.evil.example",
    b"http://localhost.evil.example:8000",
    b"null",
    None,  # no Origin header at all
]
ROUTES = sorted(str(p.pattern) for p in websocket_urlpatterns)


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _handshake(path: str, cookie: bytes, origin: bytes | None) -> tuple[bool, object]:
    headers = [(b"host", b"127.0.0.1"), (b"cookie", cookie)]
    if origin is not None:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected, code


@pytest.mark.parametrize("route", ROUTES)
def test_websocket_handshake_from_a_foreign_origin_is_refused(route, world):
    keys = {"tenant": "acme"}
    if "<int:run>" in route:
        with mock.patch.object(progress, "dispatch"):  # the run stays queued; no broker
            keys["run"] = Objects(world).keys("run", world.acme)["pk"]
    path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(keys[m.group(1)]), route)
    cookie = _cookie(world.bob)

    async def scenario():
        own = await _handshake(path, cookie, b"http://127.0.0.1")
        foreign = [await _handshake(path, cookie, origin) for origin in FOREIGN_ORIGINS]
        return own, foreign

    own, foreign = async_to_sync(scenario)()
    assert own[0] is True, (route, own)  # the member's session from the site itself connects
    for origin, (connected, _) in zip(FOREIGN_ORIGINS, foreign, strict=True):
        assert connected is False, (route, origin)

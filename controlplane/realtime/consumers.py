"""Websocket consumers. Each authenticates the session, checks membership, joins only its groups."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http import Http404

from controlplane import jsoninput
from controlplane.rbac.access import Access, resolve_access
from controlplane.realtime.groups import tenant_group

# Close codes of a refused websocket (the 4000 range is the application's own).
SIGNED_OUT = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404


class JsonConsumer(AsyncJsonWebsocketConsumer):
    """Reads client messages behind the API's input limits (size, depth, NUL).

    A message that is not JSON, too large, too deep or holding a NUL is answered with
    ``{"kind": "error", "error": ...}`` and the socket stays open; before, the consumer
    raised and the socket closed with 1011 and a logged traceback.
    """

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        error = None
        if not text_data:
            error = "Send JSON text messages."
        elif len(text_data) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            error = f"Keep messages under {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} characters."
        else:
            try:
                content = jsoninput.load(text_data)
            except jsoninput.JSONInputError as exc:
                error = exc.message
            except ValueError:
                error = "This message is not valid JSON."
        if error is not None:
            await self.send_json({"kind": "error", "error": error})
            return
        await self.receive_json(content, **kwargs)


class TenantConsumer(JsonConsumer):
    """Base of a tenant's websockets: the session's access to the tenant in the URL, checked
    before any group is joined, and the groups left on disconnect.

    A refusal accepts, then closes with its code, so a browser can tell "refused" (do not
    retry) from a network failure: a handshake refused outright reaches it only as 1006.
    Signed out is 4401; not a member or without ``required_permission`` is 4403 (another
    tenant and a tenant that does not exist look the same); no such object is 4404.
    """

    required_permission: str

    async def connect(self):
        access = await self.authorize()
        if access is not None:
            await self.opened(access)

    async def opened(self, access: Access) -> None:
        """The caller may watch: join the groups, accept, send what comes first."""
        raise NotImplementedError

    async def authorize(self) -> Access | None:
        """The caller's access to the URL's tenant, or None after closing the socket."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(SIGNED_OUT)
            return None
        access = await self._access(user, self.scope["url_route"]["kwargs"]["tenant"])
        if access is None or not access.has_perm(self.required_permission):
            await self.refuse(FORBIDDEN)
            return None
        return access

    @database_sync_to_async
    def _access(self, user, slug) -> Access | None:
        try:
            return resolve_access(user=user, tenant_slug=slug)
        except Http404:
            return None

    async def refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined = [*getattr(self, "joined", []), group]

    async def disconnect(self, code):
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)


class TenantEventsConsumer(TenantConsumer):
    """Live events of one tenant (audit events now; runs join later) for its members."""

    required_permission = "audit.view_auditevent"

    async def opened(self, access: Access) -> None:
        await self.join(tenant_group(access.tenant.pk))
        await self.accept()

    async def live_event(self, event):
        await self.send_json({k: v for k, v in event.items() if k != "type"})

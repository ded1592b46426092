"""Websocket consumers. Each authenticates the session, checks membership, joins only its groups."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from controlplane.rbac.access import resolve_access
from controlplane.realtime.groups import tenant_group


class TenantEventsConsumer(AsyncJsonWebsocketConsumer):
    """Live events of one tenant (audit events now; runs join later) for its members."""

    required_permission = "audit.view_auditevent"

    async def connect(self):
        user = self.scope.get("user")
        slug = self.scope["url_route"]["kwargs"]["tenant"]
        access = await self._access(user, slug)
        if access is None or not access.has_perm(self.required_permission):
            await self.close(code=4403)
            return
        self.group = tenant_group(access.tenant.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    @database_sync_to_async
    def _access(self, user, slug):
        try:
            return resolve_access(user=user, tenant_slug=slug)
        except Http404:
            return None

    async def disconnect(self, code):
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def live_event(self, event):
        await self.send_json({k: v for k, v in event.items() if k != "type"})

"""Tool grants on an agent's page and on a tool's page: listed, granted, revoked."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpResponse
from django.shortcuts import get_object_or_404

from agents.models import ToolGrant
from agents.services.tools import tool_grant_delete
from controlplane.dashboard.pages import int_or_zero, operation


class ToolGrantsMixin:
    """The grants of the page's object (an agent or a tool), and the grant and revoke actions.

    ``grants_of`` is the grant's field that points at the page's object. A page builds its
    ``grant_form``, makes the grant in ``grant_tool`` (saying what it did) and says what a
    revoke did in ``revoked``.
    """

    grants_of: ClassVar[str]

    def grant_form(self, data=None) -> Any:
        raise NotImplementedError

    def grant_tool(self, obj: Any, data: dict[str, Any]) -> str:
        raise NotImplementedError

    def revoked(self, obj: Any, grant: ToolGrant) -> str:
        raise NotImplementedError

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        shown = "tool" if self.grants_of == "agent" else "agent"
        data.update(
            grants=ToolGrant.objects.filter(**{self.grants_of: self.object})
            .select_related(shown)
            .order_by("id"),
            can_grant=self.can("agents.add_toolgrant"),
            can_revoke=self.can("agents.delete_toolgrant"),
            grant_form=kwargs.get("grant_form") or self.grant_form(),
        )
        return data

    @operation("grant", permission="agents.add_toolgrant")
    def grant(self, obj: Any) -> HttpResponse:
        def grant(data: dict[str, Any]) -> HttpResponse:
            return self.done(self.grant_tool(obj, data), "grants")

        return self.submit(self.grant_form(self.request.POST), grant, as_="grant_form")

    @operation("revoke", permission="agents.delete_toolgrant")
    def revoke(self, obj: Any) -> HttpResponse:
        grant = get_object_or_404(
            ToolGrant.objects.filter(**{self.grants_of: obj}).select_related("tool"),
            pk=int_or_zero(self.request.POST.get("grant")),
        )
        tool_grant_delete(grant=grant)
        return self.done(self.revoked(obj, grant), "grants")

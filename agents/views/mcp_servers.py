"""MCP server pages: list, register, one server (discover its tools), edit."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.http import HttpResponse

from agents.filtersets import McpServerFilterSet
from agents.forms.mcp_servers import McpServerForm
from agents.models import McpServer, Tool
from agents.services.mcp_servers import mcp_server_create, mcp_server_update
from agents.tools.base import ToolError
from agents.views.tools import secret_header_names
from controlplane.dashboard.entity_pages import (
    EntityCreatePage,
    EntityDetailPage,
    EntityEditPage,
    EntityListPage,
    EntityPages,
)
from controlplane.dashboard.pages import operation, pretty, totals_by

MCP_SERVER_PAGES = EntityPages(
    model=McpServer,
    noun="MCP server",
    plural="mcp-servers",
    url_name="mcp-server",
    object_kwarg="server",
    create=mcp_server_create,
    update=mcp_server_update,
)


def secret_names(server: McpServer) -> dict[str, list[str]]:
    """The names of a server's secret headers and environment (values are never shown)."""
    return {
        "secret_header_names": secret_header_names(server),
        "secret_env_names": sorted(server.secret_env or {}),
    }


class McpServerListPage(EntityListPage):
    entity = MCP_SERVER_PAGES
    template_name = "agents/mcp_server_list.html"
    filterset_class = McpServerFilterSet

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        counts = totals_by(
            Tool.objects.filter(mcp_server__isnull=False), "mcp_server_id", Count("id")
        )
        data["rows"] = [(s, counts.get(s.pk, 0)) for s in data["objects"]]
        return data


class McpServerCreatePage(EntityCreatePage):
    entity = MCP_SERVER_PAGES
    template_name = "agents/mcp_server_form.html"
    form_class = McpServerForm
    success_message = "{label} registered. Discover its tools next."


class McpServerDetailPage(EntityDetailPage):
    entity = MCP_SERVER_PAGES
    template_name = "agents/mcp_server_detail.html"

    def tools_context(self, server: McpServer, **extra: Any) -> dict[str, Any]:
        tools = Tool.objects.filter(mcp_server=server).order_by("slug")
        return {
            "tenant": self.tenant,
            "server": server,
            "tools": [
                {
                    "tool": t,
                    "input_schema": pretty(t.input_schema),
                    "output_schema": pretty(t.output_schema) if t.output_schema else "",
                }
                for t in tools
            ],
            "can_change": self.can_change(),
            **extra,
        }

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(self.tools_context(self.object))
        data.update(secret_names(self.object))
        return data

    @operation("discover")
    def discover(self, server: McpServer) -> HttpResponse:
        # imported here: the MCP client library is heavy, and only discovery needs it
        from agents.tools.mcp_services import mcp_server_discover

        try:
            found = mcp_server_discover(server=server)
        except ToolError as exc:
            outcome = {"ok": False, "message": f"Discovery failed: {exc.message}"}
        else:
            names = ", ".join(t.slug for t in found) or "none"
            outcome = {"ok": True, "message": f"Discovered {len(found)} tools: {names}."}
        server.refresh_from_db()
        if self.request.htmx:
            return self.response_class(
                request=self.request,
                template="agents/_mcp_tools.html",
                # 200 either way: htmx swaps only successful answers, and the outcome says it
                context=self.tools_context(server, outcome=outcome),
            )
        answer = self.done if outcome["ok"] else self.refuse
        return answer(outcome["message"], "mcp-tools")


class McpServerEditPage(EntityEditPage):
    entity = MCP_SERVER_PAGES
    template_name = "agents/mcp_server_form.html"
    form_class = McpServerForm
    context_object_name = "server"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(secret_names(self.object))
        return data

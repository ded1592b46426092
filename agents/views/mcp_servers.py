"""MCP server pages: list, register, one server (discover its tools), edit."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect

from agents.filtersets import (
    McpServerFilterSet,
)
from agents.forms.mcp_servers import McpServerForm
from agents.models import (
    McpServer,
    Tool,
)
from agents.services.mcp_servers import mcp_server_create, mcp_server_update
from agents.tools.base import ToolError
from controlplane.dashboard.pages import (
    FormPage,
    ObjectFormPage,
    OperationsMixin,
    TenantListPage,
    TenantObjectPage,
    operation,
    pretty,
)


class McpServerListPage(TenantListPage):
    template_name = "agents/mcp_server_list.html"
    permission_required = "agents.view_mcpserver"
    nav_section = "mcp-servers"
    model = McpServer
    filterset_class = McpServerFilterSet
    add_permission = "agents.add_mcpserver"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["has_any"] = data["filtered"] or McpServer.objects.exists()
        counts: dict[int, int] = {}
        for server_id in Tool.objects.filter(mcp_server__isnull=False).values_list(
            "mcp_server_id", flat=True
        ):
            counts[server_id] = counts.get(server_id, 0) + 1
        data["rows"] = [(s, counts.get(s.pk, 0)) for s in data["objects"]]
        return data


class McpServerCreatePage(FormPage):
    template_name = "agents/mcp_server_form.html"
    permission_required = "agents.add_mcpserver"
    post_permission_required = "agents.add_mcpserver"
    nav_section = "mcp-servers"

    def get_form(self, data=None):
        return McpServerForm(data, creating=True)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["creating"] = True
        return data

    def save(self, form):
        data = dict(form.cleaned_data)
        server = mcp_server_create(
            tenant=self.tenant,
            slug=data.pop("slug"),
            name=data.pop("name"),
            transport=data.pop("transport"),
            **data,
        )
        messages.success(
            self.request, f"MCP server “{server.slug}” registered. Discover its tools next."
        )
        return redirect(self.url("mcp-server-detail", slug=server.slug))


class McpServerDetailPage(OperationsMixin, TenantObjectPage):
    template_name = "agents/mcp_server_detail.html"
    permission_required = "agents.view_mcpserver"
    post_permission_required = "agents.change_mcpserver"
    nav_section = "mcp-servers"
    model = McpServer

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
        server = self.object
        data.update(self.tools_context(server))
        data.update(
            secret_header_names=sorted(server.secret_headers or {}),
            secret_env_names=sorted(server.secret_env or {}),
        )
        return data

    @operation("disable", "enable")
    def toggle(self, server: McpServer) -> HttpResponse:
        return self.set_status(mcp_server_update, f"MCP server “{server.slug}”", server=server)

    @operation("discover")
    def discover(self, server: McpServer) -> HttpResponse:
        # imported here: the MCP client library is heavy, and only discovery needs it
        from agents.tools.mcp_services import mcp_server_discover

        request = self.request
        try:
            found = mcp_server_discover(server=server)
        except ToolError as exc:
            outcome = {"ok": False, "message": f"Discovery failed: {exc.message}"}
        else:
            names = ", ".join(t.slug for t in found) or "none"
            outcome = {"ok": True, "message": f"Discovered {len(found)} tools: {names}."}
        server.refresh_from_db()
        if request.htmx:
            return self.response_class(
                request=request,
                template="agents/_mcp_tools.html",
                # 200 either way: htmx swaps only successful answers, and the outcome says it
                context=self.tools_context(server, outcome=outcome),
            )
        (messages.success if outcome["ok"] else messages.error)(request, outcome["message"])
        return redirect(f"{request.path}#mcp-tools")


class McpServerEditPage(ObjectFormPage):
    template_name = "agents/mcp_server_form.html"
    permission_required = "agents.change_mcpserver"
    post_permission_required = "agents.change_mcpserver"
    nav_section = "mcp-servers"
    model = McpServer

    def get_form(self, data=None):
        server = self.object
        fields = [
            "slug",
            "name",
            "description",
            "transport",
            "url",
            "command",
            "args",
            "timeout_seconds",
            "tags",
        ]
        return McpServerForm(
            data, creating=False, initial={name: getattr(server, name) for name in fields}
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(
            creating=False,
            server=self.object,
            secret_header_names=sorted(self.object.secret_headers or {}),
            secret_env_names=sorted(self.object.secret_env or {}),
        )
        return data

    def save(self, form):
        server = mcp_server_update(server=self.object, **form.cleaned_data)
        messages.success(self.request, f"MCP server “{server.slug}” saved.")
        return redirect(self.url("mcp-server-detail", slug=server.slug))

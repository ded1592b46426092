"""Tool pages: list, register, one tool (grants), edit."""

from __future__ import annotations

from typing import Any

from agents.choices import ToolKind
from agents.filtersets import ToolFilterSet
from agents.forms.tools import ToolForm, ToolGrantForm
from agents.models import Tool, ToolGrant
from agents.services.tools import tool_create, tool_grant_create, tool_update
from agents.views.grants import ToolGrantsMixin
from controlplane.dashboard.entity_pages import (
    EntityCreatePage,
    EntityDetailPage,
    EntityEditPage,
    EntityListPage,
    EntityPages,
)
from controlplane.dashboard.pages import pretty

TOOL_PAGES = EntityPages(
    model=Tool,
    noun="Tool",
    plural="tools",
    url_name="tool",
    object_kwarg="tool",
    create=tool_create,
    update=tool_update,
    select_related=("mcp_server",),
    object_grants=True,
)


def secret_header_names(obj: Any) -> list[str]:
    """The names of a tool's or an MCP server's secret headers (their values are never shown)."""
    return sorted(obj.secret_headers or {})


class ToolListPage(EntityListPage):
    entity = TOOL_PAGES
    template_name = "agents/tool_list.html"
    filterset_class = ToolFilterSet
    ordering = ("slug",)


class ToolCreatePage(EntityCreatePage):
    entity = TOOL_PAGES
    template_name = "agents/tool_form.html"
    form_class = ToolForm
    success_message = "{label} registered. Grant it to an agent."

    @property
    def kind(self) -> str:
        kind = self.request.POST.get("kind") or self.request.GET.get("kind")
        return kind if kind in (ToolKind.BUILTIN, ToolKind.HTTP) else ToolKind.BUILTIN

    def get_form_kwargs(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["kind"] = self.kind
        return data

    def perform(self, form) -> Tool:
        # blank schemas and risk: the service's (a built-in's) defaults
        fields = {k: v for k, v in form.service_fields().items() if v is not None}
        return tool_create(tenant=self.tenant, kind=self.kind, **fields)


class ToolDetailPage(ToolGrantsMixin, EntityDetailPage):
    entity = TOOL_PAGES
    template_name = "agents/tool_detail.html"
    context_object_name = "tool"
    grants_of = "tool"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        tool = self.object
        data.update(
            input_schema=pretty(tool.input_schema),
            output_schema=pretty(tool.output_schema),
            headers=pretty(tool.headers) if tool.headers else "",
            secret_header_names=secret_header_names(tool),
        )
        return data

    # grants: this tool, to an agent or to every agent with a tag

    def grant_form(self, data=None) -> ToolGrantForm:
        return ToolGrantForm(data, tenant=self.tenant)

    def grant_tool(self, tool: Tool, data: dict[str, Any]) -> str:
        agent, tag = data["agent"], data["agent_tag"]
        tool_grant_create(tool=tool, agent=agent, agent_tag=tag)
        who = agent.slug if agent else f"every agent tagged “{tag}”"
        return f"{who} may now use {tool.slug}."

    def revoked(self, tool: Tool, grant: ToolGrant) -> str:
        return f"Grant of {tool.slug} removed."


class ToolEditPage(EntityEditPage):
    entity = TOOL_PAGES
    template_name = "agents/tool_form.html"
    form_class = ToolForm
    context_object_name = "tool"

    def get_form_kwargs(self) -> dict[str, Any]:
        return {"kind": self.object.kind}

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(kind=self.object.kind, secret_header_names=secret_header_names(self.object))
        return data

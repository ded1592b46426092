"""Tool pages: list, register, one tool (grants), edit."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect

from agents.choices import ToolKind
from agents.filtersets import (
    ToolFilterSet,
)
from agents.forms.tools import ToolForm, ToolGrantForm
from agents.models import (
    Tool,
    ToolGrant,
)
from agents.services.tools import (
    tool_create,
    tool_grant_create,
    tool_grant_delete,
    tool_update,
)
from controlplane.dashboard.pages import (
    FormPage,
    ObjectFormPage,
    OperationsMixin,
    TenantListPage,
    TenantObjectPage,
    int_or_zero,
    operation,
    pretty,
)


class ToolListPage(TenantListPage):
    template_name = "agents/tool_list.html"
    permission_required = "agents.view_tool"
    nav_section = "tools"
    model = Tool
    filterset_class = ToolFilterSet
    add_permission = "agents.add_tool"

    def get_queryset(self):
        return Tool.objects.select_related("mcp_server").order_by("slug")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["has_any"] = data["filtered"] or Tool.objects.exists()
        return data


class ToolCreatePage(FormPage):
    template_name = "agents/tool_form.html"
    permission_required = "agents.add_tool"
    post_permission_required = "agents.add_tool"
    nav_section = "tools"

    @property
    def kind(self) -> str:
        kind = self.request.POST.get("kind") or self.request.GET.get("kind")
        return kind if kind in (ToolKind.BUILTIN, ToolKind.HTTP) else ToolKind.BUILTIN

    def get_form(self, data=None):
        return ToolForm(data, kind=self.kind, creating=True)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(kind=self.kind, creating=True)
        return data

    def save(self, form):
        data = form.service_fields()
        tool = tool_create(
            tenant=self.tenant,
            slug=data.pop("slug"),
            name=data.pop("name"),
            kind=self.kind,
            **{k: v for k, v in data.items() if v is not None},
        )
        messages.success(self.request, f"Tool “{tool.slug}” registered. Grant it to an agent.")
        return redirect(self.url("tool-detail", slug=tool.slug))


class ToolDetailPage(OperationsMixin, TenantObjectPage):
    template_name = "agents/tool_detail.html"
    permission_required = "agents.view_tool"
    post_permission_required = "agents.change_tool"
    nav_section = "tools"
    model = Tool
    object_grants = True

    def get_queryset(self):
        return Tool.objects.select_related("mcp_server")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        tool = self.object
        data.update(
            tool=tool,
            input_schema=pretty(tool.input_schema),
            output_schema=pretty(tool.output_schema),
            headers=pretty(tool.headers) if tool.headers else "",
            secret_header_names=sorted(tool.secret_headers or {}),
            grants=ToolGrant.objects.filter(tool=tool).select_related("agent").order_by("id"),
            can_grant=self.can("agents.add_toolgrant"),
            can_revoke=self.can("agents.delete_toolgrant"),
            grant_form=kwargs.get("grant_form") or ToolGrantForm(tenant=self.tenant),
        )
        return data

    @operation("disable", "enable")
    def toggle(self, tool: Tool) -> HttpResponse:
        return self.set_status(tool_update, f"Tool “{tool.slug}”", tool=tool)

    @operation("grant", permission="agents.add_toolgrant")
    def grant(self, tool: Tool) -> HttpResponse:
        form = ToolGrantForm(self.request.POST, tenant=self.tenant)
        if not form.is_valid():
            return self.invalid(grant_form=form)
        agent, tag = form.cleaned_data["agent"], form.cleaned_data["agent_tag"]
        try:
            tool_grant_create(tool=tool, agent=agent, agent_tag=tag)
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(grant_form=form)
        who = agent.slug if agent else f"every agent tagged “{tag}”"
        messages.success(self.request, f"{who} may now use {tool.slug}.")
        return redirect(f"{self.request.path}#grants")

    @operation("revoke", permission="agents.delete_toolgrant")
    def revoke(self, tool: Tool) -> HttpResponse:
        grant = get_object_or_404(
            ToolGrant.objects.filter(tool=tool), pk=int_or_zero(self.request.POST.get("grant"))
        )
        tool_grant_delete(grant=grant)
        messages.success(self.request, f"Grant of {tool.slug} removed.")
        return redirect(f"{self.request.path}#grants")


class ToolEditPage(ObjectFormPage):
    template_name = "agents/tool_form.html"
    permission_required = "agents.change_tool"
    post_permission_required = "agents.change_tool"
    nav_section = "tools"
    model = Tool
    object_grants = True

    def get_form(self, data=None):
        tool = self.object
        initial = {
            name: getattr(tool, name)
            for name in ToolForm.base_fields
            if name != "secret_headers" and hasattr(tool, name)
        }
        return ToolForm(data, kind=tool.kind, creating=False, initial=initial)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(
            kind=self.object.kind,
            creating=False,
            tool=self.object,
            secret_header_names=sorted(self.object.secret_headers or {}),
        )
        return data

    def save(self, form):
        tool = tool_update(tool=self.object, **form.service_fields())
        messages.success(self.request, f"Tool “{tool.slug}” saved.")
        return redirect(self.url("tool-detail", slug=tool.slug))

"""Agent pages: list, register, one agent (versions, diff, publish, rollback, tool grants), edit."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect

from agents.choices import AgentKind, ProviderKind
from agents.filtersets import (
    AgentFilterSet,
)
from agents.forms.agents import (
    AgentCreateForm,
    AgentEditForm,
    AgentPublishForm,
    AgentRollbackForm,
    AgentToolGrantForm,
    config_example,
)
from agents.models import (
    Agent,
    AgentVersion,
    ProviderConnection,
    ToolGrant,
)
from agents.selectors import version_diff
from agents.services.agents import agent_create, agent_publish, agent_rollback, agent_update
from agents.services.tools import (
    granted_tools,
    tool_grant_create,
    tool_grant_delete,
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
    version_diff_context,
)


def provider_of(config: dict | None) -> ProviderConnection | None:
    slug = (config or {}).get("provider")
    return ProviderConnection.objects.filter(slug=slug).first() if slug else None


class AgentListPage(TenantListPage):
    template_name = "agents/agent_list.html"
    permission_required = "agents.view_agent"
    nav_section = "agents"
    model = Agent
    filterset_class = AgentFilterSet
    add_permission = "agents.add_agent"

    def get_queryset(self):
        return Agent.objects.select_related("current_version").order_by("slug")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        kinds = dict(ProviderConnection.objects.values_list("slug", "kind"))
        rows = []
        for agent in data["objects"]:
            config = agent.current_version.config if agent.current_version else {}
            simulated = kinds.get(config.get("provider")) == ProviderKind.SIMULATED
            rows.append({"agent": agent, "config": config, "simulated": simulated})
        data["rows"] = rows
        data["has_any"] = data["filtered"] or Agent.objects.exists()
        data["has_provider"] = ProviderConnection.objects.exists()
        return data


class AgentCreatePage(FormPage):
    template_name = "agents/agent_create.html"
    permission_required = "agents.add_agent"
    post_permission_required = "agents.add_agent"
    nav_section = "agents"

    def get_form(self, data=None):
        kind = self.request.GET.get("kind")
        if kind not in AgentKind.values:
            kind = AgentKind.LLM
        return AgentCreateForm(
            data, initial={"kind": kind, "config": config_example(kind, self.tenant)}
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["kinds"] = AgentKind.choices
        data["has_provider"] = ProviderConnection.objects.exists()
        return data

    def save(self, form):
        data = form.cleaned_data
        agent = agent_create(
            tenant=self.tenant,
            slug=data["slug"],
            name=data["name"],
            kind=data["kind"],
            config=data["config"],
            description=data["description"],
            tags=data["tags"],
            note=data["note"],
            created_by=self.request.user,
        )
        messages.success(self.request, f"Agent “{agent.slug}” registered as v1.")
        return redirect(self.url("agent-detail", slug=agent.slug))


class AgentDetailPage(OperationsMixin, TenantObjectPage):
    template_name = "agents/agent_detail.html"
    permission_required = "agents.view_agent"
    post_permission_required = "agents.change_agent"
    nav_section = "agents"
    model = Agent
    object_grants = True

    def get_queryset(self):
        return Agent.objects.select_related("current_version")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        agent = self.object
        current = agent.current_version
        versions = list(
            AgentVersion.objects.filter(agent=agent)
            .select_related("created_by")
            .order_by("-number")
        )
        provider = provider_of(current.config if current else None)
        pinned = [t["slug"] for t in (current.tools if current else [])]
        granted = granted_tools(agent)
        tag_grants = (
            ToolGrant.objects.filter(agent_tag__in=agent.tags).select_related("tool")
            if agent.tags
            else ToolGrant.objects.none()
        )
        data.update(
            agent=agent,
            current=current,
            config_json=pretty(current.config) if current else "{}",
            provider=provider,
            simulated=provider is not None and provider.kind == ProviderKind.SIMULATED,
            pinned=pinned,
            unpinned=[t for t in granted if t.slug not in pinned],
            versions=versions,
            next_number=(versions[0].number + 1) if versions else 1,
            grants=ToolGrant.objects.filter(agent=agent).select_related("tool").order_by("id"),
            tag_grants=tag_grants,
            can_grant=self.can("agents.add_toolgrant"),
            can_revoke=self.can("agents.delete_toolgrant"),
            publish_form=kwargs.get("publish_form")
            or AgentPublishForm(initial={"config": current.config if current else {}}),
            grant_form=kwargs.get("grant_form")
            or AgentToolGrantForm(tenant=self.tenant, agent=agent),
        )
        data.update(self.diff(versions, current))
        return data

    def diff(self, versions: list[AgentVersion], current: AgentVersion | None) -> dict[str, Any]:
        numbers = [v.number for v in versions]
        initial = {"to": current.number if current else None}
        if len(numbers) > 1:
            initial["from"] = numbers[1]
        return version_diff_context(self.request, versions, initial, version_diff)

    @operation("publish")
    def publish(self, agent: Agent) -> HttpResponse:
        form = AgentPublishForm(self.request.POST)
        if not form.is_valid():
            return self.invalid(publish_form=form)
        try:
            version = agent_publish(
                agent=agent,
                config=form.cleaned_data["config"],
                note=form.cleaned_data["note"],
                created_by=self.request.user,
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(publish_form=form)
        messages.success(self.request, f"Published v{version.number}; it is now current.")
        return redirect(f"{self.request.path}#versions")

    @operation("rollback")
    def rollback(self, agent: Agent) -> HttpResponse:
        form = AgentRollbackForm(self.request.POST)
        if not form.is_valid():
            messages.error(self.request, "Choose the version to roll back to.")
            return redirect(self.request.path)
        number = form.cleaned_data["version"]
        try:
            version = agent_rollback(agent=agent, number=number, created_by=self.request.user)
        except ValidationError as exc:
            messages.error(self.request, " ".join(exc.messages))
            return redirect(self.request.path)
        messages.success(
            self.request,
            f"Rolled back: v{version.number} copies v{number} and is now current.",
        )
        return redirect(f"{self.request.path}#versions")

    @operation("disable", "enable")
    def toggle(self, agent: Agent) -> HttpResponse:
        return self.set_status(agent_update, f"Agent “{agent.slug}”", agent=agent)

    @operation("grant", permission="agents.add_toolgrant")
    def grant(self, agent: Agent) -> HttpResponse:
        form = AgentToolGrantForm(self.request.POST, tenant=self.tenant, agent=agent)
        if not form.is_valid():
            return self.invalid(grant_form=form)
        tool = form.cleaned_data["tool"]
        try:
            tool_grant_create(tool=tool, agent=agent)
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(grant_form=form)
        messages.success(
            self.request,
            f"{agent.slug} may now use {tool.slug}. Publish a new version to pin it.",
        )
        return redirect(f"{self.request.path}#grants")

    @operation("revoke", permission="agents.delete_toolgrant")
    def revoke(self, agent: Agent) -> HttpResponse:
        grant = get_object_or_404(
            ToolGrant.objects.filter(agent=agent).select_related("tool"),
            pk=int_or_zero(self.request.POST.get("grant")),
        )
        tool_grant_delete(grant=grant)
        messages.success(
            self.request,
            f"{agent.slug} may no longer use {grant.tool.slug} in new versions.",
        )
        return redirect(f"{self.request.path}#grants")


class AgentEditPage(ObjectFormPage):
    template_name = "agents/agent_edit.html"
    permission_required = "agents.change_agent"
    post_permission_required = "agents.change_agent"
    nav_section = "agents"
    model = Agent
    object_grants = True

    def get_form(self, data=None):
        agent = self.object
        return AgentEditForm(
            data,
            initial={"name": agent.name, "description": agent.description, "tags": agent.tags},
        )

    def save(self, form):
        agent = agent_update(agent=self.object, **form.cleaned_data)
        messages.success(self.request, f"Agent “{agent.slug}” saved.")
        return redirect(self.url("agent-detail", slug=agent.slug))

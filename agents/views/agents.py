"""Agent pages: list, register, one agent (versions, diff, publish, rollback, tool grants), edit."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpResponse

from agents.choices import AgentKind, ProviderKind
from agents.filtersets import AgentFilterSet
from agents.forms.agents import (
    AgentCreateForm,
    AgentEditForm,
    AgentPublishForm,
    AgentRollbackForm,
    AgentToolGrantForm,
    config_example,
)
from agents.models import Agent, AgentVersion, ProviderConnection, ToolGrant
from agents.selectors import version_diff
from agents.services.agents import agent_create, agent_publish, agent_rollback, agent_update
from agents.services.tools import granted_tools, tool_grant_create
from agents.views.grants import ToolGrantsMixin
from controlplane.dashboard.entity_pages import (
    EntityCreatePage,
    EntityDetailPage,
    EntityEditPage,
    EntityListPage,
    EntityPages,
)
from controlplane.dashboard.pages import (
    next_number,
    operation,
    pretty,
    version_diff_context,
    versions_of,
)

AGENT_PAGES = EntityPages(
    model=Agent,
    noun="Agent",
    plural="agents",
    url_name="agent",
    object_kwarg="agent",
    create=agent_create,
    update=agent_update,
    select_related=("current_version",),
    object_grants=True,
)


def provider_of(config: dict | None) -> ProviderConnection | None:
    slug = (config or {}).get("provider")
    return ProviderConnection.objects.filter(slug=slug).first() if slug else None


class AgentListPage(EntityListPage):
    entity = AGENT_PAGES
    template_name = "agents/agent_list.html"
    filterset_class = AgentFilterSet
    ordering = ("slug",)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        kinds = dict(ProviderConnection.objects.values_list("slug", "kind"))
        rows = []
        for agent in data["objects"]:
            config = agent.current_version.config if agent.current_version else {}
            simulated = kinds.get(config.get("provider")) == ProviderKind.SIMULATED
            rows.append({"agent": agent, "config": config, "simulated": simulated})
        data["rows"] = rows
        data["has_provider"] = ProviderConnection.objects.exists()
        return data


class AgentCreatePage(EntityCreatePage):
    entity = AGENT_PAGES
    template_name = "agents/agent_create.html"
    form_class = AgentCreateForm
    records_creator = True
    success_message = "{label} registered as v1."

    def get_form_kwargs(self) -> dict[str, Any]:
        kind = self.request.GET.get("kind")
        if kind not in AgentKind.values:
            kind = AgentKind.LLM
        return {"initial": {"kind": kind, "config": config_example(kind, self.tenant)}}

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["kinds"] = AgentKind.choices
        data["has_provider"] = ProviderConnection.objects.exists()
        return data


class AgentDetailPage(ToolGrantsMixin, EntityDetailPage):
    entity = AGENT_PAGES
    template_name = "agents/agent_detail.html"
    context_object_name = "agent"
    grants_of = "agent"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        agent = self.object
        current = agent.current_version
        versions = versions_of(agent, AgentVersion)
        provider = provider_of(current.config if current else None)
        pinned = [t["slug"] for t in (current.tools if current else [])]
        tag_grants = (
            ToolGrant.objects.filter(agent_tag__in=agent.tags).select_related("tool")
            if agent.tags
            else ToolGrant.objects.none()
        )
        data.update(
            current=current,
            config_json=pretty(current.config) if current else "{}",
            provider=provider,
            simulated=provider is not None and provider.kind == ProviderKind.SIMULATED,
            pinned=pinned,
            unpinned=[t for t in granted_tools(agent) if t.slug not in pinned],
            versions=versions,
            next_number=next_number(versions),
            tag_grants=tag_grants,
            publish_form=kwargs.get("publish_form")
            or AgentPublishForm(initial={"config": current.config if current else {}}),
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
        def publish(data: dict[str, Any]) -> HttpResponse:
            version = agent_publish(agent=agent, **data, created_by=self.request.user)
            return self.done(f"Published v{version.number}; it is now current.", "versions")

        return self.submit(AgentPublishForm(self.request.POST), publish, as_="publish_form")

    @operation("rollback")
    def rollback(self, agent: Agent) -> HttpResponse:
        form = AgentRollbackForm(self.request.POST)
        if not form.is_valid():
            return self.refuse("Choose the version to roll back to.")
        number = form.cleaned_data["version"]
        try:
            version = agent_rollback(agent=agent, number=number, created_by=self.request.user)
        except ValidationError as exc:
            return self.refuse(" ".join(exc.messages))
        return self.done(
            f"Rolled back: v{version.number} copies v{number} and is now current.", "versions"
        )

    # tool grants: the tool is chosen, this agent is the grantee

    def grant_form(self, data=None) -> AgentToolGrantForm:
        return AgentToolGrantForm(data, tenant=self.tenant, agent=self.object)

    def grant_tool(self, agent: Agent, data: dict[str, Any]) -> str:
        tool = data["tool"]
        tool_grant_create(tool=tool, agent=agent)
        return f"{agent.slug} may now use {tool.slug}. Publish a new version to pin it."

    def revoked(self, agent: Agent, grant: ToolGrant) -> str:
        return f"{agent.slug} may no longer use {grant.tool.slug} in new versions."


class AgentEditPage(EntityEditPage):
    entity = AGENT_PAGES
    template_name = "agents/agent_edit.html"
    form_class = AgentEditForm

"""Dashboard pages of the registry: agents (versions, diff, publish, rollback, tool grants),
tools, providers (test connection), MCP servers (discover), secrets and knowledge documents.

Pages mirror the registry API: forms validate, ``agents.services`` write, and
``TenantPageMixin`` enforces the tenant and each HTTP method's permission. A page about
one object looks it up inside the tenant (another tenant's object is a 404, before any
permission is considered); agent and tool pages also accept a per-object grant, as the
API does. A page's extra actions (``op``) that need more than its POST permission check
it with ``require``, which audits a refusal like the base does.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect

from agents.choices import AgentKind, ProviderKind, ToolKind
from agents.filtersets import (
    AgentFilterSet,
    KnowledgeDocumentFilterSet,
    McpServerFilterSet,
    ProviderFilterSet,
    SecretFilterSet,
    ToolFilterSet,
)
from agents.forms import (
    AgentCreateForm,
    AgentEditForm,
    AgentPublishForm,
    AgentRollbackForm,
    AgentToolGrantForm,
    KnowledgeDocumentForm,
    McpServerForm,
    ProviderForm,
    SecretCreateForm,
    SecretUpdateForm,
    ToolForm,
    ToolGrantForm,
    config_example,
)
from agents.models import (
    Agent,
    AgentVersion,
    KnowledgeDocument,
    McpServer,
    ProviderConnection,
    Secret,
    Tool,
    ToolGrant,
)
from agents.selectors import version_diff
from agents.services.agents import agent_create, agent_publish, agent_rollback, agent_update
from agents.services.knowledge import (
    knowledge_document_create,
    knowledge_document_delete,
    knowledge_document_update,
)
from agents.services.mcp_servers import mcp_server_create, mcp_server_update
from agents.services.providers import provider_create, provider_record_test, provider_update
from agents.services.secrets import secret_create, secret_delete, secret_update
from agents.services.tools import (
    granted_tools,
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
    operation,
    pretty,
    version_diff_context,
)

MEMORY_SHOWN = 100  # memory keys listed on an agent's page; the API pages through the rest

# agents ------------------------------------------------------------------------------------


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
        data.update(self.memory(agent, current))
        return data

    def memory(self, agent: Agent, current: AgentVersion | None) -> dict[str, Any]:
        """What the agent remembers across runs (its memory_set tool) and its engine tools."""
        from runs.memory import agent_memory  # the memory rows live with the runs

        entries = agent_memory(agent)
        return {
            "builtin_tools": (current.config.get("builtin_tools") or []) if current else [],
            "memory_entries": [(e.key, pretty(e.value)) for e in entries[:MEMORY_SHOWN]],
            "memory_count": entries.count(),
            "memory_shown": MEMORY_SHOWN,
        }

    def diff(self, versions: list[AgentVersion], current: AgentVersion | None) -> dict[str, Any]:
        numbers = [v.number for v in versions]
        initial = {"to": current.number if current else None}
        if len(numbers) > 1:
            initial["from"] = numbers[1]
        return version_diff_context(self.request, versions, initial, version_diff)

    @operation("memory_forget")
    def memory_forget(self, agent: Agent) -> HttpResponse:
        from runs.memory import agent_memory_clear

        key = self.request.POST.get("key", "")
        if agent_memory_clear(agent=agent, key=key):
            messages.success(self.request, f"{agent.slug} no longer remembers “{key}”.")
        else:
            messages.error(self.request, f"{agent.slug} remembers nothing under “{key}”.")
        return redirect(f"{self.request.path}#memory")

    @operation("memory_clear")
    def memory_clear(self, agent: Agent) -> HttpResponse:
        from runs.memory import agent_memory_clear

        removed = agent_memory_clear(agent=agent)
        messages.success(
            self.request, f"{agent.slug}'s memory cleared ({len(removed)} keys forgotten)."
        )
        return redirect(f"{self.request.path}#memory")

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
            pk=_int(self.request.POST.get("grant")),
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


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# tools -------------------------------------------------------------------------------------


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


class ToolDetailPage(TenantObjectPage):
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

    def post(self, request, *args, **kwargs):
        op = request.POST.get("op", "")
        tool = self.object
        if op in ("disable", "enable"):
            return self.set_status(tool_update, f"Tool “{tool.slug}”", tool=tool)
        if op == "grant":
            self.require("agents.add_toolgrant")
            form = ToolGrantForm(request.POST, tenant=self.tenant)
            if not form.is_valid():
                return self.invalid(grant_form=form)
            agent, tag = form.cleaned_data["agent"], form.cleaned_data["agent_tag"]
            try:
                tool_grant_create(tool=tool, agent=agent, agent_tag=tag)
            except ValidationError as exc:
                form.add_service_errors(exc)
                return self.invalid(grant_form=form)
            who = agent.slug if agent else f"every agent tagged “{tag}”"
            messages.success(request, f"{who} may now use {tool.slug}.")
            return redirect(f"{request.path}#grants")
        if op == "revoke":
            self.require("agents.delete_toolgrant")
            grant = get_object_or_404(
                ToolGrant.objects.filter(tool=tool), pk=_int(request.POST.get("grant"))
            )
            tool_grant_delete(grant=grant)
            messages.success(request, f"Grant of {tool.slug} removed.")
            return redirect(f"{request.path}#grants")
        messages.error(request, "Unknown action.")
        return redirect(request.path)


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


# providers ---------------------------------------------------------------------------------


class ProviderListPage(TenantListPage):
    template_name = "agents/provider_list.html"
    permission_required = "agents.view_providerconnection"
    nav_section = "providers"
    model = ProviderConnection
    filterset_class = ProviderFilterSet
    add_permission = "agents.add_providerconnection"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["has_any"] = data["filtered"] or ProviderConnection.objects.exists()
        return data


class ProviderCreatePage(FormPage):
    template_name = "agents/provider_form.html"
    permission_required = "agents.add_providerconnection"
    post_permission_required = "agents.add_providerconnection"
    nav_section = "providers"

    def get_form(self, data=None):
        return ProviderForm(
            data,
            creating=True,
            initial={
                "kind": ProviderKind.SIMULATED,
                "models": [{"name": "sim-1", "input_per_mtok": 0, "output_per_mtok": 0}],
            },
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["creating"] = True
        return data

    def save(self, form):
        data = form.service_fields(creating=True)
        provider = provider_create(
            tenant=self.tenant,
            slug=data.pop("slug"),
            name=data.pop("name"),
            kind=data.pop("kind"),
            **data,
        )
        messages.success(
            self.request, f"Provider “{provider.slug}” registered. Test the connection next."
        )
        return redirect(self.url("provider-detail", slug=provider.slug))


class ProviderDetailPage(TenantObjectPage):
    template_name = "agents/provider_detail.html"
    permission_required = "agents.view_providerconnection"
    post_permission_required = "agents.change_providerconnection"
    nav_section = "providers"
    model = ProviderConnection

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        provider = self.object
        data.update(
            provider=provider,
            simulated=provider.kind == ProviderKind.SIMULATED,
            has_key=bool(provider.api_key),
            check=kwargs.get("check"),
        )
        return data

    def post(self, request, *args, **kwargs):
        op = request.POST.get("op", "")
        provider = self.object
        if op in ("disable", "enable"):
            return self.set_status(
                provider_update, f"Provider “{provider.slug}”", provider=provider
            )
        if op != "test":
            messages.error(request, "Unknown action.")
            return redirect(request.path)
        from agents.providers.base import get_adapter

        check = get_adapter(provider).test_connection()
        provider = provider_record_test(
            provider=provider, ok=check.ok, message=check.message, latency_ms=check.latency_ms
        )
        if request.htmx:
            return self.response_class(
                request=request,
                template="agents/_provider_test.html",
                context={
                    "tenant": self.tenant,
                    "provider": provider,
                    "check": check,
                    "can_change": True,
                },
            )
        if check.ok:
            messages.success(request, f"Connection works: {check.message}")
        else:
            messages.error(request, f"Connection failed: {check.message}")
        return redirect(f"{request.path}#connection-test")


class ProviderEditPage(ObjectFormPage):
    template_name = "agents/provider_form.html"
    permission_required = "agents.change_providerconnection"
    post_permission_required = "agents.change_providerconnection"
    nav_section = "providers"
    model = ProviderConnection

    def get_form(self, data=None):
        provider = self.object
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "base_url",
            "api_key_env",
            "models",
            "timeout_seconds",
            "tags",
        ]
        return ProviderForm(
            data,
            creating=False,
            has_key=bool(provider.api_key),
            initial={name: getattr(provider, name) for name in fields},
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(creating=False, provider=self.object)
        return data

    def save(self, form):
        provider = provider_update(provider=self.object, **form.service_fields(creating=False))
        messages.success(self.request, f"Provider “{provider.slug}” saved.")
        return redirect(self.url("provider-detail", slug=provider.slug))


# MCP servers -------------------------------------------------------------------------------


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


class McpServerDetailPage(TenantObjectPage):
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

    def post(self, request, *args, **kwargs):
        op = request.POST.get("op", "")
        server = self.object
        if op in ("disable", "enable"):
            return self.set_status(mcp_server_update, f"MCP server “{server.slug}”", server=server)
        if op != "discover":
            messages.error(request, "Unknown action.")
            return redirect(request.path)
        from agents.tools.base import ToolError
        from agents.tools.mcp_services import mcp_server_discover

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


# secrets -----------------------------------------------------------------------------------


class SecretListPage(TenantListPage):
    """Secret names and descriptions, and the form to add one; values are never shown."""

    template_name = "agents/secret_list.html"
    permission_required = "agents.view_secret"
    post_permission_required = "agents.add_secret"
    nav_section = "secrets"
    model = Secret
    filterset_class = SecretFilterSet
    add_permission = "agents.add_secret"

    def get_queryset(self):
        return Secret.objects.order_by("name")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["form"] = kwargs.get("form") or SecretCreateForm()
        data["has_any"] = data["filtered"] or Secret.objects.exists()
        return data

    def post(self, request, *args, **kwargs):
        form = SecretCreateForm(request.POST)
        if not form.is_valid():
            return self.invalid(form=form)
        try:
            secret = secret_create(tenant=self.tenant, **form.cleaned_data)
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(form=form)
        messages.success(request, f"Secret “{secret.name}” stored. Its value is not shown again.")
        return redirect(request.path)


class SecretDetailPage(TenantObjectPage):
    template_name = "agents/secret_detail.html"
    permission_required = "agents.view_secret"
    post_permission_required = "agents.change_secret"
    nav_section = "secrets"
    model = Secret
    lookup_field = "name"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["secret"] = self.object
        data["form"] = kwargs.get("form") or SecretUpdateForm(
            initial={"description": self.object.description}
        )
        data["can_delete"] = self.can("agents.delete_secret")
        return data

    def post(self, request, *args, **kwargs):
        secret = self.object
        if request.POST.get("op") == "delete":
            self.require("agents.delete_secret")
            secret_delete(secret=secret)
            messages.success(request, f"Secret “{secret.name}” deleted.")
            return redirect(self.url("secrets"))
        form = SecretUpdateForm(request.POST)
        if not form.is_valid():
            return self.invalid(form=form)
        try:
            secret_update(
                secret=secret,
                value=form.cleaned_data["value"] or None,
                description=form.cleaned_data["description"],
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(form=form)
        changed = "value and description" if form.cleaned_data["value"] else "description"
        messages.success(request, f"Secret “{secret.name}”: {changed} saved.")
        return redirect(request.path)


# knowledge ---------------------------------------------------------------------------------


class KnowledgeListPage(TenantListPage):
    template_name = "agents/knowledge_list.html"
    permission_required = "agents.view_knowledgedocument"
    nav_section = "knowledge"
    model = KnowledgeDocument
    filterset_class = KnowledgeDocumentFilterSet
    add_permission = "agents.add_knowledgedocument"

    def get_queryset(self):
        return KnowledgeDocument.objects.order_by("collection", "title")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["has_any"] = data["filtered"] or KnowledgeDocument.objects.exists()
        return data


class KnowledgeCreatePage(FormPage):
    template_name = "agents/knowledge_form.html"
    permission_required = "agents.add_knowledgedocument"
    post_permission_required = "agents.add_knowledgedocument"
    nav_section = "knowledge"

    def get_form(self, data=None):
        return KnowledgeDocumentForm(data)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["creating"] = True
        return data

    def save(self, form):
        document = knowledge_document_create(tenant=self.tenant, **form.cleaned_data)
        messages.success(self.request, f"Document “{document.title}” added.")
        return redirect(self.url("knowledge-detail", pk=document.pk))


class KnowledgeDetailPage(ObjectFormPage):
    """A document, edited in place; deleting it needs the delete permission."""

    template_name = "agents/knowledge_form.html"
    permission_required = "agents.view_knowledgedocument"
    post_permission_required = "agents.change_knowledgedocument"
    nav_section = "knowledge"
    model = KnowledgeDocument
    lookup_field = "pk"

    def get_form(self, data=None):
        document = self.object
        fields = ["collection", "title", "content", "tags"]
        return KnowledgeDocumentForm(
            data, initial={name: getattr(document, name) for name in fields}
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(
            creating=False,
            document=self.object,
            can_delete=self.can("agents.delete_knowledgedocument"),
        )
        return data

    def post(self, request, *args, **kwargs):
        if request.POST.get("op") == "delete":
            self.require("agents.delete_knowledgedocument")
            document = self.object
            knowledge_document_delete(document=document)
            messages.success(request, f"Document “{document.title}” deleted.")
            return redirect(self.url("knowledge"))
        return super().post(request, *args, **kwargs)

    def save(self, form):
        document = knowledge_document_update(document=self.object, **form.cleaned_data)
        messages.success(self.request, f"Document “{document.title}” saved.")
        return redirect(self.request.path)

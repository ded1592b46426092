"""Registry writes. Each service is atomic, keyword-only, validates, and audits in its transaction.

Callers run inside the tenant context (the base views set it). Secrets are never
put into audit rows: snapshots list safe fields only and pass through redaction.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from agents.choices import ProviderKind, Status, ToolKind
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
from agents.validation import validate_agent_config
from controlplane import egress
from controlplane.audit.services import audit_record, snapshot
from controlplane.rbac.grants import remove_object_grants

AGENT_FIELDS = ["slug", "name", "description", "kind", "tags", "status"]
PROVIDER_FIELDS = [
    "slug",
    "name",
    "description",
    "kind",
    "base_url",
    "api_key_env",
    "models",
    "timeout_seconds",
    "tags",
    "status",
]
TOOL_FIELDS = [
    "slug",
    "name",
    "description",
    "kind",
    "builtin",
    "config",
    "url",
    "method",
    "headers",
    "allowed_hosts",
    "mcp_tool_name",
    "input_schema",
    "output_schema",
    "risk",
    "timeout_seconds",
    "tags",
    "status",
]
MCP_FIELDS = [
    "slug",
    "name",
    "description",
    "transport",
    "url",
    "command",
    "args",
    "timeout_seconds",
    "tags",
    "status",
]


def _full_clean(obj: Any, exclude: list[str] | None = None) -> None:
    obj.full_clean(
        exclude=["tenant", *(exclude or [])], validate_unique=False, validate_constraints=False
    )


def _all_problems(*checks: Any) -> None:
    """Run every check; raise one ValidationError with all their errors (none: return)."""
    errors: dict[str, list[str]] = {}
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            found = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
            for field, messages in found.items():
                errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def _unique_slug(model: type, tenant: Any, slug: str, exclude_pk: Any = None) -> None:
    existing = model.objects.for_tenant(tenant).filter(slug=slug)
    if exclude_pk is not None:
        existing = existing.exclude(pk=exclude_pk)
    if existing.exists():
        raise ValidationError(
            {
                "slug": f"{model._meta.verbose_name.capitalize()} {slug!r} "
                "already exists in this tenant."
            }
        )


def _secret_changes(obj: Any, secret_fields: dict[str, Any]) -> dict[str, str]:
    """Audit metadata that says which secrets changed, never their values."""
    return {name: "changed" for name, value in secret_fields.items() if value is not None}


# Secrets -----------------------------------------------------------------------------------


@transaction.atomic
def secret_create(*, tenant: Any, name: str, value: str, description: str = "") -> Secret:
    """Store a named secret, encrypted. The value is never returned or audited."""
    if Secret.objects.for_tenant(tenant).filter(name=name).exists():
        raise ValidationError({"name": f"A secret named {name!r} already exists."})
    if not value:
        raise ValidationError({"value": "Give the secret's value."})
    secret = Secret(tenant=tenant, name=name, value=value, description=description)
    _full_clean(secret)
    secret.save()
    audit_record(
        action="secret.create",
        target=secret,
        tenant=tenant,
        after={"name": name, "description": description, "value": "set"},
    )
    return secret


@transaction.atomic
def secret_update(
    *, secret: Secret, value: str | None = None, description: str | None = None
) -> Secret:
    """Replace a secret's value and/or description (audited without the value)."""
    changes = {}
    if value is not None:
        if not value:
            raise ValidationError({"value": "A secret cannot be empty."})
        secret.value = value
        changes["value"] = "changed"
    if description is not None and description != secret.description:
        changes["description"] = description
        secret.description = description
    secret.save()
    audit_record(action="secret.update", target=secret, tenant=secret.tenant, after=changes)
    return secret


@transaction.atomic
def secret_delete(*, secret: Secret) -> None:
    audit_record(
        action="secret.delete", target=secret, tenant=secret.tenant, before={"name": secret.name}
    )
    secret.delete()


# Providers ---------------------------------------------------------------------------------


def _validate_models(models: Any) -> list[dict[str, Any]]:
    if not isinstance(models, list):
        raise ValidationError(
            {
                "models": 'Give a list of models, e.g. [{"name": "gpt-4o-mini", '
                '"input_per_mtok": 0.15, "output_per_mtok": 0.6}].'
            }
        )
    cleaned, seen = [], set()
    for index, entry in enumerate(models):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
            raise ValidationError({"models": f"Item {index}: give an object with a 'name'."})
        name = str(entry["name"]).strip()
        if name in seen:
            raise ValidationError({"models": f"Item {index}: model {name!r} is listed twice."})
        seen.add(name)
        prices = {}
        for key in ("input_per_mtok", "output_per_mtok"):
            value = entry.get(key, 0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValidationError(
                    {
                        "models": f"Item {index}: {key} must be a number >= 0 "
                        "(USD per million tokens)."
                    }
                )
            prices[key] = float(value)
        cleaned.append({"name": name, **prices})
    return cleaned


def _check_provider(provider: ProviderConnection) -> None:
    if provider.kind in (ProviderKind.OPENAI,) and not provider.base_url:
        provider.base_url = "https://api.openai.com/v1"
    if provider.kind == ProviderKind.SIMULATED and (provider.api_key or provider.base_url):
        raise ValidationError({"kind": "The simulated provider takes no base URL or API key."})
    refused = egress.check_url(provider.base_url) if provider.base_url else None
    if refused:
        raise ValidationError({"base_url": refused})
    _full_clean(provider, exclude=["api_key"])


@transaction.atomic
def provider_create(
    *,
    tenant: Any,
    slug: str,
    name: str,
    kind: str,
    description: str = "",
    base_url: str = "",
    api_key: str = "",
    api_key_env: str = "",
    models: Any = (),
    timeout_seconds: int = 60,
    tags: list[str] | None = None,
    status: str = Status.ACTIVE,
) -> ProviderConnection:
    """Register a model provider; the key is stored encrypted and never echoed."""
    _unique_slug(ProviderConnection, tenant, slug)
    provider = ProviderConnection(
        tenant=tenant,
        slug=slug,
        name=name,
        kind=kind,
        description=description,
        base_url=base_url,
        api_key=api_key,
        api_key_env=api_key_env,
        models=_validate_models(list(models)),
        timeout_seconds=timeout_seconds,
        tags=tags or [],
        status=status,
    )
    _check_provider(provider)
    provider.save()
    audit_record(
        action="provider.create",
        target=provider,
        tenant=tenant,
        after=snapshot(provider, PROVIDER_FIELDS),
        metadata={"api_key": "set" if api_key else "not set"},
    )
    return provider


@transaction.atomic
def provider_update(*, provider: ProviderConnection, **changes: Any) -> ProviderConnection:
    """Edit a provider. ``api_key=None`` keeps the stored key; ``""`` clears it."""
    provider = ProviderConnection.objects.select_for_update().get(pk=provider.pk)
    before = snapshot(provider, PROVIDER_FIELDS)
    key_changed = "api_key" in changes and changes["api_key"] is not None
    for field, value in changes.items():
        if field == "api_key" and value is None:
            continue
        if field == "models":
            value = _validate_models(value)
        if field == "slug" and value != provider.slug:
            _unique_slug(ProviderConnection, provider.tenant, value, exclude_pk=provider.pk)
        setattr(provider, field, value)
    _check_provider(provider)
    provider.save()
    audit_record(
        action="provider.update",
        target=provider,
        tenant=provider.tenant,
        before=before,
        after=snapshot(provider, PROVIDER_FIELDS),
        metadata={"api_key": "changed"} if key_changed else {},
    )
    return provider


@transaction.atomic
def provider_record_test(
    *, provider: ProviderConnection, ok: bool, message: str, latency_ms: float
) -> ProviderConnection:
    """Store the outcome of a connection test (the call itself happens outside any transaction)."""
    ProviderConnection.objects.filter(pk=provider.pk).update(
        last_test_at=timezone.now(), last_test_ok=ok, last_test_message=message[:2000]
    )
    provider.refresh_from_db()
    audit_record(
        action="provider.test",
        target=provider,
        tenant=provider.tenant,
        metadata={"ok": ok, "message": message[:500], "latency_ms": round(latency_ms, 1)},
    )
    return provider


# MCP servers -------------------------------------------------------------------------------


def stdio_command_problem(command: str) -> str | None:
    """Why this installation refuses ``command`` as a stdio MCP server, or None.

    The executable (first word) must be listed in the MCP_STDIO_COMMANDS setting.
    """
    import shlex

    from django.conf import settings

    allowed = settings.MCP_STDIO_COMMANDS
    try:
        executable = (shlex.split(command) or [""])[0]
    except ValueError as exc:
        return f"The command cannot be parsed: {exc}."
    if "*" in allowed or executable in allowed:
        return None
    if not allowed:
        return (
            "stdio MCP servers are disabled on this installation (they run commands on the "
            "control plane's host). Use a streamable-HTTP server, or ask the operator to list "
            "the executable in MCP_STDIO_COMMANDS."
        )
    return (
        f"{executable!r} is not an allowed stdio MCP command here; allowed: "
        f"{', '.join(allowed)} (MCP_STDIO_COMMANDS)."
    )


def _check_mcp(server: McpServer) -> None:
    if server.transport == "http" and not server.url:
        raise ValidationError({"url": "A streamable-HTTP server needs its URL."})
    refused = egress.check_url(server.url) if server.transport == "http" else None
    if refused:
        raise ValidationError({"url": refused})
    if server.transport == "stdio" and not server.command:
        raise ValidationError({"command": "A stdio server needs the command that starts it."})
    if server.transport == "stdio":
        problem = stdio_command_problem(server.command)
        if problem:
            raise ValidationError({"command": problem})
    if not isinstance(server.args, list) or not all(isinstance(a, str) for a in server.args):
        raise ValidationError({"args": "Give the command's arguments as a list of strings."})
    _full_clean(server, exclude=["secret_headers", "secret_env"])


@transaction.atomic
def mcp_server_create(
    *,
    tenant: Any,
    slug: str,
    name: str,
    transport: str,
    description: str = "",
    url: str = "",
    command: str = "",
    args: list[str] | None = None,
    secret_headers: dict | None = None,
    secret_env: dict | None = None,
    timeout_seconds: int = 30,
    tags: list[str] | None = None,
    status: str = Status.ACTIVE,
) -> McpServer:
    """Register an MCP server; run discovery separately to register its tools."""
    _unique_slug(McpServer, tenant, slug)
    server = McpServer(
        tenant=tenant,
        slug=slug,
        name=name,
        transport=transport,
        description=description,
        url=url,
        command=command,
        args=args or [],
        secret_headers=secret_headers or {},
        secret_env=secret_env or {},
        timeout_seconds=timeout_seconds,
        tags=tags or [],
        status=status,
    )
    _check_mcp(server)
    server.save()
    audit_record(
        action="mcp_server.create",
        target=server,
        tenant=tenant,
        after=snapshot(server, MCP_FIELDS),
        metadata={
            "secret_headers": sorted(server.secret_headers),
            "secret_env": sorted(server.secret_env),
        },
    )
    return server


@transaction.atomic
def mcp_server_update(*, server: McpServer, **changes: Any) -> McpServer:
    """Edit an MCP server; ``None`` for a secret mapping keeps the stored one."""
    server = McpServer.objects.select_for_update().get(pk=server.pk)
    before = snapshot(server, MCP_FIELDS)
    for field, value in changes.items():
        if field in ("secret_headers", "secret_env") and value is None:
            continue
        if field == "slug" and value != server.slug:
            _unique_slug(McpServer, server.tenant, value, exclude_pk=server.pk)
        setattr(server, field, value)
    _check_mcp(server)
    server.save()
    if server.status == Status.DISABLED:
        Tool.objects.filter(mcp_server=server).update(status=Status.DISABLED)
    audit_record(
        action="mcp_server.update",
        target=server,
        tenant=server.tenant,
        before=before,
        after=snapshot(server, MCP_FIELDS),
    )
    return server


# Tools -------------------------------------------------------------------------------------


def _check_tool(tool: Tool) -> None:
    from agents.tools.base import check_host_allowed, host_pattern_problems, validate_schema
    from agents.tools.builtin import BUILTINS

    errors: dict[str, list[str]] = {}
    for field in ("input_schema", "output_schema"):
        value = getattr(tool, field)
        if not isinstance(value, dict):
            errors[field] = ["Give a JSON Schema object ({} accepts anything)."]
        elif value:
            # tool arguments and results are JSON objects (function-calling needs that)
            problems = validate_schema(value, require_object=True)
            if problems:
                errors[field] = problems
    host_problems = host_pattern_problems(tool.allowed_hosts)
    if host_problems:
        errors["allowed_hosts"] = host_problems
    if tool.kind == ToolKind.BUILTIN:
        if tool.builtin not in BUILTINS:
            errors["builtin"] = [
                f"Unknown built-in {tool.builtin!r}: use one of {', '.join(sorted(BUILTINS))}."
            ]
    elif tool.kind == ToolKind.HTTP:
        if not tool.url:
            errors["url"] = ["An HTTP tool needs a URL."]
        elif "allowed_hosts" not in errors:
            from agents.tools.base import ToolError

            try:
                check_host_allowed(tool.url.split("{", 1)[0] or tool.url, tool.allowed_hosts)
            except ToolError as exc:
                errors["url"] = [exc.message]
            else:
                refused = egress.check_url(tool.url.split("{", 1)[0] or tool.url)
                if refused:
                    errors["url"] = [refused]
        if (tool.method or "GET").upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            errors["method"] = ["Use GET, POST, PUT, PATCH or DELETE."]
        tool.method = (tool.method or "GET").upper()
        if not isinstance(tool.headers, dict) or not all(
            isinstance(v, str) for v in tool.headers.values()
        ):
            errors["headers"] = ["Give headers as an object of strings."]
    elif tool.kind == ToolKind.MCP and (tool.mcp_server_id is None or not tool.mcp_tool_name):
        errors["mcp_server"] = ["MCP tools are registered by discovering their server."]
    if errors:
        raise ValidationError(errors)
    _full_clean(tool, exclude=["secret_headers", "mcp_server"])


def _check_builtin_risk(tool: Tool) -> None:
    """Refuse a risk below the built-in's floor: policies match on risk, so registering
    ``ticket_update`` as "write" would be an approval-free route to a refund."""
    from agents.tools.builtin import BUILTINS, effective_risk

    floor = effective_risk(kind=tool.kind, builtin=tool.builtin, risk=tool.risk)
    if floor != tool.risk:
        why = BUILTINS[tool.builtin].risk_why
        raise ValidationError(
            {
                "risk": f"The built-in {tool.builtin} is at least '{floor}'"
                + (f": {why}" if why else "")
                + f". Use '{floor}' (or leave the risk out); a risk may be raised, not lowered."
            }
        )


def _apply_builtin_defaults(tool: Tool) -> None:
    from agents.tools.builtin import BUILTINS

    spec = BUILTINS.get(tool.builtin)
    if spec is None:
        return
    if not tool.input_schema:
        tool.input_schema = spec.input_schema
    if not tool.output_schema:
        tool.output_schema = spec.output_schema
    if not tool.description:
        tool.description = spec.description


@transaction.atomic
def tool_create(*, tenant: Any, slug: str, name: str, kind: str, **fields: Any) -> Tool:
    """Register a built-in or HTTP tool (MCP tools come from discovery)."""
    _unique_slug(Tool, tenant, slug)
    if kind == ToolKind.MCP:
        raise ValidationError(
            {
                "kind": "MCP tools are registered by discovering their server: "
                "POST .../mcp-servers/<slug>/discover/."
            }
        )
    tool = Tool(tenant=tenant, slug=slug, name=name, kind=kind, **fields)
    if kind == ToolKind.BUILTIN:
        _apply_builtin_defaults(tool)
        from agents.tools.builtin import BUILTINS

        if tool.builtin in BUILTINS and "risk" not in fields:
            tool.risk = BUILTINS[tool.builtin].risk
    _check_tool(tool)
    _check_builtin_risk(tool)
    tool.save()
    audit_record(
        action="tool.create",
        target=tool,
        tenant=tenant,
        after=snapshot(tool, TOOL_FIELDS),
        metadata={"secret_headers": sorted(tool.secret_headers or {})},
    )
    return tool


@transaction.atomic
def tool_update(*, tool: Tool, **changes: Any) -> Tool:
    """Edit a tool; ``secret_headers=None`` keeps the stored secret headers."""
    tool = Tool.objects.select_for_update().get(pk=tool.pk)
    before = snapshot(tool, TOOL_FIELDS)
    for field, value in changes.items():
        if field == "secret_headers" and value is None:
            continue
        if field == "kind" and value != tool.kind:
            raise ValidationError({"kind": "A tool's kind cannot change; register a new tool."})
        if field == "slug" and value != tool.slug:
            _unique_slug(Tool, tool.tenant, value, exclude_pk=tool.pk)
        setattr(tool, field, value)
    if "risk" not in changes:  # a new built-in brings its floor with it
        from agents.tools.builtin import effective_risk

        tool.risk = effective_risk(kind=tool.kind, builtin=tool.builtin, risk=tool.risk)
    _check_tool(tool)
    _check_builtin_risk(tool)
    tool.save()
    audit_record(
        action="tool.update",
        target=tool,
        tenant=tool.tenant,
        before=before,
        after=snapshot(tool, TOOL_FIELDS),
        metadata={"secret_headers": "changed"} if changes.get("secret_headers") is not None else {},
    )
    return tool


# Grants ------------------------------------------------------------------------------------


@transaction.atomic
def tool_grant_create(*, tool: Tool, agent: Agent | None = None, agent_tag: str = "") -> ToolGrant:
    """Let ``agent`` (or every agent tagged ``agent_tag``) use ``tool``; idempotent."""
    if (agent is None) == (not agent_tag):
        raise ValidationError({"agent": "Name exactly one of an agent or an agent tag."})
    if agent is not None and agent.tenant_id != tool.tenant_id:
        raise ValidationError({"agent": "No such agent in this tenant."})
    existing = ToolGrant.objects.filter(tool=tool, agent=agent, agent_tag=agent_tag).first()
    if existing is not None:
        return existing
    grant = ToolGrant.objects.create(
        tenant=tool.tenant, tool=tool, agent=agent, agent_tag=agent_tag
    )
    audit_record(
        action="tool_grant.create",
        target=grant,
        tenant=tool.tenant,
        after={
            "tool": tool.slug,
            "agent": agent.slug if agent else None,
            "agent_tag": agent_tag or None,
        },
    )
    return grant


@transaction.atomic
def tool_grant_delete(*, grant: ToolGrant) -> None:
    audit_record(
        action="tool_grant.delete",
        target=grant,
        tenant=grant.tenant,
        before={
            "tool": grant.tool.slug,
            "agent": grant.agent.slug if grant.agent_id else None,
            "agent_tag": grant.agent_tag or None,
        },
    )
    grant.delete()


def granted_tools(agent: Agent) -> list[Tool]:
    """Active tools granted to ``agent`` directly or through one of its tags."""
    condition = Q(agent=agent)
    if agent.tags:
        condition |= Q(agent_tag__in=agent.tags)
    tool_ids = ToolGrant.objects.filter(condition).values("tool_id")
    return list(Tool.objects.filter(pk__in=tool_ids, status=Status.ACTIVE).order_by("slug"))


# Agents ------------------------------------------------------------------------------------


def _check_config(kind: str, config: Any) -> None:
    errors = validate_agent_config(kind=kind, config=config)
    if errors:
        raise ValidationError(errors)


def _new_version(
    *,
    agent: Agent,
    config: dict,
    note: str,
    created_by: Any,
    rolled_back_from: int | None = None,
    tools: list[dict] | None = None,
) -> AgentVersion:
    last = AgentVersion.objects.filter(agent=agent).aggregate(n=Max("number"))["n"] or 0
    if tools is None:
        tools = [{"id": t.pk, "slug": t.slug} for t in granted_tools(agent)]
    version = AgentVersion.objects.create(
        tenant=agent.tenant,
        agent=agent,
        number=last + 1,
        config=config,
        tools=tools,
        note=note,
        created_by=created_by,
        rolled_back_from=rolled_back_from,
    )
    Agent.objects.filter(pk=agent.pk).update(current_version=version, updated_at=timezone.now())
    agent.current_version = version
    return version


@transaction.atomic
def agent_create(
    *,
    tenant: Any,
    slug: str,
    name: str,
    kind: str,
    config: dict,
    description: str = "",
    tags: list[str] | None = None,
    note: str = "",
    created_by: Any = None,
) -> Agent:
    """Register an agent and publish its first version (v1).

    Every problem (slug taken, fields, configuration, unknown provider) is reported in one
    ValidationError, so a form shows them all at once.
    """
    agent = Agent(
        tenant=tenant, slug=slug, name=name, kind=kind, description=description, tags=tags or []
    )
    _all_problems(
        lambda: _unique_slug(Agent, tenant, slug),
        lambda: _full_clean(agent, exclude=["current_version"]),
        lambda: _check_config(kind, config),
    )
    agent.save()
    version = _new_version(
        agent=agent, config=config, note=note or "first version", created_by=created_by
    )
    audit_record(
        action="agent.create",
        target=agent,
        tenant=tenant,
        after={
            **snapshot(agent, AGENT_FIELDS),
            "version": version.number,
            "config": config,
            "tools": version.tools,
        },
    )
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, **changes: Any) -> Agent:
    """Edit an agent's metadata (name, description, tags, status); config changes publish."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    before = snapshot(agent, AGENT_FIELDS)
    for field, value in changes.items():
        if field not in ("name", "description", "tags", "status", "slug"):
            raise ValidationError({field: "Publish a new version to change this."})
        if field == "slug" and value != agent.slug:
            _unique_slug(Agent, agent.tenant, value, exclude_pk=agent.pk)
        setattr(agent, field, value)
    _full_clean(agent, exclude=["current_version"])
    agent.save()
    audit_record(
        action="agent.update",
        target=agent,
        tenant=agent.tenant,
        before=before,
        after=snapshot(agent, AGENT_FIELDS),
    )
    return agent


@transaction.atomic
def agent_publish(
    *, agent: Agent, config: dict, note: str = "", created_by: Any = None
) -> AgentVersion:
    """Publish a new immutable version and make it current; pins today's tool grants."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    _check_config(agent.kind, config)
    previous = agent.current_version
    version = _new_version(agent=agent, config=config, note=note, created_by=created_by)
    audit_record(
        action="agent.publish",
        target=agent,
        tenant=agent.tenant,
        before={
            "version": previous.number if previous else None,
            "config": previous.config if previous else None,
            "tools": previous.tools if previous else None,
        },
        after={"version": version.number, "config": config, "tools": version.tools},
        metadata={"note": note},
    )
    return version


@transaction.atomic
def agent_rollback(*, agent: Agent, number: int, created_by: Any = None) -> AgentVersion:
    """Make version ``number`` current again, as a new version copying its config and tools."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    target = AgentVersion.objects.filter(agent=agent, number=number).first()
    if target is None:
        raise ValidationError({"version": f"{agent.slug} has no version {number}."})
    previous = agent.current_version
    version = _new_version(
        agent=agent,
        config=target.config,
        tools=target.tools,
        note=f"rollback to v{number}",
        created_by=created_by,
        rolled_back_from=number,
    )
    audit_record(
        action="agent.rollback",
        target=agent,
        tenant=agent.tenant,
        before={"version": previous.number if previous else None},
        after={"version": version.number, "copied_from": number},
    )
    return version


# Knowledge base ----------------------------------------------------------------------------


@transaction.atomic
def knowledge_document_create(
    *,
    tenant: Any,
    title: str,
    content: str,
    collection: str = "default",
    tags: list[str] | None = None,
) -> KnowledgeDocument:
    """Add a document to the tenant's knowledge base (searched by the kb_search tool)."""
    document = KnowledgeDocument(
        tenant=tenant, title=title, content=content, collection=collection, tags=tags or []
    )
    _full_clean(document)
    document.save()
    audit_record(
        action="knowledge_document.create",
        target=document,
        tenant=tenant,
        after={"title": title, "collection": collection, "length": len(content)},
    )
    return document


@transaction.atomic
def knowledge_document_update(*, document: KnowledgeDocument, **changes: Any) -> KnowledgeDocument:
    before = {
        "title": document.title,
        "collection": document.collection,
        "length": len(document.content),
    }
    for field, value in changes.items():
        setattr(document, field, value)
    _full_clean(document)
    document.save()
    audit_record(
        action="knowledge_document.update",
        target=document,
        tenant=document.tenant,
        before=before,
        after={
            "title": document.title,
            "collection": document.collection,
            "length": len(document.content),
        },
    )
    return document


@transaction.atomic
def knowledge_document_delete(*, document: KnowledgeDocument) -> None:
    audit_record(
        action="knowledge_document.delete",
        target=document,
        tenant=document.tenant,
        before={"title": document.title, "collection": document.collection},
    )
    document.delete()


def object_deleted(obj: Any) -> None:
    """Remove guardian grants of a deleted object (registry objects are disabled, not deleted)."""
    remove_object_grants(obj)

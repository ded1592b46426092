"""Tool writes (built-in and HTTP; MCP tools come from discovery) and tool grants."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from agents.choices import ToolKind
from agents.models import Agent, Tool, ToolGrant
from agents.tools.base import ToolError, check_host_allowed, host_pattern_problems, validate_schema
from agents.tools.builtin import BUILTINS, effective_risk
from controlplane import egress
from controlplane.choices import Status
from controlplane.entities import Entity

TOOLS = Entity(
    Tool,
    "tool",
    fields=(
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
    ),
    clean_exclude=("secret_headers", "mcp_server"),
    keep_when_none=("secret_headers",),
)
GRANTS = Entity(ToolGrant, "tool_grant", fields=())


def _check_tool(tool: Tool) -> None:
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
    TOOLS.clean(tool)


def _check_builtin_risk(tool: Tool) -> None:
    """Refuse a risk below the built-in's floor: policies match on risk, so registering
    ``ticket_update`` as "write" would be an approval-free route to a refund."""
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
    spec = BUILTINS.get(tool.builtin)
    if spec is None:
        return
    if not tool.input_schema:
        tool.input_schema = spec.input_schema
    if not tool.output_schema:
        tool.output_schema = spec.output_schema
    if not tool.description:
        tool.description = spec.description


def _check_tool_and_risk(tool: Tool) -> None:
    _check_tool(tool)
    _check_builtin_risk(tool)


@transaction.atomic
def tool_create(*, tenant: Any, slug: str, name: str, kind: str, **fields: Any) -> Tool:
    """Register a built-in or HTTP tool (MCP tools come from discovery)."""
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
        if tool.builtin in BUILTINS and "risk" not in fields:
            tool.risk = BUILTINS[tool.builtin].risk
    return TOOLS.create(
        tool,
        check=_check_tool_and_risk,
        metadata={"secret_headers": sorted(tool.secret_headers or {})},
    )


def _refuse_kind_change(tool: Tool, changes: dict[str, Any]) -> None:
    if "kind" in changes and changes["kind"] != tool.kind:
        raise ValidationError({"kind": "A tool's kind cannot change; register a new tool."})
    if "risk" not in changes:  # a new built-in brings its floor with it
        builtin = changes.get("builtin", tool.builtin)
        changes["risk"] = effective_risk(kind=tool.kind, builtin=builtin, risk=tool.risk)


@transaction.atomic
def tool_update(*, tool: Tool, **changes: Any) -> Tool:
    """Edit a tool; ``secret_headers=None`` keeps the stored secret headers."""
    secrets_changed = changes.get("secret_headers") is not None
    return TOOLS.update(
        tool,
        changes,
        prepare=_refuse_kind_change,
        check=_check_tool_and_risk,
        metadata={"secret_headers": "changed"} if secrets_changed else {},
    )


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
    GRANTS.record(
        "create",
        grant,
        after={
            "tool": tool.slug,
            "agent": agent.slug if agent else None,
            "agent_tag": agent_tag or None,
        },
    )
    return grant


@transaction.atomic
def tool_grant_delete(*, grant: ToolGrant) -> None:
    """Withdraw a grant; audited with what it granted to whom."""
    GRANTS.delete(
        grant,
        before={
            "tool": grant.tool.slug,
            "agent": grant.agent.slug if grant.agent_id else None,
            "agent_tag": grant.agent_tag or None,
        },
    )


def granted_tools(agent: Agent) -> list[Tool]:
    """Active tools granted to ``agent`` directly or through one of its tags."""
    condition = Q(agent=agent)
    if agent.tags:
        condition |= Q(agent_tag__in=agent.tags)
    tool_ids = ToolGrant.objects.filter(condition).values("tool_id")
    return list(Tool.objects.filter(pk__in=tool_ids, status=Status.ACTIVE).order_by("slug"))

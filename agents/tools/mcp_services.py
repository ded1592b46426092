"""Registering an MCP server's tools as ``Tool`` rows by asking the server what it offers."""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from agents.choices import Risk, ToolKind
from agents.models import McpServer, Tool
from agents.tools.base import ToolError
from agents.tools.mcp_client import DiscoveredTool, discover
from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.choices import Status

SLUG_MAX = 50
RISK_ORDER = [Risk.READ, Risk.WRITE, Risk.DESTRUCTIVE]
DISABLED_BY_DISCOVERY = "disabled_by_discovery"


def risk_from_annotations(annotations: dict[str, Any]) -> str:
    """read for ``readOnlyHint``, destructive for ``destructiveHint``, write otherwise."""
    if annotations.get("readOnlyHint") is True:
        return Risk.READ
    if annotations.get("destructiveHint") is True:
        return Risk.DESTRUCTIVE
    return Risk.WRITE


def _stricter(a: str, b: str) -> str:
    return max(a, b, key=lambda r: RISK_ORDER.index(r) if r in RISK_ORDER else len(RISK_ORDER))


def tool_slug(server: McpServer, name: str, taken: set[str]) -> str:
    """``<server slug>-<tool name>`` as a valid slug of at most 50 characters, not in ``taken``."""
    base = slugify(name.replace("_", "-").replace(".", "-")).strip("-") or "tool"
    slug = f"{server.slug}-{base}"
    if len(slug) <= SLUG_MAX and slug not in taken:
        return slug
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    head = slug[: SLUG_MAX - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def _apply(tool: Tool, found: DiscoveredTool, server: McpServer) -> list[str]:
    """Copy what the server says onto ``tool``; the names of the fields that changed."""
    changes = {
        "name": (found.title or found.name)[:200],
        "description": found.description,
        "input_schema": found.input_schema or {"type": "object"},
        "output_schema": found.output_schema or {},
    }
    changed = [field for field, value in changes.items() if getattr(tool, field) != value]
    for field in changed:
        setattr(tool, field, changes[field])
    discovered_risk = risk_from_annotations(found.annotations)
    # Rediscovery may raise a tool's risk but never lowers one an administrator raised.
    risk = discovered_risk if tool.pk is None else _stricter(tool.risk, discovered_risk)
    if risk != tool.risk:
        tool.risk = risk
        changed.append("risk")
    config = dict(tool.config or {})
    if config.get("annotations") != found.annotations:
        config["annotations"] = found.annotations
        changed.append("config")
    if tool.status == Status.DISABLED and config.pop(DISABLED_BY_DISCOVERY, False):
        # Only a tool discovery itself disabled comes back; one an administrator disabled stays.
        tool.status = Status.ACTIVE
        changed.append("status")
    tool.config = config
    return changed


@transaction.atomic
def _record(server: McpServer, found: list[DiscoveredTool]) -> list[Tool]:
    McpServer.objects.select_for_update().filter(pk=server.pk).first()  # one discovery at a time
    existing = {
        t.mcp_tool_name: t for t in Tool.objects.select_for_update().filter(mcp_server=server)
    }
    taken = set(Tool.objects.values_list("slug", flat=True))
    result: list[Tool] = []
    counts = {"offered": len(found), "created": 0, "updated": 0, "reenabled": 0, "disabled": 0}
    seen: set[str] = set()
    for item in found:
        if item.name in seen:
            continue
        seen.add(item.name)
        tool = existing.get(item.name)
        if tool is None:
            slug = tool_slug(server, item.name, taken)
            taken.add(slug)
            tool = Tool(
                tenant=server.tenant,
                slug=slug,
                kind=ToolKind.MCP,
                mcp_server=server,
                mcp_tool_name=item.name,
                timeout_seconds=server.timeout_seconds,
                tags=["mcp", server.slug],
            )
            _apply(tool, item, server)
            tool.save()
            counts["created"] += 1
        else:
            changed = _apply(tool, item, server)
            if changed:
                tool.save()
                counts["updated"] += 1
                counts["reenabled"] += "status" in changed
        result.append(tool)
    for name, tool in existing.items():
        if name not in seen and tool.status == Status.ACTIVE:
            tool.status = Status.DISABLED
            tool.config = {**(tool.config or {}), DISABLED_BY_DISCOVERY: True}
            tool.save(update_fields=["status", "config", "updated_at"])
            counts["disabled"] += 1
    server.last_discovered_at = timezone.now()
    server.last_error = ""
    server.save(update_fields=["last_discovered_at", "last_error", "updated_at"])
    audit_record(
        action="mcp_server.discover",
        target=server,
        tenant=server.tenant,
        metadata={**counts, "tools": sorted(seen)},
    )
    return result


@transaction.atomic
def _record_failure(server: McpServer, error: ToolError) -> None:
    McpServer.objects.filter(pk=server.pk).update(
        last_error=error.message, updated_at=timezone.now()
    )
    server.last_error = error.message
    audit_record(
        action="mcp_server.discover",
        target=server,
        tenant=server.tenant,
        metadata={"ok": False, "error": error.message, "code": error.code},
    )


def mcp_server_discover(*, server: McpServer) -> list[Tool]:
    """Ask ``server`` for its tools and register each as a Tool of kind ``mcp``; the offered tools.

    New tools get the slug ``<server>-<tool name>``, the server's schemas and a risk from the
    tool's annotations (readOnlyHint: read, destructiveHint: destructive, else write).
    Known tools are updated in place; tools the server no longer offers are disabled (and
    re-enabled if offered again). The writes, ``last_discovered_at`` and the
    ``mcp_server.discover`` audit event commit together. The server is contacted outside the
    transaction. On failure, ``last_error`` and a failure audit event are recorded and the
    ``ToolError`` is raised. Call inside the server's tenant context.
    """
    current = context.current_tenant()
    if current is None or current.pk != server.tenant_id:
        raise RuntimeError("mcp_server_discover must run inside the server's tenant context.")
    if server.status != Status.ACTIVE:
        raise ToolError(
            f"The MCP server {server.slug!r} is disabled; enable it first.", code="disabled"
        )
    try:
        found = discover(server)
    except ToolError as exc:
        _record_failure(server, exc)
        raise
    return _record(server, found)

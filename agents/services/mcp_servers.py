"""MCP server writes: register and edit (tool discovery is ``agents.tools.mcp_services``)."""

from __future__ import annotations

import shlex
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import McpServer, Tool
from agents.services.common import full_clean, unique_slug
from controlplane import egress
from controlplane.audit.services import audit_record, snapshot
from controlplane.choices import Status

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


def stdio_command_problem(command: str) -> str | None:
    """Why this installation refuses ``command`` as a stdio MCP server, or None.

    The executable (first word) must be listed in the MCP_STDIO_COMMANDS setting.
    """
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
    full_clean(server, exclude=["secret_headers", "secret_env"])


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
    unique_slug(McpServer, tenant, slug)
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
            unique_slug(McpServer, server.tenant, value, exclude_pk=server.pk)
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

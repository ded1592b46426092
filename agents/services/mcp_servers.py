"""MCP server writes: register and edit (tool discovery is ``agents.tools.mcp_services``)."""

from __future__ import annotations

import shlex
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import McpServer, Tool
from controlplane import egress
from controlplane.choices import Status
from controlplane.entities import Entity

MCP_SERVERS = Entity(
    McpServer,
    "mcp_server",
    fields=(
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
    ),
    clean_exclude=("secret_headers", "secret_env"),
    keep_when_none=("secret_headers", "secret_env"),
)


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
    MCP_SERVERS.clean(server)


@transaction.atomic
def mcp_server_create(
    *, tenant: Any, slug: str, name: str, transport: str, **fields: Any
) -> McpServer:
    """Register an MCP server; run discovery separately to register its tools.

    Other fields: description, url, command, args, secret_headers, secret_env,
    timeout_seconds, tags, status (the model's defaults where left out or None).
    """
    server = MCP_SERVERS.new(tenant=tenant, slug=slug, name=name, transport=transport, **fields)
    return MCP_SERVERS.create(
        server,
        check=_check_mcp,
        metadata={
            "secret_headers": sorted(server.secret_headers),
            "secret_env": sorted(server.secret_env),
        },
    )


@transaction.atomic
def mcp_server_update(*, server: McpServer, **changes: Any) -> McpServer:
    """Edit an MCP server; ``None`` for a secret mapping keeps the stored one."""
    server = MCP_SERVERS.update(server, changes, check=_check_mcp)
    if server.status == Status.DISABLED:
        Tool.objects.filter(mcp_server=server).update(status=Status.DISABLED)
    return server

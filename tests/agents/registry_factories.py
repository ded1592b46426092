"""Registry objects for tests, created through the services (so audit rows exist too)."""

from __future__ import annotations

import itertools

from agents.models import Ticket
from agents.services.agents import agent_create
from agents.services.knowledge import knowledge_document_create
from agents.services.mcp_servers import mcp_server_create
from agents.services.providers import provider_create
from agents.services.secrets import secret_create
from agents.services.tools import tool_create
from controlplane import context

_seq = itertools.count(1)


def make_provider(tenant, slug: str | None = None, kind: str = "simulated", **fields):
    with context.system_context("tests", tenant=tenant):
        return provider_create(
            tenant=tenant,
            slug=slug or f"prov-{next(_seq)}",
            name="Provider",
            kind=kind,
            models=fields.pop(
                "models", [{"name": "sim-1", "input_per_mtok": 1, "output_per_mtok": 2}]
            ),
            **fields,
        )


def make_agent(tenant, slug: str | None = None, provider=None, **fields):
    provider = provider or make_provider(tenant)
    config = fields.pop(
        "config",
        {
            "provider": provider.slug,
            "model": "sim-1",
            "system_prompt": "You help.",
            "temperature": 0.2,
        },
    )
    with context.system_context("tests", tenant=tenant):
        return agent_create(
            tenant=tenant,
            slug=slug or f"agent-{next(_seq)}",
            name="Agent",
            kind=fields.pop("kind", "llm"),
            config=config,
            **fields,
        )


def make_tool(tenant, slug: str | None = None, **fields):
    with context.system_context("tests", tenant=tenant):
        return tool_create(
            tenant=tenant,
            slug=slug or f"tool-{next(_seq)}",
            name="Calculator",
            kind=fields.pop("kind", "builtin"),
            builtin=fields.pop("builtin", "calculator"),
            **fields,
        )


def make_secret(tenant, name: str | None = None, value: str = "s3cret-value-123"):
    with context.system_context("tests", tenant=tenant):
        return secret_create(
            tenant=tenant, name=name or f"secret-{next(_seq)}", value=value
        )


def make_document(tenant, title: str = "Refund policy", content: str = "Refunds within 30 days."):
    with context.system_context("tests", tenant=tenant):
        return knowledge_document_create(tenant=tenant, title=title, content=content)


def make_ticket(tenant, title: str = "Printer on fire"):
    number = Ticket.objects.for_tenant(tenant).count() + next(_seq) * 1000
    return Ticket.objects.for_tenant(tenant).create(tenant=tenant, number=number, title=title)


def make_mcp_server(tenant, slug: str | None = None, **fields):
    with context.system_context("tests", tenant=tenant):
        return mcp_server_create(
            tenant=tenant,
            slug=slug or f"mcp-{next(_seq)}",
            name="MCP",
            transport="http",
            url=fields.pop("url", "http://127.0.0.1:9/mcp"),
            **fields,
        )

"""Demo registry for ``manage.py seed_demo``: realistic, offline on the simulated provider.

Idempotent: objects that exist (by slug) are left as they are.
"""

from __future__ import annotations

import os
from typing import Any

from agents.models import Agent, KnowledgeDocument, ProviderConnection, Tool, ToolGrant
from agents.services.agents import agent_create
from agents.services.knowledge import knowledge_document_create
from agents.services.providers import provider_create
from agents.services.tools import tool_create, tool_grant_create
from controlplane import context
from controlplane.tenancy.models import Tenant

KB = [
    (
        "Refund policy",
        "billing",
        "Customers can get a full refund within 30 days of purchase. Refunds over 100 EUR need a "
        "supervisor's approval. Refunds go back to the original payment method within 5 days.",
    ),
    (
        "Invoices and billing cycles",
        "billing",
        "Invoices are issued on the first day of each month. A failed card charge is retried "
        "three times; after that the account is paused until the invoice is paid.",
    ),
    (
        "Resetting a password",
        "technical",
        "Use 'Forgot password' on the login page. Reset links expire after 1 hour. Accounts with "
        "single sign-on reset their password with their identity provider.",
    ),
    (
        "API rate limits",
        "technical",
        "The public API allows 600 requests per minute per token. A 429 answer carries "
        "Retry-After; clients should back off exponentially.",
    ),
    (
        "Incident runbook: checkout errors",
        "technical",
        "If checkout returns 502 errors, check the payment gateway status page first, then the "
        "queue depth of the order workers. Escalate to on-call after 10 minutes.",
    ),
    (
        "Shipping times",
        "faq",
        "Orders ship within 2 business days. Express shipping arrives the next business day in "
        "the EU. Tracking links are emailed when the parcel leaves the warehouse.",
    ),
]

TOOLS: list[dict[str, Any]] = [
    {
        "slug": "kb-search",
        "name": "Knowledge base search",
        "kind": "builtin",
        "builtin": "kb_search",
        "tags": ["knowledge"],
    },
    {"slug": "calculator", "name": "Calculator", "kind": "builtin", "builtin": "calculator"},
    {"slug": "json-extract", "name": "JSON extract", "kind": "builtin", "builtin": "json_extract"},
    {
        "slug": "ticket-create",
        "name": "Create ticket",
        "kind": "builtin",
        "builtin": "ticket_create",
        "tags": ["tickets"],
    },
    {
        # ticket_update can resolve a ticket (a refund, see issue-refund): destructive, so an
        # agent's call waits for an admin under the default policy
        "slug": "ticket-update",
        "name": "Update ticket",
        "kind": "builtin",
        "builtin": "ticket_update",
        "tags": ["tickets"],
    },
    {
        "slug": "issue-refund",
        "name": "Issue refund",
        "kind": "builtin",
        "builtin": "ticket_update",
        "risk": "destructive",
        "tags": ["billing", "refunds"],
        "description": "Records a refund on the ticket and resolves it. Moves money: policies "
        "require an approval first.",
    },
    {
        "slug": "status-page",
        "name": "Fetch status page",
        "kind": "builtin",
        "builtin": "http_request",
        "allowed_hosts": ["status.example.com"],
        # http_request can POST, so it is at least "write" whatever it is used for
        "description": "Read the public status page (status.example.com only).",
    },
]

# tool slug -> agent tags allowed to use it
GRANTS = {
    "kb-search": ["support", "research"],
    "ticket-create": ["support"],
    "ticket-update": ["billing"],
    "calculator": ["billing"],
    "status-page": ["research"],
}

LLM = "simulated"


def _agents() -> list[dict[str, Any]]:
    return [
        {
            "slug": "support-triage",
            "name": "Support triage",
            "kind": "router",
            "tags": ["support", "router"],
            "description": "Routes an incoming support message to billing or technical support.",
            "config": {
                "mode": "rules",
                "default_route": "technical",
                "rules": [
                    {
                        "when": {"path": "input.category", "op": "eq", "value": "billing"},
                        "route": "billing",
                    },
                    {
                        "when": {
                            "path": "input.message",
                            "op": "matches",
                            "value": "(?i)refund|invoice|charge|payment|billing",
                        },
                        "route": "billing",
                    },
                    {
                        "when": {
                            "path": "input.message",
                            "op": "matches",
                            "value": "(?i)error|bug|crash|login|password|api",
                        },
                        "route": "technical",
                    },
                ],
            },
        },
        {
            "slug": "billing-support",
            "name": "Billing support",
            "kind": "llm",
            "tags": ["support", "billing"],
            "description": "Answers billing questions, opens tickets, computes refunds.",
            "config": {
                "provider": LLM,
                "model": "sim-large",
                "temperature": 0.2,
                "max_iterations": 6,
                "system_prompt": (
                    "You are the billing support agent. Look up the refund policy before "
                    "answering and open a ticket for every refund request.\n"
                    'SIMULATE call kb-search {"query": "refund policy", "top_k": 2}\n'
                    'SIMULATE call ticket-create {"title": "Refund request", '
                    '"priority": "normal"}'
                ),
            },
        },
        {
            "slug": "technical-support",
            "name": "Technical support",
            "kind": "llm",
            "tags": ["support", "technical"],
            "description": "Diagnoses technical problems from the runbooks and opens tickets.",
            "config": {
                "provider": LLM,
                "model": "sim-large",
                "temperature": 0.1,
                "max_iterations": 6,
                "system_prompt": (
                    "You are the technical support agent. Search the runbooks, explain "
                    "the fix in steps, and open a ticket when it needs an engineer.\n"
                    'SIMULATE call kb-search {"query": "checkout errors runbook", "top_k": 2}'
                ),
            },
        },
        {
            "slug": "researcher",
            "name": "Researcher",
            "kind": "llm",
            "tags": ["research"],
            "description": "Collects facts from the knowledge base for a question.",
            "config": {
                "provider": LLM,
                "model": "sim-small",
                "temperature": 0.3,
                "system_prompt": (
                    "Research the question using the knowledge base; cite document titles.\n"
                    'SIMULATE call kb-search {"query": "shipping times", "top_k": 3}'
                ),
            },
        },
        {
            "slug": "summarizer",
            "name": "Summarizer",
            "kind": "llm",
            "tags": ["writing"],
            "description": "Summarises a conversation or findings into a short structured note.",
            "config": {
                "provider": LLM,
                "model": "sim-small",
                "temperature": 0,
                "system_prompt": "Summarise the input in two sentences and rate sentiment.",
                "output_schema": {
                    "type": "object",
                    "required": ["summary", "sentiment"],
                    "properties": {
                        "summary": {"type": "string"},
                        "sentiment": {"enum": ["positive", "neutral", "negative"]},
                    },
                    "additionalProperties": False,
                },
            },
        },
        {
            "slug": "support-lead",
            "name": "Support lead",
            "kind": "llm",
            "tags": ["support", "manager"],
            "description": "Supervises: asks the billing and technical agents, then answers.",
            "config": {
                "provider": LLM,
                "model": "sim-large",
                "max_iterations": 6,
                "system_prompt": (
                    "You lead the support team. Ask the right specialists, then write one answer "
                    "for the customer.\n"
                    'SIMULATE call delegate_to_billing_support {"task": "Refund policy?"}\n'
                    'SIMULATE call delegate_to_technical_support {"task": "Check for incidents"}'
                ),
            },
        },
        {
            "slug": "concierge",
            "name": "Concierge",
            "kind": "llm",
            "tags": ["support"],
            "description": "Greets the customer and hands the conversation to a specialist.",
            "config": {
                "provider": LLM,
                "model": "sim-small",
                "max_iterations": 4,
                "system_prompt": (
                    "Greet the customer; hand billing questions to billing support.\n"
                    'SIMULATE call handoff_to_billing-support {"reason": "billing question"}'
                ),
            },
        },
        {
            "slug": "refund-approver",
            "name": "Refund approver",
            "kind": "human",
            "tags": ["support", "approvals"],
            "description": "A person from the billing team approves or rejects refunds.",
            "config": {
                "instructions": "Approve the refund if it follows the refund policy.",
                "assignee_role": "admin",
                "response_schema": {
                    "type": "object",
                    "required": ["approved"],
                    "properties": {"approved": {"type": "boolean"}, "comment": {"type": "string"}},
                },
            },
        },
    ]


def _providers(tenant: Tenant) -> None:
    if not ProviderConnection.objects.filter(slug=LLM).exists():
        provider_create(
            tenant=tenant,
            slug=LLM,
            name="Simulated (offline)",
            kind="simulated",
            description="Answers deterministically without a network: for demos and tests.",
            models=[
                {"name": "sim-small", "input_per_mtok": 0.0, "output_per_mtok": 0.0},
                {"name": "sim-large", "input_per_mtok": 0.0, "output_per_mtok": 0.0},
            ],
        )
    if not ProviderConnection.objects.filter(slug="openai").exists():
        provider_create(
            tenant=tenant,
            slug="openai",
            name="OpenAI",
            kind="openai",
            base_url=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            api_key_env="OPENAI_API_KEY",
            description="Usable once OPENAI_API_KEY (and optionally OPENAI_BASE_URL for any "
            "OpenAI-compatible server) is set in the environment.",
            models=[
                {"name": "gpt-4o-mini", "input_per_mtok": 0.15, "output_per_mtok": 0.6},
                {"name": "gpt-4o", "input_per_mtok": 2.5, "output_per_mtok": 10.0},
            ],
        )


def seed_acme(tenant: Tenant) -> int:
    """Providers, tools, grants, knowledge base and agents of the acme demo; returns new objects."""
    created = 0
    _providers(tenant)
    for title, collection, content in KB:
        if not KnowledgeDocument.objects.filter(title=title).exists():
            knowledge_document_create(
                tenant=tenant, title=title, content=content, collection=collection
            )
            created += 1
    for spec in TOOLS:
        if not Tool.objects.filter(slug=spec["slug"]).exists():
            spec = dict(spec)
            tool_create(
                tenant=tenant,
                slug=spec.pop("slug"),
                name=spec.pop("name"),
                kind=spec.pop("kind"),
                **spec,
            )
            created += 1
    for slug, tags in GRANTS.items():
        tool = Tool.objects.get(slug=slug)
        for tag in tags:
            if not ToolGrant.objects.filter(tool=tool, agent_tag=tag).exists():
                tool_grant_create(tool=tool, agent_tag=tag)
    for spec in _agents():
        if not Agent.objects.filter(slug=spec["slug"]).exists():
            spec = dict(spec)
            agent_create(tenant=tenant, note="seeded demo", **spec)
            created += 1
    return created


def seed_globex(tenant: Tenant) -> int:
    _providers(tenant)
    if Agent.objects.filter(slug="assistant").exists():
        return 0
    agent_create(
        tenant=tenant,
        slug="assistant",
        name="Assistant",
        kind="llm",
        note="seeded demo",
        description="A general assistant on the simulated provider.",
        config={"provider": LLM, "model": "sim-small", "system_prompt": "Help briefly."},
    )
    return 1


def seed(stdout: Any) -> None:
    """Called by seed_demo inside its transaction."""
    for slug, fn in (("acme", seed_acme), ("globex", seed_globex)):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            continue
        with context.tenant_context(tenant):
            created = fn(tenant)
        stdout.write(f"Registry demo for {slug}: {created} new object(s).")

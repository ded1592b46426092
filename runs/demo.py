"""Demo workflows for ``manage.py seed_demo``: one per orchestration pattern, all runnable
offline on the simulated provider. Idempotent."""

from __future__ import annotations

from typing import Any

from controlplane import context
from controlplane.tenancy.models import Tenant
from runs import workflow_services
from runs.models import Workflow


def _text_input(name: str, **extra: str) -> dict:
    """The input schema of a workflow that takes one required text, ``name``."""
    return {
        "type": "object",
        "required": [name],
        "properties": {name: {"type": "string", **extra}},
    }


TICKET_INPUT = {
    "type": "object",
    "required": ["message", "customer"],
    "properties": {
        "message": {"type": "string", "minLength": 1, "title": "Customer message"},
        "customer": {"type": "string", "minLength": 1, "title": "Customer"},
        "amount": {"type": "number", "minimum": 0, "title": "Refund amount (EUR)"},
    },
}

WORKFLOWS: list[dict[str, Any]] = [
    {
        "slug": "support-ticket",
        "name": "Support ticket",
        "description": "Triage routes the ticket to billing or technical support; a refund "
        "needs a person's approval before it is issued; a summary closes it.",
        "definition": {
            "input_schema": TICKET_INPUT,
            "example_input": {
                "message": "I was charged twice, please refund me.",
                "customer": "Dana Scully",
                "amount": 120,
            },
            "steps": [
                {
                    "id": "open_ticket",
                    "type": "tool",
                    "tool": "ticket-create",
                    "arguments": {
                        "title": "{{ input.message }}",
                        "customer": "{{ input.customer }}",
                    },
                },
                {
                    "id": "triage",
                    "type": "router",
                    "agent": "support-triage",
                    "input": "{{ input }}",
                    "routes": {"billing": ["billing"], "technical": ["technical"]},
                },
                {
                    "id": "billing",
                    "type": "agent",
                    "agent": "billing-support",
                    "needs": ["triage"],
                    "input": "Customer {{ input.customer }} writes: {{ input.message }}",
                    "retry": {"attempts": 2, "backoff_seconds": 1},
                },
                {
                    "id": "technical",
                    "type": "agent",
                    "agent": "technical-support",
                    "needs": ["triage"],
                    "input": "Customer {{ input.customer }} writes: {{ input.message }}",
                    "retry": {"attempts": 2, "backoff_seconds": 1},
                },
                {
                    "id": "approve_refund",
                    "type": "approval",
                    "needs": ["billing"],
                    "title": "Refund {{ input.amount | default(0) }} EUR to {{ input.customer }}?",
                    "details": {
                        "customer": "{{ input.customer }}",
                        "amount": "{{ input.amount | default(0) }}",
                        "message": "{{ input.message }}",
                        "agent_answer": "{{ steps.billing.output }}",
                    },
                    "approvers": "admin",
                    "timeout_seconds": 86400,
                    "on_timeout": "deny",
                },
                {
                    "id": "refund",
                    "type": "tool",
                    "tool": "issue-refund",
                    "needs": ["approve_refund"],
                    "arguments": {
                        "number": "{{ steps.open_ticket.output.ticket.number }}",
                        "status": "resolved",
                        "note": "Refund of {{ input.amount | default(0) }} EUR issued.",
                    },
                },
                {
                    "id": "summary",
                    "type": "agent",
                    "agent": "summarizer",
                    "needs": ["refund", "technical"],
                    "input": {
                        "customer": "{{ input.customer }}",
                        "message": "{{ input.message }}",
                        "route": "{{ steps.triage.output.route }}",
                    },
                },
            ],
            "output": {
                "ticket": "{{ steps.open_ticket.output.ticket.number }}",
                "route": "{{ steps.triage.output.route }}",
                "summary": "{{ steps.summary.output }}",
            },
        },
    },
    {
        "slug": "research-brief",
        "name": "Research brief",
        "description": "Three researchers work in parallel; the summarizer merges them.",
        "definition": {
            "input_schema": _text_input("topic", title="Topic"),
            "example_input": {"topic": "How fast do we ship and refund?"},
            "steps": [
                {
                    "id": "research",
                    "type": "parallel",
                    "merge": {"agent": "summarizer"},
                    "max_concurrency": 3,
                    "branches": [
                        {
                            "name": "shipping",
                            "agent": "researcher",
                            "input": "{{ input.topic }}: shipping",
                        },
                        {
                            "name": "refunds",
                            "agent": "researcher",
                            "input": "{{ input.topic }}: refunds",
                        },
                        {
                            "name": "incidents",
                            "agent": "researcher",
                            "input": "{{ input.topic }}: incidents",
                        },
                    ],
                },
            ],
            "output": "{{ steps.research.output }}",
        },
    },
    {
        "slug": "support-escalation-team",
        "name": "Support team (manager)",
        "description": "A support lead delegates to the billing and technical agents.",
        "definition": {
            "input_schema": _text_input("message"),
            "example_input": {"message": "Checkout fails and I was charged anyway."},
            "steps": [
                {
                    "id": "lead",
                    "type": "manager",
                    "agent": "support-lead",
                    "delegates": ["billing-support", "technical-support"],
                    "input": "{{ input.message }}",
                    "max_delegations": 4,
                }
            ],
        },
    },
    {
        "slug": "concierge-chat",
        "name": "Concierge (handoff)",
        "description": "The concierge greets and hands the conversation to billing support.",
        "definition": {
            "input_schema": _text_input("message"),
            "example_input": {"message": "Hi! Can I get an invoice copy?"},
            "steps": [
                {
                    "id": "chat",
                    "type": "handoff",
                    "start": "concierge",
                    "agents": ["concierge", "billing-support"],
                    "input": "{{ input.message }}",
                    "max_handoffs": 3,
                }
            ],
        },
    },
    {
        "slug": "iterative-answer",
        "name": "Iterative answer (loop)",
        "description": "The researcher refines an answer until three passes are done.",
        "definition": {
            "input_schema": _text_input("question"),
            "example_input": {"question": "What is our refund window?"},
            "steps": [
                {
                    "id": "refine",
                    "type": "loop",
                    "agent": "researcher",
                    "max_iterations": 5,
                    "input": "Pass {{ iteration }} on: {{ input.question }}. "
                    "Previous: {{ previous | default('none', true) }}",
                    "until": {"path": "iteration", "op": "gte", "value": 3},
                }
            ],
        },
    },
]


def seed(stdout: Any) -> None:
    """Called by seed_demo after the registry demo (agents and tools must exist)."""
    tenant = Tenant.objects.filter(slug="acme").first()
    if tenant is None:
        return
    created = 0
    with context.tenant_context(tenant):
        for spec in WORKFLOWS:
            if Workflow.objects.filter(slug=spec["slug"]).exists():
                continue
            workflow_services.workflow_create(tenant=tenant, note="seeded demo", **spec)
            created += 1
    stdout.write(f"Workflow demo for acme: {created} new workflow(s).")

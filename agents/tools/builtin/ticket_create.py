"""The ticket_create built-in: open a support ticket, once per idempotency key; the ticket JSON."""

from __future__ import annotations

from typing import Any

from agents.choices import Risk, TicketPriority, TicketStatus
from agents.models import Ticket
from agents.services.tickets import ticket_create
from agents.tools.base import ToolContext
from agents.tools.builtin.spec import BuiltinSpec

TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "number": {"type": "integer"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "status": {"enum": TicketStatus.values},
        "priority": {"enum": TicketPriority.values},
        "customer": {"type": "string"},
        "data": {"type": "object"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
    },
    "required": ["id", "number", "title", "status", "priority"],
}


def ticket_as_dict(ticket: Ticket) -> dict[str, Any]:
    """The JSON a ticket tool returns."""
    return {
        "id": ticket.pk,
        "number": ticket.number,
        "title": ticket.title,
        "description": ticket.description,
        "status": ticket.status,
        "priority": ticket.priority,
        "customer": ticket.customer,
        "data": ticket.data,
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
    }


def ticket_create_tool(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ticket, created = ticket_create(
        tenant=ctx.tenant,
        title=arguments["title"],
        description=arguments.get("description", ""),
        priority=arguments.get("priority", TicketPriority.NORMAL),
        customer=arguments.get("customer", ""),
        data=arguments.get("data"),
        idempotency_key=ctx.idempotency_key,
        caller=ctx.caller,
    )
    return {"ticket": ticket_as_dict(ticket), "created": created}


TICKET_CREATE_INPUT = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 300},
        "description": {"type": "string", "maxLength": 20000},
        "priority": {"enum": TicketPriority.values, "default": TicketPriority.NORMAL},
        "customer": {"type": "string", "maxLength": 200},
        "data": {"type": "object"},
    },
    "required": ["title"],
    "additionalProperties": False,
}
TICKET_CREATE_OUTPUT = {
    "type": "object",
    "properties": {"ticket": TICKET_SCHEMA, "created": {"type": "boolean"}},
    "required": ["ticket", "created"],
}


SPEC = BuiltinSpec(
    name="ticket_create",
    description="Open a support ticket (a retried call with the same idempotency key "
    "returns the first ticket).",
    input_schema=TICKET_CREATE_INPUT,
    output_schema=TICKET_CREATE_OUTPUT,
    risk=Risk.WRITE,
    fn=ticket_create_tool,
    risk_why="it opens tickets",
)

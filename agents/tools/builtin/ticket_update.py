"""The ticket_update built-in: change a ticket's status or priority, or add a note."""

from __future__ import annotations

from typing import Any

from agents.choices import Risk, TicketPriority, TicketStatus
from agents.models import Ticket
from agents.services.tickets import ticket_update
from agents.tools.base import ToolContext, ToolError
from agents.tools.builtin.spec import BuiltinSpec
from agents.tools.builtin.ticket_create import TICKET_SCHEMA, ticket_as_dict


def ticket_update_tool(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    try:
        ticket, changed, replayed = ticket_update(
            tenant=ctx.tenant,
            number=arguments["number"],
            status=arguments.get("status"),
            priority=arguments.get("priority"),
            note=arguments.get("note"),
            idempotency_key=ctx.idempotency_key,
            caller=ctx.caller,
        )
    except Ticket.DoesNotExist:
        raise ToolError(f"There is no ticket #{arguments['number']}.", code="not_found") from None
    return {"ticket": ticket_as_dict(ticket), "changed": changed, "replayed": replayed}


TICKET_UPDATE_INPUT = {
    "type": "object",
    "properties": {
        "number": {"type": "integer", "minimum": 1},
        "status": {"enum": TicketStatus.values},
        "priority": {"enum": TicketPriority.values},
        "note": {"type": "string", "minLength": 1, "maxLength": 5000},
    },
    "required": ["number"],
    "anyOf": [{"required": ["status"]}, {"required": ["priority"]}, {"required": ["note"]}],
    "additionalProperties": False,
}
TICKET_UPDATE_OUTPUT = {
    "type": "object",
    "properties": {
        "ticket": TICKET_SCHEMA,
        "changed": {"type": "array", "items": {"type": "string"}},
        "replayed": {"type": "boolean"},
    },
    "required": ["ticket", "changed", "replayed"],
}


SPEC = BuiltinSpec(
    name="ticket_update",
    description="Change a ticket's status or priority, or add a note to it.",
    input_schema=TICKET_UPDATE_INPUT,
    output_schema=TICKET_UPDATE_OUTPUT,
    risk=Risk.DESTRUCTIVE,
    fn=ticket_update_tool,
    risk_why="it can resolve or close any ticket (that is how a refund is recorded)",
)

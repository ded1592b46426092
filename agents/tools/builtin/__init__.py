"""Built-in tools: Python functions registered by name in ``BUILTINS``, one module each.

Each module's ``SPEC`` (a ``BuiltinSpec``, see ``spec``) carries the function's own input
and output JSON Schemas (copied onto a ``Tool`` when it is registered) and its default
risk. Functions take ``(arguments, ctx)`` with arguments already validated, and return a
JSON object. The ticket tools write a tenant table and their audit event in one
transaction (``agents.services.tickets``), and honour the call's idempotency key.
Imports ``agents`` and ``controlplane`` only.
"""

from __future__ import annotations

from agents.tools.builtin import (
    calculator,
    http_request,
    json_extract,
    kb_search,
    ticket_create,
    ticket_update,
)
from agents.tools.builtin.spec import BuiltinSpec, risk_rank

BUILTINS: dict[str, BuiltinSpec] = {
    module.SPEC.name: module.SPEC
    for module in (http_request, json_extract, calculator, kb_search, ticket_create, ticket_update)
}


def effective_risk(*, kind: str, builtin: str, risk: str) -> str:
    """The risk policies see for a tool: its registered risk, raised to its built-in's floor.

    Risk follows what a call does, not the name it was registered under: a tool registered
    on ``ticket_update`` as "write" is still destructive.
    """
    spec = BUILTINS.get(builtin) if kind == "builtin" else None
    if spec is not None and risk_rank(spec.risk) > risk_rank(risk):
        return spec.risk
    return risk

"""The published JSON Schema of a policy definition, its vocabularies and the default
definition. One coherent thing: data the API publishes whole and the validator is built from."""

from __future__ import annotations

from typing import Any

ACTIONS = ("invoke_agent", "call_model", "call_tool", "delegate")
EFFECTS = ("allow", "deny", "require_approval")
RISKS = ("read", "write", "destructive")
ROLES = ("viewer", "operator", "admin", "owner")
EXPIRY_OUTCOMES = ("deny", "approve")

# What a condition may read. Kept in one place: the schema, the editor's help and the
# decision point all use it.
CONDITION_VARIABLES: dict[str, str] = {
    "action": "the action: invoke_agent, call_model, call_tool or delegate",
    "agent": "the calling agent's slug ('' when none)",
    "agent_tags": "the calling agent's tags (list of strings)",
    "tool": "the tool's slug ('' when not a tool call)",
    "tool_tags": "the tool's tags",
    "risk": "the tool's risk: read, write or destructive ('' when not a tool call)",
    "model": "the model name ('' when not a model call)",
    "args": "the call's arguments (a map; {} when none)",
    "input": "the run's input",
    "spend": "the run's spend so far: {tokens, cost_usd, steps, wall_seconds}",
    "now": "the time of the call (a timestamp, UTC)",
    "hour": "the hour of the call, 0-23 UTC",
    "weekday": "the day of the week of the call, 0 = Monday, UTC",
}

RULE_ID = r"^[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?$"
MATCHER = r"^(?:tag:|risk:)?[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"
MAX_RULES = 5000


def _matcher(what: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "pattern": MATCHER},
        "uniqueItems": True,
        "description": what + " An empty or missing list matches any.",
    }


_BUDGET_PROPERTIES = {
    "tokens": {"type": "integer", "minimum": 0, "description": "Hard limit on tokens."},
    "cost_usd": {"type": "number", "minimum": 0, "description": "Hard limit on cost (USD)."},
    "steps": {"type": "integer", "minimum": 0, "description": "Hard limit on steps run."},
    "soft_tokens": {"type": "integer", "minimum": 0, "description": "Ask approval past this."},
    "soft_cost_usd": {"type": "number", "minimum": 0, "description": "Ask approval past this."},
    "soft_steps": {"type": "integer", "minimum": 0, "description": "Ask approval past this."},
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Policy definition",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rules": {
            "type": "array",
            "maxItems": MAX_RULES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "effect"],
                "properties": {
                    "id": {
                        "type": "string",
                        "pattern": RULE_ID,
                        "description": "Unique in the policy: lower-case letters, digits, - _.",
                    },
                    "description": {"type": "string", "maxLength": 500},
                    "effect": {"enum": list(EFFECTS)},
                    "actions": {
                        "type": "array",
                        "items": {"enum": list(ACTIONS)},
                        "uniqueItems": True,
                        "description": "Actions the rule governs. Empty or missing: all.",
                    },
                    "agents": _matcher("Agent slugs or tag:<tag>."),
                    "tools": _matcher("Tool slugs, tag:<tag> or risk:<read|write|destructive>."),
                    "models": _matcher("Model names."),
                    "condition": {
                        "type": "string",
                        "maxLength": 2000,
                        "description": "A CEL expression that must be true for the rule to "
                        "apply. Variables: " + ", ".join(CONDITION_VARIABLES) + ".",
                    },
                    "priority": {
                        "type": "integer",
                        "minimum": -1000,
                        "maximum": 1000,
                        "description": "Higher wins between allow and require_approval; "
                        "deny always wins.",
                    },
                    "approvers": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "role": {"enum": list(ROLES)},
                            "quorum": {"type": "integer", "minimum": 1, "maximum": 10},
                            "expires_after_minutes": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 60 * 24 * 30,
                            },
                            "on_expiry": {"enum": list(EXPIRY_OUTCOMES)},
                        },
                    },
                },
            },
        },
        "rate_limits": {
            "type": "array",
            "maxItems": 200,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "scope", "limit", "per_seconds"],
                "properties": {
                    "id": {"type": "string", "pattern": RULE_ID},
                    "scope": {"enum": ["tenant", "agent", "tool"]},
                    "target": {
                        "type": "string",
                        "pattern": r"^(\*|[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?)$",
                        "description": "A slug, or * for a separate bucket per agent or tool.",
                    },
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                    "per_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                    "burst": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                },
            },
        },
        "budgets": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "run": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        **_BUDGET_PROPERTIES,
                        "wall_seconds": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "description": "Hard limit on the run's wall time.",
                        },
                    },
                },
                "tenant_daily": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": _BUDGET_PROPERTIES,
                },
            },
        },
    },
}


DEFAULT_DEFINITION: dict[str, Any] = {
    "rules": [
        {
            "id": "destructive-tools-need-approval",
            "description": "An admin approves every call an agent makes to a destructive tool "
            "(tool steps of published workflows were reviewed when published).",
            "effect": "require_approval",
            "actions": ["call_tool"],
            "tools": ["risk:destructive"],
            "condition": "agent != ''",
            "approvers": {"role": "admin", "quorum": 1},
        }
    ]
}

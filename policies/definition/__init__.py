"""Policy definitions: the published JSON Schema, validation with paths, and compilation.

A definition is a JSON object::

    {
      "rules": [
        {
          "id": "refunds-over-100",
          "description": "Refunds above 100 need a second pair of eyes",
          "effect": "require_approval",            # allow | deny | require_approval
          "actions": ["call_tool"],                # invoke_agent, call_model, call_tool, delegate
          "agents": ["support-agent", "tag:support"],
          "tools": ["refund", "tag:payments", "risk:destructive"],
          "models": ["gpt-4o-mini"],
          "condition": "args.amount > 100",        # CEL, over the variables in CONDITION_VARIABLES
          "priority": 10,
          "approvers": {"role": "admin", "quorum": 1, "expires_after_minutes": 1440,
                        "on_expiry": "deny"}
        }
      ],
      "rate_limits": [
        {"id": "tool-calls", "scope": "tool", "target": "*", "limit": 60, "per_seconds": 60}
      ],
      "budgets": {
        "run": {"cost_usd": 5, "soft_cost_usd": 2, "tokens": 200000, "steps": 100,
                "wall_seconds": 3600},
        "tenant_daily": {"cost_usd": 100, "tokens": 5000000}
      }
    }

An empty matcher list (or a missing one) matches everything. Validation is pure (no
database) and reports every problem under its path (``rules[0].condition``); compilation
turns a valid definition into ``CompiledRule`` objects whose CEL programs are compiled once.
``validate_names`` checks the agent, tool and model names against what the tenant has
(``KnownNames``): the services run it when a new version is saved, never on activation, so a
version naming an object deleted since still applies.

Modules: ``schema`` (the published schema, vocabularies, the default definition),
``conditions`` (CEL conditions and their cost checks), ``validation`` (problems with paths,
names against the tenant) and ``rules`` (compilation).
"""

from policies.definition.conditions import (
    MAX_CEL_PATTERN_PROGRAM,
    compile_condition,
    condition_problems,
)
from policies.definition.rules import Approvers, CompiledRule, compile_rules
from policies.definition.schema import (
    ACTIONS,
    CONDITION_VARIABLES,
    DEFAULT_DEFINITION,
    EFFECTS,
    EXPIRY_OUTCOMES,
    MATCHER,
    MAX_RULES,
    RISKS,
    ROLES,
    RULE_ID,
    SCHEMA,
)
from policies.definition.validation import (
    DefinitionError,
    KnownNames,
    validate_definition,
    validate_names,
)

__all__ = [
    "ACTIONS",
    "CONDITION_VARIABLES",
    "DEFAULT_DEFINITION",
    "EFFECTS",
    "EXPIRY_OUTCOMES",
    "MATCHER",
    "MAX_CEL_PATTERN_PROGRAM",
    "MAX_RULES",
    "RISKS",
    "ROLES",
    "RULE_ID",
    "SCHEMA",
    "Approvers",
    "CompiledRule",
    "DefinitionError",
    "KnownNames",
    "compile_condition",
    "compile_rules",
    "condition_problems",
    "validate_definition",
    "validate_names",
]

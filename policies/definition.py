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
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

import cel
import re2
from jsonschema import Draft202012Validator

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

_VALIDATOR = Draft202012Validator(SCHEMA)


@dataclasses.dataclass(frozen=True)
class DefinitionError:
    """One problem: ``path`` of the offending value, ``message`` saying what to change."""

    path: str
    message: str


@dataclasses.dataclass(frozen=True)
class Approvers:
    """Who decides an approval a rule asks for, how many of them, and what expiry means."""

    role: str = "admin"
    quorum: int = 1
    expires_after_minutes: int | None = None
    on_expiry: str = "deny"


@dataclasses.dataclass(frozen=True)
class CompiledRule:
    """A rule ready for matching: matcher sets split by kind and the CEL program compiled."""

    id: str
    effect: str
    priority: int
    actions: frozenset[str]
    agents: frozenset[str]
    agent_tags: frozenset[str]
    tools: frozenset[str]
    tool_tags: frozenset[str]
    risks: frozenset[str]
    models: frozenset[str]
    condition: str
    program: Any
    approvers: Approvers
    variables: tuple[str, ...] = ()
    description: str = ""
    # filled in by the policy set: where the rule comes from
    policy_id: int | None = None
    policy_slug: str = ""
    version_id: int | None = None
    log_only: bool = False


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def compile_condition(source: str) -> tuple[Any, str | None]:
    """The compiled CEL program, or None and a message saying what is wrong."""
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        return None, str(exc).replace("\n", " ")
    unknown = sorted(set(program.variables()) - set(CONDITION_VARIABLES))
    if unknown:
        names = ", ".join(unknown)
        return None, (
            f"Unknown variable {names}: a condition may use " + ", ".join(CONDITION_VARIABLES)
        )
    return program, None


# CEL's ``matches`` runs Rust's regex crate: linear time, no backreferences or lookaround, but
# it compiles the pattern on every evaluation, so a literal pattern is checked at save: it
# must compile, and compile small (a{1000}a{1000}a{1000} cost 0.12 s per policy check).
MAX_CEL_PATTERN_PROGRAM = 2000  # RE2 program size, as a measure of the compiled pattern
_CEL_STRING = (
    r"(?:[rR][bB]?|[bB][rR]?)?"
    r'(?:""".*?"""'
    r"|'''.*?'''"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'(?:\\.|[^'\\\n])*')"
)
_CEL_TOKEN = re2.compile(
    rf"(?s)(?P<str>{_CEL_STRING})|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),.])|\S"
)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _literal_patterns(source: str) -> list[str]:
    """String literals given as the pattern of ``x.matches(...)`` or ``matches(x, ...)``."""
    tokens = [(m.lastgroup or "", m.group()) for m in _CEL_TOKEN.finditer(source)]
    found = []
    for i, token in enumerate(tokens):
        if token != ("name", "matches") or tokens[i + 1 : i + 2] != [("punct", "(")]:
            continue
        j = i + 2
        if i == 0 or tokens[i - 1] != ("punct", "."):  # function form: skip the first argument
            depth = 0
            while j < len(tokens) and not (depth == 0 and tokens[j] == ("punct", ",")):
                depth += {("punct", "("): 1, ("punct", ")"): -1}.get(tokens[j], 0)
                j += 1
            j += 1
        if (
            tokens[j : j + 1]
            and tokens[j][0] == "str"
            and tokens[j + 1 : j + 2] == [("punct", ")")]
        ):
            found.append(tokens[j][1])
    return found


_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


def _macro_problem(source: str) -> str | None:
    """Refuse CEL comprehensions: ``args.a.all(tool, args.b.all(model, ...))`` costs the
    product of two argument lists' sizes, and CEL runs it holding the interpreter (a
    3,000-item list took 12 s), so no step timeout can stop it."""
    tokens = [(m.lastgroup or "", m.group()) for m in _CEL_TOKEN.finditer(source)]
    for i, token in enumerate(tokens[1:-1], start=1):
        called = tokens[i - 1] == ("punct", ".") and tokens[i + 1] == ("punct", "(")
        if token[0] == "name" and token[1] in _MACROS and called:
            return (
                f"{token[1]}() is not allowed in a policy condition: comprehensions over "
                "lists (all, exists, exists_one, map, filter) cost as much as the lists "
                "the call sends; test list membership with `in` instead."
            )
    return None


def _pattern_problem(literal: str) -> str | None:
    """Why CEL cannot run the pattern ``literal`` (CEL source text) cheaply; None when it can."""
    try:
        cel.compile(f'"".matches({literal})').execute({})
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        reason = text.rsplit("error: ", 1)[-1]
        reason = reason.split(". Check function arguments", 1)[0].strip().splitlines()[-1]
        return f"The regular expression {literal} cannot be used: {reason.rstrip('.')}."
    pattern = cel.compile(literal).execute({})
    if not isinstance(pattern, str):
        return None
    try:
        size = re2.compile(pattern, _RE2_OPTIONS).programsize
    except re2.error:
        return None  # syntax RE2 lacks but CEL has: CEL's own size limit still applies
    if size > MAX_CEL_PATTERN_PROGRAM:
        return (
            f"The regular expression {literal} is too complex ({size} instructions, the limit "
            f"is {MAX_CEL_PATTERN_PROGRAM}): use fewer or shorter repeats."
        )
    return None


def validate_definition(data: Any) -> list[DefinitionError]:
    """Every problem of ``data``, each under its path; [] when it is a valid definition."""
    if not isinstance(data, dict):
        return [DefinitionError("", "Give the definition as a JSON object.")]
    errors = [
        DefinitionError(_path(e.absolute_path), e.message)
        for e in sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(map(str, e.path)))
    ]
    rules = data.get("rules")
    if isinstance(rules, list):
        seen: dict[str, int] = {}
        for index, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            rule_id = rule.get("id")
            if isinstance(rule_id, str):
                if rule_id in seen:
                    errors.append(
                        DefinitionError(
                            f"rules[{index}].id",
                            f"Rule id {rule_id!r} is already used by rules[{seen[rule_id]}].",
                        )
                    )
                else:
                    seen[rule_id] = index
            condition = rule.get("condition")
            if isinstance(condition, str) and condition.strip():
                _, problem = compile_condition(condition)
                problem = _macro_problem(condition) or problem
                if problem:
                    errors.append(DefinitionError(f"rules[{index}].condition", problem))
                else:
                    errors.extend(
                        DefinitionError(f"rules[{index}].condition", message)
                        for message in map(_pattern_problem, _literal_patterns(condition))
                        if message
                    )
            for index_t, matcher in enumerate(rule.get("tools") or []):
                if (
                    isinstance(matcher, str)
                    and matcher.startswith("risk:")
                    and matcher[5:] not in RISKS
                ):
                    errors.append(
                        DefinitionError(
                            f"rules[{index}].tools[{index_t}]",
                            f"Unknown risk {matcher[5:]!r}: use read, write or destructive.",
                        )
                    )
            if rule.get("approvers") and rule.get("effect") != "require_approval":
                errors.append(
                    DefinitionError(
                        f"rules[{index}].approvers",
                        "Only a require_approval rule names approvers.",
                    )
                )
    limits = data.get("rate_limits")
    if isinstance(limits, list):
        seen_limits: set[str] = set()
        for index, limit in enumerate(limits):
            if not isinstance(limit, dict):
                continue
            if limit.get("id") in seen_limits:
                errors.append(
                    DefinitionError(f"rate_limits[{index}].id", "Rate limit ids must be unique.")
                )
            seen_limits.add(limit.get("id"))
            if limit.get("scope") in ("agent", "tool") and "target" not in limit:
                errors.append(
                    DefinitionError(
                        f"rate_limits[{index}].target",
                        "Name the agent or tool slug this limit applies to, or * for each.",
                    )
                )
    return errors


@dataclasses.dataclass(frozen=True)
class KnownNames:
    """What rules may name in one tenant: agent and tool slugs, and model names (from its
    providers' model lists and its agents' versions)."""

    agents: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()


_KINDS = {"agents": "agent", "tools": "tool", "models": "model"}


def _unknown_name(kind: str, name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    if close:
        options = " or ".join(repr(c) for c in close)
        return f"No {kind} {name!r} in this tenant; did you mean {options}?"
    if not known:
        return f"No {kind} {name!r} in this tenant: it has no {kind}s yet."
    listed = sorted(known)
    shown = ", ".join(listed[:10]) + (f" (and {len(listed) - 10} more)" if len(listed) > 10 else "")
    return f"No {kind} {name!r} in this tenant; its {kind}s are: {shown}."


def validate_names(data: Any, known: KnownNames) -> list[DefinitionError]:
    """Names in rules and rate limits that are not in ``known``, each under its path with
    the close matches (a typo would make a rule that never fires). ``tag:`` and ``risk:``
    matchers and the ``*`` rate-limit target are not names. Pure; run it on a definition
    that passed ``validate_definition``."""
    errors: list[DefinitionError] = []
    if not isinstance(data, dict):
        return errors
    for index, rule in enumerate(data.get("rules") or ()):
        if not isinstance(rule, dict):
            continue
        for field, kind in _KINDS.items():
            names: frozenset[str] = getattr(known, field)
            for position, value in enumerate(rule.get(field) or ()):
                if not isinstance(value, str) or value.startswith(("tag:", "risk:")):
                    continue
                if value not in names:
                    errors.append(
                        DefinitionError(
                            f"rules[{index}].{field}[{position}]",
                            _unknown_name(kind, value, names),
                        )
                    )
    for index, limit in enumerate(data.get("rate_limits") or ()):
        if not isinstance(limit, dict) or limit.get("scope") not in ("agent", "tool"):
            continue
        target = limit.get("target")
        names = known.agents if limit["scope"] == "agent" else known.tools
        if isinstance(target, str) and target != "*" and target not in names:
            errors.append(
                DefinitionError(
                    f"rate_limits[{index}].target", _unknown_name(limit["scope"], target, names)
                )
            )
    return errors


def _split(values: Iterable[str], prefix: str) -> tuple[frozenset[str], frozenset[str]]:
    plain, prefixed = set(), set()
    for value in values:
        if value.startswith(prefix):
            prefixed.add(value[len(prefix) :])
        else:
            plain.add(value)
    return frozenset(plain), frozenset(prefixed)


def compile_rules(data: dict[str, Any], **origin: Any) -> list[CompiledRule]:
    """Compiled rules of a valid definition; ``origin`` fills policy_id, policy_slug, ...

    Raises ValueError if the definition is not valid (callers validate first).
    """
    compiled = []
    for rule in data.get("rules") or []:
        agents, agent_tags = _split(rule.get("agents") or (), "tag:")
        tool_values = [t for t in rule.get("tools") or () if not t.startswith("risk:")]
        risks = frozenset(t[5:] for t in rule.get("tools") or () if t.startswith("risk:"))
        tools, tool_tags = _split(tool_values, "tag:")
        condition = (rule.get("condition") or "").strip()
        program = None
        if condition:
            program, problem = compile_condition(condition)
            if problem:
                raise ValueError(f"rule {rule['id']}: {problem}")
        approvers = rule.get("approvers") or {}
        compiled.append(
            CompiledRule(
                id=rule["id"],
                effect=rule["effect"],
                priority=int(rule.get("priority") or 0),
                actions=frozenset(rule.get("actions") or ()),
                agents=agents,
                agent_tags=agent_tags,
                tools=tools,
                tool_tags=tool_tags,
                risks=risks,
                models=frozenset(rule.get("models") or ()),
                condition=condition,
                program=program,
                variables=tuple(program.variables()) if program is not None else (),
                approvers=Approvers(
                    role=approvers.get("role", "admin"),
                    quorum=int(approvers.get("quorum", 1)),
                    expires_after_minutes=approvers.get("expires_after_minutes"),
                    on_expiry=approvers.get("on_expiry", "deny"),
                ),
                description=rule.get("description", ""),
                **origin,
            )
        )
    return compiled


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

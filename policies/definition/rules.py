"""Compiled rules: a valid definition turned into ``CompiledRule`` objects, matcher sets split
by kind and CEL programs compiled once. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from policies.definition.conditions import compile_condition


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

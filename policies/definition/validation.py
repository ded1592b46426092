"""Validation of a policy definition: every problem under its path, and the names it uses
checked against what the tenant has. Pure (no database)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator

from policies.definition.conditions import condition_problems
from policies.definition.schema import RISKS, SCHEMA

_VALIDATOR = Draft202012Validator(SCHEMA)


@dataclasses.dataclass(frozen=True)
class DefinitionError:
    """One problem: ``path`` of the offending value, ``message`` saying what to change."""

    path: str
    message: str


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
                errors.extend(
                    DefinitionError(f"rules[{index}].condition", message)
                    for message in condition_problems(condition)
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

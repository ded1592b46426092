"""What the dashboard shows of policies: the rules of a definition as table rows, and a
simulation's transitions."""

from __future__ import annotations

from typing import Any


def rule_rows(definition: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The rules of a definition as the rules table shows them (empty matchers: "any")."""
    rows = []
    for rule in (definition or {}).get("rules") or []:
        rows.append(
            {
                "id": rule.get("id", ""),
                "description": rule.get("description", ""),
                "effect": rule.get("effect", ""),
                "actions": rule.get("actions") or [],
                "agents": rule.get("agents") or [],
                "tools": rule.get("tools") or [],
                "models": rule.get("models") or [],
                "condition": (rule.get("condition") or "").strip(),
                "priority": int(rule.get("priority") or 0),
                "approvers": rule.get("approvers") or {},
            }
        )
    return rows


def transition_rows(transitions: dict[str, int]) -> list[dict[str, Any]]:
    """``{"allow->deny": 3}`` as rows: changed transitions first, then by count."""
    rows = []
    for key, count in transitions.items():
        before, _, after = key.partition("->")
        rows.append({"before": before, "after": after, "count": count, "changed": before != after})
    return sorted(rows, key=lambda r: (not r["changed"], -r["count"], r["before"], r["after"]))


_TOP_KEYS = ("rules", "rate_limits", "budgets")
_RULE_KEYS = (
    "id",
    "description",
    "effect",
    "actions",
    "agents",
    "tools",
    "models",
    "condition",
    "priority",
    "approvers",
)
_APPROVER_KEYS = ("role", "quorum", "expires_after_minutes", "on_expiry")
_LIMIT_KEYS = ("id", "scope", "target", "limit", "per_seconds", "burst")


def _ordered(value: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(value, dict):
        return value
    known = {k: value[k] for k in keys if k in value}
    return {**known, **{k: v for k, v in value.items() if k not in known}}


def ordered_definition(definition: Any) -> Any:
    """The definition with its keys in the order people write them (the database keeps
    JSON objects in its own order): rules first, each rule's id, effect, matchers ..."""
    if not isinstance(definition, dict):
        return definition
    out = _ordered(definition, _TOP_KEYS)
    if isinstance(out.get("rules"), list):
        out["rules"] = [_ordered(rule, _RULE_KEYS) for rule in out["rules"]]
        for rule in out["rules"]:
            if isinstance(rule, dict) and isinstance(rule.get("approvers"), dict):
                rule["approvers"] = _ordered(rule["approvers"], _APPROVER_KEYS)
    if isinstance(out.get("rate_limits"), list):
        out["rate_limits"] = [_ordered(limit, _LIMIT_KEYS) for limit in out["rate_limits"]]
    return out

"""Rate limits and budgets as declared by applied policies, merged into one configuration.

Several policies may declare limits: every rate limit applies (each its own bucket,
namespaced by policy so two policies with the same limit id do not share one), and for
budgets the strictest value of each dimension wins.
"""

from __future__ import annotations

from typing import Any

from policies.rate_limits import RateLimit


def rate_limits_of(definitions: list[dict[str, Any]]) -> list[RateLimit]:
    """Every rate limit of the given definitions."""
    if not any(definition.get("rate_limits") for definition in definitions):
        return []
    out = []
    for number, definition in enumerate(definitions):
        for entry in definition.get("rate_limits") or ():
            # ids are namespaced by policy: two policies' "calls" limits are two buckets
            out.append(RateLimit.from_definition({**entry, "id": f"{number}.{entry['id']}"}))
    return out


def merge_budgets(definitions: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"run": {...}, "tenant_daily": {...}}`` with the smallest value of each dimension."""
    merged: dict[str, dict[str, float]] = {}
    for definition in definitions:
        for scope, limits in (definition.get("budgets") or {}).items():
            target = merged.setdefault(scope, {})
            for dimension, value in limits.items():
                if value is None:
                    continue
                target[dimension] = min(value, target.get(dimension, value))
    return merged

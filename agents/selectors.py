"""Registry reads shared by the API and the dashboard."""

from __future__ import annotations

from typing import Any

from agents.models import AgentVersion


def json_diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Leaf-level changes between two JSON values as ``{path, change, before, after}``."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            child = f"{path}.{key}" if path else str(key)
            if key not in before:
                changes.append(
                    {"path": child, "change": "added", "before": None, "after": after[key]}
                )
            elif key not in after:
                changes.append(
                    {"path": child, "change": "removed", "before": before[key], "after": None}
                )
            else:
                changes.extend(json_diff(before[key], after[key], child))
        return changes
    if before == after:
        return []
    return [{"path": path, "change": "changed", "before": before, "after": after}]


def version_diff(older: AgentVersion, newer: AgentVersion) -> list[dict[str, Any]]:
    """What changed from ``older`` to ``newer``: configuration leaves and the pinned tool list."""
    changes = json_diff({"config": older.config}, {"config": newer.config})
    old_tools = sorted(t["slug"] for t in older.tools)
    new_tools = sorted(t["slug"] for t in newer.tools)
    if old_tools != new_tools:
        changes.append(
            {"path": "tools", "change": "changed", "before": old_tools, "after": new_tools}
        )
    return changes

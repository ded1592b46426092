"""JSON for people on dashboard pages: indented, with JSON that arrived as text decoded."""

from __future__ import annotations

import json
from typing import Any

_MAX_DEPTH = 20


def readable(value: Any, depth: int = 0) -> Any:
    """``value`` with strings that hold a JSON object or array replaced by what they hold.

    An agent's answer is often JSON serialised into a string; shown as it is, it is a wall of
    escaped quotes. Only for display: stored values are never changed.
    """
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] + text[-1] in ("{}", "[]"):
            try:
                return readable(json.loads(text), depth + 1)
            except (ValueError, RecursionError):
                return value
        return value
    if isinstance(value, dict):
        return {key: readable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [readable(item, depth + 1) for item in value]
    return value


def pretty_json(value: Any) -> str:
    """Indented JSON (never Python's repr, so no single quotes or ``None``)."""
    return json.dumps(readable(value), indent=2, ensure_ascii=False, default=str)

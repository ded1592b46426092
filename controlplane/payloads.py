"""Keeping JSON payloads short where only a summary is kept (run events, recorded policy inputs)."""

from __future__ import annotations

from typing import Any

MAX_PAYLOAD_TEXT = 4000


def clip(value: Any, limit: int = MAX_PAYLOAD_TEXT) -> Any:
    """Shorten long strings inside an event payload (the full data stays on the step)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… ({len(value)} chars)"
    if isinstance(value, dict):
        return {k: clip(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clip(v, limit) for v in value[:200]]
    return value

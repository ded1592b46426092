"""Removes secret values from what goes into audit before/after diffs and event payloads."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(?i)(api[_-]?key|password|passwd|secret|token_hash|^token$|authorization|credential|"
    r"private[_-]?key|client[_-]?secret)"
)


def redact_secrets(value: Any) -> Any:
    """A copy of ``value`` with every dict entry whose key names a secret replaced."""
    if isinstance(value, dict):
        return {
            key: (
                REDACTED
                if _SECRET_KEY.search(str(key)) and item not in (None, "")
                else redact_secrets(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(item) for item in value]
    return value

"""Template filters for showing stored JSON to people."""

from __future__ import annotations

from typing import Any

from django import template

from controlplane.dashboard.display import pretty_json

register = template.Library()


@register.filter
def as_readable_json(value: Any) -> str:
    """Indented JSON, with JSON held in strings decoded (display only)."""
    return pretty_json(value)

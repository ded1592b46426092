"""Template errors and the paths that name where a template string is. Pure."""

from __future__ import annotations

import json
import re

_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class TemplateError(Exception):
    """A template that cannot be parsed or evaluated; ``path`` says where the string is."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class Problem(Exception):
    """A template problem not yet tied to a path (parse results are cached path-free)."""


def join_path(base: str, key: str | int) -> str:
    """``join_path("steps[0]", "input")`` -> ``"steps[0].input"``; ints give ``[n]``.

    Keys that are not plain words are quoted: ``join_path("input", "a b")`` ->
    ``'input["a b"]'``. An empty ``base`` is the root (``join_path("", "steps")`` ->
    ``"steps"``).
    """
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _SIMPLE_KEY.match(key):
        return f"{base}.{key}" if base else key
    return f"{base}[{json.dumps(key, ensure_ascii=False)}]"


def quote(source: str) -> str:
    """``source`` cut to 120 characters for an error message."""
    return source if len(source) <= 120 else source[:117] + "..."

"""How validation reports problems: ``DefinitionError`` (path + message), collected once each."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from runs.engine import templating

MAX_MESSAGE = 300


# --- public types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DefinitionError:
    """One problem: ``path`` of the offending value, ``message`` saying what to change."""

    path: str
    message: str


# --- helpers ----------------------------------------------------------------------------------


class Errors:
    def __init__(self) -> None:
        self.items: list[DefinitionError] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, path: str, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        if (path, message) not in self._seen:
            self._seen.add((path, message))
            self.items.append(DefinitionError(path, message))


def items_at(
    value: Any, path: str, kind: type | tuple[type, ...] = str
) -> Iterator[tuple[str, Any]]:
    """``("<path>[k]", item)`` for each item of the list ``value`` that is a ``kind``; nothing
    when ``value`` is not a list. What is not a list, or an item of another kind, the schema
    reports; the later checks pass over it."""
    if isinstance(value, list):
        for k, item in enumerate(value):
            if isinstance(item, kind):
                yield f"{path}[{k}]", item


def value_path(base: str, parts: Iterable[Any]) -> str:
    for part in parts:
        base = templating.join_path(base, part if isinstance(part, int) else str(part))
    return base


_PATH_TOKEN = re.compile(r"\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\.?([^.\[]+)")


def sort_key(error: DefinitionError) -> tuple[tuple[int, int | str], ...]:
    key: list[tuple[int, int | str]] = []
    for index, quoted, name in _PATH_TOKEN.findall(error.path):
        key.append((0, int(index)) if index else (1, quoted or name))
    return tuple(key)

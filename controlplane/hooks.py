"""Start-up hooks: how a lower layer triggers or asks for work that an upper app owns.

``controlplane`` knows no domain app and ``agents`` may not import ``runs``, yet some of
their work needs an upper app: a new tenant gets its default policy (``policies``); a tool's
JSON Schema and a router agent's rules are checked with the engine's RE2 patterns and its
condition language (``runs.engine``, pure, which ``agents`` may not import). The upper app
registers a function on a named, typed hook in its ``AppConfig.ready()``; the lower layer
calls the hook and gets every registered function's answer. Imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Hook(Generic[P, R]):
    """A named list of functions called in registration order; registering twice is a no-op."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._functions: list[Callable[P, R]] = []

    def register(self, function: Callable[P, R]) -> None:
        if function not in self._functions:
            self._functions.append(function)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> list[R]:
        """Every registered function's answer, in registration order."""
        return [function(*args, **kwargs) for function in self._functions]

    def __repr__(self) -> str:
        return f"Hook({self.name!r}, {len(self._functions)} registered)"


# Called with the new tenant, inside tenant_create's transaction, after its owner is added.
tenant_created: Hook[[Any], Any] = Hook("tenant_created")

# Called with a JSON Schema: its patterns RE2 refuses, as (path, message) pairs.
schema_pattern_problems: Hook[[Any], list[tuple[str, str]]] = Hook("schema_pattern_problems")

# Called with a condition (a router rule's ``when``): its problems, as (path, message) pairs.
condition_problems: Hook[[Any], list[tuple[str, str]]] = Hook("condition_problems")

# Called with nothing: the condition language's operators (eq, in, matches, ...).
condition_ops: Hook[[], tuple[str, ...]] = Hook("condition_ops")

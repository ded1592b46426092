"""Start-up hooks: how infrastructure triggers work that an upper app owns.

``controlplane`` knows no domain app, yet some of its writes have consequences above it
(a new tenant gets its default policy). The upper app registers a function on a named,
typed hook in its ``AppConfig.ready()``; the lower layer calls the hook. Imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, ParamSpec

P = ParamSpec("P")


class Hook(Generic[P]):
    """A named list of functions called in registration order; registering twice is a no-op."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._functions: list[Callable[P, Any]] = []

    def register(self, function: Callable[P, Any]) -> None:
        if function not in self._functions:
            self._functions.append(function)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for function in self._functions:
            function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Hook({self.name!r}, {len(self._functions)} registered)"


# Called with the new tenant, inside tenant_create's transaction, after its owner is added.
tenant_created: Hook[[Any]] = Hook("tenant_created")

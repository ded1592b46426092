"""Workflow definitions: the JSON format, its parsed form, and nothing that touches Django.

A definition is a JSON object::

    {
      "input_schema": {...JSON Schema of the run input...},
      "example_input": {...},
      "output": "{{ steps.summarize.output }}",          # optional, templated
      "max_steps": 200, "deadline_seconds": 3600,         # optional run limits
      "steps": [ {step}, ... ]
    }

Every step has ``id`` (``^[a-z][a-z0-9_]{0,49}$``, unique), ``type`` and optionally
``name``, ``needs`` (ids of steps that must finish first; omitted = the previous step
in the list, so a plain list is a pipeline; ``[]`` = a root), ``retry``
(``{"attempts": 3, "backoff_seconds": 1, "max_backoff_seconds": 60, "jitter": true}``),
``timeout_seconds`` and ``on_error`` (``"fail"`` | ``"continue"`` |
``{"fallback": "<agent slug>"}`` | ``"escalate"``).

Step types:

* ``agent``: ``agent`` (slug), ``input`` (templated JSON).
* ``tool``: ``tool`` (slug), ``arguments`` (templated JSON): a direct tool call.
* ``router``: ``agent`` (a router-kind agent) or inline ``rules`` (same shape as a router
  agent's), ``input``; ``routes``: ``{"<route>": ["<step id>", ...]}``. Steps listed under a
  route that was not chosen are skipped (and so is anything that only they lead to).
* ``parallel``: fan-out and fan-in. Either ``branches``: ``[{"name", "agent", "input"}]``
  or ``for_each`` (a template giving a list) with ``agent`` and ``input`` (``item`` and
  ``index`` are in scope); ``merge``: ``"object"`` (by branch name) | ``"list"`` |
  ``{"agent": "<slug>"}`` (an agent receives the branch outputs); ``max_concurrency``.
* ``manager``: ``agent`` (an llm supervisor) and ``delegates`` (agent slugs it may call as
  tools), ``input``, ``max_delegations``.
* ``handoff``: ``agents`` (slugs), ``start`` (one of them), ``input``, ``max_handoffs``:
  the active agent may hand control and the conversation to another.
* ``loop``: ``agent``, ``input`` (``previous`` and ``iteration`` in scope), ``until``
  (a condition, see below) and ``max_iterations``.
* ``approval``: ``title``, ``details`` (templated), ``approvers`` (a role name, default
  ``"admin"``), ``timeout_seconds``, ``on_timeout`` (``"deny"`` | ``"approve"``); output
  ``{"approved": bool, "comment", "decided_by"}``; a denial fails the step.

Templates are strings containing ``{{ expression }}`` over ``input`` (the run input),
``steps.<id>.output`` (earlier outputs), ``context`` (the run's shared context) and the
step-local names above. A string that is exactly one ``{{ ... }}`` keeps the value's JSON
type; otherwise the result is text.

Conditions (router rules, loop ``until``): ``{"path": "output.done", "op": "eq", "value":
true}`` with ops eq, ne, in, not_in, contains, matches, gt, gte, lt, lte, exists, missing;
a list of conditions means all of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

STEP_TYPES = ("agent", "tool", "router", "parallel", "manager", "handoff", "loop", "approval")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    jitter: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class StepDef:
    """One parsed step. ``spec`` keeps the type-specific fields exactly as written."""

    id: str
    type: str
    needs: tuple[str, ...]
    name: str = ""
    retry: RetryPolicy = RetryPolicy()
    timeout_seconds: float | None = None
    on_error: Any = "fail"
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def routes(self) -> dict[str, tuple[str, ...]]:
        return {k: tuple(v) for k, v in (self.spec.get("routes") or {}).items()}


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: the scheduler caches indexes
class Definition:
    """A parsed workflow: steps in written order plus run-level settings."""

    steps: tuple[StepDef, ...]
    input_schema: dict[str, Any]
    example_input: Any
    output: Any = None
    max_steps: int = 200
    deadline_seconds: float | None = None

    def step(self, step_id: str) -> StepDef:
        return self.by_id[step_id]

    @property
    def by_id(self) -> dict[str, StepDef]:
        return {s.id: s for s in self.steps}


def parse_definition(data: dict[str, Any]) -> Definition:
    """Build a ``Definition`` from JSON already validated by ``validate_definition``."""
    steps = []
    previous: str | None = None
    for raw in data.get("steps", []):
        needs = tuple(raw["needs"]) if "needs" in raw else (previous,) if previous else ()
        retry = RetryPolicy(**raw["retry"]) if raw.get("retry") else RetryPolicy()
        common = {"id", "type", "needs", "name", "retry", "timeout_seconds", "on_error"}
        steps.append(
            StepDef(
                id=raw["id"],
                type=raw["type"],
                needs=needs,
                name=raw.get("name", ""),
                retry=retry,
                timeout_seconds=raw.get("timeout_seconds"),
                on_error=raw.get("on_error", "fail"),
                spec={k: v for k, v in raw.items() if k not in common},
            )
        )
        previous = raw["id"]
    return Definition(
        steps=tuple(steps),
        input_schema=data.get("input_schema") or {"type": "object"},
        example_input=data.get("example_input", {}),
        output=data.get("output"),
        max_steps=data.get("max_steps", 200),
        deadline_seconds=data.get("deadline_seconds"),
    )

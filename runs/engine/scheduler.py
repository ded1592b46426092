"""The pure scheduler: (definition, step states) -> actions. No Django, no I/O, no clock.

Called after every step transition with the ids that changed, it looks only at their
dependents (so a decision costs the same on a 10-step and a 1,000-step graph) and
answers which steps to start, which to skip, and whether the run is finished.

Semantics:

* a step is ready when every step it ``needs`` is finished (succeeded, skipped, or failed
  with ``on_error: continue``);
* a step all of whose needs were skipped is skipped; a step that needs a router and is
  listed under one of its routes runs only when that route was chosen (else skipped);
  a join after a router (needing both branches) runs when the chosen branch finished;
* a failed step (not tolerated) fails the run; when every step is finished the run
  succeeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from functools import cache

from runs.engine.definition import Definition

PENDING = "pending"
QUEUED = "queued"
RUNNING = "running"
WAITING = "waiting"
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"

ACTIVE = frozenset({QUEUED, RUNNING, WAITING})
FINISHED = frozenset({SUCCEEDED, SKIPPED})


@dataclasses.dataclass(frozen=True)
class StepState:
    """What the scheduler needs to know of one step: status, chosen route, tolerated failure."""

    status: str = PENDING
    route: str | None = None
    tolerated: bool = False  # failed, but on_error said continue

    @property
    def done(self) -> bool:
        return self.status in FINISHED or (self.status == FAILED and self.tolerated)


@dataclasses.dataclass(frozen=True)
class StartStep:
    step_id: str


@dataclasses.dataclass(frozen=True)
class SkipStep:
    step_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class CompleteRun:
    pass


@dataclasses.dataclass(frozen=True)
class FailRun:
    step_id: str
    reason: str


Action = StartStep | SkipStep | CompleteRun | FailRun


@dataclasses.dataclass(frozen=True)
class _Index:
    dependents: Mapping[str, tuple[str, ...]]
    # step id -> {router id: route names under which the step is listed}
    gated_by: Mapping[str, Mapping[str, frozenset[str]]]
    roots: tuple[str, ...]
    order: Mapping[str, int]


@cache
def _index(definition: Definition) -> _Index:
    dependents: dict[str, list[str]] = {s.id: [] for s in definition.steps}
    gated: dict[str, dict[str, set[str]]] = {}
    for step in definition.steps:
        for need in step.needs:
            dependents[need].append(step.id)
        if step.type == "router":
            for route, targets in step.routes.items():
                for target in targets:
                    gated.setdefault(target, {}).setdefault(step.id, set()).add(route)
    return _Index(
        dependents={k: tuple(v) for k, v in dependents.items()},
        gated_by={k: {r: frozenset(v) for r, v in g.items()} for k, g in gated.items()},
        roots=tuple(s.id for s in definition.steps if not s.needs),
        order={s.id: i for i, s in enumerate(definition.steps)},
    )


def _decide(definition: Definition, step_id: str, states: Mapping[str, StepState]) -> Action | None:
    step = _steps(definition)[step_id]
    needs = [states.get(n, StepState()) for n in step.needs]
    if any(not s.done for s in needs):
        return None
    for router_id, routes in _index(definition).gated_by.get(step_id, {}).items():
        router = states.get(router_id, StepState())
        if router.status == SUCCEEDED and router.route not in routes:
            return SkipStep(step_id, f"router {router_id} chose {router.route!r}")
        if router.status == SKIPPED:
            return SkipStep(step_id, f"router {router_id} was skipped")
    if needs and all(s.status == SKIPPED for s in needs):
        return SkipStep(step_id, "every step it needs was skipped")
    return StartStep(step_id)


@cache
def _steps(definition: Definition) -> Mapping[str, object]:
    return definition.by_id


def plan(
    definition: Definition,
    states: Mapping[str, StepState],
    changed: Iterable[str] | None = None,
) -> list[Action]:
    """Actions following the change of ``changed`` steps (``None``: look at the whole graph).

    Skips cascade within one call: a skipped step's dependents are decided too. The
    caller applies the actions and records the new states.
    """
    index = _index(definition)
    local = dict(states)
    actions: list[Action] = []
    if changed is None:
        frontier = [s.id for s in definition.steps]
    else:
        frontier = []
        for step_id in changed:
            state = local.get(step_id, StepState())
            if state.status == FAILED and not state.tolerated:
                return [FailRun(step_id, f"step {step_id} failed")]
            frontier.extend(index.dependents.get(step_id, ()))
    seen: set[str] = set()
    while frontier:
        frontier.sort(key=index.order.__getitem__)
        step_id = frontier.pop(0)
        if step_id in seen or local.get(step_id, StepState()).status != PENDING:
            continue
        seen.add(step_id)
        action = _decide(definition, step_id, local)
        if action is None:
            continue
        actions.append(action)
        if isinstance(action, SkipStep):
            local[step_id] = StepState(SKIPPED)
            frontier.extend(index.dependents.get(step_id, ()))
        else:
            local[step_id] = StepState(QUEUED)
    if changed is None:
        for step in definition.steps:
            state = local.get(step.id, StepState())
            if state.status == FAILED and not state.tolerated:
                return [FailRun(step.id, f"step {step.id} failed")]
    if not any(isinstance(a, StartStep) for a in actions) and all(
        local.get(s.id, StepState()).done for s in definition.steps
    ):
        actions.append(CompleteRun())
    return actions

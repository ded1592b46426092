"""The step graph: ids, ``needs``, cycles, steps that can never run, topological order."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runs.engine.definition import Definition
from runs.engine.validation.report import Errors, items_at
from runs.engine.validation.schema import valid_id

# --- the graph --------------------------------------------------------------------------------


@dataclass
class Graph:
    ids: list[str | None]  # a usable id per position (None: missing or malformed)
    index: dict[str, int]  # id -> position of its first use
    needs: list[list[int]]  # positions each step needs (known ones)
    ancestors: list[int]  # bit q set: the step at position q always finishes before
    runnable: list[bool]


def _sccs(edges: list[list[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components, iteratively; dependencies come out first."""
    n = len(edges)
    order = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    result: list[list[int]] = []
    counter = 0
    for root in range(n):
        if order[root] != -1:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                order[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            recursed = False
            for k in range(child, len(edges[node])):
                target = edges[node][k]
                if order[target] == -1:
                    work.append((node, k + 1))
                    work.append((target, 0))
                    recursed = True
                    break
                if on_stack[target]:
                    low[node] = min(low[node], order[target])
            if recursed:
                continue
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


def _cycle_in(component: list[int], needs: list[list[int]]) -> list[int]:
    members = set(component)
    path: list[int] = []
    seen: dict[int, int] = {}
    node = component[0]
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(q for q in needs[node] if q in members)
    cycle = path[seen[node] :]
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


def _report_cycle(
    component: list[int], needs: list[list[int]], ids: list[str | None], out: Errors
) -> None:
    cycle = _cycle_in(component, needs)
    names = [ids[p] or f"steps[{p}]" for p in cycle]
    others = [ids[p] or f"steps[{p}]" for p in component if p not in cycle]
    message = (
        f"Steps need each other in a cycle: {' -> '.join([*names, names[0]])} (each needs "
        "the next). Remove one of these needs; to repeat work, use a loop step."
    )
    if others:
        message += f" Also caught in it: {', '.join(others)}."
    out.add(f"steps[{cycle[0]}].needs", message)


def build_graph(steps: list[Any], out: Errors) -> Graph:
    n = len(steps)
    ids: list[str | None] = [None] * n
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        step_id = step.get("id") if isinstance(step, Mapping) else None
        if not valid_id(step_id):
            continue
        ids[i] = step_id
        if step_id in index:
            out.add(
                f"steps[{i}].id",
                f"Duplicate step id {step_id!r}: steps[{index[step_id]}] already uses it.",
            )
        else:
            index[step_id] = i

    needs: list[list[int]] = [[] for _ in range(n)]
    blocked = [False] * n  # the step's own needs name something that can never finish
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            continue  # the schema reports it; treated as a root so nothing cascades
        if "needs" not in step:
            if i > 0:
                needs[i] = [i - 1]
            continue
        for where, need in items_at(step["needs"], f"steps[{i}].needs"):
            if need not in index:
                out.add(where, f"Unknown step {need!r}.")
                blocked[i] = True
            elif index[need] == i or need == ids[i]:
                out.add(where, f"Step {need!r} cannot need itself.")
                blocked[i] = True
            elif index[need] not in needs[i]:
                needs[i].append(index[need])

    ancestors = [0] * n
    runnable = [False] * n
    cyclic_at = [False] * n
    for component in _sccs(needs):
        cyclic = len(component) > 1
        if cyclic:
            _report_cycle(component, needs, ids, out)
        bits = 0
        for p in component:
            for q in needs[p]:
                bits |= ancestors[q] | (1 << q)
        for p in component:
            cyclic_at[p] = cyclic
            ancestors[p] = bits if cyclic else bits & ~(1 << p)
            runnable[p] = not cyclic and not blocked[p] and all(runnable[q] for q in needs[p])
            if runnable[p] or cyclic or blocked[p]:
                continue
            # Report the first step cut off by each cause, not everything downstream of it.
            stuck = next(q for q in needs[p] if not runnable[q])
            if cyclic_at[stuck] or blocked[stuck]:
                why = "is in a cycle" if cyclic_at[stuck] else "has needs that cannot be met"
                label, own = ids[stuck] or f"steps[{stuck}]", ids[p] or f"steps[{p}]"
                out.add(
                    f"steps[{p}]",
                    f"Step {own!r} can never run: it needs {label!r}, which {why} (no path "
                    "from a root step).",
                )
    return Graph(ids=ids, index=index, needs=needs, ancestors=ancestors, runnable=runnable)


def topological_order(definition: Definition | Mapping[str, Any]) -> list[str]:
    """Step ids ordered so each comes after every step it needs; ties keep written order.

    Takes a parsed ``Definition`` or raw definition JSON (where an omitted ``needs`` means
    the previous step). Raises ``ValueError`` when ``needs`` name unknown steps or form a
    cycle (``validate_definition`` reports both).
    """
    if isinstance(definition, Definition):
        ids = [s.id for s in definition.steps]
        declared = [list(s.needs) for s in definition.steps]
    else:
        raw = [s for s in definition.get("steps", []) if isinstance(s, Mapping)]
        ids = [s["id"] for s in raw]
        declared = [
            list(s["needs"]) if "needs" in s else ([ids[i - 1]] if i else [])
            for i, s in enumerate(raw)
        ]
    position = {step_id: i for i, step_id in reversed(list(enumerate(ids)))}
    waiting = [0] * len(ids)
    dependents: list[list[int]] = [[] for _ in ids]
    for i, needs in enumerate(declared):
        for need in dict.fromkeys(needs):
            if need not in position:
                raise ValueError(f"step {ids[i]!r} needs unknown step {need!r}")
            dependents[position[need]].append(i)
            waiting[i] += 1
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(ids[i])
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(ids):
        stuck = [ids[i] for i, count in enumerate(waiting) if count]
        raise ValueError(f"needs form a cycle among: {', '.join(stuck)}")
    return order

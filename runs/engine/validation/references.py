"""Template references: names, steps that may not have run, step-local names."""

from __future__ import annotations

from typing import Any

from runs.engine import templating
from runs.engine.validation.graph import Graph
from runs.engine.validation.report import Errors

GLOBAL_NAMES = frozenset({"input", "steps", "context"})
LOCAL_NAMES = {"item": "parallel", "index": "parallel", "previous": "loop", "iteration": "loop"}


# --- references -------------------------------------------------------------------------------


def check_templates(
    value: Any,
    path: str,
    out: Errors,
    graph: Graph,
    position: int | None,
    local_names: frozenset[str] = frozenset(),
    where: str = "",
) -> None:
    """Templates in ``value`` parse and only name what can exist when they are rendered.

    ``position`` is the step the templates belong to (``None``: the run output, rendered at
    the end, where any step may be named).
    """
    for string_path, source in templating.template_strings(value, path):
        try:
            chains = templating.references(source, string_path)
        except templating.TemplateError as exc:
            out.add(exc.path, exc.message)
            continue
        for chain in sorted(chains):
            check_chain(chain, string_path, out, graph, position, local_names, where)


def check_chain(
    chain: tuple[str, ...],
    path: str,
    out: Errors,
    graph: Graph,
    position: int | None,
    local_names: frozenset[str],
    where: str,
) -> None:
    name = chain[0]
    if name in LOCAL_NAMES and name not in local_names:
        owner = LOCAL_NAMES[name]
        detail = "for_each input" if owner == "parallel" else "loop input"
        out.add(path, f"{name!r} exists only in a {detail}, not in {where}.")
        return
    if name not in GLOBAL_NAMES and name not in local_names:
        allowed = ", ".join(sorted(GLOBAL_NAMES | local_names))
        out.add(path, f"Unknown name {name!r}: use {allowed}.")
        return
    if name != "steps" or len(chain) < 2:
        return
    step_id = chain[1]
    if step_id not in graph.index:
        out.add(path, f"Unknown step {step_id!r} in steps.{step_id}.")
        return
    if len(chain) > 2 and chain[2] != "output":
        out.add(path, f"steps.{step_id} has only output: write steps.{step_id}.output.")
    if position is None:
        return
    target = graph.index[step_id]
    if target == position:
        out.add(path, f"Step {step_id!r} cannot use its own output.")
    elif not graph.ancestors[position] >> target & 1:
        out.add(
            path,
            f"Step {step_id!r} may not have run before this step: add it to needs "
            "(directly or through a step it needs).",
        )

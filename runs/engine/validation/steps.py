"""Checks of each step by type: router routes, parallel branches, loops, templates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runs.engine import conditions, templating
from runs.engine.validation.graph import Graph
from runs.engine.validation.references import check_templates
from runs.engine.validation.registry import (
    RegistryView,
    agent_with_tools,
    check_agent,
    check_tool,
    with_article,
)
from runs.engine.validation.report import Errors, items_at

# --- steps ------------------------------------------------------------------------------------


def check_router(
    step: Mapping[str, Any], i: int, graph: Graph, registry: RegistryView, out: Errors
) -> None:
    base = f"steps[{i}]"
    agent = check_agent(
        step.get("agent"), f"{base}.agent", registry, out, "router", "a router step's agent"
    )
    produced: frozenset[str] | None = None
    source = ""
    if agent is not None and agent.routes is not None:
        produced, source = agent.routes, f"router agent {step['agent']!r}"
    rules = step.get("rules")
    if isinstance(rules, list) and "agent" not in step:
        names = {r.get("route") for r in rules if isinstance(r, Mapping)}
        names.add(step.get("default_route"))
        produced = frozenset(n for n in names if isinstance(n, str))
        source = "rules"
        for where, rule in items_at(rules, f"{base}.rules", Mapping):
            if "when" in rule:
                for rel, message in conditions.problems(rule["when"]):
                    out.add(f"{where}.when{rel}", message)
    routes = step.get("routes")
    if not isinstance(routes, Mapping):
        return
    for route, targets in routes.items():
        route_path = templating.join_path(f"{base}.routes", str(route))
        if produced is not None and route not in produced:
            answers = ", ".join(repr(r) for r in sorted(produced)) or "nothing"
            if source.startswith("router agent"):
                out.add(route_path, f"{source} never answers {route!r}; it answers {answers}.")
            else:
                out.add(
                    route_path,
                    f"No rule gives the route {route!r} and it is not the default_route: the "
                    f"rules give {answers}.",
                )
        for where, target in items_at(targets, route_path):
            if target not in graph.index:
                out.add(where, f"Unknown step {target!r}.")
            elif i not in graph.needs[graph.index[target]]:
                out.add(
                    where,
                    f"Step {target!r} does not need this router: add {graph.ids[i]!r} to its "
                    "needs, or it may run before the route is chosen.",
                )


def check_parallel(
    step: Mapping[str, Any], i: int, graph: Graph, registry: RegistryView, out: Errors
) -> None:
    base = f"steps[{i}]"
    names: set[str] = set()
    for where, branch in items_at(step.get("branches"), f"{base}.branches", Mapping):
        name = branch.get("name")
        if isinstance(name, str):
            if name in names:
                out.add(f"{where}.name", f"Duplicate branch name {name!r}.")
            names.add(name)
        agent_with_tools(branch, where, registry, out)
        if "input" in branch:
            check_templates(
                branch["input"], f"{where}.input", out, graph, i, where="a branch input"
            )
    if "for_each" in step:
        for_each = step["for_each"]
        check_templates(for_each, f"{base}.for_each", out, graph, i, where="for_each")
        if (
            isinstance(for_each, str)
            and not templating.is_single_expression(for_each)
            and not _has_template_error(for_each)
        ):
            out.add(
                f"{base}.for_each",
                "for_each must be exactly one {{ expression }} giving a list, e.g. "
                '"{{ input.items }}".',
            )
        agent_with_tools(step, base, registry, out)
        if "input" in step:
            check_templates(
                step["input"],
                f"{base}.input",
                out,
                graph,
                i,
                frozenset({"item", "index"}),
                "this input",
            )
    merge = step.get("merge")
    if isinstance(merge, Mapping):
        check_agent(merge.get("agent"), f"{base}.merge.agent", registry, out)


def _has_template_error(source: str) -> bool:
    try:
        templating.references(source)
    except templating.TemplateError:
        return True
    return False


def check_step(
    step: Mapping[str, Any], i: int, graph: Graph, registry: RegistryView, out: Errors
) -> None:
    base = f"steps[{i}]"
    kind = step.get("type")
    here = f"{with_article(str(kind))} step"
    if kind == "agent":
        agent_with_tools(step, base, registry, out)
    elif kind == "tool":
        check_tool(step.get("tool"), f"{base}.tool", registry, out)
    elif kind == "router":
        check_router(step, i, graph, registry, out)
    elif kind == "parallel":
        check_parallel(step, i, graph, registry, out)
    elif kind == "manager":
        agent_with_tools(step, base, registry, out, "llm", "a manager step's agent")
        delegates = step.get("delegates")
        for where, slug in items_at(delegates, f"{base}.delegates"):
            check_agent(slug, where, registry, out)
    elif kind == "handoff":
        agents = step.get("agents")
        agents = agents if isinstance(agents, list) else []
        for where, slug in items_at(agents, f"{base}.agents"):
            check_agent(slug, where, registry, out, "llm", "a handoff agent")
        start = step.get("start")
        if isinstance(start, str) and start not in agents:
            out.add(f"{base}.start", f"start {start!r} is not one of this step's agents.")
    elif kind == "loop":
        agent_with_tools(step, base, registry, out)
        if "until" in step:
            for rel, message in conditions.problems(step["until"]):
                out.add(f"{base}.until{rel}", message)

    on_error = step.get("on_error")
    if isinstance(on_error, Mapping):
        check_agent(on_error.get("fallback"), f"{base}.on_error.fallback", registry, out)

    fields = {
        "agent": ("input",),
        "tool": ("arguments",),
        "router": ("input",),
        "parallel": (),  # checked with their own scopes above
        "manager": ("input",),
        "handoff": ("input",),
        "loop": ("input",),
        "approval": ("title", "details"),
    }.get(kind, ())
    local_names = frozenset({"previous", "iteration"}) if kind == "loop" else frozenset()
    for field in fields:
        if field in step:
            check_templates(
                step[field], f"{base}.{field}", out, graph, i, local_names, f"{here}'s {field}"
            )

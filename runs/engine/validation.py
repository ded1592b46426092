"""Validation of workflow definitions: the published JSON Schema plus every cross-reference check.

Pure: the caller passes a ``RegistryView`` (the tenant's agents and tools by slug) and gets
back every problem, each with the path of the offending value (``steps[2].agent``,
``steps[0].input.message``, ``input_schema.properties.age.type``; ``""`` is the whole
definition). Nothing stops at the first error, and the cost is linear in the size of the
definition (plus one parse per distinct template string, cached across calls).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable

from runs.engine import conditions, patterns, templating
from runs.engine.definition import STEP_TYPES, Definition

patterns.install_in_jsonschema()  # input schemas' patterns run on RE2 here too (no Django)

ID_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$"
ROLES = ("owner", "admin", "operator", "viewer")
ACTIVE = "active"

GLOBAL_NAMES = frozenset({"input", "steps", "context"})
LOCAL_NAMES = {"item": "parallel", "index": "parallel", "previous": "loop", "iteration": "loop"}
MAX_MESSAGE = 300

# --- the published schema ---------------------------------------------------------------------

_TEMPLATED = (
    " Templated: strings may contain {{ expression }} over input, steps.<id>.output (steps this"
    " one needs, directly or not) and context; a string that is exactly one {{ ... }} keeps the"
    " value's JSON type."
)


def _slug(what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": SLUG_PATTERN, "description": what}


def _templated(what: str) -> dict[str, Any]:
    return {"description": what + _TEMPLATED}


def _slugs(what: str, min_items: int = 1) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "pattern": SLUG_PATTERN},
        "minItems": min_items,
        "uniqueItems": True,
        "description": what,
    }


_TOOLS = _slugs(
    "Tool slugs this step's agent may call, narrowing its granted tools for this step; each "
    "must be granted to the agent. Omitted: every tool granted to the agent.",
    min_items=0,
)

_COMMON: dict[str, Any] = {
    "id": {
        "type": "string",
        "pattern": ID_PATTERN,
        "description": "Unique step id: a lowercase letter, then letters, digits, _ (max 50).",
    },
    "type": {"enum": list(STEP_TYPES), "description": "What the step does."},
    "name": {"type": "string", "maxLength": 200, "description": "A label for people."},
    "needs": {
        "type": "array",
        "items": {"type": "string", "pattern": ID_PATTERN},
        "uniqueItems": True,
        "description": (
            "Ids of steps that must finish first. Omitted: the previous step in the list (so "
            "a plain list is a pipeline); []: a root that starts with the run. Cycles are "
            "not allowed: repeat work with a loop step."
        ),
    },
    "retry": {
        "type": "object",
        "additionalProperties": False,
        "description": "Retries of a failed attempt, with exponential backoff.",
        "properties": {
            "attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "default": 1,
                "description": "Attempts in total, the first included.",
            },
            "backoff_seconds": {
                "type": "number",
                "minimum": 0,
                "default": 1,
                "description": "Wait before the first retry; doubles on each next one.",
            },
            "max_backoff_seconds": {
                "type": "number",
                "minimum": 0,
                "default": 60,
                "description": "Longest wait between attempts.",
            },
            "jitter": {
                "type": "boolean",
                "default": True,
                "description": "Randomise each wait so retries do not arrive together.",
            },
        },
    },
    "timeout_seconds": {
        "type": "number",
        "exclusiveMinimum": 0,
        "description": (
            "Longest an attempt may take (for an approval step: how long to wait for a "
            "decision before on_timeout applies)."
        ),
    },
    "on_error": {
        "description": (
            'After the last attempt fails: "fail" (the run fails; default), "continue" (the '
            'step counts as finished with no output), "escalate" (a person decides) or '
            '{"fallback": "<agent slug>"} (that agent runs the step instead).'
        ),
        "default": "fail",
        "if": {"type": "object"},
        "then": {
            "type": "object",
            "required": ["fallback"],
            "additionalProperties": False,
            "properties": {"fallback": _slug("Agent that runs the step instead.")},
        },
        "else": {"enum": ["fail", "continue", "escalate"]},
    },
}


def _step(
    kind: str,
    description: str,
    properties: dict[str, Any],
    required: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"{kind} step",
        "description": description,
        "required": ["id", "type", *required],
        "additionalProperties": False,
        "properties": {
            **_COMMON,
            "type": {"const": kind, "description": f"{kind!r} for this kind of step."},
            **properties,
        },
        **extra,
    }


_BRANCH = {
    "type": "object",
    "required": ["name", "agent"],
    "additionalProperties": False,
    "properties": {
        "name": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9_-]{1,50}$",
            "description": "Unique within the step; the key of this branch's output.",
        },
        "agent": _slug("Agent that runs this branch."),
        "input": _templated("Input for this branch's agent."),
        "tools": _TOOLS,
    },
}

_STEP_SCHEMAS: dict[str, dict[str, Any]] = {
    "agent": _step(
        "agent",
        "Runs one agent on a templated input; its answer is the step output.",
        {"agent": _slug("Agent slug."), "input": _templated("The agent's input."), "tools": _TOOLS},
        required=["agent"],
    ),
    "tool": _step(
        "tool",
        "Calls one tool directly with templated arguments; its result is the step output.",
        {
            "tool": _slug("Tool slug."),
            "arguments": {
                "type": ["object", "string"],
                "description": "Arguments object (or one template giving it)." + _TEMPLATED,
            },
        },
        required=["tool"],
    ),
    "router": _step(
        "router",
        "Chooses one route, by a router agent or inline rules; steps listed under the other "
        "routes are skipped (and so is anything only they lead to). Output: {route}.",
        {
            "agent": _slug("A router-kind agent that chooses the route."),
            "rules": {
                "type": "array",
                "minItems": 1,
                "description": "Inline rules, tried in order: the first whose `when` holds wins.",
                "items": {
                    "type": "object",
                    "required": ["when", "route"],
                    "additionalProperties": False,
                    "properties": {
                        "when": conditions.CONDITION_SCHEMA,
                        "route": {"type": "string", "minLength": 1, "maxLength": 100},
                    },
                },
            },
            "default_route": {
                "type": "string",
                "minLength": 1,
                "description": "Route chosen when no rule holds (with rules).",
            },
            "input": _templated("What the router decides on (rules test paths under input)."),
            "routes": {
                "type": "object",
                "minProperties": 1,
                "description": (
                    'Route name -> ids of the steps it runs: {"billing": ["refund"]}. Each '
                    "listed step must need this router."
                ),
                "additionalProperties": {
                    "type": "array",
                    "items": {"type": "string", "pattern": ID_PATTERN},
                    "uniqueItems": True,
                },
            },
        },
        required=["routes"],
        allOf=[
            {
                "description": "Give exactly one of agent (a router agent) or rules.",
                "oneOf": [{"required": ["agent"]}, {"required": ["rules"]}],
            }
        ],
    ),
    "parallel": _step(
        "parallel",
        "Fans out, then merges: named branches, or one agent per item of a list (for_each).",
        {
            "branches": {
                "type": "array",
                "minItems": 1,
                "items": _BRANCH,
                "description": "Branches that run at the same time, each with its agent.",
            },
            "for_each": {
                "type": "string",
                "description": (
                    'One {{ expression }} giving a list, e.g. "{{ input.documents }}"; the '
                    "agent runs once per item, with item and index in scope of input."
                ),
            },
            "agent": _slug("With for_each: the agent run for each item."),
            "input": _templated("With for_each: each run's input (item and index in scope)."),
            "tools": _TOOLS,
            "merge": {
                "description": (
                    '"object" (outputs by branch name), "list" (outputs in order) or '
                    '{"agent": "<slug>"} (that agent receives the outputs and answers).'
                ),
                "if": {"type": "object"},
                "then": {
                    "type": "object",
                    "required": ["agent"],
                    "additionalProperties": False,
                    "properties": {"agent": _slug("Agent that merges the branch outputs.")},
                },
                "else": {"enum": ["object", "list"]},
            },
            "max_concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "Most branches running at once.",
            },
        },
        allOf=[
            {
                "description": "Give exactly one of branches or for_each.",
                "oneOf": [{"required": ["branches"]}, {"required": ["for_each"]}],
            },
            {
                "description": "for_each needs an agent.",
                "dependentRequired": {"for_each": ["agent"]},
            },
            {
                "description": (
                    "With branches, each branch names its agent, input and tools: agent, input "
                    "and tools on the step belong to for_each."
                ),
                "not": {
                    "required": ["branches"],
                    "anyOf": [
                        {"required": ["agent"]},
                        {"required": ["input"]},
                        {"required": ["tools"]},
                    ],
                },
            },
        ],
    ),
    "manager": _step(
        "manager",
        "A supervisor llm agent that calls other agents as tools until it answers.",
        {
            "agent": _slug("The supervisor: an llm agent."),
            "delegates": _slugs("Agents the supervisor may call, each as a tool."),
            "input": _templated("The supervisor's task."),
            "tools": _TOOLS,
            "max_delegations": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "Most delegate calls before the supervisor must answer.",
            },
        },
        required=["agent", "delegates"],
    ),
    "handoff": _step(
        "handoff",
        "The active agent may hand the conversation to another of the step's agents.",
        {
            "agents": _slugs("llm agents that may hold the conversation."),
            "start": _slug("The agent that starts; one of agents."),
            "input": _templated("The opening message."),
            "max_handoffs": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "Most handoffs before the active agent must answer.",
            },
        },
        required=["agents", "start"],
    ),
    "loop": _step(
        "loop",
        "Runs an agent again and again until a condition holds or max_iterations is reached.",
        {
            "agent": _slug("Agent run on each iteration."),
            "input": _templated(
                "Each iteration's input; previous (the last iteration's output, null at "
                "first) and iteration (1, 2, ...) are in scope."
            ),
            "until": {
                **conditions.CONDITION_SCHEMA,
                "description": (
                    "Stop when this holds, tested on each iteration's result (e.g. path "
                    '"output.done"). ' + conditions.CONDITION_SCHEMA["description"]
                ),
            },
            "max_iterations": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "Hard stop: the loop ends after this many iterations.",
            },
            "tools": _TOOLS,
        },
        required=["agent", "max_iterations"],
    ),
    "approval": _step(
        "approval",
        "Waits for a person to approve or deny. Output: {approved, comment, decided_by}; a "
        "denial fails the step.",
        {
            "title": {
                "type": "string",
                "minLength": 1,
                "maxLength": 300,
                "description": "What is being approved." + _TEMPLATED,
            },
            "details": _templated("What the approver needs to decide."),
            "approvers": {
                "enum": list(ROLES),
                "default": "admin",
                "description": "Least role that may decide.",
            },
            "on_timeout": {
                "enum": ["deny", "approve"],
                "default": "deny",
                "description": "Outcome when nobody decides within timeout_seconds.",
            },
        },
        required=["title"],
    ),
}

DEFINITION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:controlplane:workflow-definition",
    "title": "Workflow definition",
    "description": (
        "A workflow version's definition: steps that run when the steps they need have "
        "finished, with inputs templated from the run input and earlier step outputs."
    ),
    "type": "object",
    "required": ["input_schema", "example_input", "steps"],
    "additionalProperties": False,
    "properties": {
        "input_schema": {
            "type": "object",
            "description": "JSON Schema (draft 2020-12) of the run input.",
        },
        "example_input": {"description": "A run input valid against input_schema."},
        "output": _templated("The run's output. Omitted: the output of the last step to finish."),
        "max_steps": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100000,
            "default": 200,
            "description": "Most step runs (iterations and branches count) one run may make.",
        },
        "deadline_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Wall time after which the run times out.",
        },
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/step"},
            "description": "The steps, in written order (the default order of a pipeline).",
        },
    },
    "$defs": {
        "step": {
            "type": "object",
            "description": "A step; `type` says which fields it has.",
            "required": ["id", "type"],
            "properties": {"id": _COMMON["id"], "type": _COMMON["type"]},
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                    "then": {"$ref": f"#/$defs/{kind}_step"},
                }
                for kind in STEP_TYPES
            ],
        },
        **{f"{kind}_step": schema for kind, schema in _STEP_SCHEMAS.items()},
    },
}

# Steps are checked one by one against their type's schema: the same rules as
# DEFINITION_SCHEMA, without re-testing every type's `if` on every step.
_TOP_VALIDATOR = Draft202012Validator(
    {**DEFINITION_SCHEMA, "properties": {**DEFINITION_SCHEMA["properties"], "steps": {}}}
)
_STEPS_VALIDATOR = Draft202012Validator(
    {k: v for k, v in DEFINITION_SCHEMA["properties"]["steps"].items() if k != "items"}
)
_STEP_VALIDATORS = {kind: Draft202012Validator(s) for kind, s in _STEP_SCHEMAS.items()}
_STEP_BASE_VALIDATOR = Draft202012Validator(
    {k: v for k, v in DEFINITION_SCHEMA["$defs"]["step"].items() if k != "allOf"}
)
_META_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA)

# --- public types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DefinitionError:
    """One problem: ``path`` of the offending value, ``message`` saying what to change."""

    path: str
    message: str


@dataclass(frozen=True)
class AgentInfo:
    """What validation needs of an agent. ``routes``: route names a router agent can answer
    (``None`` when unknown, e.g. an LLM classifier with open routes)."""

    kind: str
    status: str
    tools: frozenset[str] = frozenset()
    routes: frozenset[str] | None = None


@dataclass(frozen=True)
class ToolInfo:
    """What validation needs of a tool."""

    status: str
    risk: str


@dataclass(frozen=True)
class RegistryView:
    """The tenant's agents and tools by slug, as seen by validation."""

    agents: Mapping[str, AgentInfo]
    tools: Mapping[str, ToolInfo]


# --- helpers ----------------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.items: list[DefinitionError] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, path: str, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        if (path, message) not in self._seen:
            self._seen.add((path, message))
            self.items.append(DefinitionError(path, message))


def _path(base: str, parts: Iterable[Any]) -> str:
    for part in parts:
        base = templating.join_path(base, part if isinstance(part, int) else str(part))
    return base


_PATH_TOKEN = re.compile(r"\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\.?([^.\[]+)")


def _sort_key(error: DefinitionError) -> tuple[tuple[int, int | str], ...]:
    key: list[tuple[int, int | str]] = []
    for index, quoted, name in _PATH_TOKEN.findall(error.path):
        key.append((0, int(index)) if index else (1, quoted or name))
    return tuple(key)


def _schema_message(error: ValidationError) -> str:
    if error.validator in ("oneOf", "anyOf", "not", "dependentRequired") and isinstance(
        error.schema, dict
    ):
        description = error.schema.get("description")
        if description:
            return description
    return error.message


def _schema_errors(validator: Draft202012Validator, instance: Any, base: str, out: _Errors) -> None:
    for error in validator.iter_errors(instance):
        out.add(_path(base, error.absolute_path), _schema_message(error))


def _check_schema(data: Any, out: _Errors) -> None:
    _schema_errors(_TOP_VALIDATOR, data, "", out)
    if not isinstance(data, Mapping) or "steps" not in data:
        return
    steps = data["steps"]
    _schema_errors(_STEPS_VALIDATOR, steps, "steps", out)
    if not isinstance(steps, list):
        return
    for i, step in enumerate(steps):
        base = f"steps[{i}]"
        kind = step.get("type") if isinstance(step, Mapping) else None
        if isinstance(kind, str) and kind in _STEP_VALIDATORS:
            _schema_errors(_STEP_VALIDATORS[kind], step, base, out)  # includes id and type
        else:
            _schema_errors(_STEP_BASE_VALIDATOR, step, base, out)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and re.match(ID_PATTERN, value) is not None


# --- the graph --------------------------------------------------------------------------------


@dataclass
class _Graph:
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
    component: list[int], needs: list[list[int]], ids: list[str | None], out: _Errors
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


def _build_graph(steps: list[Any], out: _Errors) -> _Graph:
    n = len(steps)
    ids: list[str | None] = [None] * n
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        step_id = step.get("id") if isinstance(step, Mapping) else None
        if not _valid_id(step_id):
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
        declared = step["needs"]
        if not isinstance(declared, list):
            continue
        for k, need in enumerate(declared):
            if not isinstance(need, str):
                continue
            where = f"steps[{i}].needs[{k}]"
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
    return _Graph(ids=ids, index=index, needs=needs, ancestors=ancestors, runnable=runnable)


# --- references -------------------------------------------------------------------------------


def _check_templates(
    value: Any,
    path: str,
    out: _Errors,
    graph: _Graph,
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
            _check_chain(chain, string_path, out, graph, position, local_names, where)


def _check_chain(
    chain: tuple[str, ...],
    path: str,
    out: _Errors,
    graph: _Graph,
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


# --- registry ---------------------------------------------------------------------------------


def _check_agent(
    slug: Any,
    path: str,
    registry: RegistryView,
    out: _Errors,
    kind: str | None = None,
    role: str = "",
) -> AgentInfo | None:
    if not isinstance(slug, str):
        return None
    agent = registry.agents.get(slug)
    if agent is None:
        out.add(path, f"Unknown agent {slug!r}.")
        return None
    if agent.status != ACTIVE:
        out.add(path, f"Agent {slug!r} is {agent.status}.")
    if kind is not None and agent.kind != kind:
        out.add(
            path,
            f"Agent {slug!r} is {_a(agent.kind)} agent; {role} must be {_a(kind)} agent.",
        )
    return agent


def _a(word: str) -> str:
    vowel_sound = word[:1] in "aeiou" or word in ("llm", "http")
    return f"{'an' if vowel_sound else 'a'} {word}"


def _check_tool(slug: Any, path: str, registry: RegistryView, out: _Errors) -> ToolInfo | None:
    if not isinstance(slug, str):
        return None
    tool = registry.tools.get(slug)
    if tool is None:
        out.add(path, f"Unknown tool {slug!r}.")
        return None
    if tool.status != ACTIVE:
        out.add(path, f"Tool {slug!r} is {tool.status}.")
    return tool


def _check_tools(
    holder: Mapping[str, Any],
    base: str,
    agent_slug: Any,
    agent: AgentInfo | None,
    registry: RegistryView,
    out: _Errors,
) -> None:
    tools = holder.get("tools")
    if not isinstance(tools, list):
        return
    for k, slug in enumerate(tools):
        path = f"{base}.tools[{k}]"
        known = _check_tool(slug, path, registry, out) is not None
        if known and agent is not None and slug not in agent.tools:
            out.add(path, f"Agent {agent_slug!r} may not use tool {slug!r}: it is not granted.")


def _agent_with_tools(
    holder: Mapping[str, Any],
    base: str,
    registry: RegistryView,
    out: _Errors,
    kind: str | None = None,
    role: str = "",
) -> None:
    slug = holder.get("agent")
    agent = _check_agent(slug, f"{base}.agent", registry, out, kind, role)
    _check_tools(holder, base, slug, agent, registry, out)


# --- steps ------------------------------------------------------------------------------------


def _check_router(
    step: Mapping[str, Any], i: int, graph: _Graph, registry: RegistryView, out: _Errors
) -> None:
    base = f"steps[{i}]"
    agent = _check_agent(
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
        for k, rule in enumerate(rules):
            if isinstance(rule, Mapping) and "when" in rule:
                for rel, message in conditions.problems(rule["when"]):
                    out.add(f"{base}.rules[{k}].when{rel}", message)
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
        if not isinstance(targets, list):
            continue
        for k, target in enumerate(targets):
            if not isinstance(target, str):
                continue
            where = f"{route_path}[{k}]"
            if target not in graph.index:
                out.add(where, f"Unknown step {target!r}.")
            elif i not in graph.needs[graph.index[target]]:
                out.add(
                    where,
                    f"Step {target!r} does not need this router: add {graph.ids[i]!r} to its "
                    "needs, or it may run before the route is chosen.",
                )


def _check_parallel(
    step: Mapping[str, Any], i: int, graph: _Graph, registry: RegistryView, out: _Errors
) -> None:
    base = f"steps[{i}]"
    branches = step.get("branches")
    if isinstance(branches, list):
        names: dict[str, int] = {}
        for k, branch in enumerate(branches):
            if not isinstance(branch, Mapping):
                continue
            where = f"{base}.branches[{k}]"
            name = branch.get("name")
            if isinstance(name, str):
                if name in names:
                    out.add(f"{where}.name", f"Duplicate branch name {name!r}.")
                names.setdefault(name, k)
            _agent_with_tools(branch, where, registry, out)
            if "input" in branch:
                _check_templates(
                    branch["input"], f"{where}.input", out, graph, i, where="a branch input"
                )
    if "for_each" in step:
        for_each = step["for_each"]
        _check_templates(for_each, f"{base}.for_each", out, graph, i, where="for_each")
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
        _agent_with_tools(step, base, registry, out)
        if "input" in step:
            _check_templates(
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
        _check_agent(merge.get("agent"), f"{base}.merge.agent", registry, out)


def _has_template_error(source: str) -> bool:
    try:
        templating.references(source)
    except templating.TemplateError:
        return True
    return False


def _check_step(
    step: Mapping[str, Any], i: int, graph: _Graph, registry: RegistryView, out: _Errors
) -> None:
    base = f"steps[{i}]"
    kind = step.get("type")
    here = f"{_a(str(kind))} step"
    if kind == "agent":
        _agent_with_tools(step, base, registry, out)
    elif kind == "tool":
        _check_tool(step.get("tool"), f"{base}.tool", registry, out)
    elif kind == "router":
        _check_router(step, i, graph, registry, out)
    elif kind == "parallel":
        _check_parallel(step, i, graph, registry, out)
    elif kind == "manager":
        _agent_with_tools(step, base, registry, out, "llm", "a manager step's agent")
        delegates = step.get("delegates")
        for k, slug in enumerate(delegates if isinstance(delegates, list) else []):
            _check_agent(slug, f"{base}.delegates[{k}]", registry, out)
    elif kind == "handoff":
        agents = step.get("agents")
        agents = agents if isinstance(agents, list) else []
        for k, slug in enumerate(agents):
            _check_agent(slug, f"{base}.agents[{k}]", registry, out, "llm", "a handoff agent")
        start = step.get("start")
        if isinstance(start, str) and start not in agents:
            out.add(f"{base}.start", f"start {start!r} is not one of this step's agents.")
    elif kind == "loop":
        _agent_with_tools(step, base, registry, out)
        if "until" in step:
            for rel, message in conditions.problems(step["until"]):
                out.add(f"{base}.until{rel}", message)

    on_error = step.get("on_error")
    if isinstance(on_error, Mapping):
        _check_agent(on_error.get("fallback"), f"{base}.on_error.fallback", registry, out)

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
            _check_templates(
                step[field], f"{base}.{field}", out, graph, i, local_names, f"{here}'s {field}"
            )


# --- run level --------------------------------------------------------------------------------


def _check_input(data: Mapping[str, Any], out: _Errors) -> None:
    schema = data.get("input_schema")
    if not isinstance(schema, Mapping):
        return  # missing or not an object: the definition schema said so
    broken = False
    for error in _META_VALIDATOR.iter_errors(schema):
        out.add(_path("input_schema", error.absolute_path), error.message)
        broken = True
    for where, message in patterns.schema_pattern_problems(schema, "input_schema"):
        out.add(where, message)
        broken = True
    if broken or "example_input" not in data:
        return
    try:
        validator = Draft202012Validator(
            schema, registry=Registry(), format_checker=FormatChecker()
        )
        for error in validator.iter_errors(data["example_input"]):
            out.add(_path("example_input", error.absolute_path), error.message)
    except (SchemaError, Unresolvable) as exc:
        out.add("input_schema", f"The schema cannot be used: {exc}")


def validate_definition(data: Any, registry: RegistryView) -> list[DefinitionError]:
    """Every problem with the definition ``data``, sorted by path; empty when it is valid.

    Covers ``DEFINITION_SCHEMA`` (with the path of each violation), duplicate step ids,
    ``needs`` naming unknown steps or the step itself, cycles through ``needs`` (naming the
    steps in the cycle), steps that can never run, unknown or disabled agents and tools,
    agents of the wrong kind, tools not granted to the step's agent, router routes naming
    unknown steps, steps that do not need the router, or routes the router cannot give,
    handoff ``start`` outside ``agents``, duplicate branch names, ``for_each`` that is not one
    expression, conditions with malformed paths or regexes, templates that do not parse or
    that name unknown names, unknown steps, steps that may not have run before (not an
    ancestor through ``needs``), step-local names outside their step type, an
    ``input_schema`` that is not a valid JSON Schema and an ``example_input`` it rejects.
    Malformed parts are reported once and skipped by the later checks, never crash them.
    A definition with no errors can be given to ``parse_definition``.
    """
    out = _Errors()
    _check_schema(data, out)
    if isinstance(data, Mapping):
        steps = data.get("steps")
        steps = steps if isinstance(steps, list) else []
        graph = _build_graph(steps, out)
        for i, step in enumerate(steps):
            if isinstance(step, Mapping):
                _check_step(step, i, graph, registry, out)
        if "output" in data:
            _check_templates(data["output"], "output", out, graph, None, where="the output")
        _check_input(data, out)
    return sorted(out.items, key=_sort_key)


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

"""The published JSON Schema of a workflow definition, and the validators built from it.

One coherent thing over 400 lines: the schema is data (one entry per step type, each with
its fields and descriptions), kept in one place so the API can publish it whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from runs.engine import conditions, patterns
from runs.engine.definition import STEP_TYPES
from runs.engine.validation.report import Errors, value_path

patterns.install_in_jsonschema()  # input schemas' patterns run on RE2 here too (no Django)

ID_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$"
ROLES = ("owner", "admin", "operator", "viewer")
ACTIVE = "active"


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
TOP_VALIDATOR = Draft202012Validator(
    {**DEFINITION_SCHEMA, "properties": {**DEFINITION_SCHEMA["properties"], "steps": {}}}
)
STEPS_VALIDATOR = Draft202012Validator(
    {k: v for k, v in DEFINITION_SCHEMA["properties"]["steps"].items() if k != "items"}
)
STEP_VALIDATORS = {kind: Draft202012Validator(s) for kind, s in _STEP_SCHEMAS.items()}
STEP_BASE_VALIDATOR = Draft202012Validator(
    {k: v for k, v in DEFINITION_SCHEMA["$defs"]["step"].items() if k != "allOf"}
)
META_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def _schema_message(error: ValidationError) -> str:
    if error.validator in ("oneOf", "anyOf", "not", "dependentRequired") and isinstance(
        error.schema, dict
    ):
        description = error.schema.get("description")
        if description:
            return description
    return error.message


def schema_errors(validator: Draft202012Validator, instance: Any, base: str, out: Errors) -> None:
    for error in validator.iter_errors(instance):
        out.add(value_path(base, error.absolute_path), _schema_message(error))


def check_schema(data: Any, out: Errors) -> None:
    schema_errors(TOP_VALIDATOR, data, "", out)
    if not isinstance(data, Mapping) or "steps" not in data:
        return
    steps = data["steps"]
    schema_errors(STEPS_VALIDATOR, steps, "steps", out)
    if not isinstance(steps, list):
        return
    for i, step in enumerate(steps):
        base = f"steps[{i}]"
        kind = step.get("type") if isinstance(step, Mapping) else None
        if isinstance(kind, str) and kind in STEP_VALIDATORS:
            schema_errors(STEP_VALIDATORS[kind], step, base, out)  # includes id and type
        else:
            schema_errors(STEP_BASE_VALIDATOR, step, base, out)


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and re.match(ID_PATTERN, value) is not None

"""The published JSON Schema of each step type: the fields every step has (``COMMON``) and one
entry per type in ``STEP_SCHEMAS``, each with its fields and their descriptions. Pure data
(and the small builders that keep its entries alike); ``schema`` assembles the definition
schema from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runs.engine import conditions
from runs.engine.definition import STEP_TYPES

ID_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$"
ROLES = ("owner", "admin", "operator", "viewer")


_TEMPLATED = (
    " Templated: strings may contain {{ expression }} over input, steps.<id>.output (steps this"
    " one needs, directly or not) and context; a string that is exactly one {{ ... }} keeps the"
    " value's JSON type."
)


def _slug(what: str) -> dict[str, Any]:
    """A slug field."""
    return {"type": "string", "pattern": SLUG_PATTERN, "description": what}


def templated(what: str) -> dict[str, Any]:
    """A templated field: ``what`` and the note on templates."""
    return {"description": what + _TEMPLATED}


def _slugs(what: str, min_items: int = 1) -> dict[str, Any]:
    """A list of distinct slugs."""
    return {
        "type": "array",
        "items": {"type": "string", "pattern": SLUG_PATTERN},
        "minItems": min_items,
        "uniqueItems": True,
        "description": what,
    }


def _word_or_agent(words: Iterable[str], key: str, what: str) -> dict[str, Any]:
    """A value that is one of ``words`` or ``{key: "<agent slug>"}`` (``on_error``, ``merge``)."""
    return {
        "if": {"type": "object"},
        "then": {
            "type": "object",
            "required": [key],
            "additionalProperties": False,
            "properties": {key: _slug(what)},
        },
        "else": {"enum": list(words)},
    }


_TOOLS = _slugs(
    "Tool slugs this step's agent may call, narrowing its granted tools for this step; each "
    "must be granted to the agent. Omitted: every tool granted to the agent.",
    min_items=0,
)

COMMON: dict[str, Any] = {
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
        **_word_or_agent(
            ("fail", "continue", "escalate"), "fallback", "Agent that runs the step instead."
        ),
    },
}


def _step(
    kind: str,
    description: str,
    properties: dict[str, Any],
    required: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The schema of one step type: the common fields, ``type`` fixed to ``kind``, its own."""
    return {
        "type": "object",
        "title": f"{kind} step",
        "description": description,
        "required": ["id", "type", *required],
        "additionalProperties": False,
        "properties": {
            **COMMON,
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
        "input": templated("Input for this branch's agent."),
        "tools": _TOOLS,
    },
}

STEP_SCHEMAS: dict[str, dict[str, Any]] = {
    "agent": _step(
        "agent",
        "Runs one agent on a templated input; its answer is the step output.",
        {"agent": _slug("Agent slug."), "input": templated("The agent's input."), "tools": _TOOLS},
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
            "input": templated("What the router decides on (rules test paths under input)."),
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
            "input": templated("With for_each: each run's input (item and index in scope)."),
            "tools": _TOOLS,
            "merge": {
                "description": (
                    '"object" (outputs by branch name), "list" (outputs in order) or '
                    '{"agent": "<slug>"} (that agent receives the outputs and answers).'
                ),
                **_word_or_agent(
                    ("object", "list"), "agent", "Agent that merges the branch outputs."
                ),
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
            "input": templated("The supervisor's task."),
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
            "input": templated("The opening message."),
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
            "input": templated(
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
            "details": templated("What the approver needs to decide."),
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

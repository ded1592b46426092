"""Workflow definition validation: every error kind with its exact path, and a big valid one.

Pure: a RegistryView stands in for the tenant's registry, so no test touches the database.
"""

import copy

import pytest
from jsonschema import Draft202012Validator

from runs.engine.definition import STEP_TYPES, parse_definition
from runs.engine.validation import validate_definition
from runs.engine.validation.graph import topological_order
from runs.engine.validation.registry import AgentInfo, RegistryView, ToolInfo
from runs.engine.validation.report import DefinitionError
from runs.engine.validation.schema import DEFINITION_SCHEMA

REGISTRY = RegistryView(
    agents={
        "triage": AgentInfo("router", "active", frozenset(), frozenset({"billing", "technical"})),
        "classifier": AgentInfo("router", "active", frozenset(), None),
        "billing": AgentInfo("llm", "active", frozenset({"ticket-create", "calculator"})),
        "technical": AgentInfo("llm", "active", frozenset({"kb-search"})),
        "researcher": AgentInfo("llm", "active", frozenset({"kb-search", "status-page"})),
        "summarizer": AgentInfo("llm", "active", frozenset()),
        "webhook": AgentInfo("http", "active", frozenset()),
        "reviewer": AgentInfo("human", "active", frozenset()),
        "retired": AgentInfo("llm", "disabled", frozenset({"calculator"})),
    },
    tools={
        "calculator": ToolInfo("active", "read"),
        "kb-search": ToolInfo("active", "read"),
        "ticket-create": ToolInfo("active", "write"),
        "status-page": ToolInfo("active", "read"),
        "wipe": ToolInfo("disabled", "destructive"),
    },
)

INPUT_SCHEMA = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"type": "string", "minLength": 1},
        "documents": {"type": "array", "items": {"type": "string"}},
        "odd-key": {"type": "integer"},
    },
}


def big_definition():
    """Every step type and most optional fields, wired correctly."""
    return {
        "input_schema": INPUT_SCHEMA,
        "example_input": {"message": "My invoice is wrong", "documents": ["a", "b"]},
        "output": {
            "answer": "{{ steps.final.output }}",
            "route": "{{ steps.route.output.route }}",
            "ok": "{{ steps.approve.output.approved }}",
        },
        "max_steps": 500,
        "deadline_seconds": 600,
        "steps": [
            {
                "id": "route",
                "name": "Triage",
                "type": "router",
                "agent": "triage",
                "input": {"message": "{{ input.message }}", "lang": "{{ context.locale }}"},
                "routes": {"billing": ["bill"], "technical": ["tech"]},
                "retry": {"attempts": 3, "backoff_seconds": 1, "max_backoff_seconds": 30},
                "timeout_seconds": 30,
            },
            {
                "id": "bill",
                "type": "agent",
                "agent": "billing",
                "needs": ["route"],
                "input": {"message": "{{ input.message }}", "raw": '{{ input["odd-key"] }}'},
                "tools": ["ticket-create"],
                "on_error": {"fallback": "summarizer"},
            },
            {
                "id": "tech",
                "type": "agent",
                "agent": "technical",
                "needs": ["route"],
                "input": "{{ input.message }}",
                "on_error": "continue",
            },
            {
                "id": "rules",
                "type": "router",
                "needs": [],
                "rules": [
                    {
                        "when": {"path": "input.message", "op": "matches", "value": "(?i)refund"},
                        "route": "refund",
                    },
                    {
                        "when": [
                            {"path": "input.documents", "op": "exists"},
                            {"path": "input.documents[0]", "op": "ne", "value": ""},
                        ],
                        "route": "docs",
                    },
                ],
                "default_route": "other",
                "input": {"message": "{{ input.message }}"},
                "routes": {"refund": ["calc"], "docs": ["fan"], "other": []},
            },
            {
                "id": "calc",
                "type": "tool",
                "tool": "calculator",
                "needs": ["rules"],
                "arguments": {"expression": "{{ input.message | length }} * 2"},
            },
            {
                "id": "fan",
                "type": "parallel",
                "needs": ["rules"],
                "for_each": "{{ input.documents }}",
                "agent": "researcher",
                "tools": ["kb-search"],
                "input": {"doc": "{{ item }}", "n": "{{ index }}", "q": "{{ input.message }}"},
                "merge": "list",
                "max_concurrency": 4,
            },
            {
                "id": "panel",
                "type": "parallel",
                "needs": ["bill", "tech"],
                "branches": [
                    {
                        "name": "research",
                        "agent": "researcher",
                        "input": "{{ steps.bill.output | default(steps.tech.output) }}",
                        "tools": ["status-page"],
                    },
                    {"name": "external", "agent": "webhook", "input": {"m": "{{ input.message }}"}},
                ],
                "merge": {"agent": "summarizer"},
            },
            {
                "id": "boss",
                "type": "manager",
                "needs": ["panel", "fan", "calc"],
                "agent": "summarizer",
                "delegates": ["researcher", "webhook", "reviewer"],
                "input": {
                    "panel": "{{ steps.panel.output }}",
                    "docs": "{{ steps.fan.output | length }}",
                    "calc": "{{ steps.calc.output }}",
                    "route": "{{ steps.route.output.route }}",
                },
                "max_delegations": 5,
            },
            {
                "id": "desk",
                "type": "handoff",
                "agents": ["billing", "technical"],
                "start": "billing",
                "input": "{{ steps.boss.output }}",
                "max_handoffs": 3,
            },
            {
                "id": "polish",
                "type": "loop",
                "agent": "summarizer",
                "input": {
                    "draft": "{{ previous | default(steps.desk.output) }}",
                    "round": "{{ iteration }}",
                },
                "until": {"path": "output.done", "op": "eq", "value": True},
                "max_iterations": 3,
            },
            {
                "id": "approve",
                "type": "approval",
                "title": "Send the answer to {{ input.message | upper }}?",
                "details": {"draft": "{{ steps.polish.output }}"},
                "approvers": "operator",
                "timeout_seconds": 3600,
                "on_timeout": "deny",
            },
            {
                "id": "final",
                "type": "agent",
                "agent": "reviewer",
                "input": "Approved: {{ steps.approve.output.approved }}; {{ steps.polish.output }}",
                "on_error": "escalate",
            },
        ],
    }


def errors(definition, registry=REGISTRY):
    return [(e.path, e.message) for e in validate_definition(definition, registry)]


def paths(definition, registry=REGISTRY):
    return [e.path for e in validate_definition(definition, registry)]


def has(definition, path, fragment, registry=REGISTRY):
    found = errors(definition, registry)
    assert any(p == path and fragment in m for p, m in found), found
    return found


def minimal(*steps):
    return {"input_schema": INPUT_SCHEMA, "example_input": {"message": "hi"}, "steps": list(steps)}


def agent(step_id, **fields):
    return {"id": step_id, "type": "agent", "agent": "summarizer", **fields}


# --- the valid case --------------------------------------------------------------------------


def test_big_valid_definition_covering_every_step_type_has_no_errors():
    d = big_definition()
    assert {s["type"] for s in d["steps"]} == set(STEP_TYPES)
    assert validate_definition(d, REGISTRY) == []
    assert list(Draft202012Validator(DEFINITION_SCHEMA).iter_errors(d)) == []
    parsed = parse_definition(d)
    assert [s.id for s in parsed.steps] == [s["id"] for s in d["steps"]]


def test_validation_does_not_modify_the_definition():
    d = big_definition()
    before = copy.deepcopy(d)
    validate_definition(d, REGISTRY)
    assert d == before


def test_a_long_pipeline_is_valid_and_checked_to_the_end():
    steps = [agent("s0", input="{{ input.message }}")]
    for i in range(1, 1000):
        steps.append(agent(f"s{i}", input={"prev": f"{{{{ steps.s{i - 1}.output }}}}"}))
    steps[-1]["input"]["first"] = "{{ steps.s0.output }}"
    d = minimal(*steps)
    assert validate_definition(d, REGISTRY) == []
    d["steps"][500]["input"]["later"] = "{{ steps.s999.output }}"
    assert errors(d) == [
        (
            "steps[500].input.later",
            "Step 's999' may not have run before this step: add it to needs (directly or "
            "through a step it needs).",
        )
    ]


# --- the published schema --------------------------------------------------------------------


def test_definition_schema_is_a_valid_draft_2020_12_schema_with_descriptions():
    Draft202012Validator.check_schema(DEFINITION_SCHEMA)
    assert DEFINITION_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for kind in STEP_TYPES:
        step = DEFINITION_SCHEMA["$defs"][f"{kind}_step"]
        assert step["description"]
        for name, field in step["properties"].items():
            assert field.get("description"), (kind, name)
    for name, field in DEFINITION_SCHEMA["properties"].items():
        assert field.get("description"), name


INVALID_SHAPES = [
    minimal({"id": "a", "type": "agent"}),
    minimal({"id": "Bad-Id", "type": "agent", "agent": "summarizer"}),
    minimal(agent("a", retry={"attempts": 0, "tries": 2})),
    minimal(agent("a", on_error="retry")),
    minimal(agent("a", on_error={"fallback": "summarizer", "x": 1})),
    minimal({"id": "a", "type": "dance"}),
    minimal({"id": "r", "type": "router", "agent": "triage", "rules": [], "routes": {}}),
    minimal({"id": "p", "type": "parallel", "agent": "summarizer"}),
    minimal({"id": "p", "type": "parallel", "for_each": "{{ input.documents }}"}),
    minimal({"id": "l", "type": "loop", "agent": "summarizer", "until": {"op": "eq"}}),
    minimal({"id": "h", "type": "handoff", "agents": []}),
    minimal({"id": "ap", "type": "approval", "title": "", "approvers": "boss"}),
    {"steps": [], "extra": True},
    [],
]


@pytest.mark.parametrize("definition", INVALID_SHAPES)
def test_every_violation_of_the_published_schema_is_reported_with_its_path(definition):
    full = Draft202012Validator(DEFINITION_SCHEMA)
    expected = set()
    for error in full.iter_errors(definition):
        if error.validator in ("allOf", "if", "then", "$ref"):
            continue
        path = ""
        for part in error.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        expected.add(path)
    assert expected, "the sample must violate the schema"
    assert expected <= set(paths(definition))


@pytest.mark.parametrize(
    ("definition", "path", "fragment"),
    [
        (minimal({"id": "a", "type": "agent"}), "steps[0]", "'agent' is a required property"),
        (minimal(agent("Bad")), "steps[0].id", "does not match"),
        (minimal(agent("a", retry={"tries": 2})), "steps[0].retry", "'tries' was unexpected"),
        (minimal(agent("a", retry={"attempts": 0})), "steps[0].retry.attempts", "minimum"),
        (minimal(agent("a", on_error="retry")), "steps[0].on_error", "is not one of"),
        (minimal(agent("a", on_error={"fallback": 3})), "steps[0].on_error.fallback", "type"),
        (minimal({"id": "a", "type": "dance"}), "steps[0].type", "is not one of"),
        (minimal(agent("a", colour="red")), "steps[0]", "'colour' was unexpected"),
        (minimal(agent("a", needs="b")), "steps[0].needs", "is not of type 'array'"),
        (
            minimal({"id": "r", "type": "router", "routes": {"x": []}}),
            "steps[0]",
            "Give exactly one of agent (a router agent) or rules.",
        ),
        (
            minimal({"id": "p", "type": "parallel", "agent": "summarizer"}),
            "steps[0]",
            "Give exactly one of branches or for_each.",
        ),
        (
            minimal({"id": "p", "type": "parallel", "for_each": "{{ input.documents }}"}),
            "steps[0]",
            "for_each needs an agent.",
        ),
        (
            minimal({"id": "l", "type": "loop", "agent": "summarizer"}),
            "steps[0]",
            "'max_iterations' is a required property",
        ),
        (
            minimal(
                {"id": "l", "type": "loop", "agent": "summarizer", "max_iterations": 2, "until": {}}
            ),
            "steps[0].until",
            "'path' is a required property",
        ),
        (
            minimal({"id": "ap", "type": "approval", "title": "t", "approvers": "boss"}),
            "steps[0].approvers",
            "is not one of",
        ),
        (minimal(agent("a"), agent("b", needs=["a", "a"])), "steps[1].needs", "non-unique"),
        ({"input_schema": {}, "example_input": 1, "steps": []}, "steps", "non-empty"),
        ({"steps": [agent("a")]}, "", "'input_schema' is a required property"),
        ({"steps": [agent("a")]}, "", "'example_input' is a required property"),
        (minimal(agent("a")) | {"version": 2}, "", "'version' was unexpected"),
        (minimal(agent("a")) | {"max_steps": 0}, "max_steps", "minimum"),
        ([], "", "is not of type 'object'"),
        (minimal(agent("a"), 7), "steps[1]", "is not of type 'object'"),
    ],
)
def test_schema_errors_have_exact_paths(definition, path, fragment):
    has(definition, path, fragment)


def test_garbage_never_crashes_and_is_reported():
    for junk in (None, "x", 5, {"steps": "x"}, {"steps": [None, [], {"needs": 5}]}):
        assert validate_definition(junk, REGISTRY), junk


# --- ids and needs ---------------------------------------------------------------------------


def test_duplicate_step_ids():
    found = has(minimal(agent("a"), agent("b"), agent("a")), "steps[2].id", "Duplicate step id 'a'")
    assert "steps[0] already uses it" in dict(found)["steps[2].id"]


def test_needs_naming_unknown_steps():
    has(minimal(agent("a"), agent("b", needs=["a", "ghost"])), "steps[1].needs[1]", "'ghost'")


def test_a_step_cannot_need_itself():
    has(minimal(agent("a", needs=["a"])), "steps[0].needs[0]", "cannot need itself")


def test_a_cycle_through_needs_names_its_steps_in_order():
    d = minimal(
        agent("a", needs=[]),
        agent("b", needs=["a", "d"]),
        agent("c", needs=["b"]),
        agent("d", needs=["c"]),
    )
    found = errors(d)
    assert found == [
        (
            "steps[1].needs",
            "Steps need each other in a cycle: b -> d -> c -> b (each needs the next). Remove "
            "one of these needs; to repeat work, use a loop step.",
        )
    ]


def test_two_separate_cycles_are_both_reported():
    d = minimal(
        agent("a", needs=["b"]),
        agent("b", needs=["a"]),
        agent("c", needs=["d"]),
        agent("d", needs=["c"]),
        agent("e", needs=[]),
    )
    cycle_paths = [p for p, m in errors(d) if "cycle" in m]
    assert cycle_paths == ["steps[0].needs", "steps[2].needs"]


def test_steps_cut_off_by_a_cycle_are_unreachable():
    d = minimal(
        agent("root", needs=[]),
        agent("x", needs=["y"]),
        agent("y", needs=["x"]),
        agent("after", needs=["root", "y"]),
    )
    has(d, "steps[3]", "Step 'after' can never run: it needs 'y', which is in a cycle")


def test_in_a_pipeline_a_bad_needs_makes_the_next_step_unreachable():
    d = minimal(agent("a"), agent("b", needs=["ghost"]), agent("c"), agent("d"))
    assert paths(d) == ["steps[1].needs[0]", "steps[2]"]
    has(d, "steps[2]", "it needs 'b', which has needs that cannot be met")


def test_every_step_may_be_a_root():
    d = minimal(agent("a", needs=[]), agent("b", needs=[]))
    assert validate_definition(d, REGISTRY) == []


# --- registry --------------------------------------------------------------------------------


def test_unknown_and_disabled_agents():
    d = minimal(agent("a", agent="ghost"), agent("b", agent="retired"))
    assert errors(d) == [
        ("steps[0].agent", "Unknown agent 'ghost'."),
        ("steps[1].agent", "Agent 'retired' is disabled."),
    ]


def test_tools_the_agent_may_not_use():
    d = minimal(
        {
            "id": "a",
            "type": "agent",
            "agent": "billing",
            "tools": ["calculator", "kb-search", "nope", "wipe"],
        }
    )
    assert errors(d) == [
        ("steps[0].tools[1]", "Agent 'billing' may not use tool 'kb-search': it is not granted."),
        ("steps[0].tools[2]", "Unknown tool 'nope'."),
        ("steps[0].tools[3]", "Tool 'wipe' is disabled."),
        ("steps[0].tools[3]", "Agent 'billing' may not use tool 'wipe': it is not granted."),
    ]


def test_tool_step_tool_unknown_or_disabled():
    d = minimal(
        {"id": "a", "type": "tool", "tool": "ghost"},
        {"id": "b", "type": "tool", "tool": "wipe"},
    )
    assert errors(d) == [
        ("steps[0].tool", "Unknown tool 'ghost'."),
        ("steps[1].tool", "Tool 'wipe' is disabled."),
    ]


def test_router_step_needs_a_router_agent():
    d = minimal({"id": "r", "type": "router", "agent": "billing", "routes": {"x": []}})
    has(d, "steps[0].agent", "Agent 'billing' is an llm agent; a router step's agent must be a")


def test_manager_needs_an_llm_agent_and_known_delegates():
    d = minimal(
        {
            "id": "m",
            "type": "manager",
            "agent": "webhook",
            "delegates": ["researcher", "ghost", "retired"],
        }
    )
    assert errors(d) == [
        (
            "steps[0].agent",
            "Agent 'webhook' is an http agent; a manager step's agent must be an llm agent.",
        ),
        ("steps[0].delegates[1]", "Unknown agent 'ghost'."),
        ("steps[0].delegates[2]", "Agent 'retired' is disabled."),
    ]


def test_handoff_agents_must_be_known_llm_agents_and_start_one_of_them():
    d = minimal(
        {
            "id": "h",
            "type": "handoff",
            "agents": ["billing", "reviewer", "ghost"],
            "start": "technical",
        }
    )
    found = errors(d)
    assert [p for p, _ in found] == ["steps[0].agents[1]", "steps[0].agents[2]", "steps[0].start"]
    assert "is a human agent; a handoff agent must be an llm agent" in found[0][1]
    assert found[2][1] == "start 'technical' is not one of this step's agents."


def test_on_error_fallback_and_merge_agents_must_exist():
    d = minimal(
        agent("a", on_error={"fallback": "ghost"}),
        {
            "id": "p",
            "type": "parallel",
            "branches": [{"name": "x", "agent": "nobody", "tools": ["calculator"]}],
            "merge": {"agent": "retired"},
        },
    )
    assert errors(d) == [
        ("steps[0].on_error.fallback", "Unknown agent 'ghost'."),
        ("steps[1].branches[0].agent", "Unknown agent 'nobody'."),
        ("steps[1].merge.agent", "Agent 'retired' is disabled."),
    ]


def test_branch_tools_are_checked_against_the_branch_agent():
    d = minimal(
        {
            "id": "p",
            "type": "parallel",
            "branches": [{"name": "x", "agent": "technical", "tools": ["calculator"]}],
        }
    )
    has(d, "steps[0].branches[0].tools[0]", "'technical' may not use tool 'calculator'")


# --- routers ---------------------------------------------------------------------------------


def router(**fields):
    return {"id": "r", "type": "router", "agent": "triage", "needs": [], **fields}


def test_router_routes_naming_unknown_steps_or_steps_that_do_not_need_it():
    d = minimal(
        router(routes={"billing": ["b", "ghost"], "technical": ["t"]}),
        agent("b", needs=["r"]),
        agent("t", needs=[]),
    )
    assert errors(d) == [
        ("steps[0].routes.billing[1]", "Unknown step 'ghost'."),
        (
            "steps[0].routes.technical[0]",
            "Step 't' does not need this router: add 'r' to its needs, or it may run before the "
            "route is chosen.",
        ),
    ]


def test_route_names_the_router_agent_cannot_produce():
    d = minimal(router(routes={"billing": [], "sales": []}))
    assert errors(d) == [
        (
            "steps[0].routes.sales",
            "router agent 'triage' never answers 'sales'; it answers 'billing', 'technical'.",
        )
    ]


def test_route_names_are_not_checked_when_the_agent_routes_are_unknown():
    d = minimal(router(agent="classifier", routes={"anything": []}))
    assert validate_definition(d, REGISTRY) == []


def test_inline_rules_routes_and_conditions():
    d = minimal(
        {
            "id": "r",
            "type": "router",
            "rules": [
                {"when": {"path": "input.message", "op": "matches", "value": "(("}, "route": "a"},
                {"when": [{"path": "input.x", "op": "exists"}], "route": "b"},
            ],
            "routes": {"a": [], "b": [], "c": []},
        }
    )
    found = errors(d)
    assert [p for p, _ in found] == ["steps[0].routes.c", "steps[0].rules[0].when.value"]
    assert "No rule gives the route 'c'" in found[0][1]
    assert "Invalid regular expression" in found[1][1]


def test_default_route_counts_as_a_route_rules_give():
    d = minimal(
        {
            "id": "r",
            "type": "router",
            "rules": [{"when": {"path": "input.x", "op": "exists"}, "route": "a"}],
            "default_route": "c",
            "routes": {"a": [], "c": []},
        }
    )
    assert validate_definition(d, REGISTRY) == []


def test_loop_until_with_a_bad_regex_in_a_list():
    step = {
        "id": "l",
        "type": "loop",
        "agent": "summarizer",
        "max_iterations": 2,
        "until": [
            {"path": "output.x", "op": "exists"},
            {"path": "output.t", "op": "matches", "value": "["},
        ],
    }
    has(minimal(step), "steps[0].until[1].value", "Invalid regular expression")


# --- templates -------------------------------------------------------------------------------


def test_templates_that_do_not_parse_are_reported_at_the_string():
    d = minimal(agent("a", input={"message": "Hi {{ input.message", "ok": "{{ input.message }}"}))
    assert paths(d) == ["steps[0].input.message"]
    has(d, "steps[0].input.message", "never closed")


def test_templates_the_sandbox_refuses_are_reported():
    d = minimal(agent("a", input={"x": "{{ input.__class__ }}", "y": "{{ input.keys() }}"}))
    has(d, "steps[0].input.x", "'__class__' is not allowed")
    has(d, "steps[0].input.y", "calls are not allowed")


def test_references_to_unknown_steps():
    d = minimal(agent("a", input="{{ steps.ghost.output }}"))
    assert errors(d) == [("steps[0].input", "Unknown step 'ghost' in steps.ghost.")]


def test_references_to_steps_that_cannot_have_run_before():
    d = minimal(
        agent("a", needs=[]),
        agent("b", needs=["a"]),
        agent("c", needs=["a"], input={"from_sibling": "{{ steps.b.output }}"}),
        agent("d", needs=["c"], input={"later": "{{ steps.e.output }}"}),
        agent("e", needs=["d"], input={"ok": "{{ steps.a.output }} {{ steps.c.output }}"}),
    )
    assert errors(d) == [
        (
            "steps[2].input.from_sibling",
            "Step 'b' may not have run before this step: add it to needs (directly or through "
            "a step it needs).",
        ),
        (
            "steps[3].input.later",
            "Step 'e' may not have run before this step: add it to needs (directly or through "
            "a step it needs).",
        ),
    ]


def test_a_step_cannot_reference_its_own_output():
    has(minimal(agent("a", input="{{ steps.a.output }}")), "steps[0].input", "its own output")


def test_steps_expose_only_output():
    d = minimal(agent("a"), agent("b", input="{{ steps.a.result }}"))
    has(d, "steps[1].input", "steps.a has only output")


def test_unknown_names():
    d = minimal(agent("a", input={"q": "{{ query }}"}))
    assert errors(d) == [("steps[0].input.q", "Unknown name 'query': use context, input, steps.")]


@pytest.mark.parametrize(
    ("step", "path", "name"),
    [
        (agent("a", input="{{ item }}"), "steps[0].input", "item"),
        (agent("a", input={"i": "{{ index }}"}), "steps[0].input.i", "index"),
        (agent("a", input="{{ previous }}"), "steps[0].input", "previous"),
        (agent("a", input="{{ iteration }}"), "steps[0].input", "iteration"),
        (
            {"id": "t", "type": "tool", "tool": "calculator", "arguments": {"e": "{{ item }}"}},
            "steps[0].arguments.e",
            "item",
        ),
        (
            {
                "id": "p",
                "type": "parallel",
                "for_each": "{{ input.documents }}",
                "agent": "researcher",
                "input": "{{ previous }}",
            },
            "steps[0].input",
            "previous",
        ),
        (
            {
                "id": "p",
                "type": "parallel",
                "for_each": "{{ item }}",
                "agent": "researcher",
            },
            "steps[0].for_each",
            "item",
        ),
        (
            {
                "id": "p",
                "type": "parallel",
                "branches": [{"name": "x", "agent": "researcher", "input": "{{ index }}"}],
            },
            "steps[0].branches[0].input",
            "index",
        ),
        (
            {
                "id": "l",
                "type": "loop",
                "agent": "summarizer",
                "max_iterations": 2,
                "input": "{{ item }}",
            },
            "steps[0].input",
            "item",
        ),
        (
            {"id": "ap", "type": "approval", "title": "{{ iteration }}"},
            "steps[0].title",
            "iteration",
        ),
    ],
)
def test_step_local_names_outside_the_step_types_that_define_them(step, path, name):
    found = has(minimal(step), path, f"{name!r} exists only in")
    assert len(found) == 1


def test_step_local_names_inside_their_step_types_are_fine():
    d = minimal(
        {
            "id": "p",
            "type": "parallel",
            "for_each": "{{ input.documents }}",
            "agent": "researcher",
            "input": {"doc": "{{ item }}", "i": "{{ index }}"},
        },
        {
            "id": "l",
            "type": "loop",
            "agent": "summarizer",
            "max_iterations": 2,
            "input": "{{ previous | default('') }} #{{ iteration }}",
        },
    )
    assert validate_definition(d, REGISTRY) == []


def test_for_each_must_be_one_expression():
    step = {
        "id": "p",
        "type": "parallel",
        "for_each": "docs: {{ input.documents }}",
        "agent": "researcher",
    }
    has(minimal(step), "steps[0].for_each", "exactly one {{ expression }}")


def test_duplicate_branch_names():
    step = {
        "id": "p",
        "type": "parallel",
        "branches": [
            {"name": "x", "agent": "researcher"},
            {"name": "x", "agent": "webhook"},
        ],
    }
    assert errors(minimal(step)) == [("steps[0].branches[1].name", "Duplicate branch name 'x'.")]


def test_output_template_may_name_any_known_step_but_not_unknown_ones():
    d = minimal(agent("a"), agent("b"))
    d["output"] = {"first": "{{ steps.a.output }}", "last": "{{ steps.b.output }}"}
    assert validate_definition(d, REGISTRY) == []
    d["output"]["bad"] = "{{ steps.zzz.output }}"
    d["output"]["worse"] = "{{ item }}"
    assert errors(d) == [
        ("output.bad", "Unknown step 'zzz' in steps.zzz."),
        ("output.worse", "'item' exists only in a for_each input, not in the output."),
    ]


# --- input schema and example ----------------------------------------------------------------


def test_example_input_must_match_the_input_schema():
    d = minimal(agent("a"))
    d["example_input"] = {"message": "", "documents": ["ok", 3]}
    assert paths(d) == ["example_input.documents[1]", "example_input.message"]


def test_example_input_missing_a_required_property():
    d = minimal(agent("a"))
    d["example_input"] = {}
    assert errors(d) == [("example_input", "'message' is a required property")]


def test_input_schema_must_be_a_valid_json_schema():
    d = minimal(agent("a"))
    d["input_schema"] = {"type": "object", "properties": {"age": {"type": "integr"}}}
    d["example_input"] = "not even checked against a broken schema"
    found = errors(d)
    assert [p for p, _ in found] == ["input_schema.properties.age.type"]


def test_input_schema_with_an_unresolvable_ref():
    d = minimal(agent("a"))
    d["input_schema"] = {"$ref": "https://example.com/remote.json"}
    has(d, "input_schema", "cannot be used")


# --- everything at once ----------------------------------------------------------------------


def test_every_error_is_reported_not_just_the_first():
    d = big_definition()
    d["steps"][0]["agent"] = "billing"  # wrong kind
    d["steps"][1]["agent"] = "ghost"  # unknown
    d["steps"][4]["tool"] = "wipe"  # disabled
    d["steps"][7]["input"]["route"] = "{{ steps.final.output }}"  # not before
    d["steps"][8]["start"] = "summarizer"  # not one of agents
    d["steps"][9]["input"]["round"] = "{{ item }}"  # local name outside
    d["steps"][11]["needs"] = ["approve", "ghost"]  # unknown need
    d["example_input"] = {}
    d["output"]["x"] = "{{ steps.nope.output }}"
    assert paths(d) == [
        "example_input",
        "output.x",
        "steps[0].agent",
        "steps[1].agent",
        "steps[4].tool",
        "steps[7].input.route",
        "steps[8].start",
        "steps[9].input.round",
        "steps[11].needs[1]",
    ]


def test_errors_are_sorted_by_path_with_numeric_indexes():
    steps = [agent(f"s{i}") for i in range(12)]
    steps[2]["agent"] = "ghost"
    steps[10]["agent"] = "ghost"
    assert paths(minimal(*steps)) == ["steps[2].agent", "steps[10].agent"]


def test_definition_error_is_a_frozen_value():
    error = DefinitionError("steps[0].agent", "Unknown agent 'x'.")
    assert error == DefinitionError("steps[0].agent", "Unknown agent 'x'.")
    with pytest.raises(AttributeError):
        error.path = "other"  # type: ignore[misc]


# --- topological order -----------------------------------------------------------------------


def test_topological_order_of_a_pipeline_and_a_diamond():
    assert topological_order(minimal(agent("a"), agent("b"), agent("c"))) == ["a", "b", "c"]
    diamond = minimal(
        agent("join", needs=["left", "right"]),
        agent("right", needs=["top"]),
        agent("left", needs=["top"]),
        agent("top", needs=[]),
    )
    assert topological_order(diamond) == ["top", "right", "left", "join"]
    assert topological_order(parse_definition(diamond)) == ["top", "right", "left", "join"]


def test_topological_order_of_the_big_definition_respects_needs():
    d = big_definition()
    order = topological_order(d)
    assert sorted(order) == sorted(s["id"] for s in d["steps"])
    position = {step_id: i for i, step_id in enumerate(order)}
    for step in parse_definition(d).steps:
        for need in step.needs:
            assert position[need] < position[step.id]


def test_topological_order_refuses_cycles_and_unknown_needs():
    with pytest.raises(ValueError, match="cycle"):
        topological_order(minimal(agent("a", needs=["b"]), agent("b", needs=["a"])))
    with pytest.raises(ValueError, match="unknown step 'ghost'"):
        topological_order(minimal(agent("a", needs=["ghost"])))

"""Conditions for router rules and loop ``until``: every op, missing paths, the schema. No DB."""

import pytest
from jsonschema import Draft202012Validator

from runs.engine.conditions import (
    CONDITION_SCHEMA,
    MISSING,
    OPS,
    ConditionError,
    evaluate,
    json_equal,
    parse_path,
    problems,
    resolve,
)

SCOPE = {
    "input": {
        "category": "billing",
        "message": "Please refund invoice 42",
        "priority": 3,
        "score": 0.75,
        "flag": True,
        "nothing": None,
        "tags": ["vip", "eu"],
        "items": [{"done": False}, {"done": True}],
        "meta": {"source": "email"},
    },
    "output": {"done": True, "count": 1},
}


def c(path, op, value=None):
    return {"path": path, "op": op} | ({} if op in ("exists", "missing") else {"value": value})


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (c("input.category", "eq", "billing"), True),
        (c("input.category", "eq", "technical"), False),
        (c("input.priority", "eq", 3.0), True),
        (c("input.flag", "eq", 1), False),
        (c("output.count", "eq", True), False),
        (c("input.tags", "eq", ["vip", "eu"]), True),
        (c("input.meta", "eq", {"source": "email"}), True),
        (c("input.nothing", "eq", None), True),
        (c("input.category", "ne", "technical"), True),
        (c("input.category", "ne", "billing"), False),
        (c("input.category", "in", ["billing", "sales"]), True),
        (c("input.category", "in", ["sales"]), False),
        (c("input.category", "in", "billing-and-sales"), True),
        (c("input.category", "in", {"billing": 1}), True),
        (c("input.priority", "in", [True, 3]), True),
        (c("input.category", "not_in", ["sales"]), True),
        (c("input.category", "not_in", ["billing"]), False),
        (c("input.tags", "contains", "vip"), True),
        (c("input.tags", "contains", "us"), False),
        (c("input.message", "contains", "refund"), True),
        (c("input.meta", "contains", "source"), True),
        (c("input.priority", "contains", 3), False),
        (c("input.message", "matches", r"(?i)REFUND|charge"), True),
        (c("input.message", "matches", r"^invoice"), False),
        (c("input.message", "matches", r"invoice \d+"), True),
        (c("input.priority", "matches", "3"), False),
        (c("input.priority", "gt", 2), True),
        (c("input.priority", "gt", 3), False),
        (c("input.priority", "gte", 3), True),
        (c("input.score", "lt", 1), True),
        (c("input.score", "lte", 0.75), True),
        (c("input.score", "lte", 0.5), False),
        (c("input.category", "gt", "a"), True),
        (c("input.category", "gt", 1), False),
        (c("input.flag", "gt", 0), False),
        (c("input.nothing", "lt", 1), False),
        (c("input.category", "exists"), True),
        (c("input.nothing", "exists"), True),
        (c("input.nope", "exists"), False),
        (c("input.nope", "missing"), True),
        (c("input.category", "missing"), False),
        (c("input.items[1].done", "eq", True), True),
        (c("input.items[-2].done", "eq", False), True),
        (c("input.items.0.done", "eq", False), True),
        (c("input.items[2].done", "missing"), True),
        (c("input.category.length", "missing"), True),
        (c("output.done", "eq", True), True),
    ],
)
def test_ops(condition, expected):
    assert evaluate(condition, SCOPE) is expected


@pytest.mark.parametrize("op", [op for op in OPS if op != "missing"])
def test_a_missing_path_is_false_for_every_op_but_missing(op):
    value = {"in": [], "not_in": [], "matches": ".*", "contains": "x"}.get(op, 1)
    assert evaluate(c("input.absent.deeper", op, value), SCOPE) is False
    assert evaluate(c("input.absent.deeper", "missing"), SCOPE) is True


def test_a_list_means_all_and_an_empty_list_holds():
    yes = c("input.category", "eq", "billing")
    no = c("input.priority", "gt", 10)
    assert evaluate([yes, yes], SCOPE) is True
    assert evaluate([yes, no], SCOPE) is False
    assert evaluate([], SCOPE) is True


def test_resolve_and_parse_path():
    assert parse_path("a.b[0].c[-1]") == ("a", "b", 0, "c", -1)
    assert resolve("input.meta.source", SCOPE) == "email"
    assert resolve("input.nothing", SCOPE) is None
    assert resolve("input.absent", SCOPE) is MISSING
    assert resolve("input.tags[5]", SCOPE) is MISSING
    assert resolve("input.tags[1]", SCOPE) == "eu"
    assert resolve("input.tags.x", SCOPE) is MISSING


def test_json_equal_distinguishes_booleans_from_numbers():
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal([1, True], [1, 1])
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal("1", 1)


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ({"path": "a", "op": "like", "value": 1}, "Unknown op 'like'"),
        ({"path": "a", "op": "eq"}, "needs a value"),
        ({"path": "a..b", "op": "exists"}, "Malformed path"),
        ({"path": "input.message", "op": "matches", "value": "(("}, "Invalid regular expression"),
        ({"path": "input.message", "op": "matches", "value": 5}, "string value"),
        ("input.category == 'billing'", "is an object"),
        ([{"path": "a", "op": "exists"}, 7], "is an object"),
        ([{"path": "absent", "op": "eq", "value": 1}, {"path": "a", "op": "bad"}], "Unknown op"),
        ({"path": ["a"], "op": "exists"}, "needs a path"),
    ],
)
def test_malformed_conditions_raise(condition, fragment):
    with pytest.raises(ConditionError, match=fragment):
        evaluate(condition, SCOPE)


def _schema_errors(instance):
    validator = Draft202012Validator(CONDITION_SCHEMA)
    return sorted((list(e.absolute_path), e.message) for e in validator.iter_errors(instance))


def test_schema_accepts_valid_conditions():
    Draft202012Validator.check_schema(CONDITION_SCHEMA)
    assert _schema_errors(c("output.done", "eq", True)) == []
    assert _schema_errors([c("a.b[0]", "in", ["x"]), c("a", "exists")]) == []
    assert _schema_errors(c("a", "matches", "^x")) == []
    assert _schema_errors(c("a", "gte", "2024-01-01")) == []


@pytest.mark.parametrize(
    ("instance", "path", "fragment"),
    [
        ({"path": "a", "op": "eq"}, [], "'value' is a required property"),
        ({"path": "a", "op": "like", "value": 1}, ["op"], "is not one of"),
        ({"path": "a b", "op": "exists"}, ["path"], "does not match"),
        ({"path": "a", "op": "in", "value": 3}, ["value"], "is not of type"),
        ({"path": "a", "op": "matches", "value": 3}, ["value"], "is not of type 'string'"),
        ({"path": "a", "op": "gt", "value": [1]}, ["value"], "is not of type"),
        ({"path": "a", "op": "exists", "extra": 1}, [], "Additional properties"),
        ([{"path": "a", "op": "exists"}, {"op": "exists"}], [1], "'path' is a required"),
        ([], [], "should be non-empty"),
        ("a == b", [], "is not of type 'object'"),
    ],
)
def test_schema_rejects_invalid_conditions_with_paths(instance, path, fragment):
    errors = _schema_errors(instance)
    assert any(p == path and fragment in m for p, m in errors), errors


def test_problems_reports_what_the_schema_cannot():
    assert problems(c("input.message", "matches", "ok")) == []
    [(path, message)] = problems(c("input.message", "matches", "(("))
    assert path == ".value"
    assert message.startswith("Invalid regular expression '((': missing )")
    found = problems([c("a", "exists"), c("b", "matches", "[")])
    assert [p for p, _ in found] == ["[1].value"]
    assert problems([{"path": "a..b", "op": "exists"}])[0][0] == "[0].path"
    assert problems([7, "x"]) == []


@pytest.mark.parametrize("op", [*OPS, "bogus"])
def test_router_agents_accept_exactly_the_engines_operators(op):
    # agents may not import the engine: runs hands it the operators through a start-up hook
    from agents.validation import validate_agent_config

    rule = {"when": {"path": "input.category", "op": op, "value": "x"}, "route": "billing"}
    errors = validate_agent_config(kind="router", config={"mode": "rules", "rules": [rule]})
    assert ("config.rules[0].when" in errors) == (op == "bogus"), errors

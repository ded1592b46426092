"""Tenant regular expressions run on RE2: linear time, refused at save when RE2 cannot run them.

Issue 11 item 2: ``(a+)+$`` on 29 ``a`` and a ``!`` held a worker for 53 s under Python's
``re``. Every site where a tenant's pattern runs is covered here: router rules and loop
``until`` (runs.engine.conditions), router agents' rules (agents.validation) and policy CEL
``matches`` (policies.definition).
"""

import pytest

from agents.tools.base import ToolError
from runs.engine.conditions import (
    MAX_MATCH_TEXT,
    MAX_PATTERN_LENGTH,
    MAX_PATTERN_PROGRAM,
    ConditionError,
    evaluate,
    problems,
)
from runs.engine.validation import validate_definition
from runs.execution.executors.routing import resolve_route
from runs.execution.outcomes import StepFailure
from tests.api_mixins import assert_error_shape
from tests.runs.test_definition_validation import REGISTRY, minimal


def matches(pattern, text):
    return evaluate({"path": "input.m", "op": "matches", "value": pattern}, {"input": {"m": text}})


def test_the_catastrophic_pattern_of_the_issue_answers_at_once():
    # Under Python's backtracking ``re`` the first call alone takes about a minute and the
    # second would not finish in a lifetime; RE2 reads each character once.
    assert matches("(a+)+$", "a" * 29 + "!") is False
    assert matches("(a+)+$", "a" * (MAX_MATCH_TEXT - 1) + "!") is False
    assert matches("(a+)+$", "a" * MAX_MATCH_TEXT) is True
    assert matches(r"(\w+\s?)+$", "word " * 10_000 + "!") is False


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"(?i)REFUND|charge", "Please refund invoice 42", True),
        (r"invoice \d+", "Please refund invoice 42", True),
        (r"^invoice", "Please refund invoice 42", False),
        (r"^\p{Lu}", "Élan", True),
        (r"(?s)a.b", "a\nb", True),
        ("", "anything", True),
    ],
)
def test_ordinary_patterns_still_match(pattern, text, expected):
    assert matches(pattern, text) is expected


@pytest.mark.parametrize(
    "pattern",
    [r"(a)\1", r"foo(?=bar)", r"(?!x)y", r"(?<=a)b", r"(?<!a)b", r"(?>a+)b", r"a++"],
)
def test_backtracking_only_features_are_refused_with_what_re2_lacks(pattern):
    [(path, message)] = problems({"path": "input.m", "op": "matches", "value": pattern})
    assert path == ".value"
    assert "feature RE2 does not have" in message
    assert "backreferences" in message and "lookahead" in message
    with pytest.raises(ConditionError, match="RE2"):
        matches(pattern, "aaa")


def test_invalid_patterns_are_refused_as_invalid():
    [(path, message)] = problems({"path": "input.m", "op": "matches", "value": "(("})
    assert path == ".value" and message.startswith("Invalid regular expression '(('")


def test_long_and_complex_patterns_are_refused_with_the_limit():
    long = "a" * (MAX_PATTERN_LENGTH + 1)
    [(_, message)] = problems({"path": "input.m", "op": "matches", "value": long})
    assert f"the limit is {MAX_PATTERN_LENGTH}" in message
    # a{1000}a{1000}... compiles to 4,000 instructions; on 100,000 'a' it fell off RE2's DFA
    # and took 4 s, so the program size is bounded as well as the text.
    [(_, message)] = problems(
        {"path": "input.m", "op": "matches", "value": "a{1000}a{1000}a{1000}a{1000}x"}
    )
    assert "too complex" in message and str(MAX_PATTERN_PROGRAM) in message
    assert problems({"path": "input.m", "op": "matches", "value": "a{900}x"}) == []


def test_text_longer_than_the_limit_is_an_error_naming_it():
    with pytest.raises(ConditionError, match="reads at most 100,000") as caught:
        matches("x", "a" * (MAX_MATCH_TEXT + 1))
    assert "input.m" in str(caught.value)


def test_a_router_rule_on_too_long_text_fails_the_step_clearly_not_as_a_crash():
    rules = [
        {"when": {"path": "input.category", "op": "eq", "value": "x"}, "route": "x"},
        {"when": {"path": "input.m", "op": "matches", "value": "refund"}, "route": "refund"},
    ]
    with pytest.raises(StepFailure) as caught:
        resolve_route(rules, {"input": {"m": "a" * (MAX_MATCH_TEXT + 1)}}, "other")
    assert caught.value.code == "condition_error" and not caught.value.retryable
    assert caught.value.message.startswith("rules[1].when: ")


def test_workflow_validation_reports_unsupported_patterns_with_their_path():
    router = {
        "id": "route",
        "type": "router",
        "rules": [
            {"when": {"path": "input.m", "op": "eq", "value": "x"}, "route": "a"},
            {"when": [{"path": "input.m", "op": "matches", "value": r"(x)\1"}], "route": "b"},
        ],
        "default_route": "a",
        "routes": {"a": [], "b": []},
    }
    loop = {
        "id": "again",
        "type": "loop",
        "agent": "summarizer",
        "max_iterations": 2,
        "until": {"path": "output", "op": "matches", "value": "(?=done)"},
    }
    found = {e.path: e.message for e in validate_definition(minimal(router, loop), REGISTRY)}
    assert "feature RE2 does not have" in found["steps[0].rules[1].when[0].value"]
    assert "feature RE2 does not have" in found["steps[1].until.value"]


def test_router_agents_refuse_unsupported_patterns_at_save(world, api):
    client = api(world.alice, world.acme)
    router = {
        "slug": "router",
        "name": "R",
        "kind": "router",
        "config": {
            "mode": "rules",
            "default_route": "general",
            "rules": [
                {"when": {"path": "input.m", "op": "matches", "value": "(a)\\1"}, "route": "x"}
            ],
        },
    }
    body = assert_error_shape(
        client.post("/api/v1/t/acme/agents/", router, format="json"),
        400,
        attr="config.rules[0].when.value",
    )
    assert any("RE2" in e["detail"] for e in body["errors"]), body
    router["config"]["rules"][0]["when"]["value"] = "(?i)refund"
    assert client.post("/api/v1/t/acme/agents/", router, format="json").status_code == 201


def test_the_calculator_refuses_huge_powers_before_computing_them():
    # Already bounded at the source (MAX_EXPONENT, MAX_RESULT_DIGITS): kept as a guard,
    # since a huge integer power holds the interpreter like a backtracking regex does.
    from agents.tools.builtin.calculator import calculate

    for expression in ("9 ** 9999", "(10 ** 999) * (10 ** 999)", "2 ** 2 ** 2 ** 2 ** 2 ** 2"):
        with pytest.raises(ToolError, match=r"digits|Exponents"):
            calculate(expression)


def test_json_extract_refuses_absurdly_nested_json_text_clearly():
    from agents.tools.builtin.json_extract import json_extract

    with pytest.raises(ToolError, match="nested too deeply"):
        json_extract({"document": "[" * 100_000 + "]" * 100_000, "path": "a"}, None)

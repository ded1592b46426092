"""Regular expressions in policy conditions (CEL ``matches``): linear time, checked at save.

CEL's ``matches`` runs Rust's regex crate, which has no backtracking; these tests pin that
down (a change of CEL library that backtracks would fail here) and check that a literal
pattern CEL cannot run, or one that compiles huge on every evaluation, is refused at save.
"""

import pytest

from policies.decision import decide
from policies.definition import MAX_CEL_PATTERN_PROGRAM, validate_definition
from tests.policies.test_decision import policy_set, tool_call


def test_cel_matches_is_linear_on_the_catastrophic_pattern():
    # Python's re needs about a minute for 29 a's; a backtracking engine would never finish
    # 100,000. The Rust engine answers in about a millisecond.
    ps = policy_set({"id": "r", "effect": "deny", "condition": 'args.s.matches("(a+)+$")'})
    assert decide(tool_call(arguments={"s": "a" * 100_000 + "!"}), ps).effect == "allow"
    assert decide(tool_call(arguments={"s": "a" * 29 + "!"}), ps).effect == "allow"
    assert decide(tool_call(arguments={"s": "aaa"}), ps).effect == "deny"


def _condition_errors(condition):
    definition = {"rules": [{"id": "r", "effect": "deny", "condition": condition}]}
    return [(e.path, e.message) for e in validate_definition(definition)]


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        (r'args.s.matches("(a)\\1")', "backreferences are not supported"),
        ("matches(args.s, r'foo(?=bar)')", "look-around"),
        ("tool == 'x' || args.s.matches('[')", "unclosed character class"),
        ('args.s.matches("a{1000}a{1000}a{1000}")', f"the limit is {MAX_CEL_PATTERN_PROGRAM}"),
        (r'args.s.matches("\\w{1000}")', "size limit"),
    ],
)
def test_literal_patterns_cel_cannot_run_cheaply_are_refused_at_save(condition, fragment):
    [(path, message)] = _condition_errors(condition)
    assert path == "rules[0].condition"
    assert message.startswith("The regular expression ") and fragment in message


@pytest.mark.parametrize(
    "condition",
    [
        "args.s.matches('^REF-[0-9]{6}$')",
        "matches(tool, r'^(refund|charge)')",
        "args.s.matches(args.pattern)",  # computed: linear at run time, checked then
        "args.note == \"x.matches('(')\"",  # text that only looks like a call
    ],
)
def test_patterns_cel_runs_cheaply_are_accepted(condition):
    assert _condition_errors(condition) == []


@pytest.mark.parametrize(
    "condition",
    [
        # the iteration variables shadow condition variables, so only this check stops it;
        # CEL ran a 3,000-item version for 12 s holding the interpreter
        "args.l.all(tool, args.l.all(model, tool == model))",
        "args.l.exists(x, x > 1)",
        "args.l.filter(x, x > 1).size() > 0",
    ],
)
def test_comprehensions_are_refused_at_save(condition):
    [(path, message)] = _condition_errors(condition)
    assert path == "rules[0].condition" and "is not allowed in a policy condition" in message


def test_membership_and_fields_named_like_macros_are_fine():
    assert _condition_errors("'payments' in tool_tags && args.map == 'x'") == []

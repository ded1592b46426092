"""The decision point: every effect, matcher and condition, deny overrides, log-only mode,
priorities, fail-closed conditions, the index, and definition validation. Pure: no database."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.decision import PolicyRequest, PolicySet, decide
from policies.definition import DEFAULT_DEFINITION, compile_rules, validate_definition


def policy_set(*rules, log_only=()):
    compiled = compile_rules({"rules": list(rules)}, policy_slug="p", policy_id=1)
    compiled += compile_rules({"rules": list(log_only)}, policy_slug="shadow", log_only=True)
    return PolicySet.build(revision=1, rules=compiled)


def tool_call(tool="refund", **fields):
    base = {
        "tenant_id": 1,
        "action": "call_tool",
        "agent": "billing",
        "agent_tags": ("support",),
        "tool": tool,
        "tool_tags": ("payments",),
        "risk": "write",
        "arguments": {"amount": 150},
    }
    return PolicyRequest(**{**base, **fields})


def test_no_rule_allows_with_a_reason():
    decision = decide(tool_call(), policy_set())
    assert decision.effect == "allow"
    assert decision.rule is None
    assert "no rule matched" in decision.reason
    assert len(decision.inputs_hash) == 64


@pytest.mark.parametrize("effect", ["allow", "deny", "require_approval"])
def test_each_effect_is_returned_with_its_rule(effect):
    decision = decide(tool_call(), policy_set({"id": "r", "effect": effect, "tools": ["refund"]}))
    assert (decision.effect, decision.rule) == (effect, "r")
    assert "rule 'r' of policy 'p'" in decision.reason


@pytest.mark.parametrize(
    ("matcher", "request_fields", "matches"),
    [
        ({"tools": ["refund"]}, {}, True),
        ({"tools": ["other"]}, {}, False),
        ({"tools": ["tag:payments"]}, {}, True),
        ({"tools": ["tag:nope"]}, {}, False),
        ({"tools": ["risk:write"]}, {}, True),
        ({"tools": ["risk:destructive"]}, {}, False),
        ({"tools": ["other", "risk:write"]}, {}, True),  # entries are alternatives
        ({"agents": ["billing"]}, {}, True),
        ({"agents": ["tag:support"]}, {}, True),
        ({"agents": ["tag:sales"]}, {}, False),
        ({"models": ["gpt-x"]}, {"action": "call_model", "model": "gpt-x", "tool": None}, True),
        ({"models": ["gpt-x"]}, {"action": "call_model", "model": "gpt-y", "tool": None}, False),
        ({"actions": ["call_model"]}, {}, False),
        ({"actions": ["call_tool", "delegate"]}, {}, True),
        ({"tools": ["refund"], "agents": ["other"]}, {}, False),  # all matchers must hold
        ({"tools": ["refund"]}, {"action": "invoke_agent", "tool": None}, False),
    ],
)
def test_matchers(matcher, request_fields, matches):
    ps = policy_set({"id": "r", "effect": "deny", **matcher})
    decision = decide(tool_call(**request_fields), ps)
    assert (decision.effect == "deny") is matches


def test_deny_overrides_a_higher_priority_allow():
    ps = policy_set(
        {"id": "allow-all", "effect": "allow", "priority": 1000},
        {"id": "no-refunds", "effect": "deny", "tools": ["refund"], "priority": -1000},
    )
    decision = decide(tool_call(), ps)
    assert (decision.effect, decision.rule) == ("deny", "no-refunds")


def test_higher_priority_allow_exempts_from_approval_and_ties_go_to_approval():
    approval = {"id": "ask", "effect": "require_approval", "tools": ["refund"], "priority": 0}
    exempt = {"id": "vip", "effect": "allow", "condition": "input.vip", "priority": 10}
    tie = {"id": "tie", "effect": "allow", "tools": ["refund"], "priority": 0}
    assert decide(tool_call(run_input={"vip": True}), policy_set(approval, exempt)).rule == "vip"
    assert decide(tool_call(run_input={"vip": False}), policy_set(approval, exempt)).rule == "ask"
    assert decide(tool_call(), policy_set(tie, approval)).effect == "require_approval"


@pytest.mark.parametrize(
    ("condition", "request_fields", "applies"),
    [
        ("args.amount > 100", {}, True),
        ("args.amount > 100", {"arguments": {"amount": 100}}, False),
        ("args.amount > 100.5", {"arguments": {"amount": 101}}, True),
        ("input.customer == 'dana'", {"run_input": {"customer": "dana"}}, True),
        ("spend.cost_usd >= 2.0", {"spend": {"cost_usd": 2.5}}, True),
        ("spend.cost_usd >= 2.0", {"spend": {"cost_usd": 1.0}}, False),
        ("spend.steps > 3", {}, False),  # missing spend keys default to 0
        ("'support' in agent_tags && risk == 'write'", {}, True),
        ("tool.startsWith('ref')", {}, True),
        ("has(args.amount) && args.amount > 1000", {}, False),
    ],
)
def test_conditions(condition, request_fields, applies):
    ps = policy_set({"id": "r", "effect": "deny", "condition": condition})
    assert (decide(tool_call(**request_fields), ps).effect == "deny") is applies


def test_time_conditions_use_the_time_of_the_call():
    ps = policy_set({"id": "office", "effect": "deny", "condition": "hour >= 18 || weekday >= 5"})
    evening = dt.datetime(2026, 11, 18, 19, 0, tzinfo=dt.UTC)  # a Wednesday
    morning = dt.datetime(2026, 11, 18, 9, 0, tzinfo=dt.UTC)
    saturday = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
    assert decide(tool_call(), ps, now=evening).effect == "deny"
    assert decide(tool_call(), ps, now=morning).effect == "allow"
    assert decide(tool_call(), ps, now=saturday).effect == "deny"


def test_a_condition_that_cannot_be_evaluated_fails_closed():
    deny = policy_set({"id": "d", "effect": "deny", "condition": "args.limit > 5"})
    decision = decide(tool_call(), deny)  # no "limit" argument
    assert decision.effect == "deny"
    assert "could not be evaluated" in decision.reason
    allow = policy_set(
        {"id": "a", "effect": "allow", "condition": "args.limit > 5", "priority": 5},
        {"id": "ask", "effect": "require_approval"},
    )
    assert decide(tool_call(), allow).rule == "ask"  # the broken allow does not apply


def test_log_only_rules_are_recorded_but_never_enforced():
    ps = policy_set(log_only=[{"id": "would-deny", "effect": "deny", "tools": ["refund"]}])
    decision = decide(tool_call(), ps)
    assert decision.effect == "allow"
    assert (decision.would_effect, decision.would_rule) == ("deny", "would-deny")
    assert decision.would_policy_slug == "shadow"
    assert decision.would_reason == "denied by rule 'would-deny' of policy 'shadow'"
    enforced = policy_set(
        {"id": "ask", "effect": "require_approval"},
        log_only=[{"id": "shadow", "effect": "allow"}],
    )
    decision = decide(tool_call(), enforced)
    assert (decision.effect, decision.would_effect) == ("require_approval", "allow")


def test_default_policy_asks_for_agents_destructive_calls_only():
    ps = PolicySet.build(1, compile_rules(DEFAULT_DEFINITION, policy_slug="default"))
    assert decide(tool_call(risk="destructive"), ps).effect == "require_approval"
    assert decide(tool_call(risk="destructive", agent=None), ps).effect == "allow"
    assert decide(tool_call(risk="write"), ps).effect == "allow"


def test_the_digest_identifies_the_call_not_its_spend():
    assert tool_call().digest() == tool_call(spend={"cost_usd": 3}).digest()
    assert tool_call().digest() != tool_call(arguments={"amount": 151}).digest()


def test_the_index_finds_the_right_rule_among_thousands():
    rules = [
        {"id": f"t{i}", "effect": "deny", "tools": [f"tool-{i}"], "condition": "args.amount > 1"}
        for i in range(1000)
    ]
    rules.append({"id": "agent-rule", "effect": "require_approval", "agents": ["billing"]})
    ps = policy_set(*rules)
    assert decide(tool_call(tool="tool-777"), ps).rule == "t777"
    assert decide(tool_call(tool="tool-777", arguments={"amount": 1}), ps).rule == "agent-rule"
    assert decide(tool_call(tool="other", agent="x", agent_tags=()), ps).effect == "allow"


def test_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown policy action"):
        decide(tool_call(action="launch"), policy_set())


@pytest.mark.parametrize(
    ("definition", "path", "fragment"),
    [
        ([], "", "JSON object"),
        ({"rules": [{"id": "a"}]}, "rules[0]", "'effect' is a required property"),
        ({"rules": [{"id": "a", "effect": "maybe"}]}, "rules[0].effect", "is not one of"),
        (
            {"rules": [{"id": "a", "effect": "deny", "condition": "args.x >"}]},
            "rules[0].condition",
            "Syntax error",
        ),
        (
            {"rules": [{"id": "a", "effect": "deny", "condition": "amount > 1"}]},
            "rules[0].condition",
            "Unknown variable amount",
        ),
        (
            {"rules": [{"id": "a", "effect": "deny"}, {"id": "a", "effect": "allow"}]},
            "rules[1].id",
            "already used",
        ),
        (
            {"rules": [{"id": "a", "effect": "deny", "tools": ["risk:huge"]}]},
            "rules[0].tools[0]",
            "Unknown risk",
        ),
        (
            {"rules": [{"id": "a", "effect": "deny", "approvers": {"role": "admin"}}]},
            "rules[0].approvers",
            "Only a require_approval",
        ),
        (
            {"rate_limits": [{"id": "x", "scope": "tool", "limit": 1, "per_seconds": 1}]},
            "rate_limits[0].target",
            "Name the agent or tool",
        ),
        ({"budgets": {"run": {"cost_usd": -1}}}, "budgets.run.cost_usd", "minimum"),
        ({"rules": [], "surprise": 1}, "", "Additional properties"),
    ],
)
def test_validation_names_the_path_and_what_to_fix(definition, path, fragment):
    errors = validate_definition(definition)
    assert any(e.path == path and fragment in e.message for e in errors), errors


def test_a_valid_definition_has_no_errors():
    assert validate_definition(DEFAULT_DEFINITION) == []
    assert validate_definition({}) == []

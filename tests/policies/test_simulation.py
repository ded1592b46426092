"""Simulation of a draft against recorded decisions, checked against hand-computed outcomes;
versions, activation, rollback, mode and the compiled-set cache following the revision."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from controlplane import context
from controlplane.tenancy.models import Tenant
from controlplane.tenancy.services import tenant_create
from policies import services
from policies.decision import PolicyRequest, decide, policy_set_for
from policies.models import Policy, PolicyDecision
from policies.simulation import simulate_version


def _record(tenant, tool, amount, effect="allow", at=None, agent="billing"):
    row = PolicyDecision.objects.for_tenant(tenant).create(
        tenant=tenant,
        action="call_tool",
        agent=agent,
        tool=tool,
        effect=effect,
        reason="recorded",
        inputs_hash="x" * 64,
        inputs={
            "action": "call_tool",
            "agent": agent,
            "agent_tags": ["support"],
            "tool": tool,
            "tool_tags": [],
            "risk": "write",
            "arguments": {"amount": amount},
            "run_input": {},
            "spend": {},
        },
    )
    if at is not None:
        PolicyDecision.objects.for_tenant(tenant).filter(pk=row.pk).update(created_at=at)
    return row


@pytest.fixture
def acme(world):
    with context.system_context("tests", tenant=world.acme):
        yield world.acme


def _create(tenant, definition, **kwargs):
    return services.policy_create(
        tenant=tenant, slug=kwargs.pop("slug", "p"), name="P", definition=definition, **kwargs
    )


REFUNDS = {
    "rules": [
        {
            "id": "big-refunds",
            "effect": "require_approval",
            "tools": ["refund"],
            "condition": "args.amount > 100",
        }
    ]
}


def test_a_draft_changes_exactly_the_decisions_it_should(acme):
    rows = [
        _record(acme, "refund", 50),
        _record(acme, "refund", 150),
        _record(acme, "refund", 101),
        _record(acme, "refund", 100),
        _record(acme, "lookup", 500),
    ]
    policy = _create(acme, {"rules": []}, activate=True)
    draft = services.policy_save_version(policy=policy, definition=REFUNDS, note="refunds")
    result = simulate_version(policy=policy, version=draft)
    assert result.replayed == 5
    assert result.changed == 2
    assert result.transitions == {"allow->allow": 3, "allow->require_approval": 2}
    changed = {c["decision"] for c in result.changes}
    assert changed == {rows[1].pk, rows[2].pk}
    assert {c["rule"] for c in result.changes} == {"big-refunds"}
    # the draft is not applied by simulating it
    policy.refresh_from_db()
    assert policy.active_version.number == 1


def test_other_policies_still_apply_and_deny_wins_in_the_preview(acme):
    _create(
        acme, {"rules": [{"id": "no-lookups", "effect": "deny", "tools": ["lookup"]}]}, slug="other"
    )
    _record(acme, "lookup", 500, effect="deny")
    _record(acme, "refund", 500)
    policy = _create(acme, {"rules": []})
    draft = services.policy_save_version(
        policy=policy,
        definition={
            "rules": [{"id": "allow-all", "effect": "allow", "priority": 1000}, *REFUNDS["rules"]]
        },
    )
    result = simulate_version(policy=policy, version=draft)
    # lookup stays denied (deny overrides); the refund is allowed by the higher priority allow
    assert result.transitions == {"allow->allow": 1, "deny->deny": 1}


def test_replay_uses_the_recorded_time_and_the_limit(acme):
    night = dt.datetime(2026, 11, 18, 23, 0, tzinfo=dt.UTC)
    noon = dt.datetime(2026, 11, 18, 12, 0, tzinfo=dt.UTC)
    _record(acme, "refund", 1, at=night)
    _record(acme, "refund", 1, at=noon)
    _record(acme, "refund", 1, at=noon)
    policy = _create(acme, {"rules": []})
    draft = services.policy_save_version(
        policy=policy,
        definition={"rules": [{"id": "nights", "effect": "deny", "condition": "hour >= 22"}]},
    )
    full = simulate_version(policy=policy, version=draft)
    assert full.transitions == {"allow->allow": 2, "allow->deny": 1}
    newest_two = simulate_version(policy=policy, version=draft, limit=2)
    assert newest_two.replayed == 2
    assert newest_two.changed == 0  # the night decision is the oldest


def test_a_log_only_policy_previews_as_enforced_when_asked(acme):
    _record(acme, "refund", 500)
    policy = _create(acme, REFUNDS, mode="log_only")
    version = policy.active_version
    as_is = simulate_version(policy=policy, version=version)
    assert as_is.changed == 0  # log-only never changes an outcome
    enforced = simulate_version(policy=policy, version=version, mode="enforce")
    assert enforced.transitions == {"allow->require_approval": 1}


def test_versions_activation_rollback_mode_and_the_cache(acme):
    policy = _create(acme, REFUNDS)
    request = PolicyRequest(
        tenant_id=acme.pk, action="call_tool", tool="refund", arguments={"amount": 500}
    )

    def effect():
        tenant = Tenant.objects.get(pk=acme.pk)
        return decide(request, policy_set_for(tenant)).effect

    assert effect() == "require_approval"
    draft = services.policy_save_version(
        policy=policy, definition={"rules": [{"id": "stop", "effect": "deny", "tools": ["refund"]}]}
    )
    assert effect() == "require_approval"  # a draft is not applied
    services.policy_activate(policy=policy, version=draft)
    assert effect() == "deny"
    services.policy_set_mode(policy=policy, mode="log_only")
    assert effect() == "allow"
    services.policy_set_mode(policy=policy, mode="enforce")
    first = policy.active_version.__class__.objects.get(policy=policy, number=1)
    services.policy_activate(policy=policy, version=first)  # roll back
    assert effect() == "require_approval"
    with pytest.raises(ValidationError, match="already active"):
        services.policy_activate(policy=policy, version=first)
    diff = services.policy_version_diff(first, draft)
    assert {c["path"] for c in diff} == {"rules.big-refunds", "rules.stop"}
    services.policy_delete(policy=Policy.objects.for_tenant(acme).get(pk=policy.pk))
    assert effect() == "allow"


def test_invalid_definitions_are_refused_with_their_paths(acme):
    with pytest.raises(ValidationError) as info:
        _create(acme, {"rules": [{"id": "a", "effect": "deny", "condition": "nope > 1"}]})
    assert "definition.rules[0].condition" in info.value.message_dict
    assert not Policy.objects.for_tenant(acme).exists()


def test_new_tenants_start_with_the_default_policy(db):
    with context.system_context("tests"):
        tenant = tenant_create(slug="initech", name="Initech")
    policy = Policy.objects.for_tenant(tenant).get()
    assert policy.is_default and policy.active_version.number == 1
    destructive = PolicyRequest(
        tenant_id=tenant.pk, action="call_tool", agent="a", tool="wipe", risk="destructive"
    )
    tenant.refresh_from_db()
    assert decide(destructive, policy_set_for(tenant)).effect == "require_approval"

"""Simulation: replaying recorded decisions under a draft version, to see what it would change
before it is activated."""

from __future__ import annotations

import dataclasses
from typing import Any

from policies.choices import PolicyMode
from policies.decision import PolicyRequest, PolicySet, decide, load_policy_set
from policies.definition import compile_rules
from policies.models import Policy, PolicyDecision, PolicyVersion


@dataclasses.dataclass
class SimulationResult:
    """How a draft would change recorded decisions: counts by (before, after) and the changes."""

    version: int
    replayed: int
    changed: int
    transitions: dict[str, int]
    changes: list[dict[str, Any]]


def simulate_version(
    *, policy: Policy, version: PolicyVersion, limit: int = 500, mode: str | None = None
) -> SimulationResult:
    """Replay the inputs of the tenant's last ``limit`` decisions under the applied policies
    (before) and under the same set with ``version`` applied to ``policy`` (after).

    ``mode`` is the mode the draft would have (default: the policy's current mode), so a
    log-only policy previews what it would do once enforced with ``mode="enforce"``.
    Each replay uses the recorded time, so time conditions see the moment of the call.
    """
    limit = max(1, min(int(limit), 5000))
    tenant_id = policy.tenant_id
    before_set = load_policy_set(tenant_id, revision=-1)
    log_only = (mode or policy.mode) == PolicyMode.LOG_ONLY
    others = [
        r
        for index in (before_set.enforced, before_set.log_only)
        for r in _all_rules(index)
        if r.policy_id != policy.pk
    ]
    candidate = compile_rules(
        version.definition,
        policy_id=policy.pk,
        policy_slug=policy.slug,
        version_id=version.pk,
        log_only=log_only,
    )
    after_set = PolicySet.build(revision=-1, rules=others + candidate)
    rows = list(PolicyDecision.objects.for_tenant(tenant_id).order_by("-id")[:limit])
    transitions: dict[str, int] = {}
    changes = []
    for row in rows:
        request = PolicyRequest.from_recorded(tenant_id, row.inputs, run_id=row.run_id)
        before = decide(request, before_set, now=row.created_at)
        after = decide(request, after_set, now=row.created_at)
        key = f"{before.effect}->{after.effect}"
        transitions[key] = transitions.get(key, 0) + 1
        if before.effect != after.effect:
            changes.append(
                {
                    "decision": row.pk,
                    "run": row.run_id,
                    "step": row.step_key,
                    "action": row.action,
                    "agent": row.agent,
                    "tool": row.tool,
                    "model": row.model,
                    "arguments": row.inputs.get("arguments"),
                    "recorded": row.effect,
                    "before": before.effect,
                    "after": after.effect,
                    "rule": after.rule or before.rule,
                    "reason": after.reason,
                    "at": row.created_at.isoformat(),
                }
            )
    return SimulationResult(
        version=version.number,
        replayed=len(rows),
        changed=len(changes),
        transitions=dict(sorted(transitions.items())),
        changes=changes,
    )


def _all_rules(index_by_action: dict[str, Any]) -> list[Any]:
    seen: dict[tuple, Any] = {}
    for index in index_by_action.values():
        for items in index.buckets.values():
            for order, rule in items:
                seen.setdefault((rule.policy_id, rule.id), (order, rule))
    return [rule for _, rule in sorted(seen.values(), key=lambda e: e[0][3])]

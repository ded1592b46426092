"""Storing the decision point's answers: one row per decision with the inputs it saw;
refusals (and log-only would-refuse answers) are audited."""

from __future__ import annotations

from typing import Any

from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.payloads import clip
from policies.choices import Effect
from policies.models import PolicyDecision


def record_decision(
    *, tenant: Any, run_id: int | None, step_key: str, request: Any, decision: Any
) -> PolicyDecision:
    """Store one decision with its inputs; a refusal (or a log-only would-refuse) is audited."""
    row = decision_row(
        tenant=tenant, run_id=run_id, step_key=step_key, request=request, decision=decision
    )
    row.save(force_insert=True)
    if is_audited(decision):
        audit_decision(row, tenant=tenant, request=request, decision=decision)
    return row


def is_audited(decision: Any) -> bool:
    """A refusal, an approval asked for, or a log-only would-refuse goes to the audit log."""
    return decision.effect != Effect.ALLOW or decision.would_effect in (
        Effect.DENY,
        Effect.REQUIRE_APPROVAL,
    )


def decision_row(
    *, tenant: Any, run_id: int | None, step_key: str, request: Any, decision: Any
) -> PolicyDecision:
    """The decision's row, not saved yet (the engine writes it in one statement with the
    decision's run event)."""
    return PolicyDecision(
        tenant_id=tenant.pk,
        run_id=run_id,
        step_key=step_key[:100],
        action=request.action,
        agent=(request.agent or "")[:50],
        tool=(request.tool or "")[:50],
        model=(request.model or "")[:200],
        effect=decision.effect,
        would_effect=decision.would_effect,
        would_policy_id=decision.would_policy_id,
        would_rule=(decision.would_rule or "")[:100],
        would_reason=decision.would_reason[:500],
        policy_id=decision.policy_id,
        policy_version_id=decision.version_id,
        rule=(decision.rule or "")[:100],
        reason=decision.reason[:500],
        inputs_hash=decision.inputs_hash,
        inputs=clip(request.recorded()),
    )


def audit_decision(row: PolicyDecision, *, tenant: Any, request: Any, decision: Any) -> None:
    """The audit entry of a stored decision (see ``is_audited``)."""
    run_id, step_key = row.run_id, row.step_key
    with context.tenant_context(tenant):
        audit_record(
            action=f"policy.{decision.effect}",
            target=row,
            target_name=f"{request.action} {request.tool or request.agent or request.model}",
            tenant=tenant,
            after={
                "effect": decision.effect,
                "would_effect": decision.would_effect,
                "would_policy": decision.would_policy_slug,
                "would_rule": decision.would_rule,
                "rule": decision.rule,
                "policy": decision.policy_slug,
                "reason": decision.reason,
                "run": run_id,
                "step": step_key,
                "inputs_hash": decision.inputs_hash,
            },
        )

"""What the dashboard shows of approval requests and policies.

Approvals: one card each, with the quorum's progress, the votes so far, the policy and
rule that asked and the call's arguments, and the decision forms where the member may
decide (the inbox, a request's page and its run's page share it). Policies: the rules of
a definition as table rows, and a simulation's transitions.
"""

from __future__ import annotations

from typing import Any

from controlplane.dashboard.display import pretty_json as pretty
from policies.forms import ApprovalDecisionForm, response_form
from policies.models import Policy
from policies.selectors import pending_for
from runs.approvals.choices import ApprovalKind, ApprovalStatus
from runs.approvals.models import ApprovalRequest, ApprovalVote

CALL_FIELDS = ("action", "agent", "tool", "model", "arguments", "reason", "rule", "policy")


def approval_cards(
    approvals: list[ApprovalRequest],
    access: Any,
    *,
    next_url: str = "",
    forms: dict[int, tuple[Any, Any]] | None = None,
) -> list[dict[str, Any]]:
    """What the approval partial shows of each request, with decision forms where allowed."""
    ids = [a.pk for a in approvals]
    votes: dict[int, list[ApprovalVote]] = {}
    if ids:
        for vote in (
            ApprovalVote.objects.filter(approval_id__in=ids).select_related("user").order_by("id")
        ):
            votes.setdefault(vote.approval_id, []).append(vote)
    policy_ids = {a.policy_id for a in approvals if a.policy_id}
    policies = Policy.objects.in_bulk(policy_ids) if policy_ids else {}
    # who may decide, in one query for every card (the rule of services.can_decide)
    pending_ids = [a.pk for a in approvals if a.status == ApprovalStatus.PENDING]
    decidable = (
        set(pending_for(access).filter(pk__in=pending_ids).values_list("pk", flat=True))
        if pending_ids
        else set()
    )
    user_id = getattr(access.user, "pk", None)
    cards = []
    for approval in approvals:
        if approval.policy_id in policies:
            approval.policy = policies[approval.policy_id]  # no query per card
        mine = votes.get(approval.pk, [])
        pending = approval.status == ApprovalStatus.PENDING
        voted = any(v.user_id == user_id for v in mine)
        can_decide = pending and not voted and approval.pk in decidable
        form, answer = (forms or {}).get(approval.pk, (None, None))
        details = approval.details or {}
        is_policy = approval.kind == ApprovalKind.POLICY and "action" in details
        cards.append(
            {
                "approval": approval,
                "pending": pending,
                "can_decide": can_decide,
                "voted": voted and pending,
                "form": (form or ApprovalDecisionForm(approval=approval)) if can_decide else None,
                "response_form": (answer or response_form(approval)) if can_decide else None,
                "details": pretty(details) if details and not is_policy else "",
                "call": _call(details) if is_policy else None,
                "policy": policies.get(approval.policy_id),
                "policy_slug": details.get("policy", "") if is_policy else "",
                "votes": mine,
                "approvals": sum(1 for v in mine if v.approve),
                "quorum": approval.required_approvals,
                "response": pretty(approval.response) if approval.response is not None else "",
                "next_url": next_url,
            }
        )
    return cards


def _call(details: dict[str, Any]) -> dict[str, Any]:
    """The call a policy stopped: what, by whom, with which arguments, and why."""
    call = {key: details.get(key) for key in CALL_FIELDS}
    call["arguments_json"] = pretty(details.get("arguments") or {})
    call["target"] = details.get("tool") or details.get("model") or details.get("agent") or ""
    return call


def rule_rows(definition: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The rules of a definition as the rules table shows them (empty matchers: "any")."""
    rows = []
    for rule in (definition or {}).get("rules") or []:
        rows.append(
            {
                "id": rule.get("id", ""),
                "description": rule.get("description", ""),
                "effect": rule.get("effect", ""),
                "actions": rule.get("actions") or [],
                "agents": rule.get("agents") or [],
                "tools": rule.get("tools") or [],
                "models": rule.get("models") or [],
                "condition": (rule.get("condition") or "").strip(),
                "priority": int(rule.get("priority") or 0),
                "approvers": rule.get("approvers") or {},
            }
        )
    return rows


def transition_rows(transitions: dict[str, int]) -> list[dict[str, Any]]:
    """``{"allow->deny": 3}`` as rows: changed transitions first, then by count."""
    rows = []
    for key, count in transitions.items():
        before, _, after = key.partition("->")
        rows.append({"before": before, "after": after, "count": count, "changed": before != after})
    return sorted(rows, key=lambda r: (not r["changed"], -r["count"], r["before"], r["after"]))


_TOP_KEYS = ("rules", "rate_limits", "budgets")
_RULE_KEYS = (
    "id",
    "description",
    "effect",
    "actions",
    "agents",
    "tools",
    "models",
    "condition",
    "priority",
    "approvers",
)
_APPROVER_KEYS = ("role", "quorum", "expires_after_minutes", "on_expiry")
_LIMIT_KEYS = ("id", "scope", "target", "limit", "per_seconds", "burst")


def _ordered(value: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(value, dict):
        return value
    known = {k: value[k] for k in keys if k in value}
    return {**known, **{k: v for k, v in value.items() if k not in known}}


def ordered_definition(definition: Any) -> Any:
    """The definition with its keys in the order people write them (the database keeps
    JSON objects in its own order): rules first, each rule's id, effect, matchers ..."""
    if not isinstance(definition, dict):
        return definition
    out = _ordered(definition, _TOP_KEYS)
    if isinstance(out.get("rules"), list):
        out["rules"] = [_ordered(rule, _RULE_KEYS) for rule in out["rules"]]
        for rule in out["rules"]:
            if isinstance(rule, dict) and isinstance(rule.get("approvers"), dict):
                rule["approvers"] = _ordered(rule["approvers"], _APPROVER_KEYS)
    if isinstance(out.get("rate_limits"), list):
        out["rate_limits"] = [_ordered(limit, _LIMIT_KEYS) for limit in out["rate_limits"]]
    return out

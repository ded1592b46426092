"""What the dashboard shows of approval requests: one card each, with the quorum's progress,
the votes so far, the policy and rule that asked and the call's arguments, and the decision
forms where the member may decide (the inbox, a request's page and its run's page share it)."""

from __future__ import annotations

from typing import Any

from controlplane.dashboard.display import pretty_json as pretty
from policies.models import Policy
from runs.approvals.choices import ApprovalKind, ApprovalStatus
from runs.approvals.forms import ApprovalDecisionForm, response_form
from runs.approvals.models import ApprovalRequest, ApprovalVote
from runs.approvals.selectors import pending_for

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

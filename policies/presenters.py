"""What the dashboard shows of approval requests: one card each, with the decision forms
where the member may decide (the inbox, a request's page and its run's page share it)."""

from __future__ import annotations

from typing import Any

from controlplane.dashboard.pages import pretty
from policies import services
from policies.choices import ApprovalStatus
from policies.forms import ApprovalDecisionForm, response_form
from policies.models import ApprovalRequest


def approval_cards(
    approvals: list[ApprovalRequest],
    access: Any,
    *,
    next_url: str = "",
    forms: dict[int, tuple[Any, Any]] | None = None,
) -> list[dict[str, Any]]:
    """What the approval partial shows of each request, with decision forms where allowed."""
    cards = []
    for approval in approvals:
        pending = approval.status == ApprovalStatus.PENDING
        can_decide = pending and services.can_decide(access=access, approval=approval)
        form, answer = (forms or {}).get(approval.pk, (None, None))
        cards.append(
            {
                "approval": approval,
                "pending": pending,
                "can_decide": can_decide,
                "form": (form or ApprovalDecisionForm(approval=approval)) if can_decide else None,
                "response_form": (answer or response_form(approval)) if can_decide else None,
                "details": pretty(approval.details) if approval.details else "",
                "response": pretty(approval.response) if approval.response is not None else "",
                "next_url": next_url,
            }
        )
    return cards

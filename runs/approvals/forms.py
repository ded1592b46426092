"""Dashboard forms of approvals: the decision, and a human agent's answer from its schema."""

from __future__ import annotations

from typing import Any

from django import forms

from controlplane.dashboard.forms import DashboardForm
from runs.approvals.choices import ApprovalKind
from runs.approvals.models import ApprovalRequest
from runs.forms import SchemaForm


def decision_prefix(approval: ApprovalRequest) -> str:
    """Field names are unique per request, so one page can hold several requests' forms."""
    return f"approval-{approval.pk}"


class ApprovalDecisionForm(DashboardForm):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    comment = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept with the decision and in the audit log.",
    )

    def __init__(self, *args: Any, approval: ApprovalRequest, **kwargs: Any):
        super().__init__(*args, prefix=decision_prefix(approval), **kwargs)


def response_form(approval: ApprovalRequest, data: Any = None) -> SchemaForm | None:
    """A human agent's answer (kind "input"), from its response schema; None for others."""
    if approval.kind != ApprovalKind.INPUT:
        return None
    return SchemaForm(
        data,
        schema=approval.response_schema or {},
        root="response",
        json_label="Answer",
        prefix=f"{decision_prefix(approval)}-response",
    )

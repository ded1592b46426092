"""Filters of the approvals list, shared by the API and the dashboard."""

import django_filters

from runs.approvals.choices import ApprovalKind, ApprovalStatus
from runs.approvals.models import ApprovalRequest


class ApprovalFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ApprovalStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ApprovalKind.choices)
    run = django_filters.NumberFilter(field_name="run_id")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "kind"]

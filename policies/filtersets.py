import django_filters

from policies.choices import ApprovalKind, ApprovalStatus
from policies.models import ApprovalRequest


class ApprovalFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ApprovalStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ApprovalKind.choices)
    run = django_filters.NumberFilter(field_name="run_id")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "kind"]

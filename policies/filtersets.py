import django_filters
from django.db.models import Q

from policies.choices import ApprovalKind, ApprovalStatus, Effect, PolicyMode
from policies.definition import ACTIONS
from policies.models import ApprovalRequest, Policy, PolicyDecision


class ApprovalFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ApprovalStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ApprovalKind.choices)
    run = django_filters.NumberFilter(field_name="run_id")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "kind"]


class PolicyListFilterSet(django_filters.FilterSet):
    mode = django_filters.ChoiceFilter(choices=PolicyMode.choices)
    q = django_filters.CharFilter(method="search", label="Search name, slug and description")

    class Meta:
        model = Policy
        fields = ["mode"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(slug__icontains=value) | Q(description__icontains=value)
        )


class DecisionFilterSet(django_filters.FilterSet):
    effect = django_filters.ChoiceFilter(choices=Effect.choices)
    action = django_filters.ChoiceFilter(choices=[(a, a) for a in ACTIONS])
    tool = django_filters.CharFilter(label="Tool slug")
    agent = django_filters.CharFilter(label="Agent slug")
    policy = django_filters.CharFilter(field_name="policy__slug", label="Policy slug")
    run = django_filters.NumberFilter(field_name="run_id", label="Run")

    class Meta:
        model = PolicyDecision
        fields = ["effect", "action", "tool"]

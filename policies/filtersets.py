"""Filters of the policies and decisions lists, shared by the API and the dashboard."""

import django_filters
from django.db.models import Q

from policies.choices import Effect, PolicyMode
from policies.definition import ACTIONS
from policies.models import Policy, PolicyDecision


class PolicyFilterSet(django_filters.FilterSet):
    mode = django_filters.ChoiceFilter(choices=PolicyMode.choices)
    q = django_filters.CharFilter(method="search", label="Search name, slug and description")

    class Meta:
        model = Policy
        fields = ["mode"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(slug__icontains=value) | Q(description__icontains=value)
        )


class PolicyDecisionFilterSet(django_filters.FilterSet):
    run = django_filters.NumberFilter(field_name="run_id")
    effect = django_filters.ChoiceFilter(choices=Effect.choices)
    action = django_filters.ChoiceFilter(choices=[(a, a) for a in ACTIONS])
    agent = django_filters.CharFilter(label="Agent slug")
    tool = django_filters.CharFilter(label="Tool slug")
    policy = django_filters.CharFilter(field_name="policy__slug", label="Policy slug")
    rule = django_filters.CharFilter(label="Rule id")

    class Meta:
        model = PolicyDecision
        fields = ["run", "effect", "action", "agent", "tool", "policy", "rule"]

"""Filters of the policies and decisions lists, shared by the API and the dashboard."""

import django_filters

from controlplane.filters import NamedFilterSet
from policies.choices import Effect, PolicyMode
from policies.definition import ACTIONS
from policies.models import Policy, PolicyDecision


class PolicyFilterSet(NamedFilterSet):
    mode = django_filters.ChoiceFilter(choices=PolicyMode.choices)

    class Meta:
        model = Policy
        fields = ["mode"]


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

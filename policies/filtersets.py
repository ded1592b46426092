"""Filters of the policies and decisions lists, shared by the API and the dashboard."""

import django_filters

from controlplane.filters import ModelChoicesFilterSet, NamedFilterSet
from policies.definition import ACTIONS
from policies.models import Policy, PolicyDecision


class PolicyFilterSet(NamedFilterSet):
    class Meta:
        model = Policy
        fields = ["mode"]


class PolicyDecisionFilterSet(ModelChoicesFilterSet):
    run = django_filters.NumberFilter(field_name="run_id")
    action = django_filters.ChoiceFilter(choices=[(a, a) for a in ACTIONS])
    agent = django_filters.CharFilter(label="Agent slug")
    tool = django_filters.CharFilter(label="Tool slug")
    policy = django_filters.CharFilter(field_name="policy__slug", label="Policy slug")
    rule = django_filters.CharFilter(label="Rule id")

    class Meta:
        model = PolicyDecision
        fields = ["run", "effect", "action", "agent", "tool", "policy", "rule"]

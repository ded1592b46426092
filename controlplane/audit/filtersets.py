import django_filters
from django import forms

from controlplane.audit.models import ActorType, AuditEvent
from controlplane.filters import UtcIsoDateTimeFilter


class AuditEventFilterSet(django_filters.FilterSet):
    """Filters shared by the audit API, its export and the audit page."""

    actor = django_filters.CharFilter(
        field_name="actor_name", lookup_expr="icontains", label="Actor name contains"
    )
    actor_type = django_filters.ChoiceFilter(choices=ActorType.choices, label="Actor type")
    action = django_filters.CharFilter(
        method="filter_action", label="Action, or a prefix ending in '.' (e.g. 'membership.')"
    )
    target_type = django_filters.CharFilter(label="Target type (e.g. agent, policy)")
    target_id = django_filters.CharFilter(label="Target id")
    target = django_filters.CharFilter(
        field_name="target_name", lookup_expr="icontains", label="Target name contains"
    )
    since = UtcIsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        label="From (UTC, ISO 8601)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
    )
    until = UtcIsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        label="Until (UTC, ISO 8601)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
    )
    request_id = django_filters.CharFilter(label="Request id (X-Request-ID)")

    class Meta:
        model = AuditEvent
        fields = ["actor_type", "target_type", "target_id", "request_id"]

    def filter_action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)

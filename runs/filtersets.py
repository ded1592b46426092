import django_filters
from django.db.models import Q

from agents.choices import Status
from runs.choices import RunStatus
from runs.models import Run, Workflow


class WorkflowFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    q = django_filters.CharFilter(method="search")

    class Meta:
        model = Workflow
        fields = ["status"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(slug__icontains=value) | Q(description__icontains=value)
        )


class RunFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    workflow = django_filters.CharFilter(field_name="workflow__slug")
    agent = django_filters.CharFilter(field_name="agent__slug")
    created_by = django_filters.CharFilter(field_name="created_by__username")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Run
        fields = ["status"]

import django_filters
from django.core.validators import RegexValidator
from django.db.models import Q

from agents.choices import Status
from controlplane.filters import UtcIsoDateTimeFilter
from runs.choices import RunStatus
from runs.models import Run, Workflow


class WorkflowFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    q = django_filters.CharFilter(method="search", label="Search name, slug and description")

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
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Run
        fields = ["status"]


class RunListFilterSet(django_filters.FilterSet):
    """The dashboard's run list: a run number, one status, one of the tenant's workflows."""

    q = django_filters.CharFilter(
        method="search",
        label="Run number",
        validators=[RegexValidator(r"^\s*#?\d{1,18}\s*$", "Give a run number, e.g. 42.")],
    )
    status = django_filters.ChoiceFilter(choices=RunStatus.choices, empty_label="Any status")
    workflow = django_filters.ChoiceFilter(
        field_name="workflow__slug", label="Workflow", empty_label="Any workflow"
    )

    class Meta:
        model = Run
        fields = ["q", "status", "workflow"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the tenant context is set: the scoped manager answers for this tenant only
        self.filters["workflow"].extra["choices"] = [
            (slug, slug)
            for slug in Workflow.objects.order_by("slug").values_list("slug", flat=True)
        ]

    def search(self, queryset, name, value):
        return queryset.filter(pk=int(value.strip().lstrip("#")))

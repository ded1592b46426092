import django_filters
from django.core.validators import RegexValidator
from django.db.models import Q

from controlplane.filters import NamedFilterSet, UtcIsoDateTimeFilter
from runs.choices import RunStatus
from runs.models import Run, RunEvent, Workflow


class WorkflowFilterSet(NamedFilterSet):
    class Meta:
        model = Workflow
        fields = ["status"]


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


class RunEventFilterSet(django_filters.FilterSet):
    """A run's events: after a sequence number, of some types (or a type prefix), of one step."""

    after = django_filters.NumberFilter(
        field_name="seq",
        lookup_expr="gt",
        min_value=0,
        label="Only events after this seq (what a reconnecting client saw last).",
    )
    type = django_filters.CharFilter(
        method="of_type",
        label="Event types, comma-separated; a type ending in '.' is a prefix (e.g. step.).",
    )
    step = django_filters.CharFilter(field_name="step_key", label="Only events of this step.")

    class Meta:
        model = RunEvent
        fields = ["after", "type", "step"]

    def of_type(self, queryset, name, value):
        query = Q()
        for item in filter(None, (part.strip() for part in value.split(","))):
            query |= Q(type__startswith=item) if item.endswith(".") else Q(type=item)
        return queryset.filter(query) if query else queryset


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

import django_filters

from controlplane.api.choices import TokenScope
from controlplane.api.models import ApiToken


class ApiTokenFilterSet(django_filters.FilterSet):
    scope = django_filters.ChoiceFilter(choices=TokenScope.choices)
    username = django_filters.CharFilter(field_name="user__username")
    active = django_filters.BooleanFilter(method="filter_active", label="Only active tokens")

    class Meta:
        model = ApiToken
        fields = ["scope"]

    def filter_active(self, queryset, name, value):
        from django.db.models import Q
        from django.utils import timezone

        active = Q(revoked_at__isnull=True) & (
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
        )
        return queryset.filter(active) if value else queryset.exclude(active)

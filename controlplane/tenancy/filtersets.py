import django_filters

from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership


class MembershipFilterSet(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices)
    q = django_filters.CharFilter(method="search", label="Search username or email")

    class Meta:
        model = Membership
        fields = ["role"]

    def search(self, queryset, name, value):
        from django.db.models import Q

        return queryset.filter(Q(user__username__icontains=value) | Q(user__email__icontains=value))

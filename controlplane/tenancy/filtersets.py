import django_filters

from controlplane.filters import search_filter
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership


class MembershipFilterSet(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices)
    q = search_filter("user__username", "user__email", label="Search username or email")

    class Meta:
        model = Membership
        fields = ["role"]

"""Filters shared by the API and the dashboard."""

from __future__ import annotations

import datetime as dt

import django_filters
from django.db.models import Q
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC before it reaches the database.

    Python accepts offsets up to ±24 h, PostgreSQL only up to ±15:59: a time such as
    ``1247-10-07T16:30:18+20:43`` must become a query, not a database error.
    """

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is not None and parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC)
        return parsed


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """``IsoDateTimeFilter`` whose value is normalised to UTC (see ``UtcIsoDateTimeField``)."""

    field_class = UtcIsoDateTimeField


def search_filter(*fields: str, label: str | None = None) -> django_filters.CharFilter:
    """A free-text filter: rows where any of ``fields`` contains the value (any case)."""

    def search(queryset, name, value):
        query = Q()
        for field in fields:
            query |= Q(**{f"{field}__icontains": value})
        return queryset.filter(query)

    return django_filters.CharFilter(method=search, label=label)


class ModelChoicesFilterSet(django_filters.FilterSet):
    """A field with choices named in ``Meta.fields`` is filtered by the model's own choices.

    django-filter would build that ``ChoiceFilter`` itself, but only after asking the model's
    default manager for a query, which a tenant-scoped manager refuses outside a tenant.
    """

    @classmethod
    def filter_for_field(cls, field, field_name, lookup_expr=None):
        if field.choices and lookup_expr in (None, "exact"):
            return django_filters.ChoiceFilter(field_name=field_name, choices=field.choices)
        return super().filter_for_field(field, field_name, lookup_expr)


class NamedFilterSet(ModelChoicesFilterSet):
    """Lists of rows with a name, a slug and a description: ``q`` searches all three."""

    q = search_filter("name", "slug", "description", label="Search name, slug and description")
